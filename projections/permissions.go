package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
)

// PermissionsProjector is the name of the permission projection.
const PermissionsProjector = "permissions"

// Permissions granted on resources.
const (
	PermRead   = "read"
	PermWrite  = "write"
	PermManage = "manage"
)

// Anyone is the principal that stands for every signed-in user (public resources).
var Anyone = uuid.Nil

// Permissions projects space ownership and visibility, and organization membership, into the
// permissions table. Queries check and filter by it. Organization spaces get rows per organization
// member: owners and admins read, write and manage every one; members read the public ones.
func Permissions() *Projector {
	grant := func(ctx context.Context, tx pgx.Tx, principal, resource uuid.UUID, typ string, perms ...string) error {
		for _, p := range perms {
			if _, err := tx.Exec(ctx, `INSERT INTO permissions (principal_id, resource_id, resource_type, permission)
				VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, principal, resource, typ, p); err != nil {
				return err
			}
		}
		return nil
	}
	setVisibility := func(ctx context.Context, tx pgx.Tx, id uuid.UUID, visibility string) error {
		if visibility == space.Public {
			return grant(ctx, tx, Anyone, id, "space", PermRead)
		}
		_, err := tx.Exec(ctx, `DELETE FROM permissions WHERE principal_id = $1 AND resource_id = $2`, Anyone, id)
		return err
	}
	handlers := map[string]Handler{
		space.EventCreated: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			e := r.Event.(space.Created)
			if e.OrgID != nil {
				return createOrgSpace(ctx, tx, *e.OrgID, e.SpaceID, e.Visibility)
			}
			if e.OwnerUserID != nil {
				if err := grant(ctx, tx, *e.OwnerUserID, e.SpaceID, "space", PermRead, PermWrite, PermManage); err != nil {
					return err
				}
			}
			return setVisibility(ctx, tx, e.SpaceID, e.Visibility)
		},
		space.EventVisibilityChanged: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			e := r.Event.(space.VisibilityChanged)
			var orgID uuid.UUID
			err := tx.QueryRow(ctx, `UPDATE perm_org_spaces SET visibility = $2 WHERE space_id = $1 RETURNING org_id`, e.SpaceID, e.Visibility).Scan(&orgID)
			if errors.Is(err, pgx.ErrNoRows) {
				return setVisibility(ctx, tx, e.SpaceID, e.Visibility) // a personal space
			}
			if err != nil {
				return err
			}
			return setOrgSpaceVisibility(ctx, tx, orgID, e.SpaceID, e.Visibility)
		},
		space.EventDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			for _, q := range []string{`DELETE FROM perm_org_spaces WHERE space_id = $1`, `DELETE FROM perm_space_members WHERE space_id = $1`,
				`DELETE FROM permissions WHERE resource_id = $1`} {
				if _, err := tx.Exec(ctx, q, r.StreamID); err != nil {
					return err
				}
			}
			return nil
		},
		space.EventMemberAdded: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			e := r.Event.(space.MemberAdded)
			return setSpaceMember(ctx, tx, e.SpaceID, e.UserID, e.Role)
		},
		space.EventMemberRoleChanged: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			e := r.Event.(space.MemberRoleChanged)
			return setSpaceMember(ctx, tx, e.SpaceID, e.UserID, e.Role)
		},
		space.EventMemberRemoved: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			e := r.Event.(space.MemberRemoved)
			return setSpaceMember(ctx, tx, e.SpaceID, e.UserID, "")
		},
	}
	for name, h := range orgPermissionHandlers() {
		handlers[name] = h
	}
	return &Projector{Name: PermissionsProjector, Version: 1, Tables: []string{"permissions", "perm_org_members", "perm_org_spaces", "perm_space_members"}, Handlers: handlers}
}

// createOrgSpace records an organization space and grants its organization's members their rows.
func createOrgSpace(ctx context.Context, tx pgx.Tx, orgID, spaceID uuid.UUID, visibility string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO perm_org_spaces (space_id, org_id, visibility) VALUES ($1, $2, $3)`, spaceID, orgID, visibility); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO permissions (principal_id, resource_id, resource_type, permission)
		SELECT m.user_id, $2, 'space', p FROM perm_org_members m CROSS JOIN unnest(ARRAY['read', 'write', 'manage']) p
		WHERE m.org_id = $1 AND m.role IN ('owner', 'admin') ON CONFLICT DO NOTHING`, orgID, spaceID); err != nil {
		return err
	}
	return setOrgSpaceVisibility(ctx, tx, orgID, spaceID, visibility)
}

// setOrgSpaceVisibility gives the organization's plain members read on a public space, or takes it.
func setOrgSpaceVisibility(ctx context.Context, tx pgx.Tx, orgID, spaceID uuid.UUID, visibility string) error {
	if visibility == space.Public {
		_, err := tx.Exec(ctx, `INSERT INTO permissions (principal_id, resource_id, resource_type, permission)
			SELECT m.user_id, $2, 'space', 'read' FROM perm_org_members m WHERE m.org_id = $1 AND m.role = 'member'
			ON CONFLICT DO NOTHING`, orgID, spaceID)
		return err
	}
	// Plain members lose read, unless they are members of the space itself.
	_, err := tx.Exec(ctx, `DELETE FROM permissions p USING perm_org_members m
		WHERE p.resource_id = $2 AND p.principal_id = m.user_id AND m.org_id = $1 AND m.role = 'member'
		  AND NOT EXISTS (SELECT 1 FROM perm_space_members sm WHERE sm.space_id = $2 AND sm.user_id = m.user_id)`, orgID, spaceID)
	return err
}

// spaceMemberGrants inserts the rows space membership gives: editors read and write, viewers read.
// It adds to whatever organization roles give (rows are a union of their sources).
const spaceMemberGrants = `INSERT INTO permissions (principal_id, resource_id, resource_type, permission)
	SELECT sm.user_id, sm.space_id, 'space', p FROM perm_space_members sm
	CROSS JOIN LATERAL unnest(CASE WHEN sm.role = 'editor' THEN ARRAY['read', 'write'] ELSE ARRAY['read'] END) p
	WHERE %s ON CONFLICT DO NOTHING`

// orgSpaceGrants inserts the rows organization roles give on organization spaces.
const orgSpaceGrants = `INSERT INTO permissions (principal_id, resource_id, resource_type, permission)
	SELECT m.user_id, s.space_id, 'space', p FROM perm_org_spaces s JOIN perm_org_members m ON m.org_id = s.org_id
	CROSS JOIN LATERAL unnest(CASE WHEN m.role IN ('owner', 'admin') THEN ARRAY['read', 'write', 'manage']
	                               WHEN s.visibility = 'public' THEN ARRAY['read'] ELSE ARRAY[]::text[] END) p
	WHERE %s ON CONFLICT DO NOTHING`

// setSpaceMember records user's role in a space ("" when removed) and recomputes their rows on it from
// every source: organization role and space membership. (A personal space's owner is never a member.)
func setSpaceMember(ctx context.Context, tx pgx.Tx, spaceID, user uuid.UUID, role string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM perm_space_members WHERE space_id = $1 AND user_id = $2`, spaceID, user); err != nil {
		return err
	}
	if role != "" {
		if _, err := tx.Exec(ctx, `INSERT INTO perm_space_members (space_id, user_id, role) VALUES ($1, $2, $3)`, spaceID, user, role); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM permissions WHERE principal_id = $2 AND resource_id = $1`, spaceID, user); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(orgSpaceGrants, "s.space_id = $1 AND m.user_id = $2"), spaceID, user); err != nil {
		return err
	}
	// Membership of an organization's space counts only while in the organization.
	_, err := tx.Exec(ctx, fmt.Sprintf(spaceMemberGrants, `sm.space_id = $1 AND sm.user_id = $2 AND (
		NOT EXISTS (SELECT 1 FROM perm_org_spaces s WHERE s.space_id = $1) OR
		EXISTS (SELECT 1 FROM perm_org_spaces s JOIN perm_org_members m ON m.org_id = s.org_id AND m.user_id = $2 WHERE s.space_id = $1))`), spaceID, user)
	return err
}

// syncOrgMember records user's role in an organization ("" when they left) and recomputes their rows
// on the organization and on all its spaces.
func syncOrgMember(ctx context.Context, tx pgx.Tx, orgID, user uuid.UUID, role string) error {
	stmts := []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM perm_org_members WHERE org_id = $1 AND user_id = $2`, []any{orgID, user}},
		{`DELETE FROM permissions WHERE principal_id = $2 AND (resource_id = $1 OR resource_id IN (SELECT space_id FROM perm_org_spaces WHERE org_id = $1))`, []any{orgID, user}},
	}
	for _, st := range stmts {
		if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
			return err
		}
	}
	if role != "" {
		if _, err := tx.Exec(ctx, `INSERT INTO perm_org_members (org_id, user_id, role) VALUES ($1, $2, $3)`, orgID, user, role); err != nil {
			return err
		}
	}
	for _, p := range orgPermissions(role) {
		if _, err := tx.Exec(ctx, `INSERT INTO permissions (principal_id, resource_id, resource_type, permission) VALUES ($1, $2, 'org', $3)`, user, orgID, p); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(orgSpaceGrants, "s.org_id = $1 AND m.user_id = $2"), orgID, user); err != nil {
		return err
	}
	if role == "" {
		return nil // space memberships of an organization's spaces count only while in the organization
	}
	// Space memberships on the organization's spaces stay, whatever the organization role.
	_, err := tx.Exec(ctx, fmt.Sprintf(spaceMemberGrants, "sm.user_id = $2 AND sm.space_id IN (SELECT space_id FROM perm_org_spaces WHERE org_id = $1)"), orgID, user)
	return err
}

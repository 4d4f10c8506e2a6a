package projections

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain/org"
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
			if _, err := tx.Exec(ctx, `DELETE FROM perm_org_spaces WHERE space_id = $1`, r.StreamID); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DELETE FROM permissions WHERE resource_id = $1`, r.StreamID)
			return err
		},
	}
	for name, h := range orgPermissionHandlers() {
		handlers[name] = h
	}
	return &Projector{Name: PermissionsProjector, Version: 1, Tables: []string{"permissions", "perm_org_members", "perm_org_spaces"}, Handlers: handlers}
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
	_, err := tx.Exec(ctx, `DELETE FROM permissions p USING perm_org_members m
		WHERE p.resource_id = $2 AND p.principal_id = m.user_id AND m.org_id = $1 AND m.role = 'member'`, orgID, spaceID)
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
	if role == "" {
		return nil
	}
	if _, err := tx.Exec(ctx, `INSERT INTO perm_org_members (org_id, user_id, role) VALUES ($1, $2, $3)`, orgID, user, role); err != nil {
		return err
	}
	for _, p := range orgPermissions(role) {
		if _, err := tx.Exec(ctx, `INSERT INTO permissions (principal_id, resource_id, resource_type, permission) VALUES ($1, $2, 'org', $3)`, user, orgID, p); err != nil {
			return err
		}
	}
	sql := `INSERT INTO permissions (principal_id, resource_id, resource_type, permission)
		SELECT $2, s.space_id, 'space', 'read' FROM perm_org_spaces s WHERE s.org_id = $1 AND s.visibility = 'public'`
	if role == org.Owner || role == org.Admin {
		sql = `INSERT INTO permissions (principal_id, resource_id, resource_type, permission)
			SELECT $2, s.space_id, 'space', p FROM perm_org_spaces s CROSS JOIN unnest(ARRAY['read', 'write', 'manage']) p WHERE s.org_id = $1`
	}
	_, err := tx.Exec(ctx, sql, orgID, user)
	return err
}

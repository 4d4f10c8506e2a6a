package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/org"
	"github.com/atlas-workspace/atlas/eventstore"
)

// OrgsProjector is the name of the organizations projection.
const OrgsProjector = "orgs"

// Orgs projects organization events into orgs, org_members and org_invitations.
func Orgs() *Projector {
	exec := func(sql string, args func(r eventstore.Record) []any) Handler {
		return func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			_, err := tx.Exec(ctx, sql, args(r)...)
			return err
		}
	}
	bump := func(ctx context.Context, tx pgx.Tx, r eventstore.Record, at time.Time) error {
		_, err := tx.Exec(ctx, `UPDATE orgs SET version = $2, updated_at = $3 WHERE id = $1`, r.StreamID, r.StreamVersion, at)
		return err
	}
	return &Projector{
		Name: OrgsProjector, Version: 1, Tables: []string{"orgs", "org_members", "org_invitations"},
		Handlers: map[string]Handler{
			org.EventCreated: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(org.Created)
				if _, err := tx.Exec(ctx, `INSERT INTO orgs (id, name, slug, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)`,
					e.OrgID, e.Name, e.Slug, r.StreamVersion, e.CreatedAt); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO org_members (org_id, user_id, role, joined_at) VALUES ($1, $2, 'owner', $3)`, e.OrgID, e.OwnerID, e.CreatedAt)
				return err
			},
			org.EventRenamed: exec(`UPDATE orgs SET name = $2, version = $3, updated_at = $4 WHERE id = $1`, func(r eventstore.Record) []any {
				e := r.Event.(org.Renamed)
				return []any{e.OrgID, e.Name, r.StreamVersion, e.RenamedAt}
			}),
			org.EventSlugChanged: exec(`UPDATE orgs SET slug = $2, version = $3, updated_at = $4 WHERE id = $1`, func(r eventstore.Record) []any {
				e := r.Event.(org.SlugChanged)
				return []any{e.OrgID, e.Slug, r.StreamVersion, e.ChangedAt}
			}),
			org.EventDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				for _, q := range []string{`DELETE FROM org_invitations WHERE org_id = $1`, `DELETE FROM org_members WHERE org_id = $1`, `DELETE FROM orgs WHERE id = $1`} {
					if _, err := tx.Exec(ctx, q, r.StreamID); err != nil {
						return err
					}
				}
				return nil
			},
			org.EventMemberInvited: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(org.MemberInvited)
				if _, err := tx.Exec(ctx, `INSERT INTO org_invitations (id, org_id, email, role, invited_by, expires_at, created_at)
					VALUES ($1, $2, $3, $4, $5, $6, $7)`, e.InvitationID, e.OrgID, e.Email, e.Role, e.InvitedBy, e.ExpiresAt, e.InvitedAt); err != nil {
					return err
				}
				return bump(ctx, tx, r, e.InvitedAt)
			},
			org.EventInvitationRevoked: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(org.InvitationRevoked)
				if _, err := tx.Exec(ctx, `DELETE FROM org_invitations WHERE id = $1`, e.InvitationID); err != nil {
					return err
				}
				return bump(ctx, tx, r, e.RevokedAt)
			},
			org.EventMemberJoined: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(org.MemberJoined)
				if _, err := tx.Exec(ctx, `DELETE FROM org_invitations WHERE id = $1`, e.InvitationID); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO org_members (org_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)`, e.OrgID, e.UserID, e.Role, e.JoinedAt); err != nil {
					return err
				}
				return bump(ctx, tx, r, e.JoinedAt)
			},
			org.EventMemberRoleChanged: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(org.MemberRoleChanged)
				if _, err := tx.Exec(ctx, `UPDATE org_members SET role = $3 WHERE org_id = $1 AND user_id = $2`, e.OrgID, e.UserID, e.Role); err != nil {
					return err
				}
				return bump(ctx, tx, r, e.ChangedAt)
			},
			org.EventMemberRemoved: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(org.MemberRemoved)
				if _, err := tx.Exec(ctx, `DELETE FROM org_members WHERE org_id = $1 AND user_id = $2`, e.OrgID, e.UserID); err != nil {
					return err
				}
				return bump(ctx, tx, r, e.RemovedAt)
			},
		},
	}
}

// orgPermissions returns the permission rows a role gives on an organization.
func orgPermissions(role string) []string {
	switch role {
	case org.Owner, org.Admin:
		return []string{PermRead, PermManage}
	case org.Member:
		return []string{PermRead}
	}
	return nil
}

// orgPermissionHandlers are the permission projector's handlers for organization events.
func orgPermissionHandlers() map[string]Handler {
	return map[string]Handler{
		org.EventCreated: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			e := r.Event.(org.Created)
			return syncOrgMember(ctx, tx, e.OrgID, e.OwnerID, org.Owner)
		},
		org.EventMemberJoined: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			e := r.Event.(org.MemberJoined)
			return syncOrgMember(ctx, tx, e.OrgID, e.UserID, e.Role)
		},
		org.EventMemberRoleChanged: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			e := r.Event.(org.MemberRoleChanged)
			return syncOrgMember(ctx, tx, e.OrgID, e.UserID, e.Role)
		},
		org.EventMemberRemoved: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			e := r.Event.(org.MemberRemoved)
			return syncOrgMember(ctx, tx, e.OrgID, e.UserID, "")
		},
		org.EventDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			// The organization's spaces are deleted by their own events, appended with this one. A
			// space created concurrently with the deletion may have escaped that batch: nothing of it
			// stays readable either.
			for _, q := range []string{
				`DELETE FROM permissions WHERE resource_id = $1 OR resource_id IN (SELECT space_id FROM perm_org_spaces WHERE org_id = $1)`,
				`DELETE FROM perm_space_members WHERE space_id IN (SELECT space_id FROM perm_org_spaces WHERE org_id = $1)`,
				`DELETE FROM perm_org_spaces WHERE org_id = $1`,
				`DELETE FROM perm_org_members WHERE org_id = $1`,
			} {
				if _, err := tx.Exec(ctx, q, r.StreamID); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// OrgView is an organization as its members see it, with the viewer's role.
type OrgView struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	Slug      string    `json:"slug"`
	Role      string    `json:"role"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// MemberView is one member of an organization.
type MemberView struct {
	UserID   uuid.UUID `json:"user_id"`
	Name     string    `json:"name"`
	Email    string    `json:"email"`
	Role     string    `json:"role"`
	JoinedAt time.Time `json:"joined_at"`
}

// InvitationView is a pending invitation (never its token).
type InvitationView struct {
	ID        uuid.UUID `json:"id"`
	Email     string    `json:"email"`
	Role      string    `json:"role"`
	InvitedBy uuid.UUID `json:"invited_by"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
}

// requirePermission checks one permission row: CodeNotFound when viewer may not read the
// organization at all, CodeForbidden when they may read but lack perm.
func requirePermission(ctx context.Context, tx pgx.Tx, viewer, resource uuid.UUID, perm string) error {
	var read, has bool
	err := tx.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM permissions WHERE principal_id = $1 AND permission = 'read' AND resource_id = $2),
		EXISTS (SELECT 1 FROM permissions WHERE principal_id = $1 AND permission = $3 AND resource_id = $2)`,
		viewer, resource, perm).Scan(&read, &has)
	switch {
	case err != nil:
		return fmt.Errorf("check permission: %w", err)
	case !read:
		return domain.Errorf(domain.CodeNotFound, "organization not found")
	case !has:
		return domain.Errorf(domain.CodeForbidden, "this needs the admin role or higher")
	}
	return nil
}

const orgColumns = `o.id, o.name, o.slug, m.role, o.version, o.created_at, o.updated_at`

func scanOrg(row pgx.Row) (OrgView, error) {
	var v OrgView
	err := row.Scan(&v.ID, &v.Name, &v.Slug, &v.Role, &v.Version, &v.CreatedAt, &v.UpdatedAt)
	v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
	return v, err
}

// Org returns an organization viewer is a member of; CodeNotFound otherwise.
func (q *Queries) Org(ctx context.Context, viewer, id uuid.UUID) (OrgView, error) {
	var v OrgView
	err := q.tenantTx(ctx, viewer, func(tx pgx.Tx) (err error) {
		if err := requirePermission(ctx, tx, viewer, id, PermRead); err != nil {
			return err
		}
		v, err = scanOrg(tx.QueryRow(ctx, `SELECT `+orgColumns+` FROM orgs o
			JOIN org_members m ON m.org_id = o.id AND m.user_id = $1 WHERE o.id = $2`, viewer, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return v, domain.Errorf(domain.CodeNotFound, "organization not found")
	}
	return v, err
}

// OrgsOf lists the organizations user belongs to, with their role, oldest first.
func (q *Queries) OrgsOf(ctx context.Context, user uuid.UUID) ([]OrgView, error) {
	out := []OrgView{}
	err := q.tenantTx(ctx, user, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+orgColumns+` FROM org_members m JOIN orgs o ON o.id = m.org_id
			WHERE m.user_id = $1 ORDER BY o.id`, user)
		if err != nil {
			return fmt.Errorf("list organizations: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			v, err := scanOrg(rows)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	return out, err
}

// Members lists an organization's members for a viewer who belongs to it.
func (q *Queries) Members(ctx context.Context, viewer, orgID uuid.UUID) ([]MemberView, error) {
	out := []MemberView{}
	err := q.tenantTx(ctx, viewer, func(tx pgx.Tx) error {
		if err := requirePermission(ctx, tx, viewer, orgID, PermRead); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT m.user_id, coalesce(u.name, ''), coalesce(u.email, ''), m.role, m.joined_at
			FROM org_members m LEFT JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.joined_at, m.user_id`, orgID)
		if err != nil {
			return fmt.Errorf("list members: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var v MemberView
			if err := rows.Scan(&v.UserID, &v.Name, &v.Email, &v.Role, &v.JoinedAt); err != nil {
				return err
			}
			v.JoinedAt = v.JoinedAt.UTC()
			out = append(out, v)
		}
		return rows.Err()
	})
	return out, err
}

// Invitations lists an organization's pending, unexpired invitations for its owners and admins.
func (q *Queries) Invitations(ctx context.Context, viewer, orgID uuid.UUID, now time.Time) ([]InvitationView, error) {
	out := []InvitationView{}
	err := q.tenantTx(ctx, viewer, func(tx pgx.Tx) error {
		if err := requirePermission(ctx, tx, viewer, orgID, PermManage); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id, email, role, invited_by, expires_at, created_at FROM org_invitations
			WHERE org_id = $1 AND expires_at > $2 ORDER BY id`, orgID, now)
		if err != nil {
			return fmt.Errorf("list invitations: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var v InvitationView
			if err := rows.Scan(&v.ID, &v.Email, &v.Role, &v.InvitedBy, &v.ExpiresAt, &v.CreatedAt); err != nil {
				return err
			}
			v.ExpiresAt, v.CreatedAt = v.ExpiresAt.UTC(), v.CreatedAt.UTC()
			out = append(out, v)
		}
		return rows.Err()
	})
	return out, err
}

// Membership is one organization a user belongs to, for /me.
type Membership struct {
	OrgID uuid.UUID `json:"org_id"`
	Role  string    `json:"role"`
}

// Memberships lists user's organization memberships.
func (q *Queries) Memberships(ctx context.Context, user uuid.UUID) ([]Membership, error) {
	var out []Membership
	err := q.tenantTx(ctx, user, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT org_id, role FROM org_members WHERE user_id = $1 ORDER BY org_id`, user)
		if err != nil {
			return fmt.Errorf("list memberships: %w", err)
		}
		out, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Membership])
		return err
	})
	return out, err
}

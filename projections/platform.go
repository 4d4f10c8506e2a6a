package projections

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain/platform"
	"github.com/atlas-workspace/atlas/eventstore"
)

// PlatformProjector is the name of the platform roles projection.
const PlatformProjector = "platform"

// Platform projects the platform stream's role grants into platform_roles, which the API checks on
// the admin and audit routes.
func Platform() *Projector {
	return &Projector{
		Name: PlatformProjector, Version: 1, Tables: []string{"platform_roles"},
		Handlers: map[string]Handler{
			platform.EventRoleGranted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(platform.RoleGranted)
				_, err := tx.Exec(ctx, `INSERT INTO platform_roles (user_id, role, granted_at) VALUES ($1, $2, $3)
					ON CONFLICT (user_id, role) DO UPDATE SET granted_at = excluded.granted_at`, e.UserID, e.Role, e.GrantedAt)
				return err
			},
			platform.EventRoleRevoked: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(platform.RoleRevoked)
				_, err := tx.Exec(ctx, `DELETE FROM platform_roles WHERE user_id = $1 AND role = $2`, e.UserID, e.Role)
				return err
			},
		},
	}
}

// PlatformRoles returns the platform roles user holds, sorted (none: an empty slice).
func (q *Queries) PlatformRoles(ctx context.Context, user uuid.UUID) ([]string, error) {
	roles := []string{}
	err := q.tenantQuery(ctx, user, func(rows pgx.Rows) error {
		var r string
		if err := rows.Scan(&r); err != nil {
			return err
		}
		roles = append(roles, r)
		return nil
	}, `SELECT role FROM platform_roles WHERE user_id = $1 ORDER BY role`, user)
	if err != nil {
		return nil, fmt.Errorf("platform roles: %w", err)
	}
	return roles, nil
}

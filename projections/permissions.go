package projections

import (
	"context"

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
// permissions table. Queries check and filter by it.
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
			if e.OwnerUserID != nil {
				if err := grant(ctx, tx, *e.OwnerUserID, e.SpaceID, "space", PermRead, PermWrite, PermManage); err != nil {
					return err
				}
			}
			return setVisibility(ctx, tx, e.SpaceID, e.Visibility)
		},
		space.EventVisibilityChanged: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			e := r.Event.(space.VisibilityChanged)
			return setVisibility(ctx, tx, e.SpaceID, e.Visibility)
		},
		space.EventDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			_, err := tx.Exec(ctx, `DELETE FROM permissions WHERE resource_id = $1`, r.StreamID)
			return err
		},
	}
	for name, h := range orgPermissionHandlers(grant) {
		handlers[name] = h
	}
	return &Projector{Name: PermissionsProjector, Version: 1, Tables: []string{"permissions"}, Handlers: handlers}
}

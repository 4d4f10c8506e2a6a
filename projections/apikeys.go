package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain/apikey"
	"github.com/atlas-workspace/atlas/domain/user"
	"github.com/atlas-workspace/atlas/eventstore"
)

// APIKeysProjector is the name of the API keys projection.
const APIKeysProjector = "api_keys"

// APIKeys projects API key events into the api_keys table, for listing.
func APIKeys() *Projector {
	return &Projector{
		Name: APIKeysProjector, Version: 1, Tables: []string{"api_keys"},
		Handlers: map[string]Handler{
			apikey.EventCreated: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(apikey.Created)
				_, err := tx.Exec(ctx, `INSERT INTO api_keys (id, user_id, name, prefix, created_at, version)
					VALUES ($1, $2, $3, $4, $5, $6)`, e.KeyID, e.UserID, e.Name, e.Prefix, e.CreatedAt, r.StreamVersion)
				return err
			},
			// An erased user's keys (revoked in the same append) leave the listing with their names.
			user.EventErased: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				_, err := tx.Exec(ctx, `DELETE FROM api_keys WHERE user_id = $1`, r.Event.(user.Erased).UserID)
				return err
			},
			apikey.EventRevoked: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(apikey.Revoked)
				_, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = $2, version = $3 WHERE id = $1`, e.KeyID, e.RevokedAt, r.StreamVersion)
				return err
			},
		},
	}
}

// APIKeyView is a key as listed to its owner (never the key itself).
type APIKeyView struct {
	ID         uuid.UUID  `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// APIKeyPage is one page of a key listing.
type APIKeyPage struct {
	Items      []APIKeyView
	NextCursor *string
}

// APIKeysOf lists the live keys of user, oldest first, limit per page after cursor ("" for the first
// page). A malformed cursor is CodeBadRequest.
func (q *Queries) APIKeysOf(ctx context.Context, user uuid.UUID, cursor string, limit int) (APIKeyPage, error) {
	after, err := parseCursor(cursor)
	if err != nil {
		return APIKeyPage{}, err
	}
	out := []APIKeyView{}
	err = q.tenantTx(ctx, user, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT k.id, k.name, k.prefix, k.created_at, u.last_used_at
			FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id
			WHERE k.user_id = $1 AND k.revoked_at IS NULL AND k.id > $2 ORDER BY k.id LIMIT $3`, user, after, limit+1)
		if err != nil {
			return fmt.Errorf("list api keys: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var v APIKeyView
			if err := rows.Scan(&v.ID, &v.Name, &v.Prefix, &v.CreatedAt, &v.LastUsedAt); err != nil {
				return err
			}
			v.CreatedAt = v.CreatedAt.UTC()
			if v.LastUsedAt != nil {
				t := v.LastUsedAt.UTC()
				v.LastUsedAt = &t
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	if err != nil {
		return APIKeyPage{}, err
	}
	page := APIKeyPage{Items: out}
	page.Items, page.NextCursor = trimPage(out, limit, func(v APIKeyView) string { return v.ID.String() })
	return page, nil
}

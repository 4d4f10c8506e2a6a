package eventstore

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// TenantFilter narrows a tenant's log. Zero values filter nothing.
type TenantFilter struct {
	Types []string   // stored event types such as "org.member_joined" (without the version)
	Actor *uuid.UUID // metadata actor_id
	From  *time.Time // recorded_at >= From
	To    *time.Time // recorded_at < To
}

// ReadTenant returns up to limit events of tenant (its tenant_id) after position in delivery order
// that pass filter, never past the oldest transaction still in progress: a reader continuing from
// the last returned position never skips an event that commits late.
func (s *Store) ReadTenant(ctx context.Context, tenant uuid.UUID, after Position, f TenantFilter, limit int) ([]Record, error) {
	var out []Record
	_, err := s.eachTenantPage(ctx, tenant, after, f, limit, func(r Record) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

func (s *Store) eachTenantPage(ctx context.Context, tenant uuid.UUID, after Position, f TenantFilter, limit int, each func(Record) error) (int, error) {
	var types []string
	if len(f.Types) > 0 {
		types = f.Types
	}
	rows, err := s.pool.Query(ctx, `SELECT `+recordColumns+` FROM events
		WHERE tenant_id = $1
		  AND (transaction_id, global_position) > ($2::text::xid8, $3::bigint)
		  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
		  AND ($4::text[] IS NULL OR event_type = ANY($4))
		  AND ($5::uuid IS NULL OR metadata->>'actor_id' = $5::uuid::text)
		  AND ($6::timestamptz IS NULL OR recorded_at >= $6)
		  AND ($7::timestamptz IS NULL OR recorded_at < $7)
		ORDER BY events.transaction_id, global_position LIMIT $8`,
		tenant, fmt.Sprint(after.TransactionID), after.GlobalPosition, types, nullUUIDParam(f.Actor), f.From, f.To, limit)
	if err != nil {
		return 0, fmt.Errorf("read tenant log: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		r, err := s.scanRecord(rows)
		if err != nil {
			return n, err
		}
		n++
		if err := each(r); err != nil {
			return n, err
		}
	}
	return n, rows.Err()
}

// EachTenant calls each for every event of tenant after position that passes filter, in delivery
// order, one row at a time and pageSize rows per query (keyset pagination), so memory stays constant
// however long the log. It stops at the first error each returns.
func (s *Store) EachTenant(ctx context.Context, tenant uuid.UUID, after Position, f TenantFilter, pageSize int, each func(Record) error) error {
	for {
		n, err := s.eachTenantPage(ctx, tenant, after, f, pageSize, func(r Record) error {
			after = r.Position
			return each(r)
		})
		if err != nil {
			return err
		}
		if n < pageSize {
			return nil
		}
	}
}

package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/atlas-workspace/atlas/eventstore"
)

// A rebuild is blue/green: the projector's tables are copied (empty, with their indexes, grants and
// row-level security policies) into the schema rebuild_<name>, a new consumer group replays the log
// into the copies while the live tables keep serving, and once the copies have caught up one
// transaction swaps them in. A bumped projector version starts such a rebuild by itself; its
// ShadowDDL turns the copies into the new shape first.
//
// Locks are always taken in this order: checkpoint rows (projection_offsets), then the status row
// (projector_status), then tables. Consumers hold their checkpoint row for a batch and read the status
// row FOR SHARE at the batch's start; taking them in the same order everywhere rules out deadlocks.

func rebuildSchema(name string) string { return "rebuild_" + name }
func retiredSchema(name string) string { return "retired_" + name }

func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// StartRebuild starts rebuilding the named projector from the start of the log and returns the log's
// head, which the rebuild must reach before it is swapped in. Running it again during a rebuild starts
// that rebuild over. Projectors with InPlaceRebuild have their live tables emptied instead.
func (rt *Runtime) StartRebuild(ctx context.Context, name string) (eventstore.Position, error) {
	p := rt.projectors[name]
	if p == nil {
		return eventstore.Position{}, fmt.Errorf("unknown projector %q (known: %s)", name, strings.Join(rt.order, ", "))
	}
	if _, err := rt.pool.Exec(ctx, `INSERT INTO projector_status (name, version, status, live_group)
		VALUES ($1, 1, 'live', $1 || '_v1') ON CONFLICT DO NOTHING`, name); err != nil {
		return eventstore.Position{}, fmt.Errorf("projector %s status: %w", name, err)
	}
	target, err := rt.store.Head(ctx)
	if err != nil {
		return target, err
	}
	for attempt := 1; ; attempt++ {
		var g generation
		if g, err = rt.generation(ctx, rt.pool, name, false); err != nil {
			return target, err
		}
		if p.InPlaceRebuild {
			err = rt.startInPlace(ctx, p, g, target)
		} else {
			err = rt.startShadow(ctx, p, g, target)
		}
		if !errors.Is(err, errGenerationChanged) || attempt == 3 {
			break
		}
	}
	if err != nil {
		return target, fmt.Errorf("start rebuild of %s: %w", name, err)
	}
	select {
	case rt.reconcile[name] <- struct{}{}:
	default: // a wake-up is pending already
	}
	rt.signal.Notify(0)
	return target, nil
}

// startInPlace empties the live tables and rewinds the live checkpoint, in one transaction that first
// locks the checkpoint row (so no batch is in flight).
func (rt *Runtime) startInPlace(ctx context.Context, p *Projector, g generation, target eventstore.Position) error {
	return pgx.BeginFunc(ctx, rt.opts.Admin, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO projection_offsets (consumer_group, offset_acked, last_processed_transaction_id)
			VALUES ($1, 0, '0') ON CONFLICT DO NOTHING`, g.liveGroup); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM projection_offsets WHERE consumer_group = $1 FOR UPDATE`, g.liveGroup); err != nil {
			return err
		}
		if err := lockStatus(ctx, tx, p.Name, g); err != nil {
			return err
		}
		if len(p.Tables) > 0 {
			if _, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(p.Tables, ", ")); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE projection_offsets SET offset_acked = 0, last_processed_transaction_id = '0'
			WHERE consumer_group = $1`, g.liveGroup); err != nil {
			return err
		}
		return markRebuilding(ctx, tx, p.Name, target)
	})
}

// startShadow creates empty copies of the projector's tables in its rebuild schema (dropping those of
// a rebuild in progress) and a new consumer group at the start of the log.
func (rt *Runtime) startShadow(ctx context.Context, p *Projector, g generation, target eventstore.Position) error {
	schema := rebuildSchema(p.Name)
	return pgx.BeginFunc(ctx, rt.opts.Admin, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
			return err
		}
		if g.shadowGroup != nil { // a rebuild in progress: wait for its batch in flight, then drop it
			if _, err := tx.Exec(ctx, `SELECT 1 FROM projection_offsets WHERE consumer_group = $1 FOR UPDATE`, *g.shadowGroup); err != nil {
				return err
			}
		}
		if err := lockStatus(ctx, tx, p.Name, g); err != nil {
			return err
		}
		var gen int
		if err := tx.QueryRow(ctx, `SELECT generation + 1 FROM projector_status WHERE name = $1`, p.Name).Scan(&gen); err != nil {
			return err
		}
		group := fmt.Sprintf("%s_v%d_r%d", p.Name, p.Version, gen)
		if g.shadowGroup != nil {
			if _, err := tx.Exec(ctx, `DELETE FROM projection_offsets WHERE consumer_group = $1`, *g.shadowGroup); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+ident(schema)+" CASCADE"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA "+ident(schema)); err != nil {
			return err
		}
		for _, t := range p.Tables {
			if err := copyTable(ctx, tx, schema, t); err != nil {
				return fmt.Errorf("copy %s: %w", t, err)
			}
		}

		// A swap must enable the copies' row-level security. A process of an earlier release, whose
		// swap does not, fails on this table (its swap drops the emptied schema without CASCADE, and
		// rolls back) and so leaves the swap to a process of this release.
		if _, err := tx.Exec(ctx, "CREATE TABLE "+ident(schema, rowSecurityMarker)+" ()"); err != nil {
			return err
		}
		if p.ShadowDDL != "" && g.version < p.Version { // copies of an older version's tables
			if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+ident(schema)+", public"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, p.ShadowDDL); err != nil {
				return fmt.Errorf("version %d's changes to the copied tables: %w", p.Version, err)
			}
			if _, err := tx.Exec(ctx, "SET LOCAL search_path TO DEFAULT"); err != nil {
				return err
			}
		}
		if p.LateIndexes && p.Bulk != nil && !rt.opts.EventByEvent {
			if err := deferIndexes(ctx, tx, schema, p.Tables); err != nil {
				return fmt.Errorf("defer the copies' secondary indexes: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO projection_offsets (consumer_group, offset_acked, last_processed_transaction_id)
			VALUES ($1, 0, '0') ON CONFLICT (consumer_group) DO UPDATE SET offset_acked = 0, last_processed_transaction_id = '0'`, group); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE projector_status SET shadow_group = $2, shadow_version = $3, generation = $4
			WHERE name = $1`, p.Name, group, p.Version, gen); err != nil {
			return err
		}
		return markRebuilding(ctx, tx, p.Name, target)
	})
}

// lockStatus locks the status row and checks that it still says what g says (it was read before the
// checkpoint rows were locked, to keep the lock order).
func lockStatus(ctx context.Context, tx pgx.Tx, name string, g generation) error {
	var now generation
	err := tx.QueryRow(ctx, `SELECT version, live_group, shadow_group, shadow_version FROM projector_status
		WHERE name = $1 FOR UPDATE`, name).Scan(&now.version, &now.liveGroup, &now.shadowGroup, &now.shadowVersion)
	if err != nil {
		return err
	}
	if now.liveGroup != g.liveGroup || deref(now.shadowGroup) != deref(g.shadowGroup) {
		return errGenerationChanged
	}
	return nil
}

// errGenerationChanged: another process started or finished a rebuild between reading the status and
// locking it.
var errGenerationChanged = errors.New("another rebuild started or finished meanwhile")

// errBusy: the swap could not take its locks within its lock timeout.
var errBusy = errors.New("tables busy")

func deref[T any](p *T) (v T) {
	if p != nil {
		v = *p
	}
	return v
}

func markRebuilding(ctx context.Context, tx pgx.Tx, name string, target eventstore.Position) error {
	_, err := tx.Exec(ctx, `UPDATE projector_status SET status = 'rebuilding', attempts = 0, failed_position = NULL,
		failed_event_type = NULL, last_error = NULL, rebuild_target_transaction_id = $2::text::xid8,
		rebuild_target_position = $3, rebuild_started_at = now(), updated_at = now() WHERE name = $1`,
		name, fmt.Sprint(target.TransactionID), target.GlobalPosition)
	return err
}

// copyTable creates schema.table as an empty copy of public.table: columns, defaults, constraints,
// indexes, the grants and the row-level security policies, but with row-level security not yet
// enabled: the copy is filled with COPY, which row-level security refuses. Only roles that write the
// table (the projectors') may use the schema meanwhile, and the swap enables row-level security as
// the live table has it, in the transaction that makes the copy the live table.
func copyTable(ctx context.Context, tx pgx.Tx, schema, table string) error {
	src, dst := ident("public", table), ident(schema, table)
	if _, err := tx.Exec(ctx, "CREATE TABLE "+dst+" (LIKE "+src+" INCLUDING ALL)"); err != nil {
		return err
	}
	// Grants, from the table's access list (grantee 0 is PUBLIC).
	rows, err := tx.Query(ctx, `SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(a.grantee::regrole::text) END,
			a.privilege_type
		FROM pg_class c, aclexplode(c.relacl) a
		WHERE c.oid = $1::regclass AND a.grantee <> c.relowner`, src)
	if err != nil {
		return err
	}
	type grant struct{ Grantee, Privilege string }
	grants, err := pgx.CollectRows(rows, pgx.RowToStructByPos[grant])
	if err != nil {
		return err
	}
	for _, g := range grants {
		if _, err := tx.Exec(ctx, "GRANT "+g.Privilege+" ON "+dst+" TO "+g.Grantee); err != nil {
			return err
		}
		// The schema, only to roles that write the table (the projectors'), not to those that
		// only read it: the copy has no row-level security until the swap.
		if g.Privilege == "INSERT" && g.Grantee != "PUBLIC" {
			if _, err := tx.Exec(ctx, "GRANT USAGE ON SCHEMA "+ident(schema)+" TO "+g.Grantee); err != nil {
				return err
			}
		}
	}
	// The policies; row-level security itself is enabled at the swap (rowSecurityAsLive).
	rows, err = tx.Query(ctx, policiesSQL+` WHERE pol.polrelid = $1::regclass`, src)
	if err != nil {
		return err
	}
	policies, err := collectPolicies(rows)
	if err != nil {
		return err
	}
	for _, pol := range policies {
		if _, err := tx.Exec(ctx, pol.sql(dst)); err != nil {
			return fmt.Errorf("policy %s: %w", pol.Name, err)
		}
	}
	return nil
}

// lateIndexes is a table in a rebuild's schema that lists the copies' secondary indexes still to
// build (Projector.LateIndexes); it is dropped once they are built. Its presence also stops a process
// of an earlier release from swapping the copies in without them (its swap drops the schema without
// CASCADE).
const lateIndexes = "late_indexes"

// deferIndexes drops the secondary indexes of the copies of tables in schema (those not unique and
// behind no constraint: no handler relies on them for correctness), noting their names and
// definitions in the schema's lateIndexes table for buildLateIndexes.
func deferIndexes(ctx context.Context, tx pgx.Tx, schema string, tables []string) error {
	var copies []string
	for _, t := range tables {
		copies = append(copies, ident(schema, t))
	}
	rows, err := tx.Query(ctx, `SELECT c.relname::text, i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE i.indrelid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)
		  AND NOT i.indisunique AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
		ORDER BY 1`, copies)
	if err != nil {
		return err
	}
	type index struct{ Name, Qualified, Definition string }
	indexes, err := pgx.CollectRows(rows, pgx.RowToStructByPos[index])
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "CREATE TABLE "+ident(schema, lateIndexes)+" (name text PRIMARY KEY, definition text NOT NULL)"); err != nil {
		return err
	}
	for _, ix := range indexes {
		if _, err := tx.Exec(ctx, "INSERT INTO "+ident(schema, lateIndexes)+" (name, definition) VALUES ($1, $2)", ix.Name, ix.Definition); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DROP INDEX "+ix.Qualified); err != nil {
			return err
		}
	}
	return nil
}

// lateIndexesLeft reports whether the rebuild of projector name has late indexes still to build. It
// reads the catalog, which any role may: a role without USAGE on the rebuild's schema (a projector
// without tables grants it to none) cannot even ask to_regclass.
func lateIndexesLeft(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string) (bool, error) {
	var left bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2)`, rebuildSchema(name), lateIndexes).Scan(&left)
	return left, err
}

// errIndexBusy: an index of a rebuild's is being built by a process that does not take the build's
// advisory lock.
var errIndexBusy = errors.New("another process is building the index; trying again later")

// buildLateIndexes builds the secondary indexes that a rebuild's copies were filled without, if group
// is the rebuild's consumer group and any are left (why says for the log), then ANALYZEs the copies,
// and reports whether it built any.
//
// It builds CONCURRENTLY, so that it holds no transaction id for the length of a sort (every reader of
// the log stops below the oldest transaction in progress) and blocks no writer. Processes take turns
// with a session advisory lock, tried every 100 ms rather than waited for in a statement: a statement
// waiting would hold a snapshot, which the other process's CREATE INDEX CONCURRENTLY waits for. A
// process that gets the lock after another one has built the indexes finds nothing left, and goes on
// in bulk. An index left invalid by a build that failed or was interrupted is dropped and built again.
func (rt *Runtime) buildLateIndexes(ctx context.Context, p *Projector, group string, log *slog.Logger, why string) (bool, error) {
	if pending, err := lateIndexesLeft(ctx, rt.pool, p.Name); err != nil || !pending {
		return false, err
	}
	conn, err := rt.opts.Admin.Acquire(ctx)
	if err != nil {
		return false, err
	}
	schema := rebuildSchema(p.Name)
	lockKey := "atlas late indexes " + schema
	for {
		var locked bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, lockKey).Scan(&locked); err != nil {
			conn.Release()
			return false, err
		}
		if locked {
			break
		}
		if sleep(ctx, 100*time.Millisecond); ctx.Err() != nil {
			conn.Release()
			return false, ctx.Err()
		}
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext($1))`, lockKey); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx)) // the session ends, and its lock with it
		}
		conn.Release()
	}()
	return rt.buildLateIndexesLocked(ctx, conn.Conn(), p, group, log, why)
}

// buildLateIndexesLocked is buildLateIndexes under its advisory lock, on its connection.
func (rt *Runtime) buildLateIndexesLocked(ctx context.Context, conn *pgx.Conn, p *Projector, group string, log *slog.Logger, why string) (bool, error) {
	schema := rebuildSchema(p.Name)
	table := ident(schema, lateIndexes)
	// Again, under the lock: built by another process meanwhile, or the rebuild restarted.
	if pending, err := lateIndexesLeft(ctx, conn, p.Name); err != nil || !pending {
		return false, err
	}
	g, err := rt.generation(ctx, conn, p.Name, false)
	if err != nil || g.shadowGroup == nil || *g.shadowGroup != group {
		return false, err // the live group, or a retired one
	}
	rows, err := conn.Query(ctx, "SELECT name, definition FROM "+table+" ORDER BY name")
	if err != nil {
		return false, err
	}
	type index struct{ Name, Definition string }
	indexes, err := pgx.CollectRows(rows, pgx.RowToStructByPos[index])
	if err != nil {
		return false, err
	}
	// state is "missing", "valid", "invalid" or "building" (by a process outside the lock).
	state := func(name string) (string, error) {
		st := "missing"
		err := conn.QueryRow(ctx, `SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_stat_progress_create_index pr WHERE pr.index_relid = c.oid) THEN 'building'
				WHEN i.indisvalid THEN 'valid' ELSE 'invalid' END
			FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
			WHERE c.relnamespace = $1::regnamespace AND c.relname = $2`, ident(schema), name).Scan(&st)
		if errors.Is(err, pgx.ErrNoRows) {
			err = nil
		}
		return st, err
	}
	start := time.Now()
	for _, ix := range indexes {
		st, err := state(ix.Name)
		if err != nil {
			return false, err
		}
		switch st {
		case "valid":
			continue
		case "building":
			return false, fmt.Errorf("%s: %w", ix.Name, errIndexBusy)
		case "invalid":
			log.Info("dropping an invalid index left by an earlier build", "index", ix.Name)
			if _, err := conn.Exec(ctx, "DROP INDEX "+ident(schema, ix.Name)); err != nil {
				return false, fmt.Errorf("drop the invalid index %s: %w", ix.Name, err)
			}
		}
		const prefix = "CREATE INDEX "
		if !strings.HasPrefix(ix.Definition, prefix) {
			return false, fmt.Errorf("late index %s: unexpected definition %q", ix.Name, ix.Definition)
		}
		// Logged before, as it may wait (for older transactions in the database) as well as sort.
		log.Info("building a rebuild's secondary index", "index", ix.Name, "why", why)
		if _, err := conn.Exec(ctx, "CREATE INDEX CONCURRENTLY "+ix.Definition[len(prefix):]); err != nil {
			return false, fmt.Errorf("%s: %w", ix.Definition, err)
		}
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Still this rebuild's (a restarted rebuild has a table of its own).
		var current bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM projector_status WHERE name = $1 AND shadow_group = $2 FOR SHARE)`,
			p.Name, group).Scan(&current); err != nil || !current {
			return err
		}
		_, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+table)
		return err
	})
	if err != nil {
		return false, err
	}
	log.Info("built the rebuild's secondary indexes", "indexes", len(indexes), "why", why, "elapsed", time.Since(start).Round(time.Millisecond))
	if err := rt.analyze(ctx, p, group); err != nil && ctx.Err() == nil {
		log.Warn("analyze after building the rebuild's indexes", "error", err)
	}
	return true, nil
}

// rowSecurityMarker is a table in a rebuild's schema that only a swap enabling the copies' row-level
// security removes (see startShadow).
const rowSecurityMarker = "swap_enables_row_security"

// rowSecurityAsLive enables (and forces) row-level security on schema.table as on public.table.
func rowSecurityAsLive(ctx context.Context, tx pgx.Tx, schema, table string) error {
	var enabled, forced bool
	if err := tx.QueryRow(ctx, `SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass`,
		ident("public", table)).Scan(&enabled, &forced); err != nil {
		return err
	}
	dst := ident(schema, table)
	if enabled {
		if _, err := tx.Exec(ctx, "ALTER TABLE "+dst+" ENABLE ROW LEVEL SECURITY"); err != nil {
			return err
		}
	}
	if forced {
		if _, err := tx.Exec(ctx, "ALTER TABLE "+dst+" FORCE ROW LEVEL SECURITY"); err != nil {
			return err
		}
	}
	return nil
}

// policyDef is a row-level security policy as text, on the table whose oid is table.
type policyDef struct {
	Table                                      uint32
	Name, Permissive, Cmd, Roles, Using, Check string
}

func (d policyDef) sql(on string) string {
	sql := fmt.Sprintf("CREATE POLICY %s ON %s AS %s FOR %s TO %s", ident(d.Name), on, d.Permissive, d.Cmd,
		strings.ReplaceAll(d.Roles, `"public"`, "PUBLIC"))
	if d.Using != "" {
		sql += " USING (" + d.Using + ")"
	}
	if d.Check != "" {
		sql += " WITH CHECK (" + d.Check + ")"
	}
	return sql
}

// recreate drops the policy and creates it again from its text, so its table references resolve anew.
func (d policyDef) recreate(ctx context.Context, tx pgx.Tx) error {
	var on string
	if err := tx.QueryRow(ctx, `SELECT $1::oid::regclass::text`, d.Table).Scan(&on); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "DROP POLICY "+ident(d.Name)+" ON "+on); err != nil {
		return fmt.Errorf("drop policy %s on %s: %w", d.Name, on, err)
	}
	if _, err := tx.Exec(ctx, d.sql(on)); err != nil {
		return fmt.Errorf("recreate policy %s on %s: %w", d.Name, on, err)
	}
	return nil
}

// policiesSQL selects policyDef rows from pg_policies (p) joined to pg_policy (pol).
const policiesSQL = `SELECT DISTINCT pol.polrelid::oid::bigint, p.policyname::text, p.permissive, p.cmd,
		(SELECT string_agg(quote_ident(r), ', ') FROM unnest(p.roles) r), coalesce(p.qual, ''), coalesce(p.with_check, '')
	FROM pg_policy pol
	JOIN pg_class c ON c.oid = pol.polrelid
	JOIN pg_namespace n ON n.oid = c.relnamespace
	JOIN pg_policies p ON p.schemaname = n.nspname AND p.tablename = c.relname AND p.policyname = pol.polname`

// dependentPolicies are the policies that refer to any of tables (qualified names), other than
// those on the tables themselves.
func dependentPolicies(ctx context.Context, tx pgx.Tx, tables []string) ([]policyDef, error) {
	rows, err := tx.Query(ctx, policiesSQL+`
		JOIN pg_depend d ON d.classid = 'pg_policy'::regclass AND d.objid = pol.oid AND d.refclassid = 'pg_class'::regclass
		WHERE d.refobjid = ANY ($1::text[]::regclass[]) AND pol.polrelid <> ALL ($1::text[]::regclass[])`, tables)
	if err != nil {
		return nil, err
	}
	return collectPolicies(rows)
}

func collectPolicies(rows pgx.Rows) ([]policyDef, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (policyDef, error) {
		var d policyDef
		var oid int64
		err := row.Scan(&oid, &d.Name, &d.Permissive, &d.Cmd, &d.Roles, &d.Using, &d.Check)
		d.Table = uint32(oid)
		return d, err
	})
}

// FinishRebuildIfCaughtUp finishes a rebuild whose consumer group has reached the rebuild's target
// (and the live checkpoint): copies are swapped in, in one transaction, and the old tables dropped;
// an in-place rebuild is marked live. It reports whether the projector is live.
func (rt *Runtime) FinishRebuildIfCaughtUp(ctx context.Context, name string) (bool, Status, error) {
	p := rt.projectors[name]
	if p == nil {
		return false, Status{}, fmt.Errorf("unknown projector %q", name)
	}
	s, err := rt.status(ctx, p)
	if err != nil || s.Status != "rebuilding" || s.Rebuild == nil {
		return s.Status == "live", s, err
	}
	if s.Rebuild.Position.Less(s.Rebuild.Target) {
		return false, s, nil
	}
	if s.Rebuild.InPlace {
		_, err = rt.pool.Exec(ctx, `UPDATE projector_status SET status = 'live', rebuild_target_transaction_id = NULL,
			rebuild_target_position = NULL, updated_at = now() WHERE name = $1 AND status = 'rebuilding' AND shadow_group IS NULL`, name)
		if err != nil {
			return false, s, err
		}
		s.Status, s.Rebuild = "live", nil
		return true, s, nil
	}
	swapped, err := rt.swap(ctx, p)
	if err != nil || !swapped {
		return false, s, err
	}
	s, err = rt.status(ctx, p)
	return s.Status == "live", s, err
}

// rebuildCaughtUp reports, without locking, whether a blue/green rebuild's checkpoint has reached its
// target.
func (rt *Runtime) rebuildCaughtUp(ctx context.Context, name string) (bool, error) {
	var ok bool
	err := rt.pool.QueryRow(ctx, `SELECT coalesce((o.last_processed_transaction_id, o.offset_acked) >=
			(s.rebuild_target_transaction_id, s.rebuild_target_position), false)
		FROM projector_status s JOIN projection_offsets o ON o.consumer_group = s.shadow_group
		WHERE s.name = $1`, name).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return ok, err
}

// swap makes the rebuilt copies the live tables, if the rebuild's checkpoint is at or past both its
// target and the live checkpoint (so no read sees the read model go back in time).
func (rt *Runtime) swap(ctx context.Context, p *Projector) (bool, error) {
	g, err := rt.generation(ctx, rt.pool, p.Name, false)
	if err != nil || g.shadowGroup == nil {
		return false, err
	}
	swapped := false
	err = pgx.BeginFunc(ctx, rt.opts.Admin, func(tx pgx.Tx) error {
		// Queries wait behind the swap's locks, and a query that holds a lock on one table while it
		// waits for another could deadlock with the swap. So the swap takes every lock it needs in one
		// statement first, and gives up after a lock timeout shorter than PostgreSQL's deadlock
		// timeout (1 s by default): it is then always the one to yield, and tries again at the next
		// check, while queries wait at most that long.
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '200ms'`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT consumer_group, offset_acked, last_processed_transaction_id::text
			FROM projection_offsets WHERE consumer_group IN ($1, $2) ORDER BY consumer_group FOR UPDATE`, g.liveGroup, *g.shadowGroup)
		if err != nil {
			return err
		}
		pos := map[string]eventstore.Position{}
		for rows.Next() {
			var group, xid string
			var off int64
			if err := rows.Scan(&group, &off, &xid); err != nil {
				rows.Close()
				return err
			}
			pos[group] = position(&off, &xid)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if err := lockStatus(ctx, tx, p.Name, g); err != nil {
			return err
		}
		var target eventstore.Position
		var targetPos *int64
		var targetXID *string
		if err := tx.QueryRow(ctx, `SELECT rebuild_target_position, rebuild_target_transaction_id::text
			FROM projector_status WHERE name = $1`, p.Name).Scan(&targetPos, &targetXID); err != nil {
			return err
		}
		target = position(targetPos, targetXID)
		shadow, ok := pos[*g.shadowGroup]
		if !ok || shadow.Less(target) || shadow.Less(pos[g.liveGroup]) {
			return nil // not yet: the live consumer is ahead, or the rebuild is behind
		}
		indexesLeft, err := lateIndexesLeft(ctx, tx, p.Name)
		if err != nil {
			return err
		}
		if indexesLeft {
			return nil // not yet: the rebuild's consumer builds them before it goes on event by event
		}
		// Row-level security policies on other tables (and on the copies) that refer to the tables
		// being replaced refer to them by identity: they are recreated after the swap, from their
		// text, so that they refer to the new tables.
		var oldTables []string
		for _, t := range p.Tables {
			oldTables = append(oldTables, ident("public", t))
		}
		dependents, err := dependentPolicies(ctx, tx, oldTables)
		if err != nil {
			return err
		}
		lock := append([]string(nil), oldTables...)
		for _, t := range p.Tables {
			lock = append(lock, ident(rebuildSchema(p.Name), t))
		}
		for _, pol := range dependents {
			var on string
			if err := tx.QueryRow(ctx, `SELECT $1::oid::regclass::text`, pol.Table).Scan(&on); err != nil {
				return err
			}
			lock = append(lock, on)
		}
		// A projector without tables (its handlers only have effects elsewhere) only changes group.
		if len(lock) > 0 {
			_, err = tx.Exec(ctx, "LOCK TABLE "+strings.Join(lock, ", ")+" IN ACCESS EXCLUSIVE MODE")
		}
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available: busy, try later
				return errBusy
			}
			return err
		}
		for _, t := range p.Tables {
			if err := rowSecurityAsLive(ctx, tx, rebuildSchema(p.Name), t); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+ident(rebuildSchema(p.Name), rowSecurityMarker)); err != nil {
			return err
		}
		live, retired, rebuilt := ident("public"), ident(retiredSchema(p.Name)), ident(rebuildSchema(p.Name))
		stmts := []string{"DROP SCHEMA IF EXISTS " + retired + " CASCADE", "CREATE SCHEMA " + retired}
		for _, t := range p.Tables {
			stmts = append(stmts,
				"ALTER TABLE "+live+"."+ident(t)+" SET SCHEMA "+retired,
				"ALTER TABLE "+rebuilt+"."+ident(t)+" SET SCHEMA "+live)
		}
		for _, sql := range stmts {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return fmt.Errorf("%s: %w", sql, err)
			}
		}
		for _, pol := range dependents {
			if err := pol.recreate(ctx, tx); err != nil {
				return err
			}
		}
		// No CASCADE: anything else still depending on the old tables makes the swap fail (and roll
		// back) rather than disappear silently.
		var drop []string
		for _, t := range p.Tables {
			drop = append(drop, retired+"."+ident(t))
		}
		if len(drop) > 0 {
			if _, err := tx.Exec(ctx, "DROP TABLE "+strings.Join(drop, ", ")); err != nil { // one statement: they may refer to each other
				return fmt.Errorf("drop the replaced tables: %w", err)
			}
		}
		for _, sql := range []string{"DROP SCHEMA " + retired, "DROP SCHEMA " + rebuilt} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return fmt.Errorf("%s: %w", sql, err)
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE projector_status SET version = shadow_version, live_group = shadow_group,
			shadow_group = NULL, shadow_version = NULL, status = 'live', attempts = 0, failed_position = NULL,
			failed_event_type = NULL, last_error = NULL, rebuild_target_transaction_id = NULL,
			rebuild_target_position = NULL, updated_at = now() WHERE name = $1`, p.Name); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM projection_offsets WHERE consumer_group = $1`, g.liveGroup); err != nil {
			return err
		}
		swapped = true
		return nil
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
		// Any of its locks, not only the tables': a checkpoint row held by a consumer's batch for
		// longer than the lock timeout, say. Busy: try later.
		err = errBusy
	}
	if errors.Is(err, errGenerationChanged) || errors.Is(err, errBusy) {
		return false, nil // swapped (or restarted) by another process meanwhile, or busy: try later
	}
	if err != nil {
		return false, fmt.Errorf("swap in the rebuilt %s tables: %w", p.Name, err)
	}
	if swapped {
		rt.log.Info("rebuild swapped in", "projector", p.Name, "consumer_group", *g.shadowGroup)
		rt.signal.Notify(0)
	}
	return swapped, nil
}

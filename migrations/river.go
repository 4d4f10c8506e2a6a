package migrations

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// riverLock is the advisory lock key under which River's schema is migrated, so that processes
// starting together apply each River migration once.
const riverLock = `hashtextextended('atlas.river-migrate', 0)`

// riverUp applies the job queue's (River's) own migrations, which River versions and records in its
// river_migration table, then lets the API role use the queue's tables: commands insert and cancel
// jobs in their own transactions, and workers run as that role too. It is idempotent.
func riverUp(ctx context.Context, cfg *pgx.ConnConfig, log *slog.Logger) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+riverLock+`)`); err != nil {
		return fmt.Errorf("river migrations: lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.Background(), `SELECT pg_advisory_unlock(`+riverLock+`)`) }()
	// River applies each of its migrations in its own transaction (one adds an enum value that a
	// later one uses), so it gets a pool of its own while this connection holds the lock.
	pcfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return err
	}
	pcfg.ConnConfig = cfg.Copy()
	pcfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	defer pool.Close()
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	for _, v := range res.Versions {
		if log != nil {
			log.Info("river migration applied", "version", v.Version, "name", v.Name, "duration_ms", v.Duration.Milliseconds())
		}
	}
	// Every river_* table and sequence, whichever River version created it.
	_, err = conn.Exec(ctx, `DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.relname, c.relkind FROM pg_class c
             WHERE c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'river\_%' AND c.relkind IN ('r', 'S') LOOP
        IF r.relkind = 'r' THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO atlas_api', r.relname);
        ELSE
            EXECUTE format('GRANT USAGE, SELECT, UPDATE ON SEQUENCE %I TO atlas_api', r.relname);
        END IF;
    END LOOP;
END $$`)
	if err != nil {
		return fmt.Errorf("river migrations: grants: %w", err)
	}
	return nil
}

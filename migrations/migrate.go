package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// EnsureDatabase creates the database named in dbURL when it does not exist, connecting to the
// server's "postgres" database to do so. Without access to that database it assumes the database
// exists (connecting to it will say otherwise).
func EnsureDatabase(ctx context.Context, dbURL string) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" {
		return nil
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return nil
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look for database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) && (pgErr.SQLState() == "42P04" || pgErr.SQLState() == "23505") { // created concurrently
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Up applies the embedded migrations to the database at dbURL under a PostgreSQL advisory lock, so two
// processes migrating at once apply each migration once. Running it again is a no-op. It returns the
// versions it applied.
func Up(ctx context.Context, dbURL string, log *slog.Logger) ([]int64, error) {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	applied, err := up(ctx, db, log)
	if err != nil {
		return applied, err
	}
	return applied, riverUp(ctx, cfg, log)
}

func up(ctx context.Context, db *sql.DB, log *slog.Logger) ([]int64, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var applied []int64
	for _, r := range results {
		applied = append(applied, r.Source.Version)
		if log != nil {
			log.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration_ms", r.Duration.Milliseconds())
		}
	}
	return applied, nil
}

// The database roles the migrations create (00009_row_level_security.sql): the HTTP API and command
// handlers run as APIRole, projectors as ProjectorRole; the role that runs migrations owns the tables.
const (
	APIRole       = "atlas_api"
	ProjectorRole = "atlas_projector"
)

// ConnectAs makes every connection of a pool switch to role (SET ROLE) before it is used, so that the
// role's privileges and row-level-security policies apply to everything the pool runs.
func ConnectAs(cfg *pgxpool.Config, role string) {
	prev := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		if prev != nil {
			if err := prev(ctx, conn); err != nil {
				return err
			}
		}
		if _, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
			return fmt.Errorf("switch to database role %s: %w", role, err)
		}
		return nil
	}
}

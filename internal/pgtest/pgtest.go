// Package pgtest gives tests a fresh, migrated PostgreSQL database of their own.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/migrations"
)

// BaseURL is the server tests use: ATLAS_TEST_DATABASE_URL, or the local PostgreSQL.
func BaseURL() string {
	if u := os.Getenv("ATLAS_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// NewURL creates a fresh migrated database and returns its URL; it is dropped when the test ends.
// Benchmarks run by scripts/bench.sh set ATLAS_BENCH_DATABASE_URL instead, so that they share one
// database with the pgbench baseline; that database is migrated and kept.
func NewURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("ATLAS_BENCH_DATABASE_URL"); u != "" {
		if _, err := migrations.Up(context.Background(), u, nil); err != nil {
			t.Fatalf("migrate bench database: %v", err)
		}
		return u
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "atlas_test_" + hex.EncodeToString(b)
	u, err := url.Parse(BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	admin := *u
	admin.Path = "/postgres"
	db := *u
	db.Path = "/" + name
	if err := migrations.EnsureDatabase(ctx, db.String()); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin.String())
		if err != nil {
			t.Logf("drop test database: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database: %v", err)
		}
	})
	if _, err := migrations.Up(ctx, db.String(), nil); err != nil {
		t.Fatalf("migrate test database: %v", err)
	}
	return db.String()
}

// NewPool creates a fresh migrated database and returns a pool on it, closed when the test ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	dbURL := NewURL(t)
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 40
	eventstore.CancelQueriesOnContextEnd(cfg) // as the app's pool
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

package migrations_test

import (
	"context"
	"net/url"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/internal/pgtest"
	"github.com/atlas-workspace/atlas/migrations"
)

// Migrating is safe to repeat and to run from several processes at once: the advisory lock makes
// each migration apply exactly once.
func TestMigrateTwiceAndConcurrently(t *testing.T) {
	ctx := context.Background()
	migrated := pgtest.NewURL(t) // created and migrated once already
	again, err := migrations.Up(ctx, migrated, nil)
	if err != nil || len(again) != 0 {
		t.Fatalf("second run applied %v (%v), want nothing", again, err)
	}

	// A database of its own, created here, migrated by four concurrent runners.
	u, _ := url.Parse(migrated)
	u.Path = u.Path + "_concurrent"
	fresh := u.String()
	if err := migrations.EnsureDatabase(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin := *u
		admin.Path = "/postgres"
		if conn, err := pgx.Connect(ctx, admin.String()); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{u.Path[1:]}.Sanitize()+" WITH (FORCE)")
			conn.Close(ctx)
		}
	})
	if err := migrations.EnsureDatabase(ctx, fresh); err != nil {
		t.Fatalf("EnsureDatabase on an existing database: %v", err)
	}
	var wg sync.WaitGroup
	applied := make([][]int64, 4)
	errs := make([]error, 4)
	for i := range applied {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = migrations.Up(ctx, fresh, nil)
		}()
	}
	wg.Wait()
	counts := map[int64]int{}
	for i := range applied {
		if errs[i] != nil {
			t.Fatalf("runner %d: %v", i, errs[i])
		}
		for _, v := range applied[i] {
			counts[v]++
		}
	}
	entries, _ := migrations.FS.ReadDir(".")
	sql := 0
	for _, e := range entries {
		if len(e.Name()) > 4 && e.Name()[len(e.Name())-4:] == ".sql" {
			sql++
		}
	}
	if len(counts) != sql {
		t.Fatalf("applied versions %v, want %d migrations", counts, sql)
	}
	for v, n := range counts {
		if n != 1 {
			t.Errorf("migration %d applied %d times", v, n)
		}
	}
}

package projections_test

import (
	"context"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/internal/pgtest"
	"github.com/atlas-workspace/atlas/migrations"
	"github.com/atlas-workspace/atlas/projections"
)

// BenchmarkPermissions measures the permission-checked queries over 100,000 spaces and 10,000 users
// (1,000 users own 55 spaces each, 9,000 own 5; one space in ten is public): a check (Queries.Space,
// one indexed lookup) and a full page of 50 (Queries.SpacesOf for a user with 55 spaces, one join),
// each as the API runs them (as migrations.APIRole, under row-level security) and as the owner (no
// row-level security), next to the check's bare lookup as one statement outside a transaction.
// Rows are loaded with COPY as the projectors would write them. Run with -benchtime 1x; it reports p50
// and p99 of 5,000 calls each.
func BenchmarkPermissions(b *testing.B) {
	const users, heavy, calls = 10_000, 1_000, 5_000
	dbURL := pgtest.NewURL(b)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL) // the migrating role: loads the rows, bypasses row-level security
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	apiCfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		b.Fatal(err)
	}
	migrations.ConnectAs(apiCfg, migrations.APIRole) // as the API runs: under row-level security
	apiPool, err := pgxpool.NewWithConfig(ctx, apiCfg)
	if err != nil {
		b.Fatal(err)
	}
	defer apiPool.Close()
	now := time.Now().UTC()
	userIDs := make([]uuid.UUID, users)
	var spaceRows, permRows [][]any
	spaceOwner := map[uuid.UUID]uuid.UUID{}
	var spaceIDs []uuid.UUID
	for u := range userIDs {
		userIDs[u] = uuid.Must(uuid.NewV7())
		owned := 5
		if u < heavy {
			owned = 55
		}
		for i := 0; i < owned; i++ {
			id := uuid.Must(uuid.NewV7())
			vis := "private"
			if rand.IntN(10) == 0 {
				vis = "public"
				permRows = append(permRows, []any{projections.Anyone, id, "space", "read"})
			}
			spaceRows = append(spaceRows, []any{id, userIDs[u], nil, false, "Space", "s-" + id.String()[:8], vis, int64(1), now, now})
			for _, p := range []string{"read", "write", "manage"} {
				permRows = append(permRows, []any{userIDs[u], id, "space", p})
			}
			spaceOwner[id] = userIDs[u]
			spaceIDs = append(spaceIDs, id)
		}
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"spaces"}, []string{"id", "owner_user_id", "org_id", "personal", "name", "slug",
		"visibility", "version", "created_at", "updated_at"}, pgx.CopyFromRows(spaceRows)); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"permissions"}, []string{"principal_id", "resource_id", "resource_type", "permission"},
		pgx.CopyFromRows(permRows)); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE spaces; ANALYZE permissions"); err != nil {
		b.Fatal(err)
	}
	api, bypass := projections.NewQueries(apiPool), projections.NewQueries(pool)
	measure := func(f func(i int) error) (p50, p99 float64) {
		lat := make([]time.Duration, calls)
		for i := range lat {
			start := time.Now()
			if err := f(i); err != nil {
				b.Fatal(err)
			}
			lat[i] = time.Since(start)
		}
		sort.Slice(lat, func(a, c int) bool { return lat[a] < lat[c] })
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		return ms(lat[calls/2]), ms(lat[calls*99/100])
	}
	// Checks: half on the viewer's own spaces (allowed), half on others' (mostly 404).
	checkArgs := func(i int) (viewer, space uuid.UUID) {
		space = spaceIDs[rand.IntN(len(spaceIDs))]
		viewer = spaceOwner[space]
		if i%2 == 1 {
			viewer = userIDs[rand.IntN(users)]
		}
		return viewer, space
	}
	check := func(q *projections.Queries) func(int) error {
		return func(i int) error {
			viewer, space := checkArgs(i)
			if _, err := q.Space(ctx, viewer, space); err != nil && domain.ErrorCode(err) != domain.CodeNotFound {
				return err
			}
			return nil
		}
	}
	list := func(q *projections.Queries) func(int) error {
		return func(int) error {
			page, err := q.SpacesOf(ctx, userIDs[rand.IntN(heavy)], nil, "", 50)
			if err == nil && len(page.Items) != 50 {
				b.Fatalf("a page of %d, want 50", len(page.Items))
			}
			return err
		}
	}
	// The baseline: the check's lookup alone, one statement on the pool, outside any transaction.
	rawCheck := func(i int) error {
		viewer, space := checkArgs(i)
		var ok bool
		return pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM permissions WHERE principal_id IN ($1, $2)
			AND permission = 'read' AND resource_id = $3)`, viewer, projections.Anyone, space).Scan(&ok)
	}
	for i := 0; i < b.N; i++ {
		r50, r99 := measure(rawCheck)
		b50, b99 := measure(check(bypass))
		c50, c99 := measure(check(api))
		bl50, bl99 := measure(list(bypass))
		l50, l99 := measure(list(api))
		b.ReportMetric(r50, "rawcheck_p50_ms")
		b.ReportMetric(r99, "rawcheck_p99_ms")
		b.ReportMetric(b50, "check_norls_p50_ms")
		b.ReportMetric(b99, "check_norls_p99_ms")
		b.ReportMetric(c50, "check_p50_ms")
		b.ReportMetric(c99, "check_p99_ms")
		b.ReportMetric(bl50, "list50_norls_p50_ms")
		b.ReportMetric(bl99, "list50_norls_p99_ms")
		b.ReportMetric(l50, "list50_p50_ms")
		b.ReportMetric(l99, "list50_p99_ms")
	}
}

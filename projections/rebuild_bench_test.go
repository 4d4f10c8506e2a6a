package projections_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/internal/pgtest"
	"github.com/atlas-workspace/atlas/migrations"
	"github.com/atlas-workspace/atlas/projections"
)

// BenchmarkRebuild measures the blue/green rebuild of the notes read model (notes and note_revisions,
// two rows per event) from ATLAS_BENCH_EVENTS note.created.v1 events (default 1,000,000) in 1,000
// spaces, while four readers query the live notes table 200 times a second in all, next to a raw
// binary COPY of the same rows (as PostgreSQL writes them out) into empty tables of the same shape
// (indexes included, kept up row by row as a plain COPY does) in the same database. Run with
// -benchtime 1x; it reports the first build's rate, the rebuild's rate, the COPY rate in events (row
// pairs) per second, the rebuild's ratio to COPY, the readers' p50/p99 and reads per second during
// the rebuild, and this process's CPU per event. ATLAS_PROJECTOR_BATCH sets the events per projector
// transaction (default 100, as in production).
func BenchmarkRebuild(b *testing.B) {
	n := envInt("ATLAS_BENCH_EVENTS", 1_000_000)
	batch := envInt("ATLAS_PROJECTOR_BATCH", 100)
	dbURL := pgtest.NewURL(b)
	ctx := context.Background()
	owner, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer owner.Close()
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		b.Fatal(err)
	}
	pcfg.MaxConns = 8
	migrations.ConnectAs(pcfg, migrations.ProjectorRole)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()

	// The log: n note.created.v1 events, written by SQL in chunks (the hash chain trigger runs per row).
	// Note ids are UUIDv7s in log order, as the application creates them; ATLAS_BENCH_IDS=random
	// makes them random (v4), which costs every B-tree insert a random leaf, COPY's as well.
	randomIDs := os.Getenv("ATLAS_BENCH_IDS") == "random"
	start := time.Now()
	const chunk = 50_000
	for from := 0; from < n; from += chunk {
		to := min(from+chunk, n)
		if _, err := owner.Exec(ctx, `INSERT INTO events (stream_type, stream_id, stream_version, event_id, event_type,
				schema_version, data, metadata, tenant_id, recorded_at)
			SELECT 'note', id, 1, gen_random_uuid(), 'note.created', 1,
				jsonb_build_object('note_id', id, 'space_id', space, 'title', 'Note ' || i,
					'body', 'Meeting notes number ' || i || E'\n\n- decisions\n- actions', 'created_at', now()),
				jsonb_build_object('actor_id', actor, 'tenant_id', tenant), tenant, now()
			FROM (SELECT i, CASE WHEN $3 THEN gen_random_uuid()
					-- A UUIDv7, as the application gives notes: a millisecond timestamp, then random bits.
					ELSE (lpad(to_hex(1800000000000 + i), 12, '0') || '7' || substr(md5(i::text), 1, 3)
						|| '8' || substr(md5(i::text), 4, 15))::uuid END AS id,
					('00000000-0000-7000-8000-' || lpad((i % 1000)::text, 12, '0'))::uuid AS space,
					'00000000-0000-7000-8000-aaaaaaaaaaaa'::uuid AS actor,
					'00000000-0000-7000-8000-bbbbbbbbbbbb'::uuid AS tenant
				FROM generate_series($1::int, $2::int - 1) i) g`, from, to, randomIDs); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := owner.Exec(ctx, `ANALYZE events`); err != nil {
		b.Fatal(err)
	}
	b.Logf("wrote %d events in %s", n, time.Since(start).Round(time.Millisecond))

	reg := eventstore.NewRegistry()
	commands.RegisterEvents(reg)
	signal := eventstore.NewSignal()
	store := eventstore.New(pool, reg, eventstore.NewSubjectKeys(pool, time.Minute), eventstore.Options{Signal: signal})
	// ATLAS_BENCH_LOG=1 shows the runtime's log (bulk catch-up, swap) with timestamps.
	var logOut io.Writer = io.Discard
	if os.Getenv("ATLAS_BENCH_LOG") != "" {
		logOut = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, nil))
	rt := projections.NewRuntime(pool, store, signal, log, projections.Options{BatchSize: batch, Admin: owner}, projections.Notes())
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = rt.Run(runCtx) }()
	defer func() { stop(); <-done }()
	head, err := store.Head(ctx)
	if err != nil {
		b.Fatal(err)
	}

	// The first build: the projector starts from the beginning of the log.
	start = time.Now()
	wctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	if err := rt.WaitFor(wctx, head, projections.NotesProjector); err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)

	// The rebuild, with a reader on the live table throughout.
	var mu sync.Mutex
	var lat []time.Duration
	readCtx, stopReading := context.WithCancel(ctx)
	var readers sync.WaitGroup
	// A steady 200 queries/s: serving traffic, not a load test that starves the rebuild of CPU. Four
	// readers of 50/s each, so that a slow query delays only its own reader's next one.
	const readers4, perReader = 4, 20 * time.Millisecond
	for r := range readers4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			tick := time.NewTicker(perReader)
			defer tick.Stop()
			for i := r; readCtx.Err() == nil; i += readers4 {
				select {
				case <-readCtx.Done():
					return
				case <-tick.C:
				}
				space := uuid.MustParse("00000000-0000-7000-8000-" + leftPad(strconv.Itoa(i%1000), 12))
				t0 := time.Now()
				rows, err := pool.Query(readCtx, `SELECT id, title, updated_at FROM notes WHERE space_id = $1 ORDER BY id LIMIT 50`, space)
				if err == nil {
					_, err = pgx.CollectRows(rows, pgx.RowToMap)
				}
				if err != nil {
					if readCtx.Err() == nil {
						b.Errorf("query during the rebuild: %v", err)
					}
					return
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	cpu0 := processCPU(b)
	start = time.Now()
	if _, err := rt.StartRebuild(ctx, projections.NotesProjector); err != nil {
		b.Fatal(err)
	}
	for {
		live, _, err := rt.FinishRebuildIfCaughtUp(ctx, projections.NotesProjector)
		if err != nil {
			b.Fatal(err)
		}
		if live {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling a status for the measurement's end, not synchronising
	}
	rebuild := time.Since(start)
	rebuildCPU := processCPU(b) - cpu0
	stopReading()
	readers.Wait()

	// The baseline: COPY of the same rows into empty copies of the two tables.
	for _, t := range []string{"notes", "note_revisions"} {
		if _, err := owner.Exec(ctx, `CREATE TABLE copy_`+t+` (LIKE `+t+` INCLUDING ALL)`); err != nil {
			b.Fatal(err)
		}
	}
	// The rows go in PostgreSQL's binary copy format, as PostgreSQL itself wrote them out (before
	// timing): the baseline is the server's COPY alone, with no client encoding at all.
	var copyTime time.Duration
	for _, t := range []string{"notes", "note_revisions"} {
		conn, err := owner.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var data bytes.Buffer
		if _, err := conn.Conn().PgConn().CopyTo(ctx, &data, `COPY `+t+` TO STDOUT (FORMAT binary)`); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := conn.Conn().PgConn().CopyFrom(ctx, &data, `COPY copy_`+t+` FROM STDIN (FORMAT binary)`); err != nil {
			b.Fatal(err)
		}
		copyTime += time.Since(t0)
		conn.Release()
	}

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	b.ReportMetric(rate(first), "first-build-events/s")
	b.ReportMetric(rate(rebuild), "rebuild-events/s")
	b.ReportMetric(rate(copyTime), "copy-events/s")
	b.ReportMetric(100*rate(rebuild)/rate(copyTime), "rebuild-%-of-copy")
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "read-p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "read-p99-ms")
	b.ReportMetric(float64(len(lat))/rebuild.Seconds(), "reads/s")
	// This process's CPU time per event during the rebuild (the readers' share included): steadier
	// than the rates on a shared machine, for comparing changes.
	b.ReportMetric(float64(rebuildCPU.Microseconds())/float64(n), "go-cpu-µs/event")
	b.Logf("%d events, batch %d: first build %s, rebuild %s (%d reads during it, p50 %s, p99 %s), COPY of the same rows %s",
		n, batch, first.Round(time.Millisecond), rebuild.Round(time.Millisecond), len(lat), pct(0.5), pct(0.99), copyTime.Round(time.Millisecond))
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func leftPad(s string, n int) string {
	for len(s) < n {
		s = "0" + s
	}
	return s
}

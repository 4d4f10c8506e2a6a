package projections_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/note"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/internal/pgtest"
	"github.com/atlas-workspace/atlas/migrations"
	"github.com/atlas-workspace/atlas/projections"
)

func (e env) count(t *testing.T, sql string) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e env) schemaExists(t *testing.T, name string) bool {
	return e.count(t, `SELECT count(*) FROM pg_namespace WHERE nspname = '`+name+`'`) > 0
}

// waitLive drives rebuilds to their end as the runtime's Watch would.
func waitLive(t *testing.T, rt *projections.Runtime, name string) {
	t.Helper()
	eventually(t, 20*time.Second, name+" live after its rebuild", func() bool {
		live, _, err := rt.FinishRebuildIfCaughtUp(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		return live
	})
}

// A rebuild fills copies while the live table keeps serving every row and keeps following the log;
// the swap leaves the same rows, and the copies' schema goes.
func TestBlueGreenRebuildKeepsServing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rt, _ := start(t, e, projections.Options{BatchSize: 5, Reconcile: 20 * time.Millisecond}, counter(nil))
	pos := e.appendCounts(t, 1, 300)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := rt.WaitFor(wctx, pos, "counter"); err != nil {
		t.Fatal(err)
	}

	// Readers count the live table throughout: it must never shrink.
	var stop atomic.Bool
	var minSeen atomic.Int64
	minSeen.Store(1 << 30)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			var n int64
			if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM applied`).Scan(&n); err != nil {
				t.Error(err)
				return
			}
			if n < minSeen.Load() {
				minSeen.Store(n)
			}
		}
	}()

	if _, err := rt.StartRebuild(ctx, "counter"); err != nil {
		t.Fatal(err)
	}
	if !e.schemaExists(t, "rebuild_counter") {
		t.Fatal("no copies were made")
	}
	// The copies get row-level security at the swap. A swap of an earlier release, which would not
	// enable it, ends by dropping the emptied rebuild schema without CASCADE: the marker table left in
	// that schema makes it fail (and roll back).
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA elsewhere; ALTER TABLE rebuild_counter.applied SET SCHEMA elsewhere`); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, `DROP SCHEMA rebuild_counter`)
	_ = tx.Rollback(ctx)
	if err == nil {
		t.Fatal("the rebuild schema could be dropped once the copies were moved out: an earlier release could swap them in")
	}
	// The live consumer keeps following the log during the rebuild.
	pos = e.appendCounts(t, 301, 320)
	if err := rt.WaitFor(wctx, pos, "counter"); err != nil {
		t.Fatal(err)
	}
	sts, err := rt.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sts[0].Status != "rebuilding" && sts[0].Rebuild == nil {
		// The rebuild may already be done on a fast machine; the swap below checks the result.
		t.Logf("status %+v", sts[0])
	}
	waitLive(t, rt, "counter")
	stop.Store(true)
	wg.Wait()
	if m := minSeen.Load(); m < 300 {
		t.Fatalf("a reader saw %d rows during the rebuild, want at least 300", m)
	}
	if got := e.applied(t); !equal(got, seq(1, 320)) {
		t.Fatalf("after the swap: %d rows, want 1..320", len(got))
	}
	if e.schemaExists(t, "rebuild_counter") || e.schemaExists(t, "retired_counter") {
		t.Fatal("the rebuild's schemas are left behind")
	}
	// The new live group goes on: the old group's checkpoint is gone, events still arrive.
	pos = e.appendCounts(t, 321, 330)
	if err := rt.WaitFor(wctx, pos, "counter"); err != nil {
		t.Fatal(err)
	}
	if got := e.applied(t); !equal(got, seq(1, 330)) {
		t.Fatalf("after the swap and more events: %d rows, want 1..330", len(got))
	}
	if n := e.count(t, `SELECT count(*) FROM projection_offsets WHERE consumer_group = 'counter_v1'`); n != 0 {
		t.Fatal("the retired group's checkpoint is left behind")
	}
}

// doubler is version 2 of counter: its table gains a column, its handler fills it.
func doubler() *projections.Projector {
	return &projections.Projector{
		Name: "counter", Version: 2, Tables: []string{"applied"},
		ShadowDDL: `ALTER TABLE applied ADD COLUMN doubled int NOT NULL`,
		Handlers: map[string]projections.Handler{
			"test.counted.v1": func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				n := r.Event.(Counted).N
				_, err := tx.Exec(ctx, `INSERT INTO applied (n, position, doubled) VALUES ($1, $2, $3)`, n, r.Position.GlobalPosition, 2*n)
				return err
			},
		},
	}
}

// A new projector version with a changed table is built beside the old one, which keeps serving (and,
// in a process still running the old version, following the log) until the swap; after it, the old
// version's consumer is retired and writes nothing to the new table.
func TestVersionBumpBuildsTheNewShapeBesideTheOld(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old, _ := start(t, e, projections.Options{Reconcile: 20 * time.Millisecond}, counter(nil))
	pos := e.appendCounts(t, 1, 100)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := old.WaitFor(wctx, pos, "counter"); err != nil {
		t.Fatal(err)
	}

	// A second process starts with version 2 while the first still runs version 1.
	next, _ := start(t, e, projections.Options{BatchSize: 10, Reconcile: 20 * time.Millisecond}, doubler())
	eventually(t, 10*time.Second, "the version 2 rebuild started", func() bool { return e.schemaExists(t, "rebuild_counter") || hasColumn(t, e, "doubled") })
	waitLive(t, next, "counter")
	if !hasColumn(t, e, "doubled") {
		t.Fatal("the live table lacks version 2's column")
	}
	pos = e.appendCounts(t, 101, 150)
	if err := next.WaitFor(wctx, pos, "counter"); err != nil {
		t.Fatal(err)
	}
	if got := e.applied(t); !equal(got, seq(1, 150)) {
		t.Fatalf("%d rows, want 1..150", len(got))
	}
	if n := e.count(t, `SELECT count(*) FROM applied WHERE doubled <> 2 * n`); n != 0 {
		t.Fatalf("%d rows not written by version 2", n)
	}
	sts, err := next.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sts[0].Version != 2 || sts[0].Status != "live" || sts[0].ConsumerGroup != "counter_v2_r1" {
		t.Fatalf("status %+v", sts[0])
	}
}

func hasColumn(t *testing.T, e env, col string) bool {
	return e.count(t, `SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'applied' AND column_name = '`+col+`'`) > 0
}

// Starting a rebuild again during one drops the first rebuild's copies and starts over.
func TestRebuildRestartsCleanly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rt, _ := start(t, e, projections.Options{BatchSize: 1, Reconcile: 20 * time.Millisecond}, counter(nil))
	pos := e.appendCounts(t, 1, 60)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := rt.WaitFor(wctx, pos, "counter"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := rt.StartRebuild(ctx, "counter"); err != nil {
			t.Fatal(err)
		}
	}
	waitLive(t, rt, "counter")
	if got := e.applied(t); !equal(got, seq(1, 60)) {
		t.Fatalf("%d rows, want 1..60", len(got))
	}
	sts, err := rt.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sts[0].ConsumerGroup != "counter_v1_r3" {
		t.Fatalf("live group %s, want the third rebuild's", sts[0].ConsumerGroup)
	}
	// Retired groups' subscribers may recreate their checkpoint once before they notice; they remove it.
	eventually(t, 10*time.Second, "only the live checkpoint left", func() bool {
		return e.count(t, `SELECT count(*) FROM projection_offsets`) == 1
	})
}

// A rebuild of notes catches up in bulk and ends with exactly the rows of an event-by-event build,
// both into a rebuild's copies (COPY, with the deleted spaces' notes left out in Go) and into live
// tables under row-level security (a first build: INSERT over arrays): notes edited and deleted, a
// space deleted and notes created in it afterwards (which must never appear), sealed notes of a
// personal space, and events the projector does not handle, in more than one chunk.
func TestBulkRebuildMatchesEventByEvent(t *testing.T) {
	owner := pgtest.NewPool(t)
	// The projectors' role, under row-level security, as in production.
	pcfg := owner.Config().Copy()
	migrations.ConnectAs(pcfg, migrations.ProjectorRole)
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg := eventstore.NewRegistry()
	commands.RegisterEvents(reg)
	signal := eventstore.NewSignal()
	store := eventstore.New(owner, reg, eventstore.NewSubjectKeys(owner, time.Minute), eventstore.Options{Signal: signal})
	ctx := context.Background()
	actor, person := uuid.New(), uuid.New()
	spaces := []uuid.UUID{uuid.New(), uuid.New(), uuid.New(), uuid.New()} // the last one is the person's
	var last eventstore.Position
	var batch []eventstore.StreamAppend
	flushes := 0
	flush := func() {
		if len(batch) == 0 {
			return
		}
		// Every third append has no actor (NULL created_by, edited_by).
		md := eventstore.Metadata{ActorID: &actor}
		if flushes++; flushes%3 == 0 {
			md.ActorID = nil
		}
		res, err := store.Append(ctx, eventstore.AppendRequest{Streams: batch, Metadata: md})
		if err != nil {
			t.Fatal(err)
		}
		last, batch = res.Position, nil
	}
	appendOne := func(typ string, id uuid.UUID, version int64, e domain.Event) {
		tenant := &actor
		if len(batch)%7 == 3 {
			tenant = nil // no tenant: the nil UUID in the read model
		}
		batch = append(batch, eventstore.StreamAppend{StreamType: typ, StreamID: id, ExpectedVersion: version - 1, TenantID: tenant, Events: []domain.Event{e}})
		if len(batch) == 50 {
			flush()
		}
	}
	// Times with nanoseconds: PostgreSQL keeps microseconds, every path must cut them the same way.
	now := time.Now().UTC().Truncate(time.Microsecond).Add(999 * time.Nanosecond)
	var notes []uuid.UUID
	for i := range 13000 {
		if i == 4000 {
			appendOne("space", spaces[2], 1, space.Deleted{SpaceID: spaces[2], Slug: "gone", DeletedAt: now})
		}
		if i%1000 == 500 {
			id := uuid.New()
			appendOne("space", id, 1, space.Created{SpaceID: id, OwnerUserID: &actor, Name: "other", Slug: fmt.Sprint("s", i), Visibility: "private", CreatedAt: now})
		}
		id := uuid.Must(uuid.NewV7())
		notes = append(notes, id)
		sp := spaces[i%len(spaces)]
		var subject *uuid.UUID
		if sp == spaces[3] {
			subject = &person
		}
		appendOne("note", id, 1, note.Created{NoteID: id, SpaceID: sp, SubjectID: subject, Title: fmt.Sprintf("n%d \"quoted\" ü", i), Body: "body\n", CreatedAt: now})
		if i%500 == 7 {
			flush() // the note edited must be in the log already
			appendOne("note", notes[i-5], 2, note.Edited{NoteID: notes[i-5], Title: "edited", Body: "again", EditedAt: now})
		}
		if i%700 == 9 {
			flush()
			appendOne("note", notes[i-1], 2, note.Deleted{NoteID: notes[i-1], DeletedAt: now})
		}
	}
	flush()
	dump := func() string {
		var out string
		if err := pool.QueryRow(ctx, `SELECT (SELECT string_agg(to_jsonb(n)::text, E'\n' ORDER BY id) FROM notes n) || E'\n--\n' ||
			(SELECT string_agg(to_jsonb(r)::text, E'\n' ORDER BY note_id, revision) FROM note_revisions r) || E'\n--\n' ||
			(SELECT string_agg(space_id::text, E'\n' ORDER BY space_id) FROM note_space_tombstones)`).Scan(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	run := func(opts projections.Options, p *projections.Projector) (*projections.Runtime, *bytes.Buffer, func()) {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelInfo}))
		// Chunks of 1,000 events: the space's deletion is in the fifth, after four chunks without
		// the late index.
		opts.Reconcile, opts.Admin, opts.BulkChunk = 20*time.Millisecond, owner, 1000
		rt := projections.NewRuntime(pool, store, signal, log, opts, p)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = rt.Run(runCtx) }()
		return rt, &logs, func() { stop(); <-done }
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	// The reference: event by event.
	rt, _, stop := run(projections.Options{EventByEvent: true}, projections.Notes())
	if err := rt.WaitFor(wctx, last, projections.NotesProjector); err != nil {
		t.Fatal(err)
	}
	stop()
	want := dump()
	var inDeleted, sealed int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE space_id = $1), count(*) FILTER (WHERE space_id = $2) FROM notes`,
		spaces[2], spaces[3]).Scan(&inDeleted, &sealed); err != nil || inDeleted != 0 || sealed == 0 {
		t.Fatalf("%d notes of the deleted space, %d of the personal one (%v)", inDeleted, sealed, err)
	}

	check := func(name string, logs *bytes.Buffer) {
		t.Helper()
		if got := dump(); got != want {
			t.Fatalf("%s: the bulk build differs from the event-by-event build (%d and %d bytes)", name, len(got), len(want))
		}
		if !strings.Contains(logs.String(), "bulk catch-up done") || strings.Contains(logs.String(), "bulk catch-up stopped") {
			t.Fatalf("%s: did not catch up in bulk:\n%s", name, logs.String())
		}
	}
	// The tables' indexes, by definition (the names of a rebuild's are PostgreSQL's own).
	indexes := func() string {
		var out string
		if err := pool.QueryRow(ctx, `SELECT string_agg(d, E'\n' ORDER BY d) FROM (SELECT regexp_replace(indexdef, '^CREATE (UNIQUE )?INDEX \S+', 'CREATE \1INDEX') d
			FROM pg_indexes WHERE schemaname = 'public' AND tablename IN ('notes', 'note_revisions', 'note_space_tombstones')) x`).Scan(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	wantIndexes := indexes()
	if !strings.Contains(wantIndexes, "(space_id, id)") {
		t.Fatalf("no index on space_id among\n%s", wantIndexes)
	}
	// A rebuild fills its copies without their secondary index, and builds it before the chunk with
	// the space's deletion (whose handler needs it); a projector that declares no event needing it
	// builds it once the bulk catch-up is done.
	noneIndexed := projections.Notes()
	noneIndexed.IndexedTypes = nil
	for _, c := range []struct {
		p     *projections.Projector
		bytes int // payload bytes per chunk at most
		why   string
	}{
		{projections.Notes(), 0, "the next chunk has events that need them"},
		{noneIndexed, 0, "the bulk catch-up is done"},
		// Chunks cut by size (about 60 note payloads each), not by count.
		{projections.Notes(), 10_000, "the next chunk has events that need them"},
	} {
		rt, logs, stop := run(projections.Options{BulkChunkBytes: c.bytes}, c.p)
		if _, err := rt.StartRebuild(ctx, projections.NotesProjector); err != nil {
			t.Fatal(err)
		}
		waitLive(t, rt, projections.NotesProjector)
		stop()
		check("rebuild", logs)
		if !strings.Contains(logs.String(), `msg="built the rebuild's secondary indexes" projector=notes consumer_group=`) ||
			!strings.Contains(logs.String(), ` indexes=1 why="`) ||
			!strings.Contains(logs.String(), `why="`+c.why+`"`) {
			t.Fatalf("rebuild: the secondary indexes were not built because %s:\n%s", c.why, logs.String())
		}
		if got := indexes(); got != wantIndexes {
			t.Fatalf("rebuild: the indexes are\n%s\nnot\n%s", got, wantIndexes)
		}
	}

	// A late index whose build fails (here: a division by zero in its expression, which leaves an
	// invalid index behind) holds the rebuild back: the error is logged at every try, the invalid
	// index is dropped and built again, and nothing is swapped in. Once the definition is gone (and
	// the invalid index with it), the rebuild goes on and is swapped in.
	{
		logs := &syncWriter{w: &bytes.Buffer{}}
		log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		opts := projections.Options{Reconcile: 20 * time.Millisecond, Admin: owner, BulkChunk: 1000}
		rt := projections.NewRuntime(pool, store, signal, log, opts, projections.Notes())
		if _, err := rt.StartRebuild(ctx, projections.NotesProjector); err != nil {
			t.Fatal(err)
		}
		if _, err := owner.Exec(ctx, `INSERT INTO rebuild_notes.late_indexes VALUES ('broken', 'CREATE INDEX broken ON rebuild_notes.notes USING btree ((1 / (version - 1)))')`); err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = rt.Run(runCtx) }()
		defer func() {
			if t.Failed() {
				t.Log(logs.String())
			}
		}()
		failures := func() (n int) {
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, `msg="build the rebuild's indexes" projector=notes consumer_group=notes_v1_r4`) &&
					strings.Contains(line, "ERROR: division by zero") {
					n++
				}
			}
			return n
		}
		eventually(t, 20*time.Second, "the failing index build tried three times", func() bool { return failures() >= 3 })
		stop()
		<-done
		if !strings.Contains(logs.String(), `msg="dropping an invalid index left by an earlier build" projector=notes consumer_group=notes_v1_r4 index=broken`) {
			t.Fatal("the invalid index was not dropped before the next try")
		}
		if live, _, err := rt.FinishRebuildIfCaughtUp(ctx, projections.NotesProjector); err != nil || live {
			t.Fatalf("swapped in without its indexes (%v)", err)
		}
		if _, err := owner.Exec(ctx, `DELETE FROM rebuild_notes.late_indexes WHERE name = 'broken'; DROP INDEX IF EXISTS rebuild_notes.broken`); err != nil {
			t.Fatal(err)
		}
		rt = projections.NewRuntime(pool, store, signal, log, opts, projections.Notes())
		runCtx, stop = context.WithCancel(ctx)
		done = make(chan struct{})
		go func() { defer close(done); _ = rt.Run(runCtx) }()
		waitLive(t, rt, projections.NotesProjector)
		stop()
		<-done
		if got := dump(); got != want {
			t.Fatalf("rebuild after a failed index build: the rows differ from the event-by-event build")
		}
		if got := indexes(); got != wantIndexes {
			t.Fatalf("rebuild after a failed index build: the indexes are\n%s\nnot\n%s", got, wantIndexes)
		}
	}

	// The swap waits for the late indexes, even with the rebuild's checkpoint where it could swap.
	{
		rt := projections.NewRuntime(pool, store, signal, slog.New(slog.DiscardHandler), projections.Options{Admin: owner}, projections.Notes())
		if _, err := rt.StartRebuild(ctx, projections.NotesProjector); err != nil {
			t.Fatal(err)
		}
		if _, err := owner.Exec(ctx, `UPDATE projection_offsets s SET offset_acked = l.offset_acked, last_processed_transaction_id = l.last_processed_transaction_id
			FROM projector_status st, projection_offsets l
			WHERE st.name = 'notes' AND s.consumer_group = st.shadow_group AND l.consumer_group = st.live_group`); err != nil {
			t.Fatal(err)
		}
		if live, _, err := rt.FinishRebuildIfCaughtUp(ctx, projections.NotesProjector); err != nil || live {
			t.Fatalf("swapped in without its late indexes (%v)", err)
		}
		if _, err := owner.Exec(ctx, `CREATE INDEX ON rebuild_notes.notes (space_id, id); DROP TABLE rebuild_notes.late_indexes`); err != nil {
			t.Fatal(err)
		}
		if live, _, err := rt.FinishRebuildIfCaughtUp(ctx, projections.NotesProjector); err != nil || !live {
			t.Fatalf("not swapped in once the late indexes were gone (%v)", err)
		}
		if got := indexes(); got != wantIndexes {
			t.Fatalf("swapped in: the indexes are\n%s\nnot\n%s", got, wantIndexes)
		}
	}

	// A first build into the live tables, which have row-level security.
	if _, err := owner.Exec(ctx, `TRUNCATE notes, note_revisions, note_space_tombstones;
		DELETE FROM projection_offsets; DELETE FROM projector_status`); err != nil {
		t.Fatal(err)
	}
	rt, logs, stop := run(projections.Options{}, projections.Notes())
	defer stop()
	if err := rt.WaitFor(wctx, last, projections.NotesProjector); err != nil {
		t.Fatal(err)
	}
	check("first build", logs)
}

// syncWriter serialises writes to w, and reads of it with String.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// String is what was written so far.
func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

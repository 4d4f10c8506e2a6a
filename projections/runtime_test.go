package projections_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/internal/pgtest"
	"github.com/atlas-workspace/atlas/projections"
)

type Counted struct {
	N int `json:"n"`
}

func (Counted) EventName() string { return "test.counted.v1" }

type env struct {
	pool   *pgxpool.Pool
	store  *eventstore.Store
	signal *eventstore.Signal
}

func newEnv(t *testing.T) env {
	pool := pgtest.NewPool(t)
	reg := eventstore.NewRegistry()
	eventstore.Register[Counted](reg)
	signal := eventstore.NewSignal()
	store := eventstore.New(pool, reg, eventstore.NewSubjectKeys(pool, time.Minute), eventstore.Options{Signal: signal})
	if _, err := pool.Exec(context.Background(), `CREATE TABLE applied (n int PRIMARY KEY, position bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return env{pool: pool, store: store, signal: signal}
}

func (e env) appendCounts(t *testing.T, from, to int) eventstore.Position {
	t.Helper()
	var last eventstore.Position
	for n := from; n <= to; n++ {
		res, err := e.store.Append(context.Background(), eventstore.AppendRequest{
			Streams: []eventstore.StreamAppend{{StreamType: "test", StreamID: uuid.New(), Events: []domain.Event{Counted{N: n}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		last = res.Position
	}
	return last
}

func (e env) applied(t *testing.T) []int {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT n FROM applied ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// counter is a projector whose handler can be made to fail.
func counter(fail func(n int, attempt int) error) *projections.Projector {
	var mu sync.Mutex
	attempts := map[int]int{}
	return &projections.Projector{
		Name: "counter", Version: 1, Tables: []string{"applied"},
		Handlers: map[string]projections.Handler{
			"test.counted.v1": func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				n := r.Event.(Counted).N
				if _, err := tx.Exec(ctx, `INSERT INTO applied (n, position) VALUES ($1, $2)`, n, r.Position.GlobalPosition); err != nil {
					return err
				}
				mu.Lock()
				attempts[n]++
				a := attempts[n]
				mu.Unlock()
				if fail != nil {
					return fail(n, a)
				}
				return nil
			},
		},
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t *testing.T, e env, opts projections.Options, ps ...*projections.Projector) (*projections.Runtime, func()) {
	t.Helper()
	if opts.Fallback == 0 {
		opts.Fallback = 200 * time.Millisecond
	}
	rt := projections.NewRuntime(e.pool, e.store, e.signal, quietLog(), opts, ps...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := rt.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	stop := func() { cancel(); <-done }
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			stop()
		}
	})
	return rt, stop
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestProjectorAppliesEveryEventOnceAndWaitForSeesIt(t *testing.T) {
	e := newEnv(t)
	rt, _ := start(t, e, projections.Options{}, counter(nil))
	pos := e.appendCounts(t, 1, 30)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rt.WaitFor(ctx, pos, "counter"); err != nil {
		t.Fatalf("WaitFor: %v", err)
	}
	if got := e.applied(t); !equal(got, seq(1, 30)) {
		t.Fatalf("applied %v, want 1..30 in log order", got)
	}
	cp, err := rt.Checkpoint(ctx, "counter")
	if err != nil || cp != pos {
		t.Fatalf("checkpoint %v (%v), want %v", cp, err, pos)
	}
}

func TestWaitForGivesUpWhenTheProjectorIsBehind(t *testing.T) {
	e := newEnv(t)
	rt := projections.NewRuntime(e.pool, e.store, e.signal, quietLog(), projections.Options{}, counter(nil))
	pos := e.appendCounts(t, 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := rt.WaitFor(ctx, pos, "counter"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor on a stopped projector = %v, want a deadline error", err)
	}
}

// A failed attempt's writes are rolled back to its savepoint; the retry applies the event once.
func TestFailedAttemptLeavesNothingBehind(t *testing.T) {
	e := newEnv(t)
	var failures atomic.Int32
	rt, _ := start(t, e, projections.Options{RetryBackoff: 10 * time.Millisecond}, counter(func(n, attempt int) error {
		if n == 5 && attempt == 1 {
			failures.Add(1)
			return errors.New("transient")
		}
		return nil
	}))
	pos := e.appendCounts(t, 1, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt.WaitFor(ctx, pos, "counter"); err != nil {
		t.Fatal(err)
	}
	if got := e.applied(t); !equal(got, seq(1, 10)) || failures.Load() != 1 {
		t.Fatalf("applied %v after %d failures, want 1..10 after 1", got, failures.Load())
	}
}

// A projector that keeps failing stops with status failed and the event and error recorded; it never
// skips the event, and once fixed it continues from exactly there.
func TestProjectorThatKeepsFailingStopsWithoutSkipping(t *testing.T) {
	e := newEnv(t)
	var broken atomic.Bool
	broken.Store(true)
	p := counter(func(n, _ int) error {
		if n == 4 && broken.Load() {
			return errors.New("cannot apply 4")
		}
		return nil
	})
	rt, stop := start(t, e, projections.Options{MaxAttempts: 3, RetryBackoff: 5 * time.Millisecond}, p)
	e.appendCounts(t, 1, 8)
	ctx := context.Background()
	var st projections.Status
	eventually(t, 10*time.Second, "status failed", func() bool {
		sts, err := rt.Statuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st = sts[0]
		return st.Status == "failed"
	})
	if st.LastError == nil || !strings.Contains(*st.LastError, "cannot apply 4") || st.FailedPosition == nil || st.Attempts != 3 {
		t.Fatalf("failed status = %+v", st)
	}
	if got := e.applied(t); !equal(got, seq(1, 3)) {
		t.Fatalf("applied %v, want 1..3 (nothing past the failing event)", got)
	}
	// Lag counts readable events; the cluster-wide horizon may hold the last ones back for a moment.
	eventually(t, 10*time.Second, "lag of 5 events", func() bool {
		sts, err := rt.Statuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return sts[0].LagEvents == 5
	})
	stop()

	broken.Store(false)
	rt, _ = start(t, e, projections.Options{}, p)
	eventually(t, 10*time.Second, "all applied after the fix", func() bool { return len(e.applied(t)) == 8 })
	if got := e.applied(t); !equal(got, seq(1, 8)) {
		t.Fatalf("applied %v, want 1..8", got)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go rt.Watch(wctx)
	eventually(t, 10*time.Second, "failure record cleared once past the failing event", func() bool {
		sts, err := rt.Statuses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return sts[0].Status == "live" && sts[0].LastError == nil && sts[0].FailedPosition == nil
	})
}

// A projector whose connection dies mid-batch (as in a crash) loses nothing and applies nothing twice:
// the batch's writes and checkpoint roll back together and are redone.
func TestConnectionLossMidBatchIsRedoneExactlyOnce(t *testing.T) {
	e := newEnv(t)
	var killed atomic.Bool
	p := counter(nil)
	inner := p.Handlers["test.counted.v1"]
	p.Handlers["test.counted.v1"] = func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
		if r.Event.(Counted).N == 7 && killed.CompareAndSwap(false, true) {
			_, err := tx.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
			if err == nil {
				return errors.New("connection should have died")
			}
			return err
		}
		return inner(ctx, tx, r)
	}
	pos := e.appendCounts(t, 1, 12)
	rt, _ := start(t, e, projections.Options{RetryBackoff: 5 * time.Millisecond}, p)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := rt.WaitFor(ctx, pos, "counter"); err != nil {
		t.Fatal(err)
	}
	if got := e.applied(t); !equal(got, seq(1, 12)) || !killed.Load() {
		t.Fatalf("applied %v (killed %v), want 1..12", got, killed.Load())
	}
}

func TestRebuildStartsOverAndComesBackLive(t *testing.T) {
	e := newEnv(t)
	rt, _ := start(t, e, projections.Options{}, counter(nil))
	pos := e.appendCounts(t, 1, 20)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := rt.WaitFor(ctx, pos, "counter"); err != nil {
		t.Fatal(err)
	}
	before := e.applied(t)
	target, err := rt.StartRebuild(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if pos.Less(target) {
		t.Fatalf("rebuild target %v is past the last event %v", target, pos)
	}
	eventually(t, 10*time.Second, "rebuild finished", func() bool {
		live, _, err := rt.FinishRebuildIfCaughtUp(ctx, "counter")
		if err != nil {
			t.Fatal(err)
		}
		return live
	})
	if after := e.applied(t); !equal(before, after) {
		t.Fatalf("after rebuild %v, before %v", after, before)
	}
	if _, err := rt.StartRebuild(ctx, "nope"); err == nil {
		t.Fatal("rebuilding an unknown projector must fail")
	}
}

// Idle projectors wake on an append at once, not at the fallback poll.
func TestIdleProjectorWakesOnAppend(t *testing.T) {
	e := newEnv(t)
	rt, _ := start(t, e, projections.Options{Fallback: 10 * time.Second}, counter(nil))
	e.appendCounts(t, 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 2; i <= 20; i++ {
		pos := e.appendCounts(t, i, i)
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		err := rt.WaitFor(wctx, pos, "counter")
		wcancel()
		if err != nil {
			t.Fatalf("event %d not applied within 2 s with a 10 s fallback poll: %v", i, err)
		}
	}
}

// A projector in another process (its own Signal) wakes on the coalesced NOTIFY of the appending
// process, not at its fallback poll.
func TestProjectorInAnotherProcessWakesOnNotify(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The appending process: e.store signals e.signal; its announcer turns that into NOTIFYs.
	go eventstore.NewAnnouncer(e.pool, e.signal, 5*time.Millisecond, quietLog()).Run(ctx)
	// The consuming process: its own signal, fed only by LISTEN.
	remote := eventstore.NewSignal()
	go eventstore.Listen(ctx, e.pool, remote, quietLog())
	rt := projections.NewRuntime(e.pool, e.store, remote, quietLog(), projections.Options{Fallback: 10 * time.Second}, counter(nil))
	done := make(chan struct{})
	go func() { defer close(done); _ = rt.Run(ctx) }()
	defer func() { cancel(); <-done }()

	e.appendCounts(t, 1, 1)
	for i := 1; i <= 10; i++ {
		pos := e.appendCounts(t, i+1, i+1)
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		err := rt.WaitFor(wctx, pos, "counter")
		wcancel()
		if err != nil {
			t.Fatalf("event %d not applied within 2 s by the other process (fallback poll 10 s): %v", i+1, err)
		}
	}
}

// A handler that panics, overruns its timeout (whether it then fails or returns nil) or is cut off
// mid-query leaves nothing behind: its savepoint is rolled back, the events acknowledged before it in
// the batch still commit (they are not redone), and the retry applies the event once.
func TestPanicAndTimeoutAreRolledBack(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	attempts := map[int]int{}
	p := counter(func(n, attempt int) error {
		mu.Lock()
		attempts[n] = attempt
		mu.Unlock()
		if n == 3 && attempt == 1 {
			panic("boom")
		}
		return nil
	})
	inner := p.Handlers["test.counted.v1"]
	var overran, returnedNil, cutOff atomic.Bool
	p.Handlers["test.counted.v1"] = func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
		if err := inner(ctx, tx, r); err != nil {
			return err
		}
		switch n := r.Event.(Counted).N; {
		case n == 5 && overran.CompareAndSwap(false, true):
			<-ctx.Done() // overrun, then report the timeout
			return ctx.Err()
		case n == 6 && returnedNil.CompareAndSwap(false, true):
			<-ctx.Done() // overrun, then claim success anyway
			return nil
		case n == 7 && cutOff.CompareAndSwap(false, true):
			_, err := tx.Exec(ctx, `SELECT pg_sleep(30)`) // a query still running at the timeout
			return err
		}
		return nil
	}
	pos := e.appendCounts(t, 1, 9)
	rt, _ := start(t, e, projections.Options{RetryBackoff: 5 * time.Millisecond, HandlerTimeout: 300 * time.Millisecond}, p)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rt.WaitFor(ctx, pos, "counter"); err != nil {
		t.Fatal(err)
	}
	if got := e.applied(t); !equal(got, seq(1, 9)) || !overran.Load() || !returnedNil.Load() || !cutOff.Load() {
		t.Fatalf("applied %v, want 1..9 each once", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for n, want := range map[int]int{1: 1, 2: 1, 3: 2, 4: 1, 5: 2, 6: 2, 7: 2, 8: 1, 9: 1} {
		if attempts[n] != want {
			t.Errorf("event %d handled %d times, want %d (earlier events of a batch are not redone)", n, attempts[n], want)
		}
	}
}

// Package projections runs projectors: each one a watermill-sql consumer group over the events table
// whose read-model writes and checkpoint commit in the same PostgreSQL transaction. It also holds every
// read model and the queries over them.
package projections

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/eventstore"
)

// Handler applies one event to a projector's tables inside tx (a savepoint of the consuming
// transaction). It must be deterministic: the same events must always produce the same rows, so a
// rebuild reproduces the read model exactly. It must be short: the consuming transaction holds back
// the snapshot horizon of every subscriber.
type Handler func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error

// Projector is a named, versioned set of handlers that owns its tables.
type Projector struct {
	Name     string
	Version  int
	Tables   []string           // its read model: rebuilt into fresh copies, then swapped in
	Handlers map[string]Handler // by current event name, e.g. "space.created.v1"
	// ShadowDDL turns copies of the live tables (the previous version's shape) into this version's
	// shape before a rebuild fills them, e.g. "ALTER TABLE api_keys ADD COLUMN ...". It runs with the
	// rebuild's schema first on the search path, so unqualified names are the copies.
	ShadowDDL string
	// Bulk, when set, applies a run of consecutive events whose current names are in BulkTypes in one
	// call, with the same effect on the tables as their Handlers one by one (one INSERT over arrays,
	// say). A consumer group that starts far behind the log (a rebuild) catches up with it in large
	// chunks (bulkCatchUp). canCopy says that none of the projector's tables has row-level security
	// enabled, as a rebuild's copies until they are swapped in: COPY works (it refuses tables under
	// row-level security), and it is the fastest way into a table.
	Bulk      func(ctx context.Context, tx pgx.Tx, recs []eventstore.Record, canCopy bool) error
	BulkTypes map[string]bool
	// LateIndexes, for a projector with Bulk, fills a rebuild's copies without their secondary
	// indexes (those not unique and behind no constraint), which COPY would otherwise update row by
	// row, and builds them once the bulk catch-up is done, or before it applies a chunk holding an
	// event of IndexedTypes: those whose handlers need the secondary indexes (to find rows by
	// something other than a unique key). The copies always have them before the rebuild goes on
	// event by event, and before the swap.
	LateIndexes  bool
	IndexedTypes map[string]bool
	// InPlaceRebuild empties the live tables and replays into them instead of building copies. For
	// work queues that other components must see filling up (the search projector's), not for read
	// models that queries use.
	InPlaceRebuild bool
}

// ConsumerGroup is the checkpoint key in projection_offsets of the projector's first build of its
// current version; a rebuild runs under its own group (see StartRebuild).
func (p *Projector) ConsumerGroup() string { return fmt.Sprintf("%s_v%d", p.Name, p.Version) }

// Options tune the runtime.
type Options struct {
	BatchSize    int           // events per consuming transaction (default 100)
	Fallback     time.Duration // longest wait for new events without a signal (default 1 s)
	MaxAttempts  int           // failed attempts on one event before the projector stops (default 5)
	RetryBackoff time.Duration // first wait between attempts, doubled each time (default 100 ms)
	// HandlerTimeout bounds one handler call (default 30 s); past it the attempt fails and is rolled back.
	HandlerTimeout time.Duration
	OnBatch        func(projector string, events int, elapsed time.Duration)
	// Admin is a connection pool of the tables' owner, for the DDL of rebuilds (fresh copies of a
	// projector's tables, and the swap). nil: the runtime's own pool.
	Admin *pgxpool.Pool
	// Reconcile is how often each projector checks which consumer groups it should run (a rebuild
	// started by another process, a finished one); default 1 s.
	Reconcile time.Duration
	// EventByEvent turns bulk catch-up off: every group goes through the log one event at a time, as
	// a reference for tests of the bulk paths.
	EventByEvent bool
	// BulkChunk is how many events a bulk catch-up applies per transaction at most (default 20,000),
	// BulkChunkBytes how many bytes of payload (default 64 MiB; a single larger event goes alone).
	BulkChunk, BulkChunkBytes int
}

// Runtime runs projectors and answers questions about their progress.
type Runtime struct {
	pool       *pgxpool.Pool
	store      *eventstore.Store
	signal     *eventstore.Signal
	log        *slog.Logger
	opts       Options
	projectors map[string]*Projector
	order      []string
	// reconcile wakes a projector's supervisor before its next periodic check (a rebuild started in
	// this process starts its consumer at once).
	reconcile map[string]chan struct{}
}

// NewRuntime returns a runtime for the given projectors.
func NewRuntime(pool *pgxpool.Pool, store *eventstore.Store, signal *eventstore.Signal, log *slog.Logger, opts Options, ps ...*Projector) *Runtime {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 100
	}
	if opts.Fallback <= 0 {
		opts.Fallback = time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = 100 * time.Millisecond
	}
	if opts.HandlerTimeout <= 0 {
		opts.HandlerTimeout = 30 * time.Second
	}
	if opts.BulkChunk <= 0 {
		opts.BulkChunk = bulkChunk
	}
	if opts.BulkChunkBytes <= 0 {
		opts.BulkChunkBytes = bulkChunkBytes
	}
	if opts.Admin == nil {
		opts.Admin = pool
	}
	if opts.Reconcile <= 0 {
		opts.Reconcile = time.Second
	}
	rt := &Runtime{pool: pool, store: store, signal: signal, log: log, opts: opts, projectors: map[string]*Projector{},
		reconcile: map[string]chan struct{}{}}
	for _, p := range ps {
		rt.reconcile[p.Name] = make(chan struct{}, 1)
		rt.projectors[p.Name] = p
		rt.order = append(rt.order, p.Name)
	}
	return rt
}

// Projector returns the named projector, or nil.
func (rt *Runtime) Projector(name string) *Projector { return rt.projectors[name] }

// Names returns the projectors' names in registration order.
func (rt *Runtime) Names() []string { return append([]string(nil), rt.order...) }

// Run consumes events with every projector until ctx ends. On cancellation each projector finishes
// the event in hand, commits its batch and returns; Run returns when all have.
func (rt *Runtime) Run(ctx context.Context) error {
	return rt.RunOnly(ctx, rt.order...)
}

// RunOnly is Run for the named projectors.
func (rt *Runtime) RunOnly(ctx context.Context, names ...string) error {
	for _, n := range names {
		if rt.projectors[n] == nil {
			return fmt.Errorf("unknown projector %q", n)
		}
	}
	if err := rt.ensureStatus(ctx, names...); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, n := range names {
		p := rt.projectors[n]
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt.supervise(ctx, p)
		}()
	}
	wg.Wait()
	return nil
}

// ensureStatus creates the named projectors' status rows and gives those that failed a fresh set of
// attempts: the process starting them may carry the fix for what made them fail. A projector seen for
// the first time starts at version 1, the shape its migration created. A projector whose code is of a
// newer version than its live tables gets a rebuild into new tables, while the live ones keep serving.
func (rt *Runtime) ensureStatus(ctx context.Context, names ...string) error {
	for _, n := range names {
		p := rt.projectors[n]
		var live int
		var shadow *int
		err := rt.pool.QueryRow(ctx, `
			INSERT INTO projector_status (name, version, status, live_group) VALUES ($1, 1, 'live', $1 || '_v1')
			ON CONFLICT (name) DO UPDATE SET
				status = CASE WHEN projector_status.status <> 'failed' THEN projector_status.status
				              WHEN projector_status.rebuild_target_position IS NOT NULL THEN 'rebuilding'
				              ELSE 'live' END,
				attempts = 0, updated_at = now()
			RETURNING version, shadow_version`, p.Name).Scan(&live, &shadow)
		if err != nil {
			return fmt.Errorf("projector %s status: %w", p.Name, err)
		}
		switch {
		case live == p.Version || (shadow != nil && *shadow == p.Version):
		case live > p.Version:
			rt.log.Warn("projector tables are of a newer version than this program; it will not write to them",
				"projector", p.Name, "tables_version", live, "program_version", p.Version)
		default:
			rt.log.Info("projector version changed: building the new version into new tables while the old ones serve",
				"projector", p.Name, "from", live, "to", p.Version)
			if _, err := rt.StartRebuild(ctx, p.Name); err != nil {
				return err
			}
			// On an empty log (a new database) the copies are complete at once.
			if _, _, err := rt.FinishRebuildIfCaughtUp(ctx, p.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// handlerError is a failure of a projector's handler on one event.
type handlerError struct {
	position  int64
	eventType string
	err       error
}

func (e *handlerError) Error() string {
	return fmt.Sprintf("event %d (%s): %v", e.position, e.eventType, e.err)
}

// errRetired stops a consumer group that is neither the live nor the rebuilding generation of its
// projector any more (its rebuild was swapped in, restarted or replaced).
var errRetired = errors.New("consumer group retired")

// generation is what a projector's status row says about its consumer groups.
type generation struct {
	version       int
	liveGroup     string
	shadowGroup   *string
	shadowVersion *int
}

func (rt *Runtime) generation(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string, lock bool) (generation, error) {
	var g generation
	sql := `SELECT version, live_group, shadow_group, shadow_version FROM projector_status WHERE name = $1`
	if lock {
		sql += ` FOR SHARE`
	}
	err := q.QueryRow(ctx, sql, name).Scan(&g.version, &g.liveGroup, &g.shadowGroup, &g.shadowVersion)
	return g, err
}

// groups are the consumer groups this program should run for p: the live one when the live tables
// are of p's version, and the rebuild's when it builds p's version.
func (g generation) groups(p *Projector) []string {
	var out []string
	if g.version == p.Version {
		out = append(out, g.liveGroup)
	}
	if g.shadowGroup != nil && g.shadowVersion != nil && *g.shadowVersion == p.Version {
		out = append(out, *g.shadowGroup)
	}
	return out
}

// supervise runs p's consumer groups, checking every Reconcile interval for a rebuild started or
// finished elsewhere, until ctx ends.
func (rt *Runtime) supervise(ctx context.Context, p *Projector) {
	log := rt.log.With("projector", p.Name)
	var mu sync.Mutex
	running := map[string]bool{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		g, err := rt.generation(ctx, rt.pool, p.Name, false)
		if err != nil && ctx.Err() == nil {
			log.Error("read projector generation", "error", err)
		}
		if err == nil && g.shadowGroup != nil {
			// Swap a rebuild in as soon as it has caught up (the check is cheap; the swap locks).
			if ok, err := rt.rebuildCaughtUp(ctx, p.Name); err != nil && ctx.Err() == nil {
				log.Warn("check rebuild", "error", err)
			} else if ok {
				if _, err := rt.swap(ctx, p); err != nil && ctx.Err() == nil {
					log.Warn("swap in rebuilt tables; will retry", "error", err)
				}
			}
		}
		if err == nil {
			for _, group := range g.groups(p) {
				mu.Lock()
				if running[group] {
					mu.Unlock()
					continue
				}
				running[group] = true
				mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					rt.runGroup(ctx, p, group, log.With("consumer_group", group))
					mu.Lock()
					delete(running, group)
					mu.Unlock()
				}()
			}
		}
		select {
		case <-ctx.Done():
		case <-rt.reconcile[p.Name]:
		case <-time.After(rt.opts.Reconcile):
		}
	}
}

// runGroup consumes with one consumer group of p until ctx ends or the group is retired, retrying
// failed handlers with backoff and stopping the projector after MaxAttempts failures on one event.
func (rt *Runtime) runGroup(ctx context.Context, p *Projector, group string, log *slog.Logger) {
	var seen atomic.Int64
	bulk := p.Bulk != nil && !rt.opts.EventByEvent
	for ctx.Err() == nil {
		if rt.waitWhileFailed(ctx, p) != nil {
			return
		}
		var err error
		if bulk {
			// Catching up from far behind in large chunks; then (or after any error, which this run
			// of the group does not retry in bulk) event by event, where failures are handled one by one.
			err = rt.bulkCatchUp(ctx, p, group, log)
			bulk = false
			if errors.Is(err, errRetired) {
				continue // consume notices it too, and cleans up
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("bulk catch-up stopped; going on event by event", "error", err)
			}
		}
		// A rebuild's secondary indexes, if its bulk catch-up left any to build (a failure in it, or
		// no bulk catch-up at all), before it goes on event by event.
		if _, err = rt.buildLateIndexes(ctx, p, group, log, "before going on event by event"); err != nil {
			if ctx.Err() == nil {
				if errors.Is(err, errIndexBusy) {
					log.Info("waiting for another process to build the rebuild's indexes", "error", err)
				} else {
					log.Error("build the rebuild's indexes", "error", err)
				}
				sleep(ctx, time.Second)
			}
			continue
		}
		err = rt.consume(ctx, p, group, &seen, log)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errRetired) {
			// Its subscriber may have recreated its checkpoint row before it noticed; remove it.
			if _, err := rt.pool.Exec(context.WithoutCancel(ctx), `DELETE FROM projection_offsets WHERE consumer_group = $1
				AND NOT EXISTS (SELECT 1 FROM projector_status WHERE live_group = $1 OR shadow_group = $1)`, group); err != nil {
				log.Warn("remove the retired group's checkpoint", "error", err)
			}
			log.Info("consumer group retired")
			return
		}
		var he *handlerError
		if !errors.As(err, &he) {
			log.Error("subscriber stopped", "error", err)
			sleep(ctx, time.Second)
			continue
		}
		attempts, err := rt.recordFailure(ctx, p, he)
		if err != nil {
			log.Error("record projector failure", "error", err)
			sleep(ctx, time.Second)
			continue
		}
		if attempts >= rt.opts.MaxAttempts {
			log.Error("projector failed; it stays stopped until restarted or rebuilt",
				"position", he.position, "event_type", he.eventType, "attempts", attempts, "error", he.err)
			continue
		}
		wait := rt.opts.RetryBackoff << (attempts - 1)
		log.Warn("projector handler failed; retrying", "position", he.position, "event_type", he.eventType,
			"attempt", attempts, "retry_in", wait, "error", he.err)
		sleep(ctx, wait)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (rt *Runtime) recordFailure(ctx context.Context, p *Projector, he *handlerError) (int, error) {
	var attempts int
	err := rt.pool.QueryRow(ctx, `
		UPDATE projector_status SET
			attempts = CASE WHEN failed_position IS NOT DISTINCT FROM $2 THEN attempts + 1 ELSE 1 END,
			failed_position = $2, failed_event_type = $3, last_error = $4, updated_at = now()
		WHERE name = $1 RETURNING attempts`, p.Name, he.position, he.eventType, he.err.Error()).Scan(&attempts)
	if err != nil {
		return 0, err
	}
	if attempts >= rt.opts.MaxAttempts {
		_, err = rt.pool.Exec(ctx, `UPDATE projector_status SET status = 'failed', updated_at = now() WHERE name = $1`, p.Name)
	}
	return attempts, err
}

// waitWhileFailed blocks while the projector's status is failed (an admin's rebuild clears it).
func (rt *Runtime) waitWhileFailed(ctx context.Context, p *Projector) error {
	for {
		var status string
		err := rt.pool.QueryRow(ctx, `SELECT status FROM projector_status WHERE name = $1`, p.Name).Scan(&status)
		if err == nil && status != "failed" {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			rt.log.Error("read projector status", "projector", p.Name, "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// consume runs one subscriber until ctx ends (nil) or a handler fails (*handlerError). Either way the
// events acknowledged so far in the current batch are committed with their checkpoint, and the failing
// event is not: it is delivered again on the next attempt. The transaction is never held open while
// waiting to retry.
func (rt *Runtime) consume(ctx context.Context, p *Projector, group string, seen *atomic.Int64, log *slog.Logger) error {
	stop := make(chan struct{})
	waiter := &eventstore.Waiter{
		Signal: rt.signal, Fallback: rt.opts.Fallback, Retry: time.Second, Seen: seen.Load, Stop: stop,
		OnError: func(err error) {
			if ctx.Err() == nil {
				log.Warn("poll events", "error", err)
			}
		},
	}
	db := watchedBeginner{Beginner: wsql.BeginnerFromPgx(rt.pool), failed: func(err error) {
		waiter.CommitFailed(err)
		log.Error("commit of a projector batch failed; its events will be delivered again", "error", err)
	}}
	sub, err := eventstore.NewSubscriber(db, group, rt.opts.BatchSize, waiter, watermillLog(log))
	if err != nil {
		return err
	}
	// The subscription's context must outlive ctx: the batch in hand commits with it after ctx ends.
	msgs, err := sub.Subscribe(context.WithoutCancel(ctx), eventstore.Topic)
	if err != nil {
		return err
	}
	halt := func() {
		close(stop)
		_ = sub.Close()
	}
	batchStart, batchN := time.Now(), 0
	c := &consumer{p: p, group: group}
	for {
		select {
		case <-ctx.Done():
			halt()
			return nil
		case msg, ok := <-msgs:
			if !ok {
				return errors.New("subscription ended")
			}
			if batchN == 0 {
				batchStart = time.Now()
			}
			if err := rt.handle(c, msg, seen); err != nil {
				halt()
				return err
			}
			msg.Ack()
			batchN++
			if rt.opts.OnBatch != nil && batchN >= 1 && len(msgs) == 0 {
				rt.opts.OnBatch(p.Name, batchN, time.Since(batchStart))
				batchN = 0
			}
		}
	}
}

// consumer is one consumer group of a projector, and the consuming transaction it last checked.
type consumer struct {
	p      *Projector
	group  string
	lastTx pgx.Tx
	shadow bool // the group is a rebuild's, writing its copies (set by enter)
}

// enter checks, once per consuming transaction, which generation the consumer group is: the live one
// writes to the live tables; a rebuild's writes to its copies (its schema goes first on the
// transaction's search path); any other is retired and must stop. The status row is read FOR SHARE,
// so a swap (which updates it) waits for this transaction, and this transaction never writes to
// tables that were swapped under it.
func (rt *Runtime) enter(ctx context.Context, c *consumer, tx pgx.Tx) error {
	if tx == c.lastTx {
		return nil
	}
	g, err := rt.generation(ctx, tx, c.p.Name, true)
	if err != nil {
		return fmt.Errorf("read projector generation: %w", err)
	}
	switch {
	case g.liveGroup == c.group && g.version == c.p.Version:
	case g.shadowGroup != nil && *g.shadowGroup == c.group && g.shadowVersion != nil && *g.shadowVersion == c.p.Version:
		if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+pgx.Identifier{rebuildSchema(c.p.Name)}.Sanitize()+", public"); err != nil {
			return err
		}
		c.shadow = true
	default:
		return errRetired
	}
	c.lastTx = tx
	return nil
}

func (rt *Runtime) handle(c *consumer, msg *message.Message, seen *atomic.Int64) (err error) {
	p := c.p
	typ := eventstore.NameOf(msg.Metadata)
	posText := msg.Metadata["global_position"]
	tx, err := consumingTx(msg)
	if err != nil {
		return err
	}
	if err := rt.enter(msg.Context(), c, tx); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			var pos int64
			fmt.Sscan(posText, &pos)
			err = &handlerError{position: pos, eventType: typ, err: err}
		}
	}()
	h := p.Handlers[rt.store.Registry().CurrentName(typ)]
	if h == nil {
		markSeen(seen, posText)
		return nil
	}
	rec, err := rt.store.DecodeMessage(msg)
	if err != nil {
		return err
	}
	// Each attempt runs in its own savepoint, so a failed attempt (an error, a panic, a timeout) leaves
	// nothing behind in the consuming transaction and does not abort it.
	ctx, cancel := context.WithTimeout(msg.Context(), rt.opts.HandlerTimeout)
	defer cancel()
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	herr := callHandler(ctx, h, sp, rec)
	if herr == nil && ctx.Err() != nil {
		herr = fmt.Errorf("handler overran its %s timeout", rt.opts.HandlerTimeout)
	}
	bg := context.WithoutCancel(ctx) // the savepoint must be ended even after the timeout
	if herr == nil {
		if herr = sp.Commit(bg); herr == nil {
			markSeen(seen, posText)
			return nil
		}
	}
	if rbErr := sp.Rollback(bg); rbErr != nil {
		return errors.Join(herr, rbErr)
	}
	return herr
}

// watermillLog routes watermill's own logs to log, with its routine Info messages (subscriber started,
// closing, ...) as Debug; its errors (a failed commit, a failed poll) stay errors.
func watermillLog(log *slog.Logger) watermill.LoggerAdapter {
	return watermill.NewSlogLoggerWithLevelMapping(log.With("component", "watermill"),
		map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
}

// callHandler runs h, turning a panic into an error.
func callHandler(ctx context.Context, h Handler, tx pgx.Tx, rec eventstore.Record) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return h(ctx, tx, rec)
}

// consumingTx returns the subscriber's transaction that a message was delivered in.
func consumingTx(msg *message.Message) (pgx.Tx, error) {
	wtx, ok := wsql.TxFromContext(msg.Context())
	if !ok {
		return nil, errors.New("no consuming transaction in message context")
	}
	if w, ok := wtx.(*watchedTx); ok {
		wtx = w.Tx
	}
	ptx, ok := wtx.(*wsql.PgxTx)
	if !ok {
		return nil, fmt.Errorf("consuming transaction is %T, not pgx", wtx)
	}
	return ptx.Tx, nil
}

// watchedBeginner wraps the subscriber's connection so that a failed COMMIT of a batch (which
// watermill-sql only logs) reaches the runtime: the batch's events are then delivered again, and the
// runtime backs off instead of polling in a tight loop.
type watchedBeginner struct {
	wsql.Beginner
	failed func(error)
}

func (b watchedBeginner) BeginTx(ctx context.Context, opts *stdsql.TxOptions) (wsql.Tx, error) {
	tx, err := b.Beginner.BeginTx(ctx, opts)
	if err != nil {
		return tx, err
	}
	return &watchedTx{Tx: tx, failed: b.failed}, nil
}

type watchedTx struct {
	wsql.Tx
	failed func(error)
}

func (t *watchedTx) Commit() error {
	err := t.Tx.Commit()
	if err != nil && !errors.Is(err, stdsql.ErrTxDone) {
		t.failed(err)
	}
	return err
}

func markSeen(seen *atomic.Int64, posText string) {
	var pos int64
	fmt.Sscan(posText, &pos)
	for {
		cur := seen.Load()
		if pos <= cur || seen.CompareAndSwap(cur, pos) {
			return
		}
	}
}

// Status is what admins see of one projector.
type Status struct {
	Name           string              `json:"name"`
	Version        int                 `json:"version"`
	Status         string              `json:"status"`
	Position       eventstore.Position `json:"-"`
	LagEvents      int64               `json:"lag_events"`
	LagSeconds     float64             `json:"lag_seconds"`
	Attempts       int                 `json:"attempts"`
	FailedPosition *int64              `json:"failed_position"`
	FailedEvent    *string             `json:"failed_event_type"`
	LastError      *string             `json:"last_error"`
	RebuildTarget  eventstore.Position `json:"-"`
	// ConsumerGroup is the live tables' checkpoint key.
	ConsumerGroup string   `json:"consumer_group"`
	Rebuild       *Rebuild `json:"rebuild,omitempty"` // while a rebuild runs
}

// Rebuild is the progress of a projector's rebuild.
type Rebuild struct {
	Version       int                 `json:"version"` // of the tables being built
	ConsumerGroup string              `json:"consumer_group"`
	InPlace       bool                `json:"in_place"` // the live tables were emptied (no copies)
	Position      eventstore.Position `json:"-"`
	Target        eventstore.Position `json:"-"` // the head of the log when it started
	StartedAt     time.Time           `json:"started_at"`
	// EventsDone and EventsTotal count by global position, which is close to a count of events and
	// costs nothing to read.
	EventsDone  int64    `json:"events_done"`
	EventsTotal int64    `json:"events_total"`
	Rate        float64  `json:"events_per_second"`
	ETASeconds  *float64 `json:"eta_seconds"`
}

// Statuses returns every projector's status, checkpoint and lag behind the readable head of the log.
func (rt *Runtime) Statuses(ctx context.Context) ([]Status, error) {
	var out []Status
	for _, n := range rt.order {
		s, err := rt.status(ctx, rt.projectors[n])
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (rt *Runtime) status(ctx context.Context, p *Projector) (Status, error) {
	s := Status{Name: p.Name, Version: 1, Status: "live", ConsumerGroup: p.ConsumerGroup()}
	var xid, targetXID, shadowGroup, shadowXID *string
	var off, targetPos, shadowOff *int64
	var shadowVersion *int
	var startedAt *time.Time
	err := rt.pool.QueryRow(ctx, `
		SELECT coalesce(s.status, 'live'), coalesce(s.version, 1), coalesce(s.live_group, $2), coalesce(s.attempts, 0),
		       s.failed_position, s.failed_event_type, s.last_error, o.offset_acked, o.last_processed_transaction_id::text,
		       s.rebuild_target_transaction_id::text, s.rebuild_target_position, s.rebuild_started_at,
		       s.shadow_group, s.shadow_version, so.offset_acked, so.last_processed_transaction_id::text
		FROM (SELECT 1) one
		LEFT JOIN projector_status s ON s.name = $1
		LEFT JOIN projection_offsets o ON o.consumer_group = coalesce(s.live_group, $2)
		LEFT JOIN projection_offsets so ON so.consumer_group = s.shadow_group`, p.Name, p.ConsumerGroup()).
		Scan(&s.Status, &s.Version, &s.ConsumerGroup, &s.Attempts, &s.FailedPosition, &s.FailedEvent, &s.LastError, &off, &xid,
			&targetXID, &targetPos, &startedAt, &shadowGroup, &shadowVersion, &shadowOff, &shadowXID)
	if err != nil {
		return s, fmt.Errorf("status of %s: %w", p.Name, err)
	}
	s.Position = position(off, xid)
	if targetPos != nil && targetXID != nil {
		s.RebuildTarget = position(targetPos, targetXID)
	}
	if s.Status == "rebuilding" || shadowGroup != nil {
		r := &Rebuild{Version: s.Version, ConsumerGroup: s.ConsumerGroup, Position: s.Position, Target: s.RebuildTarget, InPlace: shadowGroup == nil}
		if shadowGroup != nil {
			r.ConsumerGroup, r.Position = *shadowGroup, position(shadowOff, shadowXID)
			if shadowVersion != nil {
				r.Version = *shadowVersion
			}
		}
		if startedAt != nil {
			r.StartedAt = *startedAt
			if el := time.Since(*startedAt).Seconds(); el > 0 {
				r.Rate = float64(r.Position.GlobalPosition) / el
			}
		}
		r.EventsDone, r.EventsTotal = min(r.Position.GlobalPosition, r.Target.GlobalPosition), r.Target.GlobalPosition
		if r.Rate > 0 {
			eta := float64(r.EventsTotal-r.EventsDone) / r.Rate
			r.ETASeconds = &eta
		}
		s.Rebuild = r
	}
	var oldest *time.Time
	err = rt.pool.QueryRow(ctx, `
		WITH pending AS (
			SELECT recorded_at FROM events
			WHERE (transaction_id, global_position) > ($1::text::xid8, $2::bigint)
			  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
			ORDER BY transaction_id, global_position
			LIMIT 10000000)
		SELECT count(*), min(recorded_at) FROM pending`,
		fmt.Sprint(s.Position.TransactionID), s.Position.GlobalPosition).Scan(&s.LagEvents, &oldest)
	if err != nil {
		return s, fmt.Errorf("lag of %s: %w", p.Name, err)
	}
	if oldest != nil {
		s.LagSeconds = time.Since(*oldest).Seconds()
	}
	return s, nil
}

// position makes a Position of a checkpoint's columns (the zero position when there is none).
func position(off *int64, xid *string) eventstore.Position {
	var pos eventstore.Position
	if off != nil && xid != nil {
		pos.GlobalPosition = *off
		fmt.Sscan(*xid, &pos.TransactionID)
	}
	return pos
}

// Checkpoint returns the position up to which the named projector has applied events.
func (rt *Runtime) Checkpoint(ctx context.Context, name string) (eventstore.Position, error) {
	p := rt.projectors[name]
	if p == nil {
		return eventstore.Position{}, fmt.Errorf("unknown projector %q", name)
	}
	var pos eventstore.Position
	var xid string
	err := rt.pool.QueryRow(ctx, `SELECT coalesce(o.offset_acked, 0), o.last_processed_transaction_id::text
		FROM (SELECT 1) one
		LEFT JOIN projector_status s ON s.name = $1
		JOIN projection_offsets o ON o.consumer_group = coalesce(s.live_group, $2)`, p.Name, p.ConsumerGroup()).Scan(&pos.GlobalPosition, &xid)
	if errors.Is(err, pgx.ErrNoRows) {
		return pos, nil
	}
	if err != nil {
		return pos, fmt.Errorf("checkpoint of %s: %w", name, err)
	}
	_, err = fmt.Sscan(xid, &pos.TransactionID)
	return pos, err
}

// WaitFor blocks until every named projector's checkpoint is at or past pos, or ctx ends (then it
// returns ctx's error).
func (rt *Runtime) WaitFor(ctx context.Context, pos eventstore.Position, names ...string) error {
	for {
		_, wake, _ := rt.signal.Snapshot()
		done := true
		for _, n := range names {
			cp, err := rt.Checkpoint(ctx, n)
			if err != nil {
				return err
			}
			if cp.Less(pos) {
				done = false
				break
			}
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Watch marks rebuilding projectors live as they catch up, and clears the failure record of
// projectors whose checkpoint has passed the event that once failed, until ctx ends.
func (rt *Runtime) Watch(ctx context.Context) {
	for {
		for _, n := range rt.order {
			if _, _, err := rt.FinishRebuildIfCaughtUp(ctx, n); err != nil && ctx.Err() == nil {
				rt.log.Warn("check rebuild", "projector", n, "error", err)
			}
		}
		if _, err := rt.pool.Exec(ctx, `
			UPDATE projector_status s SET failed_position = NULL, failed_event_type = NULL, last_error = NULL,
				attempts = 0, updated_at = now()
			FROM projection_offsets o, events e
			WHERE s.status = 'live' AND s.failed_position IS NOT NULL
			  AND o.consumer_group = s.live_group
			  AND e.global_position = s.failed_position
			  AND (e.transaction_id, e.global_position) <= (o.last_processed_transaction_id, o.offset_acked)`); err != nil && ctx.Err() == nil {
			rt.log.Warn("clear recovered failures", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

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
	"strings"
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
	Tables   []string           // emptied on rebuild
	Handlers map[string]Handler // by current event name, e.g. "space.created.v1"
}

// ConsumerGroup is the projector's checkpoint key in projection_offsets.
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
	rt := &Runtime{pool: pool, store: store, signal: signal, log: log, opts: opts, projectors: map[string]*Projector{}}
	for _, p := range ps {
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
// attempts: the process starting them may carry the fix for what made them fail.
func (rt *Runtime) ensureStatus(ctx context.Context, names ...string) error {
	for _, n := range names {
		p := rt.projectors[n]
		_, err := rt.pool.Exec(ctx, `
			INSERT INTO projector_status (name, version, status) VALUES ($1, $2, 'live')
			ON CONFLICT (name) DO UPDATE SET version = excluded.version,
				status = CASE WHEN projector_status.status <> 'failed' THEN projector_status.status
				              WHEN projector_status.rebuild_target_position IS NOT NULL THEN 'rebuilding'
				              ELSE 'live' END,
				attempts = 0, updated_at = now()`, p.Name, p.Version)
		if err != nil {
			return fmt.Errorf("projector %s status: %w", p.Name, err)
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

func (rt *Runtime) supervise(ctx context.Context, p *Projector) {
	log := rt.log.With("projector", p.Name)
	var seen atomic.Int64
	for ctx.Err() == nil {
		if rt.waitWhileFailed(ctx, p) != nil {
			return
		}
		err := rt.consume(ctx, p, &seen, log)
		if ctx.Err() != nil {
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
func (rt *Runtime) consume(ctx context.Context, p *Projector, seen *atomic.Int64, log *slog.Logger) error {
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
	sub, err := eventstore.NewSubscriber(db, p.ConsumerGroup(), rt.opts.BatchSize, waiter, watermillLog(log))
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
			if err := rt.handle(p, msg, seen); err != nil {
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

func (rt *Runtime) handle(p *Projector, msg *message.Message, seen *atomic.Int64) (err error) {
	typ := eventstore.NameOf(msg.Metadata)
	posText := msg.Metadata["global_position"]
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
	tx, err := consumingTx(msg)
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
	s := Status{Name: p.Name, Version: p.Version, Status: "live"}
	var xid, targetXID *string
	var off, targetPos *int64
	err := rt.pool.QueryRow(ctx, `
		SELECT coalesce(s.status, 'live'), coalesce(s.attempts, 0), s.failed_position, s.failed_event_type,
		       s.last_error, o.offset_acked, o.last_processed_transaction_id::text,
		       s.rebuild_target_transaction_id::text, s.rebuild_target_position
		FROM (SELECT 1) one
		LEFT JOIN projector_status s ON s.name = $1
		LEFT JOIN projection_offsets o ON o.consumer_group = $2`, p.Name, p.ConsumerGroup()).
		Scan(&s.Status, &s.Attempts, &s.FailedPosition, &s.FailedEvent, &s.LastError, &off, &xid, &targetXID, &targetPos)
	if err != nil {
		return s, fmt.Errorf("status of %s: %w", p.Name, err)
	}
	if off != nil && xid != nil {
		s.Position.GlobalPosition = *off
		fmt.Sscan(*xid, &s.Position.TransactionID)
	}
	if targetPos != nil && targetXID != nil {
		s.RebuildTarget.GlobalPosition = *targetPos
		fmt.Sscan(*targetXID, &s.RebuildTarget.TransactionID)
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

// Checkpoint returns the position up to which the named projector has applied events.
func (rt *Runtime) Checkpoint(ctx context.Context, name string) (eventstore.Position, error) {
	p := rt.projectors[name]
	if p == nil {
		return eventstore.Position{}, fmt.Errorf("unknown projector %q", name)
	}
	var pos eventstore.Position
	var xid string
	err := rt.pool.QueryRow(ctx, `SELECT coalesce(offset_acked, 0), last_processed_transaction_id::text
		FROM projection_offsets WHERE consumer_group = $1`, p.ConsumerGroup()).Scan(&pos.GlobalPosition, &xid)
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

// StartRebuild empties the projector's tables and rewinds its checkpoint to the start of the log, in
// one transaction that first locks the checkpoint row (so no batch of a running subscriber is in
// flight). It records the log's current head as the rebuild's target; the projector is "rebuilding"
// until its checkpoint reaches it. Running it again restarts the rebuild; it is idempotent.
func (rt *Runtime) StartRebuild(ctx context.Context, name string) (eventstore.Position, error) {
	p := rt.projectors[name]
	if p == nil {
		return eventstore.Position{}, fmt.Errorf("unknown projector %q (known: %s)", name, strings.Join(rt.order, ", "))
	}
	if err := rt.ensureStatus(ctx, name); err != nil {
		return eventstore.Position{}, err
	}
	target, err := rt.store.Head(ctx)
	if err != nil {
		return target, err
	}
	err = pgx.BeginFunc(ctx, rt.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO projection_offsets (consumer_group, offset_acked, last_processed_transaction_id)
			VALUES ($1, 0, '0') ON CONFLICT DO NOTHING`, p.ConsumerGroup()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM projection_offsets WHERE consumer_group = $1 FOR UPDATE`, p.ConsumerGroup()); err != nil {
			return err
		}
		if len(p.Tables) > 0 {
			if _, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(p.Tables, ", ")); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE projection_offsets SET offset_acked = 0, last_processed_transaction_id = '0'
			WHERE consumer_group = $1`, p.ConsumerGroup()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE projector_status SET status = 'rebuilding', attempts = 0, failed_position = NULL,
			failed_event_type = NULL, last_error = NULL, rebuild_target_transaction_id = $2::text::xid8,
			rebuild_target_position = $3, rebuild_started_at = now(), updated_at = now() WHERE name = $1`,
			p.Name, fmt.Sprint(target.TransactionID), target.GlobalPosition)
		return err
	})
	if err != nil {
		return target, fmt.Errorf("start rebuild of %s: %w", name, err)
	}
	rt.signal.Notify(0)
	return target, nil
}

// FinishRebuildIfCaughtUp marks a rebuilding projector live once its checkpoint has reached the
// rebuild target, and reports whether it is live.
func (rt *Runtime) FinishRebuildIfCaughtUp(ctx context.Context, name string) (bool, Status, error) {
	s, err := rt.status(ctx, rt.projectors[name])
	if err != nil || s.Status != "rebuilding" {
		return s.Status == "live", s, err
	}
	if s.Position.Less(s.RebuildTarget) {
		return false, s, nil
	}
	_, err = rt.pool.Exec(ctx, `UPDATE projector_status SET status = 'live', rebuild_target_transaction_id = NULL,
		rebuild_target_position = NULL, updated_at = now() WHERE name = $1 AND status = 'rebuilding'`, name)
	s.Status = "live"
	return err == nil, s, err
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
			  AND o.consumer_group = s.name || '_v' || s.version
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

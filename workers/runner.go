package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/task"
)

// jobKind is the one River job kind: its args name the task and run; everything else is in events.
const jobKind = "atlas.task"

// queueName is the River queue tasks run on.
const queueName = "tasks"

type jobArgs struct {
	TaskID   uuid.UUID `json:"task_id"`
	Run      int       `json:"run"`
	KindName string    `json:"kind"`
}

func (jobArgs) Kind() string { return jobKind }

// Config configures a Runner.
type Config struct {
	Pool     *pgxpool.Pool // the API role's pool: jobs are inserted in command transactions on it
	Commands *commands.Handlers
	Log      *slog.Logger
	Kinds    []*Kind
	// Workers is how many attempts this process runs at once; 0 makes an insert-only queue (the
	// process queues and cancels tasks but runs none).
	Workers int
	// Lease is how long an attempt stays claimed without a heartbeat; heartbeats come every Lease/3.
	// An attempt whose worker died is failed and queued again about Lease after its last heartbeat.
	Lease time.Duration
	// Backoff is the delay before the second attempt; each further attempt doubles it, up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Poll is how often an idle worker looks for due jobs (new jobs also wake it by notification).
	Poll time.Duration
	// Name identifies this process in task.started events and the queue (default host-pid).
	Name string
	// Registerer, when set, receives the workers' metrics.
	Registerer prometheus.Registerer
}

// metrics are the workers' Prometheus metrics.
type metrics struct {
	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rescued  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "atlas_task_attempts_total",
			Help: "Task attempts this process ran, by kind and outcome (completed, retry, failed, cancelled, superseded, lease_lost, not_started)."},
			[]string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "atlas_task_attempt_duration_seconds",
			Help: "Duration of task attempts this process ran, by kind.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)}, []string{"kind"}),
		rescued: prometheus.NewCounter(prometheus.CounterOpts{Name: "atlas_task_attempts_rescued_total",
			Help: "Attempts of dead workers this process failed and requeued after their lease expired."}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.duration, m.rescued)
	}
	return m
}

// Runner is the task queue: it implements commands.TaskQueue and, with Workers > 0, runs attempts.
type Runner struct {
	cfg    Config
	kinds  registry
	client *river.Client[pgx.Tx]
	log    *slog.Logger

	metrics  *metrics
	retryAt  sync.Map // job id -> time.Time: the retry time recorded in the task.failed event
	stopping chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New builds a Runner; Start runs it.
func New(cfg Config) (*Runner, error) {
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 5 * time.Second
	}
	if cfg.MaxBackoff < cfg.Backoff {
		cfg.MaxBackoff = max(cfg.Backoff, 10*time.Minute)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), uuid.NewString()[:8])
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	kinds, err := newRegistry(cfg.Kinds)
	if err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, kinds: kinds, log: cfg.Log.With("component", "tasks"), stopping: make(chan struct{}), metrics: newMetrics(cfg.Registerer)}
	workers := river.NewWorkers()
	river.AddWorker[jobArgs](workers, &worker{r: r})
	rc := &river.Config{
		ID:          cfg.Name,
		Logger:      slog.New(quietHandler{cfg.Log.Handler()}),
		Workers:     workers,
		JobTimeout:  -1, // per kind: worker.Timeout
		MaxAttempts: 1,
		// River's own rescuer is the backstop; Atlas's lease (heartbeats) rescues dead workers first.
		RescueStuckJobsAfter: max(time.Hour, 10*cfg.Lease),
		FetchPollInterval:    cfg.Poll,
		// A worker that finishes an attempt fetches the next at once (River waits 100 ms by default,
		// which caps a process at Workers/0.1 s attempts per second).
		FetchCooldown: min(5*time.Millisecond, cfg.Poll),
	}
	if cfg.Workers > 0 {
		rc.Queues = map[string]river.QueueConfig{queueName: {MaxWorkers: cfg.Workers}}
	}
	r.client, err = river.NewClient(riverpgxv5.New(cfg.Pool), rc)
	if err != nil {
		return nil, fmt.Errorf("task queue: %w", err)
	}
	return r, nil
}

// Name is this process's worker name.
func (r *Runner) Name() string { return r.cfg.Name }

// Start runs the workers and the lease keeper until Stop (a no-op for an insert-only Runner).
func (r *Runner) Start(ctx context.Context) error {
	if r.cfg.Workers <= 0 {
		return nil
	}
	if err := r.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("task queue: start: %w", err)
	}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.rescueLoop() }()
	r.log.Info("task workers started", "worker", r.cfg.Name, "workers", r.cfg.Workers, "lease", r.cfg.Lease.String())
	return nil
}

// Stop stops taking jobs and waits for running attempts until ctx ends; then their contexts are
// cancelled and they are recorded as failed with a retry (another worker takes them up).
func (r *Runner) Stop(ctx context.Context) error {
	if r.cfg.Workers <= 0 {
		return nil
	}
	r.stopOnce.Do(func() { close(r.stopping) })
	err := r.client.Stop(ctx)
	if ctx.Err() != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = r.client.StopAndCancel(cctx)
		cancel()
	}
	r.wg.Wait()
	return err
}

// Prepare implements commands.TaskQueue.
func (r *Runner) Prepare(kind string, input json.RawMessage) (int, error) {
	k, err := r.kinds.prepare(kind, input)
	if err != nil {
		return 0, err
	}
	return k.MaxAttempts, nil
}

// Enqueue implements commands.TaskQueue.
func (r *Runner) Enqueue(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, kind string, run, maxAttempts int) (int64, error) {
	res, err := r.client.InsertTx(ctx, tx, jobArgs{TaskID: taskID, Run: run, KindName: kind}, &river.InsertOpts{
		MaxAttempts: maxAttempts, Queue: queueName,
	})
	if err != nil {
		return 0, err
	}
	return res.Job.ID, nil
}

// Cancel implements commands.TaskQueue: a waiting job is cancelled at once; a running one is marked,
// and the process running it is notified and cancels the attempt's context (its lease heartbeat
// also sees the mark, within Lease/3, should the notification be lost).
func (r *Runner) Cancel(ctx context.Context, tx pgx.Tx, jobID int64) error {
	_, err := r.client.JobCancelTx(ctx, tx, jobID)
	if errors.Is(err, rivertype.ErrNotFound) {
		return nil // already cleaned away: nothing is left to stop
	}
	return err
}

// backoff is the delay after failed attempt n (1-based): Backoff·2^(n-1), at most MaxBackoff.
func (r *Runner) backoff(attempt int) time.Duration {
	d := r.cfg.Backoff
	for i := 1; i < attempt && d < r.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.cfg.MaxBackoff)
}

// Errors that end an attempt's context, as context causes.
var (
	errCancelled = errors.New("the task was cancelled")
	errLeaseLost = errors.New("the attempt's lease was lost: another worker took the task over")
	errShutdown  = errors.New("the worker shut down")
)

type worker struct {
	river.WorkerDefaults[jobArgs]
	r *Runner
}

func (w *worker) Timeout(job *river.Job[jobArgs]) time.Duration {
	if k, ok := w.r.kinds[job.Args.KindName]; ok {
		return k.Timeout
	}
	return time.Minute
}

func (w *worker) NextRetry(job *river.Job[jobArgs]) time.Time {
	if v, ok := w.r.retryAt.LoadAndDelete(job.ID); ok {
		return v.(time.Time)
	}
	return time.Now().Add(w.r.backoff(job.Attempt))
}

// Work runs one attempt: it records the start (refused when the attempt is stale), runs the kind
// under a lease kept by heartbeats, and records the outcome. What it returns only tells River what to
// do with the job; the task's state is in the events appended here.
func (w *worker) Work(ctx context.Context, job *river.Job[jobArgs]) error {
	start := time.Now()
	outcome, err := w.work(ctx, job)
	w.r.metrics.attempts.WithLabelValues(job.Args.KindName, outcome).Inc()
	if outcome != "not_started" {
		w.r.metrics.duration.WithLabelValues(job.Args.KindName).Observe(time.Since(start).Seconds())
	}
	return err
}

// work runs the attempt and says how it ended, for the metrics.
func (w *worker) work(ctx context.Context, job *river.Job[jobArgs]) (string, error) {
	r := w.r
	args := job.Args
	log := r.log.With("task_id", args.TaskID, "run", args.Run, "attempt", job.Attempt, "job_id", job.ID)
	att, err := r.cfg.Commands.StartTaskAttempt(ctx, args.TaskID, args.Run, job.Attempt, r.cfg.Name)
	if errors.Is(err, task.ErrSuperseded) || domain.ErrorCode(err) == domain.CodeNotFound {
		log.Info("task attempt not started: the task moved on", "reason", err)
		return "not_started", river.JobCancel(fmt.Errorf("stale attempt: %w", err))
	}
	if err != nil {
		// The database could not be reached: try again later without using up an attempt.
		log.Warn("task attempt could not start", "error", err)
		return "not_started", river.JobSnooze(r.backoff(1))
	}
	st := att.State()
	k, ok := r.kinds[st.Kind]
	if !ok {
		_ = att.Fail(context.WithoutCancel(ctx), fmt.Sprintf("task kind %q is not known to this worker", st.Kind), nil)
		return "failed", river.JobCancel(fmt.Errorf("unknown task kind %q", st.Kind))
	}
	// The attempt's own context: ended by River (timeout, remote cancel, shutdown) or by the lease.
	work, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); r.heartbeat(work, stop, job.ID, job.Attempt) }()
	out := newOutputBuffer(func(text string) error {
		err := att.Output(context.WithoutCancel(ctx), text)
		if errors.Is(err, task.ErrSuperseded) {
			stop(errCancelled) // cancelled meanwhile: stop working
		}
		return err
	})
	run := &Run{TaskID: st.ID, SpaceID: st.SpaceID, Creator: st.CreatedBy, Input: st.Input, RunNumber: args.Run,
		Attempt: job.Attempt, MaxAttempts: job.MaxAttempts, out: out}
	result, runErr := safeRun(work, k, run)
	if runErr == nil && work.Err() != nil {
		runErr = context.Cause(work) // the kind ignored its context; its result is not trusted
	}
	flushErr := out.close()
	cause := context.Cause(work)
	// The lease is kept until the outcome is recorded (that may wait for the database a while).
	defer func() { stop(nil); <-hbDone }()
	if errors.Is(context.Cause(ctx), rivertype.ErrJobCancelledRemotely) {
		cause = errCancelled
	}
	report := context.WithoutCancel(ctx)
	switch {
	case errors.Is(cause, errLeaseLost):
		log.Warn("task attempt abandoned: its lease was lost")
		return "lease_lost", nil
	case errors.Is(cause, errCancelled) || errors.Is(flushErr, task.ErrSuperseded):
		log.Info("task attempt stopped: the task was cancelled or taken over")
		return "cancelled", river.JobCancel(errCancelled)
	case runErr == nil:
		err := persist(report, func() error { return att.Complete(report, result) })
		if errors.Is(err, task.ErrSuperseded) {
			log.Info("task attempt finished but the task moved on; result dropped")
			if k.Discard != nil {
				k.Discard(report, run, result)
			}
			return "superseded", river.JobCancel(errCancelled)
		}
		if err != nil {
			return "failed", fmt.Errorf("record completion of task %s: %w", args.TaskID, err)
		}
		return "completed", nil
	}
	msg := runErr.Error()
	switch {
	case errors.Is(runErr, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		msg = fmt.Sprintf("timed out after %s", k.Timeout)
	case r.isStopping() && errors.Is(ctx.Err(), context.Canceled):
		msg = errShutdown.Error()
	}
	var retryAt *time.Time
	if !isPermanent(runErr) && job.Attempt < job.MaxAttempts {
		at := time.Now().Add(r.backoff(job.Attempt)).UTC().Truncate(time.Microsecond)
		if msg == errShutdown.Error() {
			at = time.Now().UTC().Truncate(time.Microsecond)
		}
		retryAt = &at
	}
	err = persist(report, func() error { return att.Fail(report, msg, retryAt) })
	if errors.Is(err, task.ErrSuperseded) {
		return "superseded", river.JobCancel(errCancelled)
	}
	if err != nil {
		return "failed", fmt.Errorf("record failure of task %s: %w (attempt error: %s)", args.TaskID, err, msg)
	}
	log.Info("task attempt failed", "error", msg, "retry_at", retryAt)
	if retryAt == nil {
		return "failed", river.JobCancel(Permanent(errors.New(msg)))
	}
	r.retryAt.Store(job.ID, *retryAt)
	return "retry", errors.New(msg)
}

// persist retries an outcome's append for about 15 seconds while the database cannot be reached,
// so that a brief outage does not throw away a finished attempt's work. Domain refusals (the attempt
// was superseded) are returned at once.
func persist(ctx context.Context, report func() error) error {
	delay := 250 * time.Millisecond
	for try := 0; ; try++ {
		err := report()
		if err == nil || domain.ErrorCode(err) != domain.CodeInternal || try == 6 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// safeRun runs the kind, turning a panic into a permanent failure.
func safeRun(ctx context.Context, k *Kind, run *Run) (res json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = Permanent(fmt.Errorf("the task kind %s panicked: %v", k.Name, p))
		}
	}()
	return k.Run(ctx, run)
}

func (r *Runner) isStopping() bool {
	select {
	case <-r.stopping:
		return true
	default:
		return false
	}
}

// heartbeat keeps the attempt's lease: every Lease/3 it moves the job's attempted_at forward (which
// both River's rescuer and Atlas's lease keeper measure from) while the job is still this attempt's.
// When the job is no longer running this attempt, or was marked cancelled, it ends the attempt.
func (r *Runner) heartbeat(ctx context.Context, stop context.CancelCauseFunc, jobID int64, attempt int) {
	t := time.NewTicker(r.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var cancelled bool
		err := r.cfg.Pool.QueryRow(ctx, `UPDATE river_job SET attempted_at = now()
			WHERE id = $1 AND state = 'running' AND attempt = $2 RETURNING metadata ? 'cancel_attempted_at'`, jobID, attempt).Scan(&cancelled)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			stop(errLeaseLost)
			return
		case err != nil:
			if ctx.Err() == nil {
				r.log.Warn("task heartbeat failed", "job_id", jobID, "error", err)
			}
		case cancelled:
			stop(errCancelled)
			return
		}
	}
}

// rescueLoop fails and requeues attempts whose worker stopped heartbeating, every Lease/2.
func (r *Runner) rescueLoop() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-r.stopping
		cancel()
	}()
	t := time.NewTicker(r.cfg.Lease / 2)
	defer t.Stop()
	for {
		if n, err := r.RescueExpired(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("task rescue failed", "error", err)
		} else if n > 0 {
			r.metrics.rescued.Add(float64(n))
			r.log.Info("task attempts rescued from dead workers", "count", n)
		}
		if n, err := r.ReconcileAbandoned(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("task reconciliation failed", "error", err)
		} else if n > 0 {
			r.log.Warn("tasks failed because the queue gave up on their jobs", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RescueExpired handles every running task job whose lease expired (no heartbeat for Lease): the
// attempt is recorded as failed (with a retry when attempts are left) and the job made available
// again at once, or finalized, in one transaction with the event. Several processes may run it at
// once: each job's change is conditional and each event is appended at its expected version.
func (r *Runner) RescueExpired(ctx context.Context) (int, error) {
	rows, err := r.cfg.Pool.Query(ctx, `SELECT id, args, attempt, max_attempts FROM river_job
		WHERE state = 'running' AND kind = $1 AND attempted_at < now() - $2::interval ORDER BY id LIMIT 100`,
		jobKind, fmt.Sprintf("%d microseconds", r.cfg.Lease.Microseconds()))
	if err != nil {
		return 0, err
	}
	type stale struct {
		id                   int64
		args                 jobArgs
		attempt, maxAttempts int
	}
	var jobs []stale
	for rows.Next() {
		var s stale
		var raw []byte
		if err := rows.Scan(&s.id, &raw, &s.attempt, &s.maxAttempts); err != nil {
			rows.Close()
			return 0, err
		}
		if err := json.Unmarshal(raw, &s.args); err != nil {
			continue
		}
		jobs = append(jobs, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, j := range jobs {
		ok, err := r.rescue(ctx, j.id, j.args, j.attempt, j.maxAttempts)
		if err != nil {
			if ctx.Err() != nil {
				return n, err
			}
			r.log.Warn("task rescue", "job_id", j.id, "task_id", j.args.TaskID, "error", err)
			continue
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// ReconcileAbandoned fails, for good, each task whose current job the queue discarded in the last
// hour while the task was still queued or running. That happens only when an attempt's outcome could
// not be recorded on its last attempt, or River's own rescuer (the backstop) gave up on a job: without
// this the task would wait forever. It returns how many tasks it failed.
func (r *Runner) ReconcileAbandoned(ctx context.Context) (int, error) {
	rows, err := r.cfg.Pool.Query(ctx, `SELECT id, args FROM river_job
		WHERE kind = $1 AND state = 'discarded' AND finalized_at > now() - interval '1 hour' ORDER BY id LIMIT 1000`, jobKind)
	if err != nil {
		return 0, err
	}
	type gone struct {
		id   int64
		args jobArgs
	}
	var jobs []gone
	for rows.Next() {
		var g gone
		var raw []byte
		if err := rows.Scan(&g.id, &raw); err != nil {
			rows.Close()
			return 0, err
		}
		if json.Unmarshal(raw, &g.args) == nil {
			jobs = append(jobs, g)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, g := range jobs {
		st, err := r.cfg.Commands.Task(ctx, g.args.TaskID, 0)
		if err != nil {
			return n, err
		}
		if !st.Exists() || st.JobID != g.id || st.Run != g.args.Run || (st.Status != task.StatusQueued && st.Status != task.StatusRunning) {
			continue
		}
		err = r.cfg.Commands.AbandonTaskRun(ctx, g.args.TaskID, g.args.Run, "the job queue gave up on the task's job (no attempt could record an outcome)")
		if errors.Is(err, task.ErrSuperseded) {
			continue
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// resetJob makes a stale running job available now (or finalizes it), unless a heartbeat came back.
const resetJob = `UPDATE river_job SET
		state = $3::river_job_state,
		scheduled_at = now(),
		finalized_at = CASE WHEN $3 IN ('cancelled', 'completed', 'discarded') THEN now() END,
		max_attempts = CASE WHEN $3 = 'available' THEN greatest(max_attempts, attempt + 1) ELSE max_attempts END,
		errors = array_append(errors, jsonb_build_object('at', now(), 'attempt', attempt, 'error', $4::text, 'trace', ''))
	WHERE id = $1 AND state = 'running' AND attempt = $2 AND attempted_at < now() - $5::interval`

func (r *Runner) rescue(ctx context.Context, jobID int64, args jobArgs, attempt, maxAttempts int) (bool, error) {
	lease := fmt.Sprintf("%d microseconds", r.cfg.Lease.Microseconds())
	msg := fmt.Sprintf("the worker running attempt %d stopped responding (no heartbeat for %s)", attempt, r.cfg.Lease)
	st, err := r.cfg.Commands.Task(ctx, args.TaskID, 0)
	if err != nil {
		return false, err
	}
	reset := func(ctx context.Context, q execer, state string) (bool, error) {
		tag, err := q.Exec(ctx, resetJob, jobID, attempt, state, msg, lease)
		if err != nil {
			return false, err
		}
		return tag.RowsAffected() == 1, nil
	}
	// The job is not this task's current attempt (it died before recording its start, or the task
	// finished or moved to another run): only the job needs fixing.
	if !st.Exists() || st.Run != args.Run || st.Status != task.StatusRunning || st.Attempt != attempt {
		state := "available"
		switch {
		case !st.Exists() || st.Run != args.Run || st.Status == task.StatusCancelled:
			state = "cancelled"
		case st.Status == task.StatusCompleted:
			state = "completed"
		case st.Status == task.StatusFailed:
			state = "discarded"
		}
		return reset(ctx, r.cfg.Pool, state)
	}
	var retryAt *time.Time
	state := "discarded"
	if attempt < maxAttempts {
		at := time.Now().UTC().Truncate(time.Microsecond)
		retryAt, state = &at, "available"
	}
	var done bool
	_, err = r.cfg.Commands.ReleaseLostAttempt(ctx, args.TaskID, args.Run, attempt, retryAt, msg,
		func(ctx context.Context, tx pgx.Tx, _ task.State) error {
			ok, err := reset(ctx, tx, state)
			if err != nil {
				return err
			}
			if !ok {
				return errHeartbeatCameBack
			}
			done = true
			return nil
		})
	if errors.Is(err, errHeartbeatCameBack) || errors.Is(err, task.ErrSuperseded) {
		return false, nil
	}
	return done, err
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

var errHeartbeatCameBack = errors.New("the attempt's heartbeat came back")

// quietHandler lowers River's info logs to debug: its per-job lines would drown Atlas's own.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Level == slog.LevelInfo {
		rec.Level = slog.LevelDebug
	}
	if !h.Handler.Enabled(ctx, rec.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, rec)
}

func (h quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(attrs)}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name)}
}

// outputBuffer collects printed text and appends it as coarse chunks: when 4 KiB are waiting, else
// at most every 250 ms, and on close.
type outputBuffer struct {
	mu      sync.Mutex
	buf     strings.Builder
	appendF func(string) error
	err     error
	kick    chan struct{}
	done    chan struct{}
	closed  chan struct{}
}

const (
	outputChunk = 4 << 10
	outputEvery = 250 * time.Millisecond
)

func newOutputBuffer(appendF func(string) error) *outputBuffer {
	b := &outputBuffer{appendF: appendF, kick: make(chan struct{}, 1), done: make(chan struct{}), closed: make(chan struct{})}
	go b.loop()
	return b
}

func (b *outputBuffer) write(text string) {
	b.mu.Lock()
	b.buf.WriteString(text)
	full := b.buf.Len() >= outputChunk
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

func (b *outputBuffer) loop() {
	defer close(b.closed)
	t := time.NewTicker(outputEvery)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			b.flush()
			return
		case <-t.C:
		case <-b.kick:
		}
		b.flush()
	}
}

func (b *outputBuffer) flush() {
	b.mu.Lock()
	text := b.buf.String()
	b.buf.Reset()
	failed := b.err != nil
	b.mu.Unlock()
	if text == "" || failed {
		return
	}
	if err := b.appendF(text); err != nil {
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
}

// close flushes what is left and returns the first append error (task.ErrSuperseded when the task
// was cancelled or taken over meanwhile).
func (b *outputBuffer) close() error {
	close(b.done)
	<-b.closed
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

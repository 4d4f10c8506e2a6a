package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/task"
	"github.com/atlas-workspace/atlas/eventstore"
)

// TaskQueue is the job queue that runs tasks. Its Enqueue and Cancel write in the command's own
// transaction, so a task.queued event and its job (or a task.cancelled event and the job's
// cancellation) commit together or not at all.
type TaskQueue interface {
	// Prepare checks that kind is registered and can run now, and validates input against the kind's
	// JSON Schema. It returns the kind's maximum attempts, or CodeInvalid (details name each broken
	// field under "input") or CodeConflict (the kind cannot run here, e.g. no model is configured).
	Prepare(kind string, input json.RawMessage) (maxAttempts int, err error)
	// Enqueue inserts the job that runs run `run` of the task, in tx, and returns its id.
	Enqueue(ctx context.Context, tx pgx.Tx, taskID uuid.UUID, kind string, run, maxAttempts int) (jobID int64, err error)
	// Cancel cancels a job in tx: a waiting job never runs; a running one has its context cancelled.
	Cancel(ctx context.Context, tx pgx.Tx, jobID int64) error
}

// UseTaskQueue sets the job queue tasks go to. Without one, creating or retrying a task is refused.
func (h *Handlers) UseTaskQueue(q TaskQueue) { h.taskQueue = q }

// TaskResult is a task after a command, with the position of the command's last event.
type TaskResult struct {
	Task     task.State
	Position eventstore.Position
}

// Task loads a task aggregate (up to maxVersion; 0 for its latest state).
func (h *Handlers) Task(ctx context.Context, id uuid.UUID, maxVersion int64) (task.State, error) {
	st, _, err := load(ctx, h.store, id, maxVersion, task.Evolve)
	return st, err
}

// TaskFor loads a task and what viewer may do with it (through its space), for reads that go to the
// log (history, as_of, stream). A task viewer may not read is CodeNotFound.
func (h *Handlers) TaskFor(ctx context.Context, viewer, id uuid.UUID) (task.State, task.Access, error) {
	st, err := h.Task(ctx, id, 0)
	if err != nil {
		return st, task.Access{}, err
	}
	if !st.Exists() {
		return st, task.Access{}, domain.Errorf(domain.CodeNotFound, "task not found")
	}
	_, access, err := h.SpaceAccess(ctx, viewer, st.SpaceID)
	if err == nil && !access.Read {
		err = domain.Errorf(domain.CodeNotFound, "task not found")
	}
	if domain.ErrorCode(err) == domain.CodeNotFound {
		err = domain.Errorf(domain.CodeNotFound, "task not found")
	}
	return st, task.Access(access), err
}

func (h *Handlers) queue() (TaskQueue, error) {
	if h.taskQueue == nil {
		return nil, domain.Errorf(domain.CodeNotReady, "tasks cannot be queued: this process has no job queue")
	}
	return h.taskQueue, nil
}

// CreateTask creates a task of a registered kind in a space (its managers and editors) and queues
// its first run, in one transaction. Errors: CodeInvalid (unknown kind, input that breaks the kind's
// schema), CodeConflict (the kind cannot run, e.g. no model configured), CodeNotFound (no such space
// for the actor), CodeForbidden (a viewer).
func (h *Handlers) CreateTask(ctx context.Context, cc Context, spaceID uuid.UUID, kind string, input json.RawMessage) (TaskResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		return h.taskReplay(ctx, prev, err)
	}
	q, err := h.queue()
	if err != nil {
		return TaskResult{}, err
	}
	sp, access, err := h.SpaceAccess(ctx, cc.Actor, spaceID)
	if err != nil {
		return TaskResult{}, err
	}
	// Authorization first: an outsider learns nothing about kinds or inputs.
	switch {
	case !access.Read:
		return TaskResult{}, domain.Errorf(domain.CodeNotFound, "space not found")
	case !access.Write:
		return TaskResult{}, domain.Errorf(domain.CodeForbidden, "only the space's editors and managers start tasks")
	}
	maxAttempts, err := q.Prepare(kind, input)
	if err != nil {
		return TaskResult{}, err
	}
	id := uuid.Must(uuid.NewV7())
	st := task.State{}
	evs, err := task.Decide(st, task.Create{TaskID: id, SpaceID: spaceID, Kind: kind, Input: input, MaxAttempts: maxAttempts,
		Actor: cc.Actor, Subject: sp.OwnerUserID, Access: task.Access(access)}, h.now())
	if err != nil {
		return TaskResult{}, err
	}
	for _, e := range evs {
		st = task.Evolve(st, e)
	}
	tenant := sp.Owner()
	var res eventstore.AppendResult
	var prev *eventstore.IdempotentResult
	err = h.inTx(ctx, func(t *txn) error {
		// Every read is done: the job insert and the events are this transaction's only writes, and
		// the task's stream is new, so no later version of it can be delivered first.
		jobID, err := q.Enqueue(ctx, t.Tx, id, kind, st.Run+1, maxAttempts)
		if err != nil {
			return fmt.Errorf("queue task %s: %w", id, err)
		}
		more, err := task.Decide(st, task.Queue{JobID: jobID}, h.now())
		if err != nil {
			return err
		}
		evs = append(evs, more...)
		res, prev, err = h.appendIdempotent(ctx, t, cc, id, eventstore.AppendRequest{
			Streams:  []eventstore.StreamAppend{{StreamType: task.StreamType, StreamID: id, TenantID: &tenant, Events: evs}},
			Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
		})
		if prev != nil {
			return errReplayed
		}
		return err
	})
	return h.taskOutcome(ctx, task.State{}, evs, res, prev, err)
}

// errReplayed rolls back a transaction whose command turned out to be a repeat of an earlier one.
var errReplayed = errors.New("command already applied")

// CancelTask cancels a pending, queued or running task (the space's managers and editors): a waiting
// job never runs, a running attempt's context is cancelled (in whichever process runs it) and its
// later reports are refused. Errors: CodeNotFound, CodeForbidden, CodeConflict (already finished).
func (h *Handlers) CancelTask(ctx context.Context, cc Context, id uuid.UUID) (TaskResult, error) {
	return h.changeTask(ctx, cc, id, func(a task.Access) any { return task.Cancel{Access: a} },
		func(ctx context.Context, t *txn, q TaskQueue, st task.State, evs []domain.Event) ([]domain.Event, error) {
			if st.JobID != 0 {
				if err := q.Cancel(ctx, t.Tx, st.JobID); err != nil {
					return nil, fmt.Errorf("cancel job %d of task %s: %w", st.JobID, id, err)
				}
			}
			return evs, nil
		})
}

// RetryTask runs a failed or cancelled task again (the space's managers and editors): a new run with
// a new job and a fresh attempt count. Errors: CodeNotFound, CodeForbidden, CodeConflict (not failed
// or cancelled), CodeConflict (the kind cannot run now).
func (h *Handlers) RetryTask(ctx context.Context, cc Context, id uuid.UUID) (TaskResult, error) {
	return h.changeTask(ctx, cc, id, func(a task.Access) any { return task.Retry{Access: a} },
		func(ctx context.Context, t *txn, q TaskQueue, st task.State, evs []domain.Event) ([]domain.Event, error) {
			maxAttempts, err := q.Prepare(st.Kind, st.Input)
			if err != nil {
				if domain.ErrorCode(err) == domain.CodeInvalid {
					// The kind's schema changed since the task was created.
					return nil, domain.Errorf(domain.CodeConflict, "the task's input no longer fits its kind: %v", err)
				}
				return nil, err
			}
			after := st
			for _, e := range evs {
				after = task.Evolve(after, e)
			}
			jobID, err := q.Enqueue(ctx, t.Tx, id, st.Kind, after.Run+1, maxAttempts)
			if err != nil {
				return nil, fmt.Errorf("queue task %s: %w", id, err)
			}
			more, err := task.Decide(after, task.Queue{JobID: jobID}, h.now())
			return append(evs, more...), err
		})
}

// changeTask loads, decides, and in one transaction lets also run the queue's side (cancel a job,
// insert one) and appends; a lost race with a worker's report is retried a few times.
func (h *Handlers) changeTask(ctx context.Context, cc Context, id uuid.UUID, command func(task.Access) any,
	also func(ctx context.Context, t *txn, q TaskQueue, st task.State, evs []domain.Event) ([]domain.Event, error)) (TaskResult, error) {
	if prev, ok, err := h.replay(ctx, cc); err != nil || ok {
		return h.taskReplay(ctx, prev, err)
	}
	q, err := h.queue()
	if err != nil {
		return TaskResult{}, err
	}
	for attempt := 1; ; attempt++ {
		res, err := h.changeTaskOnce(ctx, cc, id, q, command, also)
		if attempt < 5 && errors.Is(err, eventstore.ErrVersionConflict) {
			continue
		}
		return res, err
	}
}

func (h *Handlers) changeTaskOnce(ctx context.Context, cc Context, id uuid.UUID, q TaskQueue, command func(task.Access) any,
	also func(ctx context.Context, t *txn, q TaskQueue, st task.State, evs []domain.Event) ([]domain.Event, error)) (TaskResult, error) {
	recs, err := h.store.ReadStream(ctx, id, 0)
	if err != nil {
		return TaskResult{}, err
	}
	var st task.State
	var tenant uuid.UUID
	for _, r := range recs {
		st = task.Evolve(st, r.Event)
		if r.TenantID != nil {
			tenant = *r.TenantID
		}
	}
	var access task.Access
	if st.Exists() {
		_, a, err := h.SpaceAccess(ctx, cc.Actor, st.SpaceID)
		if err != nil && domain.ErrorCode(err) != domain.CodeNotFound {
			return TaskResult{}, err
		}
		access = task.Access(a)
	}
	evs, err := task.Decide(st, command(access), h.now())
	if err != nil {
		return TaskResult{}, err
	}
	var res eventstore.AppendResult
	var prev *eventstore.IdempotentResult
	err = h.inTx(ctx, func(t *txn) error {
		var err error
		if evs, err = also(ctx, t, q, st, evs); err != nil {
			return err
		}
		res, prev, err = h.appendIdempotent(ctx, t, cc, id, eventstore.AppendRequest{
			Streams:  []eventstore.StreamAppend{{StreamType: task.StreamType, StreamID: id, TenantID: &tenant, ExpectedVersion: st.Version, Events: evs}},
			Metadata: cc.metadata(uuid.Must(uuid.NewV7())),
		})
		if prev != nil {
			return errReplayed
		}
		return err
	})
	return h.taskOutcome(ctx, st, evs, res, prev, err)
}

// inTx runs f in a transaction of the command pool and commits if f returns nil; local subscribers
// are woken for what it appended.
func (h *Handlers) inTx(ctx context.Context, f func(t *txn) error) error {
	t := &txn{}
	err := pgx.BeginFunc(ctx, h.sessions.Pool, func(tx pgx.Tx) error {
		t.Tx = tx
		return f(t)
	})
	if err != nil {
		return err
	}
	for _, res := range t.appended {
		h.store.Committed(res)
	}
	return nil
}

func (h *Handlers) taskOutcome(ctx context.Context, st task.State, evs []domain.Event, res eventstore.AppendResult, prev *eventstore.IdempotentResult, err error) (TaskResult, error) {
	if prev != nil {
		return h.taskReplay(ctx, *prev, nil)
	}
	if err != nil {
		return TaskResult{}, err
	}
	for _, e := range evs {
		st = task.Evolve(st, e)
	}
	return TaskResult{Task: st, Position: res.Position}, nil
}

// taskReplay rebuilds the result of an earlier idempotent command from the task's stream as it was
// right after that command.
func (h *Handlers) taskReplay(ctx context.Context, prev eventstore.IdempotentResult, err error) (TaskResult, error) {
	if err != nil {
		return TaskResult{}, err
	}
	st, err := h.Task(ctx, prev.StreamID, prev.StreamVersion)
	if err != nil {
		return TaskResult{}, fmt.Errorf("replay idempotent result: %w", err)
	}
	return TaskResult{Task: st, Position: prev.Position}, nil
}

// TaskAttempt is a worker's handle on the attempt it runs: every report is decided against the
// task's state and appended at the expected version, so an attempt that was superseded (the task
// was cancelled, or the job was rescued from this worker and started elsewhere) can never report
// again, and a task completes at most once.
type TaskAttempt struct {
	h            *Handlers
	state        task.State
	tenant       uuid.UUID
	run, attempt int
	correlation  string
}

// StartTaskAttempt records that a worker started attempt `attempt` of run `run`. It fails with
// task.ErrSuperseded when that attempt must not run (the task is finished, cancelled, or another
// run or a later attempt is current).
func (h *Handlers) StartTaskAttempt(ctx context.Context, id uuid.UUID, run, attempt int, worker string) (*TaskAttempt, error) {
	a := &TaskAttempt{h: h, run: run, attempt: attempt, correlation: id.String()}
	if err := a.report(ctx, func() any { return task.Start{Run: run, Attempt: attempt, Worker: worker} }); err != nil {
		return nil, err
	}
	return a, nil
}

// State is the task as this attempt last saw it.
func (a *TaskAttempt) State() task.State { return a.state }

// Output appends a chunk of output text.
func (a *TaskAttempt) Output(ctx context.Context, text string) error {
	return a.report(ctx, func() any { return task.AppendOutput{Run: a.run, Attempt: a.attempt, Text: text} })
}

// Complete records the attempt's success with the kind's result.
func (a *TaskAttempt) Complete(ctx context.Context, result json.RawMessage) error {
	return a.report(ctx, func() any { return task.Complete{Run: a.run, Attempt: a.attempt, Result: result} })
}

// Fail records the attempt's failure; with retryAt the task goes back to queued until then.
func (a *TaskAttempt) Fail(ctx context.Context, msg string, retryAt *time.Time) error {
	return a.report(ctx, func() any { return task.Fail{Run: a.run, Attempt: a.attempt, Error: msg, RetryAt: retryAt} })
}

// report decides cmd on the attempt's view of the task and appends at its version; when the stream
// moved on (a cancel, an output of nobody else), it reloads and decides again.
func (a *TaskAttempt) report(ctx context.Context, cmd func() any) error {
	fresh := !a.state.Exists()
	for try := 0; ; try++ {
		if fresh {
			recs, err := a.h.store.ReadStream(ctx, a.correlationID(), 0)
			if err != nil {
				return err
			}
			a.state = task.State{}
			for _, r := range recs {
				a.state = task.Evolve(a.state, r.Event)
				if r.TenantID != nil {
					a.tenant = *r.TenantID
				}
			}
		}
		evs, err := task.Decide(a.state, cmd(), a.h.now())
		if err != nil || len(evs) == 0 {
			return err
		}
		_, err = a.h.store.Append(ctx, eventstore.AppendRequest{
			Streams: []eventstore.StreamAppend{{StreamType: task.StreamType, StreamID: a.state.ID, TenantID: &a.tenant,
				ExpectedVersion: a.state.Version, Events: evs}},
			Metadata: eventstore.Metadata{CorrelationID: a.correlation, CausationID: a.correlation},
		})
		if errors.Is(err, eventstore.ErrVersionConflict) && try < 10 {
			fresh = true
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range evs {
			a.state = task.Evolve(a.state, e)
		}
		return nil
	}
}

func (a *TaskAttempt) correlationID() uuid.UUID { return uuid.MustParse(a.correlation) }

// ReleaseLostAttempt records, for a job whose worker stopped heartbeating, that attempt `attempt` of
// run `run` failed; with retryAt the task goes back to queued. It appends at the version it read
// (task.ErrSuperseded or a version conflict when the task moved on) and returns the task's state.
// then, when not nil, runs in the same transaction after the append (the queue resets its job there).
func (h *Handlers) ReleaseLostAttempt(ctx context.Context, id uuid.UUID, run, attempt int, retryAt *time.Time, msg string,
	then func(ctx context.Context, tx pgx.Tx, st task.State) error) (task.State, error) {
	recs, err := h.store.ReadStream(ctx, id, 0)
	if err != nil {
		return task.State{}, err
	}
	var st task.State
	var tenant uuid.UUID
	for _, r := range recs {
		st = task.Evolve(st, r.Event)
		if r.TenantID != nil {
			tenant = *r.TenantID
		}
	}
	evs, err := task.Decide(st, task.Fail{Run: run, Attempt: attempt, Error: msg, RetryAt: retryAt}, h.now())
	if err != nil {
		return st, err
	}
	err = h.inTx(ctx, func(t *txn) error {
		res, err := h.store.AppendTx(ctx, t.Tx, eventstore.AppendRequest{
			Streams:  []eventstore.StreamAppend{{StreamType: task.StreamType, StreamID: id, TenantID: &tenant, ExpectedVersion: st.Version, Events: evs}},
			Metadata: eventstore.Metadata{CorrelationID: id.String(), CausationID: id.String()},
		})
		if err != nil {
			return err
		}
		t.appended = append(t.appended, res)
		for _, e := range evs {
			st = task.Evolve(st, e)
		}
		if then != nil {
			return then(ctx, t.Tx, st)
		}
		return nil
	})
	return st, err
}

// AbandonTaskRun fails run `run` of a task for good with reason, when the job queue finalized its job
// without the task finishing (task.ErrSuperseded when it did finish or moved on).
func (h *Handlers) AbandonTaskRun(ctx context.Context, id uuid.UUID, run int, reason string) error {
	a := &TaskAttempt{h: h, correlation: id.String()}
	return a.report(ctx, func() any { return task.Abandon{Run: run, Reason: reason} })
}

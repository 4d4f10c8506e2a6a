// Package task is the background task aggregate: a unit of work of a registered kind in a space, run
// by a worker with retries, timeouts and cancellation. Its whole life is in its events; the job
// queue only schedules attempts.
package task

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
)

// StreamType names the event streams of tasks.
const StreamType = "task"

// Event names. The list only grows; a changed payload gets a new version and an upcaster.
const (
	EventCreated   = "task.created.v1"
	EventQueued    = "task.queued.v1"
	EventStarted   = "task.started.v1"
	EventOutput    = "task.output.v1"
	EventCompleted = "task.completed.v1"
	EventFailed    = "task.failed.v1"
	EventCancelled = "task.cancelled.v1"
	EventRetried   = "task.retried.v1"
)

// Status is where a task stands.
type Status string

// The statuses: pending → queued → running → completed | failed | cancelled. A failed attempt with
// attempts left goes back to queued.
const (
	StatusPending   Status = "pending"
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Finished reports whether no attempt will run any more (until a retry).
func (s Status) Finished() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Limits.
const (
	MaxInputBytes  = 64 << 10  // a task's input, as JSON
	MaxOutputBytes = 256 << 10 // the output kept per attempt; more is cut with a note
	MaxErrorLength = 2000      // characters of an error message kept
	MaxResultBytes = 16 << 10  // a task's structured result, as JSON
)

// Created records a new task. CreatedBy is whose permissions the task runs with.
type Created struct {
	TaskID      uuid.UUID       `json:"task_id"`
	SpaceID     uuid.UUID       `json:"space_id"`
	Kind        string          `json:"kind"`
	Input       json.RawMessage `json:"input"`
	MaxAttempts int             `json:"max_attempts"`
	CreatedBy   uuid.UUID       `json:"created_by"`
	// SubjectID is the owning user of a personal space: the task's output and result are sealed
	// under their key (absent in organization spaces).
	SubjectID *uuid.UUID `json:"subject_id,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
}

// Queued records that a run of the task was put on the job queue, in the same transaction as the
// job. Run counts the task's runs (1, then one more per retry); JobID is the queue's job.
type Queued struct {
	TaskID   uuid.UUID `json:"task_id"`
	Run      int       `json:"run"`
	JobID    int64     `json:"job_id"`
	QueuedAt time.Time `json:"queued_at"`
}

// Started records that a worker began attempt Attempt (1-based, within the run).
type Started struct {
	TaskID    uuid.UUID `json:"task_id"`
	Run       int       `json:"run"`
	Attempt   int       `json:"attempt"`
	Worker    string    `json:"worker"`
	StartedAt time.Time `json:"started_at"`
}

// OutputAppended records a chunk of the running attempt's output text.
type OutputAppended struct {
	TaskID  uuid.UUID `json:"task_id"`
	Run     int       `json:"run"`
	Attempt int       `json:"attempt"`
	Text    string    `json:"text"`
	// SubjectID as in Created: set in personal spaces, where Text is sealed.
	SubjectID *uuid.UUID `json:"subject_id,omitempty"`
	At        time.Time  `json:"at"`
}

// PersonalData implements domain.PersonalData: the output text, in personal spaces.
func (e *OutputAppended) PersonalData() (uuid.UUID, []*string) {
	return subject(e.SubjectID), []*string{&e.Text}
}

func subject(id *uuid.UUID) uuid.UUID {
	if id == nil {
		return uuid.Nil
	}
	return *id
}

// Completed records the success of an attempt, with the kind's structured result: Result in
// organization spaces; in personal spaces PersonalResult, the same JSON as sealed text.
type Completed struct {
	TaskID         uuid.UUID       `json:"task_id"`
	Run            int             `json:"run"`
	Attempt        int             `json:"attempt"`
	Result         json.RawMessage `json:"result,omitempty"`
	PersonalResult string          `json:"personal_result,omitempty"`
	SubjectID      *uuid.UUID      `json:"subject_id,omitempty"`
	CompletedAt    time.Time       `json:"completed_at"`
}

// PersonalData implements domain.PersonalData: the result, in personal spaces.
func (e *Completed) PersonalData() (uuid.UUID, []*string) {
	return subject(e.SubjectID), []*string{&e.PersonalResult}
}

// ResultJSON is the result as JSON, whichever field holds it; an erased result reads as the JSON
// string "[erased]".
func (e Completed) ResultJSON() json.RawMessage {
	if e.PersonalResult == "" {
		return e.Result
	}
	if json.Valid([]byte(e.PersonalResult)) {
		return json.RawMessage(e.PersonalResult)
	}
	b, _ := json.Marshal(domain.ErasedValue)
	return b
}

// Failed records the failure of an attempt. With RetryAt set the task goes back to queued and the
// next attempt starts at that time; without it the task has failed for good.
type Failed struct {
	TaskID   uuid.UUID  `json:"task_id"`
	Run      int        `json:"run"`
	Attempt  int        `json:"attempt"`
	Error    string     `json:"error"`
	RetryAt  *time.Time `json:"retry_at,omitempty"`
	FailedAt time.Time  `json:"failed_at"`
}

// Cancelled records that the task was cancelled; a running attempt is told to stop.
type Cancelled struct {
	TaskID      uuid.UUID `json:"task_id"`
	CancelledAt time.Time `json:"cancelled_at"`
}

// Retried records that a failed or cancelled task was asked to run again; a Queued event follows.
type Retried struct {
	TaskID    uuid.UUID `json:"task_id"`
	RetriedAt time.Time `json:"retried_at"`
}

func (Created) EventName() string        { return EventCreated }
func (Queued) EventName() string         { return EventQueued }
func (Started) EventName() string        { return EventStarted }
func (OutputAppended) EventName() string { return EventOutput }
func (Completed) EventName() string      { return EventCompleted }
func (Failed) EventName() string         { return EventFailed }
func (Cancelled) EventName() string      { return EventCancelled }
func (Retried) EventName() string        { return EventRetried }

// State is a task as its events leave it.
type State struct {
	ID          uuid.UUID
	SpaceID     uuid.UUID
	Kind        string
	Input       json.RawMessage
	MaxAttempts int
	CreatedBy   uuid.UUID
	Subject     *uuid.UUID
	Status      Status
	Run         int   // the current run (0 before the first Queued)
	JobID       int64 // the current run's job
	Attempt     int   // the current run's attempt (0 before it starts)
	Attempts    int   // attempts started over the task's life
	Output      string
	Result      json.RawMessage
	Error       string
	RetryAt     *time.Time // when a failed attempt's successor is due
	CreatedAt   time.Time
	StartedAt   *time.Time
	FinishedAt  *time.Time
	UpdatedAt   time.Time
	Version     int64
}

// Exists reports whether the task was created.
func (s State) Exists() bool { return s.Version > 0 }

// Access is what the actor may do in the task's space, as the space aggregate decides it.
type Access struct {
	Read, Write bool
}

// Create asks for a new task. The caller has checked the kind and validated Input against its schema.
type Create struct {
	TaskID      uuid.UUID
	SpaceID     uuid.UUID
	Kind        string
	Input       json.RawMessage
	MaxAttempts int
	Actor       uuid.UUID
	Subject     *uuid.UUID // the personal space's owner; nil in organization spaces
	Access      Access
}

// Queue records the job that runs the task's next run.
type Queue struct {
	JobID int64
}

// Start, AppendOutput, Complete and Fail come from the worker running attempt Attempt of run Run.
// They are refused (ErrSuperseded) when that attempt is no longer the task's current one: a
// cancelled task, a newer run, or a newer attempt after the job was rescued from a dead worker.
type (
	Start struct {
		Run, Attempt int
		Worker       string
	}
	AppendOutput struct {
		Run, Attempt int
		Text         string
	}
	Complete struct {
		Run, Attempt int
		Result       json.RawMessage
	}
	Fail struct {
		Run, Attempt int
		Error        string
		RetryAt      *time.Time // nil: no attempts left, or the error is permanent
	}
)

// Abandon records that the job queue gave up on run Run (its job was finalized without the task
// finishing): the task fails for good with Reason. It is refused once the task finished or moved on.
type Abandon struct {
	Run    int
	Reason string
}

// Cancel asks to cancel a pending, queued or running task.
type Cancel struct{ Access Access }

// Retry asks to run a failed or cancelled task again.
type Retry struct{ Access Access }

// ErrSuperseded refuses a worker's report about an attempt that is no longer the task's current one.
var ErrSuperseded = &domain.Error{Code: domain.CodeConflict, Message: "the attempt is no longer the task's current attempt"}

// Decide returns the events a command causes in state, or a *domain.Error: CodeNotFound when the task
// (or its space, for the actor) does not exist, CodeForbidden when the actor may read the space but
// not write in it, CodeConflict for a command the task's status does not allow (ErrSuperseded for a
// worker's stale report), CodeInvalid for broken fields.
func Decide(s State, cmd any, now time.Time) ([]domain.Event, error) {
	now = now.UTC()
	switch c := cmd.(type) {
	case Create:
		if s.Exists() {
			return nil, domain.Errorf(domain.CodeConflict, "task %s already exists", c.TaskID)
		}
		switch {
		case !c.Access.Read:
			return nil, domain.Errorf(domain.CodeNotFound, "space not found")
		case !c.Access.Write:
			return nil, domain.Errorf(domain.CodeForbidden, "only the space's editors and managers start tasks")
		}
		v := domain.Validation{}
		if c.Kind == "" {
			v.Add("kind", "is required")
		}
		if len(c.Input) > MaxInputBytes {
			v.Add("input", fmt.Sprintf("must be at most %d bytes of JSON", MaxInputBytes))
		}
		if c.MaxAttempts < 1 {
			v.Add("max_attempts", "must be at least 1")
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		input := c.Input
		if len(input) == 0 {
			input = json.RawMessage(`{}`)
		}
		return []domain.Event{Created{TaskID: c.TaskID, SpaceID: c.SpaceID, Kind: c.Kind, Input: input, MaxAttempts: c.MaxAttempts,
			CreatedBy: c.Actor, SubjectID: c.Subject, CreatedAt: now}}, nil
	case Queue:
		if !s.Exists() {
			return nil, domain.Errorf(domain.CodeNotFound, "task not found")
		}
		if s.Status != StatusPending {
			return nil, domain.Errorf(domain.CodeConflict, "task is %s, not pending", s.Status)
		}
		return []domain.Event{Queued{TaskID: s.ID, Run: s.Run + 1, JobID: c.JobID, QueuedAt: now}}, nil
	case Start:
		if err := s.current(c.Run, c.Attempt, true); err != nil {
			return nil, err
		}
		return []domain.Event{Started{TaskID: s.ID, Run: c.Run, Attempt: c.Attempt, Worker: c.Worker, StartedAt: now}}, nil
	case AppendOutput:
		if err := s.current(c.Run, c.Attempt, false); err != nil {
			return nil, err
		}
		if c.Text == "" {
			return nil, nil
		}
		room := MaxOutputBytes - len(s.Output)
		if room <= 0 {
			return nil, nil
		}
		text := c.Text
		if len(text) > room {
			const note = "\n[output cut: the task's output is limited]\n"
			text = truncate(text, max(room-len(note), 0)) + note
		}
		return []domain.Event{OutputAppended{TaskID: s.ID, Run: c.Run, Attempt: c.Attempt, Text: text, SubjectID: s.Subject, At: now}}, nil
	case Complete:
		if err := s.current(c.Run, c.Attempt, false); err != nil {
			return nil, err
		}
		if len(c.Result) > MaxResultBytes {
			return nil, domain.Errorf(domain.CodeInvalid, "a task's result must be at most %d bytes of JSON", MaxResultBytes)
		}
		e := Completed{TaskID: s.ID, Run: c.Run, Attempt: c.Attempt, Result: c.Result, CompletedAt: now}
		if s.Subject != nil && len(c.Result) > 0 {
			e.Result, e.PersonalResult, e.SubjectID = nil, string(c.Result), s.Subject
		}
		return []domain.Event{e}, nil
	case Fail:
		if err := s.current(c.Run, c.Attempt, false); err != nil {
			return nil, err
		}
		msg := c.Error
		if msg == "" {
			msg = "the attempt failed"
		}
		var retryAt *time.Time
		if c.RetryAt != nil {
			t := c.RetryAt.UTC()
			retryAt = &t
		}
		return []domain.Event{Failed{TaskID: s.ID, Run: c.Run, Attempt: c.Attempt, Error: truncate(msg, MaxErrorLength), RetryAt: retryAt, FailedAt: now}}, nil
	case Abandon:
		if !s.Exists() {
			return nil, domain.Errorf(domain.CodeNotFound, "task not found")
		}
		if s.Status.Finished() || s.Status == StatusPending || c.Run != s.Run {
			return nil, ErrSuperseded
		}
		return []domain.Event{Failed{TaskID: s.ID, Run: s.Run, Attempt: s.Attempt, Error: truncate(c.Reason, MaxErrorLength), FailedAt: now}}, nil
	case Cancel:
		if err := s.authorize(c.Access); err != nil {
			return nil, err
		}
		if s.Status.Finished() {
			return nil, domain.Errorf(domain.CodeConflict, "task is already %s", s.Status)
		}
		return []domain.Event{Cancelled{TaskID: s.ID, CancelledAt: now}}, nil
	case Retry:
		if err := s.authorize(c.Access); err != nil {
			return nil, err
		}
		if s.Status != StatusFailed && s.Status != StatusCancelled {
			return nil, domain.Errorf(domain.CodeConflict, "only a failed or cancelled task can be retried; this one is %s", s.Status)
		}
		return []domain.Event{Retried{TaskID: s.ID, RetriedAt: now}}, nil
	default:
		return nil, domain.Errorf(domain.CodeInternal, "task: unknown command %T", cmd)
	}
}

// current refuses a worker's report unless (run, attempt) is the task's current attempt; starting
// accepts a later attempt of the current run (the queue retried or rescued the job).
func (s State) current(run, attempt int, starting bool) error {
	if !s.Exists() {
		return domain.Errorf(domain.CodeNotFound, "task not found")
	}
	if s.Status.Finished() || run != s.Run {
		return ErrSuperseded
	}
	if starting {
		if (s.Status != StatusQueued && s.Status != StatusRunning) || attempt <= s.Attempt {
			return ErrSuperseded
		}
		return nil
	}
	if s.Status != StatusRunning || attempt != s.Attempt {
		return ErrSuperseded
	}
	return nil
}

func (s State) authorize(a Access) error {
	switch {
	case !s.Exists() || !a.Read:
		return domain.Errorf(domain.CodeNotFound, "task not found")
	case !a.Write:
		return domain.Errorf(domain.CodeForbidden, "only the space's editors and managers cancel or retry tasks")
	}
	return nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// Evolve applies one event to state. It never fails: unknown events only advance the version.
func Evolve(s State, e domain.Event) State {
	s.Version++
	switch e := e.(type) {
	case Created:
		s.ID, s.SpaceID, s.Kind, s.Input, s.MaxAttempts, s.CreatedBy = e.TaskID, e.SpaceID, e.Kind, e.Input, e.MaxAttempts, e.CreatedBy
		s.Subject = e.SubjectID
		s.Status, s.CreatedAt, s.UpdatedAt = StatusPending, e.CreatedAt, e.CreatedAt
	case Queued:
		s.Status, s.Run, s.JobID, s.Attempt, s.UpdatedAt = StatusQueued, e.Run, e.JobID, 0, e.QueuedAt
	case Started:
		s.Status, s.Attempt, s.UpdatedAt = StatusRunning, e.Attempt, e.StartedAt
		s.Attempts++
		s.Output, s.RetryAt = "", nil
		at := e.StartedAt
		s.StartedAt = &at
	case OutputAppended:
		s.Output += e.Text
		s.UpdatedAt = e.At
	case Completed:
		s.Status, s.Result, s.Error, s.UpdatedAt = StatusCompleted, e.ResultJSON(), "", e.CompletedAt
		at := e.CompletedAt
		s.FinishedAt = &at
	case Failed:
		s.Error, s.UpdatedAt = e.Error, e.FailedAt
		if e.RetryAt != nil {
			at := *e.RetryAt
			s.Status, s.RetryAt = StatusQueued, &at
		} else {
			at := e.FailedAt
			s.Status, s.FinishedAt = StatusFailed, &at
		}
	case Cancelled:
		s.Status, s.RetryAt, s.UpdatedAt = StatusCancelled, nil, e.CancelledAt
		at := e.CancelledAt
		s.FinishedAt = &at
	case Retried:
		s.Status, s.Error, s.Result, s.Output, s.RetryAt, s.FinishedAt, s.UpdatedAt = StatusPending, "", nil, "", nil, nil, e.RetriedAt
	}
	return s
}

package projections

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/space"
	"github.com/atlas-workspace/atlas/domain/task"
	"github.com/atlas-workspace/atlas/eventstore"
)

// TasksProjector names the tasks projector.
const TasksProjector = "tasks"

// Tasks projects task events into tasks. It follows space deletions as the notes projector does: a
// deleted space's tasks go, and a task event of it later in the log is never projected.
func Tasks() *Projector {
	update := func(sql string, args func(r eventstore.Record) []any) Handler {
		return func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
			_, err := tx.Exec(ctx, `UPDATE tasks SET version = $2, `+sql+` WHERE id = $1`, append([]any{r.StreamID, r.StreamVersion}, args(r)...)...)
			return err
		}
	}
	return &Projector{
		Name: TasksProjector, Version: 1, Tables: []string{"tasks", "task_space_tombstones"},
		Handlers: map[string]Handler{
			task.EventCreated: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				e := r.Event.(task.Created)
				tenant := uuid.Nil
				if r.TenantID != nil {
					tenant = *r.TenantID
				}
				creator := e.CreatedBy
				_, err := tx.Exec(ctx, `INSERT INTO tasks (id, space_id, tenant_id, kind, input, status, max_attempts, version, created_by, created_at, updated_at)
					SELECT $1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $9
					WHERE NOT EXISTS (SELECT 1 FROM task_space_tombstones WHERE space_id = $2)
					ON CONFLICT (id) DO NOTHING`,
					e.TaskID, e.SpaceID, tenant, e.Kind, string(e.Input), e.MaxAttempts, r.StreamVersion, &creator, e.CreatedAt)
				return err
			},
			task.EventQueued: update(`status = 'queued', run = $3, attempt = 0, updated_at = $4`, func(r eventstore.Record) []any {
				e := r.Event.(task.Queued)
				return []any{e.Run, e.QueuedAt}
			}),
			task.EventStarted: update(`status = 'running', attempt = $3, attempts = attempts + 1, output = '', retry_at = NULL,
					started_at = $4, updated_at = $4`, func(r eventstore.Record) []any {
				e := r.Event.(task.Started)
				return []any{e.Attempt, e.StartedAt}
			}),
			task.EventOutput: update(`output = output || $3::text, updated_at = $4`, func(r eventstore.Record) []any {
				e := r.Event.(task.OutputAppended)
				return []any{e.Text, e.At}
			}),
			task.EventCompleted: update(`status = 'completed', result = $3, error = NULL, finished_at = $4, updated_at = $4`, func(r eventstore.Record) []any {
				e := r.Event.(task.Completed)
				var result *string
				if r := e.ResultJSON(); len(r) > 0 {
					s := string(r)
					result = &s
				}
				return []any{result, e.CompletedAt}
			}),
			task.EventFailed: update(`error = $3::text, retry_at = $4::timestamptz,
					status = CASE WHEN $4::timestamptz IS NULL THEN 'failed' ELSE 'queued' END,
					finished_at = CASE WHEN $4::timestamptz IS NULL THEN $5::timestamptz END, updated_at = $5::timestamptz`, func(r eventstore.Record) []any {
				e := r.Event.(task.Failed)
				return []any{e.Error, e.RetryAt, e.FailedAt}
			}),
			task.EventCancelled: update(`status = 'cancelled', retry_at = NULL, finished_at = $3, updated_at = $3`, func(r eventstore.Record) []any {
				return []any{r.Event.(task.Cancelled).CancelledAt}
			}),
			task.EventRetried: update(`status = 'pending', error = NULL, result = NULL, output = '', retry_at = NULL, finished_at = NULL,
					updated_at = $3`, func(r eventstore.Record) []any {
				return []any{r.Event.(task.Retried).RetriedAt}
			}),
			space.EventDeleted: func(ctx context.Context, tx pgx.Tx, r eventstore.Record) error {
				if _, err := tx.Exec(ctx, `INSERT INTO task_space_tombstones (space_id) VALUES ($1) ON CONFLICT DO NOTHING`, r.StreamID); err != nil {
					return err
				}
				// The space's exports go with it: the blob reaper deletes them (the key is
				// workers.ArtifactKey of the completing attempt).
				if _, err := tx.Exec(ctx, `INSERT INTO blob_deletions (blob_key, enqueued_at, next_attempt_at)
					SELECT 'exports/' || id || '/' || run || '-' || attempt || '.zip', $2, $2 FROM tasks
					WHERE space_id = $1 AND kind = 'space.export' AND status = 'completed'
					ON CONFLICT DO NOTHING`, r.StreamID, r.RecordedAt); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `DELETE FROM tasks WHERE space_id = $1`, r.StreamID)
				return err
			},
		},
	}
}

// TaskView is a task as the tasks read model holds it. Input and Output are left out of listings.
type TaskView struct {
	ID          uuid.UUID       `json:"id"`
	SpaceID     uuid.UUID       `json:"space_id"`
	Kind        string          `json:"kind"`
	Input       json.RawMessage `json:"input,omitempty"`
	Status      string          `json:"status"`
	Attempts    int             `json:"attempts"`
	MaxAttempts int             `json:"max_attempts"`
	Run         int             `json:"run"`
	Output      *string         `json:"output,omitempty"`
	Result      json.RawMessage `json:"result"`
	Error       *string         `json:"error"`
	RetryAt     *time.Time      `json:"retry_at"`
	Version     int64           `json:"version"`
	CreatedBy   *uuid.UUID      `json:"created_by,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	StartedAt   *time.Time      `json:"started_at"`
	FinishedAt  *time.Time      `json:"finished_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

const taskColumns = `t.id, t.space_id, t.kind, t.status, t.attempts, t.max_attempts, t.run, t.result, t.error, t.retry_at, t.version,
	t.created_by, t.created_at, t.started_at, t.finished_at, t.updated_at`

func scanTask(row pgx.Row, full bool) (TaskView, error) {
	var v TaskView
	var result, input []byte
	dest := []any{&v.ID, &v.SpaceID, &v.Kind, &v.Status, &v.Attempts, &v.MaxAttempts, &v.Run, &result, &v.Error, &v.RetryAt, &v.Version,
		&v.CreatedBy, &v.CreatedAt, &v.StartedAt, &v.FinishedAt, &v.UpdatedAt}
	if full {
		dest = append(dest, &input, &v.Output)
	}
	if err := row.Scan(dest...); err != nil {
		return v, err
	}
	if len(result) > 0 {
		v.Result = json.RawMessage(result)
	}
	if len(input) > 0 {
		v.Input = json.RawMessage(input)
	}
	utc := func(t *time.Time) {
		if t != nil {
			*t = t.UTC()
		}
	}
	v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
	utc(v.StartedAt)
	utc(v.FinishedAt)
	utc(v.RetryAt)
	return v, nil
}

// Task returns a task viewer may read (through its space); CodeNotFound otherwise.
func (q *Queries) Task(ctx context.Context, viewer, id uuid.UUID) (TaskView, error) {
	var v TaskView
	found := false
	err := q.tenantQuery(ctx, viewer, func(rows pgx.Rows) (err error) {
		v, err = scanTask(rows, true)
		found = true
		return err
	}, `SELECT `+taskColumns+`, t.input, t.output FROM tasks t WHERE t.id = $1 AND `+readableSpace("t.space_id"), id, viewer, Anyone)
	if err == nil && !found {
		return v, domain.Errorf(domain.CodeNotFound, "task not found")
	}
	return v, err
}

// TaskPage is one page of a task listing.
type TaskPage struct {
	Items      []TaskView
	NextCursor *string
}

// TasksOf lists a space's tasks (without input and output), oldest first, optionally only those in
// status, for a viewer who may read the space; CodeNotFound otherwise. A malformed cursor is
// CodeBadRequest.
func (q *Queries) TasksOf(ctx context.Context, viewer, spaceID uuid.UUID, status, cursor string, limit int) (TaskPage, error) {
	items, next, err := inSpace(ctx, q, viewer, spaceID, cursor, limit, "tasks",
		`SELECT `+taskColumns+` FROM tasks t
			WHERE t.space_id = $1 AND t.id > $2 AND ($4 = '' OR t.status = $4) ORDER BY t.id LIMIT $3`,
		func(r pgx.Row) (TaskView, error) { return scanTask(r, false) }, func(v TaskView) uuid.UUID { return v.ID }, status)
	return TaskPage{Items: items, NextCursor: next}, err
}

package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/task"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/projections"
)

// Tasks is what the API needs for background tasks: their commands, their read model, and their
// artifacts.
type Tasks interface {
	CreateTask(ctx context.Context, cc commands.Context, spaceID uuid.UUID, kind string, input json.RawMessage) (commands.TaskResult, error)
	CancelTask(ctx context.Context, cc commands.Context, id uuid.UUID) (commands.TaskResult, error)
	RetryTask(ctx context.Context, cc commands.Context, id uuid.UUID) (commands.TaskResult, error)
	// TaskFor loads a task from its events for a viewer who may read it (CodeNotFound otherwise).
	TaskFor(ctx context.Context, viewer, id uuid.UUID) (task.State, task.Access, error)
	Task(ctx context.Context, viewer, id uuid.UUID) (projections.TaskView, error)
	TasksOf(ctx context.Context, viewer, spaceID uuid.UUID, status, cursor string, limit int) (projections.TaskPage, error)
	// OpenArtifact opens the artifact of a completed task for viewer: CodeNotFound when viewer may not
	// read the task or it has no artifact, CodeForbidden when the artifact holds files only its
	// creator may read.
	OpenArtifact(ctx context.Context, viewer, id uuid.UUID) (Artifact, error)
}

// Artifact is a task's downloadable result.
type Artifact struct {
	Name, ContentType string
	Size              int64
	ModTime           time.Time
	Body              io.ReadCloser
}

// taskDTO is a task as the API shows it: the read model's view, and after a command its position.
type taskDTO struct {
	projections.TaskView
	Position string `json:"position,omitempty"`
}

func taskFromView(v projections.TaskView) taskDTO {
	if v.Result == nil {
		v.Result = json.RawMessage("null")
	}
	return taskDTO{TaskView: v}
}

// taskFromState shows the task a command left, in the read model's shape.
func taskFromState(st task.State) taskDTO {
	out := st.Output
	v := projections.TaskView{ID: st.ID, SpaceID: st.SpaceID, Kind: st.Kind, Input: st.Input, Status: string(st.Status),
		Attempts: st.Attempts, MaxAttempts: st.MaxAttempts, Run: st.Run, Output: &out, Result: st.Result, RetryAt: st.RetryAt,
		Version: st.Version, CreatedAt: st.CreatedAt.UTC(), StartedAt: st.StartedAt, FinishedAt: st.FinishedAt,
		UpdatedAt: st.UpdatedAt.UTC()}
	if st.CreatedBy != uuid.Nil {
		by := st.CreatedBy
		v.CreatedBy = &by
	}
	if st.Error != "" {
		e := st.Error
		v.Error = &e
	}
	return taskFromView(v)
}

func (s *Server) taskCommandResponse(c echo.Context, status int, r commands.TaskResult) error {
	dto := taskFromState(r.Task)
	dto.Position = withPosition(c, r.Position)
	setETag(c, r.Task.Version)
	return c.JSON(status, dto)
}

func (s *Server) tasks() (Tasks, error) {
	if s.deps.Tasks == nil {
		return nil, domain.Errorf(domain.CodeNotReady, "background tasks are not available in this process")
	}
	return s.deps.Tasks, nil
}

func (s *Server) createTask(c echo.Context) error {
	spaceID, err := pathUUID(c, "space_id")
	if err != nil {
		return err
	}
	var in struct {
		Kind  *string         `json:"kind"`
		Input json.RawMessage `json:"input"`
	}
	cc, _, err := readCommand(c, &in, false)
	if err != nil {
		return err
	}
	if in.Kind == nil || *in.Kind == "" {
		return domain.Validation{"kind": "is required"}.Err()
	}
	if len(in.Input) == 0 || string(in.Input) == "null" {
		in.Input = json.RawMessage(`{}`)
	}
	ts, err := s.tasks()
	if err != nil {
		return err
	}
	r, err := ts.CreateTask(c.Request().Context(), cc, spaceID, *in.Kind, in.Input)
	if err != nil {
		return err
	}
	return s.taskCommandResponse(c, http.StatusCreated, r)
}

func (s *Server) taskCommand(c echo.Context, run func(ts Tasks, ctx context.Context, cc commands.Context, id uuid.UUID) (commands.TaskResult, error)) error {
	id, err := pathUUID(c, "task_id")
	if err != nil {
		return err
	}
	cc, err := commandContext(c, nil)
	if err != nil {
		return err
	}
	ts, err := s.tasks()
	if err != nil {
		return err
	}
	r, err := run(ts, c.Request().Context(), cc, id)
	if err != nil {
		return err
	}
	return s.taskCommandResponse(c, http.StatusOK, r)
}

func (s *Server) cancelTask(c echo.Context) error {
	return s.taskCommand(c, func(ts Tasks, ctx context.Context, cc commands.Context, id uuid.UUID) (commands.TaskResult, error) {
		return ts.CancelTask(ctx, cc, id)
	})
}

func (s *Server) retryTask(c echo.Context) error {
	return s.taskCommand(c, func(ts Tasks, ctx context.Context, cc commands.Context, id uuid.UUID) (commands.TaskResult, error) {
		return ts.RetryTask(ctx, cc, id)
	})
}

func (s *Server) getTask(c echo.Context) error {
	ts, err := s.tasks()
	if err != nil {
		return err
	}
	if asOf := c.QueryParam("as_of"); asOf != "" {
		id, err := pathUUID(c, "task_id")
		if err != nil {
			return err
		}
		return stateAsOf(s, c, id, asOf, "task", func(ctx context.Context) error {
			_, _, err := ts.TaskFor(ctx, userID(c), id)
			return err
		}, task.Evolve, task.State.Exists, func(st task.State) int64 { return st.Version }, taskFromState)
	}
	return getOne(s, c, "task_id", []string{projections.TasksProjector, projections.PermissionsProjector}, ts.Task,
		func(v projections.TaskView) int64 { return v.Version }, taskFromView)
}

// taskStatuses are the values ?status= accepts.
var taskStatuses = map[string]bool{"pending": true, "queued": true, "running": true, "completed": true, "failed": true, "cancelled": true}

func (s *Server) listTasks(c echo.Context) error {
	ts, err := s.tasks()
	if err != nil {
		return err
	}
	status := c.QueryParam("status")
	if status != "" && !taskStatuses[status] {
		return domain.Validation{"status": "must be one of pending, queued, running, completed, failed, cancelled"}.Err()
	}
	return listUnder(s, c, "space_id", []string{projections.TasksProjector, projections.PermissionsProjector},
		func(ctx context.Context, viewer, id uuid.UUID, cursor string, limit int) ([]projections.TaskView, *string, error) {
			page, err := ts.TasksOf(ctx, viewer, id, status, cursor, limit)
			return page.Items, page.NextCursor, err
		}, taskFromView)
}

// taskHistory lists the events of a task's stream for whoever may read the task now.
func (s *Server) taskHistory(c echo.Context) error {
	ts, err := s.tasks()
	if err != nil {
		return err
	}
	return s.streamHistory(c, "task_id", func(ctx context.Context, id uuid.UUID) error {
		_, _, err := ts.TaskFor(ctx, userID(c), id)
		return err
	})
}

// getTaskArtifact streams a completed task's artifact (a space export's zip).
func (s *Server) getTaskArtifact(c echo.Context) error {
	ts, err := s.tasks()
	if err != nil {
		return err
	}
	id, err := pathUUID(c, "task_id")
	if err != nil {
		return err
	}
	a, err := ts.OpenArtifact(c.Request().Context(), userID(c), id)
	if err != nil {
		return err
	}
	defer a.Body.Close()
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, a.ContentType)
	h.Set(echo.HeaderContentLength, strconv.FormatInt(a.Size, 10))
	h.Set(echo.HeaderContentDisposition, `attachment; filename="`+sseLine(a.Name)+`"`)
	h.Set("Cache-Control", "private, no-store")
	if !a.ModTime.IsZero() {
		h.Set(echo.HeaderLastModified, a.ModTime.UTC().Format(http.TimeFormat))
	}
	c.Response().WriteHeader(http.StatusOK)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	_, err = io.Copy(c.Response(), a.Body)
	return err
}

// taskEvent is the data of one SSE event of a task's stream.
type taskEvent struct {
	TaskID  uuid.UUID       `json:"task_id"`
	Version int64           `json:"version"`
	Status  string          `json:"status,omitempty"`
	Run     int             `json:"run,omitempty"`
	Attempt int             `json:"attempt,omitempty"`
	Text    string          `json:"text,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   string          `json:"error,omitempty"`
	RetryAt *time.Time      `json:"retry_at,omitempty"`
	At      time.Time       `json:"at"`
}

// streamTask sends a task's events as Server-Sent Events: "status" (every change of status, with
// the attempt and, for a failed attempt that will be retried, its error and retry time), "output"
// (each chunk of output text), then "completed" or "failed", or a last "status" of "cancelled". Each
// event's id is the task's stream version: a client reconnecting with Last-Event-ID gets every event
// after it. A stream of a finished task ends after its last event.
func (s *Server) streamTask(c echo.Context) error {
	ts, err := s.tasks()
	if err != nil {
		return err
	}
	id, err := pathUUID(c, "task_id")
	if err != nil {
		return err
	}
	var after int64
	if v := lastEventID(c); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return domain.Errorf(domain.CodeBadRequest, "Last-Event-ID %q is not an event id of this stream", v)
		}
	}
	st, _, err := ts.TaskFor(c.Request().Context(), userID(c), id)
	if err != nil {
		return err
	}
	sse := startSSE(c)
	if st.Status.Finished() && after >= st.Version {
		return nil // nothing more will come (unless the task is retried: then connect again)
	}
	return s.followStream(c, sse, id, after, func(r eventstore.Record) (bool, error) {
		ev := taskEvent{TaskID: id, Version: r.StreamVersion, At: r.RecordedAt}
		name, done := "status", false
		switch e := r.Event.(type) {
		case task.Created:
			ev.Status = string(task.StatusPending)
		case task.Queued:
			ev.Status, ev.Run = string(task.StatusQueued), e.Run
		case task.Started:
			ev.Status, ev.Run, ev.Attempt = string(task.StatusRunning), e.Run, e.Attempt
		case task.OutputAppended:
			name, ev.Run, ev.Attempt, ev.Text = "output", e.Run, e.Attempt, e.Text
		case task.Completed:
			name, done = "completed", true
			ev.Status, ev.Run, ev.Attempt, ev.Result = string(task.StatusCompleted), e.Run, e.Attempt, e.ResultJSON()
		case task.Failed:
			ev.Run, ev.Attempt, ev.Error = e.Run, e.Attempt, e.Error
			if e.RetryAt != nil {
				ev.Status, ev.RetryAt = string(task.StatusQueued), e.RetryAt
			} else {
				name, done, ev.Status = "failed", true, string(task.StatusFailed)
			}
		case task.Cancelled:
			ev.Status, done = string(task.StatusCancelled), true
		case task.Retried:
			ev.Status = string(task.StatusPending)
		default:
			return false, nil
		}
		if err := sse.Send(strconv.FormatInt(r.StreamVersion, 10), name, ev); err != nil {
			return true, nil // the client went away
		}
		return done, nil
	})
}

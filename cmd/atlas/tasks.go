package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/atlas-workspace/atlas/ai/llm"
	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/task"
	"github.com/atlas-workspace/atlas/httpapi"
	"github.com/atlas-workspace/atlas/projections"
	"github.com/atlas-workspace/atlas/workers"
)

// taskAPI is what the HTTP API uses of tasks: the command handlers, the read model and the bucket.
type taskAPI struct {
	h      *commands.Handlers
	q      *projections.Queries
	bucket *blob.Bucket
}

func (t taskAPI) CreateTask(ctx context.Context, cc commands.Context, spaceID uuid.UUID, kind string, input json.RawMessage) (commands.TaskResult, error) {
	return t.h.CreateTask(ctx, cc, spaceID, kind, input)
}

func (t taskAPI) CancelTask(ctx context.Context, cc commands.Context, id uuid.UUID) (commands.TaskResult, error) {
	return t.h.CancelTask(ctx, cc, id)
}

func (t taskAPI) RetryTask(ctx context.Context, cc commands.Context, id uuid.UUID) (commands.TaskResult, error) {
	return t.h.RetryTask(ctx, cc, id)
}

func (t taskAPI) TaskFor(ctx context.Context, viewer, id uuid.UUID) (task.State, task.Access, error) {
	return t.h.TaskFor(ctx, viewer, id)
}

func (t taskAPI) Task(ctx context.Context, viewer, id uuid.UUID) (projections.TaskView, error) {
	return t.q.Task(ctx, viewer, id)
}

func (t taskAPI) TasksOf(ctx context.Context, viewer, spaceID uuid.UUID, status, cursor string, limit int) (projections.TaskPage, error) {
	return t.q.TasksOf(ctx, viewer, spaceID, status, cursor, limit)
}

// OpenArtifact opens a completed export's zip for a reader of its space; an export that holds files
// only its creator may read is for the creator alone.
func (t taskAPI) OpenArtifact(ctx context.Context, viewer, id uuid.UUID) (httpapi.Artifact, error) {
	st, _, err := t.h.TaskFor(ctx, viewer, id)
	if err != nil {
		return httpapi.Artifact{}, err
	}
	if st.Kind != workers.ExportKind || st.Status != task.StatusCompleted {
		return httpapi.Artifact{}, domain.Errorf(domain.CodeNotFound, "the task has no artifact (only a completed %s has one)", workers.ExportKind)
	}
	var res workers.ExportResult
	if err := json.Unmarshal(st.Result, &res); err != nil {
		return httpapi.Artifact{}, fmt.Errorf("task %s result: %w", id, err)
	}
	if res.PrivateFiles > 0 && viewer != st.CreatedBy {
		return httpapi.Artifact{}, domain.Errorf(domain.CodeForbidden, "the export holds private files of its creator: only they may download it")
	}
	r, err := t.bucket.NewReader(ctx, workers.ArtifactKey(id, st.Run, st.Attempt), nil)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return httpapi.Artifact{}, domain.Errorf(domain.CodeNotFound, "the export's file is no longer stored")
	}
	if err != nil {
		return httpapi.Artifact{}, fmt.Errorf("open the artifact of task %s: %w", id, err)
	}
	return httpapi.Artifact{Name: res.ArtifactName, ContentType: "application/zip", Size: r.Size(), ModTime: r.ModTime(), Body: r}, nil
}

// llmModel adapts the chat-completions client to the summarize kind.
type llmModel struct{ c *llm.Client }

func (m llmModel) Name() string { return m.c.Model() }

func (m llmModel) Stream(ctx context.Context, system, user string, onText func(string) error) (string, error) {
	res, err := m.c.Stream(ctx, llm.Request{Messages: []llm.Message{{Role: "system", Content: system}, {Role: "user", Content: user}}},
		func(d llm.Delta) error {
			if d.Text == "" {
				return nil
			}
			return onText(d.Text)
		})
	var pe *llm.ProviderError
	if errors.As(err, &pe) && pe.Status >= 400 && pe.Status < 500 && pe.Status != http.StatusTooManyRequests && pe.Status != http.StatusRequestTimeout {
		return "", workers.Permanent(fmt.Errorf("the model refused the request: %w", err))
	}
	if err != nil {
		return "", fmt.Errorf("the model: %w", err)
	}
	return res.Text, nil
}

// taskModel is the model tasks use: LLM_URL's, or nil when it is unset.
func taskModel(cfg Config) (workers.Model, error) {
	if cfg.LLMURL == "" {
		return nil, nil
	}
	c, err := llm.New(llm.Config{URL: cfg.LLMURL, Model: cfg.LLMModel, APIKey: cfg.LLMAPIKey, IdleTimeout: cfg.LLMIdle, RequestTimeout: cfg.LLMTimeout})
	if err != nil {
		return nil, fmt.Errorf("LLM_URL: %w", err)
	}
	return llmModel{c}, nil
}

package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gocloud.dev/blob"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/projections"
)

// Deps are what the built-in kinds read and write.
type Deps struct {
	Commands *commands.Handlers   // space access as the task's creator sees it
	Queries  *projections.Queries // notes and files, read as the task's creator
	Bucket   *blob.Bucket         // file content, and export artifacts
	Model    Model                // nil: no model is configured, summarize is refused
}

// Builtin returns the kinds Atlas ships: noop, space.export and summarize.
func Builtin(d Deps) []*Kind {
	return []*Kind{Noop(), Export(d), Summarize(d)}
}

// NoopKind is the name of the no-op kind.
const NoopKind = "noop"

// Noop is a kind that does nothing useful: it prints its steps, can wait and can fail its first
// attempts on purpose. Operators use it to check that workers run (and the benchmark to measure the
// queue's own cost); tests use it to drive retries, cancellation and rescue.
func Noop() *Kind {
	return &Kind{
		Name:        NoopKind,
		Description: "does nothing: prints steps, optionally waits and fails its first attempts",
		Schema: `{
			"type": "object",
			"additionalProperties": false,
			"properties": {
				"steps":         {"type": "integer", "minimum": 0, "maximum": 1000},
				"sleep_ms":      {"type": "integer", "minimum": 0, "maximum": 3600000},
				"fail_attempts": {"type": "integer", "minimum": 0, "maximum": 100},
				"message":       {"type": "string", "maxLength": 1000}
			}
		}`,
		MaxAttempts: 5,
		Timeout:     2 * time.Hour,
		Run: func(ctx context.Context, t *Run) (json.RawMessage, error) {
			var in struct {
				Steps        int    `json:"steps"`
				SleepMS      int    `json:"sleep_ms"`
				FailAttempts int    `json:"fail_attempts"`
				Message      string `json:"message"`
			}
			if err := json.Unmarshal(t.Input, &in); err != nil {
				return nil, Permanent(err)
			}
			pause := time.Duration(in.SleepMS) * time.Millisecond
			if in.Steps > 0 {
				pause /= time.Duration(in.Steps)
			}
			for i := 1; i <= max(in.Steps, 1); i++ {
				if in.Steps > 0 {
					t.Printf("step %d of %d\n", i, in.Steps)
				}
				if pause > 0 {
					select {
					case <-ctx.Done():
						return nil, context.Cause(ctx)
					case <-time.After(pause):
					}
				}
			}
			if t.Attempt <= in.FailAttempts {
				return nil, fmt.Errorf("attempt %d fails on purpose (fail_attempts %d)", t.Attempt, in.FailAttempts)
			}
			if in.Message != "" {
				t.Print(in.Message)
			}
			return json.RawMessage(fmt.Sprintf(`{"attempt":%d}`, t.Attempt)), nil
		},
	}
}

// readableSpace fails permanently when the creator may no longer read the space.
func readableSpace(ctx context.Context, c *commands.Handlers, t *Run) error {
	_, access, err := c.SpaceAccess(ctx, t.Creator, t.SpaceID)
	if domain.ErrorCode(err) == domain.CodeNotFound || (err == nil && !access.Read) {
		return Permanent(errors.New("the task's creator may no longer read its space (or the space was deleted)"))
	}
	return err
}

// Package workers runs Atlas's background tasks: a River job queue in PostgreSQL whose jobs carry
// only a task id and run number, task kinds registered with a JSON Schema for their input, attempts
// with leases kept alive by heartbeats, rescue of attempts whose worker died, retries with
// exponential backoff, per-kind timeouts and cancellation. The task's state lives in its events
// (domain/task); every report of an attempt is appended at the expected version, so a task completes
// at most once whatever the queue does.
package workers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/atlas-workspace/atlas/domain"
)

// Kind is a registered task kind.
type Kind struct {
	Name        string
	Description string
	// Schema is the JSON Schema (draft 2020-12) its input must satisfy.
	Schema      string
	MaxAttempts int           // attempts per run, at least 1
	Timeout     time.Duration // per attempt; the attempt's context ends then and the attempt fails
	// Available says why the kind cannot run in this deployment (nil: it can), e.g. no model configured.
	Available func() error
	// Run does the work of one attempt. It reads only what t.Creator may read, reports progress with
	// t.Print, and returns the kind's result (JSON, may be nil). An error wrapped with Permanent is not
	// retried.
	Run func(ctx context.Context, t *Run) (json.RawMessage, error)
	// Discard, when set, undoes what a successful Run left behind (an artifact) when its result cannot
	// be recorded because the task was cancelled or taken over meanwhile.
	Discard func(ctx context.Context, t *Run, result json.RawMessage)

	schema *jsonschema.Schema
}

// Run is one attempt of a task, as a kind's Run sees it.
type Run struct {
	TaskID, SpaceID, Creator uuid.UUID
	Input                    json.RawMessage
	RunNumber, Attempt       int
	MaxAttempts              int

	out *outputBuffer
}

// Print adds text to the task's output. Output is buffered and appended as coarse chunks (an event
// at most every few hundred milliseconds), not one event per call.
func (r *Run) Print(text string) { r.out.write(text) }

// Printf formats and prints.
func (r *Run) Printf(format string, args ...any) { r.Print(fmt.Sprintf(format, args...)) }

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that the attempt's failure ends the task at once, without retries.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// registry is the kinds of one Runner, by name.
type registry map[string]*Kind

func newRegistry(kinds []*Kind) (registry, error) {
	r := registry{}
	for _, k := range kinds {
		if k.Name == "" || k.Run == nil || k.MaxAttempts < 1 || k.Timeout <= 0 {
			return nil, fmt.Errorf("task kind %q: name, run, max attempts and timeout are required", k.Name)
		}
		if _, dup := r[k.Name]; dup {
			return nil, fmt.Errorf("task kind %q registered twice", k.Name)
		}
		c := jsonschema.NewCompiler()
		c.AssertFormat() // "format": "uuid" is a rule, not a hint
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(k.Schema))
		if err != nil {
			return nil, fmt.Errorf("task kind %q: schema: %w", k.Name, err)
		}
		url := "atlas:task-kind/" + k.Name + ".json"
		if err := c.AddResource(url, doc); err != nil {
			return nil, fmt.Errorf("task kind %q: schema: %w", k.Name, err)
		}
		if k.schema, err = c.Compile(url); err != nil {
			return nil, fmt.Errorf("task kind %q: schema: %w", k.Name, err)
		}
		r[k.Name] = k
	}
	return r, nil
}

// prepare checks kind and validates input: CodeInvalid with one detail per broken place ("input",
// "input/note_id", ...), or CodeConflict when the kind cannot run here.
func (r registry) prepare(kind string, input json.RawMessage) (*Kind, error) {
	k, ok := r[kind]
	if !ok {
		names := make([]string, 0, len(r))
		for n := range r {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, domain.Validation{"kind": fmt.Sprintf("must be one of %s", strings.Join(names, ", "))}.Err()
	}
	if len(bytes.TrimSpace(input)) == 0 {
		input = json.RawMessage(`{}`)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(input))
	if err != nil {
		return nil, domain.Validation{"input": "must be JSON"}.Err()
	}
	if err := k.schema.Validate(doc); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return nil, domain.Validation{"input": err.Error()}.Err()
		}
		v := domain.Validation{}
		collect(v, ve.BasicOutput())
		if len(v) == 0 {
			v.Add("input", "does not match the kind's schema")
		}
		e := v.Err().(*domain.Error)
		e.Message = fmt.Sprintf("the input does not match the schema of task kind %s", kind)
		return nil, e
	}
	if k.Available != nil {
		if err := k.Available(); err != nil {
			return nil, domain.Errorf(domain.CodeConflict, "task kind %s cannot run: %v", kind, err)
		}
	}
	return k, nil
}

// collect turns a schema validation's basic output into one detail per instance location: the
// messages of the innermost failures there, joined ("missing property 'note_id'; missing property
// 'file_id'" for an input that names neither of two alternatives).
func collect(v domain.Validation, u *jsonschema.OutputUnit) {
	if u == nil {
		return
	}
	if u.Error != nil && len(u.Errors) == 0 {
		field := "input" + u.InstanceLocation
		msg := u.Error.String()
		switch prev, ok := v[field]; {
		case !ok:
			v[field] = msg
		case !strings.Contains(prev, msg):
			v[field] = prev + "; " + msg
		}
	}
	for i := range u.Errors {
		collect(v, &u.Errors[i])
	}
}

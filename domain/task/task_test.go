package task_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/task"
)

var (
	now    = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	writer = task.Access{Read: true, Write: true}
	reader = task.Access{Read: true}
)

// given folds events into a state.
func given(evs ...domain.Event) task.State {
	var s task.State
	for _, e := range evs {
		s = task.Evolve(s, e)
	}
	return s
}

var id, sp, actor = uuid.New(), uuid.New(), uuid.New()

func created() task.Created {
	return task.Created{TaskID: id, SpaceID: sp, Kind: "noop", Input: json.RawMessage(`{}`), MaxAttempts: 3, CreatedBy: actor, CreatedAt: now}
}
func queued(run int) task.Queued {
	return task.Queued{TaskID: id, Run: run, JobID: int64(run * 10), QueuedAt: now}
}
func started(run, attempt int) task.Started {
	return task.Started{TaskID: id, Run: run, Attempt: attempt, StartedAt: now}
}

func TestDecide(t *testing.T) {
	retryAt := now.Add(time.Second)
	tests := []struct {
		name  string
		state task.State
		cmd   any
		code  domain.Code
		want  string // name of the single event expected, "" for none
	}{
		{"create", task.State{}, task.Create{TaskID: id, SpaceID: sp, Kind: "noop", MaxAttempts: 3, Actor: actor, Access: writer}, "", task.EventCreated},
		{"create as a viewer", task.State{}, task.Create{TaskID: id, Kind: "noop", MaxAttempts: 1, Access: reader}, domain.CodeForbidden, ""},
		{"create as an outsider", task.State{}, task.Create{TaskID: id, Kind: "noop", MaxAttempts: 1}, domain.CodeNotFound, ""},
		{"create without a kind", task.State{}, task.Create{TaskID: id, MaxAttempts: 1, Access: writer}, domain.CodeInvalid, ""},
		{"create with a huge input", task.State{}, task.Create{TaskID: id, Kind: "noop", MaxAttempts: 1, Access: writer,
			Input: json.RawMessage(`"` + strings.Repeat("x", task.MaxInputBytes) + `"`)}, domain.CodeInvalid, ""},
		{"create twice", given(created()), task.Create{TaskID: id, Kind: "noop", MaxAttempts: 1, Access: writer}, domain.CodeConflict, ""},
		{"queue", given(created()), task.Queue{JobID: 7}, "", task.EventQueued},
		{"queue twice", given(created(), queued(1)), task.Queue{JobID: 7}, domain.CodeConflict, ""},
		{"start", given(created(), queued(1)), task.Start{Run: 1, Attempt: 1}, "", task.EventStarted},
		{"start a rescued job's next attempt", given(created(), queued(1), started(1, 1)), task.Start{Run: 1, Attempt: 2}, "", task.EventStarted},
		{"start the same attempt again", given(created(), queued(1), started(1, 1)), task.Start{Run: 1, Attempt: 1}, domain.CodeConflict, ""},
		{"start an old run", given(created(), queued(1), task.Cancelled{TaskID: id}, task.Retried{TaskID: id}, queued(2)), task.Start{Run: 1, Attempt: 2}, domain.CodeConflict, ""},
		{"start a cancelled task", given(created(), queued(1), task.Cancelled{TaskID: id}), task.Start{Run: 1, Attempt: 1}, domain.CodeConflict, ""},
		{"output", given(created(), queued(1), started(1, 1)), task.AppendOutput{Run: 1, Attempt: 1, Text: "x"}, "", task.EventOutput},
		{"empty output", given(created(), queued(1), started(1, 1)), task.AppendOutput{Run: 1, Attempt: 1}, "", ""},
		{"output of a superseded attempt", given(created(), queued(1), started(1, 1), started(1, 2)), task.AppendOutput{Run: 1, Attempt: 1, Text: "x"}, domain.CodeConflict, ""},
		{"complete", given(created(), queued(1), started(1, 1)), task.Complete{Run: 1, Attempt: 1}, "", task.EventCompleted},
		{"complete twice", given(created(), queued(1), started(1, 1), task.Completed{TaskID: id, Run: 1, Attempt: 1}), task.Complete{Run: 1, Attempt: 1}, domain.CodeConflict, ""},
		{"complete by a zombie attempt", given(created(), queued(1), started(1, 1), started(1, 2)), task.Complete{Run: 1, Attempt: 1}, domain.CodeConflict, ""},
		{"complete a queued task", given(created(), queued(1)), task.Complete{Run: 1, Attempt: 1}, domain.CodeConflict, ""},
		{"fail with a retry", given(created(), queued(1), started(1, 1)), task.Fail{Run: 1, Attempt: 1, Error: "boom", RetryAt: &retryAt}, "", task.EventFailed},
		{"cancel queued", given(created(), queued(1)), task.Cancel{Access: writer}, "", task.EventCancelled},
		{"cancel running", given(created(), queued(1), started(1, 1)), task.Cancel{Access: writer}, "", task.EventCancelled},
		{"cancel as a viewer", given(created(), queued(1)), task.Cancel{Access: reader}, domain.CodeForbidden, ""},
		{"cancel as an outsider", given(created(), queued(1)), task.Cancel{}, domain.CodeNotFound, ""},
		{"cancel completed", given(created(), queued(1), started(1, 1), task.Completed{TaskID: id, Run: 1, Attempt: 1}), task.Cancel{Access: writer}, domain.CodeConflict, ""},
		{"cancel twice", given(created(), queued(1), task.Cancelled{TaskID: id}), task.Cancel{Access: writer}, domain.CodeConflict, ""},
		{"retry cancelled", given(created(), queued(1), task.Cancelled{TaskID: id}), task.Retry{Access: writer}, "", task.EventRetried},
		{"retry failed", given(created(), queued(1), started(1, 1), task.Failed{TaskID: id, Run: 1, Attempt: 1, Error: "x"}), task.Retry{Access: writer}, "", task.EventRetried},
		{"retry running", given(created(), queued(1), started(1, 1)), task.Retry{Access: writer}, domain.CodeConflict, ""},
		{"retry completed", given(created(), queued(1), started(1, 1), task.Completed{TaskID: id, Run: 1, Attempt: 1}), task.Retry{Access: writer}, domain.CodeConflict, ""},
		{"retry unknown", task.State{}, task.Retry{Access: writer}, domain.CodeNotFound, ""},
		{"abandon a running run", given(created(), queued(1), started(1, 2)), task.Abandon{Run: 1, Reason: "x"}, "", task.EventFailed},
		{"abandon a queued run", given(created(), queued(1)), task.Abandon{Run: 1, Reason: "x"}, "", task.EventFailed},
		{"abandon an old run", given(created(), queued(1), task.Cancelled{TaskID: id}, task.Retried{TaskID: id}, queued(2)), task.Abandon{Run: 1}, domain.CodeConflict, ""},
		{"abandon a finished task", given(created(), queued(1), task.Cancelled{TaskID: id}), task.Abandon{Run: 1}, domain.CodeConflict, ""},
	}
	for _, tc := range tests {
		evs, err := task.Decide(tc.state, tc.cmd, now)
		if got := domain.ErrorCode(err); got != tc.code {
			t.Errorf("%s: error %v, want code %q", tc.name, err, tc.code)
			continue
		}
		switch {
		case tc.want == "" && len(evs) != 0:
			t.Errorf("%s: events %v, want none", tc.name, evs)
		case tc.want != "" && (len(evs) != 1 || evs[0].EventName() != tc.want):
			t.Errorf("%s: events %v, want one %s", tc.name, evs, tc.want)
		}
	}
}

func TestEvolveLifecycle(t *testing.T) {
	retryAt := now.Add(2 * time.Second)
	s := given(created())
	if s.Status != task.StatusPending {
		t.Fatalf("created: %s", s.Status)
	}
	s = given(created(), queued(1), started(1, 1), task.OutputAppended{TaskID: id, Run: 1, Attempt: 1, Text: "a"},
		task.Failed{TaskID: id, Run: 1, Attempt: 1, Error: "boom", RetryAt: &retryAt})
	if s.Status != task.StatusQueued || s.Error != "boom" || s.RetryAt == nil || !s.RetryAt.Equal(retryAt) || s.FinishedAt != nil {
		t.Fatalf("failed with attempts left: %+v", s)
	}
	s = task.Evolve(s, started(1, 2))
	s = task.Evolve(s, task.Failed{TaskID: id, Run: 1, Attempt: 2, Error: "boom", RetryAt: &retryAt})
	s = task.Evolve(s, started(1, 3))
	if s.Output != "" || s.Status != task.StatusRunning {
		t.Fatalf("a new attempt starts with empty output: %+v", s)
	}
	s = task.Evolve(s, task.OutputAppended{TaskID: id, Run: 1, Attempt: 3, Text: "done"})
	s = task.Evolve(s, task.Completed{TaskID: id, Run: 1, Attempt: 3, Result: json.RawMessage(`{"ok":true}`), CompletedAt: now})
	if s.Status != task.StatusCompleted || s.Attempts != 3 || s.Output != "done" || s.Error != "" || s.FinishedAt == nil || s.Version != 10 {
		t.Fatalf("completed after two failures: %+v", s)
	}
	s = given(created(), queued(1), started(1, 1), task.Failed{TaskID: id, Run: 1, Attempt: 1, Error: "final", FailedAt: now})
	if s.Status != task.StatusFailed || s.FinishedAt == nil {
		t.Fatalf("failed for good: %+v", s)
	}
	s = task.Evolve(s, task.Retried{TaskID: id, RetriedAt: now})
	s = task.Evolve(s, queued(2))
	if s.Status != task.StatusQueued || s.Run != 2 || s.Attempt != 0 || s.Error != "" || s.FinishedAt != nil || s.JobID != 20 {
		t.Fatalf("retried: %+v", s)
	}
}

func TestOutputIsBounded(t *testing.T) {
	s := given(created(), queued(1), started(1, 1))
	chunk := strings.Repeat("é", 40<<10) // 80 KiB
	for i := 0; i < 5; i++ {
		evs, err := task.Decide(s, task.AppendOutput{Run: 1, Attempt: 1, Text: chunk}, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			s = task.Evolve(s, e)
		}
	}
	if len(s.Output) > task.MaxOutputBytes || !strings.Contains(s.Output, "output cut") {
		t.Fatalf("output is %d bytes, limit %d", len(s.Output), task.MaxOutputBytes)
	}
	if evs, _ := task.Decide(s, task.AppendOutput{Run: 1, Attempt: 1, Text: "more"}, now); len(evs) != 0 {
		t.Fatalf("output beyond the limit is appended: %v", evs)
	}
}

func TestPersonalSpacesSealOutputAndResult(t *testing.T) {
	owner := uuid.New()
	c := created()
	c.SubjectID = &owner
	s := given(c, queued(1), started(1, 1))
	evs, err := task.Decide(s, task.AppendOutput{Run: 1, Attempt: 1, Text: "secret"}, now)
	if err != nil || evs[0].(task.OutputAppended).SubjectID == nil {
		t.Fatalf("output in a personal space: %v %v", evs, err)
	}
	evs, err = task.Decide(s, task.Complete{Run: 1, Attempt: 1, Result: json.RawMessage(`{"summary":"secret"}`)}, now)
	if err != nil {
		t.Fatal(err)
	}
	e := evs[0].(task.Completed)
	if e.Result != nil || e.PersonalResult != `{"summary":"secret"}` || string(e.ResultJSON()) != `{"summary":"secret"}` {
		t.Fatalf("completed in a personal space: %+v", e)
	}
	e.PersonalResult = domain.ErasedValue
	if string(e.ResultJSON()) != `"[erased]"` {
		t.Fatalf("an erased result reads %s", e.ResultJSON())
	}
	if got := task.Evolve(s, evs[0]); string(got.Result) != `{"summary":"secret"}` {
		t.Fatalf("evolved result %s", got.Result)
	}
	// Organization spaces keep the result as JSON.
	s = given(created(), queued(1), started(1, 1))
	evs, _ = task.Decide(s, task.Complete{Run: 1, Attempt: 1, Result: json.RawMessage(`{"a":1}`)}, now)
	if e := evs[0].(task.Completed); string(e.Result) != `{"a":1}` || e.PersonalResult != "" || e.SubjectID != nil {
		t.Fatalf("completed in an organization space: %+v", e)
	}
}

package workers

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atlas-workspace/atlas/domain"
)

func TestPrepareValidatesInputAgainstTheKindsSchema(t *testing.T) {
	reg, err := newRegistry(Builtin(Deps{}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		kind, input string
		code        domain.Code
		field       string
	}{
		{"noop", `{}`, "", ""},
		{"noop", ``, "", ""},
		{"noop", `{"steps": 3, "sleep_ms": 10}`, "", ""},
		{"noop", `{"steps": "3"}`, domain.CodeInvalid, "input/steps"},
		{"noop", `{"steps": 1001}`, domain.CodeInvalid, "input/steps"},
		{"noop", `{"other": 1}`, domain.CodeInvalid, "input"},
		{"noop", `[1]`, domain.CodeInvalid, "input"},
		{"space.export", `{"include_files": false}`, "", ""},
		{"space.export", `{"include_files": 1}`, domain.CodeInvalid, "input/include_files"},
		{"summarize", `{"note_id": "0190a1b2-0000-7000-8000-000000000001"}`, domain.CodeConflict, ""}, // no model
		{"summarize", `{"note_id": "x"}`, domain.CodeInvalid, "input/note_id"},
		{"summarize", `{}`, domain.CodeInvalid, "input"},
		{"summarize", `{"note_id": "0190a1b2-0000-7000-8000-000000000001", "file_id": "0190a1b2-0000-7000-8000-000000000002"}`, domain.CodeInvalid, "input"},
		{"nope", `{}`, domain.CodeInvalid, "kind"},
	}
	for _, tc := range tests {
		_, err := reg.prepare(tc.kind, json.RawMessage(tc.input))
		if got := domain.ErrorCode(err); got != tc.code {
			t.Errorf("%s %s: %v, want code %q", tc.kind, tc.input, err, tc.code)
			continue
		}
		if tc.field != "" {
			var de *domain.Error
			if !errors.As(err, &de) || de.Details[tc.field] == "" {
				t.Errorf("%s %s: details %v do not name %s", tc.kind, tc.input, de.Details, tc.field)
			}
		}
	}
	if _, err := reg.prepare("summarize", json.RawMessage(`{"note_id": "0190a1b2-0000-7000-8000-000000000001"}`)); !strings.Contains(err.Error(), "no model is configured") {
		t.Errorf("summarize without a model: %v", err)
	}
}

func TestBackoffDoublesUpToTheCap(t *testing.T) {
	r := &Runner{cfg: Config{Backoff: time.Second, MaxBackoff: 10 * time.Second}}
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 40: 10 * time.Second} {
		if got := r.backoff(attempt); got != want {
			t.Errorf("backoff(%d) = %s, want %s", attempt, got, want)
		}
	}
}

func TestOutputBufferAppendsCoarseChunksInOrder(t *testing.T) {
	var mu sync.Mutex
	var chunks []string
	b := newOutputBuffer(func(s string) error {
		mu.Lock()
		defer mu.Unlock()
		chunks = append(chunks, s)
		return nil
	})
	var want strings.Builder
	for i := 0; i < 2000; i++ {
		line := strings.Repeat("x", i%50) + "\n"
		b.write(line)
		want.WriteString(line)
	}
	if err := b.close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(chunks, ""); got != want.String() {
		t.Fatalf("output differs: %d bytes, want %d", len(got), want.Len())
	}
	if len(chunks) > 20 {
		t.Fatalf("%d chunks for %d bytes written at once: not coarse", len(chunks), want.Len())
	}
}

package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/internal/llmtest"
)

// taskEnv makes task retries, rescue and polling fast enough for tests.
func taskEnv(extra map[string]string) map[string]string {
	env := map[string]string{"ATLAS_TASK_LEASE": "3s", "ATLAS_TASK_BACKOFF": "50ms", "ATLAS_TASK_POLL": "100ms"}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// createTask creates a task and returns its id.
func (s *server) createTask(token, space, kind string, input any) string {
	s.t.Helper()
	r := s.do("POST", "/api/v1/spaces/"+space+"/tasks", token, map[string]any{"kind": kind, "input": input})
	expect(s.t, r, 201, "")
	return r.json(s.t)["id"].(string)
}

// waitTask waits until the task reaches status (read from the log with as_of now, so no read-model
// lag is involved) and returns it as the read model then has it.
func (s *server) waitTask(token, id, status string, within time.Duration) map[string]any {
	s.t.Helper()
	var last map[string]any
	waitFor(s.t, within, "task "+id+" is "+status, func() bool {
		r := s.do("GET", "/api/v1/tasks/"+id+"?as_of="+time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano), token, nil)
		if r.status != 200 {
			return false
		}
		last = r.json(s.t)
		if st := last["status"]; st != status && (st == "completed" || st == "failed" || st == "cancelled") {
			s.t.Fatalf("task %s ended %s, want %s: %s", id, st, status, r.body)
		}
		return last["status"] == status
	})
	var got map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.do("GET", "/api/v1/tasks/"+id, token, nil)
		if r.status == 200 {
			got = r.json(s.t)
			// A running task moves on meanwhile: the read model must have caught up with the log at
			// least to the version seen there.
			if v, _ := got["version"].(float64); v >= last["version"].(float64) && (got["status"] == status || status == "running") {
				return got
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the read model does not have task %s %s (version %v): %d %s", id, status, last["version"], r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// taskEvents returns the event types of a task's history.
func (s *server) taskEvents(token, id string) []string {
	s.t.Helper()
	r := s.do("GET", "/api/v1/tasks/"+id+"/history?limit=200", token, nil)
	expect(s.t, r, 200, "")
	var out []string
	for _, it := range r.json(s.t)["items"].([]any) {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(it.(map[string]any)["type"].(string), "task."), ".v1"))
	}
	return out
}

func count(list []string, v string) int {
	n := 0
	for _, x := range list {
		if x == v {
			n++
		}
	}
	return n
}

func TestTaskNoopRunsAndBadInputIsRefused(t *testing.T) {
	s := startServerWith(t, taskEnv(nil))
	token, _, personal := s.register("tasks-noop@example.com", "Noop")
	viewer, viewerID, _ := s.register("tasks-viewer@example.com", "Viewer")
	outsider, _, _ := s.register("tasks-outsider@example.com", "Outsider")
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/members", token, map[string]string{"user_id": viewerID, "role": "viewer"}), 201, "")

	r := s.do("POST", "/api/v1/spaces/"+personal+"/tasks", token, map[string]any{"kind": "noop", "input": map[string]any{"steps": 2, "message": "hello"}})
	expect(t, r, 201, "")
	created := r.json(t)
	if created["status"] != "queued" || created["position"] == "" || created["kind"] != "noop" || created["attempts"] != 0.0 {
		t.Fatalf("create: %s", r.body)
	}
	id := created["id"].(string)
	got := s.waitTask(token, id, "completed", 20*time.Second)
	if got["attempts"] != 1.0 || !strings.Contains(got["output"].(string), "step 2 of 2") || !strings.HasSuffix(got["output"].(string), "hello") ||
		got["started_at"] == nil || got["finished_at"] == nil || got["error"] != nil {
		t.Fatalf("completed: %v", got)
	}
	if ev := s.taskEvents(token, id); strings.Join(ev, ",") != "created,queued,started,output,completed" &&
		strings.Join(ev, ",") != "created,queued,started,output,output,completed" {
		t.Fatalf("history: %v", ev)
	}
	// ?as_of= rebuilds the task from its events up to a time: at its creation it was queued.
	hist := s.do("GET", "/api/v1/tasks/"+id+"/history", token, nil).json(t)["items"].([]any)
	r = s.do("GET", "/api/v1/tasks/"+id+"?as_of="+hist[1].(map[string]any)["occurred_at"].(string), viewer, nil)
	expect(t, r, 200, "")
	if past := r.json(t); past["status"] != "queued" || past["attempts"] != 0.0 || past["version"] != 2.0 {
		t.Fatalf("as_of creation: %s", r.body)
	}
	expect(t, s.do("GET", "/api/v1/tasks/"+id+"?as_of=2000-01-01T00:00:00Z", token, nil), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/tasks/"+id+"?as_of=yesterday", token, nil), 422, "validation_failed")
	r = s.do("GET", "/metrics", "", nil)
	if !strings.Contains(string(r.body), `atlas_task_attempts_total{kind="noop",outcome="completed"} 1`) {
		t.Fatalf("metrics: %s", r.body)
	}
	// An Idempotency-Key repeat returns the first task and creates nothing.
	first := s.do("POST", "/api/v1/spaces/"+personal+"/tasks", token, map[string]any{"kind": "noop"}, "Idempotency-Key", "k1")
	again := s.do("POST", "/api/v1/spaces/"+personal+"/tasks", token, map[string]any{"kind": "noop"}, "Idempotency-Key", "k1")
	expect(t, first, 201, "")
	expect(t, again, 201, "")
	if first.json(t)["id"] != again.json(t)["id"] {
		t.Fatalf("an idempotent repeat created another task: %s %s", first.body, again.body)
	}
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/tasks", token, map[string]any{"kind": "noop", "input": map[string]int{"steps": 1}}, "Idempotency-Key", "k1"), 409, "conflict")
	s.waitTask(token, first.json(t)["id"].(string), "completed", 20*time.Second)
	// Readers of the space see it; outsiders do not; a viewer cannot create, cancel or retry.
	expect(t, s.do("GET", "/api/v1/tasks/"+id, viewer, nil), 200, "")
	r = s.do("GET", "/api/v1/spaces/"+personal+"/tasks?status=completed&limit=1", viewer, nil)
	expect(t, r, 200, "")
	if items := r.json(t)["items"].([]any); len(items) != 1 || r.json(t)["next_cursor"] == nil {
		t.Fatalf("list page 1: %s", r.body)
	}
	r = s.do("GET", "/api/v1/spaces/"+personal+"/tasks?status=completed&limit=1&cursor="+r.json(t)["next_cursor"].(string), viewer, nil)
	expect(t, r, 200, "")
	if items := r.json(t)["items"].([]any); len(items) != 1 || r.json(t)["next_cursor"] != nil {
		t.Fatalf("list: %s", r.body)
	}
	r = s.do("GET", "/api/v1/spaces/"+personal+"/tasks?status=running", viewer, nil)
	if items := r.json(t)["items"].([]any); len(items) != 0 {
		t.Fatalf("list running: %s", r.body)
	}
	expect(t, s.do("GET", "/api/v1/spaces/"+personal+"/tasks?status=bogus", viewer, nil), 422, "validation_failed")
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/tasks", viewer, map[string]any{"kind": "noop"}), 403, "forbidden")
	expect(t, s.do("POST", "/api/v1/tasks/"+id+"/retry", viewer, nil), 403, "forbidden")
	for _, p := range []string{"", "/history", "/stream", "/artifact"} {
		expect(t, s.do("GET", "/api/v1/tasks/"+id+p, outsider, nil), 404, "not_found")
	}
	expect(t, s.do("POST", "/api/v1/tasks/"+id+"/cancel", outsider, nil), 404, "not_found")
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/tasks", outsider, map[string]any{"kind": "noop"}), 404, "not_found")
	// A completed task cannot be cancelled or retried.
	expect(t, s.do("POST", "/api/v1/tasks/"+id+"/cancel", token, nil), 409, "conflict")
	expect(t, s.do("POST", "/api/v1/tasks/"+id+"/retry", token, nil), 409, "conflict")

	// Bad input: 422 with details, nothing appended.
	before := s.eventCount()
	for _, tc := range []struct {
		body  any
		code  string
		field string
	}{
		{map[string]any{"kind": "noop", "input": map[string]any{"steps": "two"}}, "validation_failed", "input/steps"},
		{map[string]any{"kind": "noop", "input": map[string]any{"colour": "red"}}, "validation_failed", "input"},
		{map[string]any{"kind": "noop", "input": map[string]any{"steps": -1}}, "validation_failed", "input/steps"},
		{map[string]any{"kind": "summarize", "input": map[string]any{}}, "validation_failed", "input"},
		{map[string]any{"kind": "summarize", "input": map[string]any{"note_id": "not-a-uuid"}}, "validation_failed", "input/note_id"},
		{map[string]any{"kind": "no.such.kind"}, "validation_failed", "kind"},
		{map[string]any{"input": map[string]any{}}, "validation_failed", "kind"},
		{map[string]any{"kind": "noop", "input": []int{1}}, "validation_failed", "input"},
		{map[string]any{"kind": "space.export", "input": map[string]any{"include_files": "yes"}}, "validation_failed", "input/include_files"},
	} {
		r := s.do("POST", "/api/v1/spaces/"+personal+"/tasks", token, tc.body)
		expect(t, r, 422, tc.code)
		details, _ := r.json(t)["error"].(map[string]any)["details"].(map[string]any)
		if _, ok := details[tc.field]; !ok {
			t.Errorf("%v: details %v do not name %s", tc.body, details, tc.field)
		}
	}
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/tasks", token, map[string]any{"kind": "noop", "extra": 1}), 400, "invalid_request")
	// Without a model, summarize is refused and says why.
	r = s.do("POST", "/api/v1/spaces/"+personal+"/tasks", token, map[string]any{"kind": "summarize", "input": map[string]any{"note_id": id}})
	expect(t, r, 409, "conflict")
	if !strings.Contains(string(r.body), "no model is configured") {
		t.Fatalf("summarize without a model: %s", r.body)
	}
	if after := s.eventCount(); after != before {
		t.Fatalf("refused task creations appended %d events", after-before)
	}
}

// eventCount counts the events in the log.
func (s *server) eventCount() int {
	s.t.Helper()
	var n int
	if err := s.app.ProjectorPool.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

func TestTaskFailsTwiceThenSucceedsAndRetry(t *testing.T) {
	s := startServerWith(t, taskEnv(nil))
	token, _, personal := s.register("tasks-retry@example.com", "Retry")
	id := s.createTask(token, personal, "noop", map[string]any{"fail_attempts": 2})
	got := s.waitTask(token, id, "completed", 30*time.Second)
	if got["attempts"] != 3.0 || got["error"] != nil {
		t.Fatalf("after two failures: %v", got)
	}
	ev := s.taskEvents(token, id)
	if count(ev, "failed") != 2 || count(ev, "started") != 3 || count(ev, "completed") != 1 {
		t.Fatalf("history: %v", ev)
	}

	// A task whose every attempt fails ends failed; retry runs it again (a new run), and it can be
	// retried only once failed or cancelled.
	id = s.createTask(token, personal, "noop", map[string]any{"fail_attempts": 100})
	got = s.waitTask(token, id, "failed", 60*time.Second)
	if got["attempts"] != 5.0 || !strings.Contains(fmt.Sprint(got["error"]), "fails on purpose") {
		t.Fatalf("failed: %v", got)
	}
	r := s.do("POST", "/api/v1/tasks/"+id+"/retry", token, nil)
	expect(t, r, 200, "")
	if st := r.json(t)["status"]; st != "queued" || r.json(t)["run"] != 2.0 {
		t.Fatalf("retry: %s", r.body)
	}
	expect(t, s.do("POST", "/api/v1/tasks/"+id+"/retry", token, nil), 409, "conflict")
	got = s.waitTask(token, id, "failed", 60*time.Second)
	if got["attempts"] != 10.0 || got["run"] != 2.0 {
		t.Fatalf("failed again: %v", got)
	}

	// A rebuild of the tasks read model from the log gives the same rows.
	want := dumpOrdered(t, s.app.ProjectorPool, "tasks", "id")
	var out bytes.Buffer
	if code := run([]string{"projections", "rebuild", "--quiet", "tasks"}, func(k string) string { return s.env[k] }, &out, io.Discard); code != 0 {
		t.Fatalf("rebuild exited %d: %s", code, out.String())
	}
	if got := dumpOrdered(t, s.app.ProjectorPool, "tasks", "id"); got != want {
		t.Fatalf("the rebuilt tasks differ:\n%s\nwant:\n%s", got, want)
	}
}

func TestTaskCancelQueuedAndRunning(t *testing.T) {
	// No workers: the task stays queued.
	s := startServerWith(t, taskEnv(map[string]string{"ATLAS_TASK_WORKERS": "0"}))
	token, _, personal := s.register("tasks-cancel@example.com", "Cancel")
	id := s.createTask(token, personal, "noop", map[string]any{})
	r := s.do("POST", "/api/v1/tasks/"+id+"/cancel", token, nil)
	expect(t, r, 200, "")
	if r.json(t)["status"] != "cancelled" {
		t.Fatalf("cancel: %s", r.body)
	}
	var state string
	if err := s.app.Pool.QueryRow(context.Background(), `SELECT state FROM river_job WHERE args->>'task_id' = $1`, id).Scan(&state); err != nil || state != "cancelled" {
		t.Fatalf("job state %q, %v", state, err)
	}
	expect(t, s.do("POST", "/api/v1/tasks/"+id+"/cancel", token, nil), 409, "conflict")
	s.waitTask(token, id, "cancelled", 10*time.Second)

	// With workers: a long task is cancelled while it runs; its attempt stops and reports nothing more.
	s2 := startServerWith(t, taskEnv(nil))
	token, _, personal = s2.register("tasks-cancel2@example.com", "Cancel")
	id = s2.createTask(token, personal, "noop", map[string]any{"steps": 600, "sleep_ms": 600000})
	s2.waitTask(token, id, "running", 20*time.Second)
	waitFor(t, 10*time.Second, "the task prints", func() bool {
		return strings.Contains(s2.do("GET", "/api/v1/tasks/"+id, token, nil).json(t)["output"].(string), "step 1 of 600")
	})
	expect(t, s2.do("POST", "/api/v1/tasks/"+id+"/cancel", token, nil), 200, "")
	waitFor(t, 10*time.Second, "the job ends cancelled", func() bool {
		var state string
		_ = s2.app.Pool.QueryRow(context.Background(), `SELECT state FROM river_job WHERE args->>'task_id' = $1`, id).Scan(&state)
		return state == "cancelled"
	})
	got := s2.waitTask(token, id, "cancelled", 10*time.Second)
	ev := s2.taskEvents(token, id)
	if ev[len(ev)-1] != "cancelled" || count(ev, "completed")+count(ev, "failed") != 0 {
		t.Fatalf("history after cancel: %v (%v)", ev, got)
	}
	// Retry of the cancelled task runs it again.
	r = s2.do("POST", "/api/v1/tasks/"+id+"/retry", token, nil)
	expect(t, r, 200, "")
	s2.waitTask(token, id, "running", 20*time.Second)
	expect(t, s2.do("POST", "/api/v1/tasks/"+id+"/cancel", token, nil), 200, "")
}

// taskSSE is one Server-Sent Event.
type taskSSE struct {
	id, name string
	data     map[string]any
}

// readTaskSSE reads events from a stream until it ends or stop says so.
func readTaskSSE(t *testing.T, body io.Reader, stop func(taskSSE) bool) []taskSSE {
	t.Helper()
	var out []taskSSE
	var cur taskSSE
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name != "" || cur.data != nil {
				out = append(out, cur)
				if stop(cur) {
					return out
				}
			}
			cur = taskSSE{}
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.data); err != nil {
				t.Fatalf("event data %q: %v", line, err)
			}
		}
	}
	return out
}

func (s *server) openTaskStream(token, id, lastEventID string) *http.Response {
	s.t.Helper()
	req, _ := http.NewRequest("GET", s.base+"/api/v1/tasks/"+id+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		s.t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	return res
}

func TestTaskStreamReconnectLosesNothing(t *testing.T) {
	s := startServerWith(t, taskEnv(nil))
	token, _, personal := s.register("tasks-sse@example.com", "SSE")
	id := s.createTask(token, personal, "noop", map[string]any{"steps": 12, "sleep_ms": 3000, "fail_attempts": 1})
	// First connection: read until a few output chunks arrived, then drop it.
	res := s.openTaskStream(token, id, "")
	first := readTaskSSE(t, res.Body, func(e taskSSE) bool {
		return e.name == "output" && strings.Contains(fmt.Sprint(e.data["text"]), "step 3 of 12")
	})
	res.Body.Close()
	last := first[len(first)-1].id
	// Reconnect with Last-Event-ID and read to the end.
	res = s.openTaskStream(token, id, last)
	second := readTaskSSE(t, res.Body, func(taskSSE) bool { return false })
	res.Body.Close()
	all := append(first, second...)
	if end := all[len(all)-1]; end.name != "completed" {
		t.Fatalf("the stream ended with %+v", end)
	}
	// Every event of the task's stream arrived exactly once, in order, with ids = stream versions.
	r := s.do("GET", "/api/v1/tasks/"+id+"/history?limit=200", token, nil)
	items := r.json(t)["items"].([]any)
	if len(items) != len(all) {
		t.Fatalf("%d events streamed, %d in the history", len(all), len(items))
	}
	var text strings.Builder
	for i, e := range all {
		if e.id != fmt.Sprint(i+1) {
			t.Fatalf("event %d has id %s", i+1, e.id)
		}
		if e.name == "output" && e.data["attempt"] == 2.0 {
			text.WriteString(e.data["text"].(string))
		}
	}
	for i := 1; i <= 12; i++ {
		if !strings.Contains(text.String(), fmt.Sprintf("step %d of 12\n", i)) {
			t.Fatalf("the second attempt's output misses step %d: %q", i, text.String())
		}
	}
	// A finished task's stream ends after its events; resuming past the end ends at once.
	res = s.openTaskStream(token, id, all[len(all)-1].id)
	if rest := readTaskSSE(t, res.Body, func(taskSSE) bool { return false }); len(rest) != 0 {
		t.Fatalf("events after the end: %v", rest)
	}
	res.Body.Close()
	expect(t, s.do("GET", "/api/v1/tasks/"+id+"/stream", token, nil, "Last-Event-ID", "x"), 400, "invalid_request")
}

func TestTaskExportAndSummarize(t *testing.T) {
	model := llmtest.Start(t)
	s := startServerWith(t, taskEnv(map[string]string{"LLM_URL": model.URL, "LLM_MODEL": "fake-model"}))
	token, _, personal := s.register("tasks-export@example.com", "Export")
	viewer, viewerID, _ := s.register("tasks-export-viewer@example.com", "Viewer")
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/members", token, map[string]string{"user_id": viewerID, "role": "viewer"}), 201, "")
	r := s.do("POST", "/api/v1/spaces/"+personal+"/notes", token, map[string]string{"title": "Plan", "body": "ship the export"})
	expect(t, r, 201, "")
	noteID := r.json(t)["id"].(string)
	r = s.do("POST", "/api/v1/spaces/"+personal+"/folders", token, map[string]string{"name": "Docs"})
	expect(t, r, 201, "")
	folder := r.json(t)["id"].(string)
	r = s.upload(token, personal, "readme.txt", []byte("version one"), "folder_id", folder)
	expect(t, r, 201, "")
	fileID := r.json(t)["id"].(string)
	body, ct := multipartBody(part{name: "file", filename: "readme.txt", body: strings.NewReader("version two")})
	r = s.send("PUT", "/api/v1/files/"+fileID+"/content", token, body, ct)
	expect(t, r, 200, "")
	pos := r.json(t)["position"].(string)
	expect(t, s.do("GET", "/api/v1/files/"+fileID, token, nil, "X-Consistency-Token", pos), 200, "")
	expect(t, s.do("GET", "/api/v1/notes/"+noteID, token, nil, "X-Consistency-Token", pos), 200, "")

	id := s.createTask(token, personal, "space.export", map[string]any{})
	got := s.waitTask(token, id, "completed", 30*time.Second)
	result := got["result"].(map[string]any)
	if result["artifact_url"] != "/api/v1/tasks/"+id+"/artifact" || result["notes"] != 1.0 || result["files"] != 1.0 ||
		!strings.Contains(got["output"].(string), "/api/v1/tasks/"+id+"/artifact") {
		t.Fatalf("export: %v", got)
	}
	for _, who := range []string{token, viewer} {
		r = s.do("GET", "/api/v1/tasks/"+id+"/artifact", who, nil)
		expect(t, r, 200, "")
		if r.header.Get("Content-Type") != "application/zip" || !strings.Contains(r.header.Get("Content-Disposition"), "personal-export.zip") {
			t.Fatalf("artifact headers: %v", r.header)
		}
		zr, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body)))
		if err != nil {
			t.Fatal(err)
		}
		files := map[string]string{}
		for _, f := range zr.File {
			rc, _ := f.Open()
			b, _ := io.ReadAll(rc)
			rc.Close()
			files[f.Name] = string(b)
		}
		if len(files) != 2 || files["notes/Plan.md"] != "# Plan\n\nship the export" || files["files/Docs/readme.txt"] != "version two" {
			t.Fatalf("zip contents: %v", files)
		}
	}
	// A task reads only what its creator may read: an editor's export leaves out the owner's private
	// file; the owner's includes it, and then only the owner may download it.
	editor, editorID, _ := s.register("tasks-export-editor@example.com", "Editor")
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/members", token, map[string]string{"user_id": editorID, "role": "editor"}), 201, "")
	r = s.upload(token, personal, "diary.txt", []byte("private words"), "visibility", "private")
	expect(t, r, 201, "")
	expect(t, s.do("GET", "/api/v1/files/"+r.json(t)["id"].(string), token, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 200, "")
	byEditor := s.createTask(editor, personal, "space.export", map[string]any{"include_notes": false})
	if res := s.waitTask(editor, byEditor, "completed", 30*time.Second)["result"].(map[string]any); res["files"] != 1.0 || res["private_files"] != 0.0 || res["notes"] != 0.0 {
		t.Fatalf("the editor's export: %v", res)
	}
	r = s.do("GET", "/api/v1/tasks/"+byEditor+"/artifact", viewer, nil)
	expect(t, r, 200, "")
	if bytes.Contains(r.body, []byte("diary.txt")) {
		t.Fatal("the editor's export holds the owner's private file")
	}
	byOwner := s.createTask(token, personal, "space.export", map[string]any{"include_notes": false})
	if res := s.waitTask(token, byOwner, "completed", 30*time.Second)["result"].(map[string]any); res["files"] != 2.0 || res["private_files"] != 1.0 {
		t.Fatalf("the owner's export: %v", res)
	}
	expect(t, s.do("GET", "/api/v1/tasks/"+byOwner+"/artifact", viewer, nil), 403, "forbidden")
	expect(t, s.do("GET", "/api/v1/tasks/"+byOwner+"/artifact", editor, nil), 403, "forbidden")
	r = s.do("GET", "/api/v1/tasks/"+byOwner+"/artifact", token, nil)
	expect(t, r, 200, "")
	if !bytes.Contains(r.body, []byte("diary.txt")) {
		t.Fatal("the owner's export lacks the owner's private file")
	}

	// Deleting a space deletes its exports from the bucket.
	r = s.do("POST", "/api/v1/spaces", token, map[string]string{"name": "Gone", "slug": "gone"})
	expect(t, r, 201, "")
	gone := r.json(t)["id"].(string)
	goneTask := s.createTask(token, gone, "space.export", map[string]any{})
	goneState := s.waitTask(token, goneTask, "completed", 30*time.Second)
	key := fmt.Sprintf("exports/%s/1-%v.zip", goneTask, goneState["attempts"]) // run 1's completing attempt
	if ok, err := s.app.Bucket.Exists(context.Background(), key); err != nil || !ok {
		it := s.app.Bucket.List(nil)
		var keys []string
		for {
			o, err := it.Next(context.Background())
			if err != nil {
				break
			}
			keys = append(keys, o.Key)
		}
		t.Fatalf("export %s not stored: %v; bucket: %v; task %v", key, err, keys, s.do("GET", "/api/v1/tasks/"+goneTask, token, nil).json(t))
	}
	expect(t, s.do("DELETE", "/api/v1/spaces/"+gone, token, nil), 200, "")
	waitFor(t, 30*time.Second, "the deleted space's export is deleted", func() bool {
		ok, err := s.app.Bucket.Exists(context.Background(), key)
		return err == nil && !ok
	})
	expect(t, s.do("GET", "/api/v1/tasks/"+goneTask+"/artifact", token, nil), 404, "not_found")

	// A task without an artifact has none.
	noop := s.createTask(token, personal, "noop", map[string]any{})
	s.waitTask(token, noop, "completed", 20*time.Second)
	expect(t, s.do("GET", "/api/v1/tasks/"+noop+"/artifact", token, nil), 404, "not_found")

	// Summarize a note and a text file with the fake model; the reply streams into the output.
	model.Push(llmtest.Reply{Deltas: []string{"A plan ", "to ship ", "the export."}})
	id = s.createTask(token, personal, "summarize", map[string]any{"note_id": noteID, "max_words": 50})
	got = s.waitTask(token, id, "completed", 30*time.Second)
	if res := got["result"].(map[string]any); res["summary"] != "A plan to ship the export." || res["model"] != "fake-model" || res["source"] != "note" ||
		got["output"] != "A plan to ship the export." {
		t.Fatalf("summarize: %v", got)
	}
	reqs := model.Requests()
	lastReq := reqs[len(reqs)-1]
	if lastReq.Model != "fake-model" || len(lastReq.Messages) != 2 || !strings.Contains(lastReq.Messages[1].Content, "ship the export") ||
		!strings.Contains(lastReq.Messages[0].Content, "50 words") {
		t.Fatalf("model request: %+v", lastReq)
	}
	// In a personal space the output and the result are sealed in the log under the owner's key.
	var clear int
	if err := s.app.ProjectorPool.QueryRow(context.Background(), `SELECT count(*) FROM events WHERE stream_id = $1
		AND ((event_type = 'task.output' AND data->>'text' NOT LIKE 'enc:v1:%') OR (event_type = 'task.completed' AND
		(data ? 'result' OR data->>'personal_result' NOT LIKE 'enc:v1:%')))`, id).Scan(&clear); err != nil || clear != 0 {
		t.Fatalf("%d task events of a personal space hold output or result in clear (%v)", clear, err)
	}
	model.Push(llmtest.Reply{Deltas: []string{"Version two."}})
	id = s.createTask(token, personal, "summarize", map[string]any{"file_id": fileID})
	got = s.waitTask(token, id, "completed", 30*time.Second)
	if res := got["result"].(map[string]any); res["summary"] != "Version two." || res["source"] != "file" {
		t.Fatalf("summarize a file: %v", got)
	}
	// A provider error is retried; a note of another space fails for good without retries.
	model.Push(llmtest.Reply{Status: 503}, llmtest.Reply{Status: 503}, llmtest.Reply{Status: 503}, llmtest.Reply{Deltas: []string{"Fine."}})
	id = s.createTask(token, personal, "summarize", map[string]any{"note_id": noteID})
	s.waitTask(token, id, "completed", 60*time.Second)
	other, _, otherSpace := s.register("tasks-export-other@example.com", "Other")
	id = s.createTask(other, otherSpace, "summarize", map[string]any{"note_id": noteID})
	got = s.waitTask(other, id, "failed", 30*time.Second)
	if got["attempts"] != 1.0 || !strings.Contains(fmt.Sprint(got["error"]), "not in this space") {
		t.Fatalf("summarize another tenant's note: %v", got)
	}
}

// TestTaskWorkerKilledFinishesOnceElsewhere runs a worker as its own process (`atlas worker`),
// SIGKILLs it while it runs a task, and checks that the in-process server's workers take the task
// up after the lease expires and that it completes exactly once.
func TestTaskWorkerKilledFinishesOnceElsewhere(t *testing.T) {
	s := startServerWith(t, taskEnv(map[string]string{"ATLAS_TASK_WORKERS": "0"}))
	token, _, personal := s.register("tasks-kill@example.com", "Kill")
	env := []string{}
	for k, v := range s.env {
		env = append(env, k+"="+v)
	}
	env = append(env, "ATLAS_TASK_WORKERS=2")
	worker := startWorkerProcess(t, env...)
	id := s.createTask(token, personal, "noop", map[string]any{"steps": 20, "sleep_ms": 8000})
	s.waitTask(token, id, "running", 30*time.Second)
	waitFor(t, 10*time.Second, "the worker prints", func() bool {
		return strings.Contains(s.do("GET", "/api/v1/tasks/"+id, token, nil).json(t)["output"].(string), "step 2 of 20")
	})
	if err := worker.Process.Kill(); err != nil { // SIGKILL: no shutdown, the lease is left to expire
		t.Fatal(err)
	}
	_, _ = worker.Process.Wait()
	// Another worker process (the rescue runs in every worker) takes the task over. Its attempt runs
	// for more than two leases: a healthy attempt keeps its lease and is not rescued.
	startWorkerProcess(t, env...)
	got := s.waitTask(token, id, "completed", 60*time.Second)
	ev := s.taskEvents(token, id)
	if count(ev, "completed") != 1 || count(ev, "started") != 2 || count(ev, "failed") != 1 || got["attempts"] != 2.0 {
		t.Fatalf("history: %v, task %v", ev, got)
	}
	r := s.do("GET", "/api/v1/tasks/"+id+"/history?limit=200", token, nil)
	if !strings.Contains(string(r.body), "stopped responding") {
		t.Fatalf("the rescue is not recorded: %s", r.body)
	}
	conn, err := pgx.Connect(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var state string
	waitFor(t, 10*time.Second, "the job is completed", func() bool {
		_ = conn.QueryRow(context.Background(), `SELECT state FROM river_job WHERE args->>'task_id' = $1`, id).Scan(&state)
		return state == "completed"
	})

	// Cancellation across processes: the API process (no workers) cancels a task the worker process
	// runs; the attempt stops there and records nothing more.
	id = s.createTask(token, personal, "noop", map[string]any{"steps": 600, "sleep_ms": 600000})
	s.waitTask(token, id, "running", 30*time.Second)
	expect(t, s.do("POST", "/api/v1/tasks/"+id+"/cancel", token, nil), 200, "")
	waitFor(t, 10*time.Second, "the worker process stops the cancelled attempt", func() bool {
		_ = conn.QueryRow(context.Background(), `SELECT state FROM river_job WHERE args->>'task_id' = $1`, id).Scan(&state)
		return state == "cancelled"
	})
	ev = s.taskEvents(token, id)
	if ev[len(ev)-1] != "cancelled" || count(ev, "completed")+count(ev, "failed") != 0 {
		t.Fatalf("history after a cross-process cancel: %v", ev)
	}
}

// startWorkerProcess runs the test binary as `atlas worker` with env and waits until it runs.
func startWorkerProcess(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "worker")
	cmd.Env = append(append(os.Environ(), "ATLAS_TEST_EXEC=1"), env...)
	cmd.Env = append(cmd.Env, "ATLAS_LOG_LEVEL=info")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	running := make(chan struct{})
	ended := make(chan struct{})
	lines := make(chan string, 1000)
	go func() {
		defer close(ended)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "task worker running") {
				once = true
				close(running)
			}
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	select {
	case <-running:
	case <-ended:
	case <-time.After(120 * time.Second):
	}
	select {
	case <-running:
	default:
		var log []string
		for len(lines) > 0 {
			log = append(log, <-lines)
		}
		t.Fatalf("the worker process did not start: %s", strings.Join(log, "\n"))
	}
	return cmd
}

// TestTaskWhoseJobTheQueueGaveUpOnFails: when the queue finalizes a task's job without the task
// finishing (here forced in the database), the running attempt loses its lease and stops, and the
// task fails for good instead of waiting forever.
func TestTaskWhoseJobTheQueueGaveUpOnFails(t *testing.T) {
	s := startServerWith(t, taskEnv(nil))
	token, _, personal := s.register("tasks-abandoned@example.com", "Abandoned")
	id := s.createTask(token, personal, "noop", map[string]any{"steps": 600, "sleep_ms": 600000})
	s.waitTask(token, id, "running", 20*time.Second)
	if _, err := s.app.Pool.Exec(context.Background(), `UPDATE river_job SET state = 'discarded', finalized_at = now()
		WHERE args->>'task_id' = $1`, id); err != nil {
		t.Fatal(err)
	}
	got := s.waitTask(token, id, "failed", 30*time.Second)
	if !strings.Contains(fmt.Sprint(got["error"]), "gave up") {
		t.Fatalf("abandoned: %v", got)
	}
	ev := s.taskEvents(token, id)
	if count(ev, "failed") != 1 || count(ev, "completed") != 0 || count(ev, "started") != 1 {
		t.Fatalf("history: %v", ev)
	}
}

// TestTaskWorkerSIGTERMHandsTheAttemptOver: a worker process told to stop waits for its running
// attempt up to ATLAS_SHUTDOWN_TIMEOUT, then records it as failed with an immediate retry and exits
// 0; another worker runs the task to completion.
func TestTaskWorkerSIGTERMHandsTheAttemptOver(t *testing.T) {
	s := startServerWith(t, taskEnv(map[string]string{"ATLAS_TASK_WORKERS": "0"}))
	token, _, personal := s.register("tasks-sigterm@example.com", "Sigterm")
	var env []string
	for k, v := range s.env {
		env = append(env, k+"="+v)
	}
	env = append(env, "ATLAS_TASK_WORKERS=2", "ATLAS_SHUTDOWN_TIMEOUT=1s")
	worker := startWorkerProcess(t, env...)
	id := s.createTask(token, personal, "noop", map[string]any{"steps": 10, "sleep_ms": 4000})
	s.waitTask(token, id, "running", 30*time.Second)
	if err := worker.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- worker.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the worker exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not exit after SIGTERM")
	}
	got := s.waitTask(token, id, "queued", 10*time.Second)
	if !strings.Contains(fmt.Sprint(got["error"]), "shut down") {
		t.Fatalf("after the shutdown: %v", got)
	}
	startWorkerProcess(t, env...)
	got = s.waitTask(token, id, "completed", 60*time.Second)
	ev := s.taskEvents(token, id)
	if got["attempts"] != 2.0 || count(ev, "completed") != 1 || count(ev, "failed") != 1 {
		t.Fatalf("history: %v, task %v", ev, got)
	}
}

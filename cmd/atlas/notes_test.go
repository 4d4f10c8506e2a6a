package main

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/atlas-workspace/atlas/domain/note"
)

func TestNotes(t *testing.T) {
	s := startServer(t)
	owner, _, personal := s.register("notes-owner@example.com", "Owner")
	editor, editorID, _ := s.register("notes-editor@example.com", "Editor")
	viewer, viewerID, _ := s.register("notes-viewer@example.com", "Viewer")
	outsider, _, _ := s.register("notes-outsider@example.com", "Outsider")
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/members", owner, map[string]string{"user_id": editorID, "role": "editor"}), 201, "")
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/members", owner, map[string]string{"user_id": viewerID, "role": "viewer"}), 201, "")

	// Create, read back with the consistency token, list.
	r := s.do("POST", "/api/v1/spaces/"+personal+"/notes", owner, map[string]string{"title": "  Plan ", "body": "# Plan\n"})
	expect(t, r, 201, "")
	n := r.json(t)
	id := n["id"].(string)
	if n["title"] != "Plan" || n["body"] != "# Plan\n" || n["version"] != 1.0 || r.header.Get("ETag") != `"1"` || n["position"] == "" {
		t.Fatalf("create: %s %v", r.body, r.header)
	}
	pos := n["position"].(string)
	r = s.do("GET", "/api/v1/notes/"+id, viewer, nil, "X-Consistency-Token", pos)
	expect(t, r, 200, "")
	if got := r.json(t); got["body"] != "# Plan\n" || got["space_id"] != personal || r.header.Get("ETag") != `"1"` {
		t.Fatalf("get: %s", r.body)
	}
	r = s.do("GET", "/api/v1/spaces/"+personal+"/notes", editor, nil)
	expect(t, r, 200, "")
	items := r.json(t)["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["id"] != id {
		t.Fatalf("list: %s", r.body)
	}
	if _, ok := items[0].(map[string]any)["body"]; ok {
		t.Fatalf("a listing carries bodies: %s", r.body)
	}

	// Editors write, viewers and outsiders do not.
	expect(t, s.do("PATCH", "/api/v1/notes/"+id, editor, map[string]string{"body": "by the editor"}, "If-Match", `"1"`), 200, "")
	expect(t, s.do("PATCH", "/api/v1/notes/"+id, viewer, map[string]string{"body": "x"}), 403, "forbidden")
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/notes", viewer, map[string]string{"title": "x", "body": ""}), 403, "forbidden")
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/v1/notes/" + id}, {"PATCH", "/api/v1/notes/" + id}, {"DELETE", "/api/v1/notes/" + id},
		{"GET", "/api/v1/notes/" + id + "/revisions"}, {"GET", "/api/v1/notes/" + id + "/history"},
		{"GET", "/api/v1/spaces/" + personal + "/notes"}, {"POST", "/api/v1/spaces/" + personal + "/notes"},
	} {
		var body any
		if req.method == "PATCH" || req.method == "POST" {
			body = map[string]string{"title": "x", "body": "y"}
		}
		expect(t, s.do(req.method, req.path, outsider, body, "X-Consistency-Token", pos), 404, "not_found")
	}

	// Bad input changes nothing.
	for _, tc := range []struct {
		body   any
		status int
		code   string
	}{
		{map[string]string{"title": "", "body": "x"}, 422, "validation_failed"},
		{map[string]string{"title": "x"}, 422, "validation_failed"},
		{map[string]string{"title": strings.Repeat("x", 201), "body": ""}, 422, "validation_failed"},
		{map[string]string{"title": "x", "body": strings.Repeat("x", note.MaxBodyBytes+1)}, 422, "validation_failed"},
		{map[string]string{"title": "x", "body": strings.Repeat("x", 1<<20)}, 413, "too_large"},
		{map[string]any{"title": "x", "body": "", "color": "red"}, 400, "invalid_request"},
		{`{"title": "x", "body": `, 400, "invalid_request"},
	} {
		expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/notes", owner, tc.body), tc.status, tc.code)
	}
	expect(t, s.do("PATCH", "/api/v1/notes/"+id, owner, map[string]string{"title": " "}), 422, "validation_failed")
	expect(t, s.do("GET", "/api/v1/notes/not-a-uuid", owner, nil), 400, "invalid_request")
	expect(t, s.do("PATCH", "/api/v1/notes/"+id, owner, map[string]string{"body": "x"}, "If-Match", `"1"`), 409, "version_conflict")

	// Two edits with the same If-Match: one wins, the other is a version conflict.
	got := s.racePatches("/api/v1/notes/"+id, owner, `"2"`, 2, func(i int) string { return fmt.Sprintf(`{"body": "concurrent %d"}`, i) })
	if got[200] != 1 || got[409] != 1 {
		t.Fatalf("concurrent edits with one If-Match: %v, want one 200 and one 409", got)
	}

	// Every edit is a revision; idempotent creation; history.
	r = s.do("PATCH", "/api/v1/notes/"+id, owner, map[string]string{"title": "Plan B"})
	expect(t, r, 200, "")
	pos = r.json(t)["position"].(string)
	r = s.do("GET", "/api/v1/notes/"+id+"/revisions?limit=2", viewer, nil, "X-Consistency-Token", pos)
	expect(t, r, 200, "")
	page := r.json(t)
	revs := page["items"].([]any)
	if len(revs) != 2 || revs[0].(map[string]any)["body"] != "# Plan\n" || revs[1].(map[string]any)["body"] != "by the editor" || page["next_cursor"] != "2" {
		t.Fatalf("revisions page 1: %s", r.body)
	}
	r = s.do("GET", "/api/v1/notes/"+id+"/revisions?cursor=2", viewer, nil)
	expect(t, r, 200, "")
	revs = r.json(t)["items"].([]any)
	if len(revs) != 2 || revs[1].(map[string]any)["title"] != "Plan B" || revs[1].(map[string]any)["revision"] != 4.0 {
		t.Fatalf("revisions page 2: %s", r.body)
	}
	r = s.do("GET", "/api/v1/notes/"+id+"/history", viewer, nil)
	expect(t, r, 200, "")
	if h := r.json(t)["items"].([]any); len(h) != 4 || h[0].(map[string]any)["type"] != note.EventCreated {
		t.Fatalf("history: %s", r.body)
	}
	// As of the moment of the first event, the note is its first revision; before it, nothing.
	first := r.json(t)["items"].([]any)[0].(map[string]any)["occurred_at"].(string)
	r = s.do("GET", "/api/v1/notes/"+id+"?as_of="+url.QueryEscape(first), viewer, nil)
	expect(t, r, 200, "")
	if n := r.json(t); n["body"] != "# Plan\n" || n["version"] != 1.0 || r.header.Get("ETag") != `"1"` {
		t.Fatalf("as of the creation: %s", r.body)
	}
	expect(t, s.do("GET", "/api/v1/notes/"+id+"?as_of=2000-01-01T00:00:00Z", viewer, nil), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/notes/"+id+"?as_of=yesterday", viewer, nil), 422, "validation_failed")
	expect(t, s.do("GET", "/api/v1/notes/"+id+"?as_of="+url.QueryEscape(first), outsider, nil), 404, "not_found")
	a := s.do("POST", "/api/v1/spaces/"+personal+"/notes", owner, map[string]string{"title": "Once", "body": ""}, "Idempotency-Key", "k1")
	b := s.do("POST", "/api/v1/spaces/"+personal+"/notes", owner, map[string]string{"title": "Once", "body": ""}, "Idempotency-Key", "k1")
	expect(t, a, 201, "")
	expect(t, b, 201, "")
	if a.json(t)["id"] != b.json(t)["id"] {
		t.Fatalf("an idempotent repeat created another note: %s %s", a.body, b.body)
	}

	// Deleting the note (If-Match) removes it and its revisions from reads.
	expect(t, s.do("DELETE", "/api/v1/notes/"+id, owner, nil, "If-Match", `"1"`), 409, "version_conflict")
	r = s.do("DELETE", "/api/v1/notes/"+id, editor, nil, "If-Match", `"4"`)
	expect(t, r, 200, "")
	pos = r.json(t)["position"].(string)
	expect(t, s.do("GET", "/api/v1/notes/"+id, owner, nil, "X-Consistency-Token", pos), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/notes/"+id+"/revisions", owner, nil), 404, "not_found")
	expect(t, s.do("PATCH", "/api/v1/notes/"+id, owner, map[string]string{"body": "x"}), 404, "not_found")
}

// TestNotesGoWithTheirSpace deletes a space (and an organization with its spaces): none of their notes
// stays readable, listable or editable.
func TestNotesGoWithTheirSpace(t *testing.T) {
	s := startServer(t)
	owner, _, _ := s.register("space-notes@example.com", "Owner")
	r := s.do("POST", "/api/v1/orgs", owner, map[string]string{"name": "Org", "slug": "org"})
	expect(t, r, 201, "")
	orgID := r.json(t)["id"].(string)
	var spaces, notes []string
	for _, slug := range []string{"a", "b"} {
		r = s.do("POST", "/api/v1/spaces", owner, map[string]any{"org_id": orgID, "name": slug, "slug": slug})
		expect(t, r, 201, "")
		sp := r.json(t)["id"].(string)
		spaces = append(spaces, sp)
		r = s.do("POST", "/api/v1/spaces/"+sp+"/notes", owner, map[string]string{"title": "N", "body": "text"})
		expect(t, r, 201, "")
		notes = append(notes, r.json(t)["id"].(string))
	}
	r = s.do("DELETE", "/api/v1/spaces/"+spaces[0], owner, nil)
	expect(t, r, 200, "")
	pos := r.json(t)["position"].(string)
	expect(t, s.do("GET", "/api/v1/notes/"+notes[0], owner, nil, "X-Consistency-Token", pos), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/spaces/"+spaces[0]+"/notes", owner, nil), 404, "not_found")
	expect(t, s.do("PATCH", "/api/v1/notes/"+notes[0], owner, map[string]string{"body": "x"}), 404, "not_found")
	expect(t, s.do("POST", "/api/v1/spaces/"+spaces[0]+"/notes", owner, map[string]string{"title": "late", "body": ""}), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/notes/"+notes[1], owner, nil), 200, "")

	r = s.do("DELETE", "/api/v1/orgs/"+orgID, owner, nil)
	expect(t, r, 200, "")
	pos = r.json(t)["position"].(string)
	expect(t, s.do("GET", "/api/v1/notes/"+notes[1], owner, nil, "X-Consistency-Token", pos), 404, "not_found")
	var left int
	if err := s.app.ProjectorPool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM notes) + (SELECT count(*) FROM note_revisions)`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d note rows left after their spaces were deleted (%v)", left, err)
	}
}

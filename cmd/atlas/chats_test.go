package main

import (
	"strings"
	"testing"

	"github.com/atlas-workspace/atlas/domain/chat"
)

// textMessage is a user message with one text part.
func textMessage(text string) map[string]any {
	return map[string]any{"role": "user", "parts": []any{map[string]any{"type": "text", "text": text}}}
}

// TestChats covers chats and user messages without an assistant: create, rename, delete, post,
// list, permissions and every kind of bad input.
func TestChats(t *testing.T) {
	s := startServer(t)
	owner, ownerID, personal := s.register("chats-owner@example.com", "Owner")
	viewer, viewerID, _ := s.register("chats-viewer@example.com", "Viewer")
	outsider, _, outsiderSpace := s.register("chats-outsider@example.com", "Outsider")
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/members", owner, map[string]string{"user_id": viewerID, "role": "viewer"}), 201, "")

	// Create with and without a title.
	r := s.do("POST", "/api/v1/spaces/"+personal+"/chats", owner, map[string]any{})
	expect(t, r, 201, "")
	if c := r.json(t); c["title"] != chat.DefaultTitle || c["version"] != 1.0 || r.header.Get("ETag") != `"1"` ||
		c["assistant"].(map[string]any)["configured"] != false {
		t.Fatalf("create: %s", r.body)
	}
	r = s.do("POST", "/api/v1/spaces/"+personal+"/chats", owner, map[string]any{"title": " Trip "})
	expect(t, r, 201, "")
	c := r.json(t)
	id, pos := c["id"].(string), c["position"].(string)
	if c["title"] != "Trip" {
		t.Fatalf("create with a title: %s", r.body)
	}
	r = s.do("GET", "/api/v1/chats/"+id, viewer, nil, "X-Consistency-Token", pos)
	expect(t, r, 200, "")
	if g := r.json(t); g["title"] != "Trip" || g["assistant"].(map[string]any)["configured"] != false || r.header.Get("ETag") != `"1"` {
		t.Fatalf("get: %s", r.body)
	}
	r = s.do("GET", "/api/v1/spaces/"+personal+"/chats?limit=1", viewer, nil)
	expect(t, r, 200, "")
	if p := r.json(t); len(p["items"].([]any)) != 1 || p["next_cursor"] == nil {
		t.Fatalf("list page 1: %s", r.body)
	}

	// Post without an assistant: the message is kept and the answer says no assistant is configured.
	r = s.do("POST", "/api/v1/chats/"+id+"/messages", owner, textMessage("Where do we go?"))
	expect(t, r, 201, "")
	m := r.json(t)
	if m["role"] != "user" || m["reply"] != nil || m["assistant"].(map[string]any)["configured"] != false || m["seq"] != 2.0 ||
		m["parts"].([]any)[0].(map[string]any)["text"] != "Where do we go?" {
		t.Fatalf("post: %s", r.body)
	}
	pos = m["position"].(string)
	r = s.do("GET", "/api/v1/chats/"+id+"/messages", viewer, nil, "X-Consistency-Token", pos)
	expect(t, r, 200, "")
	items := r.json(t)["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["id"] != m["id"] || items[0].(map[string]any)["author_id"] != ownerID {
		t.Fatalf("messages: %s", r.body)
	}
	expect(t, s.do("GET", "/api/v1/chats/"+id+"/messages/"+m["id"].(string), viewer, nil), 200, "")

	// A file part names a file the author may read; the message keeps its name and type.
	up := s.upload(owner, personal, "plan.md", []byte("# Plan"))
	expect(t, up, 201, "")
	fileID := up.json(t)["id"].(string)
	r = s.do("POST", "/api/v1/chats/"+id+"/messages", owner, map[string]any{"role": "user", "parts": []any{
		map[string]any{"type": "text", "text": "see"}, map[string]any{"type": "file", "file_id": fileID}}})
	expect(t, r, 201, "")
	if p := r.json(t)["parts"].([]any)[1].(map[string]any); p["filename"] != "plan.md" || p["file_id"] != fileID {
		t.Fatalf("file part: %s", r.body)
	}
	up = s.upload(outsider, outsiderSpace, "secret.md", []byte("secret"))
	expect(t, up, 201, "")
	foreign := up.json(t)["id"].(string)

	// Bad input changes nothing.
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"unknown part type", map[string]any{"role": "user", "parts": []any{map[string]any{"type": "image", "url": "x"}}}, 422, "validation_failed", "parts[0].type"},
		{"assistant-only part", map[string]any{"role": "user", "parts": []any{map[string]any{"type": "tool-call", "tool_name": "x"}}}, 422, "validation_failed", "parts[0].type"},
		{"assistant role", map[string]any{"role": "assistant", "parts": []any{map[string]any{"type": "text", "text": "x"}}}, 422, "validation_failed", "role"},
		{"no role", map[string]any{"parts": []any{map[string]any{"type": "text", "text": "x"}}}, 422, "validation_failed", "role"},
		{"no parts", map[string]any{"role": "user", "parts": []any{}}, 422, "validation_failed", "parts"},
		{"blank text", textMessage("   "), 422, "validation_failed", "parts"},
		{"text without text", map[string]any{"role": "user", "parts": []any{map[string]any{"type": "text"}}}, 422, "validation_failed", "parts[0].text"},
		{"NUL", textMessage("a\x00b"), 422, "validation_failed", "parts[0].text"},
		{"too long", textMessage(strings.Repeat("x", chat.MaxMessageBytes+1)), 422, "validation_failed", "parts"},
		{"unreadable file", map[string]any{"role": "user", "parts": []any{map[string]any{"type": "file", "file_id": foreign}}}, 404, "not_found", ""},
		{"missing file", map[string]any{"role": "user", "parts": []any{map[string]any{"type": "file", "file_id": "0191f2a0-0000-7000-8000-000000000009"}}}, 404, "not_found", ""},
		{"bad file UUID", map[string]any{"role": "user", "parts": []any{map[string]any{"type": "file", "file_id": "nope"}}}, 400, "invalid_request", ""},
		{"unknown field", map[string]any{"role": "user", "parts": []any{}, "color": 1}, 400, "invalid_request", ""},
		{"unknown text field", map[string]any{"role": "user", "parts": []any{map[string]any{"type": "text", "text": "x", "color": 1}}}, 400, "invalid_request", ""},
		{"malformed", `{"role": "user", "parts": [`, 400, "invalid_request", ""},
	} {
		r := s.do("POST", "/api/v1/chats/"+id+"/messages", owner, tc.body)
		if r.status != tc.status || r.errCode(t) != tc.code {
			t.Fatalf("%s: %d %s, want %d %s", tc.name, r.status, r.body, tc.status, tc.code)
		}
		if tc.field != "" {
			if d, _ := r.json(t)["error"].(map[string]any)["details"].(map[string]any); d[tc.field] == nil {
				t.Fatalf("%s: details do not name %s: %s", tc.name, tc.field, r.body)
			}
		}
	}
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/chats", owner, map[string]any{"title": ""}), 422, "validation_failed")
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/chats", owner, map[string]any{"title": strings.Repeat("x", 201)}), 422, "validation_failed")
	expect(t, s.do("GET", "/api/v1/chats/not-a-uuid", owner, nil), 400, "invalid_request")
	expect(t, s.do("POST", "/api/v1/chats/not-a-uuid/messages", owner, textMessage("x")), 400, "invalid_request")
	r = s.do("GET", "/api/v1/chats/"+id+"/history", owner, nil)
	expect(t, r, 200, "")
	if h := r.json(t)["items"].([]any); len(h) != 3 {
		t.Fatalf("bad input appended events: %s", r.body)
	}

	// Viewers read but do not write; outsiders see nothing.
	expect(t, s.do("POST", "/api/v1/chats/"+id+"/messages", viewer, textMessage("x")), 403, "forbidden")
	expect(t, s.do("PATCH", "/api/v1/chats/"+id, viewer, map[string]string{"title": "x"}), 403, "forbidden")
	expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/chats", viewer, map[string]any{}), 403, "forbidden")
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/v1/chats/" + id}, {"PATCH", "/api/v1/chats/" + id}, {"DELETE", "/api/v1/chats/" + id},
		{"GET", "/api/v1/chats/" + id + "/messages"}, {"POST", "/api/v1/chats/" + id + "/messages"},
		{"GET", "/api/v1/chats/" + id + "/messages/" + m["id"].(string)}, {"GET", "/api/v1/chats/" + id + "/history"},
		{"POST", "/api/v1/chats/" + id + "/messages/" + m["id"].(string) + "/cancel"},
		{"GET", "/api/v1/spaces/" + personal + "/chats"}, {"POST", "/api/v1/spaces/" + personal + "/chats"},
	} {
		var body any
		switch req.method {
		case "PATCH":
			body = map[string]string{"title": "x"}
		case "POST":
			body = textMessage("x")
			if strings.HasSuffix(req.path, "/chats") {
				body = map[string]any{}
			}
		}
		expect(t, s.do(req.method, req.path, outsider, body, "X-Consistency-Token", pos), 404, "not_found")
	}

	// Rename with If-Match; a stale one is a version conflict. Idempotent create.
	expect(t, s.do("PATCH", "/api/v1/chats/"+id, owner, map[string]string{"title": "x"}, "If-Match", `"1"`), 409, "version_conflict")
	r = s.do("PATCH", "/api/v1/chats/"+id, owner, map[string]string{"title": "Lisbon"}, "If-Match", `"3"`)
	expect(t, r, 200, "")
	if g := r.json(t); g["title"] != "Lisbon" || g["version"] != 4.0 {
		t.Fatalf("rename: %s", r.body)
	}
	a := s.do("POST", "/api/v1/spaces/"+personal+"/chats", owner, map[string]any{"title": "Once"}, "Idempotency-Key", "c1")
	b := s.do("POST", "/api/v1/spaces/"+personal+"/chats", owner, map[string]any{"title": "Once"}, "Idempotency-Key", "c1")
	expect(t, b, 201, "")
	if a.json(t)["id"] != b.json(t)["id"] {
		t.Fatalf("an idempotent repeat created another chat: %s %s", a.body, b.body)
	}
	a = s.do("POST", "/api/v1/chats/"+id+"/messages", owner, textMessage("once"), "Idempotency-Key", "m1")
	b = s.do("POST", "/api/v1/chats/"+id+"/messages", owner, textMessage("once"), "Idempotency-Key", "m1")
	expect(t, b, 201, "")
	if a.json(t)["id"] != b.json(t)["id"] || a.json(t)["seq"] != b.json(t)["seq"] {
		t.Fatalf("an idempotent repeat posted another message: %s %s", a.body, b.body)
	}
	// Cancelling a user message is a conflict (only replies being written can be cancelled).
	expect(t, s.do("POST", "/api/v1/chats/"+id+"/messages/"+m["id"].(string)+"/cancel", owner, nil), 409, "conflict")

	// Delete: gone from reads, and its messages with it.
	expect(t, s.do("DELETE", "/api/v1/chats/"+id, owner, nil, "If-Match", `"1"`), 409, "version_conflict")
	r = s.do("DELETE", "/api/v1/chats/"+id, owner, nil)
	expect(t, r, 200, "")
	pos = r.json(t)["position"].(string)
	expect(t, s.do("GET", "/api/v1/chats/"+id, owner, nil, "X-Consistency-Token", pos), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/chats/"+id+"/messages", owner, nil), 404, "not_found")
	expect(t, s.do("POST", "/api/v1/chats/"+id+"/messages", owner, textMessage("x")), 404, "not_found")
	var left int
	if err := s.app.ProjectorPool.QueryRow(t.Context(), `SELECT count(*) FROM chat_messages WHERE chat_id = $1`, id).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d messages left after the chat was deleted (%v)", left, err)
	}
}

// TestChatsGoWithTheirSpace deletes a space: none of its chats stays readable or writable, and no
// row of them is left.
func TestChatsGoWithTheirSpace(t *testing.T) {
	s := startServer(t)
	owner, _, _ := s.register("space-chats@example.com", "Owner")
	r := s.do("POST", "/api/v1/orgs", owner, map[string]string{"name": "Org", "slug": "org"})
	expect(t, r, 201, "")
	orgID := r.json(t)["id"].(string)
	r = s.do("POST", "/api/v1/spaces", owner, map[string]any{"org_id": orgID, "name": "a", "slug": "a"})
	expect(t, r, 201, "")
	sp := r.json(t)["id"].(string)
	r = s.do("POST", "/api/v1/spaces/"+sp+"/chats", owner, map[string]any{})
	expect(t, r, 201, "")
	id := r.json(t)["id"].(string)
	expect(t, s.do("POST", "/api/v1/chats/"+id+"/messages", owner, textMessage("hello")), 201, "")
	r = s.do("DELETE", "/api/v1/orgs/"+orgID, owner, nil)
	expect(t, r, 200, "")
	pos := r.json(t)["position"].(string)
	expect(t, s.do("GET", "/api/v1/chats/"+id, owner, nil, "X-Consistency-Token", pos), 404, "not_found")
	expect(t, s.do("POST", "/api/v1/chats/"+id+"/messages", owner, textMessage("late")), 404, "not_found")
	var left int
	if err := s.app.ProjectorPool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM chats) + (SELECT count(*) FROM chat_messages)`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d chat rows left after their space was deleted (%v)", left, err)
	}
}

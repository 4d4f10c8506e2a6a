package main

import (
	"strings"
	"testing"
)

func TestAPIKeys(t *testing.T) {
	s := startServer(t)
	session, userID, _ := s.register("keys@example.com", "Keys")
	other, _, _ := s.register("nosy@example.com", "Nosy")

	r := s.do("POST", "/api/v1/me/api-keys", session, map[string]string{"name": "CI deploys"})
	expect(t, r, 201, "")
	created := r.json(t)
	key, id, pos := created["key"].(string), created["id"].(string), created["position"].(string)
	if !strings.HasPrefix(key, "atlk_") || len(key) < 40 || !strings.HasPrefix(key, created["prefix"].(string)) {
		t.Fatalf("created %s", r.body)
	}

	// The key works at once, as a Bearer token, for the user who made it.
	r = s.do("GET", "/api/v1/me", key, nil)
	expect(t, r, 200, "")
	if r.json(t)["id"] != userID {
		t.Fatalf("me with the key = %s", r.body)
	}

	// Listed without the key itself, with its last use.
	r = s.do("GET", "/api/v1/me/api-keys", session, nil, "X-Consistency-Token", pos)
	expect(t, r, 200, "")
	items := r.json(t)["items"].([]any)
	if len(items) != 1 || strings.Contains(string(r.body), key) {
		t.Fatalf("list = %s", r.body)
	}
	if k := items[0].(map[string]any); k["id"] != id || k["name"] != "CI deploys" || k["last_used_at"] == nil {
		t.Fatalf("listed key = %v", k)
	}
	r = s.do("GET", "/api/v1/me/api-keys", other, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 0 {
		t.Fatalf("another user lists %s", r.body)
	}

	// Bad input, another user's key, logout with a key.
	expect(t, s.do("POST", "/api/v1/me/api-keys", session, map[string]string{"name": " "}), 422, "validation_failed")
	expect(t, s.do("POST", "/api/v1/me/api-keys", session, map[string]string{"name": strings.Repeat("k", 101)}), 422, "validation_failed")
	expect(t, s.do("DELETE", "/api/v1/me/api-keys/"+id, other, nil), 404, "not_found")
	expect(t, s.do("DELETE", "/api/v1/me/api-keys/not-a-uuid", session, nil), 400, "invalid_request")
	expect(t, s.do("POST", "/api/v1/auth/logout", key, nil), 400, "invalid_request")
	expect(t, s.do("GET", "/api/v1/me", key, nil), 200, "")

	// Revocation stops the key at once, and it leaves the list.
	r = s.do("DELETE", "/api/v1/me/api-keys/"+id, session, nil)
	expect(t, r, 200, "")
	expect(t, s.do("GET", "/api/v1/me", key, nil), 401, "unauthenticated")
	expect(t, s.do("DELETE", "/api/v1/me/api-keys/"+id, session, nil), 404, "not_found")
	r = s.do("GET", "/api/v1/me/api-keys", session, nil, "X-Consistency-Token", r.json(t)["position"].(string))
	if items := r.json(t)["items"].([]any); len(items) != 0 {
		t.Fatalf("revoked key still listed: %s", r.body)
	}
	// A key cannot be forged from its prefix.
	expect(t, s.do("GET", "/api/v1/me", created["prefix"].(string), nil), 401, "unauthenticated")
}

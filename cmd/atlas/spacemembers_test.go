package main

import (
	"testing"
)

func TestSpaceMembers(t *testing.T) {
	s := startServer(t)
	owner, _, _ := s.register("sm-owner@test.test", "Owner")
	viewer, viewerID, _ := s.register("sm-viewer@test.test", "Viewer")
	stranger, strangerID, _ := s.register("sm-stranger@test.test", "Stranger")

	// A personal private space shared with a viewer.
	r := s.do("POST", "/api/v1/spaces", owner, map[string]string{"name": "Shared", "slug": "shared"})
	expect(t, r, 201, "")
	path := "/api/v1/spaces/" + r.json(t)["id"].(string)
	r = s.do("POST", path+"/members", owner, map[string]any{"user_id": viewerID, "role": "viewer"})
	expect(t, r, 201, "")
	pos := r.json(t)["position"].(string)
	expect(t, s.do("GET", path, viewer, nil, "X-Consistency-Token", pos), 200, "")
	expect(t, s.do("GET", path+"/history", viewer, nil), 200, "")
	r = s.do("GET", path+"/members", viewer, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["role"] != "viewer" {
		t.Fatalf("members = %s", r.body)
	}
	r = s.do("GET", "/api/v1/spaces", viewer, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 2 { // their personal space and the shared one
		t.Fatalf("viewer lists %s", r.body)
	}
	expect(t, s.do("GET", path, stranger, nil, "X-Consistency-Token", pos), 404, "not_found")
	expect(t, s.do("GET", path+"/members", stranger, nil, "X-Consistency-Token", pos), 404, "not_found")
	// Public: anyone with the link reads the space, but its member list stays with its members.
	r = s.do("PATCH", path, owner, map[string]string{"visibility": "public"})
	expect(t, r, 200, "")
	expect(t, s.do("GET", path, stranger, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 200, "")
	expect(t, s.do("GET", path+"/members", stranger, nil), 404, "not_found")
	expect(t, s.do("PATCH", path, owner, map[string]string{"visibility": "private"}), 200, "")

	// Viewers read but do not change; bad input changes nothing.
	expect(t, s.do("PATCH", path, viewer, map[string]string{"name": "x"}), 403, "forbidden")
	expect(t, s.do("POST", path+"/members", viewer, map[string]any{"user_id": strangerID, "role": "viewer"}), 403, "forbidden")
	expect(t, s.do("POST", path+"/members", stranger, map[string]any{"user_id": strangerID, "role": "viewer"}), 404, "not_found")
	expect(t, s.do("POST", path+"/members", owner, map[string]any{"user_id": viewerID, "role": "viewer"}), 409, "conflict")
	expect(t, s.do("POST", path+"/members", owner, map[string]any{"user_id": strangerID, "role": "boss"}), 422, "validation_failed")
	expect(t, s.do("POST", path+"/members", owner, map[string]any{"role": "viewer"}), 422, "validation_failed")
	expect(t, s.do("POST", path+"/members", owner, map[string]any{"user_id": "0196a000-0000-7000-8000-000000000000", "role": "viewer"}), 404, "not_found")

	// An editor; then removal takes access away at once.
	expect(t, s.do("PATCH", path+"/members/"+viewerID, owner, map[string]string{"role": "editor", "user_id": strangerID}), 400, "invalid_request")
	expect(t, s.do("PATCH", path+"/members/"+viewerID, owner, map[string]string{"role": "editor"}), 200, "")
	r = s.do("DELETE", path+"/members/"+viewerID, owner, nil)
	expect(t, r, 200, "")
	expect(t, s.do("GET", path, viewer, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 404, "not_found")
	expect(t, s.do("DELETE", path+"/members/"+viewerID, owner, nil), 404, "not_found")

	// In an organization: only its members can be added; their access survives role changes and a
	// private visibility, and ends when they leave the organization.
	r = s.do("POST", "/api/v1/orgs", owner, map[string]string{"name": "Team", "slug": "team"})
	expect(t, r, 201, "")
	orgID := r.json(t)["id"].(string)
	r = s.do("POST", "/api/v1/orgs/"+orgID+"/invitations", owner, map[string]string{"email": "sm-viewer@test.test"})
	expect(t, r, 201, "")
	expect(t, s.do("POST", "/api/v1/invitations/"+r.json(t)["token"].(string)+"/accept", viewer, nil), 200, "")
	r = s.do("POST", "/api/v1/spaces", owner, map[string]any{"org_id": orgID, "name": "Board", "slug": "board"})
	expect(t, r, 201, "")
	board := "/api/v1/spaces/" + r.json(t)["id"].(string)
	expect(t, s.do("POST", board+"/members", owner, map[string]any{"user_id": strangerID, "role": "viewer"}), 409, "conflict")
	r = s.do("POST", board+"/members", owner, map[string]any{"user_id": viewerID, "role": "viewer"})
	expect(t, r, 201, "")
	expect(t, s.do("GET", board, viewer, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 200, "")
	expect(t, s.do("PATCH", "/api/v1/orgs/"+orgID+"/members/"+viewerID, owner, map[string]string{"role": "admin"}), 200, "")
	r = s.do("PATCH", "/api/v1/orgs/"+orgID+"/members/"+viewerID, owner, map[string]string{"role": "member"})
	expect(t, r, 200, "")
	expect(t, s.do("GET", board, viewer, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 200, "")
	r = s.do("PATCH", board, owner, map[string]string{"visibility": "public"})
	expect(t, r, 200, "")
	r = s.do("PATCH", board, owner, map[string]string{"visibility": "private"})
	expect(t, r, 200, "")
	expect(t, s.do("GET", board, viewer, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 200, "")
	r = s.do("DELETE", "/api/v1/orgs/"+orgID+"/members/"+viewerID, viewer, nil)
	expect(t, r, 200, "")
	expect(t, s.do("GET", board, viewer, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 404, "not_found")
	expect(t, s.do("GET", board+"/history", viewer, nil), 404, "not_found")
	// Leaving ended the space membership too: rejoining as a plain member does not bring it back.
	r = s.do("POST", "/api/v1/orgs/"+orgID+"/invitations", owner, map[string]string{"email": "sm-viewer@test.test"})
	expect(t, r, 201, "")
	r = s.do("POST", "/api/v1/invitations/"+r.json(t)["token"].(string)+"/accept", viewer, nil)
	expect(t, r, 200, "")
	pos = r.json(t)["position"].(string)
	expect(t, s.do("GET", board, viewer, nil, "X-Consistency-Token", pos), 404, "not_found")
	expect(t, s.do("GET", board+"/history", viewer, nil), 404, "not_found")
	r = s.do("GET", board+"/members", owner, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 0 {
		t.Fatalf("members after leaving and rejoining: %s", r.body)
	}
}

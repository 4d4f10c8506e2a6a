package main

import (
	"testing"
)

func TestOrganizationSpaces(t *testing.T) {
	s := startServer(t)
	owner, _, _ := s.register("o@org.test", "Owner")
	admin, adminID, _ := s.register("a@org.test", "Admin")
	member, memberID, _ := s.register("m@org.test", "Member")
	outsider, _, _ := s.register("x@else.test", "Outsider")

	r := s.do("POST", "/api/v1/orgs", owner, map[string]string{"name": "Org", "slug": "org"})
	expect(t, r, 201, "")
	orgID := r.json(t)["id"].(string)
	join := func(token, email, role string) {
		t.Helper()
		r := s.do("POST", "/api/v1/orgs/"+orgID+"/invitations", owner, map[string]string{"email": email, "role": role})
		expect(t, r, 201, "")
		expect(t, s.do("POST", "/api/v1/invitations/"+r.json(t)["token"].(string)+"/accept", token, nil), 200, "")
	}
	join(admin, "a@org.test", "admin")
	join(member, "m@org.test", "member")

	// Owners and admins create the organization's spaces; members and outsiders cannot.
	r = s.do("POST", "/api/v1/spaces", admin, map[string]any{"org_id": orgID, "name": "Plans", "slug": "plans"})
	expect(t, r, 201, "")
	private := r.json(t)
	if private["org_id"] != orgID || private["owner_user_id"] != nil {
		t.Fatalf("org space = %v", private)
	}
	r = s.do("POST", "/api/v1/spaces", owner, map[string]any{"org_id": orgID, "name": "Handbook", "slug": "handbook", "visibility": "public"})
	expect(t, r, 201, "")
	public := r.json(t)
	pos := public["position"].(string)
	expect(t, s.do("POST", "/api/v1/spaces", member, map[string]any{"org_id": orgID, "name": "Mine", "slug": "mine"}), 403, "forbidden")
	expect(t, s.do("POST", "/api/v1/spaces", outsider, map[string]any{"org_id": orgID, "name": "Theirs", "slug": "theirs"}), 404, "not_found")
	expect(t, s.do("POST", "/api/v1/spaces", owner, map[string]any{"org_id": orgID, "name": "Again", "slug": "plans"}), 409, "conflict")
	// Slugs are per owner: the owner's personal spaces have their own.
	expect(t, s.do("POST", "/api/v1/spaces", owner, map[string]any{"name": "Plans of mine", "slug": "plans"}), 201, "")

	privPath, pubPath := "/api/v1/spaces/"+private["id"].(string), "/api/v1/spaces/"+public["id"].(string)
	// Who reads what: admins and owners everything; members the public space; outsiders nothing.
	expect(t, s.do("GET", privPath, owner, nil, "X-Consistency-Token", pos), 200, "")
	expect(t, s.do("GET", privPath, admin, nil, "X-Consistency-Token", pos), 200, "")
	expect(t, s.do("GET", privPath, member, nil, "X-Consistency-Token", pos), 404, "not_found")
	expect(t, s.do("GET", pubPath, member, nil, "X-Consistency-Token", pos), 200, "")
	expect(t, s.do("GET", pubPath, outsider, nil, "X-Consistency-Token", pos), 404, "not_found")
	expect(t, s.do("GET", privPath+"/history", member, nil), 404, "not_found")
	expect(t, s.do("GET", pubPath+"/history", member, nil), 200, "")
	r = s.do("GET", "/api/v1/spaces?org_id="+orgID, member, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 1 {
		t.Fatalf("member lists %s", r.body)
	}
	r = s.do("GET", "/api/v1/spaces?org_id="+orgID, admin, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 2 {
		t.Fatalf("admin lists %s", r.body)
	}
	r = s.do("GET", "/api/v1/spaces?org_id="+orgID, outsider, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 0 {
		t.Fatalf("outsider lists %s", r.body)
	}

	// Members read but do not change; admins change.
	expect(t, s.do("PATCH", pubPath, member, map[string]string{"name": "x"}), 403, "forbidden")
	expect(t, s.do("PATCH", privPath, member, map[string]string{"name": "x"}), 404, "not_found")
	r = s.do("PATCH", privPath, admin, map[string]string{"visibility": "public"})
	expect(t, r, 200, "")
	expect(t, s.do("GET", privPath, member, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 200, "")

	// Role changes reach the spaces: a demoted admin loses the private space, a promoted member gains it.
	expect(t, s.do("PATCH", privPath, admin, map[string]string{"visibility": "private"}), 200, "")
	expect(t, s.do("PATCH", "/api/v1/orgs/"+orgID+"/members/"+adminID, owner, map[string]string{"role": "member"}), 200, "")
	r = s.do("PATCH", "/api/v1/orgs/"+orgID+"/members/"+memberID, owner, map[string]string{"role": "admin"})
	expect(t, r, 200, "")
	pos = r.json(t)["position"].(string)
	expect(t, s.do("GET", privPath, admin, nil, "X-Consistency-Token", pos), 404, "not_found")
	expect(t, s.do("GET", privPath, member, nil, "X-Consistency-Token", pos), 200, "")
	// Leaving takes everything away.
	r = s.do("DELETE", "/api/v1/orgs/"+orgID+"/members/"+adminID, admin, nil)
	expect(t, r, 200, "")
	expect(t, s.do("GET", pubPath, admin, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 404, "not_found")

	// Deleting the organization deletes its spaces, through events.
	r = s.do("DELETE", "/api/v1/orgs/"+orgID, owner, nil)
	expect(t, r, 200, "")
	pos = r.json(t)["position"].(string)
	for _, p := range []string{privPath, pubPath} {
		expect(t, s.do("GET", p, owner, nil, "X-Consistency-Token", pos), 404, "not_found")
		expect(t, s.do("GET", p+"/history", owner, nil), 404, "not_found")
	}
	r = s.do("GET", pubPath+"/history", outsider, nil)
	expect(t, r, 404, "not_found")
	var deleted int
	if err := s.app.Pool.QueryRow(t.Context(), `SELECT count(*) FROM events WHERE event_type = 'space.deleted' AND tenant_id = $1`, orgID).Scan(&deleted); err != nil || deleted != 2 {
		t.Fatalf("space.deleted events for the org: %d (%v), want 2", deleted, err)
	}
}

package main

import (
	"testing"
)

func TestOrganizationsRolesAndInvitations(t *testing.T) {
	s := startServer(t)
	owner, ownerID, _ := s.register("owner@acme.test", "Olive Owner")
	bob, bobID, _ := s.register("bob@acme.test", "Bob")
	carol, _, _ := s.register("carol@acme.test", "Carol")
	outsider, _, _ := s.register("eve@evil.test", "Eve")

	r := s.do("POST", "/api/v1/orgs", owner, map[string]string{"name": "Acme", "slug": "acme"})
	expect(t, r, 201, "")
	o := r.json(t)
	orgID, pos := o["id"].(string), o["position"].(string)
	if o["role"] != "owner" {
		t.Fatalf("created %s", r.body)
	}
	base := "/api/v1/orgs/" + orgID
	expect(t, s.do("POST", "/api/v1/orgs", bob, map[string]string{"name": "Other", "slug": "acme"}), 409, "conflict")
	expect(t, s.do("POST", "/api/v1/orgs", bob, map[string]string{"name": "", "slug": "Bad Slug"}), 422, "validation_failed")

	r = s.do("GET", "/api/v1/me", owner, nil, "X-Consistency-Token", pos)
	if ms := r.json(t)["memberships"].([]any); len(ms) != 1 || ms[0].(map[string]any)["role"] != "owner" {
		t.Fatalf("me = %s", r.body)
	}
	r = s.do("GET", "/api/v1/orgs", owner, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 1 {
		t.Fatalf("orgs = %s", r.body)
	}

	// An outsider sees nothing and can do nothing.
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", base, nil}, {"GET", base + "/members", nil}, {"GET", base + "/invitations", nil},
		{"PATCH", base, map[string]string{"name": "x"}}, {"DELETE", base, nil},
		{"POST", base + "/invitations", map[string]string{"email": "x@y.test"}},
		{"PATCH", base + "/members/" + ownerID, map[string]string{"role": "member"}},
		{"DELETE", base + "/members/" + ownerID, nil},
	} {
		expect(t, s.do(c.method, c.path, outsider, c.body, "X-Consistency-Token", pos), 404, "not_found")
	}

	// Invite Bob; he accepts with his own account.
	r = s.do("POST", base+"/invitations", owner, map[string]string{"email": "BOB@acme.test"})
	expect(t, r, 201, "")
	inv := r.json(t)
	token := inv["token"].(string)
	if len(token) < 40 {
		t.Fatalf("invitation %s", r.body)
	}
	expect(t, s.do("POST", base+"/invitations", owner, map[string]string{"email": "bob@acme.test"}), 409, "conflict")
	r = s.do("GET", base+"/invitations", owner, nil, "X-Consistency-Token", inv["position"].(string))
	if items := r.json(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["email"] != "bob@acme.test" {
		t.Fatalf("invitations = %s", r.body)
	}
	expect(t, s.do("POST", "/api/v1/invitations/"+token+"/accept", carol, nil), 409, "conflict") // another email
	r = s.do("POST", "/api/v1/invitations/"+token+"/accept", bob, nil)
	expect(t, r, 200, "")
	if m := r.json(t); m["role"] != "member" || m["user_id"] != bobID {
		t.Fatalf("accept = %s", r.body)
	}
	pos = r.json(t)["position"].(string)
	expect(t, s.do("POST", "/api/v1/invitations/"+token+"/accept", bob, nil), 409, "conflict") // used
	expect(t, s.do("POST", "/api/v1/invitations/atli_unknown/accept", bob, nil), 404, "not_found")
	expect(t, s.do("POST", base+"/invitations", owner, map[string]string{"email": "bob@acme.test"}), 409, "conflict") // a member

	// A member reads but does not manage.
	expect(t, s.do("GET", base, bob, nil, "X-Consistency-Token", pos), 200, "")
	r = s.do("GET", base+"/members", bob, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 2 {
		t.Fatalf("members = %s", r.body)
	}
	expect(t, s.do("GET", base+"/invitations", bob, nil), 403, "forbidden")
	expect(t, s.do("PATCH", base, bob, map[string]string{"name": "Bob's"}), 403, "forbidden")
	expect(t, s.do("DELETE", base, bob, nil), 403, "forbidden")
	expect(t, s.do("POST", base+"/invitations", bob, map[string]string{"email": "carol@acme.test"}), 403, "forbidden")
	expect(t, s.do("PATCH", base+"/members/"+ownerID, bob, map[string]string{"role": "member"}), 403, "forbidden")

	// A revoked invitation cannot be accepted.
	r = s.do("POST", base+"/invitations", owner, map[string]string{"email": "carol@acme.test", "role": "admin"})
	expect(t, r, 201, "")
	carolToken, carolInv := r.json(t)["token"].(string), r.json(t)["id"].(string)
	expect(t, s.do("DELETE", base+"/invitations/"+carolInv, owner, nil), 200, "")
	expect(t, s.do("POST", "/api/v1/invitations/"+carolToken+"/accept", carol, nil), 409, "conflict")

	// Roles: an admin manages members but not owners; the last owner stays.
	expect(t, s.do("PATCH", base+"/members/"+bobID, owner, map[string]string{"role": "admin"}), 200, "")
	expect(t, s.do("PATCH", base+"/members/"+bobID, owner, map[string]string{"role": "boss"}), 422, "validation_failed")
	expect(t, s.do("PATCH", base+"/members/"+ownerID, bob, map[string]string{"role": "member"}), 403, "forbidden")
	expect(t, s.do("POST", base+"/invitations", bob, map[string]string{"email": "carol@acme.test", "role": "owner"}), 403, "forbidden")
	expect(t, s.do("DELETE", base+"/members/"+ownerID, bob, nil), 403, "forbidden")
	expect(t, s.do("DELETE", base, bob, nil), 403, "forbidden")
	expect(t, s.do("PATCH", base+"/members/"+ownerID, owner, map[string]string{"role": "admin"}), 409, "conflict")
	expect(t, s.do("DELETE", base+"/members/"+ownerID, owner, nil), 409, "conflict")
	r = s.do("PATCH", base, bob, map[string]string{"name": "Acme Inc"})
	expect(t, r, 200, "")

	// With a second owner, the first may leave; the org then belongs to Bob.
	expect(t, s.do("PATCH", base+"/members/"+bobID, owner, map[string]string{"role": "owner"}), 200, "")
	r = s.do("DELETE", base+"/members/"+ownerID, owner, nil)
	expect(t, r, 200, "")
	expect(t, s.do("GET", base, owner, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 404, "not_found")

	// The owner deletes the organization: nothing of it stays readable.
	r = s.do("DELETE", base, bob, nil)
	expect(t, r, 200, "")
	pos = r.json(t)["position"].(string)
	expect(t, s.do("GET", base, bob, nil, "X-Consistency-Token", pos), 404, "not_found")
	expect(t, s.do("GET", base+"/members", bob, nil, "X-Consistency-Token", pos), 404, "not_found")
	r = s.do("GET", "/api/v1/me", bob, nil, "X-Consistency-Token", pos)
	if ms := r.json(t)["memberships"].([]any); len(ms) != 0 {
		t.Fatalf("memberships after deletion = %s", r.body)
	}
	// Its slug is free again.
	expect(t, s.do("POST", "/api/v1/orgs", carol, map[string]string{"name": "Acme again", "slug": "acme"}), 201, "")
}

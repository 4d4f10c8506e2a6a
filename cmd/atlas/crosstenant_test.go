package main

import (
	"bytes"
	"testing"
	"time"
)

// The cross-tenant suite: two organizations with their own members, spaces, invitations and keys,
// and an outsider. For every route that takes an id, another tenant and the outsider get 404 (never
// a hint that the resource exists), including routes whose parent is the caller's own and whose child
// is theirs. Later capabilities extend the route list.
func TestCrossTenantIsolation(t *testing.T) {
	s := startServer(t)
	type tenant struct {
		owner, member            string // tokens
		ownerID, memberID        string
		org, space, personal     string
		invitation, invitationTk string
		key, note                string
		folder, file, link       string
		chat, message            string
		task                     string
	}
	mk := func(name string) tenant {
		var tn tenant
		tn.owner, tn.ownerID, tn.personal = s.register(name+"-owner@tenant.test", name+" owner")
		tn.member, tn.memberID, _ = s.register(name+"-member@tenant.test", name+" member")
		r := s.do("POST", "/api/v1/orgs", tn.owner, map[string]string{"name": name, "slug": name})
		expect(t, r, 201, "")
		tn.org = r.json(t)["id"].(string)
		r = s.do("POST", "/api/v1/orgs/"+tn.org+"/invitations", tn.owner, map[string]string{"email": name + "-member@tenant.test"})
		expect(t, r, 201, "")
		expect(t, s.do("POST", "/api/v1/invitations/"+r.json(t)["token"].(string)+"/accept", tn.member, nil), 200, "")
		r = s.do("POST", "/api/v1/spaces", tn.owner, map[string]any{"org_id": tn.org, "name": "Secret", "slug": "secret", "visibility": "public"})
		expect(t, r, 201, "")
		tn.space = r.json(t)["id"].(string)
		r = s.do("POST", "/api/v1/spaces/"+tn.space+"/notes", tn.owner, map[string]string{"title": name + " note", "body": "secret"})
		expect(t, r, 201, "")
		tn.note = r.json(t)["id"].(string)
		r = s.do("POST", "/api/v1/spaces/"+tn.space+"/folders", tn.owner, map[string]string{"name": "Folder"})
		expect(t, r, 201, "")
		tn.folder = r.json(t)["id"].(string)
		r = s.upload(tn.owner, tn.space, "secret.txt", []byte("secret"), "folder_id", tn.folder)
		expect(t, r, 201, "")
		tn.file = r.json(t)["id"].(string)
		r = s.do("POST", "/api/v1/files/"+tn.file+"/links", tn.owner, map[string]any{})
		expect(t, r, 201, "")
		tn.link = r.json(t)["id"].(string)
		r = s.do("POST", "/api/v1/orgs/"+tn.org+"/invitations", tn.owner, map[string]string{"email": "pending@" + name + ".test"})
		expect(t, r, 201, "")
		tn.invitation, tn.invitationTk = r.json(t)["id"].(string), r.json(t)["token"].(string)
		r = s.do("POST", "/api/v1/me/api-keys", tn.owner, map[string]string{"name": "key"})
		expect(t, r, 201, "")
		tn.key = r.json(t)["id"].(string)
		r = s.do("POST", "/api/v1/spaces/"+tn.space+"/chats", tn.owner, map[string]string{"title": name + " chat"})
		expect(t, r, 201, "")
		tn.chat = r.json(t)["id"].(string)
		r = s.do("POST", "/api/v1/chats/"+tn.chat+"/messages", tn.owner, textMessage(name+" chatword secret"))
		expect(t, r, 201, "")
		tn.message = r.json(t)["id"].(string)
		tn.task = s.createTask(tn.owner, tn.space, "space.export", map[string]any{})
		s.waitTask(tn.owner, tn.task, "completed", 60*time.Second)
		return tn
	}
	a, b := mk("alpha"), mk("beta")
	outsider, _, _ := s.register("outsider@nowhere.test", "Outsider")
	// Every read model has caught up with everything above.
	r := s.do("POST", "/api/v1/spaces", outsider, map[string]string{"name": "Mine", "slug": "mine"})
	expect(t, r, 201, "")
	pos := r.json(t)["position"].(string)

	type route struct {
		method, path string
		body         any
		// asMember is the status when the caller is a plain member of the parent organization (theirs
		// or, for swapped parents, their own, where a member may not manage); 0 means 404.
		asMember int
	}
	routes := func(their tenant, mine tenant) []route {
		return []route{
			{"GET", "/api/v1/spaces/" + their.space, nil, 0},
			{"GET", "/api/v1/spaces/" + their.personal, nil, 0},
			{"GET", "/api/v1/spaces/" + their.space + "/history", nil, 0},
			{"GET", "/api/v1/spaces/" + their.space + "?as_of=2030-01-01T00:00:00Z", nil, 0},
			{"PATCH", "/api/v1/spaces/" + their.space, map[string]string{"name": "x"}, 0},
			{"DELETE", "/api/v1/spaces/" + their.space, nil, 0},
			{"GET", "/api/v1/orgs/" + their.org, nil, 0},
			{"PATCH", "/api/v1/orgs/" + their.org, map[string]string{"name": "x"}, 0},
			{"DELETE", "/api/v1/orgs/" + their.org, nil, 0},
			{"GET", "/api/v1/orgs/" + their.org + "/members", nil, 0},
			{"GET", "/api/v1/orgs/" + their.org + "/history", nil, 0},
			{"PATCH", "/api/v1/orgs/" + their.org + "/members/" + their.memberID, map[string]string{"role": "admin"}, 0},
			{"DELETE", "/api/v1/orgs/" + their.org + "/members/" + their.memberID, nil, 0},
			{"GET", "/api/v1/orgs/" + their.org + "/invitations", nil, 0},
			{"POST", "/api/v1/orgs/" + their.org + "/invitations", map[string]string{"email": "spy@x.test"}, 0},
			{"DELETE", "/api/v1/orgs/" + their.org + "/invitations/" + their.invitation, nil, 0},
			{"DELETE", "/api/v1/me/api-keys/" + their.key, nil, 0},
			{"GET", "/api/v1/spaces/" + their.space + "/members", nil, 0},
			{"POST", "/api/v1/spaces/" + their.space + "/members", map[string]any{"user_id": their.memberID, "role": "viewer"}, 0},
			{"PATCH", "/api/v1/spaces/" + their.space + "/members/" + their.memberID, map[string]string{"role": "editor"}, 0},
			{"DELETE", "/api/v1/spaces/" + their.space + "/members/" + their.memberID, nil, 0},
			{"GET", "/api/v1/notes/" + their.note, nil, 0},
			{"PATCH", "/api/v1/notes/" + their.note, map[string]string{"body": "x"}, 0},
			{"DELETE", "/api/v1/notes/" + their.note, nil, 0},
			{"GET", "/api/v1/notes/" + their.note + "/revisions", nil, 0},
			{"GET", "/api/v1/notes/" + their.note + "/history", nil, 0},
			{"GET", "/api/v1/spaces/" + their.space + "/notes", nil, 0},
			{"POST", "/api/v1/spaces/" + their.space + "/notes", map[string]string{"title": "x", "body": "y"}, 0},
			{"GET", "/api/v1/files/" + their.file, nil, 0},
			{"PATCH", "/api/v1/files/" + their.file, map[string]string{"name": "x"}, 0},
			{"DELETE", "/api/v1/files/" + their.file, nil, 0},
			{"GET", "/api/v1/files/" + their.file + "/content", nil, 0},
			{"PUT", "/api/v1/files/" + their.file + "/content", map[string]string{"file": "x"}, 0},
			{"GET", "/api/v1/files/" + their.file + "/versions", nil, 0},
			{"GET", "/api/v1/files/" + their.file + "/versions/1/content", nil, 0},
			{"GET", "/api/v1/files/" + their.file + "/history", nil, 0},
			{"GET", "/api/v1/files/" + their.file + "/links", nil, 0},
			{"POST", "/api/v1/files/" + their.file + "/links", map[string]any{}, 0},
			{"DELETE", "/api/v1/files/" + their.file + "/links/" + their.link, nil, 0},
			{"GET", "/api/v1/folders/" + their.folder, nil, 0},
			{"PATCH", "/api/v1/folders/" + their.folder, map[string]string{"name": "x"}, 0},
			{"DELETE", "/api/v1/folders/" + their.folder, nil, 0},
			{"GET", "/api/v1/spaces/" + their.space + "/files", nil, 0},
			{"POST", "/api/v1/spaces/" + their.space + "/files", map[string]string{"file": "x"}, 0},
			{"GET", "/api/v1/spaces/" + their.space + "/folders", nil, 0},
			{"POST", "/api/v1/spaces/" + their.space + "/folders", map[string]string{"name": "x"}, 0},
			{"GET", "/api/v1/chats/" + their.chat, nil, 0},
			{"GET", "/api/v1/chats/" + their.chat + "?as_of=2030-01-01T00:00:00Z", nil, 0},
			{"PATCH", "/api/v1/chats/" + their.chat, map[string]string{"title": "x"}, 0},
			{"DELETE", "/api/v1/chats/" + their.chat, nil, 0},
			{"GET", "/api/v1/chats/" + their.chat + "/history", nil, 0},
			{"GET", "/api/v1/chats/" + their.chat + "/messages", nil, 0},
			{"POST", "/api/v1/chats/" + their.chat + "/messages", textMessage("x"), 0},
			{"GET", "/api/v1/chats/" + their.chat + "/messages/" + their.message, nil, 0},
			{"POST", "/api/v1/chats/" + their.chat + "/messages/" + their.message + "/cancel", nil, 0},
			{"GET", "/api/v1/chats/" + their.chat + "/stream", nil, 0},
			{"GET", "/api/v1/spaces/" + their.space + "/chats", nil, 0},
			{"POST", "/api/v1/spaces/" + their.space + "/chats", map[string]string{"title": "x"}, 0},
			{"GET", "/api/v1/tasks/" + their.task, nil, 0},
			{"GET", "/api/v1/tasks/" + their.task + "?as_of=2030-01-01T00:00:00Z", nil, 0},
			{"GET", "/api/v1/tasks/" + their.task + "/history", nil, 0},
			{"GET", "/api/v1/tasks/" + their.task + "/stream", nil, 0},
			{"GET", "/api/v1/tasks/" + their.task + "/artifact", nil, 0},
			{"POST", "/api/v1/tasks/" + their.task + "/cancel", nil, 0},
			{"POST", "/api/v1/tasks/" + their.task + "/retry", nil, 0},
			{"GET", "/api/v1/spaces/" + their.space + "/tasks", nil, 0},
			{"POST", "/api/v1/spaces/" + their.space + "/tasks", map[string]any{"kind": "space.export"}, 0},
			// Swapped parents: my organization, their child (swappedParents routes, last in the list).
			{"PATCH", "/api/v1/orgs/" + mine.org + "/members/" + their.memberID, map[string]string{"role": "admin"}, 403},
			{"DELETE", "/api/v1/orgs/" + mine.org + "/members/" + their.memberID, nil, 0},
			{"DELETE", "/api/v1/orgs/" + mine.org + "/invitations/" + their.invitation, nil, 403},
			{"GET", "/api/v1/spaces/" + mine.space + "/files?folder_id=" + their.folder, nil, 0},
			{"GET", "/api/v1/spaces/" + mine.space + "/folders?parent_id=" + their.folder, nil, 0},
			{"POST", "/api/v1/spaces/" + mine.space + "/folders", map[string]string{"name": "x", "parent_id": their.folder}, 403},
			{"PATCH", "/api/v1/files/" + mine.file, map[string]string{"folder_id": their.folder}, 403},
			{"PATCH", "/api/v1/folders/" + mine.folder, map[string]string{"parent_id": their.folder}, 403},
			{"DELETE", "/api/v1/files/" + mine.file + "/links/" + their.link, nil, 403},
			{"GET", "/api/v1/chats/" + mine.chat + "/messages/" + their.message, nil, 0},
			{"POST", "/api/v1/chats/" + mine.chat + "/messages/" + their.message + "/cancel", nil, 403},
		}
	}
	const swappedParents = 11
	for _, c := range []struct {
		who, token string
		member     bool
	}{
		{"alpha's owner", a.owner, false},
		{"alpha's member", a.member, true},
	} {
		for _, rt := range routes(b, a) {
			want := 404
			if c.member && rt.asMember != 0 {
				want = rt.asMember
			}
			r := s.do(rt.method, rt.path, c.token, rt.body, "X-Consistency-Token", pos)
			if r.status != want {
				t.Errorf("%s: %s %s = %d %s, want %d", c.who, rt.method, rt.path, r.status, r.body, want)
			}
		}
	}
	// The outsider has no organization: every route on either tenant is 404.
	for _, their := range []tenant{a, b} {
		all := routes(their, their)
		for _, rt := range all[:len(all)-swappedParents] {
			r := s.do(rt.method, rt.path, outsider, rt.body, "X-Consistency-Token", pos)
			if r.status != 404 {
				t.Errorf("outsider: %s %s = %d %s, want 404", rt.method, rt.path, r.status, r.body)
			}
		}
	}
	// Another tenant's invitation token is for another email: refused, and nothing joins.
	expect(t, s.do("POST", "/api/v1/invitations/"+b.invitationTk+"/accept", a.owner, nil), 409, "conflict")
	// Lists never mix tenants.
	for _, c := range []struct{ token, org string }{{a.owner, b.org}, {outsider, a.org}} {
		r := s.do("GET", "/api/v1/spaces?org_id="+c.org, c.token, nil, "X-Consistency-Token", pos)
		if n := len(r.json(t)["items"].([]any)); n != 0 {
			t.Errorf("a stranger lists %d spaces of %s", n, c.org)
		}
	}
	r = s.do("GET", "/api/v1/orgs", a.owner, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != a.org {
		t.Errorf("alpha's owner lists %s", r.body)
	}
	r = s.do("GET", "/api/v1/me/api-keys", a.owner, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != a.key {
		t.Errorf("alpha's owner lists keys %s", r.body)
	}
	// Nothing of beta changed.
	r = s.do("GET", "/api/v1/orgs/"+b.org+"/members", b.owner, nil, "X-Consistency-Token", pos)
	if n := len(r.json(t)["items"].([]any)); n != 2 {
		t.Errorf("beta has %d members after the attempts, want 2", n)
	}
	r = s.do("GET", "/api/v1/notes/"+b.note, b.owner, nil, "X-Consistency-Token", pos)
	if n := r.json(t); n["version"] != 1.0 || n["body"] != "secret" {
		t.Errorf("beta's note after the attempts: %s", r.body)
	}
	r = s.do("GET", "/api/v1/files/"+b.file+"/content", b.owner, nil)
	if r.status != 200 || string(r.body) != "secret" {
		t.Errorf("beta's file after the attempts: %d %q", r.status, r.body)
	}
	r = s.do("GET", "/api/v1/files/"+b.file+"/links", b.owner, nil)
	if items := r.json(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["live"] != true {
		t.Errorf("beta's link after the attempts: %s", r.body)
	}
	r = s.do("GET", "/api/v1/chats/"+b.chat+"/messages", b.owner, nil)
	if items := r.json(t)["items"].([]any); r.status != 200 || len(items) != 1 {
		t.Errorf("beta's chat after the attempts: %s", r.body)
	}
	// Search never crosses tenants: beta's own word finds beta's note for beta, nothing of it for
	// alpha or the outsider, in any mode.
	s.waitIndexed(b.owner, "/api/v1/notes/"+b.note)
	s.waitIndexed(a.owner, "/api/v1/notes/"+a.note)
	s.waitIndexed(b.owner, "/api/v1/chats/"+b.chat)
	if ids, _ := s.searchIDs(b.owner, "beta chatword", "mode", "keyword"); !contains(ids, b.chat) {
		t.Errorf("beta does not find its own chat: %v", ids)
	}
	for _, mode := range []string{"keyword", "semantic", "hybrid"} {
		for _, who := range []string{a.owner, a.member, outsider} {
			if ids, _ := s.searchIDs(who, "beta chatword secret", "mode", mode); contains(ids, b.chat) {
				t.Errorf("%s search by a stranger finds beta's chat: %v", mode, ids)
			}
		}
	}
	if ids, _ := s.searchIDs(b.owner, "beta note", "mode", "keyword"); !contains(ids, b.note) {
		t.Errorf("beta does not find its own note: %v", ids)
	}
	for _, mode := range []string{"keyword", "semantic", "hybrid"} {
		for _, who := range []string{a.owner, a.member, outsider} {
			if ids, _ := s.searchIDs(who, "beta note secret", "mode", mode); contains(ids, b.note) || contains(ids, b.file) {
				t.Errorf("%s search by a stranger finds beta's content: %v", mode, ids)
			}
		}
	}
	// Beta's task is as it was, and its export holds only beta's content.
	r = s.do("GET", "/api/v1/tasks/"+b.task, b.owner, nil)
	if tk := r.json(t); tk["status"] != "completed" || tk["version"] == nil {
		t.Errorf("beta's task after the attempts: %s", r.body)
	}
	r = s.do("GET", "/api/v1/tasks/"+b.task+"/artifact", b.owner, nil)
	if r.status != 200 || !bytes.Contains(r.body, []byte("beta note")) || bytes.Contains(r.body, []byte("alpha note")) {
		t.Errorf("beta's export: %d", r.status)
	}
	// Uploading into another tenant's folder from one's own space.
	expect(t, s.upload(a.owner, a.space, "spy.txt", []byte("x"), "folder_id", b.folder), 404, "not_found")
	r = s.do("GET", "/api/v1/orgs/"+b.org+"/history", b.owner, nil)
	if items := r.json(t)["items"].([]any); r.status != 200 || len(items) < 3 || items[0].(map[string]any)["type"] != "org.created.v1" {
		t.Errorf("beta's owner reads beta's history: %d %s", r.status, r.body)
	}
	expect(t, s.do("GET", "/api/v1/orgs/"+b.org+"/history", b.member, nil), 403, "forbidden")
	r = s.do("GET", "/api/v1/spaces/"+b.space+"/history", b.owner, nil)
	if n := len(r.json(t)["items"].([]any)); n != 1 {
		t.Errorf("beta's space has %d events after the attempts, want 1", n)
	}
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/domain"
	"github.com/atlas-workspace/atlas/domain/note"
	"github.com/atlas-workspace/atlas/eventstore"
)

// admin runs `atlas admin grant|revoke EMAIL ROLE` against the server's database.
func (s *server) admin(verb, email, role string) int {
	s.t.Helper()
	var out, errOut strings.Builder
	code := run([]string{"admin", verb, email, role}, func(k string) string { return s.env[k] }, &out, &errOut)
	if code == 0 && !strings.Contains(out.String(), verb[:len(verb)-1]) {
		s.t.Fatalf("admin %s: %s", verb, out.String())
	}
	if code != 0 {
		s.t.Logf("admin %s %s %s: exit %d: %s", verb, email, role, code, errOut.String())
	}
	return code
}

func TestPlatformRolesVerifyAndAdminAPI(t *testing.T) {
	s := startServerWith(t, map[string]string{"ATLAS_SEAL_INTERVAL": "50ms"})
	alice, _, _ := s.register("alice@platform.test", "Alice")
	bob, bobID, _ := s.register("bob@platform.test", "Bob")

	expect(t, s.do("GET", "/api/v1/audit/verify", "", nil), 401, "unauthenticated")
	expect(t, s.do("GET", "/api/v1/audit/verify", bob, nil), 403, "forbidden")
	expect(t, s.do("GET", "/api/v1/admin/projections", "", nil), 401, "unauthenticated")
	expect(t, s.do("GET", "/api/v1/admin/projections", alice, nil), 403, "forbidden")
	expect(t, s.do("POST", "/api/v1/admin/projections/notes/rebuild", alice, nil), 403, "forbidden")

	if code := s.admin("grant", "nobody@platform.test", "auditor"); code != 1 {
		t.Fatalf("grant to an unknown email exited %d", code)
	}
	if code := s.admin("grant", "bob@platform.test", "root"); code != 2 {
		t.Fatalf("grant of an unknown role exited %d", code)
	}
	if code := s.admin("grant", "BOB@platform.test", "auditor"); code != 0 {
		t.Fatalf("grant exited %d", code)
	}
	if code := s.admin("grant", "bob@platform.test", "auditor"); code != 1 {
		t.Fatalf("a second grant exited %d", code)
	}
	// The grant is an event of the platform stream, auditable like any other.
	var actor *string
	var data string
	if err := s.app.Pool.QueryRow(context.Background(), `SELECT metadata->>'actor_id', data::text FROM events
		WHERE stream_type = 'platform' AND event_type = 'platform.role_granted'`).Scan(&actor, &data); err != nil ||
		actor != nil || !strings.Contains(data, bobID) {
		t.Fatalf("the grant event: %v %v %s", err, actor, data)
	}

	// The role works once the platform projector has applied it.
	var rep map[string]any
	waitFor(t, 10*time.Second, "bob verifies the log with at least one seal", func() bool {
		r := s.do("GET", "/api/v1/audit/verify", bob, nil)
		if r.status != 200 {
			return false
		}
		rep = r.json(t)
		return rep["checked_seals"].(float64) >= 1
	})
	if rep["ok"] != true || rep["checked_events"].(float64) < 5 || rep["first_broken"] != nil {
		t.Fatalf("verify: %v", rep)
	}
	anchor := rep["last_seal"].(map[string]any)["anchor"].(string)
	r := s.do("GET", "/api/v1/audit/verify?anchor="+anchor, bob, nil)
	expect(t, r, 200, "")
	if r.json(t)["ok"] != true {
		t.Fatalf("verify with an anchor: %s", r.body)
	}
	expect(t, s.do("GET", "/api/v1/audit/verify?anchor=1:00", bob, nil), 400, "invalid_request")
	// An auditor is not an administrator.
	expect(t, s.do("GET", "/api/v1/admin/projections", bob, nil), 403, "forbidden")
	// GET /me shows the caller's platform roles.
	if me := s.do("GET", "/api/v1/me", bob, nil).json(t); fmt.Sprint(me["platform_roles"]) != "[auditor]" {
		t.Fatalf("bob's /me: %v", me)
	}
	if me := s.do("GET", "/api/v1/me", alice, nil).json(t); fmt.Sprint(me["platform_roles"]) != "[]" {
		t.Fatalf("alice's /me: %v", me)
	}
	// How far sealing has come is a metric.
	metrics := string(s.do("GET", "/metrics", "", nil).body)
	for _, m := range []string{"atlas_audit_sealed_position ", "atlas_audit_head_position ", "atlas_audit_last_seal_timestamp_seconds "} {
		if !strings.Contains(metrics, m) || strings.Contains(metrics, m+"0\n") {
			t.Fatalf("metric %s missing or zero", m)
		}
	}

	if code := s.admin("grant", "alice@platform.test", "admin"); code != 0 {
		t.Fatalf("grant exited %d", code)
	}
	var list []map[string]any
	waitFor(t, 10*time.Second, "alice lists the projections", func() bool {
		r := s.do("GET", "/api/v1/admin/projections", alice, nil)
		if r.status != 200 {
			return false
		}
		return json.Unmarshal(r.body, &list) == nil
	})
	names := map[string]map[string]any{}
	for _, p := range list {
		names[p["name"].(string)] = p
	}
	for _, n := range []string{"users", "spaces", "notes", "platform"} {
		p := names[n]
		if p == nil || p["status"] != "live" || p["version"].(float64) < 1 || !strings.Contains(p["position"].(string), ".") {
			t.Fatalf("projection %s: %v (all: %v)", n, p, list)
		}
		if _, ok := p["lag_events"].(float64); !ok {
			t.Fatalf("projection %s has no lag_events: %v", n, p)
		}
	}
	// An administrator is not an auditor.
	expect(t, s.do("GET", "/api/v1/audit/verify", alice, nil), 403, "forbidden")
	expect(t, s.do("POST", "/api/v1/admin/projections/nope/rebuild", alice, nil), 404, "not_found")
	r = s.do("POST", "/api/v1/admin/projections/spaces/rebuild", alice, nil)
	expect(t, r, 202, "")
	if m := r.json(t); m["status"] != "rebuilding" || m["name"] != "spaces" {
		t.Fatalf("rebuild: %s", r.body)
	}
	waitFor(t, 10*time.Second, "the rebuilt projection to be live again", func() bool {
		r := s.do("GET", "/api/v1/admin/projections", alice, nil)
		var l []map[string]any
		if r.status != 200 || json.Unmarshal(r.body, &l) != nil {
			return false
		}
		for _, p := range l {
			if p["name"] == "spaces" {
				return p["status"] == "live"
			}
		}
		return false
	})
	// Spaces answer again from the rebuilt read model.
	expect(t, s.do("GET", "/api/v1/spaces", alice, nil), 200, "")

	// Revoking takes the role away.
	if code := s.admin("revoke", "bob@platform.test", "auditor"); code != 0 {
		t.Fatalf("revoke exited %d", code)
	}
	waitFor(t, 10*time.Second, "bob loses the auditor role", func() bool {
		return s.do("GET", "/api/v1/audit/verify", bob, nil).status == 403
	})
	if code := s.admin("grant", "bob@platform.test", "auditor"); code != 0 {
		t.Fatalf("grant again exited %d", code)
	}
	waitFor(t, 10*time.Second, "bob is an auditor again", func() bool {
		return s.do("GET", "/api/v1/audit/verify", bob, nil).status == 200
	})

	// Tampering shows through the API.
	conn := superuser(t, s.dbURL)
	if _, err := conn.Exec(context.Background(), `BEGIN; SET LOCAL session_replication_role = replica;
		UPDATE events SET recorded_at = recorded_at - interval '1 day' WHERE global_position = 2; COMMIT`); err != nil {
		t.Fatal(err)
	}
	r = s.do("GET", "/api/v1/audit/verify", bob, nil)
	expect(t, r, 200, "")
	rep = r.json(t)
	fb, _ := rep["first_broken"].(map[string]any)
	if rep["ok"] != false || fb == nil || fb["kind"] != "edited" || fb["position"].(float64) != 2 || fb["stream_id"] == nil {
		t.Fatalf("verify after tampering: %s", r.body)
	}
}

func TestOrgAuditLog(t *testing.T) {
	s := startServer(t)
	owner, ownerID, _ := s.register("owner@audit.test", "Owner")
	bob, bobID, _ := s.register("bob@audit.test", "Bob")
	outsider, _, _ := s.register("out@audit.test", "Out")
	r := s.do("POST", "/api/v1/orgs", owner, map[string]string{"name": "Acme", "slug": "acme"})
	expect(t, r, 201, "")
	orgID := r.json(t)["id"].(string)
	base := "/api/v1/orgs/" + orgID + "/audit"
	r = s.do("POST", "/api/v1/orgs/"+orgID+"/invitations", owner, map[string]string{"email": "bob@audit.test", "role": "member"})
	expect(t, r, 201, "")
	expect(t, s.do("POST", "/api/v1/invitations/"+r.json(t)["token"].(string)+"/accept", bob, nil), 200, "")
	r = s.do("POST", "/api/v1/spaces", owner, map[string]any{"org_id": orgID, "name": "Plans", "slug": "plans"})
	expect(t, r, 201, "")
	spaceID := r.json(t)["id"].(string)
	r = s.do("POST", "/api/v1/spaces/"+spaceID+"/notes", bob, map[string]string{"title": "Bob's note", "body": "hello"})
	if r.status != 201 { // bob may not write in a private space: let the owner add him
		expect(t, s.do("POST", "/api/v1/spaces/"+spaceID+"/members", owner, map[string]string{"user_id": bobID, "role": "editor"}), 201, "")
		r = s.do("POST", "/api/v1/spaces/"+spaceID+"/notes", bob, map[string]string{"title": "Bob's note", "body": "hello"})
		expect(t, r, 201, "")
	}
	// Another organization's events never show.
	r = s.do("POST", "/api/v1/orgs", outsider, map[string]string{"name": "Other", "slug": "other"})
	expect(t, r, 201, "")

	// Permissions: owners and admins; a member 403; anyone else 404; no token 401.
	expect(t, s.do("GET", base, "", nil), 401, "unauthenticated")
	expect(t, s.do("GET", base, bob, nil), 403, "forbidden")
	expect(t, s.do("GET", base, outsider, nil), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/orgs/"+uuid.NewString()+"/audit", owner, nil), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/orgs/nope/audit", owner, nil), 400, "invalid_request")

	// Bad filters change nothing and say what is wrong.
	for q, want := range map[string]int{
		"after=x": 400, "after=1.x": 400, "actor_id=bob": 400, "types=Org.Created": 422, "types=org.created,%20": 422,
		"from=yesterday": 422, "to=2026-13-01T00:00:00Z": 422, "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z": 422,
		"limit=0": 422, "limit=201": 422,
	} {
		r := s.do("GET", base+"?"+q, owner, nil)
		if r.status != want {
			t.Errorf("?%s: %d %s, want %d", q, r.status, r.body, want)
		}
	}

	want := s.waitAuditable(orgID)
	all := auditPages(t, s, owner, base+"?limit=2")
	if len(all) != want || want < 6 {
		t.Fatalf("%d events in pages, %d in the log", len(all), want)
	}
	types := map[string]int{}
	for _, e := range all {
		types[e["type"].(string)]++
	}
	for _, ty := range []string{"org.created.v1", "org.member_invited.v1", "org.member_joined.v1", "space.created.v2", "note.created.v1"} {
		if types[ty] == 0 {
			t.Fatalf("no %s in the audit log: %v", ty, types)
		}
	}
	// Personal data reads decrypted: the invitee's email.
	for _, e := range all {
		if e["type"] == "org.member_invited.v1" && !strings.Contains(string(mustJSON(e["data"])), "bob@audit.test") {
			t.Fatalf("invitation email not decrypted: %v", e["data"])
		}
	}

	// Filters.
	got := auditPages(t, s, owner, base+"?types=org.member_joined,note.created.v1")
	if len(got) != 2 || got[0]["type"] != "org.member_joined.v1" || got[1]["type"] != "note.created.v1" {
		t.Fatalf("types filter: %v", got)
	}
	got = auditPages(t, s, owner, base+"?actor_id="+bobID)
	for _, e := range got {
		if e["actor_id"] != bobID {
			t.Fatalf("actor filter: %v", e)
		}
	}
	if len(got) < 2 {
		t.Fatalf("bob's events: %v", got)
	}
	mid := all[len(all)/2]["occurred_at"].(string)
	before := auditPages(t, s, owner, base+"?to="+url.QueryEscape(mid))
	after := auditPages(t, s, owner, base+"?from="+url.QueryEscape(mid))
	if len(before)+len(after) != len(all) || len(after) == 0 {
		t.Fatalf("from/to split %d events into %d and %d", len(all), len(before), len(after))
	}
	_ = ownerID
	// after= continues from any position.
	rest := auditPages(t, s, owner, base+"?after="+all[2]["position"].(string))
	if len(rest) != len(all)-3 || rest[0]["position"] != all[3]["position"] {
		t.Fatalf("after: %d events, first %v", len(rest), rest[0])
	}

	// cursor= is the same as after=.
	viaCursor := auditPages(t, s, owner, base+"?cursor="+all[2]["position"].(string))
	if len(viaCursor) != len(rest) {
		t.Fatalf("cursor: %d events, after: %d", len(viaCursor), len(rest))
	}
	expect(t, s.do("GET", base+"?after="+all[1]["position"].(string)+"&cursor="+all[2]["position"].(string), owner, nil), 400, "invalid_request")

	// NDJSON of the same events.
	lines := auditNDJSON(t, s, owner, base, nil)
	if len(lines) != len(all) {
		t.Fatalf("NDJSON: %d lines, %d events", len(lines), len(all))
	}
	for i := range lines {
		if lines[i]["position"] != all[i]["position"] {
			t.Fatalf("NDJSON line %d: %v, page item %v", i, lines[i], all[i])
		}
	}
}

// waitAuditable waits until every event of tenant is readable in delivery order (no transaction older
// than them is still running anywhere in the cluster) and returns how many there are.
func (s *server) waitAuditable(tenant string) int {
	s.t.Helper()
	var total, readable int
	waitFor(s.t, 20*time.Second, "the tenant's events to be readable in delivery order", func() bool {
		err := s.app.Pool.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()))
			FROM events WHERE tenant_id = $1`, tenant).Scan(&total, &readable)
		return err == nil && total == readable
	})
	return total
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// auditPages follows next_cursor from path to the end and returns every item.
func auditPages(t *testing.T, s *server, token, path string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	next := ""
	for page := 0; ; page++ {
		p := path
		if next != "" {
			p += sep + "after=" + next
		}
		r := s.do("GET", p, token, nil)
		expect(t, r, 200, "")
		var body struct {
			Items      []map[string]any `json:"items"`
			NextCursor *string          `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatal(err)
		}
		out = append(out, body.Items...)
		if body.NextCursor == nil {
			return out
		}
		next = *body.NextCursor
		if page > 10000 {
			t.Fatal("no end to the pages")
		}
	}
}

// auditNDJSON reads the NDJSON export line by line; each (if set) is called after every line.
func auditNDJSON(t *testing.T, s *server, token, path string, each func(n int)) []map[string]any {
	t.Helper()
	req, _ := http.NewRequest("GET", s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/x-ndjson")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-ndjson" {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("NDJSON: %d %s %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	var out []map[string]any
	count := 0
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v", len(out), err)
		}
		if m["error"] != nil {
			t.Fatalf("the export ended with an error: %v", m)
		}
		if each != nil {
			each(count) // keep nothing: the test measures the heap
			count++
			continue
		}
		out = append(out, m)
		count++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The NDJSON export of thousands of events holds one page at a time: the live heap while it streams
// grows by far less than the export's size.
func TestOrgAuditNDJSONExportInConstantMemory(t *testing.T) {
	// The API alone, without projectors or the search indexer, so that the heap measured is the export's.
	app, env := openApp(t, nil)
	hs := httptest.NewServer(app.API.Handler())
	defer hs.Close()
	s := &server{t: t, base: hs.URL, app: app, env: env, dbURL: env["DATABASE_URL"]}
	owner, ownerID, _ := s.register("big@audit.test", "Big")
	actor := uuid.MustParse(ownerID)
	created, err := app.Commands.CreateOrg(context.Background(), commands.Context{Actor: actor}, "Big", "big")
	if err != nil {
		t.Fatal(err)
	}
	orgID := created.Org.ID
	spaceID := uuid.New()
	// 10,000 notes of 4 KiB, appended straight to the store in batches (the HTTP API is rate limited).
	const notes, batch = 10000, 500
	body := strings.Repeat("audit export ", 4096/13)
	now := time.Now().UTC()
	for i := 0; i < notes; i += batch {
		req := eventstore.AppendRequest{Metadata: eventstore.Metadata{ActorID: &actor}}
		for j := i; j < i+batch; j++ {
			id := uuid.Must(uuid.NewV7())
			req.Streams = append(req.Streams, eventstore.StreamAppend{StreamType: note.StreamType, StreamID: id, TenantID: &orgID,
				Events: []domain.Event{note.Created{NoteID: id, SpaceID: spaceID, Title: fmt.Sprintf("note %d", j), Body: body, CreatedAt: now}}})
		}
		if _, err := app.Store.Append(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	s.waitAuditable(orgID.String())
	var logBytes int64
	if err := s.app.Pool.QueryRow(context.Background(), `SELECT count(*), sum(length(data::text)) FROM events WHERE tenant_id = $1`, orgID).
		Scan(new(int), &logBytes); err != nil {
		t.Fatal(err)
	}
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := live()
	var peak uint64
	lines := 0
	auditNDJSON(t, s, owner, "/api/v1/orgs/"+orgID.String()+"/audit", func(n int) {
		lines = n + 1
		if n%250 == 0 {
			if h := live(); h > peak {
				peak = h
			}
		}
	})
	if lines < notes {
		t.Fatalf("%d lines, want at least %d", lines, notes)
	}
	growth := int64(peak) - int64(base)
	t.Logf("exported %d events (%.1f MiB of payload); live heap grew by at most %.1f MiB while streaming",
		lines, float64(logBytes)/(1<<20), float64(growth)/(1<<20))
	if growth > logBytes/3 { // a buffered answer would hold all of it, several times over
		t.Fatalf("the heap grew by %d bytes streaming %d bytes of events: not constant memory", growth, logBytes)
	}
}

// A healthy log never fails verification while commands append and the sealer of the running server
// seals (every 20 ms): the API and the CLI verify again and again meanwhile.
func TestVerifyWhileWritersAppend(t *testing.T) {
	s := startServerWith(t, map[string]string{"ATLAS_SEAL_INTERVAL": "20ms"})
	auditor, _, _ := s.register("auditor@busy.test", "Auditor")
	if code := s.admin("grant", "auditor@busy.test", "auditor"); code != 0 {
		t.Fatalf("grant exited %d", code)
	}
	waitFor(t, 10*time.Second, "the auditor role", func() bool { return s.do("GET", "/api/v1/audit/verify", auditor, nil).status == 200 })

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan int)
	for w := range 4 {
		go func() {
			n := 0
			defer func() { done <- n }()
			reg, err := s.app.Commands.Register(context.Background(), commands.Context{}, fmt.Sprintf("w%d@busy.test", w), "W", "correct horse battery")
			if err != nil {
				t.Error(err)
				return
			}
			cc := commands.Context{Actor: reg.User.ID}
			for i := 0; ctx.Err() == nil; i++ {
				sp, err := s.app.Commands.CreateSpace(context.Background(), cc, nil, "S", fmt.Sprintf("s%d", i), "private")
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := s.app.Commands.CreateNote(context.Background(), cc, sp.Space.ID, "T", "B"); err != nil {
					t.Error(err)
					return
				}
				n += 2
			}
		}()
	}
	checks := 0
	for ctx.Err() == nil {
		r := s.do("GET", "/api/v1/audit/verify", auditor, nil)
		expect(t, r, 200, "")
		if rep := r.json(t); rep["ok"] != true {
			t.Fatalf("false alarm during appends: %s", r.body)
		}
		checks++
		if checks%5 == 0 {
			var out strings.Builder
			if code := run([]string{"audit", "verify"}, func(k string) string { return s.env[k] }, &out, io.Discard); code != 0 {
				t.Fatalf("atlas audit verify during appends exited %d: %s", code, out.String())
			}
		}
	}
	appended := 0
	for range 4 {
		appended += <-done
	}
	// Once the writers stop, everything gets sealed.
	var rep map[string]any
	waitFor(t, 10*time.Second, "every event sealed", func() bool {
		r := s.do("GET", "/api/v1/audit/verify", auditor, nil)
		rep = r.json(t)
		return r.status == 200 && rep["unsealed_events"].(float64) == 0
	})
	if rep["ok"] != true || rep["checked_seals"].(float64) < 2 {
		t.Fatalf("after the appends: %v", rep)
	}
	t.Logf("%d verifications while %d events were appended; %v seals", checks, appended, rep["checked_seals"])
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/atlas-workspace/atlas/internal/blobtest"
	"github.com/atlas-workspace/atlas/internal/pgtest"
	"github.com/atlas-workspace/atlas/internal/weaviatetest"
)

// TestMain lets the test binary act as the atlas binary, so process-level tests (SIGTERM) need no
// separate build.
func TestMain(m *testing.M) {
	if os.Getenv("ATLAS_TEST_EXEC") == "1" {
		os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
	}
	code := blobtest.Run(m)
	weaviatetest.Shutdown()
	os.Exit(code)
}

type server struct {
	t      *testing.T
	base   string
	dbURL  string
	env    map[string]string
	app    *App
	cancel context.CancelFunc
	done   chan error
}

// openApp wires the app against a fresh database (ATLAS_BENCH_DATABASE_URL's for benchmarks), with
// env's variables over testEnv's; it is closed when the test ends.
func openApp(t testing.TB, env map[string]string) (*App, map[string]string) {
	t.Helper()
	dbURL := pgtest.NewURL(t)
	wv := weaviatetest.Start(t)
	all := map[string]string{"DATABASE_URL": dbURL, "ATLAS_DATA_DIR": t.TempDir(), "ATLAS_LOG_LEVEL": "warn", "ATLAS_CONSISTENCY_WAIT": "2s",
		"WEAVIATE_URL": wv.HTTP, "WEAVIATE_GRPC_URL": wv.GRPC}
	for k, v := range env {
		all[k] = v
	}
	cfg, err := LoadConfig(func(k string) string { return all[k] })
	if err != nil {
		t.Fatal(err)
	}
	app, err := Open(context.Background(), cfg, slog.New(slog.NewJSONHandler(testLogOut(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	return app, all
}

// startServer boots the whole app on a random port against a fresh database.
func startServer(t *testing.T) *server {
	t.Helper()
	return startServerWith(t, nil)
}

// startServerWith is startServer with extra environment variables.
func startServerWith(t *testing.T, extra map[string]string) *server {
	t.Helper()
	app, env := openApp(t, extra)
	dbURL := env["DATABASE_URL"]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{t: t, base: "http://" + ln.Addr().String(), dbURL: dbURL, env: env, app: app, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- app.Serve(ctx, ln) }()
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *server) stop() error {
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(30 * time.Second):
		s.t.Fatal("server did not stop")
		return nil
	}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d %q is not a JSON object: %v", r.status, r.body, err)
	}
	return m
}

func (r resp) errCode(t *testing.T) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// do sends a request; body may be a string (sent as is) or a value (JSON-encoded). headers come in
// name, value pairs.
func (s *server) do(method, path, token string, body any, headers ...string) resp {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	contentType := ""
	if rd != nil {
		contentType = "application/json"
	}
	return s.send(method, path, token, rd, contentType, headers...)
}

// send sends a raw body of contentType ("" for none); headers come in name, value pairs.
func (s *server) send(method, path, token string, body io.Reader, contentType string, headers ...string) resp {
	s.t.Helper()
	req, err := http.NewRequest(method, s.base+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: raw}
}

// racePatches sends n PATCHes of path at once, each with If-Match ifMatch and the body body(i), and
// returns how many got each status (0 for a transport error). It is safe to call from the test
// goroutine only; the requests themselves run in their own goroutines.
func (s *server) racePatches(path, token, ifMatch string, n int, body func(i int) string) map[int]int {
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("PATCH", s.base+path, strings.NewReader(body(i)))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("If-Match", ifMatch)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				statuses <- 0
				return
			}
			res.Body.Close()
			statuses <- res.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	got := map[int]int{}
	for st := range statuses {
		got[st]++
	}
	return got
}

func expect(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d (%s), want %d", r.status, r.body, status)
	}
	if code != "" {
		if got := r.errCode(t); got != code {
			t.Fatalf("error code %q (%s), want %q", got, r.body, code)
		}
	}
}

func (s *server) register(email, name string) (token, userID, personal string) {
	s.t.Helper()
	r := s.do("POST", "/api/v1/auth/register", "", map[string]string{"email": email, "password": "correct horse battery", "name": name})
	expect(s.t, r, 201, "")
	m := r.json(s.t)
	u := m["user"].(map[string]any)
	return m["token"].(string), u["id"].(string), u["personal_space_id"].(string)
}

func dump(t *testing.T, pool *pgxpool.Pool, table string) string {
	t.Helper()
	return dumpOrdered(t, pool, table, "id")
}

// dumpOrdered returns every row of table as JSON text, one per line, in the given column order.
func dumpOrdered(t *testing.T, pool *pgxpool.Pool, table, order string) string {
	t.Helper()
	var out string
	err := pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(to_jsonb(t)::text, E'\n' ORDER BY `+order+`), '') FROM `+table+` t`).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The end-to-end flow over HTTP.
func TestEndToEnd(t *testing.T) {
	s := startServer(t)

	token, userID, personal := s.register("Ada@Example.com", "Ada Lovelace")
	r := s.do("POST", "/api/v1/auth/login", "", map[string]string{"email": "ada@example.COM", "password": "correct horse battery"})
	expect(t, r, 200, "")
	if m := r.json(t); m["token"] == token || m["user"].(map[string]any)["id"] != userID {
		t.Fatalf("login = %s", r.body)
	}

	// Create a space, then read it back at once with the consistency token: no sleep, no 404.
	r = s.do("POST", "/api/v1/spaces", token, map[string]string{"name": "Research", "slug": "research"})
	expect(t, r, 201, "")
	created := r.json(t)
	id, pos := created["id"].(string), created["position"].(string)
	if r.header.Get("X-Consistency-Token") != pos || pos == "" || r.header.Get("ETag") != `"1"` {
		t.Fatalf("create headers %v, body position %q", r.header, pos)
	}
	r = s.do("GET", "/api/v1/spaces/"+id, token, nil, "X-Consistency-Token", pos)
	expect(t, r, 200, "")
	if got := r.json(t); got["name"] != "Research" || got["slug"] != "research" || got["visibility"] != "private" || got["version"] != 1.0 {
		t.Fatalf("read back %s", r.body)
	}
	r = s.do("GET", "/api/v1/spaces?consistent_with="+pos, token, nil)
	expect(t, r, 200, "")
	if items := r.json(t)["items"].([]any); len(items) != 2 || items[0].(map[string]any)["id"] != personal {
		t.Fatalf("list = %s, want the personal space then research", r.body)
	}

	// PATCH with the current version works; with a stale one it is a version conflict.
	r = s.do("PATCH", "/api/v1/spaces/"+id, token, map[string]string{"name": "Lab", "slug": "lab", "visibility": "public"}, "If-Match", `"1"`)
	expect(t, r, 200, "")
	if got := r.json(t); got["version"] != 4.0 || got["slug"] != "lab" || r.header.Get("ETag") != `"4"` {
		t.Fatalf("patch = %s", r.body)
	}
	r = s.do("PATCH", "/api/v1/spaces/"+id, token, map[string]string{"name": "Stale"}, "If-Match", `"1"`)
	expect(t, r, 409, "version_conflict")

	// The old slug is free again; the new one is taken.
	expect(t, s.do("POST", "/api/v1/spaces", token, map[string]string{"name": "R", "slug": "research"}), 201, "")
	expect(t, s.do("POST", "/api/v1/spaces", token, map[string]string{"name": "L", "slug": "lab"}), 409, "conflict")

	// History lists the events, oldest first, with their metadata.
	r = s.do("GET", "/api/v1/spaces/"+id+"/history", token, nil, "X-Correlation-ID", "ignored-for-queries")
	expect(t, r, 200, "")
	items := r.json(t)["items"].([]any)
	var types []string
	for _, it := range items {
		m := it.(map[string]any)
		types = append(types, m["type"].(string))
		if m["actor_id"] != userID || m["correlation_id"] == "" || m["causation_id"] == "" {
			t.Fatalf("history item without metadata: %v", m)
		}
	}
	if strings.Join(types, ",") != "space.created.v2,space.renamed.v1,space.slug_changed.v1,space.visibility_changed.v1" {
		t.Fatalf("history types %v", types)
	}

	// /me answers from the read model.
	r = s.do("GET", "/api/v1/me", token, nil, "X-Consistency-Token", pos)
	expect(t, r, 200, "")
	if me := r.json(t); me["email"] != "ada@example.com" || me["name"] != "Ada Lovelace" || me["personal_space_id"] != personal {
		t.Fatalf("me = %s", r.body)
	}

	// A rebuild of each read model, run as the CLI does while the server keeps serving, leaves
	// byte-identical rows.
	r = s.do("POST", "/api/v1/orgs", token, map[string]string{"name": "Analytical Engines", "slug": "engines"})
	expect(t, r, 201, "")
	engines := r.json(t)["id"].(string)
	expect(t, s.do("POST", "/api/v1/orgs/"+engines+"/invitations", token, map[string]string{"email": "charles@example.com"}), 201, "")
	r = s.do("POST", "/api/v1/spaces", token, map[string]any{"org_id": engines, "name": "Notes", "slug": "notes", "visibility": "public"})
	expect(t, r, 201, "")
	_, babbageID, _ := s.register("babbage@example.com", "Charles Babbage")
	expect(t, s.do("POST", "/api/v1/spaces/"+id+"/members", token, map[string]any{"user_id": babbageID, "role": "editor"}), 201, "")
	r = s.do("POST", "/api/v1/spaces/"+id+"/notes", token, map[string]string{"title": "Rebuild", "body": "one"})
	expect(t, r, 201, "")
	expect(t, s.do("PATCH", "/api/v1/notes/"+r.json(t)["id"].(string), token, map[string]string{"body": "two"}), 200, "")
	r = s.do("POST", "/api/v1/spaces", token, map[string]string{"name": "Doomed", "slug": "doomed"})
	expect(t, r, 201, "")
	doomed := r.json(t)["id"].(string)
	expect(t, s.do("POST", "/api/v1/spaces/"+doomed+"/notes", token, map[string]string{"title": "Doomed", "body": ""}), 201, "")
	r = s.do("POST", "/api/v1/spaces/"+doomed+"/folders", token, map[string]string{"name": "Doomed folder"})
	expect(t, r, 201, "")
	expect(t, s.upload(token, doomed, "doomed.txt", []byte("doomed"), "folder_id", r.json(t)["id"].(string)), 201, "")
	expect(t, s.do("DELETE", "/api/v1/spaces/"+doomed, token, nil), 200, "")
	r = s.do("POST", "/api/v1/spaces/"+id+"/folders", token, map[string]string{"name": "Kept"})
	expect(t, r, 201, "")
	kept := r.json(t)["id"].(string)
	r = s.upload(token, id, "kept.txt", []byte("kept"), "folder_id", kept, "visibility", "private")
	expect(t, r, 201, "")
	body, ct := multipartBody(part{name: "file", filename: "kept.txt", body: strings.NewReader("kept v2")})
	expect(t, s.send("PUT", "/api/v1/files/"+r.json(t)["id"].(string)+"/content", token, body, ct), 200, "")
	r = s.do("POST", "/api/v1/me/api-keys", token, map[string]string{"name": "rebuild check"})
	expect(t, r, 201, "")
	keyPos := r.json(t)["position"].(string)
	for _, path := range []string{"/api/v1/spaces", "/api/v1/me/api-keys", "/api/v1/me", "/api/v1/orgs", "/api/v1/spaces/" + id + "/notes", "/api/v1/spaces/" + id + "/files"} {
		expect(t, s.do("GET", path, token, nil, "X-Consistency-Token", keyPos), 200, "") // every read model is there
	}
	order := map[string]string{"users": "id", "spaces": "id", "permissions": "principal_id, permission, resource_id", "api_keys": "id",
		"orgs": "id", "org_members": "org_id, user_id", "org_invitations": "id",
		"perm_org_members": "org_id, user_id", "perm_org_spaces": "space_id", "space_members": "space_id, user_id",
		"perm_space_members": "space_id, user_id", "notes": "id", "note_revisions": "note_id, revision", "note_space_tombstones": "space_id",
		"folders": "id", "files": "id", "file_versions": "file_id, version", "file_tombstones": "id"}
	before := map[string]string{}
	for table, o := range order {
		before[table] = dumpOrdered(t, s.app.ProjectorPool, table, o)
	}
	for _, name := range []string{"users", "spaces", "permissions", "api_keys", "orgs", "notes", "files"} {
		var out, errOut bytes.Buffer
		if code := run([]string{"projections", "rebuild", name, "--quiet"}, func(k string) string { return s.env[k] }, &out, &errOut); code != 0 {
			t.Fatalf("rebuild %s exited %d: %s %s", name, code, out.String(), errOut.String())
		}
		if !strings.Contains(out.String(), "rebuilt "+name) {
			t.Fatalf("rebuild output: %s", out.String())
		}
	}
	for table, want := range before {
		if got := dumpOrdered(t, s.app.ProjectorPool, table, order[table]); got != want {
			t.Fatalf("%s after rebuild:\n%s\nbefore:\n%s", table, got, want)
		}
	}
	var out bytes.Buffer
	if code := run([]string{"projections", "status"}, func(k string) string { return s.env[k] }, &out, io.Discard); code != 0 ||
		!strings.Contains(out.String(), "spaces") || !strings.Contains(out.String(), "live") {
		t.Fatalf("status exited %d: %s", code, out.String())
	}

	// Logout revokes the token.
	expect(t, s.do("POST", "/api/v1/auth/logout", token, nil), 204, "")
	expect(t, s.do("GET", "/api/v1/me", token, nil), 401, "unauthenticated")
}

func TestIdentityErrors(t *testing.T) {
	s := startServer(t)
	s.register("grace@example.com", "Grace")
	reg := func(body any) resp { return s.do("POST", "/api/v1/auth/register", "", body) }
	expect(t, reg(map[string]string{"email": "GRACE@example.com", "password": "another long password", "name": "G"}), 409, "conflict")
	r := reg(map[string]string{"email": "new@example.com", "password": "short", "name": "N"})
	expect(t, r, 422, "validation_failed")
	if d := r.json(t)["error"].(map[string]any)["details"].(map[string]any); d["password"] == nil {
		t.Fatalf("details %v do not name password", d)
	}
	expect(t, reg(`{"email": "x@example.com",`), 400, "invalid_request")
	expect(t, reg(`{"email": "x@example.com", "password": "long enough password", "name": "X", "admin": true}`), 400, "invalid_request")
	expect(t, reg(`{"email": "x@example.com", "password": "long enough password", "name": "X"} {}`), 400, "invalid_request")
	expect(t, reg(`["not", "an", "object"]`), 400, "invalid_request")
	expect(t, reg(`{"email": "`+strings.Repeat("a", 2<<20)+`"}`), 413, "too_large")

	wrongPassword := s.do("POST", "/api/v1/auth/login", "", map[string]string{"email": "grace@example.com", "password": "not her password"})
	unknownEmail := s.do("POST", "/api/v1/auth/login", "", map[string]string{"email": "nobody@example.com", "password": "not her password"})
	expect(t, wrongPassword, 401, "unauthenticated")
	expect(t, unknownEmail, 401, "unauthenticated")
	if string(wrongPassword.body) != string(unknownEmail.body) {
		t.Fatalf("wrong password %s and unknown email %s answer differently", wrongPassword.body, unknownEmail.body)
	}
	expect(t, s.do("GET", "/api/v1/me", "", nil), 401, "unauthenticated")
	expect(t, s.do("GET", "/api/v1/me", "atls_forged", nil), 401, "unauthenticated")
	r = s.do("POST", "/api/v1/auth/login", "", "email=a")
	expect(t, r, 400, "invalid_request")
	req, _ := http.NewRequest("POST", s.base+"/api/v1/auth/login", strings.NewReader("email=a"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 415 {
		t.Fatalf("form body: %d, want 415", res.StatusCode)
	}
	expect(t, s.do("GET", "/api/v1/nope", "", nil), 404, "not_found")
}

func TestSpacesAuthorizationAndBadInput(t *testing.T) {
	s := startServer(t)
	owner, _, personal := s.register("owner@example.com", "Owner")
	other, _, _ := s.register("other@example.com", "Other")

	r := s.do("POST", "/api/v1/spaces", owner, map[string]string{"name": "Private", "slug": "private"})
	expect(t, r, 201, "")
	priv := r.json(t)
	privID := priv["id"].(string)
	r = s.do("POST", "/api/v1/spaces", owner, map[string]string{"name": "Open", "slug": "open", "visibility": "public"})
	expect(t, r, 201, "")
	pub := r.json(t)
	pubID, pos := pub["id"].(string), pub["position"].(string)

	// Another user cannot see the private space at all, and cannot change the public one.
	for _, path := range []string{"/api/v1/spaces/" + privID, "/api/v1/spaces/" + privID + "/history", "/api/v1/spaces/" + personal} {
		expect(t, s.do("GET", path, other, nil, "X-Consistency-Token", pos), 404, "not_found")
	}
	expect(t, s.do("PATCH", "/api/v1/spaces/"+privID, other, map[string]string{"name": "x"}), 404, "not_found")
	expect(t, s.do("DELETE", "/api/v1/spaces/"+privID, other, nil), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/spaces/"+pubID, other, nil, "X-Consistency-Token", pos), 200, "")
	expect(t, s.do("PATCH", "/api/v1/spaces/"+pubID, other, map[string]string{"name": "x"}), 403, "forbidden")
	r = s.do("GET", "/api/v1/spaces", other, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 1 {
		t.Fatalf("other lists %s, want only their personal space", r.body)
	}
	// Visibility changes reach the permission projection: public, readable by others; private again, not.
	r = s.do("PATCH", "/api/v1/spaces/"+privID, owner, map[string]string{"visibility": "public"})
	expect(t, r, 200, "")
	expect(t, s.do("GET", "/api/v1/spaces/"+privID, other, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 200, "")
	r = s.do("PATCH", "/api/v1/spaces/"+privID, owner, map[string]string{"visibility": "private"})
	expect(t, r, 200, "")
	expect(t, s.do("GET", "/api/v1/spaces/"+privID, other, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 404, "not_found")

	// Slugs are unique per owner, not globally.
	expect(t, s.do("POST", "/api/v1/spaces", other, map[string]string{"name": "Mine", "slug": "private"}), 201, "")

	// Bad input changes nothing.
	expect(t, s.do("GET", "/api/v1/spaces/not-a-uuid", owner, nil), 400, "invalid_request")
	expect(t, s.do("GET", "/api/v1/spaces/"+privID, owner, nil, "X-Consistency-Token", "garbage"), 400, "invalid_request")
	expect(t, s.do("GET", "/api/v1/spaces?limit=0", owner, nil), 422, "validation_failed")
	expect(t, s.do("GET", "/api/v1/spaces?limit=201", owner, nil), 422, "validation_failed")
	expect(t, s.do("GET", "/api/v1/spaces?cursor=zzz", owner, nil), 400, "invalid_request")
	expect(t, s.do("GET", "/api/v1/spaces/"+privID+"?as_of=yesterday", owner, nil), 422, "validation_failed")
	expect(t, s.do("PATCH", "/api/v1/spaces/"+privID, owner, map[string]string{"slug": "Bad Slug"}), 422, "validation_failed")
	expect(t, s.do("PATCH", "/api/v1/spaces/"+privID, owner, map[string]string{"name": "x"}, "If-Match", "soon"), 400, "invalid_request")
	expect(t, s.do("PATCH", "/api/v1/spaces/"+privID, owner, map[string]string{"name": "x"}, "If-Match", `W/"1"`), 400, "invalid_request")
	expect(t, s.do("PATCH", "/api/v1/spaces/"+personal, owner, map[string]string{"slug": "mine"}), 422, "validation_failed")
	expect(t, s.do("DELETE", "/api/v1/spaces/"+personal, owner, nil), 409, "conflict")
	expect(t, s.do("POST", "/api/v1/spaces", owner, map[string]any{"name": "O", "slug": "o", "org_id": "0196a000-0000-7000-8000-000000000000"}), 404, "not_found")
	r = s.do("GET", "/api/v1/spaces/"+privID+"/history", owner, nil)
	if n := len(r.json(t)["items"].([]any)); n != 3 {
		t.Fatalf("bad input appended events: history has %d, want 3 (created, public, private)", n)
	}

	// A consistency token the read models never reach within the wait answers 503 not_ready.
	far := "99999999999.1"
	expect(t, s.do("GET", "/api/v1/spaces/"+privID, owner, nil, "X-Consistency-Token", far), 503, "not_ready")

	// as_of rebuilds the space as it was.
	before := time.Now().UTC()
	time.Sleep(2 * time.Millisecond) // recorded times must differ from before; not synchronisation
	expect(t, s.do("PATCH", "/api/v1/spaces/"+privID, owner, map[string]string{"name": "Renamed"}), 200, "")
	r = s.do("GET", "/api/v1/spaces/"+privID+"?as_of="+before.Format(time.RFC3339Nano), owner, nil)
	expect(t, r, 200, "")
	if got := r.json(t); got["name"] != "Private" || got["version"] != 3.0 {
		t.Fatalf("as_of = %s", r.body)
	}
	expect(t, s.do("GET", "/api/v1/spaces/"+privID+"?as_of=2000-01-01T00:00:00Z", owner, nil), 404, "not_found")

	// Delete: the space is gone for reads and for further commands; its slug is free again.
	r = s.do("DELETE", "/api/v1/spaces/"+privID, owner, nil)
	expect(t, r, 200, "")
	delPos := r.json(t)["position"].(string)
	expect(t, s.do("GET", "/api/v1/spaces/"+privID, owner, nil, "X-Consistency-Token", delPos), 404, "not_found")
	expect(t, s.do("PATCH", "/api/v1/spaces/"+privID, owner, map[string]string{"name": "x"}), 404, "not_found")
	expect(t, s.do("POST", "/api/v1/spaces", owner, map[string]string{"name": "Again", "slug": "private"}), 201, "")
}

func TestIdempotencyKey(t *testing.T) {
	s := startServer(t)
	token, _, _ := s.register("idem@example.com", "Idem")
	body := map[string]string{"name": "Once", "slug": "once"}
	first := s.do("POST", "/api/v1/spaces", token, body, "Idempotency-Key", "k-1")
	expect(t, first, 201, "")
	again := s.do("POST", "/api/v1/spaces", token, body, "Idempotency-Key", "k-1")
	expect(t, again, 201, "")
	if first.json(t)["id"] != again.json(t)["id"] || first.json(t)["position"] != again.json(t)["position"] {
		t.Fatalf("repeat returned %s, first %s", again.body, first.body)
	}
	expect(t, s.do("POST", "/api/v1/spaces", token, map[string]string{"name": "Other", "slug": "other"}, "Idempotency-Key", "k-1"), 409, "conflict")

	// Concurrent repeats of a PATCH append once.
	id := first.json(t)["id"].(string)
	var wg sync.WaitGroup
	results := make([]resp, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.do("PATCH", "/api/v1/spaces/"+id, token, map[string]string{"name": "Twice?"}, "Idempotency-Key", "k-2")
		}()
	}
	wg.Wait()
	for _, r := range results {
		expect(t, r, 200, "")
		if r.json(t)["version"] != 2.0 {
			t.Fatalf("concurrent repeat answered %s", r.body)
		}
	}
	r := s.do("GET", "/api/v1/spaces/"+id+"/history", token, nil)
	if n := len(r.json(t)["items"].([]any)); n != 2 {
		t.Fatalf("history has %d events, want 2", n)
	}
}

// Concurrent PATCHes without If-Match all succeed: another writer's win is not the caller's conflict.
func TestConcurrentUnconditionalPatchesAllSucceed(t *testing.T) {
	s := startServer(t)
	token, _, _ := s.register("busy@example.com", "Busy")
	r := s.do("POST", "/api/v1/spaces", token, map[string]string{"name": "Busy", "slug": "busy"})
	expect(t, r, 201, "")
	id := r.json(t)["id"].(string)
	const n = 3
	var wg sync.WaitGroup
	results := make([]resp, n)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.do("PATCH", "/api/v1/spaces/"+id, token, map[string]string{"name": fmt.Sprintf("Busy %d", i)})
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.status != 200 {
			t.Errorf("PATCH %d: %d %s", i, r.status, r.body)
		}
	}
	r = s.do("GET", "/api/v1/spaces/"+id+"/history", token, nil)
	if got := len(r.json(t)["items"].([]any)); got != n+1 {
		t.Fatalf("history has %d events, want %d", got, n+1)
	}
}

func TestHealthMetricsAndOpenAPI(t *testing.T) {
	s := startServer(t)
	for _, path := range []string{"/api/health", "/api/health/db", "/api/health/blob"} {
		r := s.do("GET", path, "", nil)
		expect(t, r, 200, "")
		if r.json(t)["status"] != "ok" {
			t.Fatalf("%s = %s", path, r.body)
		}
	}
	expect(t, s.do("GET", "/api/health/nope", "", nil), 404, "not_found")
	token, _, _ := s.register("m@example.com", "M")
	expect(t, s.do("POST", "/api/v1/spaces", token, map[string]string{"name": "M", "slug": "m"}), 201, "")
	r := s.do("GET", "/metrics", "", nil)
	for _, want := range []string{"atlas_projector_lag_events{projector=\"spaces\"}", "atlas_projector_lag_seconds", "atlas_events_appended_total 3",
		"atlas_append_duration_seconds_count", "atlas_command_duration_seconds_count{command=\"POST /api/v1/spaces\",outcome=\"ok\"} 1",
		"atlas_http_request_duration_seconds"} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	r = s.do("GET", "/api/v1/openapi.json", "", nil)
	expect(t, r, 200, "")
	if r.json(t)["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %.100s", r.body)
	}
	if rid := s.do("GET", "/api/health", "", nil, "X-Request-ID", "abc-123").header.Get("X-Request-ID"); rid != "abc-123" {
		t.Fatalf("request id %q, want the caller's", rid)
	}
}

// SIGTERM: the process stops accepting, lets an in-flight request finish, and exits 0.
func TestSIGTERMFinishesInFlightRequestsAndExitsZero(t *testing.T) {
	dbURL := pgtest.NewURL(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(os.Args[0], "serve")
	cmd.Env = append(os.Environ(), "ATLAS_TEST_EXEC=1", "DATABASE_URL="+dbURL, "ATLAS_ADDR="+addr,
		"ATLAS_DATA_DIR="+t.TempDir(), "ATLAS_CONSISTENCY_WAIT=1500ms")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	s := &server{t: t, base: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(s.base + "/api/health")
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	token, _, personal := s.register("term@example.com", "Term")
	// An in-flight request: it waits the full consistency wait for a position never reached.
	inflight := make(chan resp, 1)
	started := time.Now()
	go func() {
		inflight <- s.do("GET", "/api/v1/spaces/"+personal, token, nil, "X-Consistency-Token", "99999999999.1")
	}()
	// Signal only once the server is handling it (the metrics request itself is the other one).
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(string(s.do("GET", "/metrics", "", nil).body), "atlas_http_requests_in_flight 2") {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the server")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-inflight
	if r.status != 503 || time.Since(started) < time.Second {
		t.Fatalf("in-flight request got %d after %s, want its full 503 not_ready", r.status, time.Since(started))
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Fatalf("logs lack the orderly stop: %s", logs.String())
	}
	if _, err := http.Get(s.base + "/api/health"); err == nil {
		t.Fatal("still accepting after exit")
	}
}

func TestConfigRejectsBadValues(t *testing.T) {
	for _, tc := range []map[string]string{
		{"ATLAS_PROJECTOR_BATCH": "0"},
		{"ATLAS_SESSION_TTL": "forever"},
		{"ATLAS_LOG_LEVEL": "loud"},
		{"DATABASE_URL": "mysql://x"},
	} {
		if _, err := LoadConfig(func(k string) string { return tc[k] }); err == nil {
			t.Errorf("LoadConfig(%v) accepted it", tc)
		}
	}
	c, err := LoadConfig(func(string) string { return "" })
	if err != nil || c.Addr != ":8080" || !strings.HasSuffix(c.DataDir, "data") || !strings.HasPrefix(c.BlobURL, "file://") {
		t.Fatalf("defaults = %+v, %v", c, err)
	}
	var out bytes.Buffer
	if code := run([]string{"bogus"}, func(string) string { return "" }, &out, &out); code != 2 {
		t.Fatalf("unknown command exited %d", code)
	}
	_ = fmt.Sprint
}

// testLogOut is where test apps log: nowhere, unless ATLAS_TEST_LOG=1 (then stderr).
func testLogOut() io.Writer {
	if os.Getenv("ATLAS_TEST_LOG") == "1" {
		return os.Stderr
	}
	return io.Discard
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/internal/pgtest"
)

// A backup and a restore, as docs/operations.md describes them: pg_dump of the database and a copy of
// the bucket; pg_restore into a new database; `atlas recover` checks transaction-id continuity,
// verifies the log, rebuilds every read model under new consumer groups (no restored checkpoint is
// used) and the search index from the log (here the index was lost too); the restored service then
// answers as the original did.
func TestBackupAndRestore(t *testing.T) {
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (PostgreSQL's client tools): %v", tool, err)
		}
	}
	s := startServer(t)
	ctx := context.Background()
	token, _, _ := s.register("backup@test.test", "Backed Up")
	r := s.do("POST", "/api/v1/spaces", token, map[string]string{"name": "Archive", "slug": "archive", "description": "kept safe"})
	expect(t, r, 201, "")
	spaceID := r.json(t)["id"].(string)
	r = s.do("POST", "/api/v1/spaces/"+spaceID+"/notes", token, map[string]string{"title": "Restore drill", "body": "the quokka survives every restore"})
	expect(t, r, 201, "")
	noteID := r.json(t)["id"].(string)
	content := []byte("bytes that must come back\n")
	r = s.upload(token, spaceID, "drill.txt", content)
	expect(t, r, 201, "")
	fileID := r.json(t)["id"].(string)
	pos := r.json(t)["position"].(string)
	waitFor(t, 30*time.Second, "the note is searchable", func() bool {
		res := s.do("GET", "/api/v1/search?q=quokka&mode=keyword", token, nil, "X-Consistency-Token", pos)
		return res.status == 200 && strings.Contains(string(res.body), noteID)
	})
	// The file's index state is part of what is compared: indexed before, as after the restore's reindexing.
	waitFor(t, 30*time.Second, "the file is indexed", func() bool {
		res := s.do("GET", "/api/v1/files/"+fileID, token, nil, "X-Consistency-Token", pos)
		return res.status == 200 && strings.Contains(string(res.body), `"index_state":{"state":"indexed"}`)
	})
	before := map[string]string{}
	for _, p := range []string{"/api/v1/spaces/" + spaceID, "/api/v1/notes/" + noteID, "/api/v1/files/" + fileID, "/api/v1/spaces/" + spaceID + "/notes"} {
		res := s.do("GET", p, token, nil, "X-Consistency-Token", pos)
		expect(t, res, 200, "")
		before[p] = normalise(string(res.body))
	}

	// Backup: the database, then the bucket.
	dir := t.TempDir()
	dump := filepath.Join(dir, "atlas.dump")
	if out, err := exec.Command("pg_dump", "--format=custom", "--file="+dump, s.dbURL).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	newData := t.TempDir()
	if out, err := exec.Command("cp", "-a", filepath.Join(s.env["ATLAS_DATA_DIR"], "blobs"), newData).CombinedOutput(); err != nil {
		t.Fatalf("copy the bucket: %v\n%s", err, out)
	}
	// The search index is lost as well.
	if err := s.app.Indexer.Index.Drop(ctx); err != nil {
		t.Fatal(err)
	}

	// Restore into a new database.
	restored := emptyDatabase(t)
	if out, err := exec.Command("pg_restore", "--exit-on-error", "--dbname="+restored, dump).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}
	env := map[string]string{}
	for k, v := range s.env {
		env[k] = v
	}
	env["DATABASE_URL"], env["ATLAS_DATA_DIR"] = restored, newData
	var restoredGroups []string
	conn := superuser(t, restored)
	rows, err := conn.Query(ctx, `SELECT consumer_group FROM projection_offsets`)
	if err != nil {
		t.Fatal(err)
	}
	if restoredGroups, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || len(restoredGroups) == 0 {
		t.Fatalf("restored checkpoints %v (%v)", restoredGroups, err)
	}

	var out, errOut bytes.Buffer
	if code := run([]string{"recover", "--quiet"}, func(k string) string { return env[k] }, &out, &errOut); code != 0 {
		t.Fatalf("recover exited %d:\n%s\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"transaction ids: next", "the restored log is intact", "rebuilt every read model", "reindexed"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("recover output lacks %q:\n%s", want, out.String())
		}
	}
	// Every blue/green projector runs under a new group now; the search projector, rebuilt in place,
	// started its own again from the beginning of the log.
	rows, err = conn.Query(ctx, `SELECT consumer_group FROM projection_offsets WHERE consumer_group = ANY ($1)`, restoredGroups)
	if err != nil {
		t.Fatal(err)
	}
	if left, err := pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || len(left) != 1 || !strings.HasPrefix(left[0], "search_") {
		t.Fatalf("restored checkpoints still in use: %v (%v)", left, err)
	}

	// The restored service answers as the original did.
	next := startServerWith(t, env)
	r = next.do("POST", "/api/v1/auth/login", "", map[string]string{"email": "backup@test.test", "password": "correct horse battery"})
	expect(t, r, 200, "")
	for p, want := range before {
		res := next.do("GET", p, token, nil)
		expect(t, res, 200, "")
		if got := normalise(string(res.body)); got != want {
			t.Fatalf("%s after the restore:\n%s\nbefore:\n%s", p, got, want)
		}
	}
	res := next.do("GET", "/api/v1/files/"+fileID+"/content", token, nil)
	expect(t, res, 200, "")
	if string(res.body) != string(content) {
		t.Fatalf("file content after the restore: %q", res.body)
	}
	res = next.do("GET", "/api/v1/search?q=quokka&mode=keyword", token, nil)
	if res.status != 200 || !strings.Contains(string(res.body), noteID) || strings.Contains(string(res.body), `"degraded":true`) {
		t.Fatalf("search after the restore: %d %s", res.status, res.body)
	}
	// And it takes new writes that its projectors see.
	r = next.do("POST", "/api/v1/spaces/"+spaceID+"/notes", token, map[string]string{"title": "After", "body": "written after the restore"})
	expect(t, r, 201, "")
	expect(t, next.do("GET", "/api/v1/notes/"+r.json(t)["id"].(string), token, nil, "X-Consistency-Token", r.json(t)["position"].(string)), 200, "")
}

// recover refuses a database whose cluster would give new transactions ids below the restored events'
// (a restore into another PostgreSQL cluster), and says how to fix it.
func TestRecoverRefusesBrokenTransactionIDContinuity(t *testing.T) {
	app, env := openApp(t, nil)
	conn := superuser(t, env["DATABASE_URL"])
	ctx := context.Background()
	// An event as if restored from a cluster far ahead of this one (the trigger that forbids writing
	// the log directly is off for this one statement).
	for _, sql := range []string{
		`ALTER TABLE events DISABLE TRIGGER USER`,
		`INSERT INTO events (transaction_id, stream_type, stream_id, stream_version, event_id, event_type, schema_version, data, metadata, recorded_at, prev_hash, hash)
		 VALUES ('90000000000'::xid8, 'probe', gen_random_uuid(), 1, gen_random_uuid(), 'probe.made', 1, '{}', '{}', now(), '\x00', '\x00')`,
		`ALTER TABLE events ENABLE TRIGGER USER`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	app.Close()
	var stderr bytes.Buffer
	code := run([]string{"recover", "--quiet"}, func(k string) string { return env[k] }, io.Discard, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "pg_resetwal -e 20 -x ") {
		t.Fatalf("recover exited %d: %s", code, stderr.String())
	}
}

// normalise drops fields that differ between two servers answering the same state: none are expected,
// but the request id header is not in the body; bodies compare as they are.
func normalise(body string) string { return strings.TrimSpace(body) }

// emptyDatabase creates an empty database (not migrated) and returns its URL; dropped when the test ends.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "atlas_restore_" + hex.EncodeToString(b)
	u, err := url.Parse(pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	admin := superuser(t, u.String())
	if _, err := admin.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), u.String())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	u.Path = "/" + name
	return u.String()
}

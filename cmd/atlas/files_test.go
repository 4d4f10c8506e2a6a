package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// part is one multipart part: a field, or the file when filename is set.
type part struct {
	name, filename string
	body           io.Reader
}

// multipartBody streams parts as a multipart/form-data body (never whole in memory).
func multipartBody(parts ...part) (io.Reader, string) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for _, p := range parts {
			var w io.Writer
			var err error
			if p.filename != "" || p.name == "file" {
				w, err = mw.CreateFormFile(p.name, p.filename)
			} else {
				w, err = mw.CreateFormField(p.name)
			}
			if err == nil {
				_, err = io.Copy(w, p.body)
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	return pr, mw.FormDataContentType()
}

// upload sends content as a file named name, with extra fields (name, value pairs).
func (s *server) upload(token, spaceID, name string, content []byte, fields ...string) resp {
	s.t.Helper()
	var parts []part
	for i := 0; i+1 < len(fields); i += 2 {
		parts = append(parts, part{name: fields[i], body: strings.NewReader(fields[i+1])})
	}
	parts = append(parts, part{name: "file", filename: name, body: bytes.NewReader(content)})
	body, ct := multipartBody(parts...)
	return s.send("POST", "/api/v1/spaces/"+spaceID+"/files", token, body, ct)
}

// blobCount counts the stored objects under the file:// bucket of the server's data directory.
func blobCount(t *testing.T, dataDir string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "blobs", "blobs"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".attrs") && !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds, failing the test after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestFilesUploadDownloadVersionsAndRanges(t *testing.T) {
	s := startServer(t)
	token, _, personal := s.register("files@example.com", "Files")
	r := s.do("POST", "/api/v1/spaces/"+personal+"/folders", token, map[string]string{"name": "Docs"})
	expect(t, r, 201, "")
	docs := r.json(t)["id"].(string)

	hello := []byte("hello, world\n")
	r = s.upload(token, personal, "hello.txt", hello, "folder_id", docs)
	expect(t, r, 201, "")
	f := r.json(t)
	id := f["id"].(string)
	if f["name"] != "hello.txt" || f["size"] != float64(len(hello)) || f["sha256"] != sha(hello) || f["folder_id"] != docs ||
		f["visibility"] != "space" || !strings.HasPrefix(f["content_type"].(string), "text/plain") || f["current_version"] != 1.0 {
		t.Fatalf("upload: %s", r.body)
	}
	pos := f["position"].(string)

	r = s.do("GET", "/api/v1/files/"+id, token, nil, "X-Consistency-Token", pos)
	expect(t, r, 200, "")
	r = s.do("GET", "/api/v1/files/"+id+"/content", token, nil)
	expect(t, r, 200, "")
	etag := `"` + sha(hello) + `"`
	if !bytes.Equal(r.body, hello) || r.header.Get("ETag") != etag || r.header.Get("Content-Length") != fmt.Sprint(len(hello)) ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") || r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("download: %q %v", r.body, r.header)
	}
	expect(t, s.do("GET", "/api/v1/files/"+id+"/content", token, nil, "If-None-Match", etag), 304, "")
	r = s.do("HEAD", "/api/v1/files/"+id+"/content", token, nil)
	if r.status != 200 || len(r.body) != 0 || r.header.Get("Content-Length") != fmt.Sprint(len(hello)) || r.header.Get("ETag") != etag {
		t.Fatalf("HEAD: %d %q %v", r.status, r.body, r.header)
	}
	for _, tc := range []struct {
		rng, want, contentRange string
		status                  int
	}{
		{"bytes=0-4", "hello", "bytes 0-4/13", 206},
		{"bytes=7-", "world\n", "bytes 7-12/13", 206},
		{"bytes=-6", "world\n", "bytes 7-12/13", 206},
		{"bytes=7-1000", "world\n", "bytes 7-12/13", 206},
		{"bytes=0-1,3-4", string(hello), "", 200},
		{"bytes=100-200", "", "bytes */13", 416},
	} {
		r = s.do("GET", "/api/v1/files/"+id+"/content", token, nil, "Range", tc.rng)
		if r.status != tc.status || (tc.status != 416 && string(r.body) != tc.want) || r.header.Get("Content-Range") != tc.contentRange {
			t.Errorf("Range %s: %d %q %q", tc.rng, r.status, r.body, r.header.Get("Content-Range"))
		}
	}
	r = s.do("GET", "/api/v1/files/"+id+"/content", token, nil, "Range", "bytes=0-4", "If-Range", `"stale"`)
	if r.status != 200 || !bytes.Equal(r.body, hello) {
		t.Errorf("If-Range with a stale validator: %d %q", r.status, r.body)
	}

	// A new version; both stay downloadable.
	v2 := []byte("# Hello\n\nversion two\n")
	body, ct := multipartBody(part{name: "file", filename: "hello.md", body: bytes.NewReader(v2)})
	r = s.send("PUT", "/api/v1/files/"+id+"/content", token, body, ct, "If-Match", `"1"`)
	expect(t, r, 200, "")
	if got := r.json(t); got["current_version"] != 2.0 || got["sha256"] != sha(v2) || got["name"] != "hello.txt" {
		t.Fatalf("new version: %s", r.body)
	}
	pos = r.json(t)["position"].(string)
	r = s.do("GET", "/api/v1/files/"+id+"/versions", token, nil, "X-Consistency-Token", pos)
	expect(t, r, 200, "")
	if vs := r.json(t)["items"].([]any); len(vs) != 2 || vs[0].(map[string]any)["sha256"] != sha(hello) {
		t.Fatalf("versions: %s", r.body)
	}
	r = s.do("GET", "/api/v1/files/"+id+"/versions/1/content", token, nil)
	if r.status != 200 || !bytes.Equal(r.body, hello) {
		t.Fatalf("version 1: %d %q", r.status, r.body)
	}
	r = s.do("GET", "/api/v1/files/"+id+"/content", token, nil)
	if !bytes.Equal(r.body, v2) {
		t.Fatalf("current content: %q", r.body)
	}
	expect(t, s.do("GET", "/api/v1/files/"+id+"/versions/3/content", token, nil), 404, "not_found")
	body, ct = multipartBody(part{name: "file", filename: "x", body: strings.NewReader("x")})
	expect(t, s.send("PUT", "/api/v1/files/"+id+"/content", token, body, ct, "If-Match", `"1"`), 409, "version_conflict")

	// Listing by folder and by name; moving to the root.
	r = s.do("GET", "/api/v1/spaces/"+personal+"/files?folder_id="+docs, token, nil)
	if n := len(r.json(t)["items"].([]any)); n != 1 {
		t.Fatalf("files in Docs: %s", r.body)
	}
	r = s.do("GET", "/api/v1/spaces/"+personal+"/files?q=HELLO", token, nil)
	if n := len(r.json(t)["items"].([]any)); n != 1 {
		t.Fatalf("files named like hello: %s", r.body)
	}
	r = s.do("GET", "/api/v1/spaces/"+personal+"/files?folder_id=root", token, nil)
	if n := len(r.json(t)["items"].([]any)); n != 0 {
		t.Fatalf("files at the root: %s", r.body)
	}
	r = s.do("PATCH", "/api/v1/files/"+id, token, map[string]any{"folder_id": nil, "name": "greeting.txt"})
	expect(t, r, 200, "")
	pos = r.json(t)["position"].(string)
	r = s.do("GET", "/api/v1/spaces/"+personal+"/files?folder_id=root", token, nil, "X-Consistency-Token", pos)
	if items := r.json(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["name"] != "greeting.txt" {
		t.Fatalf("after the move: %s", r.body)
	}
	r = s.do("GET", "/api/v1/files/"+id+"/history", token, nil)
	if n := len(r.json(t)["items"].([]any)); n != 4 {
		t.Fatalf("history: %s", r.body)
	}
	first := r.json(t)["items"].([]any)[0].(map[string]any)["occurred_at"].(string)
	r = s.do("GET", "/api/v1/files/"+id+"?as_of="+url.QueryEscape(first), token, nil)
	if f := r.json(t); r.status != 200 || f["name"] != "hello.txt" || f["current_version"] != 1.0 || f["sha256"] != sha(hello) {
		t.Fatalf("as of the upload: %d %s", r.status, r.body)
	}
}

func TestFileUploadRefusesBadInputAndKeepsNothing(t *testing.T) {
	s := startServerWith(t, map[string]string{"ATLAS_MAX_UPLOAD_BYTES": "1024"})
	dataDir := s.env["ATLAS_DATA_DIR"]
	token, _, personal := s.register("bad-upload@example.com", "Bad")
	other, _, otherSpace := s.register("other-upload@example.com", "Other")
	r := s.do("POST", "/api/v1/spaces/"+otherSpace+"/folders", other, map[string]string{"name": "Theirs"})
	expect(t, r, 201, "")
	theirFolder := r.json(t)["id"].(string)

	cases := []struct {
		name   string
		do     func() resp
		status int
		code   string
	}{
		{"too large", func() resp { return s.upload(token, personal, "big.bin", make([]byte, 2000)) }, 413, "too_large"},
		{"empty name", func() resp { return s.upload(token, personal, "", []byte("x")) }, 422, "validation_failed"},
		{"dot-dot", func() resp { return s.upload(token, personal, "..", []byte("x")) }, 422, "validation_failed"},
		{"long name", func() resp { return s.upload(token, personal, strings.Repeat("n", 256), []byte("x")) }, 422, "validation_failed"},
		{"bad visibility", func() resp { return s.upload(token, personal, "a.txt", []byte("x"), "visibility", "everyone") }, 422, "validation_failed"},
		{"organization in a personal space", func() resp {
			return s.upload(token, personal, "a.txt", []byte("x"), "visibility", "organization")
		}, 422, "validation_failed"},
		{"folder of another space", func() resp { return s.upload(token, personal, "a.txt", []byte("x"), "folder_id", theirFolder) }, 404, "not_found"},
		{"bad folder id", func() resp { return s.upload(token, personal, "a.txt", []byte("x"), "folder_id", "nope") }, 400, "invalid_request"},
		{"unknown part", func() resp { return s.upload(token, personal, "a.txt", []byte("x"), "color", "red") }, 400, "invalid_request"},
		{"someone else's space", func() resp { return s.upload(token, otherSpace, "a.txt", []byte("x")) }, 404, "not_found"},
		{"no file part", func() resp {
			body, ct := multipartBody(part{name: "visibility", body: strings.NewReader("space")})
			return s.send("POST", "/api/v1/spaces/"+personal+"/files", token, body, ct)
		}, 422, "validation_failed"},
		{"not multipart", func() resp {
			return s.send("POST", "/api/v1/spaces/"+personal+"/files", token, strings.NewReader("{}"), "application/json")
		}, 415, "unsupported_media_type"},
	}
	for _, tc := range cases {
		expect(t, tc.do(), tc.status, tc.code)
	}
	if n := blobCount(t, dataDir); n != 0 {
		t.Fatalf("%d objects stored after refused uploads, want 0", n)
	}
	r = s.upload(token, personal, "ok.txt", make([]byte, 1024))
	expect(t, r, 201, "")
	if n := blobCount(t, dataDir); n != 1 {
		t.Fatalf("%d objects after one upload at the limit", n)
	}
}

func TestFoldersNestMoveWithoutCyclesAndDeleteRecursively(t *testing.T) {
	s := startServer(t)
	dataDir := s.env["ATLAS_DATA_DIR"]
	token, _, personal := s.register("folders@example.com", "Folders")
	mk := func(name string, parent any) string {
		body := map[string]any{"name": name}
		if parent != nil {
			body["parent_id"] = parent
		}
		r := s.do("POST", "/api/v1/spaces/"+personal+"/folders", token, body)
		expect(t, r, 201, "")
		return r.json(t)["id"].(string)
	}
	a := mk("A", nil)
	r1 := s.do("POST", "/api/v1/spaces/"+personal+"/folders", token, map[string]any{"name": "Once"}, "Idempotency-Key", "folder-1")
	r2 := s.do("POST", "/api/v1/spaces/"+personal+"/folders", token, map[string]any{"name": "Once"}, "Idempotency-Key", "folder-1")
	expect(t, r1, 201, "")
	expect(t, r2, 201, "")
	if r1.json(t)["id"] != r2.json(t)["id"] {
		t.Fatalf("an idempotent repeat made a second folder: %s %s", r1.body, r2.body)
	}
	b := mk("B", a)
	c := mk("C", b)
	other := mk("Other", nil)
	expect(t, s.do("PATCH", "/api/v1/folders/"+a, token, map[string]any{"parent_id": c}), 422, "validation_failed")
	expect(t, s.do("PATCH", "/api/v1/folders/"+a, token, map[string]any{"parent_id": a}), 422, "validation_failed")
	expect(t, s.do("PATCH", "/api/v1/folders/"+b, token, map[string]any{"parent_id": b}), 422, "validation_failed")
	expect(t, s.do("PATCH", "/api/v1/folders/"+a, token, map[string]any{"name": "a/b"}), 422, "validation_failed")
	expect(t, s.do("PATCH", "/api/v1/folders/"+c, token, map[string]any{"parent_id": other, "name": "C2"}), 200, "")
	expect(t, s.do("PATCH", "/api/v1/folders/"+c, token, map[string]any{"parent_id": b}), 200, "")

	var ids []string
	for _, folder := range []string{a, b, c} {
		r := s.upload(token, personal, "in-"+folder[:8]+".txt", []byte(folder), "folder_id", folder)
		expect(t, r, 201, "")
		ids = append(ids, r.json(t)["id"].(string))
	}
	r := s.upload(token, personal, "keep.txt", []byte("keep"), "folder_id", other)
	expect(t, r, 201, "")
	keep := r.json(t)["id"].(string)
	r = s.do("GET", "/api/v1/spaces/"+personal+"/folders?parent_id="+a, token, nil, "X-Consistency-Token", r.json(t)["position"].(string))
	if items := r.json(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != b {
		t.Fatalf("folders in A: %s", r.body)
	}
	if n := blobCount(t, dataDir); n != 4 {
		t.Fatalf("%d objects before the deletion, want 4", n)
	}

	r = s.do("DELETE", "/api/v1/folders/"+a, token, nil)
	expect(t, r, 200, "")
	pos := r.json(t)["position"].(string)
	for _, id := range ids {
		expect(t, s.do("GET", "/api/v1/files/"+id, token, nil, "X-Consistency-Token", pos), 404, "not_found")
		expect(t, s.do("GET", "/api/v1/files/"+id+"/content", token, nil), 404, "not_found")
		expect(t, s.do("PATCH", "/api/v1/files/"+id, token, map[string]string{"name": "x"}), 404, "not_found")
	}
	for _, f := range []string{a, b, c} {
		expect(t, s.do("GET", "/api/v1/folders/"+f, token, nil), 404, "not_found")
		expect(t, s.do("POST", "/api/v1/spaces/"+personal+"/folders", token, map[string]any{"name": "late", "parent_id": f}), 404, "not_found")
	}
	expect(t, s.do("GET", "/api/v1/files/"+keep+"/content", token, nil), 200, "")
	waitFor(t, 20*time.Second, "the deleted files' content is removed from the bucket", func() bool { return blobCount(t, dataDir) == 1 })
}

func TestFileVisibilityAndPublicLinks(t *testing.T) {
	s := startServer(t)
	owner, _, _ := s.register("vis-owner@example.com", "Owner")
	viewer, viewerID, _ := s.register("vis-viewer@example.com", "Viewer")
	orgMember, _, _ := s.register("vis-member@example.com", "Member")
	outsider, _, _ := s.register("vis-outsider@example.com", "Outsider")
	r := s.do("POST", "/api/v1/orgs", owner, map[string]string{"name": "Vis", "slug": "vis"})
	expect(t, r, 201, "")
	org := r.json(t)["id"].(string)
	for _, email := range []string{"vis-viewer@example.com", "vis-member@example.com"} {
		r = s.do("POST", "/api/v1/orgs/"+org+"/invitations", owner, map[string]string{"email": email})
		expect(t, r, 201, "")
		tok := r.json(t)["token"].(string)
		who := viewer
		if email == "vis-member@example.com" {
			who = orgMember
		}
		expect(t, s.do("POST", "/api/v1/invitations/"+tok+"/accept", who, nil), 200, "")
	}
	r = s.do("POST", "/api/v1/spaces", owner, map[string]any{"org_id": org, "name": "Private", "slug": "private"})
	expect(t, r, 201, "")
	sp := r.json(t)["id"].(string)
	expect(t, s.do("POST", "/api/v1/spaces/"+sp+"/members", owner, map[string]string{"user_id": viewerID, "role": "viewer"}), 201, "")

	ids := map[string]string{}
	var pos string
	for _, vis := range []string{"private", "space", "organization", "public"} {
		r = s.upload(owner, sp, vis+".txt", []byte(vis), "visibility", vis)
		expect(t, r, 201, "")
		ids[vis], pos = r.json(t)["id"].(string), r.json(t)["position"].(string)
	}
	// who -> visibility -> may read
	want := map[string]map[string]bool{
		"owner":    {"private": true, "space": true, "organization": true, "public": true},
		"viewer":   {"private": false, "space": true, "organization": true, "public": true},
		"member":   {"private": false, "space": false, "organization": true, "public": true},
		"outsider": {"private": false, "space": false, "organization": false, "public": true},
	}
	tokens := map[string]string{"owner": owner, "viewer": viewer, "member": orgMember, "outsider": outsider}
	for who, row := range want {
		for vis, ok := range row {
			status := 404
			if ok {
				status = 200
			}
			for _, path := range []string{"/api/v1/files/" + ids[vis], "/api/v1/files/" + ids[vis] + "/content", "/api/v1/files/" + ids[vis] + "/versions"} {
				if r := s.do("GET", path, tokens[who], nil, "X-Consistency-Token", pos); r.status != status {
					t.Errorf("%s GET %s (%s): %d, want %d", who, path, vis, r.status, status)
				}
			}
		}
		r = s.do("GET", "/api/v1/spaces/"+sp+"/files", tokens[who], nil, "X-Consistency-Token", pos)
		if who == "owner" || who == "viewer" {
			n := 0
			for _, ok := range row {
				if ok {
					n++
				}
			}
			if got := len(r.json(t)["items"].([]any)); got != n {
				t.Errorf("%s lists %d files, want %d: %s", who, got, n, r.body)
			}
		} else if r.status != 404 {
			t.Errorf("%s lists a space they cannot read: %d", who, r.status)
		}
	}
	// Viewers read but do not write.
	expect(t, s.do("PATCH", "/api/v1/files/"+ids["space"], viewer, map[string]string{"name": "x"}), 403, "forbidden")
	expect(t, s.upload(viewer, sp, "v.txt", []byte("v")), 403, "forbidden")
	body, ct := multipartBody(part{name: "file", filename: "v2", body: strings.NewReader("by a viewer")})
	expect(t, s.send("PUT", "/api/v1/files/"+ids["space"]+"/content", viewer, body, ct), 403, "forbidden")
	body, ct = multipartBody(part{name: "file", filename: "v2", body: strings.NewReader("by an outsider")})
	expect(t, s.send("PUT", "/api/v1/files/"+ids["space"]+"/content", outsider, body, ct), 404, "not_found")

	// Public links serve content only while the file is public and the link live.
	r = s.do("POST", "/api/v1/files/"+ids["space"]+"/links", owner, map[string]any{})
	expect(t, r, 201, "")
	link := r.json(t)
	linkURL := link["url"].(string)
	if len(link["token"].(string)) < 40 || !strings.HasSuffix(linkURL, link["token"].(string)) {
		t.Fatalf("link: %s", r.body)
	}
	expect(t, s.do("GET", linkURL, "", nil), 404, "not_found")
	expect(t, s.do("POST", "/api/v1/files/"+ids["space"]+"/links", owner, map[string]any{}, "Idempotency-Key", "link-1"), 201, "")
	// The token of a link is shown once: a repeat of its creation cannot answer it again.
	expect(t, s.do("POST", "/api/v1/files/"+ids["space"]+"/links", owner, map[string]any{}, "Idempotency-Key", "link-1"), 409, "conflict")
	expect(t, s.do("PATCH", "/api/v1/files/"+ids["space"], owner, map[string]string{"visibility": "public"}), 200, "")
	r = s.do("GET", linkURL, "", nil)
	if r.status != 200 || string(r.body) != "space" {
		t.Fatalf("public link: %d %q", r.status, r.body)
	}
	expect(t, s.do("GET", "/api/v1/public/files/atlf_"+strings.Repeat("A", 43), "", nil), 404, "not_found")
	r = s.do("GET", "/api/v1/files/"+ids["space"]+"/links?limit=1", owner, nil)
	if items := r.json(t)["items"].([]any); len(items) != 1 || items[0].(map[string]any)["live"] != true || strings.Contains(string(r.body), link["token"].(string)) ||
		r.json(t)["next_cursor"] == nil {
		t.Fatalf("links: %s", r.body)
	}
	expect(t, s.do("DELETE", "/api/v1/files/"+ids["space"]+"/links/"+link["id"].(string), owner, nil), 200, "")
	expect(t, s.do("GET", linkURL, "", nil), 404, "not_found")

	expect(t, s.do("POST", "/api/v1/files/"+ids["public"]+"/links", owner, map[string]string{"expires_at": "2000-01-01T00:00:00Z"}), 422, "validation_failed")
	r = s.do("POST", "/api/v1/files/"+ids["public"]+"/links", owner, map[string]string{"expires_at": time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)})
	expect(t, r, 201, "")
	expiring := r.json(t)["url"].(string)
	expect(t, s.do("GET", expiring, "", nil), 200, "")
	// Poll slowly: public links are rate limited per IP.
	waitFor(t, 10*time.Second, "an expired link stops serving", func() bool {
		defer time.Sleep(200 * time.Millisecond)
		return s.do("GET", expiring, "", nil).status == 404
	})

	r = s.do("POST", "/api/v1/files/"+ids["public"]+"/links", owner, map[string]any{})
	expect(t, r, 201, "")
	doomed := r.json(t)["url"].(string)
	expect(t, s.do("GET", doomed, "", nil), 200, "")
	expect(t, s.do("DELETE", "/api/v1/files/"+ids["public"], owner, nil), 200, "")
	expect(t, s.do("GET", doomed, "", nil), 404, "not_found")
}

func TestConcurrentFileEditsWithOneIfMatch(t *testing.T) {
	s := startServer(t)
	token, _, personal := s.register("race-files@example.com", "Race")
	r := s.upload(token, personal, "r.txt", []byte("r"))
	expect(t, r, 201, "")
	id := r.json(t)["id"].(string)
	got := s.racePatches("/api/v1/files/"+id, token, `"1"`, 2, func(i int) string { return fmt.Sprintf(`{"name": "n%d.txt"}`, i) })
	if got[200] != 1 || got[409] != 1 {
		t.Fatalf("two PATCHes with one If-Match: %v, want one 200 and one 409", got)
	}
}

// TestDeletedSpaceLeavesNoContent deletes a space with files in folders and at its root: nothing of
// it stays readable or downloadable, and the bucket ends up empty.
func TestDeletedSpaceLeavesNoContent(t *testing.T) {
	s := startServer(t)
	dataDir := s.env["ATLAS_DATA_DIR"]
	token, _, _ := s.register("space-files@example.com", "Owner")
	r := s.do("POST", "/api/v1/spaces", token, map[string]string{"name": "Doomed", "slug": "doomed"})
	expect(t, r, 201, "")
	sp := r.json(t)["id"].(string)
	r = s.do("POST", "/api/v1/spaces/"+sp+"/folders", token, map[string]string{"name": "F"})
	expect(t, r, 201, "")
	folder := r.json(t)["id"].(string)
	var files, links []string
	for i, fid := range []string{"", folder} {
		fields := []string{"visibility", "public"}
		if fid != "" {
			fields = append(fields, "folder_id", fid)
		}
		r = s.upload(token, sp, fmt.Sprintf("f%d.txt", i), []byte("content"), fields...)
		expect(t, r, 201, "")
		id := r.json(t)["id"].(string)
		files = append(files, id)
		body, ct := multipartBody(part{name: "file", filename: "v2", body: strings.NewReader("content v2")})
		expect(t, s.send("PUT", "/api/v1/files/"+id+"/content", token, body, ct), 200, "")
		r = s.do("POST", "/api/v1/files/"+id+"/links", token, map[string]any{})
		expect(t, r, 201, "")
		links = append(links, r.json(t)["url"].(string))
	}
	if n := blobCount(t, dataDir); n != 4 {
		t.Fatalf("%d objects, want 4", n)
	}
	r = s.do("DELETE", "/api/v1/spaces/"+sp, token, nil)
	expect(t, r, 200, "")
	pos := r.json(t)["position"].(string)
	for i, id := range files {
		expect(t, s.do("GET", "/api/v1/files/"+id, token, nil, "X-Consistency-Token", pos), 404, "not_found")
		expect(t, s.do("GET", "/api/v1/files/"+id+"/content", token, nil), 404, "not_found")
		expect(t, s.do("GET", "/api/v1/files/"+id+"/versions/1/content", token, nil), 404, "not_found")
		expect(t, s.do("GET", links[i], "", nil), 404, "not_found")
	}
	expect(t, s.do("GET", "/api/v1/spaces/"+sp+"/files", token, nil), 404, "not_found")
	expect(t, s.upload(token, sp, "late.txt", []byte("late")), 404, "not_found")
	waitFor(t, 20*time.Second, "the space's content is removed from the bucket", func() bool { return blobCount(t, dataDir) == 0 })
}

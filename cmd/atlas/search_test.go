package main

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atlas-workspace/atlas/internal/weaviatetest"
)

// searchIDs runs a search and returns the ids found (and the whole answer).
func (s *server) searchIDs(token, query string, params ...string) ([]string, map[string]any) {
	s.t.Helper()
	v := url.Values{"q": {query}}
	for i := 0; i+1 < len(params); i += 2 {
		v.Set(params[i], params[i+1])
	}
	r := s.do("GET", "/api/v1/search?"+v.Encode(), token, nil)
	expect(s.t, r, 200, "")
	page := r.json(s.t)
	var ids []string
	for _, it := range page["items"].([]any) {
		ids = append(ids, it.(map[string]any)["id"].(string))
	}
	return ids, page
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// waitIndexed waits until the resource at path says it is indexed.
func (s *server) waitIndexed(token, path string) {
	s.t.Helper()
	waitFor(s.t, 60*time.Second, path+" is indexed", func() bool {
		r := s.do("GET", path, token, nil)
		st, _ := r.json(s.t)["index_state"].(map[string]any)
		return st != nil && st["state"] != "pending"
	})
}

func TestSearch(t *testing.T) {
	s := startServer(t)
	type tenant struct{ owner, member, org, space string }
	mk := func(name, word string) (tenant, string) {
		var tn tenant
		tn.owner, _, _ = s.register(name+"-owner@search.test", name+" Owner")
		tn.member, _, _ = s.register(name+"-member@search.test", name+" Member")
		r := s.do("POST", "/api/v1/orgs", tn.owner, map[string]string{"name": name, "slug": name})
		expect(t, r, 201, "")
		tn.org = r.json(t)["id"].(string)
		r = s.do("POST", "/api/v1/orgs/"+tn.org+"/invitations", tn.owner, map[string]string{"email": name + "-member@search.test"})
		expect(t, r, 201, "")
		expect(t, s.do("POST", "/api/v1/invitations/"+r.json(t)["token"].(string)+"/accept", tn.member, nil), 200, "")
		r = s.do("POST", "/api/v1/spaces", tn.owner, map[string]any{"org_id": tn.org, "name": "Research", "slug": "research", "visibility": "public"})
		expect(t, r, 201, "")
		tn.space = r.json(t)["id"].(string)
		r = s.do("POST", "/api/v1/spaces/"+tn.space+"/notes", tn.owner, map[string]string{
			"title": "Field notes", "body": "The " + word + " migration plan: routes, timing and the survey of watering holes."})
		expect(t, r, 201, "")
		return tn, r.json(t)["id"].(string)
	}
	a, aNote := mk("alpha", "zebra")
	b, bNote := mk("beta", "kangaroo")
	r := s.upload(a.owner, a.space, "survey.csv", []byte("site,species\nnorth,quokka\nsouth,quokka\n"))
	expect(t, r, 201, "")
	aFile := r.json(t)["id"].(string)
	s.waitIndexed(a.owner, "/api/v1/notes/"+aNote)
	s.waitIndexed(b.owner, "/api/v1/notes/"+bNote)
	s.waitIndexed(a.owner, "/api/v1/files/"+aFile)

	for _, mode := range []string{"hybrid", "keyword", "semantic"} {
		ids, page := s.searchIDs(a.owner, "zebra migration", "mode", mode)
		if !contains(ids, aNote) || contains(ids, bNote) || page["engine"] != "weaviate" {
			t.Errorf("%s search for alpha's word: %v %v", mode, ids, page)
		}
	}
	// Another tenant's unique word finds nothing, in any mode.
	for _, mode := range []string{"hybrid", "keyword", "semantic"} {
		if ids, _ := s.searchIDs(a.owner, "kangaroo", "mode", mode); contains(ids, bNote) {
			t.Errorf("%s search finds beta's note for alpha: %v", mode, ids)
		}
	}
	if ids, _ := s.searchIDs(a.owner, "quokka", "kinds", "file"); len(ids) != 1 || ids[0] != aFile {
		t.Errorf("file search: %v", ids)
	}
	if ids, _ := s.searchIDs(a.owner, "zebra", "kinds", "file"); contains(ids, aNote) {
		t.Errorf("a files-only search finds notes: %v", ids)
	}
	if ids, _ := s.searchIDs(a.owner, "zebra", "space_id", a.space); !contains(ids, aNote) {
		t.Errorf("space-filtered search: %v", ids)
	}
	expect(t, s.do("GET", "/api/v1/search?q=zebra&space_id="+b.space, a.owner, nil), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/search?q=zebra&org_id="+b.org, a.owner, nil), 404, "not_found")
	expect(t, s.do("GET", "/api/v1/search?q=", a.owner, nil), 422, "validation_failed")
	expect(t, s.do("GET", "/api/v1/search?q=x&mode=psychic", a.owner, nil), 422, "validation_failed")
	expect(t, s.do("GET", "/api/v1/search?q=x&kinds=note,video", a.owner, nil), 422, "validation_failed")

	// A member reads the public space's note; once the space turns private, their search stops
	// finding it at once (the index is not involved).
	if ids, _ := s.searchIDs(a.member, "zebra"); !contains(ids, aNote) {
		t.Fatalf("the member does not find the public space's note: %v", ids)
	}
	r = s.do("PATCH", "/api/v1/spaces/"+a.space, a.owner, map[string]string{"visibility": "private"})
	expect(t, r, 200, "")
	r = s.do("GET", "/api/v1/search?q=zebra", a.member, nil, "X-Consistency-Token", r.json(t)["position"].(string))
	expect(t, r, 200, "")
	if strings.Contains(string(r.body), aNote) {
		t.Fatalf("a revoked reader still finds the note: %s", r.body)
	}

	// Edits replace the entries; deletions remove them.
	expect(t, s.do("PATCH", "/api/v1/notes/"+aNote, a.owner, map[string]string{"body": "Now about giraffe feeding."}), 200, "")
	waitFor(t, 60*time.Second, "the edit is searchable", func() bool {
		ids, _ := s.searchIDs(a.owner, "giraffe", "mode", "keyword")
		return contains(ids, aNote)
	})
	if ids, _ := s.searchIDs(a.owner, "zebra", "mode", "keyword"); contains(ids, aNote) {
		t.Errorf("the old text is still found: %v", ids)
	}
	expect(t, s.do("DELETE", "/api/v1/files/"+aFile, a.owner, nil), 200, "")
	waitFor(t, 60*time.Second, "the deleted file leaves the index", func() bool {
		ids, _ := s.searchIDs(a.owner, "quokka")
		return !contains(ids, aFile)
	})
}

// TestSearchWithWeaviateDown stops Weaviate: search keeps answering from PostgreSQL and says so, a
// note written meanwhile waits, and once Weaviate is back every change is indexed.
func TestSearchWithWeaviateDown(t *testing.T) {
	s := startServer(t)
	token, _, personal := s.register("down@search.test", "Down")
	r := s.do("POST", "/api/v1/spaces/"+personal+"/notes", token, map[string]string{"title": "Before", "body": "okapi sightings"})
	expect(t, r, 201, "")
	before := r.json(t)["id"].(string)
	s.waitIndexed(token, "/api/v1/notes/"+before)

	weaviatetest.Stop()
	restarted := false
	defer func() {
		if !restarted {
			weaviatetest.Start(t)
		}
	}()
	r = s.do("POST", "/api/v1/spaces/"+personal+"/notes", token, map[string]string{"title": "During", "body": "okapi tracks near the river"})
	expect(t, r, 201, "")
	during := r.json(t)["id"].(string)
	ids, page := s.searchIDs(token, "okapi", "consistent_with", r.json(t)["position"].(string))
	if page["engine"] != "postgres" || page["degraded"] != true || !contains(ids, before) {
		t.Fatalf("with Weaviate down: %v %v", ids, page)
	}
	pos := r.json(t)["position"].(string)
	waitFor(t, 10*time.Second, "the note written while Weaviate is down shows as pending", func() bool {
		r := s.do("GET", "/api/v1/notes/"+during, token, nil, "X-Consistency-Token", pos)
		st, _ := r.json(t)["index_state"].(map[string]any)
		return st != nil && st["state"] == "pending"
	})
	weaviatetest.Start(t)
	restarted = true
	s.waitIndexed(token, "/api/v1/notes/"+during)
	waitFor(t, 60*time.Second, "both notes are found through Weaviate", func() bool {
		ids, page := s.searchIDs(token, "okapi")
		return page["engine"] == "weaviate" && contains(ids, before) && contains(ids, during)
	})
	if n, err := s.app.Indexer.Pending(t.Context()); err != nil || n != 0 {
		t.Fatalf("%d work items left (%v)", n, err)
	}
}

// TestSearchReindex rebuilds the index's bookkeeping from the log with `atlas search reindex`: live
// documents come back indexed, deleted ones stay out.
func TestSearchReindex(t *testing.T) {
	s := startServer(t)
	token, _, personal := s.register("reindex@search.test", "Reindex")
	r := s.do("POST", "/api/v1/spaces/"+personal+"/notes", token, map[string]string{"title": "Kept", "body": "axolotl tank"})
	expect(t, r, 201, "")
	kept := r.json(t)["id"].(string)
	r = s.do("POST", "/api/v1/spaces/"+personal+"/notes", token, map[string]string{"title": "Gone", "body": "axolotl food"})
	expect(t, r, 201, "")
	gone := r.json(t)["id"].(string)
	expect(t, s.do("DELETE", "/api/v1/notes/"+gone, token, nil), 200, "")
	s.waitIndexed(token, "/api/v1/notes/"+kept)
	var out, errOut bytes.Buffer
	if code := run([]string{"search", "reindex", "--quiet"}, func(k string) string { return s.env[k] }, &out, &errOut); code != 0 {
		t.Fatalf("reindex exited %d: %s %s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "reindexed") {
		t.Fatalf("reindex output: %s", out.String())
	}
	r = s.do("GET", "/api/v1/notes/"+kept, token, nil)
	if st, _ := r.json(t)["index_state"].(map[string]any); st == nil || st["state"] != "indexed" {
		t.Fatalf("after the reindex: %s", r.body)
	}
	ids, _ := s.searchIDs(token, "axolotl", "mode", "keyword")
	if !contains(ids, kept) || contains(ids, gone) {
		t.Fatalf("after the reindex: %v", ids)
	}
}

// fakeEmbeddings is an OpenAI-compatible /v1/embeddings server with 8-dimensional vectors (a word
// hash per dimension); while blocked it answers 503.
type fakeEmbeddings struct {
	blocked atomic.Bool
	calls   atomic.Int32
}

func (f *fakeEmbeddings) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if f.blocked.Load() {
		http.Error(w, `{"error":{"message":"busy"}}`, http.StatusServiceUnavailable)
		return
	}
	var in struct {
		Input []string `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	type item struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	out := struct {
		Data []item `json:"data"`
	}{}
	for i, text := range in.Input {
		v := make([]float32, 8)
		for _, word := range strings.Fields(strings.ToLower(text)) {
			h := fnv.New32a()
			h.Write([]byte(word))
			v[h.Sum32()%8]++
		}
		v[0] += 0.01
		out.Data = append(out.Data, item{Index: i, Embedding: v})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// TestSearchSwitchesEmbedder restarts Atlas with another embedder: the old collection keeps answering
// (by keyword, saying so) while the new one is built, and once it is complete searches use it and the
// old collection is dropped.
func TestSearchSwitchesEmbedder(t *testing.T) {
	s := startServer(t)
	token, _, personal := s.register("switch@search.test", "Switch")
	r := s.do("POST", "/api/v1/spaces/"+personal+"/notes", token, map[string]string{"title": "Old", "body": "narwhal tusks"})
	expect(t, r, 201, "")
	noteID := r.json(t)["id"].(string)
	s.waitIndexed(token, "/api/v1/notes/"+noteID)
	oldClass := s.app.Indexer.Index.Class()
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	fake := &fakeEmbeddings{}
	fake.blocked.Store(true)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	s2 := startServerWith(t, map[string]string{"DATABASE_URL": s.dbURL, "ATLAS_DATA_DIR": s.env["ATLAS_DATA_DIR"],
		"EMBEDDINGS_URL": srv.URL, "EMBEDDINGS_MODEL": "fake-8"})
	newClass := s2.app.Indexer.Index.Class()
	if newClass == oldClass {
		t.Fatalf("the new embedder writes the old collection %s", oldClass)
	}
	// The new embedder answers nothing yet: the old collection serves, by keyword.
	waitFor(t, 30*time.Second, "the indexer tried the new embedder", func() bool { return fake.calls.Load() > 0 })
	ids, page := s2.searchIDs(token, "narwhal")
	if !contains(ids, noteID) || page["degraded"] != true || page["mode"] != "keyword" {
		t.Fatalf("during the rebuild: %v %v", ids, page)
	}
	fake.blocked.Store(false)
	waitFor(t, 60*time.Second, "the new collection takes over", func() bool {
		ids, page := s2.searchIDs(token, "narwhal")
		return contains(ids, noteID) && page["degraded"] == false
	})
	exists, err := s2.app.weaviate.Schema().ClassExistenceChecker().WithClassName(oldClass).Do(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the old collection is dropped", func() bool {
		exists, err = s2.app.weaviate.Schema().ClassExistenceChecker().WithClassName(oldClass).Do(t.Context())
		return err == nil && !exists
	})
}

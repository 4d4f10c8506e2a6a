package index_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/google/uuid"
	"github.com/weaviate/weaviate-go-client/v4/weaviate"
	"github.com/weaviate/weaviate-go-client/v4/weaviate/grpc"

	"github.com/atlas-workspace/atlas/internal/weaviatetest"
	"github.com/atlas-workspace/atlas/search/index"
)

func TestMain(m *testing.M) { os.Exit(weaviatetest.Run(m)) }

func newIndex(t *testing.T) *index.Index {
	t.Helper()
	s := weaviatetest.Start(t)
	c, err := weaviate.NewClient(weaviate.Config{Host: s.Host(), Scheme: "http", GrpcConfig: &grpc.Config{Host: s.GRPC}})
	if err != nil {
		t.Fatal(err)
	}
	return index.New(c, index.ClassFor("test-"+uuid.NewString()[:8]))
}

func doc(id, space uuid.UUID, version int64, texts ...string) index.Doc {
	d := index.Doc{ID: id, Kind: "note", SpaceID: space, Title: "T", SourceVersion: version}
	for i, tx := range texts {
		v := make([]float32, 4)
		v[i%4] = 1
		d.Chunks = append(d.Chunks, index.Chunk{Text: tx, Vector: v})
	}
	return d
}

func find(t *testing.T, x *index.Index, tenants []string, q string) map[uuid.UUID]index.Hit {
	t.Helper()
	hits, err := x.Search(context.Background(), index.Query{Text: q, Mode: index.Keyword, Tenants: tenants, Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]index.Hit{}
	for _, h := range hits {
		out[h.DocID] = h
	}
	return out
}

// TestUpsertIsIdempotentVersionedAndIsolated: replaying an upsert changes nothing, a shorter new
// version drops the old chunks, an older version never overwrites a newer one, deletion removes
// everything, and a query in one tenant never sees another's objects.
func TestUpsertIsIdempotentVersionedAndIsolated(t *testing.T) {
	x := newIndex(t)
	ctx := context.Background()
	a, b := uuid.NewString(), uuid.NewString()
	space, id := uuid.New(), uuid.New()
	v1 := doc(id, space, 1, "alpha wombat one", "alpha wombat two", "alpha wombat three")
	for i := 0; i < 3; i++ { // a replay, twice
		if ok, err := x.Upsert(ctx, a, v1); err != nil || !ok {
			t.Fatalf("upsert %d: %v %v", i, ok, err)
		}
	}
	if hits := find(t, x, []string{a}, "wombat"); len(hits) != 1 {
		t.Fatalf("after replays: %d documents", len(hits))
	}
	if hits := find(t, x, []string{b}, "wombat"); len(hits) != 0 {
		t.Fatalf("tenant b sees tenant a's document: %v", hits)
	}
	other := uuid.New()
	if _, err := x.Upsert(ctx, b, doc(other, space, 1, "beta wombat")); err != nil {
		t.Fatal(err)
	}
	if hits := find(t, x, []string{a}, "beta"); len(hits) != 0 {
		t.Fatalf("tenant a sees tenant b's document: %v", hits)
	}

	v2 := doc(id, space, 2, "alpha numbat")
	if ok, err := x.Upsert(ctx, a, v2); err != nil || !ok {
		t.Fatalf("upsert v2: %v %v", ok, err)
	}
	if hits := find(t, x, []string{a}, "wombat"); len(hits) != 0 {
		t.Fatalf("chunks of version 1 survive version 2: %v", hits)
	}
	if ok, err := x.Upsert(ctx, a, v1); err != nil || ok {
		t.Fatalf("an older version was written over a newer one: %v %v", ok, err)
	}
	if hits := find(t, x, []string{a}, "numbat"); len(hits) != 1 || hits[id].Snippet != "alpha numbat" {
		t.Fatalf("after the stale retry: %v", hits)
	}
	if err := x.DeleteDoc(ctx, a, id); err != nil {
		t.Fatal(err)
	}
	if hits := find(t, x, []string{a}, "numbat"); len(hits) != 0 {
		t.Fatalf("after deletion: %v", hits)
	}
	if err := x.DeleteSpace(ctx, b, space); err != nil {
		t.Fatal(err)
	}
	if hits := find(t, x, []string{b}, "beta"); len(hits) != 0 {
		t.Fatalf("after the space's deletion: %v", hits)
	}
	if err := x.DeleteDoc(ctx, "never-indexed-"+fmt.Sprint(1), id); err != nil {
		t.Fatalf("deleting in a tenant that does not exist: %v", err)
	}
}

// TestUpsertManyWritesAcrossTenantsAndTrimsShrunkDocuments.
func TestUpsertManyWritesAcrossTenantsAndTrimsShrunkDocuments(t *testing.T) {
	x := newIndex(t)
	ctx := context.Background()
	a, b := uuid.NewString(), uuid.NewString()
	space, d1, d2 := uuid.New(), uuid.New(), uuid.New()
	if err := x.UpsertMany(ctx, []index.Write{
		{Tenant: a, Doc: doc(d1, space, 1, "tapir one", "tapir two", "tapir three")},
		{Tenant: b, Doc: doc(d2, space, 1, "tapir elsewhere")},
	}); err != nil {
		t.Fatal(err)
	}
	if hits := find(t, x, []string{a}, "tapir"); len(hits) != 1 || hits[d1].DocID != d1 {
		t.Fatalf("tenant a: %v", hits)
	}
	if hits := find(t, x, []string{b}, "tapir"); len(hits) != 1 || hits[d2].DocID != d2 {
		t.Fatalf("tenant b: %v", hits)
	}
	if err := x.UpsertMany(ctx, []index.Write{{Tenant: a, Doc: doc(d1, space, 2, "okapi only"), PrevChunks: 3}}); err != nil {
		t.Fatal(err)
	}
	if hits := find(t, x, []string{a}, "tapir"); len(hits) != 0 {
		t.Fatalf("chunks of the longer version survive: %v", hits)
	}
}

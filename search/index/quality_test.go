package index_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/google/uuid"

	"github.com/atlas-workspace/atlas/search/embed"
	"github.com/atlas-workspace/atlas/search/index"
)

// TestRetrievalQuality indexes a small labelled set (testdata/quality.json) with the offline
// embedder and reports recall@5 of each mode: the share of each query's relevant documents found in
// its first five results, averaged over the queries. Hybrid must not do worse than keyword.
func TestRetrievalQuality(t *testing.T) {
	raw, err := os.ReadFile("testdata/quality.json")
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Documents []struct{ ID, Text string }
		Queries   []struct {
			Q        string
			Relevant []string
		}
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	x := newIndex(t)
	emb := embed.NewHashing(384)
	ctx := context.Background()
	tenant, space := uuid.NewString(), uuid.New()
	ids := map[uuid.UUID]string{}
	for _, d := range set.Documents {
		vs, err := emb.Embed(ctx, []string{d.Text})
		if err != nil {
			t.Fatal(err)
		}
		id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(d.ID))
		ids[id] = d.ID
		if _, err := x.Upsert(ctx, tenant, index.Doc{ID: id, Kind: "note", SpaceID: space, Title: d.ID, SourceVersion: 1,
			Chunks: []index.Chunk{{Text: d.Text, Vector: vs[0]}}}); err != nil {
			t.Fatal(err)
		}
	}
	recall := map[string]float64{}
	for _, mode := range []string{index.Keyword, index.Semantic, index.Hybrid} {
		total := 0.0
		for _, q := range set.Queries {
			vs, err := emb.Embed(ctx, []string{q.Q})
			if err != nil {
				t.Fatal(err)
			}
			hits, err := x.Search(ctx, index.Query{Text: q.Q, Vector: vs[0], Mode: mode, Tenants: []string{tenant}, Limit: 5})
			if err != nil {
				t.Fatal(err)
			}
			top := map[string]bool{}
			for i, h := range hits {
				if i < 5 {
					top[ids[h.DocID]] = true
				}
			}
			found := 0
			for _, r := range q.Relevant {
				if top[r] {
					found++
				}
			}
			total += float64(found) / float64(len(q.Relevant))
		}
		recall[mode] = total / float64(len(set.Queries))
		t.Logf("recall@5 %-8s %.2f", mode, recall[mode])
	}
	if recall[index.Hybrid] < recall[index.Keyword] {
		t.Fatalf("hybrid recall@5 %.2f is below keyword %.2f", recall[index.Hybrid], recall[index.Keyword])
	}
}

package weaviatetest_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/google/uuid"
	"github.com/weaviate/weaviate-go-client/v4/weaviate"
	"github.com/weaviate/weaviate-go-client/v4/weaviate/graphql"
	"github.com/weaviate/weaviate-go-client/v4/weaviate/grpc"
	"github.com/weaviate/weaviate/entities/models"

	"github.com/atlas-workspace/atlas/internal/weaviatetest"
)

func TestMain(m *testing.M) { os.Exit(weaviatetest.Run(m)) }

func newClient(t *testing.T) *weaviate.Client {
	t.Helper()
	s := weaviatetest.Start(t)
	c, err := weaviate.NewClient(weaviate.Config{Host: s.Host(), Scheme: "http", GrpcConfig: &grpc.Config{Host: s.GRPC}})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return c
}

// A namespace for the test's object ids: the same (tenant, key) always gives the same id.
var idSpace = uuid.MustParse("6f1c1a52-7d3e-4d38-9a0e-0c3f2b8e5d11")

func objectID(tenant, key string) strfmt.UUID {
	return strfmt.UUID(uuid.NewSHA1(idSpace, []byte(tenant+"/"+key)).String())
}

type doc struct {
	key, body string
	vector    []float32
}

var docs = []doc{
	{"one", "the quarterly budget for the marketing team", []float32{1, 0, 0, 0}},
	{"two", "notes from the budget review meeting", []float32{0.9, 0.1, 0, 0}},
	{"three", "a recipe for lemon cake", []float32{0, 0, 1, 0}},
}

func upsert(t *testing.T, ctx context.Context, c *weaviate.Client, class, tenant string) {
	t.Helper()
	b := c.Batch().ObjectsBatcher()
	for _, d := range docs {
		b = b.WithObjects(&models.Object{
			Class:      class,
			ID:         objectID(tenant, d.key),
			Tenant:     tenant,
			Properties: map[string]any{"body": d.body},
			Vector:     d.vector,
		})
	}
	resp, err := b.Do(ctx)
	if err != nil {
		t.Fatalf("batch upsert: %v", err)
	}
	if len(resp) != len(docs) {
		t.Fatalf("batch upsert: %d results for %d objects", len(resp), len(docs))
	}
	for _, r := range resp {
		if r.Result != nil && r.Result.Errors != nil {
			t.Fatalf("batch upsert of %s: %s", r.ID, gqlErrors(r.Result.Errors.Error))
		}
	}
}

func gqlErrors[E any](errs []E) string {
	b, _ := json.Marshal(errs)
	return string(b)
}

// hybrid runs a hybrid query (BM25 and vector, relative score fusion) in tenant and returns the ids
// found, sorted.
func hybrid(t *testing.T, ctx context.Context, c *weaviate.Client, class, tenant string) []string {
	t.Helper()
	h := c.GraphQL().HybridArgumentBuilder().
		WithQuery("budget").
		WithVector([]float32{1, 0.05, 0, 0}).
		WithAlpha(0.5).
		WithFusionType(graphql.RelativeScore)
	resp, err := c.GraphQL().Get().
		WithClassName(class).
		WithTenant(tenant).
		WithHybrid(h).
		WithLimit(2).
		WithFields(graphql.Field{Name: "body"}, graphql.Field{Name: "_additional", Fields: []graphql.Field{{Name: "id"}, {Name: "score"}}}).
		Do(ctx)
	if err != nil {
		t.Fatalf("hybrid query in %s: %v", tenant, err)
	}
	if len(resp.Errors) > 0 {
		t.Fatalf("hybrid query in %s: %s", tenant, gqlErrors(resp.Errors))
	}
	var data struct {
		Get map[string][]struct {
			Body       string `json:"body"`
			Additional struct {
				ID string `json:"id"`
			} `json:"_additional"`
		}
	}
	raw, _ := json.Marshal(resp.Data)
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatalf("hybrid query in %s: decode %s: %v", tenant, raw, err)
	}
	var ids []string
	for _, hit := range data.Get[class] {
		ids = append(ids, hit.Additional.ID)
	}
	sort.Strings(ids)
	return ids
}

// count returns the number of objects of class in tenant.
func count(t *testing.T, ctx context.Context, c *weaviate.Client, class, tenant string) int {
	t.Helper()
	resp, err := c.GraphQL().Aggregate().
		WithClassName(class).
		WithTenant(tenant).
		WithFields(graphql.Field{Name: "meta", Fields: []graphql.Field{{Name: "count"}}}).
		Do(ctx)
	if err != nil {
		t.Fatalf("count in %s: %v", tenant, err)
	}
	if len(resp.Errors) > 0 {
		t.Fatalf("count in %s: %s", tenant, gqlErrors(resp.Errors))
	}
	var data struct {
		Aggregate map[string][]struct {
			Meta struct {
				Count int `json:"count"`
			} `json:"meta"`
		}
	}
	raw, _ := json.Marshal(resp.Data)
	if err := json.Unmarshal(raw, &data); err != nil || len(data.Aggregate[class]) != 1 {
		t.Fatalf("count in %s: decode %s: %v", tenant, raw, err)
	}
	return data.Aggregate[class][0].Meta.Count
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestMultiTenantHybridSurvivesRestarts stores objects in one tenant of a multi-tenant class,
// finds them with a hybrid query there and not in another tenant, upserts them again without
// duplicates, and finds them again after a clean stop and after a kill, each followed by a restart
// on the same data directory and ports. It stops the shared server, so it must not run in parallel.
func TestMultiTenantHybridSurvivesRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	before := weaviatetest.Start(t)
	c := newClient(t)
	class := "Note" + randomHex(6)
	tenantA, tenantB := uuid.NewString(), uuid.NewString()

	err := c.Schema().ClassCreator().WithClass(&models.Class{
		Class:              class,
		Vectorizer:         "none",
		MultiTenancyConfig: &models.MultiTenancyConfig{Enabled: true},
		Properties:         []*models.Property{{Name: "body", DataType: []string{"text"}}},
	}).Do(ctx)
	if err != nil {
		t.Fatalf("create class: %v", err)
	}
	if err := c.Schema().TenantsCreator().WithClassName(class).
		WithTenants(models.Tenant{Name: tenantA}, models.Tenant{Name: tenantB}).Do(ctx); err != nil {
		t.Fatalf("create tenants: %v", err)
	}

	upsert(t, ctx, c, class, tenantA)
	want := []string{string(objectID(tenantA, "one")), string(objectID(tenantA, "two"))}
	sort.Strings(want)
	check := func(when string) {
		t.Helper()
		if got := hybrid(t, ctx, c, class, tenantA); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: hybrid query in tenant A found %v, want %v", when, got, want)
		}
		if got := hybrid(t, ctx, c, class, tenantB); len(got) != 0 {
			t.Fatalf("%s: hybrid query in tenant B found %v, want nothing", when, got)
		}
		if n := count(t, ctx, c, class, tenantA); n != len(docs) {
			t.Fatalf("%s: tenant A holds %d objects, want %d", when, n, len(docs))
		}
		if n := count(t, ctx, c, class, tenantB); n != 0 {
			t.Fatalf("%s: tenant B holds %d objects, want 0", when, n)
		}
	}
	check("after the first upsert")
	upsert(t, ctx, c, class, tenantA)
	check("after upserting the same ids again")

	for _, down := range []struct {
		name string
		stop func()
	}{{"Stop", weaviatetest.Stop}, {"Kill", weaviatetest.Kill}} {
		down.stop()
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(before.HTTP + "/v1/.well-known/ready")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("after %s the server still answers (%s)", down.name, resp.Status)
		}
		start := time.Now()
		if after := weaviatetest.Start(t); after != before {
			t.Fatalf("after %s and Start the addresses changed: %+v, were %+v", down.name, after, before)
		}
		t.Logf("restart after %s: ready in %s", down.name, time.Since(start).Round(time.Millisecond))
		// The client keeps its gRPC connection, which reconnects to the same address.
		check("after " + down.name + " and a restart")
	}
	upsert(t, ctx, c, class, tenantA)
	check("after upserting again after the restarts")
}

// TestURL: the addresses are loopback addresses, the same on every call, and the server answers.
func TestURL(t *testing.T) {
	t.Parallel()
	u := weaviatetest.URL(t)
	if g := weaviatetest.GRPCAddr(t); u != weaviatetest.URL(t) || g == "" || "http://"+weaviatetest.Start(t).Host() != u {
		t.Fatalf("URL %s, GRPCAddr %s, Start %+v", u, g, weaviatetest.Start(t))
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(u + "/v1/meta")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var meta struct {
		Version string `json:"version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&meta); err != nil || resp.StatusCode != http.StatusOK || meta.Version == "" {
		t.Fatalf("GET /v1/meta: %s, version %q, %v", resp.Status, meta.Version, err)
	}
	t.Logf("Weaviate %s at %s", meta.Version, u)
}

// Package index keeps Atlas's search entries in Weaviate: one multi-tenant collection of text chunks
// per embedder (a tenant per organization or personal owner), written with deterministic object ids
// and a source-version guard, and searched by keyword (BM25), meaning (vector) or both (hybrid, with
// relative score fusion).
package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/go-openapi/strfmt"
	"github.com/google/uuid"
	"github.com/weaviate/weaviate-go-client/v4/weaviate"
	"github.com/weaviate/weaviate-go-client/v4/weaviate/filters"
	"github.com/weaviate/weaviate-go-client/v4/weaviate/graphql"
	"github.com/weaviate/weaviate/entities/models"
)

// Modes of Search.
const (
	Keyword  = "keyword"
	Semantic = "semantic"
	Hybrid   = "hybrid"
)

// idSpace makes object ids: the same document and chunk always get the same id, so replays and
// retries overwrite instead of adding.
var idSpace = uuid.MustParse("2a8f7f0e-3c1d-5b6a-9e4f-8d7c6b5a4e3d")

// ObjectID is the Weaviate id of chunk i of document doc.
func ObjectID(doc uuid.UUID, i int) strfmt.UUID {
	return strfmt.UUID(uuid.NewSHA1(idSpace, []byte(fmt.Sprintf("%s/%d", doc, i))).String())
}

// Chunk is one indexed piece of a document, with its vector.
type Chunk struct {
	Text   string
	Vector []float32
}

// Doc is what one document puts in the index.
type Doc struct {
	ID            uuid.UUID
	Kind          string // note, file, chat
	SpaceID       uuid.UUID
	Title         string
	SourceVersion int64 // the document's stream version the chunks come from
	Chunks        []Chunk
}

// Hit is one search result: the best chunk of a document.
type Hit struct {
	DocID   uuid.UUID
	Kind    string
	SpaceID uuid.UUID
	Title   string
	Snippet string
	Score   float64
	Tenant  string
}

// Index is one collection (class) of chunks.
type Index struct {
	client *weaviate.Client
	class  string

	mu      sync.Mutex
	ensured bool
	tenants map[string]bool
}

var classRE = regexp.MustCompile(`[^A-Za-z0-9]+`)

// ClassFor names the collection for an embedder: a change of embedder (its Name) is a new collection.
func ClassFor(embedderName string) string {
	s := classRE.ReplaceAllString(embedderName, "_")
	return "AtlasChunk_" + strings.Trim(s, "_")
}

// New returns the index over client's class.
func New(client *weaviate.Client, class string) *Index {
	return &Index{client: client, class: class, tenants: map[string]bool{}}
}

// Class is the collection's name.
func (x *Index) Class() string { return x.class }

// Drop deletes the whole collection (an earlier embedder's, after a switch). A collection that does
// not exist is not an error.
func (x *Index) Drop(ctx context.Context) error {
	exists, err := x.client.Schema().ClassExistenceChecker().WithClassName(x.class).Do(ctx)
	if err != nil || !exists {
		return err
	}
	return x.client.Schema().ClassDeleter().WithClassName(x.class).Do(ctx)
}

// Ready reports whether Weaviate answers.
func (x *Index) Ready(ctx context.Context) error {
	ok, err := x.client.Misc().ReadyChecker().Do(ctx)
	if err == nil && !ok {
		err = errors.New("weaviate is not ready")
	}
	return err
}

// Ensure creates the collection if it does not exist.
func (x *Index) Ensure(ctx context.Context) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ensured {
		return nil
	}
	exists, err := x.client.Schema().ClassExistenceChecker().WithClassName(x.class).Do(ctx)
	if err != nil {
		return fmt.Errorf("check collection %s: %w", x.class, err)
	}
	if !exists {
		text := func(name string, searchable bool) *models.Property {
			tok := "field"
			if searchable {
				tok = "word"
			}
			return &models.Property{Name: name, DataType: []string{"text"}, Tokenization: tok, IndexSearchable: &searchable}
		}
		err := x.client.Schema().ClassCreator().WithClass(&models.Class{
			Class:              x.class,
			Vectorizer:         "none",
			MultiTenancyConfig: &models.MultiTenancyConfig{Enabled: true},
			Properties: []*models.Property{
				text("doc_id", false), text("kind", false), text("space_id", false),
				text("title", true), text("body", true),
				{Name: "chunk", DataType: []string{"int"}},
				{Name: "source_version", DataType: []string{"int"}},
			},
		}).Do(ctx)
		if err != nil && !strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("create collection %s: %w", x.class, err)
		}
	}
	x.ensured = true
	return nil
}

func (x *Index) ensureTenant(ctx context.Context, tenant string) error {
	if err := x.Ensure(ctx); err != nil {
		return err
	}
	x.mu.Lock()
	known := x.tenants[tenant]
	x.mu.Unlock()
	if known {
		return nil
	}
	err := x.client.Schema().TenantsCreator().WithClassName(x.class).WithTenants(models.Tenant{Name: tenant}).Do(ctx)
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("create tenant %s: %w", tenant, err)
	}
	x.mu.Lock()
	x.tenants[tenant] = true
	x.mu.Unlock()
	return nil
}

// hasTenant reports whether the tenant exists (a tenant with nothing indexed yet does not).
func (x *Index) hasTenants(ctx context.Context) (map[string]bool, error) {
	if err := x.Ensure(ctx); err != nil {
		return nil, err
	}
	ts, err := x.client.Schema().TenantsGetter().WithClassName(x.class).Do(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	out := make(map[string]bool, len(ts))
	for _, t := range ts {
		out[t.Name] = true
	}
	return out, nil
}

func eq(path, value string) *filters.WhereBuilder {
	return filters.Where().WithPath([]string{path}).WithOperator(filters.Equal).WithValueText(value)
}

// indexedVersion returns the source version the index holds for doc, 0 when it holds none.
func (x *Index) indexedVersion(ctx context.Context, tenant string, doc uuid.UUID) (int64, error) {
	resp, err := x.client.GraphQL().Get().WithClassName(x.class).WithTenant(tenant).
		WithWhere(eq("doc_id", doc.String())).WithLimit(1).
		WithFields(graphql.Field{Name: "source_version"}).Do(ctx)
	if err := gqlErr(resp, err); err != nil {
		return 0, fmt.Errorf("read indexed version of %s: %w", doc, err)
	}
	var data struct {
		Get map[string][]struct {
			SourceVersion int64 `json:"source_version"`
		}
	}
	if err := decode(resp, &data); err != nil {
		return 0, err
	}
	if hits := data.Get[x.class]; len(hits) > 0 {
		return hits[0].SourceVersion, nil
	}
	return 0, nil
}

// Upsert writes doc's chunks into tenant and removes chunks of an earlier, longer version. It skips
// (reporting false) when the index already holds a newer source version of the document, so a late
// retry never brings back an older text.
func (x *Index) Upsert(ctx context.Context, tenant string, doc Doc) (bool, error) {
	if err := x.ensureTenant(ctx, tenant); err != nil {
		return false, err
	}
	have, err := x.indexedVersion(ctx, tenant, doc.ID)
	if err != nil {
		return false, err
	}
	if have > doc.SourceVersion {
		return false, nil
	}
	for start := 0; start < len(doc.Chunks); start += 100 {
		end := min(start+100, len(doc.Chunks))
		b := x.client.Batch().ObjectsBatcher()
		for i := start; i < end; i++ {
			c := doc.Chunks[i]
			b = b.WithObjects(&models.Object{
				Class: x.class, ID: ObjectID(doc.ID, i), Tenant: tenant, Vector: c.Vector,
				Properties: map[string]any{
					"doc_id": doc.ID.String(), "kind": doc.Kind, "space_id": doc.SpaceID.String(),
					"title": doc.Title, "body": c.Text, "chunk": i, "source_version": doc.SourceVersion,
				},
			})
		}
		resp, err := b.Do(ctx)
		if err != nil {
			return false, fmt.Errorf("upsert %s: %w", doc.ID, err)
		}
		for _, r := range resp {
			if r.Result != nil && r.Result.Errors != nil && len(r.Result.Errors.Error) > 0 {
				return false, fmt.Errorf("upsert %s: %s", doc.ID, r.Result.Errors.Error[0].Message)
			}
		}
	}
	// Chunks past the new end belong to an earlier version.
	stale := filters.Where().WithOperator(filters.And).WithOperands([]*filters.WhereBuilder{
		eq("doc_id", doc.ID.String()),
		filters.Where().WithPath([]string{"chunk"}).WithOperator(filters.GreaterThanEqual).WithValueInt(int64(len(doc.Chunks))),
	})
	if err := x.deleteWhere(ctx, tenant, stale); err != nil {
		return false, err
	}
	return true, nil
}

// Write is one document for UpsertMany: its tenant, its chunks, and how many chunks the index held
// for it before (chunks past the new count are deleted).
type Write struct {
	Tenant     string
	Doc        Doc
	PrevChunks int
}

// UpsertMany writes several documents' chunks in as few batch calls as it can (up to 200 objects a
// call, tenants mixed), then deletes the chunks of documents that shrank. Unlike Upsert it does not
// read the index first: the caller guards versions (the indexer keeps each document's indexed
// version and chunk count in PostgreSQL).
func (x *Index) UpsertMany(ctx context.Context, ws []Write) error {
	seen := map[string]bool{}
	for _, w := range ws {
		if !seen[w.Tenant] {
			seen[w.Tenant] = true
			if err := x.ensureTenant(ctx, w.Tenant); err != nil {
				return err
			}
		}
	}
	var objs []*models.Object
	flush := func() error {
		if len(objs) == 0 {
			return nil
		}
		resp, err := x.client.Batch().ObjectsBatcher().WithObjects(objs...).Do(ctx)
		if err != nil {
			return fmt.Errorf("batch upsert: %w", err)
		}
		for _, r := range resp {
			if r.Result != nil && r.Result.Errors != nil && len(r.Result.Errors.Error) > 0 {
				return fmt.Errorf("batch upsert: %s", r.Result.Errors.Error[0].Message)
			}
		}
		objs = objs[:0]
		return nil
	}
	for _, w := range ws {
		d := w.Doc
		for i, c := range d.Chunks {
			objs = append(objs, &models.Object{
				Class: x.class, ID: ObjectID(d.ID, i), Tenant: w.Tenant, Vector: c.Vector,
				Properties: map[string]any{
					"doc_id": d.ID.String(), "kind": d.Kind, "space_id": d.SpaceID.String(),
					"title": d.Title, "body": c.Text, "chunk": i, "source_version": d.SourceVersion,
				},
			})
			if len(objs) == 200 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	for _, w := range ws {
		if w.PrevChunks > len(w.Doc.Chunks) {
			stale := filters.Where().WithOperator(filters.And).WithOperands([]*filters.WhereBuilder{
				eq("doc_id", w.Doc.ID.String()),
				filters.Where().WithPath([]string{"chunk"}).WithOperator(filters.GreaterThanEqual).WithValueInt(int64(len(w.Doc.Chunks))),
			})
			if err := x.deleteWhere(ctx, w.Tenant, stale); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteDoc removes every chunk of a document.
func (x *Index) DeleteDoc(ctx context.Context, tenant string, doc uuid.UUID) error {
	return x.deleteWhere(ctx, tenant, eq("doc_id", doc.String()))
}

// DeleteSpace removes every chunk of a space's documents.
func (x *Index) DeleteSpace(ctx context.Context, tenant string, space uuid.UUID) error {
	return x.deleteWhere(ctx, tenant, eq("space_id", space.String()))
}

func (x *Index) deleteWhere(ctx context.Context, tenant string, where *filters.WhereBuilder) error {
	ts, err := x.hasTenants(ctx)
	if err != nil {
		return err
	}
	if !ts[tenant] {
		return nil // nothing was ever indexed there
	}
	resp, err := x.client.Batch().ObjectsBatchDeleter().WithClassName(x.class).WithTenant(tenant).
		WithWhere(where).WithOutput("minimal").Do(ctx)
	if err != nil {
		return fmt.Errorf("delete from %s: %w", tenant, err)
	}
	if resp != nil && resp.Results != nil && resp.Results.Failed > 0 {
		return fmt.Errorf("delete from %s: %d objects failed", tenant, resp.Results.Failed)
	}
	return nil
}

// Query is a search in some tenants.
type Query struct {
	Text    string
	Vector  []float32
	Mode    string     // Keyword, Semantic or Hybrid
	Tenants []string   // searched one by one; results are merged by score
	SpaceID *uuid.UUID // only this space's documents
	Kinds   []string   // only these kinds (none: all)
	Limit   int        // chunks fetched per tenant
}

// Search runs q and returns one hit per document (its best chunk), best first.
func (x *Index) Search(ctx context.Context, q Query) ([]Hit, error) {
	known, err := x.hasTenants(ctx)
	if err != nil {
		return nil, err
	}
	var where []*filters.WhereBuilder
	if q.SpaceID != nil {
		where = append(where, eq("space_id", q.SpaceID.String()))
	}
	if len(q.Kinds) > 0 {
		var any []*filters.WhereBuilder
		for _, k := range q.Kinds {
			any = append(any, eq("kind", k))
		}
		where = append(where, filters.Where().WithOperator(filters.Or).WithOperands(any))
	}
	best := map[uuid.UUID]Hit{}
	for _, tenant := range q.Tenants {
		if !known[tenant] {
			continue
		}
		get := x.client.GraphQL().Get().WithClassName(x.class).WithTenant(tenant).WithLimit(q.Limit).
			WithFields(graphql.Field{Name: "doc_id"}, graphql.Field{Name: "kind"}, graphql.Field{Name: "space_id"},
				graphql.Field{Name: "title"}, graphql.Field{Name: "body"},
				graphql.Field{Name: "_additional", Fields: []graphql.Field{{Name: "score"}, {Name: "distance"}}})
		switch q.Mode {
		case Keyword:
			get = get.WithBM25(x.client.GraphQL().Bm25ArgBuilder().WithQuery(q.Text).WithProperties("title", "body"))
		case Semantic:
			get = get.WithNearVector(x.client.GraphQL().NearVectorArgBuilder().WithVector(q.Vector))
		default:
			get = get.WithHybrid(x.client.GraphQL().HybridArgumentBuilder().WithQuery(q.Text).WithVector(q.Vector).
				WithAlpha(0.5).WithFusionType(graphql.RelativeScore).WithProperties([]string{"title", "body"}))
		}
		if len(where) == 1 {
			get = get.WithWhere(where[0])
		} else if len(where) > 1 {
			get = get.WithWhere(filters.Where().WithOperator(filters.And).WithOperands(where))
		}
		resp, err := get.Do(ctx)
		if err := gqlErr(resp, err); err != nil {
			return nil, fmt.Errorf("search in %s: %w", tenant, err)
		}
		var data struct {
			Get map[string][]struct {
				DocID      string `json:"doc_id"`
				Kind       string `json:"kind"`
				SpaceID    string `json:"space_id"`
				Title      string `json:"title"`
				Body       string `json:"body"`
				Additional struct {
					Score    *json.Number `json:"score"`
					Distance *float64     `json:"distance"`
				} `json:"_additional"`
			}
		}
		if err := decode(resp, &data); err != nil {
			return nil, err
		}
		for _, h := range data.Get[x.class] {
			id, err1 := uuid.Parse(h.DocID)
			space, err2 := uuid.Parse(h.SpaceID)
			if err1 != nil || err2 != nil {
				continue
			}
			score := 0.0
			switch {
			case h.Additional.Score != nil:
				score, _ = h.Additional.Score.Float64()
			case h.Additional.Distance != nil:
				score = 1 - *h.Additional.Distance
			}
			if prev, ok := best[id]; !ok || score > prev.Score {
				best[id] = Hit{DocID: id, Kind: h.Kind, SpaceID: space, Title: h.Title, Snippet: h.Body, Score: score, Tenant: tenant}
			}
		}
	}
	out := make([]Hit, 0, len(best))
	for _, h := range best {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		return out[i].DocID.String() < out[j].DocID.String()
	})
	return out, nil
}

func gqlErr(resp *models.GraphQLResponse, err error) error {
	if err != nil {
		return err
	}
	if resp != nil && len(resp.Errors) > 0 {
		msgs := make([]string, len(resp.Errors))
		for i, e := range resp.Errors {
			msgs[i] = e.Message
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

func decode(resp *models.GraphQLResponse, dst any) error {
	raw, err := json.Marshal(resp.Data)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("decode search response: %w", err)
	}
	return nil
}

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/google/uuid"
	"github.com/weaviate/weaviate-go-client/v4/weaviate"
	"github.com/weaviate/weaviate-go-client/v4/weaviate/grpc"
	"github.com/weaviate/weaviate/entities/models"

	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/internal/weaviatetest"
	"github.com/atlas-workspace/atlas/projections"
	"github.com/atlas-workspace/atlas/search/embed"
	"github.com/atlas-workspace/atlas/search/index"
)

var benchWords = strings.Fields(`budget review incident database outage backup restore hiring engineer onboarding
recipe lemon cake bread garden tomato marathon cycling contract invoice payment security password roadmap
search design office river offsite workshop bird heron telescope jupiter translation glossary accessibility
label contrast sensor shipment penalty schedule interval snapshot volume certificate resolver region team`)

// benchText draws words from a vocabulary of 20,000 with Zipf-distributed frequencies (s = 1.1), as
// natural text has: a few words everywhere, most words rare. The named words above are the most
// frequent ones; the rest are synthetic.
func benchText(r *rand.Rand, words int) string {
	z := rand.NewZipf(r, 1.1, 1, 20_000-1)
	var sb strings.Builder
	for i := 0; i < words; i++ {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(benchWord(int(z.Uint64())))
		if i%12 == 11 {
			sb.WriteByte('.')
		}
	}
	return sb.String()
}

func benchWord(rank int) string {
	if rank < len(benchWords) {
		return benchWords[rank]
	}
	return fmt.Sprintf("w%05dx", rank)
}

// benchQuery picks two query words the way people search: mid-frequency words, ranks 50 to 5,000.
func benchQuery(r *rand.Rand) string {
	return benchWord(50+r.IntN(4950)) + " " + benchWord(50+r.IntN(4950))
}

func percentile(d []time.Duration, p float64) float64 {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
}

// BenchmarkSearch measures, on this machine's Weaviate and PostgreSQL, with the offline embedder:
//   - indexing throughput: 1,000 notes of about four chunks each, written while the indexer is
//     stopped and then indexed (work items to Weaviate), in documents and chunks per second, next to
//     Weaviate's raw batch import of the same number of chunks with the same vector size in the same
//     run (batches of 100, no embedding);
//   - search latency at 100,000 chunks: 300 queries of two mid-frequency words in each mode through
//     index.Search (embedding the query included) on a tenant holding 100,000 chunks of Zipf-
//     distributed text (imported raw), after 50 warm-up queries, p50 and p99;
//   - edit-to-searchable lag: 50 note edits through the API, each timed until a keyword search finds
//     the new word, p50 and p99.
//
// Run with -benchtime 1x.
func BenchmarkSearch(b *testing.B) {
	const docs, bigChunks, queries, edits = 1000, 100_000, 300, 50
	ctx, cancelAll := context.WithCancel(context.Background())
	defer cancelAll()
	app, _ := openApp(b, nil)
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = app.Runtime.Run(ctx) }()
	defer func() { cancelAll(); <-runDone }()
	reg, err := app.Commands.Register(ctx, commands.Context{}, fmt.Sprintf("search-bench-%d@example.com", time.Now().UnixNano()), "Bench", "correct horse battery")
	if err != nil {
		b.Fatal(err)
	}
	cc := commands.Context{Actor: reg.User.ID}
	wv := weaviatetest.Start(b)
	client, err := weaviate.NewClient(weaviate.Config{Host: wv.Host(), Scheme: "http", GrpcConfig: &grpc.Config{Host: wv.GRPC}})
	if err != nil {
		b.Fatal(err)
	}
	emb := embed.NewHashing(384)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < b.N; i++ {
		// Indexing: write the notes, wait for their projection, then index (no indexer runs yet).
		var last commands.NoteResult
		for d := 0; d < docs; d++ {
			if last, err = app.Commands.CreateNote(ctx, cc, reg.User.PersonalSpaceID, fmt.Sprintf("Note %d", d), benchText(r, 450)); err != nil {
				b.Fatal(err)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := app.Runtime.WaitFor(wctx, last.Position, "notes", "search"); err != nil {
			b.Fatal(err)
		}
		cancel()
		start := time.Now()
		for {
			if _, err := app.Indexer.IndexOnce(ctx); err != nil {
				b.Fatal(err)
			}
			if n, err := app.Indexer.Pending(ctx); err != nil {
				b.Fatal(err)
			} else if n == 0 {
				break
			}
		}
		indexing := time.Since(start)
		var chunks int
		if err := app.ProjectorPool.QueryRow(ctx, `SELECT coalesce(sum(chunks), 0) FROM search_docs`).Scan(&chunks); err != nil {
			b.Fatal(err)
		}

		// Raw import of as many chunks, same vectors' size, into a class of its own.
		rawClass := "RawBench" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
		raw := index.New(client, rawClass)
		if err := raw.Ensure(ctx); err != nil {
			b.Fatal(err)
		}
		tenant := uuid.NewString()
		if err := client.Schema().TenantsCreator().WithClassName(rawClass).WithTenants(models.Tenant{Name: tenant}).Do(ctx); err != nil {
			b.Fatal(err)
		}
		rawImport := func(n int) time.Duration {
			texts := make([]string, 0, 100)
			var total time.Duration
			for done := 0; done < n; {
				texts = texts[:0]
				for len(texts) < 100 && done+len(texts) < n {
					texts = append(texts, benchText(r, 110))
				}
				vs, err := emb.Embed(ctx, texts) // not timed: the raw import has its vectors ready
				if err != nil {
					b.Fatal(err)
				}
				batch := client.Batch().ObjectsBatcher()
				for j, t := range texts {
					batch = batch.WithObjects(&models.Object{Class: rawClass, Tenant: tenant, Vector: vs[j],
						ID:         strfmt.UUID(uuid.NewString()),
						Properties: map[string]any{"doc_id": uuid.NewString(), "kind": "note", "space_id": uuid.NewString(), "title": "t", "body": t, "chunk": 0, "source_version": 1}})
				}
				st := time.Now()
				resp, err := batch.Do(ctx)
				total += time.Since(st)
				if err != nil {
					b.Fatal(err)
				}
				for _, o := range resp {
					if o.Result != nil && o.Result.Errors != nil {
						b.Fatalf("raw import: %v", o.Result.Errors.Error[0].Message)
					}
				}
				done += len(texts)
			}
			return total
		}
		rawTime := rawImport(chunks)
		b.ReportMetric(float64(docs)/indexing.Seconds(), "index_docs/s")
		b.ReportMetric(float64(chunks)/indexing.Seconds(), "index_chunks/s")
		b.ReportMetric(float64(chunks)/rawTime.Seconds(), "raw_import_chunks/s")
		b.ReportMetric(100*rawTime.Seconds()/indexing.Seconds(), "index_%_of_raw")

		// Latency at 100k chunks.
		rawImport(bigChunks - chunks)
		for _, mode := range []string{index.Keyword, index.Semantic, index.Hybrid} {
			for w := 0; w < 50; w++ { // warm up: the first queries after an import load the index segments
				text := benchQuery(r)
				vs, _ := emb.Embed(ctx, []string{text})
				if _, err := raw.Search(ctx, index.Query{Text: text, Vector: vs[0], Mode: mode, Tenants: []string{tenant}, Limit: 50}); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, queries)
			for q := range lat {
				text := benchQuery(r)
				start := time.Now()
				vs, err := emb.Embed(ctx, []string{text})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := raw.Search(ctx, index.Query{Text: text, Vector: vs[0], Mode: mode, Tenants: []string{tenant}, Limit: 50}); err != nil {
					b.Fatal(err)
				}
				lat[q] = time.Since(start)
			}
			b.ReportMetric(percentile(lat, 0.5), mode+"_p50_ms")
			b.ReportMetric(percentile(lat, 0.99), mode+"_p99_ms")
		}

		// Edit-to-searchable lag, with the indexer running as in atlas serve.
		ictx, stopIndexer := context.WithCancel(ctx)
		indexerDone := make(chan struct{})
		go func() { defer close(indexerDone); app.Indexer.Run(ictx) }()
		res, err := app.Commands.CreateNote(ctx, cc, reg.User.PersonalSpaceID, "Lag", "nothing yet")
		if err != nil {
			b.Fatal(err)
		}
		lags := make([]time.Duration, edits)
		for e := range lags {
			word := fmt.Sprintf("lagword%dx%d", i, e)
			body := "edited " + word
			start := time.Now()
			if _, err := app.Commands.EditNote(ctx, cc, res.Note.ID, 0, nil, &body); err != nil {
				b.Fatal(err)
			}
			for {
				page, err := app.Search.Search(ctx, projections.SearchRequest{Viewer: reg.User.ID, Text: word, Mode: index.Keyword, Limit: 10})
				if err != nil {
					b.Fatal(err)
				}
				if len(page.Items) > 0 {
					break
				}
				if time.Since(start) > 30*time.Second {
					b.Fatalf("edit %d not searchable after 30 s", e)
				}
				time.Sleep(5 * time.Millisecond)
			}
			lags[e] = time.Since(start)
		}
		stopIndexer()
		<-indexerDone
		b.ReportMetric(percentile(lags, 0.5), "lag_p50_ms")
		b.ReportMetric(percentile(lags, 0.99), "lag_p99_ms")
	}
}

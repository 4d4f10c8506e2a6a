package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/weaviate/weaviate-go-client/v4/weaviate"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// buckets
	_ "gocloud.dev/blob/memblob"  // mem:// buckets
	_ "gocloud.dev/blob/s3blob"   // s3:// buckets

	"github.com/atlas-workspace/atlas/ai/llm"
	"github.com/atlas-workspace/atlas/assistant"
	"github.com/atlas-workspace/atlas/commands"
	"github.com/atlas-workspace/atlas/eventstore"
	"github.com/atlas-workspace/atlas/httpapi"
	"github.com/atlas-workspace/atlas/migrations"
	"github.com/atlas-workspace/atlas/projections"
	"github.com/atlas-workspace/atlas/search/embed"
	"github.com/atlas-workspace/atlas/search/index"
	"github.com/atlas-workspace/atlas/workers"
)

// App is Atlas wired together: the composition root that `atlas serve` runs and end-to-end tests
// start on port 0 with a temporary database.
type App struct {
	Config Config
	Log    *slog.Logger
	Pool   *pgxpool.Pool // as migrations.APIRole
	// ProjectorPool runs as migrations.ProjectorRole.
	ProjectorPool *pgxpool.Pool
	// OwnerPool is the DATABASE_URL user, the tables' owner: only for the DDL of blue/green rebuilds.
	OwnerPool   *pgxpool.Pool
	Bucket      *blob.Bucket
	Signal      *eventstore.Signal
	Store       *eventstore.Store
	Keys        *eventstore.SubjectKeys
	Runtime     *projections.Runtime
	Commands    *commands.Handlers
	API         *httpapi.Server
	Registry    *prometheus.Registry
	Redis       *redis.Client // nil unless REDIS_URL is set
	Reaper      *projections.BlobReaper
	Indexer     *projections.SearchIndexer
	Search      *projections.Searcher
	Collections *projections.SearchCollections
	Assistant   *assistant.Assistant
	Tasks       *workers.Runner // the task queue; runs attempts when ATLAS_TASK_WORKERS > 0

	weaviate *weaviate.Client

	stopWeaviate func()

	hasher commands.PasswordHasher
}

// Open prepares the database (created if missing, migrated) and wires every component. It starts
// nothing; Serve does.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	if err := migrations.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	if _, err := migrations.Up(ctx, cfg.DatabaseURL, log); err != nil {
		return nil, err
	}
	// Two pools, one per database role: the API's (commands and queries, under row-level security)
	// and the projectors'. The DATABASE_URL user, which ran the migrations, owns the tables and is
	// used for nothing else.
	pool, err := openPool(ctx, cfg.DatabaseURL, migrations.APIRole, 20)
	if err != nil {
		return nil, err
	}
	projectorPool, err := openPool(ctx, cfg.DatabaseURL, migrations.ProjectorRole, 16)
	if err != nil {
		pool.Close()
		return nil, err
	}
	ownerPool, err := openPool(ctx, cfg.DatabaseURL, "", 2)
	if err != nil {
		pool.Close()
		projectorPool.Close()
		return nil, err
	}
	a := &App{Config: cfg, Log: log, Pool: pool, ProjectorPool: projectorPool, OwnerPool: ownerPool, Signal: eventstore.NewSignal(), Registry: prometheus.NewRegistry()}
	if a.hasher == nil {
		a.hasher = commands.DefaultArgon2id
	}
	a.Bucket, err = blob.OpenBucket(ctx, cfg.BlobURL)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("open blob bucket %s: %w", redact(cfg.BlobURL), err)
	}
	m := newStoreMetrics(a.Registry)
	registry := eventstore.NewRegistry()
	commands.RegisterEvents(registry)
	a.Keys = eventstore.NewSubjectKeys(pool, cfg.KeyCacheTTL)
	a.Store = eventstore.New(pool, registry, a.Keys, eventstore.Options{Signal: a.Signal, OnAppend: m.appended})
	a.Runtime = projections.NewRuntime(projectorPool, a.Store, a.Signal, log, projections.Options{
		BatchSize: cfg.ProjectorBatch, Fallback: cfg.ProjectorPoll, Admin: ownerPool,
		OnBatch: func(projector string, _ int, _ time.Duration) {
			if projector == projections.SearchProjector && a.Indexer != nil {
				a.Indexer.Nudge() // new work items: index them now rather than at the next poll
			}
		},
	}, projections.Users(), projections.Spaces(), projections.Permissions(), projections.APIKeys(), projections.Orgs(), projections.Notes(), projections.Files(), projections.Chats(), projections.Search(), projections.Platform(),
		projections.Erasure(a.Keys), projections.Tasks())
	a.Commands = commands.New(commands.Config{Store: a.Store, Sessions: commands.Sessions{Pool: pool}, Hasher: a.hasher, SessionTTL: cfg.SessionTTL,
		Bucket: a.Bucket, Keys: a.Keys})
	a.Reaper = &projections.BlobReaper{Pool: projectorPool, Bucket: a.Bucket, Runtime: a.Runtime, Prefix: commands.BlobPrefix, Log: log,
		Lease: cfg.ReaperLease}
	wv, stopWeaviate, err := weaviateClient(cfg, log)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.stopWeaviate = stopWeaviate
	embedder, err := newEmbedder(cfg)
	if err != nil {
		a.Close()
		return nil, err
	}
	idx := index.New(wv, index.ClassFor(embedder.Name()))
	a.Indexer = &projections.SearchIndexer{Pool: projectorPool, Runtime: a.Runtime, Index: idx, Embedder: embedder, Bucket: a.Bucket, Log: log}
	a.Collections = &projections.SearchCollections{Pool: projectorPool, Runtime: a.Runtime, Log: log}
	if _, err := a.Collections.Prepare(ctx, idx.Class()); err != nil {
		a.Close()
		return nil, err
	}
	a.Search = projections.NewSearcher(pool, idx, embedder, log)
	a.Search.Collections = a.Collections
	a.Search.IndexFor = func(class string) *index.Index { return index.New(wv, class) }
	a.weaviate = wv
	health := map[string]httpapi.Check{
		"vector": idx.Ready,
		"db":     func(ctx context.Context) error { return pool.Ping(ctx) },
		"blob":   a.checkBlob,
	}
	var limiter httpapi.RateLimiter = httpapi.NewLocalLimiter()
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		a.Redis = redis.NewClient(opts)
		limiter = httpapi.NewRedisLimiter(redis_rate.NewLimiter(a.Redis), "atlas:", log)
		health["cache"] = func(ctx context.Context) error { return a.Redis.Ping(ctx).Err() }
	}
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newProjectorCollector(a.Runtime), newSealCollector(pool))
	var model assistant.Model
	if cfg.LLMURL != "" {
		client, err := llm.New(llm.Config{URL: cfg.LLMURL, Model: cfg.LLMModel, APIKey: cfg.LLMAPIKey, IdleTimeout: cfg.LLMIdle, RequestTimeout: cfg.LLMTimeout})
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("LLM_URL: %w", err)
		}
		model = client
	}
	a.Assistant = assistant.New(assistant.Config{Chats: a.Commands, Log: a.Store, Model: model, Search: a.Search, Pool: projectorPool, Logger: log,
		StaleAfter: cfg.ChatStaleAfter, SweepInterval: cfg.ChatSweep, Registerer: a.Registry})
	tm, err := taskModel(cfg)
	if err != nil {
		a.Close()
		return nil, err
	}
	queries := projections.NewQueries(pool)
	a.Tasks, err = workers.New(workers.Config{
		Pool: pool, Commands: a.Commands, Log: log, Workers: cfg.TaskWorkers, Lease: cfg.TaskLease, Backoff: cfg.TaskBackoff, Poll: cfg.TaskPoll,
		Registerer: a.Registry,
		Kinds:      workers.Builtin(workers.Deps{Commands: a.Commands, Queries: queries, Bucket: a.Bucket, Model: tm}),
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	a.Commands.UseTaskQueue(a.Tasks)
	a.API = httpapi.New(httpapi.Deps{
		Commands: a.Commands, Queries: projections.NewQueries(pool), Consistency: a.Runtime, Log: a.Store,
		Logger: log, Metrics: a.Registry, Registerer: a.Registry, ConsistencyWait: cfg.ConsistencyWait,
		Health: health, RateLimiter: limiter, TrustProxyHeaders: cfg.TrustProxy, MaxUpload: cfg.MaxUpload, Search: a.Search, Assistant: a.Assistant,
		Signal: a.Signal, Audit: auditing{a.Store, pool}, Roles: projections.NewQueries(pool), Projections: a.Runtime,
		Tasks: taskAPI{h: a.Commands, q: queries, bucket: a.Bucket},
	})
	return a, nil
}

// auditing verifies the log with the API role's pool and reads tenants' events through the store.
type auditing struct {
	*eventstore.Store
	pool *pgxpool.Pool
}

func (a auditing) Verify(ctx context.Context, anchors []eventstore.Anchor) (eventstore.VerifyReport, error) {
	return eventstore.VerifyWith(ctx, a.pool, eventstore.VerifyOptions{Anchors: anchors})
}

// Close releases the app's connections.
func (a *App) Close() {
	if a.Bucket != nil {
		_ = a.Bucket.Close()
	}
	if a.Redis != nil {
		_ = a.Redis.Close()
	}
	a.Pool.Close()
	a.ProjectorPool.Close()
	a.OwnerPool.Close()
	if a.stopWeaviate != nil {
		a.stopWeaviate()
	}
}

// switchCollections makes a new embedder's collection active once it is complete, then drops the one
// it replaced; it checks every two seconds until ctx ends.
func (a *App) switchCollections(ctx context.Context) {
	for {
		old, err := a.Collections.Switch(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			a.Log.Warn("search: switch collections", "error", err)
		case old != "":
			if err := index.New(a.weaviate, old).Drop(ctx); err != nil {
				a.Log.Warn("search: drop the replaced collection", "collection", old, "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// newEmbedder is the OpenAI-compatible client when EMBEDDINGS_URL is set, else the offline hashing
// embedder.
func newEmbedder(cfg Config) (embed.Embedder, error) {
	if cfg.EmbeddingsURL == "" {
		return embed.NewHashing(384), nil
	}
	e, err := embed.NewOpenAI(embed.OpenAIConfig{URL: cfg.EmbeddingsURL, Model: cfg.EmbeddingsModel, APIKey: cfg.EmbeddingsAPIKey})
	if err != nil {
		return nil, fmt.Errorf("EMBEDDINGS_URL: %w", err)
	}
	return e, nil
}

// openPool connects to dbURL allowing at least maxConns connections (more if the URL asks), each
// switched to role (none: the URL's user).
func openPool(ctx context.Context, dbURL, role string, maxConns int32) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if pcfg.MaxConns < maxConns {
		pcfg.MaxConns = maxConns
	}
	eventstore.CancelQueriesOnContextEnd(pcfg)
	if role != "" {
		migrations.ConnectAs(pcfg, role)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		if role == "" {
			role = "the DATABASE_URL user"
		}
		return nil, fmt.Errorf("connect to PostgreSQL as %s: %w", role, err)
	}
	return pool, nil
}

// checkBlob really writes, reads back and deletes an object in the bucket.
func (a *App) checkBlob(ctx context.Context) error {
	key := ".health/" + uuid.NewString()
	want := []byte("atlas health " + key)
	if err := a.Bucket.WriteAll(ctx, key, want, nil); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got, err := a.Bucket.ReadAll(ctx, key)
	delErr := a.Bucket.Delete(ctx, key)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(got) != string(want) {
		return errors.New("read back different bytes")
	}
	if delErr != nil {
		return fmt.Errorf("delete: %w", delErr)
	}
	return nil
}

// Serve runs the HTTP API on ln and every projector until ctx ends, then shuts down in order: stop
// accepting and finish in-flight requests (projectors still run, so requests waiting on a consistency
// token complete), then let each projector finish its batch.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	var wg sync.WaitGroup
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(bg) }()
	}
	run(func(ctx context.Context) {
		if err := a.Runtime.Run(ctx); err != nil {
			a.Log.Error("projectors", "error", err)
		}
	})
	run(a.Runtime.Watch)
	run(eventstore.NewAnnouncer(a.Pool, a.Signal, a.Config.NotifyInterval, a.Log).Run)
	run(func(ctx context.Context) { eventstore.Listen(ctx, a.Pool, a.Signal, a.Log) })
	run(a.sweep)
	run(func(ctx context.Context) { a.Reaper.Run(ctx, a.Config.OrphanGrace, a.Config.OrphanSweep) })
	run(a.Indexer.Run)
	run(a.switchCollections)
	run(func(ctx context.Context) {
		(&eventstore.Sealer{Pool: a.Pool}).Run(ctx, a.Config.SealInterval, func(err error) { a.Log.Warn("seal", "error", err) })
	})
	run(a.Assistant.Run)

	if err := a.Tasks.Start(bg); err != nil {
		stopBG()
		wg.Wait()
		return err
	}

	srv := &http.Server{Handler: a.API.Handler(), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(a.API.CloseStreams)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.Log.Info("serving", "addr", ln.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	a.Log.Info("shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	if err := srv.Shutdown(sctx); err != nil {
		a.Log.Warn("in-flight requests cut off", "error", err)
		_ = srv.Close()
	}
	cancel()
	a.stopTasks()
	a.Log.Info("shutting down: finishing projector batches")
	stopBG()
	wg.Wait()
	a.Log.Info("stopped")
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// stopTasks lets running task attempts finish within the shutdown timeout; those still running then
// are cancelled, recorded as failed with an immediate retry, and taken up by another worker.
func (a *App) stopTasks() {
	a.Log.Info("shutting down: finishing task attempts")
	ctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	defer cancel()
	if err := a.Tasks.Stop(ctx); err != nil {
		a.Log.Warn("task workers stopped with an error", "error", err)
	}
}

// Work runs task attempts only (no HTTP API, no projectors) until ctx ends: `atlas worker`. Its
// appends wake other processes' live streams and projectors through the coalesced NOTIFY.
func (a *App) Work(ctx context.Context) error {
	if a.Config.TaskWorkers <= 0 {
		return errors.New("atlas worker needs ATLAS_TASK_WORKERS > 0")
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		eventstore.NewAnnouncer(a.Pool, a.Signal, a.Config.NotifyInterval, a.Log).Run(bg)
	}()
	if err := a.Tasks.Start(bg); err != nil {
		stopBG()
		wg.Wait()
		return err
	}
	a.Log.Info("task worker running", "worker", a.Tasks.Name(), "workers", a.Config.TaskWorkers)
	<-ctx.Done()
	a.stopTasks()
	stopBG()
	wg.Wait()
	a.Log.Info("stopped")
	return nil
}

// sweep deletes stale sessions and idempotency keys at start and then hourly, until ctx ends.
func (a *App) sweep(ctx context.Context) {
	for {
		sessions, keys, err := a.Commands.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			a.Log.Warn("sweep", "error", err)
		case sessions+keys > 0:
			a.Log.Info("swept", "sessions", sessions, "idempotency_keys", keys)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}

// redact hides credentials in a URL for logs and errors.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

package main

import (
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is everything Atlas reads from its environment. Only this package reads the environment;
// docs/configuration.md documents each variable.
type Config struct {
	DatabaseURL     string        // DATABASE_URL
	Addr            string        // ATLAS_ADDR
	DataDir         string        // ATLAS_DATA_DIR
	BlobURL         string        // BLOB_URL
	LogLevel        slog.Level    // ATLAS_LOG_LEVEL
	SessionTTL      time.Duration // ATLAS_SESSION_TTL
	ProjectorBatch  int           // ATLAS_PROJECTOR_BATCH
	ProjectorPoll   time.Duration // ATLAS_PROJECTOR_POLL
	ShutdownTimeout time.Duration // ATLAS_SHUTDOWN_TIMEOUT
	KeyCacheTTL     time.Duration // ATLAS_KEY_CACHE_TTL
	NotifyInterval  time.Duration // ATLAS_NOTIFY_INTERVAL
	ConsistencyWait time.Duration // ATLAS_CONSISTENCY_WAIT
	TrustProxy      bool          // ATLAS_TRUST_PROXY_HEADERS
	MaxUpload       int64         // ATLAS_MAX_UPLOAD_BYTES
	OrphanGrace     time.Duration // ATLAS_ORPHAN_GRACE
	OrphanSweep     time.Duration // ATLAS_ORPHAN_SWEEP_INTERVAL
	ReaperLease     time.Duration // ATLAS_BLOB_REAPER_LEASE
	SealInterval    time.Duration // ATLAS_SEAL_INTERVAL
	LLMIdle         time.Duration // LLM_IDLE_TIMEOUT
	LLMTimeout      time.Duration // LLM_REQUEST_TIMEOUT
	ChatStaleAfter  time.Duration // ATLAS_CHAT_STALE_AFTER
	ChatSweep       time.Duration // ATLAS_CHAT_SWEEP_INTERVAL
	TaskWorkers     int           // ATLAS_TASK_WORKERS
	TaskLease       time.Duration // ATLAS_TASK_LEASE
	TaskBackoff     time.Duration // ATLAS_TASK_BACKOFF
	TaskPoll        time.Duration // ATLAS_TASK_POLL

	// Reserved for the capabilities that use them (search, cache, embeddings, assistant); read now so
	// that `atlas config` shows the whole contract.
	WeaviateURL, WeaviateGRPC, WeaviateBin, RedisURL, EmbeddingsURL, EmbeddingsModel, EmbeddingsAPIKey, LLMURL, LLMModel, LLMAPIKey string
}

// envVar documents one configuration variable.
type envVar struct {
	Name, Default, Help string
}

// envVars is the configuration contract, printed by `atlas config` and kept in docs/configuration.md.
var envVars = []envVar{
	{"DATABASE_URL", "postgres://postgres@127.0.0.1:5432/atlas?sslmode=disable", "PostgreSQL connection URL; the database is created if missing."},
	{"ATLAS_ADDR", ":8080", "HTTP listen address."},
	{"ATLAS_DATA_DIR", "./data", "Local data directory (default blob bucket lives under it)."},
	{"BLOB_URL", "file://$ATLAS_DATA_DIR/blobs", "Blob bucket URL (gocloud.dev/blob): file://, s3:// (credentials from AWS_* variables) or mem://."},
	{"ATLAS_MAX_UPLOAD_BYTES", "104857600", "Largest file content accepted, in bytes (100 MiB); larger uploads are 413."},
	{"ATLAS_ORPHAN_GRACE", "24h", "Age after which stored content that no event references (an upload cut off before its event) is deleted."},
	{"ATLAS_ORPHAN_SWEEP_INTERVAL", "1h", "How often the orphan sweep runs."},
	{"ATLAS_BLOB_REAPER_LEASE", "1m", "How long the blob reaper's claim on a deletion lasts; a claim of a process that died is taken up again after it."},
	{"ATLAS_SEAL_INTERVAL", "10s", "How often the sealer seals the final part of the global order into audit_seals (tamper evidence)."},
	{"ATLAS_TASK_WORKERS", "4", "Task attempts this process runs at once (atlas serve and atlas worker); 0: it queues tasks but runs none."},
	{"ATLAS_TASK_LEASE", "30s", "How long a running task attempt stays claimed without a heartbeat (heartbeats every third of it); an attempt of a worker that died is retried elsewhere after it."},
	{"ATLAS_TASK_BACKOFF", "5s", "Delay before a failed task attempt's retry; it doubles with each further attempt, up to 10 minutes."},
	{"ATLAS_TASK_POLL", "1s", "How often an idle task worker looks for due attempts (new tasks also wake it at once)."},
	{"ATLAS_LOG_LEVEL", "info", "debug, info, warn or error. Logs are JSON on stdout."},
	{"ATLAS_SESSION_TTL", "720h", "Lifetime of a session token."},
	{"ATLAS_PROJECTOR_BATCH", "100", "Events per projector transaction."},
	{"ATLAS_PROJECTOR_POLL", "1s", "Fallback poll of an idle projector when no wake-up signal arrives."},
	{"ATLAS_SHUTDOWN_TIMEOUT", "25s", "How long SIGTERM waits for in-flight requests before closing them."},
	{"ATLAS_KEY_CACHE_TTL", "1m", "How long a person's data key stays cached (bounds how long an erasure takes to reach every process)."},
	{"ATLAS_NOTIFY_INTERVAL", "5ms", "Minimum gap between the coalesced NOTIFYs that wake other processes' projectors."},
	{"ATLAS_CONSISTENCY_WAIT", "5s", "How long a query given a consistency token waits for the read models before 503 not_ready."},
	{"ATLAS_TRUST_PROXY_HEADERS", "false", "Take the client IP (for rate limits and logs) from X-Forwarded-For; only behind a proxy that sets it."},
	{"WEAVIATE_URL", "", "Weaviate HTTP endpoint for search, e.g. http://127.0.0.1:8080 (unset: start, or reuse, a local Weaviate on 127.0.0.1:8079)."},
	{"ATLAS_WEAVIATE_BIN", "", "The weaviate-server binary started when WEAVIATE_URL is unset (unset: found on PATH, then in $GOPATH/bin)."},
	{"WEAVIATE_GRPC_URL", "", "Weaviate gRPC address host:port, used for batch imports (unset: WEAVIATE_URL's host, port 50051)."},
	{"REDIS_URL", "", "Redis for rate limits shared by every process, e.g. redis://127.0.0.1:6379/0 (unset: in-process limits)."},
	{"EMBEDDINGS_URL", "", "OpenAI-compatible embeddings endpoint (unset: the offline embedder)."},
	{"EMBEDDINGS_MODEL", "", "Embeddings model name."},
	{"EMBEDDINGS_API_KEY", "", "Embeddings API key."},
	{"LLM_URL", "", "OpenAI-compatible chat-completions endpoint (unset: no assistant)."},
	{"LLM_MODEL", "", "Chat model name."},
	{"LLM_API_KEY", "", "Chat API key."},
	{"LLM_IDLE_TIMEOUT", "30s", "Longest wait for the model's first or next streamed chunk before a reply fails as stalled."},
	{"LLM_REQUEST_TIMEOUT", "5m", "Longest model request (one round of a reply, stream included) before the reply fails as timed out."},
	{"ATLAS_CHAT_STALE_AFTER", "2m", "A chat reply without progress for this long, and written by no live process, fails as interrupted (must exceed LLM_IDLE_TIMEOUT)."},
	{"ATLAS_CHAT_SWEEP_INTERVAL", "30s", "How often each process looks for interrupted chat replies (and once at start-up)."},
}

// LoadConfig reads the environment through getenv (os.Getenv in production).
func LoadConfig(getenv func(string) string) (Config, error) {
	get := func(name string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		for _, e := range envVars {
			if e.Name == name {
				return e.Default
			}
		}
		return ""
	}
	var errs []string
	dur := func(name string) time.Duration {
		d, err := time.ParseDuration(get(name))
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Sprintf("%s=%q is not a positive duration", name, get(name)))
		}
		return d
	}
	c := Config{
		DatabaseURL:      get("DATABASE_URL"),
		Addr:             get("ATLAS_ADDR"),
		DataDir:          get("ATLAS_DATA_DIR"),
		SessionTTL:       dur("ATLAS_SESSION_TTL"),
		ProjectorPoll:    dur("ATLAS_PROJECTOR_POLL"),
		ShutdownTimeout:  dur("ATLAS_SHUTDOWN_TIMEOUT"),
		KeyCacheTTL:      dur("ATLAS_KEY_CACHE_TTL"),
		NotifyInterval:   dur("ATLAS_NOTIFY_INTERVAL"),
		ConsistencyWait:  dur("ATLAS_CONSISTENCY_WAIT"),
		OrphanGrace:      dur("ATLAS_ORPHAN_GRACE"),
		OrphanSweep:      dur("ATLAS_ORPHAN_SWEEP_INTERVAL"),
		ReaperLease:      dur("ATLAS_BLOB_REAPER_LEASE"),
		SealInterval:     dur("ATLAS_SEAL_INTERVAL"),
		LLMIdle:          dur("LLM_IDLE_TIMEOUT"),
		LLMTimeout:       dur("LLM_REQUEST_TIMEOUT"),
		ChatStaleAfter:   dur("ATLAS_CHAT_STALE_AFTER"),
		ChatSweep:        dur("ATLAS_CHAT_SWEEP_INTERVAL"),
		TaskLease:        dur("ATLAS_TASK_LEASE"),
		TaskBackoff:      dur("ATLAS_TASK_BACKOFF"),
		TaskPoll:         dur("ATLAS_TASK_POLL"),
		WeaviateURL:      get("WEAVIATE_URL"),
		WeaviateGRPC:     get("WEAVIATE_GRPC_URL"),
		WeaviateBin:      get("ATLAS_WEAVIATE_BIN"),
		RedisURL:         get("REDIS_URL"),
		EmbeddingsURL:    get("EMBEDDINGS_URL"),
		EmbeddingsModel:  get("EMBEDDINGS_MODEL"),
		LLMURL:           get("LLM_URL"),
		LLMModel:         get("LLM_MODEL"),
		LLMAPIKey:        get("LLM_API_KEY"),
		EmbeddingsAPIKey: get("EMBEDDINGS_API_KEY"),
	}
	switch get("ATLAS_TRUST_PROXY_HEADERS") {
	case "true", "1", "yes":
		c.TrustProxy = true
	case "false", "0", "no":
	default:
		errs = append(errs, "ATLAS_TRUST_PROXY_HEADERS must be true or false")
	}
	n, err := strconv.Atoi(get("ATLAS_PROJECTOR_BATCH"))
	if err != nil || n < 1 || n > 10000 {
		errs = append(errs, fmt.Sprintf("ATLAS_PROJECTOR_BATCH=%q must be 1..10000", get("ATLAS_PROJECTOR_BATCH")))
	}
	c.ProjectorBatch = n
	tw, err := strconv.Atoi(get("ATLAS_TASK_WORKERS"))
	if err != nil || tw < 0 || tw > 1000 {
		errs = append(errs, fmt.Sprintf("ATLAS_TASK_WORKERS=%q must be 0..1000", get("ATLAS_TASK_WORKERS")))
	}
	c.TaskWorkers = tw
	if c.TaskLease > 0 && c.TaskLease < 300*time.Millisecond {
		errs = append(errs, fmt.Sprintf("ATLAS_TASK_LEASE=%q must be at least 300ms", get("ATLAS_TASK_LEASE")))
	}
	maxUp, err := strconv.ParseInt(get("ATLAS_MAX_UPLOAD_BYTES"), 10, 64)
	if err != nil || maxUp < 1 {
		errs = append(errs, fmt.Sprintf("ATLAS_MAX_UPLOAD_BYTES=%q must be a positive number of bytes", get("ATLAS_MAX_UPLOAD_BYTES")))
	}
	c.MaxUpload = maxUp
	if err := c.LogLevel.UnmarshalText([]byte(get("ATLAS_LOG_LEVEL"))); err != nil {
		errs = append(errs, fmt.Sprintf("ATLAS_LOG_LEVEL=%q must be debug, info, warn or error", get("ATLAS_LOG_LEVEL")))
	}
	if (c.LLMURL == "") != (c.LLMModel == "") {
		errs = append(errs, "LLM_URL and LLM_MODEL are set together (both unset: no assistant)")
	}
	if c.ChatStaleAfter > 0 && c.ChatStaleAfter <= c.LLMIdle {
		errs = append(errs, fmt.Sprintf("ATLAS_CHAT_STALE_AFTER (%s) must exceed LLM_IDLE_TIMEOUT (%s)", c.ChatStaleAfter, c.LLMIdle))
	}
	if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		errs = append(errs, "DATABASE_URL must be a postgres:// URL")
	}
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	c.BlobURL = getenv("BLOB_URL")
	if c.BlobURL == "" {
		c.BlobURL = "file://" + filepath.ToSlash(filepath.Join(c.DataDir, "blobs")) + "?create_dir=true&no_tmp_dir=true"
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("configuration: %s", strings.Join(errs, "; "))
	}
	return c, nil
}

// printConfig prints each variable's value in effect (secrets and URL passwords hidden) and its default.
func printConfig(getenv func(string) string) {
	for _, e := range envVars {
		v := getenv(e.Name)
		switch {
		case v == "":
			v = "(default)"
		case strings.HasSuffix(e.Name, "_API_KEY"):
			v = "(set, hidden)"
		case strings.HasSuffix(e.Name, "_URL"):
			v = redact(v)
		}
		def := e.Default
		if def == "" {
			def = "(unset)"
		}
		fmt.Fprintf(os.Stdout, "%-22s %-40s default %-58s %s\n", e.Name, v, def, e.Help)
	}
}

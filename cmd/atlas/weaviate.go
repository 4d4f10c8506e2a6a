package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/weaviate/weaviate-go-client/v4/weaviate"
	"github.com/weaviate/weaviate-go-client/v4/weaviate/grpc"
)

// Ports of the Weaviate that `atlas serve` starts on loopback when WEAVIATE_URL is unset.
const (
	localWeaviateHTTP    = 8079
	localWeaviateGRPC    = 50061
	localWeaviateGossip  = 7161
	localWeaviateData    = 7162
	localWeaviateRaft    = 8309
	localWeaviateRaftRPC = 8310
)

// weaviateClient connects to WEAVIATE_URL (gRPC at WEAVIATE_GRPC_URL), or to a local Weaviate it
// starts, or finds already running, on loopback.
func weaviateClient(cfg Config, log *slog.Logger) (*weaviate.Client, func(), error) {
	httpURL, grpcAddr, stop := cfg.WeaviateURL, cfg.WeaviateGRPC, func() {}
	if httpURL == "" {
		httpURL = fmt.Sprintf("http://127.0.0.1:%d", localWeaviateHTTP)
		grpcAddr = fmt.Sprintf("127.0.0.1:%d", localWeaviateGRPC)
		var err error
		if stop, err = startLocalWeaviate(cfg, httpURL, log); err != nil {
			return nil, nil, err
		}
	}
	u, err := url.Parse(httpURL)
	if err != nil || u.Host == "" {
		stop()
		return nil, nil, fmt.Errorf("WEAVIATE_URL %q is not a URL", httpURL)
	}
	if grpcAddr == "" {
		grpcAddr = u.Hostname() + ":50051"
	}
	c, err := weaviate.NewClient(weaviate.Config{Host: u.Host, Scheme: u.Scheme, GrpcConfig: &grpc.Config{Host: grpcAddr}})
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("weaviate client: %w", err)
	}
	return c, stop, nil
}

// startLocalWeaviate runs weaviate-server (installed by scripts/ensure-weaviate.sh) with its data
// under ATLAS_DATA_DIR/weaviate, unless one already answers at httpURL. It does not wait for it to
// be ready: until it is, search answers from PostgreSQL and indexing waits. The process ends with
// Atlas (stop, and on Linux also if Atlas dies).
func startLocalWeaviate(cfg Config, httpURL string, log *slog.Logger) (func(), error) {
	client := &http.Client{Timeout: time.Second}
	if res, err := client.Get(httpURL + "/v1/.well-known/ready"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			log.Info("reusing the local Weaviate", "url", httpURL)
			return func() {}, nil
		}
	}
	bin, err := weaviateBinary(cfg.WeaviateBin)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.DataDir, "weaviate")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(dir, "weaviate.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--host", "127.0.0.1", "--port", strconv.Itoa(localWeaviateHTTP), "--scheme", "http")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childProcAttr()
	cmd.Env = append(os.Environ(),
		"PERSISTENCE_DATA_PATH="+filepath.Join(dir, "data"),
		"AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=true", "DEFAULT_VECTORIZER_MODULE=none",
		"CLUSTER_HOSTNAME=atlas", "CLUSTER_ADVERTISE_ADDR=127.0.0.1", "CLUSTER_BIND_ADDR=127.0.0.1",
		"RAFT_BOOTSTRAP_EXPECT=1", "DISABLE_TELEMETRY=true", "GO_PROFILING_DISABLE=true",
		"GRPC_PORT="+strconv.Itoa(localWeaviateGRPC),
		"CLUSTER_GOSSIP_BIND_PORT="+strconv.Itoa(localWeaviateGossip),
		"CLUSTER_DATA_BIND_PORT="+strconv.Itoa(localWeaviateData),
		"RAFT_PORT="+strconv.Itoa(localWeaviateRaft),
		"RAFT_INTERNAL_RPC_PORT="+strconv.Itoa(localWeaviateRaftRPC))
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	log.Info("started a local Weaviate", "url", httpURL, "pid", cmd.Process.Pid, "log", logFile.Name())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(done) }()
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}, nil
}

// weaviateBinary finds weaviate-server: ATLAS_WEAVIATE_BIN, then PATH, then $GOPATH/bin.
func weaviateBinary(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if p, err := exec.LookPath("weaviate-server"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	p := filepath.Join(filepath.SplitList(gopath)[0], "bin", "weaviate-server")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("weaviate-server is not installed (run scripts/ensure-weaviate.sh) and WEAVIATE_URL is not set")
	}
	return p, nil
}

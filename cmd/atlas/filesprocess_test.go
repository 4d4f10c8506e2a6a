package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/atlas-workspace/atlas/internal/blobtest"
	"github.com/atlas-workspace/atlas/internal/pgtest"
)

// startProcess runs the test binary as `atlas serve` with env, and waits until it answers.
func startProcess(t *testing.T, env ...string) (*exec.Cmd, *server, *bytes.Buffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(os.Args[0], "serve")
	cmd.Env = append(append(os.Environ(), "ATLAS_TEST_EXEC=1", "ATLAS_ADDR="+addr, "ATLAS_LOG_LEVEL=warn"), env...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	s := &server{t: t, base: "http://" + addr}
	waitFor(t, 30*time.Second, "the server comes up", func() bool {
		res, err := http.Get(s.base + "/api/health")
		if err == nil {
			res.Body.Close()
		}
		return err == nil
	})
	return cmd, s, &logs
}

// TestBlobReaperKilledAndRestartedLeavesNoBlobs deletes a space with many files, SIGKILLs the
// process while its blob reaper is deleting their content, starts another process on the same
// database and bucket, and waits until the bucket holds nothing and no work item is left.
func TestBlobReaperKilledAndRestartedLeavesNoBlobs(t *testing.T) {
	dbURL, dataDir := pgtest.NewURL(t), t.TempDir()
	env := []string{"DATABASE_URL=" + dbURL, "ATLAS_DATA_DIR=" + dataDir, "ATLAS_BLOB_REAPER_LEASE=1s"}
	cmd, s, logs := startProcess(t, env...)
	token, _, _ := s.register("reaper@example.com", "Reaper")
	r := s.do("POST", "/api/v1/spaces", token, map[string]string{"name": "Many", "slug": "many"})
	expect(t, r, 201, "")
	sp := r.json(t)["id"].(string)
	const files = 300
	for i := 0; i < files; i++ {
		expect(t, s.upload(token, sp, fmt.Sprintf("f%03d.txt", i), []byte(fmt.Sprint(i))), 201, "")
	}
	if n := blobCount(t, dataDir); n != files {
		t.Fatalf("%d objects stored, want %d", n, files)
	}
	expect(t, s.do("DELETE", "/api/v1/spaces/"+sp, token, nil), 200, "")
	var seen int
	deadline := time.Now().Add(30 * time.Second)
	for {
		seen = blobCount(t, dataDir)
		if seen < files || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown, claims and all left as they are
		t.Fatal(err)
	}
	_, _ = cmd.Process.Wait()
	left := blobCount(t, dataDir)
	t.Logf("killed with %d of %d objects left (seen %d)", left, files, seen)
	if left == 0 || left == files {
		t.Fatalf("the kill did not land while the reaper was deleting (%d of %d objects left)", left, files)
	}
	_, _, logs2 := startProcess(t, env...)
	waitFor(t, 60*time.Second, "the restarted process deletes every object", func() bool { return blobCount(t, dataDir) == 0 })
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	waitFor(t, 10*time.Second, "no work item is left", func() bool {
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM blob_deletions`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	_, _ = logs, logs2
}

// TestLargeUploadStreams uploads and downloads 200 MiB and checks that the server's heap grows by
// less than 64 MiB meanwhile: content is streamed both ways, never held in memory.
func TestLargeUploadStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MiB through the race detector takes a while")
	}
	s := startServerWith(t, map[string]string{"ATLAS_MAX_UPLOAD_BYTES": fmt.Sprint(256 << 20)})
	token, _, personal := s.register("large@example.com", "Large")
	const size = 200 << 20
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	seed := make([]byte, 1<<20)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	content := io.LimitReader(repeatReader(seed), size) // generated as it is sent
	body, ct := multipartBody(part{name: "file", filename: "large.bin", body: content})
	r := s.send("POST", "/api/v1/spaces/"+personal+"/files", token, body, ct)
	expect(t, r, 201, "")
	id := r.json(t)["id"].(string)
	if r.json(t)["size"] != float64(size) {
		t.Fatalf("stored size: %s", r.body)
	}
	req, _ := http.NewRequest("GET", s.base+"/api/v1/files/"+id+"/content", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Consistency-Token", r.json(t)["position"].(string))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil || n != size || res.StatusCode != 200 {
		t.Fatalf("download: %d bytes, status %d, %v", n, res.StatusCode, err)
	}
	close(stop)
	<-sampled
	growth := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("heap in use: %d MiB before, peak %d MiB (growth %d MiB) for a %d MiB upload and download",
		base.HeapInuse>>20, peak.Load()>>20, growth>>20, size>>20)
	if growth > 64<<20 {
		t.Fatalf("the heap grew by %d MiB during a 200 MiB upload and download; want < 64 MiB", growth>>20)
	}
}

// repeatReader repeats b forever.
type repeatReader []byte

func (r repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r)
	}
	return n, nil
}

// TestFilesOnS3 runs the upload, range download, version and deletion path against a real S3 server
// (versitygw) instead of a file:// bucket.
func TestFilesOnS3(t *testing.T) {
	bucketURL := blobtest.S3URL(t)
	s := startServerWith(t, map[string]string{"BLOB_URL": bucketURL})
	expect(t, s.do("GET", "/api/health/blob", "", nil), 200, "")
	token, _, personal := s.register("s3@example.com", "S3")
	data := bytes.Repeat([]byte("0123456789"), 700_000) // 7 MB: a multipart upload to S3
	r := s.upload(token, personal, "data.bin", data)
	expect(t, r, 201, "")
	id := r.json(t)["id"].(string)
	if r.json(t)["sha256"] != sha(data) {
		t.Fatalf("upload: %s", r.body)
	}
	r = s.do("GET", "/api/v1/files/"+id+"/content", token, nil, "Range", "bytes=10-19", "X-Consistency-Token", r.json(t)["position"].(string))
	if r.status != 206 || string(r.body) != "0123456789" {
		t.Fatalf("range from S3: %d %q", r.status, r.body)
	}
	body, ct := multipartBody(part{name: "file", filename: "v2", body: bytes.NewReader([]byte("second"))})
	expect(t, s.send("PUT", "/api/v1/files/"+id+"/content", token, body, ct), 200, "")
	r = s.do("GET", "/api/v1/files/"+id+"/versions/1/content", token, nil)
	if r.status != 200 || !bytes.Equal(r.body, data) {
		t.Fatalf("version 1 from S3: %d, %d bytes", r.status, len(r.body))
	}
	expect(t, s.do("DELETE", "/api/v1/files/"+id, token, nil), 200, "")
	waitFor(t, 20*time.Second, "both versions are deleted from S3", func() bool {
		n, err := s.app.Reaper.Pending(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			return false
		}
		it := s.app.Bucket.List(nil)
		_, err = it.Next(context.Background())
		return err == io.EOF
	})
}

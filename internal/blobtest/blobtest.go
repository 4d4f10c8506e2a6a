// Package blobtest gives tests an empty S3 bucket of their own, served by a local versitygw (an
// S3-compatible server over a directory), so that the s3:// path of gocloud.dev/blob is exercised
// against a real server.
//
// The first call to S3URL in a test binary starts one versitygw for the whole binary; every call
// creates a new bucket on it. A package that calls S3URL must stop the server when its tests end:
//
//	func TestMain(m *testing.M) { os.Exit(blobtest.Run(m)) }
//
// If the test binary dies without running Stop (a panic, a -timeout, a signal), the kernel kills
// versitygw too on Linux (Pdeathsig); only its temporary directory is left behind.
//
// The binary is $ATLAS_VERSITYGW if set, else versitygw in $GOPATH/bin (scripts/ensure-versitygw.sh
// installs it there), else on $PATH.
package blobtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/atlas-workspace/atlas/internal/testbin"
)

// startTimeout bounds how long versitygw may take to accept requests (a loaded machine running
// the tests with -race is slow).
const startTimeout = 60 * time.Second

var (
	once     sync.Once
	srv      *server
	startErr error
)

var errStopped = errors.New("blobtest: the versitygw server was stopped (S3URL called after Stop)")

type server struct {
	cmd       *exec.Cmd
	endpoint  string // http://127.0.0.1:<port>
	root      string // the gateway's directory; each sub-directory is a bucket
	accessKey string // the root user's key pair, random per server
	secretKey string
	out       *capped
	done      chan struct{} // closed once the process has exited
	waitErr   error         // set before done is closed
}

// S3URL creates an empty bucket with a unique name and returns its gocloud.dev/blob URL, for
// example s3://atlas-test-0123456789abcdef?endpoint=http://127.0.0.1:40123&use_path_style=true&...
// Open it with blob.OpenBucket after a blank import of gocloud.dev/blob/s3blob. The bucket's
// directory is removed when the test ends.
//
// Credentials: the s3blob driver reads them from the environment, so the first call sets
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the whole process to the server's random key
// pair, and unsets AWS_SESSION_TOKEN. This is done once, with os.Setenv rather than t.Setenv,
// because t.Setenv panics in parallel tests; the values stay for the rest of the test binary.
//
// If versitygw is not installed, S3URL fails the test, saying to run scripts/ensure-versitygw.sh.
func S3URL(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		srv, startErr = start()
		if startErr == nil {
			os.Setenv("AWS_ACCESS_KEY_ID", srv.accessKey)
			os.Setenv("AWS_SECRET_ACCESS_KEY", srv.secretKey)
			os.Unsetenv("AWS_SESSION_TOKEN")
		}
	})
	if startErr != nil {
		t.Fatalf("%v", startErr)
	}
	select {
	case <-srv.done:
		t.Fatalf("blobtest: versitygw exited (%v); its output:\n%s", srv.waitErr, srv.out)
	default:
	}
	name := "atlas-test-" + randomHex(8)
	dir := filepath.Join(srv.root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("blobtest: create bucket: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return "s3://" + name + "?endpoint=" + srv.endpoint +
		"&use_path_style=true&region=us-east-1&disable_https=true" +
		"&request_checksum_calculation=when_required&response_checksum_validation=when_required"
}

// Run runs the tests, then stops the server if one was started, and returns the exit code for
// os.Exit. Call it from TestMain in every package that uses S3URL.
func Run(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

// Stop kills the server, if one was started, and removes its directory. Later S3URL calls fail.
func Stop() {
	once.Do(func() { startErr = errStopped })
	if srv == nil {
		return
	}
	_ = srv.cmd.Process.Kill()
	<-srv.done
	_ = os.RemoveAll(srv.root)
	srv, startErr = nil, errStopped
}

// start finds the binary and starts versitygw on a free loopback port. The port is chosen by
// listening on port 0 and closing the listener, so another process may take it before versitygw
// binds it; a gateway that exits before it is ready is therefore retried on a new port.
func start() (*server, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		s, err := startOnce(bin)
		if err == nil || attempt == 3 || !errors.Is(err, errExited) {
			return s, err
		}
	}
}

var errExited = errors.New("versitygw exited before accepting requests")

func startOnce(bin string) (*server, error) {
	root, err := os.MkdirTemp("", "atlas-versitygw-")
	if err != nil {
		return nil, fmt.Errorf("blobtest: %w", err)
	}
	port, err := freePort()
	if err != nil {
		_ = os.RemoveAll(root)
		return nil, fmt.Errorf("blobtest: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	s := &server{endpoint: "http://" + addr, root: root, accessKey: randomHex(10), secretKey: randomHex(20),
		out: &capped{max: 64 << 10}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "--port", addr, "--quiet", "posix", root)
	// Only what versitygw needs: no VGW_* or ROOT_* variables of the caller's environment.
	s.cmd.Env = []string{"ROOT_ACCESS_KEY=" + s.accessKey, "ROOT_SECRET_KEY=" + s.secretKey}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = sysProcAttr()

	// On Linux, Pdeathsig fires when the thread that started the child exits, not the process. The
	// Go runtime may end idle threads, so the child is started from a goroutine locked to its thread,
	// which waits for the child and only then ends (taking the thread with it).
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := s.cmd.Start(); err != nil {
			started <- err
			runtime.UnlockOSThread()
			return
		}
		started <- nil
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	if err := <-started; err != nil {
		_ = os.RemoveAll(root)
		return nil, fmt.Errorf("blobtest: start %s: %w", bin, err)
	}
	if err := s.waitReady(); err != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
		_ = os.RemoveAll(root)
		return nil, err
	}
	return s, nil
}

// waitReady polls the gateway until it answers an HTTP request (any status: an unsigned request
// is refused, which still shows it is serving), it exits, or startTimeout passes.
func (s *server) waitReady() error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(s.endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("blobtest: versitygw did not accept requests on %s within %s (last error: %v); its output:\n%s",
				s.endpoint, startTimeout, err, s.out)
		}
		select {
		case <-s.done:
			return fmt.Errorf("blobtest: %w (%v); its output:\n%s", errExited, s.waitErr, s.out)
		case <-tick.C:
		}
	}
}

// binary finds versitygw (internal/testbin.Find).
func binary() (string, error) {
	p, err := testbin.Find("versitygw", "ATLAS_VERSITYGW", "scripts/ensure-versitygw.sh")
	if err != nil {
		return "", fmt.Errorf("blobtest: %w", err)
	}
	return p, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// capped keeps the first max bytes written to it: versitygw's output, for error messages.
type capped struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

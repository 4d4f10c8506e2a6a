// Package weaviatetest gives tests a real Weaviate: one weaviate-server per test binary, on loopback,
// over a temporary data directory, with anonymous access and no vectorizer module (the tests bring
// their own vectors).
//
// The first call to URL, GRPCAddr or Start in a test binary starts the server; later calls reuse it.
// A package that uses it must stop the server when its tests end:
//
//	func TestMain(m *testing.M) { os.Exit(weaviatetest.Run(m)) }
//
// If the test binary dies without running Run to its end (a panic, a -timeout, a signal), the kernel
// kills weaviate-server too on Linux (Pdeathsig); only its temporary directory is left behind.
//
// Down and back: Stop (a clean shutdown) or Kill (SIGKILL, as in a crash) ends the server but keeps
// its data directory and its ports; the next Start, URL or GRPCAddr starts it again on the same
// directory and ports, so the addresses handed out before stay valid and the data is still there.
// Only a test that does not call t.Parallel may stop the server: Go runs such a test while no
// parallel test is running, and a parallel test calling URL in the meantime would start it again.
//
// Ports: weaviate-server listens on six ports (HTTP, gRPC, gossip over TCP and UDP, cluster data,
// Raft, Raft RPC), all chosen at random below the kernel's ephemeral port range, so that neither
// outgoing connections nor servers asking for port 0 are given them while the server is stopped.
// On Linux each port is also reserved with a lock file in $TMPDIR/atlas-weaviatetest-ports, held
// for the life of the test binary, so that two test binaries running at once (go test ./...) do not
// choose the same port; the lock files are left in place.
//
// The binary is $ATLAS_WEAVIATE if set, else weaviate-server in $GOPATH/bin
// (scripts/ensure-weaviate.sh installs it there), else on $PATH.
package weaviatetest

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atlas-workspace/atlas/internal/testbin"
)

const (
	// startTimeout bounds how long weaviate-server may take to become ready (usually 10 to 20
	// seconds; a loaded machine running the tests with -race is slower).
	startTimeout = 60 * time.Second
	// stopTimeout bounds a clean shutdown (Stop); the server is killed after it.
	stopTimeout = 30 * time.Second
	// portsTimeout bounds the wait, before a restart, for the ports of the stopped server to be free.
	portsTimeout = 10 * time.Second
)

// Server holds the addresses of the running Weaviate.
type Server struct {
	HTTP string // base URL of the REST and GraphQL API: http://127.0.0.1:<port>
	GRPC string // host:port of the gRPC API: 127.0.0.1:<port>
}

// Host is the HTTP address without its scheme, 127.0.0.1:<port>, as weaviate.Config.Host wants it.
func (s Server) Host() string { return strings.TrimPrefix(s.HTTP, "http://") }

var (
	mu       sync.Mutex // guards everything below; held while the server starts or stops
	inst     *instance  // nil until the first start succeeds, and after Run
	setupErr error      // why the first start failed; later calls fail the same way
	closed   bool       // Run has ended: no more starts
)

var errClosed = errors.New("weaviatetest: the server was removed (called after Run's tests ended)")

// instance is the server of the test binary: what survives a stop and a restart.
type instance struct {
	bin   string
	dir   string // PERSISTENCE_DATA_PATH, and the process's working directory
	ports ports
	locks []io.Closer // the ports' lock files, held until Run ends
	proc  *process    // nil while stopped
}

type ports struct{ http, grpc, gossip, data, raft, raftRPC int }

func (p ports) all() []int { return []int{p.http, p.grpc, p.gossip, p.data, p.raft, p.raftRPC} }

// process is one run of weaviate-server.
type process struct {
	cmd     *exec.Cmd
	out     *capped
	done    chan struct{} // closed once the process has exited
	waitErr error         // set before done is closed
}

// URL starts the server if it is not running and returns its HTTP base URL,
// http://127.0.0.1:<port>.
func URL(t testing.TB) string {
	t.Helper()
	return Start(t).HTTP
}

// GRPCAddr starts the server if it is not running and returns the host:port of its gRPC API (the
// Go client's objects batcher uses it).
func GRPCAddr(t testing.TB) string {
	t.Helper()
	return Start(t).GRPC
}

// Start starts the server if it is not running and returns its addresses, which are the same for
// the whole test binary. After Stop or Kill it starts the server again on the same data directory
// and ports. It fails the test if weaviate-server is not installed (saying to run
// scripts/ensure-weaviate.sh), does not become ready within a minute, or exited without Stop or Kill.
func Start(t testing.TB) Server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if closed {
		t.Fatalf("%v", errClosed)
	}
	if setupErr != nil {
		t.Fatalf("%v", setupErr)
	}
	if inst == nil {
		inst, setupErr = first()
		if setupErr != nil {
			t.Fatalf("%v", setupErr)
		}
		return inst.server()
	}
	if p := inst.proc; p != nil {
		select {
		case <-p.done:
			t.Fatalf("weaviatetest: weaviate-server exited (%v) although nothing stopped it; its output:\n%s", p.waitErr, p.out)
		default:
		}
		return inst.server()
	}
	if err := inst.restart(); err != nil {
		t.Fatalf("%v", err)
	}
	return inst.server()
}

// Stop shuts the server down cleanly (SIGTERM, then SIGKILL if it has not exited within 30
// seconds) and waits for it to exit. Its data directory and ports are kept for the next Start. It
// does nothing if the server is not running.
func Stop() { stop(syscall.SIGTERM) }

// Kill kills the server (SIGKILL, as in a crash) and waits for it to exit. Its data directory and
// ports are kept for the next Start. It does nothing if the server is not running.
func Kill() { stop(os.Kill) }

func stop(sig os.Signal) {
	mu.Lock()
	defer mu.Unlock()
	if inst == nil || inst.proc == nil {
		return
	}
	inst.proc.stop(sig)
	inst.proc = nil
}

// Run runs the tests, then kills the server if one was started, removes its data directory and
// releases its ports, and returns the exit code for os.Exit. Call it from TestMain in every package
// that uses the server.
func Run(m *testing.M) int {
	code := m.Run()
	remove()
	return code
}

// Shutdown stops the server, if one was started, and removes its directory: for a TestMain that
// runs the tests through another helper (Run does this itself).
func Shutdown() { remove() }

func remove() {
	mu.Lock()
	defer mu.Unlock()
	closed = true
	if inst == nil {
		return
	}
	if inst.proc != nil {
		inst.proc.stop(os.Kill)
	}
	_ = os.RemoveAll(inst.dir)
	for _, l := range inst.locks {
		_ = l.Close()
	}
	inst = nil
}

func (in *instance) server() Server {
	return Server{
		HTTP: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(in.ports.http)),
		GRPC: net.JoinHostPort("127.0.0.1", strconv.Itoa(in.ports.grpc)),
	}
}

// first finds the binary and starts the server on a new data directory and new ports. A port that
// was free when checked may be taken before weaviate-server binds it (by a process that takes no
// lock); a server that exits before it is ready is therefore retried on new ports.
func first() (*instance, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		in, err := firstOnce(bin)
		if err == nil || attempt == 3 || !errors.Is(err, errExited) {
			return in, err
		}
	}
}

func firstOnce(bin string) (*instance, error) {
	dir, err := os.MkdirTemp("", "atlas-weaviate-")
	if err != nil {
		return nil, fmt.Errorf("weaviatetest: %w", err)
	}
	in := &instance{bin: bin, dir: dir}
	in.ports, in.locks, err = reservePorts()
	if err == nil {
		in.proc, err = launch(in)
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		for _, l := range in.locks {
			_ = l.Close()
		}
		return nil, err
	}
	return in, nil
}

// restart starts the server again on the directory and ports of the stopped one, once the ports are
// free (they are as soon as the old process has exited, unless another process took one).
func (in *instance) restart() error {
	deadline := time.Now().Add(portsTimeout)
	for {
		busy := 0
		for _, p := range in.ports.all() {
			if !portFree(p) {
				busy = p
				break
			}
		}
		if busy == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("weaviatetest: cannot restart weaviate-server: port %d is still in use %s after it stopped", busy, portsTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p, err := launch(in)
	if err != nil {
		return err
	}
	in.proc = p
	return nil
}

var errExited = errors.New("weaviate-server exited before it was ready")

// launch starts weaviate-server for in and waits until it is ready.
func launch(in *instance) (*process, error) {
	p := &process{out: newCapped(), done: make(chan struct{})}
	p.cmd = exec.Command(in.bin, "--host", "127.0.0.1", "--port", strconv.Itoa(in.ports.http), "--scheme", "http")
	p.cmd.Dir = in.dir
	// Only what the server needs, none of the caller's environment. CLUSTER_ADVERTISE_ADDR is
	// required: without it the server looks for a private IPv4 address and exits when it has none.
	p.cmd.Env = []string{
		"PERSISTENCE_DATA_PATH=" + in.dir,
		"AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED=true",
		"DEFAULT_VECTORIZER_MODULE=none",
		"DISABLE_TELEMETRY=true",
		"GO_PROFILING_DISABLE=true", // else it listens on :6060
		"CLUSTER_HOSTNAME=node1",
		"CLUSTER_ADVERTISE_ADDR=127.0.0.1",
		"CLUSTER_BIND_ADDR=127.0.0.1",
		"RAFT_BOOTSTRAP_EXPECT=1",
		"GRPC_PORT=" + strconv.Itoa(in.ports.grpc),
		"CLUSTER_GOSSIP_BIND_PORT=" + strconv.Itoa(in.ports.gossip),
		"CLUSTER_DATA_BIND_PORT=" + strconv.Itoa(in.ports.data),
		"RAFT_PORT=" + strconv.Itoa(in.ports.raft),
		"RAFT_INTERNAL_RPC_PORT=" + strconv.Itoa(in.ports.raftRPC),
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = sysProcAttr()

	// On Linux, Pdeathsig fires when the thread that started the child exits, not the process. The
	// Go runtime may end idle threads, so the child is started from a goroutine locked to its thread,
	// which waits for the child and only then ends (taking the thread with it).
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			runtime.UnlockOSThread()
			return
		}
		started <- nil
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("weaviatetest: start %s: %w", in.bin, err)
	}
	if err := p.waitReady(in.server()); err != nil {
		p.stop(os.Kill)
		return nil, err
	}
	return p, nil
}

// waitReady polls the server until GET /v1/.well-known/ready answers 200 and the gRPC port accepts
// connections, the process exits, or startTimeout passes.
func (p *process) waitReady(s Server) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready(client, s)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("weaviatetest: weaviate-server was not ready on %s within %s (last: %v); its output:\n%s",
				s.HTTP, startTimeout, err, p.out)
		}
		select {
		case <-p.done:
			return fmt.Errorf("weaviatetest: %w (%v); its output:\n%s", errExited, p.waitErr, p.out)
		case <-tick.C:
		}
	}
}

func ready(client *http.Client, s Server) error {
	resp, err := client.Get(s.HTTP + "/v1/.well-known/ready")
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v1/.well-known/ready: %s", resp.Status)
	}
	c, err := net.DialTimeout("tcp", s.GRPC, time.Second)
	if err != nil {
		return fmt.Errorf("gRPC: %w", err)
	}
	return c.Close()
}

// stop signals the process and waits for it to exit; a process that does not exit within
// stopTimeout of a SIGTERM (or cannot be sent one) is killed.
func (p *process) stop(sig os.Signal) {
	if sig != os.Kill && p.cmd.Process.Signal(sig) == nil {
		timer := time.NewTimer(stopTimeout)
		defer timer.Stop()
		select {
		case <-p.done:
			return
		case <-timer.C:
		}
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// reservePorts chooses the server's six ports: distinct, free for TCP and UDP, outside the
// ephemeral range, and locked against other test binaries (see the package comment).
func reservePorts() (ports, []io.Closer, error) {
	lo, hi := portsLo, portsHi
	ephemeral := ephemeralFilter()
	var chosen []int
	var locks []io.Closer
	taken := map[int]bool{}
	for tries := 0; len(chosen) < 6; tries++ {
		if tries == 2000 {
			for _, l := range locks {
				_ = l.Close()
			}
			return ports{}, nil, fmt.Errorf("weaviatetest: found only %d free ports in [%d, %d) after %d tries", len(chosen), lo, hi, tries)
		}
		p := lo + rand.IntN(hi-lo)
		if taken[p] || ephemeral(p) {
			continue
		}
		taken[p] = true
		l, ok := lockPort(p)
		if !ok {
			continue
		}
		if !portFree(p) {
			_ = l.Close()
			continue
		}
		chosen, locks = append(chosen, p), append(locks, l)
	}
	return ports{http: chosen[0], grpc: chosen[1], gossip: chosen[2], data: chosen[3], raft: chosen[4], raftRPC: chosen[5]}, locks, nil
}

// Ports are chosen in [portsLo, portsHi), outside the ephemeral range if enough is left.
const portsLo, portsHi = 10000, 32768

// ephemeralFilter returns a function telling whether the kernel may hand out port p to an outgoing
// connection or a listener on port 0. When fewer than 1000 candidate ports lie outside the
// ephemeral range, the range is ignored.
func ephemeralFilter() func(p int) bool {
	elo, ehi, ok := ephemeralRange()
	outside := (portsHi - portsLo) - max(0, min(portsHi-1, ehi)-max(portsLo, elo)+1)
	if !ok || outside < 1000 {
		return func(int) bool { return false }
	}
	return func(p int) bool { return p >= elo && p <= ehi }
}

// portFree tells whether TCP and UDP port p can be bound on every address (weaviate-server binds
// some of its ports on every address, and gossip uses both TCP and UDP).
func portFree(p int) bool {
	addr := ":" + strconv.Itoa(p)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	_ = l.Close()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// binary finds weaviate-server (internal/testbin.Find).
func binary() (string, error) {
	p, err := testbin.Find("weaviate-server", "ATLAS_WEAVIATE", "scripts/ensure-weaviate.sh")
	if err != nil {
		return "", fmt.Errorf("weaviatetest: %w", err)
	}
	return p, nil
}

// capped keeps the first headMax and the last tailMax bytes written to it: the server's output, for
// error messages (the start and the latest lines of a long log).
type capped struct {
	mu      sync.Mutex
	head    []byte
	tail    []byte // holds up to 2*tailMax bytes; String shows the last tailMax
	dropped int64
}

const headMax, tailMax = 16 << 10, 48 << 10

func newCapped() *capped { return &capped{} }

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	if room := headMax - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	if len(p) >= tailMax {
		c.dropped += int64(len(c.tail) + len(p) - tailMax)
		c.tail = append(c.tail[:0], p[len(p)-tailMax:]...)
		return n, nil
	}
	c.tail = append(c.tail, p...)
	if over := len(c.tail) - tailMax; len(c.tail) > 2*tailMax {
		c.dropped += int64(over)
		c.tail = append(c.tail[:0], c.tail[over:]...)
	}
	return n, nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	tail, dropped := c.tail, c.dropped
	if over := len(tail) - tailMax; over > 0 {
		tail, dropped = tail[over:], dropped+int64(over)
	}
	if dropped == 0 {
		return string(c.head) + string(tail)
	}
	return fmt.Sprintf("%s\n[... %d bytes left out ...]\n%s", c.head, dropped, tail)
}

package weaviatetest

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr makes the kernel kill weaviate-server when the test binary dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// ephemeralRange is the kernel's range of ports for outgoing connections and port 0 listeners.
func ephemeralRange() (lo, hi int, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	return lo, hi, err1 == nil && err2 == nil && lo <= hi
}

// lockPort takes the lock file of port p without waiting (flock, released by the kernel when the
// test binary exits). ok is false if another process holds it. When the lock file cannot be opened
// (a directory of another user), the port is not coordinated and lockPort reports it as locked by
// this process: the check that the port is free still applies.
func lockPort(p int) (l io.Closer, ok bool) {
	dir := filepath.Join(os.TempDir(), "atlas-weaviatetest-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return io.NopCloser(nil), true
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)+".lock"), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return io.NopCloser(nil), true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, false
	}
	return f, true
}

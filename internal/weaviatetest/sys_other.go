//go:build !linux

package weaviatetest

import (
	"io"
	"syscall"
)

// sysProcAttr: only Linux can have the child killed when the test binary dies; elsewhere Run is
// what ends it.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// ephemeralRange: not known here; ports are chosen in the whole candidate range.
func ephemeralRange() (lo, hi int, ok bool) { return 0, 0, false }

// lockPort: ports are not coordinated between test binaries here; only the check that a port is
// free applies.
func lockPort(int) (io.Closer, bool) { return io.NopCloser(nil), true }

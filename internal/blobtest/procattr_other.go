//go:build !linux

package blobtest

import "syscall"

// sysProcAttr: only Linux can have the child killed when the test binary dies; elsewhere Run (Stop)
// is what ends it.
func sysProcAttr() *syscall.SysProcAttr { return nil }

package main

import "syscall"

// childProcAttr makes a child process die with Atlas.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

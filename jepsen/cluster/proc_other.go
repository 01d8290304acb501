//go:build !linux

package cluster

import (
	"syscall"
	"time"
)

// sysProcAttr puts a node in its own process group, so that a Ctrl-C at the
// terminal reaches only the harness, which then stops the nodes in order.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// waitStopped cannot observe the process state here; it trusts the signal.
func waitStopped(pid int, timeout time.Duration) error { return nil }

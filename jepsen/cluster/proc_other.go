//go:build !linux

package cluster

import "syscall"

// sysProcAttr puts a node in its own process group, so that a Ctrl-C at the
// terminal reaches only the harness, which then stops the nodes in order.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

//go:build linux

package overload

import "syscall"

// childAttr puts a node in its own process group, so that a Ctrl-C meant for
// the bench reaches only the bench (which then stops the nodes), and has the
// kernel kill the node if the bench dies without stopping it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

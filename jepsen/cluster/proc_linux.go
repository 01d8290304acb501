package cluster

import "syscall"

// sysProcAttr puts a node in its own process group, so that a Ctrl-C at the
// terminal reaches only the harness (which then stops the nodes in order),
// and has the kernel kill it when the harness dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

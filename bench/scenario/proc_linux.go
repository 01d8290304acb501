//go:build linux

package scenario

import "syscall"

// childAttr puts a node in its own process group, so that a Ctrl-C meant for
// the bench reaches the bench (which then stops the nodes in order) rather
// than every node at once, and has the kernel kill the node if the bench
// dies without stopping it (a crashed or killed test binary must not leave
// five nodes behind).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

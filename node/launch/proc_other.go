//go:build !linux

package launch

import (
	"syscall"
	"time"
)

// sysProcAttr detaches a node into a session of its own, or else puts it in
// a process group of its own so that a Ctrl-C at the terminal reaches only
// the launcher. Without Pdeathsig, a launcher that dies without stopping
// its nodes leaves them running, to be stopped by the PIDs in their PID
// files.
func sysProcAttr(detach bool) *syscall.SysProcAttr {
	if detach {
		return &syscall.SysProcAttr{Setsid: true}
	}
	return &syscall.SysProcAttr{Setpgid: true}
}

// waitStopped cannot observe the process state here; it trusts the signal.
func waitStopped(pid int, timeout time.Duration) error { return nil }

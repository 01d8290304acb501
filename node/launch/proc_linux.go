//go:build linux

package launch

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"time"
)

// sysProcAttr detaches a node into a session of its own, which outlives
// the launcher and has no controlling terminal (a Ctrl-C in the shell that
// ran `adaptkv cluster up` does not reach it); or else puts it in a process
// group of its own, so that a Ctrl-C at the terminal reaches only the
// launcher (which then stops the nodes in order), and has the kernel kill
// it when the launcher dies, so that a crashed or killed test or harness
// leaves no node behind.
func sysProcAttr(detach bool) *syscall.SysProcAttr {
	if detach {
		return &syscall.SysProcAttr{Setsid: true}
	}
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitStopped waits until the kernel reports the process stopped (state T),
// so that a pause is in force, not merely requested, when Pause returns: a
// SIGSTOP to a busy multi-threaded process takes effect only once every
// thread has been interrupted.
func waitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return err
		}
		// pid (comm) state ...; comm may hold spaces, so cut at the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d not stopped %v after SIGSTOP", pid, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

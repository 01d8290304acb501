//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// detach makes cmd the leader of a new session, so that it has no
// controlling terminal: the node keeps running after `cluster up` returns,
// and a Ctrl-C in the shell that ran it does not reach the nodes.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
}

// processExists reports whether pid names a process (kill(pid, 0)). EPERM
// means it exists but belongs to someone else.
func processExists(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// nodeRunning reports whether pid is a running `adaptkv node --id id`
// process. A PID file can outlive its process and the PID be reused by
// something else, and signalling that would be a disaster; so besides
// kill(pid, 0) the command line must show an adaptkv node with this ID. A
// zombie has an empty command line and counts as not running. Without
// /proc (macOS), kill(pid, 0) alone decides.
func nodeRunning(pid int, id string) bool {
	if !processExists(pid) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		if _, serr := os.Stat("/proc/self/cmdline"); serr != nil {
			return true
		}
		return false
	}
	return isNodeCmdline(b, id)
}

// isNodeCmdline reports whether a NUL-separated /proc cmdline is that of
// `adaptkv node` with node ID id (any ID when id is empty).
func isNodeCmdline(b []byte, id string) bool {
	args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	if len(args) < 2 || !strings.Contains(filepath.Base(args[0]), "adaptkv") {
		return false
	}
	hasNode, hasID := false, id == ""
	for i := 1; i < len(args); i++ {
		switch {
		case args[i] == "node":
			hasNode = true
		case args[i] == "--id="+id, args[i] == "--id" && i+1 < len(args) && args[i+1] == id:
			hasID = true
		}
	}
	return hasNode && hasID
}

// signalProcess sends sig to pid.
func signalProcess(pid int, sig syscall.Signal) error {
	return syscall.Kill(pid, sig)
}

// lockDir takes an exclusive lock on dir's lock file, so that two cluster
// commands on one folder (say `cluster up` twice at once) cannot both start
// the same node. The lock goes with the process, even if it is killed.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

//go:build !unix

package main

import (
	"errors"
	"os/exec"
	"syscall"
)

// The local cluster manages node processes with Unix sessions, signals and
// /proc; elsewhere only the node, data and admin commands work.

var errNoLocalCluster = errors.New("local clusters (adaptkv cluster ...) need a Unix system")

func detach(cmd *exec.Cmd) {}

func processExists(pid int) bool { return false }

func nodeRunning(pid int, id string) bool { return false }

func isNodeCmdline(b []byte, id string) bool { return false }

func signalProcess(pid int, sig syscall.Signal) error { return errNoLocalCluster }

func lockDir(dir string) (func(), error) { return nil, errNoLocalCluster }

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// proc is a child process: a node, an etcd member, redis-server or the echo
// server. Its output goes to a log file in the work directory, so that a
// failed start can be diagnosed after the fact.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // set before done is closed
}

// startProc starts bin with args, logging to dir/name.log. The child gets
// SIGKILL if this process dies first (Pdeathsig), so that an interrupted
// comparison leaves no servers behind eating the CPU of the next run.
func startProc(name, dir, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	trackPid(cmd.Process.Pid)
	go func() {
		p.err = cmd.Wait()
		untrackPid(cmd.Process.Pid)
		lf.Close()
		close(p.done)
	}()
	slog.Debug("started", "proc", name, "pid", cmd.Process.Pid, "args", args)
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM and waits up to grace for a clean exit, then kills.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	if done, _ := p.exited(); done {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		slog.Warn("did not stop in time; killing", "proc", p.name, "grace", grace)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the last bytes of the process's log, for error messages.
func (p *proc) tail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// freePorts returns n distinct free TCP ports on 127.0.0.1 by binding port 0
// and letting go. Another process could take one before the child binds it;
// on a loopback test machine that is rare enough, and the child's start
// then fails loudly.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitFor calls check every 100 ms until it succeeds, ctx ends or timeout
// passes; it fails early if one of procs exits.
func waitFor(ctx context.Context, what string, timeout time.Duration, procs []*proc, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		for _, p := range procs {
			if done, err := p.exited(); done {
				return fmt.Errorf("%s: %s exited (%v) while starting; its log ends:\n%s", what, p.name, err, p.tail())
			}
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready after %v: %w", what, timeout, errors.Join(last, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

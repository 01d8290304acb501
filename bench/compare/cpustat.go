package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The comparison shares the machine with whatever else runs on it, and on a
// 2-core machine another process's burst shows in every figure. cpuSample
// records the machine's busy CPU time and that of this process and its
// children, so that each phase can report how much CPU went to processes
// outside the comparison while it ran: a phase with a large share is
// suspect, and the report says so instead of hiding it.

// clockTick is USER_HZ, the unit of /proc CPU times; 100 on every Linux
// platform Go supports.
const clockTick = 100

// pids are the child processes whose CPU counts as the comparison's own.
var pids struct {
	mu  sync.Mutex
	set map[int]bool
}

func trackPid(pid int) {
	pids.mu.Lock()
	defer pids.mu.Unlock()
	if pids.set == nil {
		pids.set = make(map[int]bool)
	}
	pids.set[pid] = true
}

func untrackPid(pid int) {
	pids.mu.Lock()
	defer pids.mu.Unlock()
	delete(pids.set, pid)
}

// cpuSample is a reading of the CPU counters, in seconds.
type cpuSample struct {
	at   time.Time
	busy float64 // every CPU's non-idle time since boot
	ours float64 // this process and its tracked children
	self float64 // this process alone: the load generator and its clients
	ok   bool
	ncpu int
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	busy, ncpu, err := machineBusy()
	if err != nil {
		return s
	}
	s.busy, s.ncpu = busy, ncpu
	ours, err := procCPU(os.Getpid())
	if err != nil {
		return s
	}
	s.self = ours
	pids.mu.Lock()
	for pid := range pids.set {
		// A child that exited meanwhile loses its last moments; the
		// phases end before any child is stopped, so this is rare.
		if t, err := procCPU(pid); err == nil {
			ours += t
		}
	}
	pids.mu.Unlock()
	s.ours, s.ok = ours, true
	return s
}

// machineBusy reads the aggregate "cpu" line of /proc/stat: everything but
// idle and iowait.
func machineBusy() (float64, int, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	var busy float64
	ncpu := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		if f[0] != "cpu" {
			if strings.HasPrefix(f[0], "cpu") {
				ncpu++
			}
			continue
		}
		// user nice system idle iowait irq softirq steal ...
		for i, v := range f[1:] {
			if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest is in user already
				continue
			}
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("/proc/stat: %w", err)
			}
			busy += n
		}
	}
	return busy / clockTick, ncpu, nil
}

// procCPU returns a process's user and system time from /proc/PID/stat.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; the fields after its
	// closing parenthesis are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: malformed times", pid)
	}
	return (ut + st) / clockTick, nil
}

// CPUUse is how the machine's CPUs were used during a phase, in CPUs (1.0 =
// one core busy for the whole phase).
type CPUUse struct {
	// Machine is all busy CPU; Ours is the comparison's processes; Other
	// is the rest: other users of the machine.
	Machine float64 `json:"machine_cpus"`
	Ours    float64 `json:"ours_cpus"`
	Other   float64 `json:"other_cpus"`
	NumCPU  int     `json:"num_cpu"`
	// Client is this process (the workload generator and the system's
	// client library); Servers is the system's server processes. They sum
	// to Ours.
	Client  float64 `json:"client_cpus"`
	Servers float64 `json:"server_cpus"`
}

// cpuBetween returns the CPU use between two samples, or nil when they are
// not available (not Linux).
func cpuBetween(a, b cpuSample) *CPUUse {
	wall := b.at.Sub(a.at).Seconds()
	if !a.ok || !b.ok || wall <= 0 {
		return nil
	}
	u := &CPUUse{
		Machine: (b.busy - a.busy) / wall,
		Ours:    (b.ours - a.ours) / wall,
		NumCPU:  b.ncpu,
		Client:  (b.self - a.self) / wall,
	}
	u.Servers = max(u.Ours-u.Client, 0)
	u.Other = max(u.Machine-u.Ours, 0)
	return u
}

// quietThreshold is the CPU use by other processes (in CPUs) below which
// the machine counts as quiet: background daemons and the idle servers of
// the comparison stay well under it.
const quietThreshold = 0.15

// waitQuiet waits until other processes use less than quietThreshold CPUs
// over two seconds, or until limit passes. The machine may be shared (other
// builds, tests); starting a phase during someone else's burst would
// measure them as much as the system under test. It gives up quietly after
// limit: the phase's CPU figures then show the contention.
func waitQuiet(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		a := sampleCPU()
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
		u := cpuBetween(a, sampleCPU())
		if u == nil || u.Other < quietThreshold {
			return
		}
		if time.Now().After(deadline) {
			slog.Warn("machine still busy with other processes; measuring anyway", "other_cpus", fmt.Sprintf("%.2f", u.Other))
			return
		}
		slog.Info("waiting for other processes to quiet down", "other_cpus", fmt.Sprintf("%.2f", u.Other))
	}
}

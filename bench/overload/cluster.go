package overload

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/adaptkv/adaptkv/node/launch"
)

// cluster is the node processes of one arm, started from one binary.
type cluster struct {
	*launch.Cluster
}

// startCluster starts nodes node processes of binary under dir, with extra
// flags, and waits until every one is healthy and sees the others alive.
func startCluster(ctx context.Context, binary, dir string, nodes int, extra []string) (*cluster, error) {
	// Secure, as a real deployment runs: the figures include the cost of
	// TLS. A baseline build older than certificates cannot start this way.
	lcfg := launch.Config{Binary: binary, Nodes: nodes, Dir: dir,
		Args: append([]string{"--log-level", "warn"}, extra...), Name: "overload bench"}
	if err := lcfg.Secure(filepath.Join(dir, "certs")); err != nil {
		return nil, err
	}
	l, err := launch.New(lcfg)
	if err != nil {
		return nil, err
	}
	c := &cluster{Cluster: l}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := l.Start(wctx); err != nil {
		c.stop()
		return nil, fmt.Errorf("cluster not healthy after %v: %w", time.Minute, err)
	}
	return c, nil
}

func (c *cluster) endpoints() []string { return c.Endpoints() }

// certsDir is the certificate directory the clients connect with.
func (c *cluster) certsDir() string { return c.Config().CertsDir }

// stop stops every node, by PID (SIGTERM), and kills those still running
// after ten seconds.
func (c *cluster) stop() { c.StopAll(10 * time.Second) }

// memory reads a process's resident set size and its peak (VmRSS and
// VmHWM in /proc/PID/status), in bytes.
func memory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		fields := strings.Fields(rest) // "123456 kB"
		if len(fields) == 0 {
			continue
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s: %w", pid, name, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm, sc.Err()
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's CPU
// times: 100 on every Linux platform Go supports.
const clockTicks = 100

// cpuSeconds reads the user plus system CPU time a process has used, from
// /proc/PID/stat ("self" for the bench itself).
func cpuSeconds(pid string) (float64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after it are
	// counted from its closing parenthesis: utime and stime are the 14th
	// and 15th fields of the line.
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%s/stat: %d fields after the name", pid, len(f))
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%s/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return (ut + st) / clockTicks, nil
}

// machineBusy reads the CPU time the whole machine has spent busy (every
// state of /proc/stat's "cpu" line but idle and iowait; guest time is
// already in user), in seconds.
func machineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	busy := 0.0
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += n
	}
	return busy / clockTicks, nil
}

// otherCores returns the CPUs that processes other than the bench used over
// d (the bench's nodes are stopped when it is called).
func otherCores(ctx context.Context, d time.Duration) (float64, error) {
	m0, err := machineBusy()
	if err != nil {
		return 0, err
	}
	s0, _ := cpuSeconds("self")
	start := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	m1, err := machineBusy()
	if err != nil {
		return 0, err
	}
	s1, _ := cpuSeconds("self")
	wall := time.Since(start).Seconds()
	return max((m1-m0)-(s1-s0), 0) / wall, nil
}

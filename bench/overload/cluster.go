package overload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// proc is one node process of an arm's cluster.
type proc struct {
	id, grpc, gossip, raft, http, dir string
	cmd                               *exec.Cmd
	done                              chan struct{}
	err                               error
}

// cluster is the node processes of one arm, started from one binary.
type cluster struct {
	procs []*proc
}

// freePorts returns n distinct free TCP ports (also free for UDP, which
// gossip uses) on host.
func freePorts(host string, n int) ([]int, error) {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		closers = append(closers, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		closers = append(closers, pc)
		ports = append(ports, port)
	}
	return ports, nil
}

// startCluster starts nodes node processes of binary under dir, with extra
// flags, and waits until every one answers /healthz.
func startCluster(ctx context.Context, binary, dir string, nodes int, extra []string) (*cluster, error) {
	const host = "127.0.0.1"
	ports, err := freePorts(host, 4*nodes)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return net.JoinHostPort(host, strconv.Itoa(ports[i])) }
	c := &cluster{}
	for i := range nodes {
		id := fmt.Sprintf("n%d", i+1)
		c.procs = append(c.procs, &proc{id: id, grpc: addr(4 * i), gossip: addr(4*i + 1), raft: addr(4*i + 2), http: addr(4*i + 3),
			dir: filepath.Join(dir, id), done: make(chan struct{})})
	}
	for _, p := range c.procs {
		var seeds []string
		for _, o := range c.procs {
			if o != p {
				seeds = append(seeds, o.gossip)
			}
		}
		if err := os.MkdirAll(p.dir, 0o755); err != nil {
			c.stop()
			return nil, err
		}
		args := append([]string{"node", "--id", p.id, "--data-dir", p.dir,
			"--grpc-addr", p.grpc, "--gossip-addr", p.gossip, "--raft-addr", p.raft, "--http-addr", p.http,
			"--seeds", strings.Join(seeds, ","), "--bootstrap-expect", strconv.Itoa(nodes), "--log-level", "warn"}, extra...)
		logf, err := os.Create(filepath.Join(p.dir, "node.log"))
		if err != nil {
			c.stop()
			return nil, err
		}
		cmd := exec.Command(binary, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "ADAPTKV_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.SysProcAttr = childAttr()
		err = cmd.Start()
		logf.Close()
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("starting node %s (%s): %w", p.id, binary, err)
		}
		p.cmd = cmd
		go func() { p.err = cmd.Wait(); close(p.done) }()
	}
	if err := c.waitHealthy(ctx, time.Minute); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *cluster) endpoints() []string {
	var eps []string
	for _, p := range c.procs {
		eps = append(eps, p.grpc)
	}
	return eps
}

func (c *cluster) waitHealthy(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	for {
		ready := 0
		var problem error
		for _, p := range c.procs {
			select {
			case <-p.done:
				return fmt.Errorf("node %s exited during startup: %v; see %s", p.id, p.err, filepath.Join(p.dir, "node.log"))
			default:
			}
			resp, err := hc.Get("http://" + p.http + "/healthz")
			if err != nil {
				problem = fmt.Errorf("node %s: %w", p.id, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ready++
			} else {
				problem = fmt.Errorf("node %s: healthz %s", p.id, resp.Status)
			}
		}
		if ready == len(c.procs) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not healthy after %v: %w", limit, errors.Join(problem, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop interrupts every node, by PID, and kills those still running after
// ten seconds.
func (c *cluster) stop() {
	for _, p := range c.procs {
		if p.cmd != nil {
			p.cmd.Process.Signal(os.Interrupt)
		}
	}
	deadline := time.After(10 * time.Second)
	for _, p := range c.procs {
		if p.cmd == nil {
			continue
		}
		select {
		case <-p.done:
		case <-deadline:
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

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

package scenario

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

// NodeInfo describes one node of the experiment's cluster.
type NodeInfo struct {
	ID       string `json:"id"`
	Zone     string `json:"zone"`
	GRPCAddr string `json:"grpc_addr"`
	HTTPAddr string `json:"http_addr"`
	LogFile  string `json:"log_file"`
	PID      int    `json:"pid"`
}

// layoutZones are the nodes and their zones: two zones of two nodes and a
// third of one, so that with RF 3 on a zone-aware ring every key has a
// replica in each zone.
var layoutZones = []struct{ id, zone string }{
	{"n1", "a"}, {"n2", "a"}, {"n3", "b"}, {"n4", "b"}, {"n5", "c"},
}

// nodeProc is a node process the experiment started.
type nodeProc struct {
	NodeInfo
	gossipAddr, raftAddr, dataDir string
	cmd                           *exec.Cmd
	done                          chan struct{} // closed when the process has exited
	err                           error         // its exit status, after done
}

func (n *nodeProc) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// cluster is the experiment's five node processes.
type cluster struct {
	nodes []*nodeProc
	log   *slog.Logger
	http  *http.Client
	stop1 sync.Once
}

// freePorts returns n distinct free ports on host, found by listening on
// port 0. All listeners stay open until the last port is found, so that
// none is handed out twice; UDP is checked too, since gossip uses both.
// Another process may still take a port before the node binds it, which
// startCluster reports as a node that exited.
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
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, fmt.Sprint(port)))
		if err != nil {
			continue // taken for UDP: try another
		}
		closers = append(closers, pc)
		ports = append(ports, port)
	}
	return ports, nil
}

// startCluster starts the five nodes under dir and returns once they are
// all started (not yet healthy: see waitHealthy). On error it stops the
// nodes it started.
func startCluster(ctx context.Context, cfg Config, dir string) (*cluster, error) {
	const host = "127.0.0.1"
	ports, err := freePorts(host, 4*len(layoutZones))
	if err != nil {
		return nil, err
	}
	c := &cluster{log: cfg.Logger, http: &http.Client{Timeout: 5 * time.Second}}
	addr := func(i int) string { return net.JoinHostPort(host, fmt.Sprint(ports[i])) }
	for i, z := range layoutZones {
		n := &nodeProc{NodeInfo: NodeInfo{ID: z.id, Zone: z.zone, GRPCAddr: addr(4 * i), HTTPAddr: addr(4*i + 3)},
			gossipAddr: addr(4*i + 1), raftAddr: addr(4*i + 2), dataDir: filepath.Join(dir, z.id), done: make(chan struct{})}
		n.LogFile = filepath.Join(n.dataDir, "node.log")
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := c.start(ctx, cfg, n); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

// start starts one node's process, logging to its log file.
func (c *cluster) start(ctx context.Context, cfg Config, n *nodeProc) error {
	if err := os.MkdirAll(n.dataDir, 0o755); err != nil {
		return fmt.Errorf("node %s: %w", n.ID, err)
	}
	var seeds []string
	for _, o := range c.nodes {
		if o != n {
			seeds = append(seeds, o.gossipAddr)
		}
	}
	args := []string{"node",
		"--id", n.ID, "--data-dir", n.dataDir, "--zone", n.Zone,
		"--grpc-addr", n.GRPCAddr, "--gossip-addr", n.gossipAddr, "--raft-addr", n.raftAddr, "--http-addr", n.HTTPAddr,
		"--seeds", strings.Join(seeds, ","), "--bootstrap-expect", fmt.Sprint(len(c.nodes)),
		"--unsafe-test-hooks",
		"--tuner-interval", cfg.TunerInterval.String(), "--tuner-dwell", cfg.TunerDwell.String(),
	}
	logf, err := os.OpenFile(n.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.ID, err)
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "=== %s: adaptive scenario starts %s: %s %s\n", time.Now().Format(time.RFC3339), n.ID, cfg.Binary, strings.Join(args, " "))
	// Not CommandContext: the process must outlive a canceled context
	// long enough to be stopped cleanly by stop, which always runs.
	cmd := exec.Command(cfg.Binary, args...)
	cmd.Dir = n.dataDir
	cmd.Stdout, cmd.Stderr = logf, logf
	// The node's configuration is these flags and nothing else: a variable
	// exported for the CLI (ADAPTKV_IN_MEMORY, say) must not change it.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ADAPTKV_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting node %s (%s): %w", n.ID, cfg.Binary, err)
	}
	n.cmd, n.PID = cmd, cmd.Process.Pid
	go func() { n.err = cmd.Wait(); close(n.done) }()
	c.log.Info("node started", "id", n.ID, "zone", n.Zone, "pid", n.PID, "grpc", n.GRPCAddr, "http", n.HTTPAddr)
	return nil
}

// stop stops every node it started, by PID: an interrupt first, so that
// the node closes its stores cleanly, then a kill after a grace period.
// It is safe to call more than once.
func (c *cluster) stop() {
	c.stop1.Do(func() {
		for _, n := range c.nodes {
			if n.cmd != nil && !n.exited() {
				n.cmd.Process.Signal(os.Interrupt)
			}
		}
		deadline := time.After(10 * time.Second)
		for _, n := range c.nodes {
			if n.cmd == nil {
				continue
			}
			select {
			case <-n.done:
			case <-deadline:
			}
			if !n.exited() {
				c.log.Warn("node did not stop in time; killing it", "id", n.ID, "pid", n.PID)
				n.cmd.Process.Kill()
				<-n.done
			}
		}
	})
}

// info lists the nodes.
func (c *cluster) info() []NodeInfo {
	out := make([]NodeInfo, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.NodeInfo
	}
	return out
}

// endpoints are the nodes' gRPC addresses.
func (c *cluster) endpoints() []string {
	var eps []string
	for _, n := range c.nodes {
		eps = append(eps, n.GRPCAddr)
	}
	return eps
}

func (c *cluster) node(id string) (*nodeProc, error) {
	for _, n := range c.nodes {
		if n.ID == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node %q in the cluster", id)
}

// waitHealthy waits until every node answers /healthz with 200 and sees all
// five nodes alive in its own cluster status, or limit passes. A node that
// exits fails the wait at once, with the last line of its log.
func (c *cluster) waitHealthy(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	ready := map[string]bool{}
	problem := map[string]string{}
	clients := map[string]*client.Client{}
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, n := range c.nodes {
			if ready[n.ID] {
				continue
			}
			if n.exited() {
				return fmt.Errorf("node %s exited during startup (%v): %s; see %s", n.ID, n.err, lastLine(n.LogFile), n.LogFile)
			}
			if err := c.healthz(ctx, n); err != nil {
				problem[n.ID] = err.Error()
				continue
			}
			cl := clients[n.ID]
			if cl == nil {
				var err error
				cl, err = client.New(ctx, client.Config{Endpoints: []string{n.GRPCAddr}, DisableRouting: true, MaxRetries: -1,
					DialTimeout: time.Second, RequestTimeout: time.Second})
				if err != nil {
					return fmt.Errorf("node %s: %w", n.ID, err)
				}
				clients[n.ID] = cl
			}
			st, err := cl.ClusterStatus(ctx)
			if err != nil {
				problem[n.ID] = err.Error()
				continue
			}
			alive := 0
			for _, m := range st.Members {
				if m.State == client.StateAlive && slices.ContainsFunc(c.nodes, func(o *nodeProc) bool { return o.ID == m.ID }) {
					alive++
				}
			}
			if alive < len(c.nodes) {
				problem[n.ID] = fmt.Sprintf("sees %d of %d nodes alive", alive, len(c.nodes))
				continue
			}
			ready[n.ID] = true
		}
		if len(ready) == len(c.nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			var parts []string
			for _, n := range c.nodes {
				if !ready[n.ID] {
					parts = append(parts, fmt.Sprintf("%s (%s; log %s)", n.ID, problem[n.ID], n.LogFile))
				}
			}
			return fmt.Errorf("cluster not healthy after %v: %s: %w", limit, strings.Join(parts, ", "), ctx.Err())
		case <-tick.C:
		}
	}
}

func (c *cluster) healthz(ctx context.Context, n *nodeProc) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTPAddr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return errors.New("not answering yet")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("healthz %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// hook POSTs one of a node's unsafe test hooks (see node/hooks.go).
func (c *cluster) hook(ctx context.Context, id, path string, q url.Values) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	u := "http://" + n.HTTPAddr + path + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("node %s hook %s: %w", id, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("node %s hook %s?%s: HTTP %d: %s (was the node started with --unsafe-test-hooks?)", id, path, q.Encode(), resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// injectZones delays every node's requests to every peer: intra within a
// zone, cross between zones.
func (c *cluster) injectZones(ctx context.Context, intra, cross time.Duration) error {
	for _, from := range c.nodes {
		for _, to := range c.nodes {
			if from == to {
				continue
			}
			d := cross
			if from.Zone == to.Zone {
				d = intra
			}
			if err := c.hook(ctx, from.ID, "/unsafe/link", url.Values{"to": {to.ID}, "delay": {d.String()}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// setSlow makes node id delay its replies to peers by d (0: undo).
func (c *cluster) setSlow(ctx context.Context, id string, d time.Duration) error {
	return c.hook(ctx, id, "/unsafe/slow", url.Values{"delay": {d.String()}})
}

// nodeCounters are the node metrics summed over the cluster at each
// phase's end: they show replica requests that failed or were refused (a
// stale configuration epoch is one) while the tuner changed arm_adaptive.
var nodeCounters = []string{"adaptkv_replica_errors_total", "adaptkv_epoch_retries_total", "adaptkv_hints_stored_total"}

// counters sums the named counters over every node's /metrics. A node that
// does not answer is left out; the error says which.
func (c *cluster) counters(ctx context.Context, names []string) (map[string]float64, error) {
	out := map[string]float64{}
	var errs []error
	for _, n := range c.nodes {
		if err := c.scrape(ctx, n, names, out); err != nil {
			errs = append(errs, fmt.Errorf("node %s metrics: %w", n.ID, err))
		}
	}
	return out, errors.Join(errs...)
}

func (c *cluster) scrape(ctx context.Context, n *nodeProc, names []string, into map[string]float64) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTPAddr+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range names {
			// "name value" or "name{labels} value": sum over the labels.
			rest, ok := strings.CutPrefix(line, name)
			if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
			if len(f) == 0 {
				continue
			}
			var v float64
			if _, err := fmt.Sscan(f[0], &v); err == nil {
				into[name] += v
			}
		}
	}
	return sc.Err()
}

// lastLine returns the last non-empty line of a log file, which for a node
// that failed to start is its error.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "no log"
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 8192 {
		f.Seek(-8192, io.SeekEnd)
	}
	last := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			last = s
		}
	}
	return last
}

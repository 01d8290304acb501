// Package cluster runs a cluster of real adaptkv node processes on loopback
// for the Jepsen harness: node i binds gRPC, gossip, Raft and HTTP on its own
// address 127.0.0.(i+1), so that iptables rules between node addresses cut
// node-to-node traffic while the harness's clients (which connect from
// 127.0.0.1) keep reaching every node. It starts, stops, kills (SIGKILL),
// pauses (SIGSTOP/SIGCONT) and restarts nodes, talks to their test hooks,
// and manages the run's own iptables chain (see Net).
//
// Every process a Cluster starts is killed by Close, and, on Linux, by the
// kernel when the harness process dies (parent-death signal), so that a
// crashed or interrupted harness leaves no node behind.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

// Config configures a Cluster.
type Config struct {
	// Bin is the adaptkv binary, run as `Bin node ...`.
	Bin string
	// Nodes is the number of nodes; default 5.
	Nodes int
	// Dir holds each node's data directory and log: Dir/<id>/data and
	// Dir/<id>/node.log.
	Dir string
	// FirstIP is node 1's address; node i gets FirstIP + i - 1. Default
	// 127.0.0.2.
	FirstIP string
	// BasePort is the first of the four ports every node uses (gRPC,
	// gossip, Raft, HTTP), the same on every address; 0 picks free ports.
	BasePort int
	// ExtraArgs are added to every node's command line.
	ExtraArgs []string
	// ReadyTimeout bounds the wait for the cluster to become ready; default
	// 60 s.
	ReadyTimeout time.Duration
	// Logger receives the harness's logs about processes.
	Logger *slog.Logger
}

// State is a node process's state.
type State string

// Node states.
const (
	Running State = "running"
	Paused  State = "paused"
	Stopped State = "stopped" // never started, exited, stopped or killed
)

// Node is one node process.
type Node struct {
	// ID is the node ID (n1, n2, ...).
	ID string
	// Host is the node's own loopback address.
	Host string
	// GRPC, Gossip, Raft and HTTP are its addresses.
	GRPC, Gossip, Raft, HTTP string
	// DataDir is its data directory; LogPath its log.
	DataDir, LogPath string

	mu       sync.Mutex
	cmd      *exec.Cmd
	state    State
	exited   chan struct{}
	exitErr  error
	restarts int
	log      *os.File
	// expectExit is set when the harness signals the process to end, so
	// that an exit without it is reported as a crash.
	expectExit bool
}

// PID returns the running process's ID, 0 when none.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil || n.state == Stopped {
		return 0
	}
	return n.cmd.Process.Pid
}

// State returns the node's process state.
func (n *Node) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// Cluster is a set of node processes.
type Cluster struct {
	cfg   Config
	log   *slog.Logger
	nodes []*Node
	byID  map[string]*Node
	http  *http.Client

	mu      sync.Mutex
	closed  bool
	clients map[string]*client.Client // per node, DisableRouting
	crashes []string
}

// Crashes describes the node processes that exited without the harness
// asking them to: a crash of the system under test.
func (c *Cluster) Crashes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.crashes...)
}

// New prepares a cluster without starting it. It picks the ports.
func New(cfg Config) (*Cluster, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 5
	}
	if cfg.Nodes < 1 || cfg.Nodes > 200 {
		return nil, fmt.Errorf("cluster: %d nodes: want 1 to 200", cfg.Nodes)
	}
	if cfg.FirstIP == "" {
		cfg.FirstIP = "127.0.0.2"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Bin == "" {
		return nil, errors.New("cluster: Config.Bin (the adaptkv binary) is required")
	}
	if _, err := os.Stat(cfg.Bin); err != nil {
		return nil, fmt.Errorf("cluster: node binary: %w", err)
	}
	if cfg.Dir == "" {
		return nil, errors.New("cluster: Config.Dir is required")
	}
	first := net.ParseIP(cfg.FirstIP).To4()
	if first == nil || !first.IsLoopback() {
		return nil, fmt.Errorf("cluster: first address %q: want an IPv4 loopback address such as 127.0.0.2", cfg.FirstIP)
	}
	if int(first[3])+cfg.Nodes-1 > 254 {
		return nil, fmt.Errorf("cluster: %d nodes from %s run past the last address of its /24", cfg.Nodes, cfg.FirstIP)
	}
	hosts := make([]string, cfg.Nodes)
	for i := range hosts {
		ip := slices.Clone(first)
		ip[3] += byte(i)
		hosts[i] = ip.String()
	}
	if cfg.BasePort == 0 {
		p, err := freePorts(hosts)
		if err != nil {
			return nil, err
		}
		cfg.BasePort = p
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger, byID: map[string]*Node{}, clients: map[string]*client.Client{},
		http: &http.Client{Timeout: 3 * time.Second}}
	for i, h := range hosts {
		id := fmt.Sprintf("n%d", i+1)
		hp := func(off int) string { return net.JoinHostPort(h, strconv.Itoa(cfg.BasePort+off)) }
		n := &Node{ID: id, Host: h, GRPC: hp(0), Gossip: hp(1), Raft: hp(2), HTTP: hp(3),
			DataDir: filepath.Join(cfg.Dir, id, "data"), LogPath: filepath.Join(cfg.Dir, id, "node.log"), state: Stopped}
		c.nodes = append(c.nodes, n)
		c.byID[id] = n
	}
	return c, nil
}

// freePorts finds four consecutive ports free on every host (TCP, and UDP
// for gossip).
func freePorts(hosts []string) (int, error) {
	for attempt := 0; attempt < 100; attempt++ {
		base := 20000 + 4*rand.IntN(10000)
		if portsFree(hosts, base) {
			return base, nil
		}
	}
	return 0, errors.New("cluster: no four consecutive free ports found on the node addresses")
}

func portsFree(hosts []string, base int) bool {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for _, h := range hosts {
		for off := range 4 {
			ln, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(base+off)))
			if err != nil {
				return false
			}
			closers = append(closers, ln)
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort(h, strconv.Itoa(base+1)))
		if err != nil {
			return false
		}
		closers = append(closers, pc)
	}
	return true
}

// Nodes returns the nodes in order n1, n2, ...
func (c *Cluster) Nodes() []*Node { return c.nodes }

// IDs returns the node IDs in order.
func (c *Cluster) IDs() []string {
	ids := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		ids[i] = n.ID
	}
	return ids
}

// Node returns the node with the given ID, or nil.
func (c *Cluster) Node(id string) *Node { return c.byID[id] }

// Endpoints returns every node's gRPC address.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.GRPC
	}
	return out
}

// Ports is the range of the ports the nodes listen on (gRPC, gossip, Raft,
// HTTP), the same on every node address.
func (c *Cluster) Ports() PortRange {
	return PortRange{First: c.cfg.BasePort, Last: c.cfg.BasePort + 3}
}

// Hosts maps node IDs to their addresses.
func (c *Cluster) Hosts() map[string]string {
	m := map[string]string{}
	for _, n := range c.nodes {
		m[n.ID] = n.Host
	}
	return m
}

// PIDs maps the running nodes' IDs to their process IDs.
func (c *Cluster) PIDs() map[string]int {
	m := map[string]int{}
	for _, n := range c.nodes {
		if pid := n.PID(); pid != 0 {
			m[n.ID] = pid
		}
	}
	return m
}

func (c *Cluster) node(id string) (*Node, error) {
	n := c.byID[id]
	if n == nil {
		return nil, fmt.Errorf("cluster: no node %q", id)
	}
	return n, nil
}

func (c *Cluster) args(n *Node) []string {
	var seeds []string
	for _, o := range c.nodes {
		seeds = append(seeds, o.Gossip)
	}
	args := []string{"node",
		"--id", n.ID,
		"--data-dir", n.DataDir,
		"--grpc-addr", n.GRPC,
		"--gossip-addr", n.Gossip,
		"--raft-addr", n.Raft,
		"--http-addr", n.HTTP,
		"--seeds", strings.Join(seeds, ","),
		"--bootstrap-expect", strconv.Itoa(len(c.nodes)),
		"--unsafe-test-hooks",
	}
	return append(args, c.cfg.ExtraArgs...)
}

// Start starts every node and waits until the cluster is ready (see
// WaitReady). On failure it kills what it started.
func (c *Cluster) Start(ctx context.Context) error {
	for _, n := range c.nodes {
		if err := c.StartNode(n.ID); err != nil {
			c.Close()
			return err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	if err := c.WaitReady(rctx, c.IDs()); err != nil {
		return fmt.Errorf("cluster: not ready within %v: %w (node logs in %s)", c.cfg.ReadyTimeout, err, c.cfg.Dir)
	}
	return nil
}

// StartNode starts node id's process if it is not running; a restart keeps
// the node's ID, addresses and data directory. It returns once the process
// is started, not once it serves.
func (c *Cluster) StartNode(id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return errors.New("cluster: closed")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != Stopped {
		return nil
	}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return fmt.Errorf("cluster: %s: %w", id, err)
	}
	if n.log == nil {
		f, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("cluster: %s log: %w", id, err)
		}
		n.log = f
	}
	fmt.Fprintf(n.log, "=== harness: starting %s (start #%d) at %s\n", id, n.restarts+1, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.cfg.Bin, c.args(n)...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cluster: start %s: %w", id, err)
	}
	n.cmd, n.state, n.exited, n.exitErr, n.expectExit = cmd, Running, make(chan struct{}), nil, false
	n.restarts++
	exited := n.exited
	c.log.Info("node started", "node", id, "pid", cmd.Process.Pid, "host", n.Host)
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		expected := n.expectExit
		if n.cmd == cmd {
			n.state, n.exitErr = Stopped, err
		}
		n.mu.Unlock()
		if !expected {
			msg := fmt.Sprintf("%s (pid %d) exited on its own at %s: %v; see %s", id, cmd.Process.Pid, time.Now().Format("15:04:05.000"), err, n.LogPath)
			c.mu.Lock()
			c.crashes = append(c.crashes, msg)
			c.mu.Unlock()
			c.log.Error("node crashed", "node", id, "err", err)
		}
		close(exited)
	}()
	return nil
}

// signal sends sig to node id's process.
func (c *Cluster) signal(id string, sig syscall.Signal) (*Node, chan struct{}, error) {
	n, err := c.node(id)
	if err != nil {
		return nil, nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state == Stopped || n.cmd == nil {
		return n, nil, fmt.Errorf("cluster: %s is not running", id)
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		n.expectExit = true
	}
	if err := syscall.Kill(n.cmd.Process.Pid, sig); err != nil {
		return n, nil, fmt.Errorf("cluster: signal %v to %s (pid %d): %w", sig, id, n.cmd.Process.Pid, err)
	}
	return n, n.exited, nil
}

// Kill sends SIGKILL to node id and waits for the process to exit.
func (c *Cluster) Kill(id string) error {
	_, exited, err := c.signal(id, syscall.SIGKILL)
	if err != nil {
		return err
	}
	select {
	case <-exited:
		c.log.Info("node killed", "node", id)
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("cluster: %s did not exit 10s after SIGKILL", id)
	}
}

// Stop stops node id gracefully (SIGTERM), killing it if it has not
// exited when ctx ends.
func (c *Cluster) Stop(ctx context.Context, id string) error {
	c.signal(id, syscall.SIGCONT)
	_, exited, err := c.signal(id, syscall.SIGTERM)
	if err != nil {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return c.Kill(id)
	}
}

// Pause stops node id's process with SIGSTOP.
func (c *Cluster) Pause(id string) error {
	n, _, err := c.signal(id, syscall.SIGSTOP)
	if err != nil {
		return err
	}
	n.mu.Lock()
	pid := n.cmd.Process.Pid
	n.mu.Unlock()
	if err := waitStopped(pid, 3*time.Second); err != nil {
		return fmt.Errorf("cluster: pause %s: %w", id, err)
	}
	n.mu.Lock()
	if n.state == Running {
		n.state = Paused
	}
	n.mu.Unlock()
	return nil
}

// Resume continues a paused node with SIGCONT.
func (c *Cluster) Resume(id string) error {
	n, _, err := c.signal(id, syscall.SIGCONT)
	if err != nil {
		return err
	}
	n.mu.Lock()
	if n.state == Paused {
		n.state = Running
	}
	n.mu.Unlock()
	return nil
}

// Close kills every node process (continuing paused ones first so that
// none is left stopped) and waits for them to exit. It is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	c.closed = true
	clients := c.clients
	c.clients = map[string]*client.Client{}
	c.mu.Unlock()
	for _, cl := range clients {
		cl.Close()
	}
	var errs []error
	for _, n := range c.nodes {
		n.mu.Lock()
		running := n.state != Stopped && n.cmd != nil
		var exited chan struct{}
		if running {
			n.expectExit = true
			syscall.Kill(n.cmd.Process.Pid, syscall.SIGKILL)
			syscall.Kill(n.cmd.Process.Pid, syscall.SIGCONT)
			exited = n.exited
		}
		n.mu.Unlock()
		if exited != nil {
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				errs = append(errs, fmt.Errorf("cluster: %s (pid %d) did not exit after SIGKILL", n.ID, n.PID()))
			}
		}
		n.mu.Lock()
		if n.log != nil {
			n.log.Close()
			n.log = nil
		}
		n.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Client returns a client that talks to node id only (routing disabled), for
// status queries of that node's own view.
func (c *Cluster) Client(ctx context.Context, id string) (*client.Client, error) {
	n, err := c.node(id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("cluster: closed")
	}
	if cl := c.clients[id]; cl != nil {
		return cl, nil
	}
	cl, err := client.New(ctx, client.Config{
		Endpoints: []string{n.GRPC}, DisableRouting: true, MaxRetries: -1,
		DialTimeout: time.Second, RequestTimeout: 2 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	c.clients[id] = cl
	return cl, nil
}

// Status returns node id's view of the cluster.
func (c *Cluster) Status(ctx context.Context, id string) (*client.ClusterStatus, error) {
	cl, err := c.Client(ctx, id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return cl.ClusterStatus(ctx)
}

// Healthz reports nil when node id's /healthz answers ok: it knows a
// metadata leader and has applied the keyspaces.
func (c *Cluster) Healthz(ctx context.Context, id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTP+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s healthz: %w", id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s healthz: %s: %s", id, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// WaitReady waits until every node in ids is running, healthy, and sees
// every node in ids alive. It polls until ctx ends and returns the last
// problem seen.
func (c *Cluster) WaitReady(ctx context.Context, ids []string) error {
	var last error
	for {
		last = c.ready(ctx, ids)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Cluster) ready(ctx context.Context, ids []string) error {
	for _, id := range ids {
		n, err := c.node(id)
		if err != nil {
			return err
		}
		switch n.State() {
		case Stopped:
			n.mu.Lock()
			e := n.exitErr
			n.mu.Unlock()
			return fmt.Errorf("%s is not running (exit: %v; see %s)", id, e, n.LogPath)
		case Paused:
			return fmt.Errorf("%s is paused", id)
		}
		if err := c.Healthz(ctx, id); err != nil {
			return err
		}
		st, err := c.Status(ctx, id)
		if err != nil {
			return fmt.Errorf("%s status: %w", id, err)
		}
		alive := map[string]bool{}
		for _, m := range st.Members {
			if m.State == client.StateAlive {
				alive[m.ID] = true
			}
		}
		for _, o := range ids {
			if !alive[o] {
				return fmt.Errorf("%s does not see %s alive yet", id, o)
			}
		}
	}
	return nil
}

// Hook posts to a node's unsafe test hook, e.g. Hook(ctx, "n2", "clock",
// url.Values{"offset": {"-5s"}}).
func (c *Cluster) Hook(ctx context.Context, id, hook string, params url.Values) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	u := "http://" + n.HTTP + "/unsafe/" + hook
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("hook %s on %s: %w", hook, id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("hook %s on %s: not served: was the node started with --unsafe-test-hooks? (%s)", hook, id, resp.Status)
		}
		return fmt.Errorf("hook %s on %s: %s: %s", hook, id, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

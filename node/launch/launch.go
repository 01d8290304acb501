package launch

import (
	"bufio"
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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

// Port offsets within a node's four ports.
const (
	portGRPC   = 0
	portGossip = 1
	portRaft   = 2
	portHTTP   = 3
	portsUsed  = 4
)

// DefaultPortStride is the distance between two nodes' first ports when the
// nodes share one address: node i (1-based) uses BasePort+10*(i-1) to
// BasePort+10*(i-1)+3, which leaves room for ports a later version adds and
// keeps the numbers easy to read (n2's gRPC port ends in 10).
const DefaultPortStride = 10

// Config configures a Cluster. The zero value of every field but Binary and
// Dir is a sensible default.
type Config struct {
	// Binary is the adaptkv binary, run as `Binary node ...`. Required.
	Binary string
	// Nodes is the number of nodes, named n1, n2, ...; default 3.
	Nodes int
	// Dir holds one folder per node, Dir/<id>, with its log (node.log), its
	// PID file (pid) and its data. Required.
	Dir string
	// DataSubdir, when set, puts a node's data in Dir/<id>/<DataSubdir>
	// rather than Dir/<id>, so that the data can be removed and the log
	// kept.
	DataSubdir string
	// Host is the address the nodes bind (node 1's with HostPerNode);
	// default 127.0.0.1.
	Host string
	// HostPerNode gives node i the address Host+i-1 (127.0.0.2, 127.0.0.3,
	// ...), every node on the same ports, so that firewall rules between
	// node addresses can cut node-to-node traffic. Host must then be an
	// IPv4 loopback address.
	HostPerNode bool
	// BasePort is node 1's first port; 0 picks a block that is free now, at
	// random below the kernel's ephemeral range (so that no outgoing
	// connection can take a port a stopped node needs back).
	BasePort int
	// PortStride is the distance between two nodes' first ports when they
	// share an address; default DefaultPortStride. Unused with HostPerNode.
	PortStride int
	// Zones, when set, gives node i the zone Zones[i-1] (--zone).
	Zones []string
	// CertsDir is the certificate directory every node runs with
	// (--certs-dir; ca.crt, node.crt, node.key for the nodes' hosts) and
	// WaitReady's clients connect with (client.root.crt). Exactly one of
	// CertsDir and Insecure is set.
	CertsDir string
	// Insecure runs the nodes plaintext and unauthenticated (--insecure).
	Insecure bool
	// Args are added to every node's command line after the flags the
	// launcher sets (identity, addresses, seeds, --bootstrap-expect).
	Args []string
	// Detach starts every node in a session of its own that outlives the
	// launching process (adaptkv cluster up). Without it a node is in a
	// process group of its own, so that a Ctrl-C at the terminal reaches
	// only the launcher, and, on Linux, the kernel kills it when the
	// launcher dies. With Detach, New also adopts the nodes still running
	// from an earlier launch, found by their PID files.
	Detach bool
	// Name says who starts the nodes in each log's start line; default
	// "launch".
	Name string
	// ReadyPoll is how often WaitReady asks the nodes; default 200 ms.
	ReadyPoll time.Duration
	// Logger receives the launcher's logs about processes; nil discards
	// them.
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

// Node is one node process: its layout, fixed by New, and the process now
// running it, if any.
type Node struct {
	// ID is the node ID (n1, n2, ...).
	ID string
	// Zone is the node's zone, "" without Config.Zones.
	Zone string
	// Host is the node's address.
	Host string
	// GRPC, Gossip, Raft and HTTP are its listen addresses.
	GRPC, Gossip, Raft, HTTP string
	// Dir is the node's folder; DataDir its data directory, LogFile its
	// log and PIDFile the file holding its last PID.
	Dir, DataDir, LogFile, PIDFile string
	// Added is true for a node AddNode or AddReplacement laid out after
	// New: it joins the running cluster (--bootstrap-expect 0) rather than
	// forming it.
	Added bool
	// Replace is, for a node AddReplacement laid out, the dead member it
	// takes the place of: its command line has --replace Replace at every
	// start (a restart once the replacement is under way or done is
	// answered as the first request).
	Replace string

	// removed is set by MarkRemoved: the node has left the cluster for
	// good. Atomic, not under mu: Args reads the other nodes' while
	// StartNode holds this node's mu.
	removed atomic.Bool

	mu      sync.Mutex
	cmd     *exec.Cmd // nil for a process adopted from its PID file
	pid     int
	state   State
	exited  chan struct{} // closed when a started process has exited
	exitErr error
	starts  int
	// expectExit is set when the launcher signals the process to end, so
	// that an exit without it is reported as a crash.
	expectExit bool
}

// PID returns the running process's ID, 0 when none.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stateLocked() == Stopped {
		return 0
	}
	return n.pid
}

// State returns the node's process state. An adopted process (one a
// detached launch started earlier) is looked up again each time.
func (n *Node) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stateLocked()
}

// stateLocked is State with n.mu held.
func (n *Node) stateLocked() State {
	if n.cmd == nil && n.state != Stopped && !NodeRunning(n.pid, n.ID) {
		n.state = Stopped
	}
	return n.state
}

// Removed reports whether MarkRemoved marked the node as gone for good.
func (n *Node) Removed() bool { return n.removed.Load() }

// LastPID returns the ID of the last process started or adopted for the
// node, running or not (0 when there was none).
func (n *Node) LastPID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pid
}

// Cluster is a set of node processes laid out by New.
type Cluster struct {
	cfg  Config
	log  *slog.Logger
	http *http.Client

	mu sync.Mutex
	// nodes and byID grow when AddNode lays out a node.
	nodes   []*Node
	byID    map[string]*Node
	closed  bool
	crashes []string
}

// New lays out a cluster without starting it: it checks cfg, fills in its
// defaults, picks the ports when cfg.BasePort is 0 and, with cfg.Detach,
// adopts the nodes still running from an earlier launch in cfg.Dir.
func New(cfg Config) (*Cluster, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 1 || cfg.Nodes > 200 {
		return nil, fmt.Errorf("launch: %d nodes: want 1 to 200", cfg.Nodes)
	}
	if cfg.Binary == "" {
		return nil, errors.New("launch: Config.Binary (the adaptkv binary) is required")
	}
	if _, err := os.Stat(cfg.Binary); err != nil {
		return nil, fmt.Errorf("launch: node binary: %w", err)
	}
	if cfg.Dir == "" {
		return nil, errors.New("launch: Config.Dir is required")
	}
	if (cfg.CertsDir == "") == !cfg.Insecure {
		return nil, errors.New("launch: set exactly one of Config.CertsDir (secure nodes) and Config.Insecure")
	}
	if len(cfg.Zones) > 0 && len(cfg.Zones) != cfg.Nodes {
		return nil, fmt.Errorf("launch: %d zones for %d nodes", len(cfg.Zones), cfg.Nodes)
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.PortStride == 0 {
		cfg.PortStride = DefaultPortStride
	}
	if cfg.HostPerNode {
		cfg.PortStride = 0
	} else if cfg.PortStride < portsUsed {
		return nil, fmt.Errorf("launch: port stride %d: want at least %d", cfg.PortStride, portsUsed)
	}
	if cfg.Name == "" {
		cfg.Name = "launch"
	}
	if cfg.ReadyPoll == 0 {
		cfg.ReadyPoll = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hosts, err := nodeHosts(cfg.Host, cfg.HostPerNode, 0, cfg.Nodes)
	if err != nil {
		return nil, err
	}
	if cfg.BasePort == 0 {
		if cfg.BasePort, err = pickBasePort(hosts, cfg.PortStride); err != nil {
			return nil, err
		}
	}
	if cfg.BasePort < 0 || cfg.BasePort+cfg.PortStride*(cfg.Nodes-1)+portHTTP > 65535 {
		return nil, fmt.Errorf("launch: base port %d: the ports of %d nodes do not fit below 65536", cfg.BasePort, cfg.Nodes)
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger, byID: map[string]*Node{}, http: &http.Client{Timeout: 3 * time.Second}}
	for i, h := range hosts {
		zone := ""
		if len(cfg.Zones) > 0 {
			zone = cfg.Zones[i]
		}
		n := c.layout(i, h, zone)
		if cfg.Detach {
			n.adopt()
		}
		c.nodes = append(c.nodes, n)
		c.byID[n.ID] = n
	}
	return c, nil
}

// layout returns node i's (0-based) layout on host h, stopped.
func (c *Cluster) layout(i int, h, zone string) *Node {
	id := fmt.Sprintf("n%d", i+1)
	p := c.cfg.BasePort + c.cfg.PortStride*i
	addr := func(off int) string { return net.JoinHostPort(h, strconv.Itoa(p+off)) }
	dir := filepath.Join(c.cfg.Dir, id)
	return &Node{ID: id, Zone: zone, Host: h, GRPC: addr(portGRPC), Gossip: addr(portGossip), Raft: addr(portRaft), HTTP: addr(portHTTP),
		Dir: dir, DataDir: filepath.Join(dir, c.cfg.DataSubdir), LogFile: filepath.Join(dir, "node.log"), PIDFile: filepath.Join(dir, "pid"),
		state: Stopped}
}

// AddNode lays out one more node, n<k+1> after k nodes, in zone (which may
// be ""), without starting it: the next address (with HostPerNode) or the
// next port block, checked free now. Its command line has
// --bootstrap-expect 0 and every other node's gossip address as seeds, so
// that StartNode makes it join the running cluster; the nodes laid out by
// New keep their own --bootstrap-expect, and take the new node among their
// seeds at their next start.
func (c *Cluster) AddNode(zone string) (*Node, error) {
	return c.addNode(zone, false, "")
}

// Relayout lays out the next node as AddNode laid it out in an earlier
// launch of the same cluster (adaptkv cluster add records such nodes), so
// that a new launcher knows every node: with Config.Detach it adopts the
// node's process if it still runs, and it checks no ports, which may be
// the node's own.
func (c *Cluster) Relayout(zone string) (*Node, error) {
	return c.addNode(zone, true, "")
}

// AddReplacement lays out the next node as AddNode does, to take the place
// of the dead member dead: its command line also has --replace dead. The
// caller makes sure dead is down (Kill) and, since it leaves the ring for
// good, marks it removed (MarkRemoved) so that it is neither restarted nor
// taken as a seed.
func (c *Cluster) AddReplacement(zone, dead string) (*Node, error) {
	if _, err := c.node(dead); err != nil {
		return nil, err
	}
	return c.addNode(zone, false, dead)
}

// addNode is AddNode, or with again Relayout, or with replace
// AddReplacement.
func (c *Cluster) addNode(zone string, again bool, replace string) (*Node, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("launch: cluster closed")
	}
	i := len(c.nodes)
	hosts, err := nodeHosts(c.cfg.Host, c.cfg.HostPerNode, i, 1)
	if err != nil {
		return nil, err
	}
	base := c.cfg.BasePort + c.cfg.PortStride*i
	if base+portHTTP > 65535 {
		return nil, fmt.Errorf("launch: node n%d's ports from %d do not fit below 65536", i+1, base)
	}
	if !again && !PortsFree(hosts, base, 0) {
		return nil, fmt.Errorf("launch: node n%d's ports %d-%d on %s are taken", i+1, base, base+portHTTP, hosts[0])
	}
	n := c.layout(i, hosts[0], zone)
	n.Added, n.Replace = true, replace
	if again && c.cfg.Detach {
		n.adopt()
	}
	c.nodes = append(c.nodes, n)
	c.byID[n.ID] = n
	c.log.Info("node laid out to join", "node", n.ID, "grpc", n.GRPC)
	return n, nil
}

// MarkRemoved records that node id has left the cluster for good (it was
// decommissioned): StartNode refuses to start it again and the other
// nodes no longer take it as a seed. Its place in the layout stays, so
// that the nodes after it keep their addresses.
func (c *Cluster) MarkRemoved(id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	n.removed.Store(true)
	return nil
}

// nodeHosts returns the addresses of count nodes from node index first
// (0-based): host itself, or host+index with perNode.
func nodeHosts(host string, perNode bool, first, count int) ([]string, error) {
	hosts := make([]string, count)
	if !perNode {
		for i := range hosts {
			hosts[i] = host
		}
		return hosts, nil
	}
	ip0 := net.ParseIP(host).To4()
	if ip0 == nil || !ip0.IsLoopback() {
		return nil, fmt.Errorf("launch: first address %q: want an IPv4 loopback address such as 127.0.0.2", host)
	}
	if int(ip0[3])+first+count-1 > 254 {
		return nil, fmt.Errorf("launch: %d nodes from %s run past the last address of its /24", first+count, host)
	}
	for i := range hosts {
		ip := slices.Clone(ip0)
		ip[3] += byte(first + i)
		hosts[i] = ip.String()
	}
	return hosts, nil
}

// adopt takes over the process named by the node's PID file when it is
// still this node (see NodeRunning).
func (n *Node) adopt() {
	b, err := os.ReadFile(n.PIDFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return
	}
	n.pid = pid
	if NodeRunning(pid, n.ID) {
		n.state = Running
	}
}

// EphemeralLow is the lowest port the kernel hands out to outgoing
// connections (32768 when it cannot be read).
func EphemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > 0 {
				return lo
			}
		}
	}
	return 32768
}

// PortsFree reports whether the ports of nodes on hosts (node i on
// hosts[i]) from base, stride apart, can all be bound now: TCP, and UDP
// for gossip.
func PortsFree(hosts []string, base, stride int) bool {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for i, h := range hosts {
		for off := range portsUsed {
			addr := net.JoinHostPort(h, strconv.Itoa(base+stride*i+off))
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return false
			}
			closers = append(closers, ln)
			if off == portGossip {
				pc, err := net.ListenPacket("udp", addr)
				if err != nil {
					return false
				}
				closers = append(closers, pc)
			}
		}
	}
	return true
}

// pickBasePort finds a base port whose whole block is free, at random
// between 10000 and the ephemeral range. Random rather than first-fit so
// that clusters laid out at the same moment (parallel tests) rarely try
// the same block. Another process may still take a port before the node
// binds it; the node then exits, which WaitReady reports.
func pickBasePort(hosts []string, stride int) (int, error) {
	span := stride*(len(hosts)-1) + portsUsed
	lo, hi := 10000, EphemeralLow()-span
	if hi <= lo {
		lo, hi = 10000, 65535-span
	}
	step := max(stride, portsUsed)
	for range 200 {
		base := lo + step*rand.IntN((hi-lo)/step)
		if PortsFree(hosts, base, stride) {
			return base, nil
		}
	}
	return 0, fmt.Errorf("launch: no free block of %d ports found between %d and %d on %s", span, lo, hi, strings.Join(slices.Compact(slices.Clone(hosts)), ", "))
}

// Config returns the cluster's configuration with its defaults filled in
// and the base port picked.
func (c *Cluster) Config() Config { return c.cfg }

// Nodes returns the nodes in order n1, n2, ..., those AddNode added
// included.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

// Node returns the node with the given ID, or nil.
func (c *Cluster) Node(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byID[id]
}

// IDs returns the node IDs in order.
func (c *Cluster) IDs() []string {
	nodes := c.Nodes()
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	return ids
}

// Endpoints returns every node's gRPC address.
func (c *Cluster) Endpoints() []string {
	nodes := c.Nodes()
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.GRPC
	}
	return out
}

// PIDs maps the running nodes' IDs to their process IDs.
func (c *Cluster) PIDs() map[string]int {
	m := map[string]int{}
	for _, n := range c.Nodes() {
		if pid := n.PID(); pid != 0 {
			m[n.ID] = pid
		}
	}
	return m
}

// Crashes describes the node processes that exited without the launcher
// asking them to: crashes of the system under test.
func (c *Cluster) Crashes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.crashes)
}

func (c *Cluster) node(id string) (*Node, error) {
	n := c.Node(id)
	if n == nil {
		return nil, fmt.Errorf("launch: no node %q (nodes: %s)", id, strings.Join(c.IDs(), ", "))
	}
	return n, nil
}

// Args returns the command line node n runs with, after the binary: `node`,
// its identity and addresses, --certs-dir or --insecure, the other nodes' gossip addresses as seeds,
// --bootstrap-expect (the size New laid out, 0 for a node AddNode added),
// then Config.Args.
func (c *Cluster) Args(n *Node) []string {
	expect := c.cfg.Nodes
	if n.Added {
		expect = 0
	}
	var seeds []string
	for _, o := range c.Nodes() {
		if o != n && !o.Removed() {
			seeds = append(seeds, o.Gossip)
		}
	}
	args := []string{"node",
		"--id", n.ID, "--data-dir", n.DataDir,
		"--grpc-addr", n.GRPC, "--gossip-addr", n.Gossip, "--raft-addr", n.Raft, "--http-addr", n.HTTP,
	}
	if c.cfg.Insecure {
		args = append(args, "--insecure")
	} else {
		args = append(args, "--certs-dir", c.cfg.CertsDir)
	}
	args = append(args, "--bootstrap-expect", strconv.Itoa(expect))
	if len(seeds) > 0 {
		args = append(args, "--seeds", strings.Join(seeds, ","))
	}
	if n.Zone != "" {
		args = append(args, "--zone", n.Zone)
	}
	if n.Replace != "" {
		args = append(args, "--replace", n.Replace)
	}
	return append(args, c.cfg.Args...)
}

// Start starts every node that is not running and waits until the cluster
// is ready (see WaitReady). On failure the processes it started keep
// running: the caller ends them (Close, StopAll).
func (c *Cluster) Start(ctx context.Context) error {
	for _, n := range c.Nodes() {
		if err := c.StartNode(n.ID); err != nil {
			return err
		}
	}
	return c.WaitReady(ctx, c.IDs(), nil)
}

// StartNode starts node id's process if it is not running; a restart keeps
// the node's ID, addresses and data directory. It returns once the process
// is started, not once it serves. The node's configuration is its command
// line and nothing else: the ADAPTKV_ variables of the launcher's
// environment are not passed on, so that one exported for the CLI (say
// ADAPTKV_IN_MEMORY) cannot change a node behind the launcher's back.
func (c *Cluster) StartNode(id string) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return errors.New("launch: cluster closed")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stateLocked() != Stopped {
		return nil
	}
	if n.removed.Load() {
		return fmt.Errorf("launch: %s was removed from the cluster; it does not start again", id)
	}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return fmt.Errorf("launch: %s: %w", id, err)
	}
	logf, err := os.OpenFile(n.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("launch: %s log: %w", id, err)
	}
	defer logf.Close() // the child has its own descriptor
	args := c.Args(n)
	fmt.Fprintf(logf, "=== %s: %s starts %s (start #%d): %s %s\n", time.Now().Format(time.RFC3339Nano), c.cfg.Name, id, n.starts+1, c.cfg.Binary, strings.Join(args, " "))
	// Not CommandContext: a node must outlive a canceled context long
	// enough to be stopped cleanly.
	cmd := exec.Command(c.cfg.Binary, args...)
	cmd.Dir = n.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ADAPTKV_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = sysProcAttr(c.cfg.Detach)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("launch: start %s (%s): %w", id, c.cfg.Binary, err)
	}
	exited := make(chan struct{})
	n.cmd, n.pid, n.state, n.exited, n.exitErr, n.expectExit = cmd, cmd.Process.Pid, Running, exited, nil, false
	n.starts++
	c.log.Info("node started", "node", id, "pid", n.pid, "grpc", n.GRPC, "http", n.HTTP)
	// Reap the process when it exits, so that it does not linger as a
	// zombie that kill(pid, 0) still finds, and so that waits learn of the
	// exit at once.
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		expected := n.expectExit
		if n.cmd == cmd {
			n.state, n.exitErr = Stopped, err
		}
		n.mu.Unlock()
		if !expected {
			msg := fmt.Sprintf("%s (pid %d) exited on its own at %s: %v; see %s", id, cmd.Process.Pid, time.Now().Format("15:04:05.000"), err, n.LogFile)
			c.mu.Lock()
			c.crashes = append(c.crashes, msg)
			c.mu.Unlock()
			c.log.Error("node crashed", "node", id, "err", err)
		}
		close(exited)
	}()
	if err := os.WriteFile(n.PIDFile, []byte(strconv.Itoa(n.pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("launch: %s pid file: %w", id, err)
	}
	return nil
}

// ExpectExit marks the exit of node id's running process as expected, so
// that it is not recorded as a crash: the node was asked to end by other
// means than a signal (a decommissioned node exits by itself once it has
// left the ring). expect false undoes it, when the request was refused.
func (c *Cluster) ExpectExit(id string, expect bool) error {
	n, err := c.node(id)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stateLocked() == Stopped {
		return fmt.Errorf("launch: %s is not running", id)
	}
	n.expectExit = expect
	return nil
}

// signal sends sig to node id's process; a SIGTERM or SIGKILL marks its
// exit as expected.
func (c *Cluster) signal(id string, sig syscall.Signal) (*Node, error) {
	n, err := c.node(id)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stateLocked() == Stopped {
		return n, fmt.Errorf("launch: %s is not running", id)
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		n.expectExit = true
	}
	if err := syscall.Kill(n.pid, sig); err != nil {
		return n, fmt.Errorf("launch: signal %v to %s (pid %d): %w", sig, id, n.pid, err)
	}
	return n, nil
}

// waitExit waits until n's process has exited or timeout passes, and
// reports whether it exited.
func (n *Node) waitExit(timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.waitExitCtx(ctx)
}

// waitExitCtx waits until n's process has exited or ctx ends, and reports
// whether it exited. A process this launcher started is reaped by its
// watcher; an adopted one is polled.
func (n *Node) waitExitCtx(ctx context.Context) bool {
	n.mu.Lock()
	started, exited, pid := n.cmd != nil, n.exited, n.pid
	n.mu.Unlock()
	if started {
		select {
		case <-exited:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for NodeRunning(pid, n.ID) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true
}

// killWait bounds the wait for a process to exit after SIGKILL.
const killWait = 10 * time.Second

// Kill sends SIGKILL to node id and waits for the process to exit.
func (c *Cluster) Kill(id string) error {
	n, err := c.signal(id, syscall.SIGKILL)
	if err != nil {
		return err
	}
	if !n.waitExit(killWait) {
		return fmt.Errorf("launch: %s did not exit %v after SIGKILL", id, killWait)
	}
	c.log.Info("node killed", "node", id)
	return nil
}

// Stop stops node id gracefully (SIGTERM, after a SIGCONT in case it is
// paused) and waits for it to exit, killing it if it has not when ctx ends.
func (c *Cluster) Stop(ctx context.Context, id string) error {
	c.signal(id, syscall.SIGCONT)
	n, err := c.signal(id, syscall.SIGTERM)
	if err != nil {
		return err
	}
	if n.waitExitCtx(ctx) {
		return nil
	}
	return c.Kill(id)
}

// StopAll stops every running node gracefully (SIGTERM) and kills those
// still running after timeout. It returns the nodes it stopped and those
// among them it had to kill; the error names a node that outlived even
// SIGKILL.
func (c *Cluster) StopAll(timeout time.Duration) (stopped, killed []string, err error) {
	var procs []Proc
	for _, n := range c.Nodes() {
		c.signal(n.ID, syscall.SIGCONT)
		if _, err := c.signal(n.ID, syscall.SIGTERM); err == nil {
			stopped = append(stopped, n.ID)
			procs = append(procs, Proc{ID: n.ID, PID: n.LastPID()})
		}
	}
	deadline := time.Now().Add(timeout)
	for _, id := range stopped {
		if !c.Node(id).waitExit(time.Until(deadline)) {
			if _, err := c.signal(id, syscall.SIGKILL); err == nil {
				c.log.Warn("node did not stop in time; killing it", "node", id, "timeout", timeout)
				killed = append(killed, id)
			}
		}
	}
	for _, id := range killed {
		if n := c.Node(id); !n.waitExit(killWait) {
			err = errors.Join(err, fmt.Errorf("node %s (pid %d) did not stop even after SIGKILL", id, n.LastPID()))
		}
	}
	return stopped, killed, err
}

// Pause stops node id's process with SIGSTOP and returns once the kernel
// reports it stopped.
func (c *Cluster) Pause(id string) error {
	n, err := c.signal(id, syscall.SIGSTOP)
	if err != nil {
		return err
	}
	if err := waitStopped(n.LastPID(), 3*time.Second); err != nil {
		return fmt.Errorf("launch: pause %s: %w", id, err)
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
	n, err := c.signal(id, syscall.SIGCONT)
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

// Close kills every node process this Cluster started (continuing paused
// ones first, so that none is left stopped) and waits for them to exit.
// Processes adopted from PID files are left running: a detached cluster
// outlives its launcher. Close is idempotent, and StartNode fails after it.
func (c *Cluster) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	var errs []error
	for _, n := range c.Nodes() {
		n.mu.Lock()
		started := n.cmd != nil && n.state != Stopped
		if started {
			n.expectExit = true
			syscall.Kill(n.pid, syscall.SIGKILL)
			syscall.Kill(n.pid, syscall.SIGCONT)
		}
		n.mu.Unlock()
		if started && !n.waitExit(killWait) {
			errs = append(errs, fmt.Errorf("launch: %s (pid %d) did not exit after SIGKILL", n.ID, n.LastPID()))
		}
	}
	return errors.Join(errs...)
}

// Healthz reports nil when node id's /healthz answers 200: it knows a
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
		return fmt.Errorf("%s healthz: not answering yet: %w", id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s healthz: %s: %s", id, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Hook posts to one of node id's unsafe test hooks (the node must run with
// --unsafe-test-hooks), e.g. Hook(ctx, "n2", "clock", url.Values{"offset":
// {"-5s"}}) posts /unsafe/clock?offset=-5s.
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

// NotRunningError says that a node WaitReady waits for is not running.
type NotRunningError struct {
	// ID is the node; PID its last process.
	ID  string
	PID int
	// Started is true when this Cluster started the process (it exited
	// during the wait, with Exit its status), false for an adopted one.
	Started bool
	Exit    error
	// LogFile is the node's log; LastLine its last line, for a node that
	// failed to start its error.
	LogFile, LastLine string
}

// Error says which node and where to look.
func (e *NotRunningError) Error() string {
	if e.Started {
		return fmt.Sprintf("node %s exited during startup (%v): %s; see %s", e.ID, e.Exit, e.LastLine, e.LogFile)
	}
	return fmt.Sprintf("node %s (pid %d) is not running; see %s", e.ID, e.PID, e.LogFile)
}

// NotReadyError says which nodes were not ready when WaitReady's context
// ended, and why.
type NotReadyError struct {
	// Problems are "<id> (<why>)", in node order.
	Problems []string
	// Logs are those nodes' log files.
	Logs []string
	// Err is the context's error.
	Err error
}

// Error lists the nodes and their logs.
func (e *NotReadyError) Error() string {
	return fmt.Sprintf("not up: %s; see %s", strings.Join(e.Problems, ", "), strings.Join(e.Logs, ", "))
}

// Unwrap returns the context's error.
func (e *NotReadyError) Unwrap() error { return e.Err }

// Progress is what WaitReady reports while it waits.
type Progress struct {
	// Ready is the node that just became ready, nil on a tick when none
	// did.
	Ready *Node
	// Waiting are the nodes not ready yet.
	Waiting []string
	// Elapsed is the time since the wait began.
	Elapsed time.Duration
}

// WaitReady waits until every node in ids is running, answers /healthz,
// and sees every node in ids alive in its own ClusterStatus: asking each
// node, rather than one, makes sure they all see each other before a
// client's first request. It polls every Config.ReadyPoll until ctx ends
// (then a *NotReadyError), and fails at once with a *NotRunningError when
// a node is not running. watch, when not nil, is called with each node that
// becomes ready and once a poll with the nodes still waited for.
func (c *Cluster) WaitReady(ctx context.Context, ids []string, watch func(Progress)) error {
	begin := time.Now()
	want := make([]*Node, 0, len(ids))
	for _, id := range ids {
		n, err := c.node(id)
		if err != nil {
			return err
		}
		want = append(want, n)
	}
	problem := map[string]string{}
	ready := map[string]bool{}
	clients := map[string]*client.Client{}
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	tick := time.NewTicker(c.cfg.ReadyPoll)
	defer tick.Stop()
	for {
		for _, n := range want {
			if ready[n.ID] {
				continue
			}
			why, err := c.notReady(ctx, n, ids, clients)
			if err != nil {
				return err
			}
			if why != "" {
				problem[n.ID] = why
				continue
			}
			ready[n.ID] = true
			delete(problem, n.ID)
			if watch != nil {
				watch(Progress{Ready: n, Elapsed: time.Since(begin)})
			}
		}
		var waiting []string
		for _, n := range want {
			if !ready[n.ID] {
				waiting = append(waiting, n.ID)
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		if watch != nil {
			watch(Progress{Waiting: waiting, Elapsed: time.Since(begin)})
		}
		select {
		case <-ctx.Done():
			e := &NotReadyError{Err: ctx.Err()}
			for _, n := range want {
				if !ready[n.ID] {
					e.Problems = append(e.Problems, fmt.Sprintf("%s (%s)", n.ID, problem[n.ID]))
					e.Logs = append(e.Logs, n.LogFile)
				}
			}
			return e
		case <-tick.C:
		}
	}
}

// notReady says why node n is not ready ("" when it is), or returns an
// error when waiting for it is pointless.
func (c *Cluster) notReady(ctx context.Context, n *Node, ids []string, clients map[string]*client.Client) (string, error) {
	switch n.State() {
	case Stopped:
		n.mu.Lock()
		e := &NotRunningError{ID: n.ID, PID: n.pid, Started: n.cmd != nil, Exit: n.exitErr, LogFile: n.LogFile}
		n.mu.Unlock()
		e.LastLine = LastLogLine(n.LogFile)
		return "", e
	case Paused:
		return "paused", nil
	}
	hctx, cancel := context.WithTimeout(ctx, time.Second)
	err := c.Healthz(hctx, n.ID)
	cancel()
	if err != nil {
		return err.Error(), nil
	}
	cl := clients[n.ID]
	if cl == nil {
		var err error
		cl, err = client.New(ctx, c.ClientConfig(client.Config{Endpoints: []string{n.GRPC}, DisableRouting: true, MaxRetries: -1,
			DialTimeout: time.Second, RequestTimeout: 2 * time.Second}))
		if err != nil {
			return "", fmt.Errorf("node %s: %w", n.ID, err)
		}
		clients[n.ID] = cl
	}
	st, err := cl.ClusterStatus(ctx)
	if err != nil {
		return err.Error(), nil
	}
	var missing []string
	for _, id := range ids {
		if !slices.ContainsFunc(st.Members, func(m client.Member) bool { return m.ID == id && m.State == client.StateAlive }) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("sees %d of %d nodes alive (not %s)", len(ids)-len(missing), len(ids), strings.Join(missing, ", ")), nil
	}
	return "", nil
}

// ClientConfig returns cfg set up to reach the cluster's nodes: the root
// user's certificate from Config.CertsDir, or plaintext for an insecure
// cluster.
func (c *Cluster) ClientConfig(cfg client.Config) client.Config {
	if !c.cfg.Insecure && cfg.TLS == nil && cfg.CertsDir == "" {
		cfg.CertsDir = c.cfg.CertsDir
	}
	return cfg
}

// LastLogLine returns the last non-empty line of a log file, which for a
// node that failed to start is its error.
func LastLogLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "no log"
	}
	defer f.Close()
	// The end of the file is enough; a node's log can be long.
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
	if last == "" {
		return "empty log"
	}
	return last
}

// Proc is a node process known by its PID, for waits across launches.
type Proc struct {
	// ID is the node ID; PID its process.
	ID  string
	PID int
}

// WaitGone waits until none of procs is running (see NodeRunning) or
// timeout passes, and returns those still running.
func WaitGone(procs []Proc, timeout time.Duration) []Proc {
	deadline := time.Now().Add(timeout)
	for {
		var left []Proc
		for _, p := range procs {
			if NodeRunning(p.PID, p.ID) {
				left = append(left, p)
			}
		}
		if len(left) == 0 || !time.Now().Before(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// NodeRunning reports whether pid is a running `adaptkv node --id id`
// process. A PID file can outlive its process and the PID be reused by
// something else, and signalling that would be a disaster; so besides
// kill(pid, 0) the command line must show an adaptkv node with this ID. A
// zombie has an empty command line and counts as not running. Without
// /proc (macOS), kill(pid, 0) alone decides.
func NodeRunning(pid int, id string) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
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

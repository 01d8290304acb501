package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/client"
)

// layoutFile, in the cluster folder, records the local cluster's layout.
const layoutFile = "cluster.json"

// upKey is the key `cluster up` writes to measure the time to the first
// acknowledged write; the leading underscores keep it out of users' way.
const upKey = "__adaptkv_up"

// Port offsets within a node's block of ports: node i (1-based) uses
// base+10*(i-1)+offset.
const (
	portGRPC   = 0
	portGossip = 1
	portRaft   = 2
	portHTTP   = 3
	portStride = 10
)

// layout is a local cluster as cluster.json records it. Everything a node
// needs to start again is derived from it, so `cluster start` restarts a
// node with exactly the flags `cluster up` gave it.
type layout struct {
	Dir      string      `json:"dir"`
	Host     string      `json:"host"`
	BasePort int         `json:"base_port"`
	InMemory bool        `json:"in_memory"`
	Created  time.Time   `json:"created"`
	Nodes    []nodeEntry `json:"nodes"`
}

// nodeEntry is one node of a layout.
type nodeEntry struct {
	ID         string `json:"id"`
	GRPCAddr   string `json:"grpc_addr"`
	GossipAddr string `json:"gossip_addr"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr"`
	DataDir    string `json:"data_dir"`
	LogFile    string `json:"log_file"`
	// PID is the last process started for the node; DataDir/pid holds the
	// same number.
	PID int `json:"pid"`
}

func (n nodeEntry) pidFile() string { return filepath.Join(n.DataDir, "pid") }

// running reports whether the node's recorded process is alive.
func (n nodeEntry) running() bool { return nodeRunning(n.PID, n.ID) }

// newLayout lays out n nodes on host from base port base.
func newLayout(dir, host string, n, base int, inMemory bool) *layout {
	l := &layout{Dir: dir, Host: host, BasePort: base, InMemory: inMemory, Created: time.Now().UTC()}
	for i := range n {
		p := base + portStride*i
		addr := func(off int) string { return net.JoinHostPort(host, strconv.Itoa(p+off)) }
		id := fmt.Sprintf("n%d", i+1)
		l.Nodes = append(l.Nodes, nodeEntry{
			ID: id, GRPCAddr: addr(portGRPC), GossipAddr: addr(portGossip), RaftAddr: addr(portRaft), HTTPAddr: addr(portHTTP),
			DataDir: filepath.Join(dir, id), LogFile: filepath.Join(dir, id, "node.log"),
		})
	}
	return l
}

// loadLayout reads dir's cluster.json, refreshing each node's PID from its
// PID file (the newer record when a start was interrupted). A missing file
// is fs.ErrNotExist.
func loadLayout(dir string) (*layout, error) {
	b, err := os.ReadFile(filepath.Join(dir, layoutFile))
	if err != nil {
		return nil, err
	}
	var l layout
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); stop its nodes and remove the folder, or use another --dir", filepath.Join(dir, layoutFile), err)
	}
	for i := range l.Nodes {
		if b, err := os.ReadFile(l.Nodes[i].pidFile()); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				l.Nodes[i].PID = pid
			}
		}
	}
	return &l, nil
}

// save writes cluster.json atomically, so that a reader never sees half of
// it.
func (l *layout) save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(l.Dir, layoutFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(l.Dir, layoutFile))
}

func (l *layout) ids() []string {
	var ids []string
	for _, n := range l.Nodes {
		ids = append(ids, n.ID)
	}
	return ids
}

// node returns the entry of node id, or a usage error listing the nodes.
func (l *layout) node(id string) (*nodeEntry, error) {
	for i := range l.Nodes {
		if l.Nodes[i].ID == id {
			return &l.Nodes[i], nil
		}
	}
	return nil, usagef("no node %q in the cluster at %s (nodes: %s)", id, l.Dir, strings.Join(l.ids(), ", "))
}

// nodeArgs are the arguments of node's `adaptkv node` process.
func (l *layout) nodeArgs(n nodeEntry) []string {
	var seeds []string
	for _, o := range l.Nodes {
		if o.ID != n.ID {
			seeds = append(seeds, o.GossipAddr)
		}
	}
	args := []string{"node",
		"--id", n.ID, "--data-dir", n.DataDir,
		"--grpc-addr", n.GRPCAddr, "--gossip-addr", n.GossipAddr, "--raft-addr", n.RaftAddr, "--http-addr", n.HTTPAddr,
		"--bootstrap-expect", strconv.Itoa(len(l.Nodes)),
		"--in-memory=" + strconv.FormatBool(l.InMemory),
		"--local-timings=true",
	}
	if len(seeds) > 0 {
		args = append(args, "--seeds", strings.Join(seeds, ","))
	}
	return args
}

// child is a node process started by this command; done is closed when it
// exits, with err its exit status.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// startNode starts node n as a detached `adaptkv node` process logging to
// its log file, and records its PID. The child's environment drops every
// ADAPTKV_ variable: its configuration is the layout's and nothing else, so
// that a variable exported for the CLI (say ADAPTKV_IN_MEMORY) cannot
// change a node behind the layout's back.
func (l *layout) startNode(n *nodeEntry) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the adaptkv binary to start %s: %w", n.ID, err)
	}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(n.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	args := l.nodeArgs(*n)
	fmt.Fprintf(logf, "=== %s: adaptkv cluster starts %s: %s %s\n", time.Now().Format(time.RFC3339), n.ID, exe, strings.Join(args, " "))
	cmd := exec.Command(exe, args...)
	cmd.Dir = n.DataDir
	cmd.Stdout, cmd.Stderr = logf, logf
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", n.ID, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	// Reap the child if it exits while this command runs, so that it does
	// not linger as a zombie that kill(pid, 0) still finds, and so that the
	// wait below can report the exit at once.
	go func() { c.err = cmd.Wait(); close(c.done) }()
	n.PID = cmd.Process.Pid
	if err := os.WriteFile(n.pidFile(), []byte(strconv.Itoa(n.PID)+"\n"), 0o644); err != nil {
		return c, err
	}
	return c, nil
}

// ephemeralLow is the lowest port the kernel hands out to outgoing
// connections. Picked ports stay below it, so that no node's outgoing
// connection can take a port a stopped node must get back on restart.
func ephemeralLow() int {
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

// portsFree reports whether every port of n nodes' blocks from base can be
// bound on host now (TCP, and UDP for gossip).
func portsFree(host string, base, n int) bool {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for i := range n {
		for off := portGRPC; off <= portHTTP; off++ {
			addr := net.JoinHostPort(host, strconv.Itoa(base+portStride*i+off))
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
// between 10000 and the ephemeral range, for --base-port 0. Random rather
// than first-fit so that clusters picked at the same moment (parallel
// tests) rarely try the same block; it is recorded in cluster.json, so
// restarts keep the ports.
func pickBasePort(host string, n int) (int, error) {
	lo, hi := 10000, ephemeralLow()-portStride*n
	if hi <= lo {
		lo, hi = 10000, 65535-portStride*n
	}
	for range 200 {
		base := lo + portStride*rand.IntN((hi-lo)/portStride)
		if portsFree(host, base, n) {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no free block of %d ports found between %d and %d on %s", portStride*n, lo, hi, host)
}

// clusterFlags are the flags shared by the cluster commands that start
// nodes.
type clusterFlags struct {
	nodes    int
	basePort int
	inMemory bool
	wait     time.Duration
}

func (a *app) clusterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Run a local cluster of node processes (up, status, down, kill, start)",
		Long: `Run a cluster of adaptkv node processes on this machine, for development
and experiments. Its layout, PIDs, data and logs live in --dir (default
$ADAPTKV_DIR, else ~/.adaptkv/local); every other command finds the cluster
there without being told.`,
	}
	cmd.AddCommand(a.clusterUpCommand(), a.clusterStatusCommand(), a.clusterDownCommand(), a.clusterKillCommand(), a.clusterStartCommand())
	return cmd
}

func (a *app) clusterUpCommand() *cobra.Command {
	var f clusterFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a local cluster, or the nodes of it that are not running",
		Long: `Start N node processes on 127.0.0.1 and wait until the cluster is healthy
and has acknowledged a first write. Node i is named n<i> and uses ports
base+10*(i-1) (gRPC), +1 (gossip), +2 (Raft) and +3 (HTTP); --base-port 0
picks a free block. The processes keep running after this command returns.

Run again, it restarts only the nodes that are not running, with the
recorded layout.`,
		Args: cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.clusterUp(cmd, f)
		},
	}
	flags := cmd.Flags()
	flags.IntVar(&f.nodes, "nodes", 3, "number of nodes")
	flags.IntVar(&f.basePort, "base-port", 7400, "first port of node n1's block; 0 picks a free block")
	flags.BoolVar(&f.inMemory, "in-memory", false, "keep data in memory only (a restarted node comes back empty and is repaired by hints)")
	flags.DurationVar(&f.wait, "wait", 60*time.Second, "how long to wait for the cluster to become healthy")
	return cmd
}

// clusterDir returns --dir as an absolute path, which cluster.json records
// so that it still means the same folder from anywhere.
func (a *app) clusterDir() (string, error) {
	if a.dir == "" {
		return "", usagef("--dir is empty")
	}
	return filepath.Abs(a.dir)
}

// openLayout locks and loads an existing cluster for the commands that
// manage one. The caller runs unlock.
func (a *app) openLayout() (l *layout, unlock func(), err error) {
	dir, err := a.clusterDir()
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, layoutFile)); err != nil {
		return nil, nil, fmt.Errorf("no local cluster in %s (no %s); start one with `adaptkv cluster up`", dir, layoutFile)
	}
	unlock, err = lockDir(dir)
	if err != nil {
		return nil, nil, err
	}
	l, err = loadLayout(dir)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return l, unlock, nil
}

// upJSON is the JSON output of cluster up and cluster status.
type upJSON struct {
	Dir               string         `json:"dir"`
	InMemory          bool           `json:"in_memory"`
	BasePort          int            `json:"base_port"`
	Nodes             []nodeJSON     `json:"nodes"`
	Started           []string       `json:"started,omitempty"`
	FirstWriteSeconds float64        `json:"first_write_seconds,omitempty"`
	View              *clusterViewJS `json:"view,omitempty"`
}

type nodeJSON struct {
	ID         string `json:"id"`
	PID        int    `json:"pid"`
	Running    bool   `json:"running"`
	GRPCAddr   string `json:"grpc_addr"`
	GossipAddr string `json:"gossip_addr"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr"`
	DataDir    string `json:"data_dir"`
	LogFile    string `json:"log_file"`
	// State and RaftRole are the cluster's own view (cluster status).
	State    string `json:"state,omitempty"`
	RaftRole string `json:"raft_role,omitempty"`
}

// clusterViewJS is the answering node's view in cluster status.
type clusterViewJS struct {
	AnsweredBy     string `json:"answered_by"`
	MetadataLeader string `json:"metadata_leader"`
}

func (l *layout) nodesJSON() []nodeJSON {
	var out []nodeJSON
	for _, n := range l.Nodes {
		out = append(out, nodeJSON{ID: n.ID, PID: n.PID, Running: n.running(), GRPCAddr: n.GRPCAddr, GossipAddr: n.GossipAddr,
			RaftAddr: n.RaftAddr, HTTPAddr: n.HTTPAddr, DataDir: n.DataDir, LogFile: n.LogFile})
	}
	return out
}

func (a *app) clusterUp(cmd *cobra.Command, f clusterFlags) error {
	begin := time.Now()
	flags := cmd.Flags()
	if f.nodes < 1 {
		return usagef("--nodes %d: want at least 1", f.nodes)
	}
	if f.basePort < 0 || f.basePort+portStride*(f.nodes-1)+portHTTP > 65535 {
		return usagef("--base-port %d: the ports of %d nodes do not fit below 65536", f.basePort, f.nodes)
	}
	if f.wait <= 0 {
		return usagef("--wait %v: must be positive", f.wait)
	}
	dir, err := a.clusterDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()

	l, err := loadLayout(dir)
	switch {
	case err == nil:
		// The recorded layout wins; a flag that contradicts it is a
		// mistake to report, not a reason to move or resize a cluster
		// whose data is laid out for it.
		if flags.Changed("nodes") && f.nodes != len(l.Nodes) {
			return usagef("the cluster in %s has %d nodes, not %d; stop it and remove it (adaptkv cluster down --purge) to change the size, or use another --dir", dir, len(l.Nodes), f.nodes)
		}
		if flags.Changed("in-memory") && f.inMemory != l.InMemory {
			return usagef("the cluster in %s was created with --in-memory=%v; use another --dir (or cluster down --purge) to change it", dir, l.InMemory)
		}
		if flags.Changed("base-port") && f.basePort != 0 && f.basePort != l.BasePort {
			return usagef("the cluster in %s uses base port %d, not %d", dir, l.BasePort, f.basePort)
		}
	case errors.Is(err, fs.ErrNotExist):
		base := f.basePort
		if base == 0 {
			if base, err = pickBasePort("127.0.0.1", f.nodes); err != nil {
				return err
			}
		}
		l = newLayout(dir, "127.0.0.1", f.nodes, base, f.inMemory)
	default:
		return err
	}

	children := map[string]*child{}
	var started []string
	for i := range l.Nodes {
		n := &l.Nodes[i]
		if n.running() {
			continue
		}
		c, err := l.startNode(n)
		if c != nil {
			children[n.ID] = c
			started = append(started, n.ID)
		}
		if err != nil {
			l.save()
			return err
		}
	}
	if err := l.save(); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(cmd.Context(), f.wait)
	defer cancel()
	if err := a.waitHealthy(ctx, l.Nodes, children, f.wait); err != nil {
		return err
	}
	if err := a.firstWrite(ctx, l); err != nil {
		return err
	}
	took := time.Since(begin)

	if a.json() {
		return a.printJSON(upJSON{Dir: l.Dir, InMemory: l.InMemory, BasePort: l.BasePort, Nodes: l.nodesJSON(), Started: started, FirstWriteSeconds: took.Seconds()})
	}
	a.printBanner(l, started, took)
	return nil
}

// printBanner tells a person what is running where and what to try next.
func (a *app) printBanner(l *layout, started []string, took time.Duration) {
	w := a.stdout
	mem := ""
	if l.InMemory {
		mem = ", in memory"
	}
	how := "started " + strings.Join(started, ", ")
	if len(started) == 0 {
		how = "all nodes were already running"
	}
	fmt.Fprintf(w, "adaptkv local cluster is up: %d nodes%s (%s)\n\n", len(l.Nodes), mem, how)
	tw := a.table()
	fmt.Fprintln(tw, "  NODE\tPID\tGRPC\tGOSSIP\tRAFT\tHTTP")
	for _, n := range l.Nodes {
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\n", n.ID, n.PID, n.GRPCAddr, n.GossipAddr, n.RaftAddr, n.HTTPAddr)
	}
	tw.Flush()
	fmt.Fprintf(w, "\ndata and logs: %s (node logs: %s)\n", l.Dir, filepath.Join(l.Dir, "n<i>", "node.log"))
	fmt.Fprintf(w, "cluster up in %.2fs (first acknowledged write)\n\n", took.Seconds())
	if l.Dir != defaultDir() {
		fmt.Fprintf(w, "this is not the default folder; first:  export %s=%s\n", envName("dir"), l.Dir)
	}
	fmt.Fprintf(w, "next:  adaptkv put hello world && adaptkv get hello\n")
	fmt.Fprintf(w, "       adaptkv status    adaptkv cluster kill n2    adaptkv cluster down\n")
}

// firstWrite writes upKey at quorum to the default keyspace, retrying
// until it is acknowledged or ctx ends: the cluster is only "up" for a user
// once it takes writes.
func (a *app) firstWrite(ctx context.Context, l *layout) error {
	var eps []string
	for _, n := range l.Nodes {
		eps = append(eps, n.GRPCAddr)
	}
	c, err := client.New(ctx, client.Config{Endpoints: eps, DialTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		_, err := c.Put(ctx, []byte(upKey), []byte(time.Now().UTC().Format(time.RFC3339Nano)), client.WithConsistency(client.Quorum))
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			// Rewriting a timestamp is harmless, so an unknown outcome
			// is just another failure here.
			return fmt.Errorf("the cluster is healthy but did not acknowledge a first write: %s; see the logs in %s", describe(err), filepath.Join(l.Dir, "n*", "node.log"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// progress draws a spinner line on stderr while nodes come up, and a line
// per node once it is ready. It draws nothing when stderr is not a terminal,
// where escape codes and spinner frames would only clutter logs.
type progress struct {
	w     io.Writer
	on    bool
	frame int
	begin time.Time
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func (p *progress) spin(msg string) {
	if !p.on {
		return
	}
	p.frame++
	fmt.Fprintf(p.w, "\r\033[K%s %s", spinner[p.frame%len(spinner)], msg)
}

func (p *progress) line(msg string) {
	if !p.on {
		return
	}
	fmt.Fprintf(p.w, "\r\033[K%s\n", msg)
}

func (p *progress) clear() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// healthz asks a node's /healthz, which answers 200 once the node knows a
// metadata leader and has applied a keyspace; otherwise it returns why not.
func healthz(ctx context.Context, httpAddr string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
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

// waitHealthy waits until every node of want is healthy: its /healthz
// answers 200 and its own ClusterStatus shows every node of want alive.
// Asking each node, rather than one, makes sure that they all see each
// other before the user's first request. A child that exits fails the wait
// at once, with the last line of its log.
func (a *app) waitHealthy(ctx context.Context, want []nodeEntry, children map[string]*child, limit time.Duration) error {
	p := &progress{w: a.stderr, on: isTerminal(a.stderr), begin: time.Now()}
	defer p.clear()
	problem := map[string]string{}
	ready := map[string]bool{}
	clients := map[string]*client.Client{}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	wantIDs := map[string]bool{}
	for _, n := range want {
		wantIDs[n.ID] = true
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, n := range want {
			if ready[n.ID] {
				continue
			}
			if c := children[n.ID]; c != nil && c.exited() {
				return fmt.Errorf("node %s exited during startup (%v): %s; see %s", n.ID, c.err, lastLogLine(n.LogFile), n.LogFile)
			}
			if c := children[n.ID]; c == nil && !nodeRunning(n.PID, n.ID) {
				return fmt.Errorf("node %s (pid %d) is not running; see %s, then try `adaptkv cluster start %s`", n.ID, n.PID, n.LogFile, n.ID)
			}
			if err := healthz(ctx, n.HTTPAddr); err != nil {
				problem[n.ID] = err.Error()
				continue
			}
			c := clients[n.ID]
			if c == nil {
				var err error
				c, err = client.New(ctx, client.Config{Endpoints: []string{n.GRPCAddr}, DisableRouting: true, MaxRetries: -1, DialTimeout: time.Second, RequestTimeout: time.Second})
				if err != nil {
					return err
				}
				clients[n.ID] = c
			}
			st, err := c.ClusterStatus(ctx)
			if err != nil {
				problem[n.ID] = describe(err)
				continue
			}
			alive := 0
			var missing []string
			for _, m := range st.Members {
				if wantIDs[m.ID] && m.State == client.StateAlive {
					alive++
				}
			}
			for id := range wantIDs {
				if !slices.ContainsFunc(st.Members, func(m client.Member) bool { return m.ID == id && m.State == client.StateAlive }) {
					missing = append(missing, id)
				}
			}
			if len(missing) > 0 {
				slices.Sort(missing)
				problem[n.ID] = fmt.Sprintf("sees %d of %d nodes alive (not %s)", alive, len(want), strings.Join(missing, ", "))
				continue
			}
			ready[n.ID] = true
			delete(problem, n.ID)
			p.line(fmt.Sprintf("  ✓ %s ready  grpc %s  (%.1fs)", n.ID, n.GRPCAddr, time.Since(p.begin).Seconds()))
		}
		if len(ready) == len(want) {
			return nil
		}
		var waiting []string
		for _, n := range want {
			if !ready[n.ID] {
				waiting = append(waiting, n.ID)
			}
		}
		p.spin(fmt.Sprintf("waiting for %s (%.0fs)", strings.Join(waiting, ", "), time.Since(p.begin).Seconds()))
		select {
		case <-ctx.Done():
			var parts, logs []string
			for _, n := range want {
				if !ready[n.ID] {
					parts = append(parts, fmt.Sprintf("%s (%s)", n.ID, problem[n.ID]))
					logs = append(logs, n.LogFile)
				}
			}
			return fmt.Errorf("cluster not healthy after %v: not up: %s; see %s", limit, strings.Join(parts, ", "), strings.Join(logs, ", "))
		case <-tick.C:
		}
	}
}

// lastLogLine returns the last non-empty line of a log file, which for a
// node that failed to start is its error.
func lastLogLine(path string) string {
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

func (a *app) clusterStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the local cluster's processes and the cluster's own view of them",
		Args:  cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := a.clusterDir()
			if err != nil {
				return err
			}
			l, err := loadLayout(dir)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no local cluster in %s; start one with `adaptkv cluster up`", dir)
			}
			if err != nil {
				return err
			}
			out := upJSON{Dir: l.Dir, InMemory: l.InMemory, BasePort: l.BasePort, Nodes: l.nodesJSON()}
			var eps []string
			for _, n := range out.Nodes {
				if n.Running {
					eps = append(eps, n.GRPCAddr)
				}
			}
			viewErr := errors.New("no node is running")
			if len(eps) > 0 {
				viewErr = a.clusterView(cmd.Context(), eps, &out)
			}
			if a.json() {
				return a.printJSON(out)
			}
			tw := a.table()
			fmt.Fprintln(tw, "NODE\tPID\tRUNNING\tGRPC\tHTTP\tSTATE\tRAFT")
			for _, n := range out.Nodes {
				run := "no"
				if n.Running {
					run = "yes"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", n.ID, n.PID, run, n.GRPCAddr, n.HTTPAddr, dash(n.State), dash(n.RaftRole))
			}
			tw.Flush()
			fmt.Fprintf(a.stdout, "folder: %s\n", l.Dir)
			if viewErr != nil {
				fmt.Fprintf(a.stdout, "cluster view: unavailable (%v)\n", viewErr)
			} else {
				fmt.Fprintf(a.stdout, "cluster view from %s; metadata leader: %s\n", out.View.AnsweredBy, dash(out.View.MetadataLeader))
			}
			return nil
		},
	}
}

// clusterView fills in the cluster's own view of the nodes (state, Raft
// role) from ClusterStatus. STATE is what gossip believes, which lags the
// processes by the failure detection time: a node killed a second ago can
// show RUNNING no and STATE alive.
func (a *app) clusterView(ctx context.Context, eps []string, out *upJSON) error {
	c, ctx, cancel, err := a.connectTo(ctx, client.Config{Endpoints: eps})
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	st, err := c.ClusterStatus(ctx)
	if err != nil {
		return errors.New(describe(err))
	}
	out.View = &clusterViewJS{AnsweredBy: st.NodeID, MetadataLeader: st.MetadataLeader}
	for i := range out.Nodes {
		for _, m := range st.Members {
			if m.ID == out.Nodes[i].ID {
				out.Nodes[i].State, out.Nodes[i].RaftRole = m.State, m.RaftRole
			}
		}
	}
	return nil
}

// stopTimeout is how long cluster down waits after SIGTERM before SIGKILL.
const stopTimeout = 10 * time.Second

// waitGone waits until none of nodes runs or timeout passes, and returns
// those still running.
func waitGone(nodes []nodeEntry, timeout time.Duration) []nodeEntry {
	deadline := time.Now().Add(timeout)
	for {
		var left []nodeEntry
		for _, n := range nodes {
			if n.running() {
				left = append(left, n)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// actionJSON is the JSON output of down, kill and start.
type actionJSON struct {
	Action string   `json:"action"`
	Nodes  []string `json:"nodes"`
	Killed []string `json:"killed,omitempty"` // down: nodes that needed SIGKILL
	Purged string   `json:"purged,omitempty"`
}

func (a *app) clusterDownCommand() *cobra.Command {
	var purge bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop every node of the local cluster (SIGTERM, then SIGKILL after 10s)",
		Args:  cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, unlock, err := a.openLayout()
			if err != nil {
				return err
			}
			defer unlock()
			var stopping []nodeEntry
			for _, n := range l.Nodes {
				if n.running() {
					if err := signalProcess(n.PID, syscall.SIGTERM); err == nil {
						stopping = append(stopping, n)
					}
				}
			}
			out := actionJSON{Action: "down", Nodes: []string{}}
			for _, n := range stopping {
				out.Nodes = append(out.Nodes, n.ID)
			}
			for _, n := range waitGone(stopping, stopTimeout) {
				signalProcess(n.PID, syscall.SIGKILL)
				out.Killed = append(out.Killed, n.ID)
			}
			if left := waitGone(stopping, 5*time.Second); len(left) > 0 {
				return fmt.Errorf("node %s (pid %d) did not stop even after SIGKILL", left[0].ID, left[0].PID)
			}
			// Forget the PIDs, so that nothing later mistakes a reused
			// PID for a node (nodeRunning checks anyway).
			for i := range l.Nodes {
				os.Remove(l.Nodes[i].pidFile())
				l.Nodes[i].PID = 0
			}
			if !purge {
				if err := l.save(); err != nil {
					return err
				}
			}
			if purge {
				if err := os.RemoveAll(l.Dir); err != nil {
					return fmt.Errorf("removing %s: %w", l.Dir, err)
				}
				out.Purged = l.Dir
			}
			if a.json() {
				return a.printJSON(out)
			}
			switch {
			case len(stopping) == 0:
				fmt.Fprintln(a.stdout, "no node was running")
			default:
				fmt.Fprintf(a.stdout, "stopped %s\n", strings.Join(out.Nodes, ", "))
			}
			if len(out.Killed) > 0 {
				fmt.Fprintf(a.stdout, "(%s did not stop within %v and were killed)\n", strings.Join(out.Killed, ", "), stopTimeout)
			}
			if purge {
				fmt.Fprintf(a.stdout, "removed %s\n", l.Dir)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&purge, "purge", false, "also remove the cluster folder: data, logs and cluster.json")
	return cmd
}

func (a *app) clusterKillCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "kill NODE",
		Short:   "SIGKILL one node's process, to try failures (e.g. adaptkv cluster kill n2)",
		Example: `  adaptkv cluster kill n2 && adaptkv get hello && adaptkv cluster start n2`,
		Args:    cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, unlock, err := a.openLayout()
			if err != nil {
				return err
			}
			defer unlock()
			n, err := l.node(args[0])
			if err != nil {
				return err
			}
			if !n.running() {
				return fmt.Errorf("node %s is not running (last pid %d)", n.ID, n.PID)
			}
			if err := signalProcess(n.PID, syscall.SIGKILL); err != nil {
				return fmt.Errorf("killing %s (pid %d): %w", n.ID, n.PID, err)
			}
			if left := waitGone([]nodeEntry{*n}, 5*time.Second); len(left) > 0 {
				return fmt.Errorf("node %s (pid %d) still runs after SIGKILL", n.ID, n.PID)
			}
			if a.json() {
				return a.printJSON(actionJSON{Action: "kill", Nodes: []string{n.ID}})
			}
			fmt.Fprintf(a.stdout, "killed %s (pid %d); start it again with `adaptkv cluster start %s`\n", n.ID, n.PID, n.ID)
			return nil
		},
	}
}

func (a *app) clusterStartCommand() *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "start NODE",
		Short: "Start one node of the local cluster again, with its recorded flags",
		Long: `Start one stopped node again with the flags cluster up gave it, and wait
until it is healthy and it and every running node see each other alive.`,
		Args: cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait <= 0 {
				return usagef("--wait %v: must be positive", wait)
			}
			l, unlock, err := a.openLayout()
			if err != nil {
				return err
			}
			defer unlock()
			n, err := l.node(args[0])
			if err != nil {
				return err
			}
			if n.running() {
				if a.json() {
					return a.printJSON(actionJSON{Action: "already-running", Nodes: []string{n.ID}})
				}
				fmt.Fprintf(a.stdout, "%s is already running (pid %d)\n", n.ID, n.PID)
				return nil
			}
			c, err := l.startNode(n)
			if err != nil {
				return err
			}
			if err := l.save(); err != nil {
				return err
			}
			var want []nodeEntry
			for _, o := range l.Nodes {
				if o.ID == n.ID || o.running() {
					want = append(want, o)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			if err := a.waitHealthy(ctx, want, map[string]*child{n.ID: c}, wait); err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(actionJSON{Action: "start", Nodes: []string{n.ID}})
			}
			fmt.Fprintf(a.stdout, "started %s (pid %d), healthy; log: %s\n", n.ID, n.PID, n.LogFile)
			return nil
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 60*time.Second, "how long to wait for the node to become healthy")
	return cmd
}

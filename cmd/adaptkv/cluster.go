package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node/launch"
)

// layoutFile, in the cluster folder, records the local cluster's layout.
const layoutFile = "cluster.json"

// upKey is the key `cluster up` writes to measure the time to the first
// acknowledged write; the leading underscores keep it out of users' way.
const upKey = "__adaptkv_up"

// portStride is the distance between two nodes' blocks of ports: node i
// (1-based) uses base+10*(i-1)+0..3 (gRPC, gossip, Raft, HTTP; see
// node/launch).
const portStride = launch.DefaultPortStride

// layout is a local cluster as cluster.json records it. Everything a node
// needs to start again is derived from it, so `cluster start` restarts a
// node with exactly the flags `cluster up` gave it.
type layout struct {
	Dir      string `json:"dir"`
	Host     string `json:"host"`
	BasePort int    `json:"base_port"`
	InMemory bool   `json:"in_memory"`
	// Insecure is true for a cluster `cluster up --insecure` started:
	// plaintext, no certificates. Otherwise the nodes and every command
	// use the certificates in Dir/certs.
	Insecure bool        `json:"insecure,omitempty"`
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
	// Added is true for a node `cluster add` laid out: it joined the
	// running cluster (--bootstrap-expect 0). Added nodes follow the
	// nodes `cluster up` laid out.
	Added bool `json:"added,omitempty"`
	// Removed is true once `cluster remove` has decommissioned the node:
	// it has left the ring for good and no command starts, stops or
	// talks to it again. It keeps its place so that the nodes after it
	// keep their ports.
	Removed bool `json:"removed,omitempty"`
}

func (n nodeEntry) pidFile() string { return filepath.Join(n.DataDir, "pid") }

// running reports whether the node's recorded process is alive.
func (n nodeEntry) running() bool { return launch.NodeRunning(n.PID, n.ID) }

// launchConfig is how node/launch runs a local cluster of n nodes: detached
// processes of this binary that outlive the command, each with the layout's
// flags and nothing else.
func launchConfig(dir, host string, n, base int, inMemory, insecure bool) (launch.Config, error) {
	exe, err := os.Executable()
	if err != nil {
		return launch.Config{}, fmt.Errorf("finding the adaptkv binary to start the nodes: %w", err)
	}
	cfg := launch.Config{
		Binary: exe, Nodes: n, Dir: dir, Host: host, BasePort: base, PortStride: portStride,
		Args:   []string{"--in-memory=" + strconv.FormatBool(inMemory), "--local-timings=true"},
		Detach: true, Name: "adaptkv cluster", ReadyPoll: 100 * time.Millisecond,
		Insecure: insecure,
	}
	if !insecure {
		cfg.CertsDir = filepath.Join(dir, certsSubdir)
	}
	return cfg, nil
}

// newLayout lays out n nodes on host from base port base (0: a free block,
// picked by node/launch) and returns the launcher for them.
func newLayout(dir, host string, n, base int, inMemory, insecure bool) (*layout, *launch.Cluster, error) {
	cfg, err := launchConfig(dir, host, n, base, inMemory, insecure)
	if err != nil {
		return nil, nil, err
	}
	lc, err := launch.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	l := &layout{Dir: dir, Host: host, BasePort: lc.Config().BasePort, InMemory: inMemory, Insecure: insecure, Created: time.Now().UTC()}
	for _, ln := range lc.Nodes() {
		l.Nodes = append(l.Nodes, entryOf(ln))
	}
	return l, lc, nil
}

// entryOf is the record of a node laid out by node/launch.
func entryOf(ln *launch.Node) nodeEntry {
	return nodeEntry{ID: ln.ID, GRPCAddr: ln.GRPC, GossipAddr: ln.Gossip, RaftAddr: ln.Raft, HTTPAddr: ln.HTTP,
		DataDir: ln.DataDir, LogFile: ln.LogFile, PID: ln.LastPID(), Added: ln.Added}
}

// launcher returns the launcher of a recorded layout, which adopts the
// nodes still running: the nodes `cluster up` laid out, then those
// `cluster add` added, with the removed ones marked so. The layout and the
// launcher must agree on every address: cluster.json is the record,
// node/launch the one that starts.
func (l *layout) launcher() (*launch.Cluster, error) {
	first := 0
	for first < len(l.Nodes) && !l.Nodes[first].Added {
		first++
	}
	damaged := func(id string) error {
		return fmt.Errorf("%s: node %s is not laid out as adaptkv lays out base port %d; stop its nodes and remove the folder, or use another --dir", filepath.Join(l.Dir, layoutFile), id, l.BasePort)
	}
	if first == 0 {
		return nil, fmt.Errorf("%s records no node that `cluster up` laid out; stop its nodes and remove the folder, or use another --dir", filepath.Join(l.Dir, layoutFile))
	}
	same := func(n, o nodeEntry) bool {
		return n.ID == o.ID && n.GRPCAddr == o.GRPCAddr && n.GossipAddr == o.GossipAddr && n.RaftAddr == o.RaftAddr && n.HTTPAddr == o.HTTPAddr && n.DataDir == o.DataDir
	}
	fresh, lc, err := newLayout(l.Dir, l.Host, first, l.BasePort, l.InMemory, l.Insecure)
	if err != nil {
		return nil, err
	}
	for i, n := range fresh.Nodes {
		if !same(n, l.Nodes[i]) {
			return nil, damaged(l.Nodes[i].ID)
		}
	}
	for _, o := range l.Nodes[first:] {
		if !o.Added {
			return nil, damaged(o.ID)
		}
		ln, err := lc.Relayout("")
		if err != nil {
			return nil, err
		}
		if !same(entryOf(ln), o) {
			return nil, damaged(o.ID)
		}
	}
	for _, o := range l.Nodes {
		if o.Removed {
			if err := lc.MarkRemoved(o.ID); err != nil {
				return nil, err
			}
		}
	}
	return lc, nil
}

// certsDir is where the cluster's certificates are, "" when insecure.
func (l *layout) certsDir() string {
	if l.Insecure {
		return ""
	}
	return filepath.Join(l.Dir, certsSubdir)
}

// clientConfig sets cfg up to reach the local cluster as the root user:
// the certificates `cluster up` made, or plaintext for an --insecure one.
func (l *layout) clientConfig(cfg client.Config) client.Config {
	if !l.Insecure {
		cfg.CertsDir, cfg.User = l.certsDir(), security.RootUser
	}
	return cfg
}

// live returns the nodes that have not been removed.
func (l *layout) live() []nodeEntry {
	var out []nodeEntry
	for _, n := range l.Nodes {
		if !n.Removed {
			out = append(out, n)
		}
	}
	return out
}

// liveIDs returns the IDs of the nodes that have not been removed.
func (l *layout) liveIDs() []string {
	var ids []string
	for _, n := range l.live() {
		ids = append(ids, n.ID)
	}
	return ids
}

// syncPIDs records the launcher's PIDs in the layout.
func (l *layout) syncPIDs(lc *launch.Cluster) {
	for i := range l.Nodes {
		if n := lc.Node(l.Nodes[i].ID); n != nil && n.LastPID() != 0 {
			l.Nodes[i].PID = n.LastPID()
		}
	}
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

// node returns the entry of node id, or a usage error listing the nodes
// (a removed node is named as such).
func (l *layout) node(id string) (*nodeEntry, error) {
	for i := range l.Nodes {
		if l.Nodes[i].ID == id {
			if l.Nodes[i].Removed {
				return nil, usagef("node %s was removed from the cluster at %s (adaptkv cluster remove); nodes now: %s", id, l.Dir, strings.Join(l.liveIDs(), ", "))
			}
			return &l.Nodes[i], nil
		}
	}
	return nil, usagef("no node %q in the cluster at %s (nodes: %s)", id, l.Dir, strings.Join(l.liveIDs(), ", "))
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
		Short: "Run a local cluster of node processes (up, status, down, kill, start, add, remove)",
		Long: `Run a cluster of adaptkv node processes on this machine, for development
and experiments. Its layout, PIDs, data and logs live in --dir (default
$ADAPTKV_DIR, else ~/.adaptkv/local); every other command finds the cluster
there without being told.`,
	}
	cmd.AddCommand(a.clusterUpCommand(), a.clusterStatusCommand(), a.clusterDownCommand(), a.clusterKillCommand(), a.clusterStartCommand(),
		a.clusterAddCommand(), a.clusterRemoveCommand())
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
	Dir      string `json:"dir"`
	InMemory bool   `json:"in_memory"`
	// CertsDir holds the certificates of a secure cluster; Insecure is
	// true for one started --insecure.
	CertsDir          string         `json:"certs_dir,omitempty"`
	Insecure          bool           `json:"insecure,omitempty"`
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
	// State, RaftRole and RingState are the cluster's own view (cluster
	// status); a removed node's RingState is "left".
	State     string `json:"state,omitempty"`
	RaftRole  string `json:"raft_role,omitempty"`
	RingState string `json:"ring_state,omitempty"`
	// Added and Removed are the record's (see nodeEntry).
	Added   bool `json:"added,omitempty"`
	Removed bool `json:"removed,omitempty"`
}

// clusterViewJS is the answering node's view in cluster status.
type clusterViewJS struct {
	AnsweredBy     string `json:"answered_by"`
	MetadataLeader string `json:"metadata_leader"`
}

func (l *layout) nodesJSON() []nodeJSON {
	var out []nodeJSON
	for _, n := range l.Nodes {
		nj := nodeJSON{ID: n.ID, PID: n.PID, Running: n.running(), GRPCAddr: n.GRPCAddr, GossipAddr: n.GossipAddr,
			RaftAddr: n.RaftAddr, HTTPAddr: n.HTTPAddr, DataDir: n.DataDir, LogFile: n.LogFile, Added: n.Added, Removed: n.Removed}
		if n.Removed {
			nj.RingState = "left"
		}
		out = append(out, nj)
	}
	return out
}

func (a *app) clusterUp(cmd *cobra.Command, f clusterFlags) error {
	begin := time.Now()
	flags := cmd.Flags()
	if f.nodes < 1 {
		return usagef("--nodes %d: want at least 1", f.nodes)
	}
	if f.basePort < 0 || f.basePort+portStride*(f.nodes-1)+3 > 65535 {
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
	var lc *launch.Cluster
	switch {
	case err == nil:
		// The recorded layout wins; a flag that contradicts it is a
		// mistake to report, not a reason to move or resize a cluster
		// whose data is laid out for it.
		if live := len(l.live()); flags.Changed("nodes") && f.nodes != live {
			return usagef("the cluster in %s has %d nodes, not %d; change its size with `adaptkv cluster add` and `cluster remove`, or stop it and remove it (adaptkv cluster down --purge), or use another --dir", dir, live, f.nodes)
		}
		if flags.Changed("in-memory") && f.inMemory != l.InMemory {
			return usagef("the cluster in %s was created with --in-memory=%v; use another --dir (or cluster down --purge) to change it", dir, l.InMemory)
		}
		if flags.Changed("base-port") && f.basePort != 0 && f.basePort != l.BasePort {
			return usagef("the cluster in %s uses base port %d, not %d", dir, l.BasePort, f.basePort)
		}
		if a.insecure && !l.Insecure {
			return usagef("the cluster in %s is secure (certificates in %s); it cannot be restarted --insecure: use another --dir (or cluster down --purge)", dir, filepath.Join(dir, certsSubdir))
		}
		if lc, err = l.launcher(); err != nil {
			return err
		}
	case errors.Is(err, fs.ErrNotExist):
		// Base port 0: node/launch picks a free block, recorded in
		// cluster.json so that restarts keep the ports.
		if l, lc, err = newLayout(dir, "127.0.0.1", f.nodes, f.basePort, f.inMemory, a.insecure); err != nil {
			return err
		}
	default:
		return err
	}
	if !l.Insecure {
		// Once: a later `up` finds them and keeps them, so that the
		// nodes and the clients go on trusting one CA.
		if err := launch.CreateCerts(filepath.Join(dir, certsSubdir), []string{l.Host, "localhost"}); err != nil {
			return err
		}
	}

	var started []string
	for _, n := range lc.Nodes() {
		if n.State() != launch.Stopped || n.Removed() {
			continue
		}
		err := lc.StartNode(n.ID)
		if n.State() != launch.Stopped {
			started = append(started, n.ID)
		}
		if err != nil {
			l.syncPIDs(lc)
			l.save()
			return err
		}
	}
	l.syncPIDs(lc)
	if err := l.save(); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(cmd.Context(), f.wait)
	defer cancel()
	if err := a.waitHealthy(ctx, lc, l.liveIDs(), f.wait); err != nil {
		return err
	}
	if err := a.firstWrite(ctx, l); err != nil {
		return err
	}
	took := time.Since(begin)

	if a.json() {
		return a.printJSON(upJSON{Dir: l.Dir, InMemory: l.InMemory, CertsDir: l.certsDir(), Insecure: l.Insecure, BasePort: l.BasePort, Nodes: l.nodesJSON(), Started: started, FirstWriteSeconds: took.Seconds()})
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
	fmt.Fprintf(w, "adaptkv local cluster is up: %d nodes%s (%s)\n\n", len(l.live()), mem, how)
	a.printNodes(l)
	fmt.Fprintf(w, "\ndata and logs: %s (node logs: %s)\n", l.Dir, filepath.Join(l.Dir, "n<i>", "node.log"))
	if l.Insecure {
		fmt.Fprintf(w, "INSECURE: plaintext and unauthenticated (--insecure)\n")
	} else {
		fmt.Fprintf(w, "secure: mutual TLS, certificates in %s\n", l.certsDir())
	}
	fmt.Fprintf(w, "cluster up in %.2fs (first acknowledged write)\n\n", took.Seconds())
	if l.Dir != defaultDir() {
		fmt.Fprintf(w, "this is not the default folder; first:  export %s=%s\n", envName("dir"), l.Dir)
	}
	fmt.Fprintf(w, "next:  adaptkv put hello world && adaptkv get hello\n")
	fmt.Fprintf(w, "       adaptkv status    adaptkv cluster kill n2    adaptkv cluster down\n")
}

// printNodes prints the table of the layout's nodes that have not been
// removed.
func (a *app) printNodes(l *layout) {
	tw := a.table()
	fmt.Fprintln(tw, "  NODE\tPID\tGRPC\tGOSSIP\tRAFT\tHTTP")
	for _, n := range l.live() {
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\n", n.ID, n.PID, n.GRPCAddr, n.GossipAddr, n.RaftAddr, n.HTTPAddr)
	}
	tw.Flush()
}

// firstWrite writes upKey at quorum to the default keyspace, retrying
// until it is acknowledged or ctx ends: the cluster is only "up" for a user
// once it takes writes.
func (a *app) firstWrite(ctx context.Context, l *layout) error {
	var eps []string
	for _, n := range l.live() {
		eps = append(eps, n.GRPCAddr)
	}
	c, err := client.New(ctx, l.clientConfig(client.Config{Endpoints: eps, DialTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second}))
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

// waitHealthy waits until every node of ids is healthy: its /healthz
// answers 200 and its own ClusterStatus shows every node of ids alive (see
// launch.Cluster.WaitReady), drawing the progress on stderr. A node that
// exits, or is not running, fails the wait at once, with the last line of
// its log.
func (a *app) waitHealthy(ctx context.Context, lc *launch.Cluster, ids []string, limit time.Duration) error {
	p := &progress{w: a.stderr, on: isTerminal(a.stderr), begin: time.Now()}
	defer p.clear()
	err := lc.WaitReady(ctx, ids, func(pr launch.Progress) {
		if pr.Ready != nil {
			p.line(fmt.Sprintf("  ✓ %s ready  grpc %s  (%.1fs)", pr.Ready.ID, pr.Ready.GRPC, pr.Elapsed.Seconds()))
			return
		}
		p.spin(fmt.Sprintf("waiting for %s (%.0fs)", strings.Join(pr.Waiting, ", "), pr.Elapsed.Seconds()))
	})
	var notRunning *launch.NotRunningError
	var notReady *launch.NotReadyError
	switch {
	case errors.As(err, &notRunning) && !notRunning.Started:
		return fmt.Errorf("%w, then try `adaptkv cluster start %s`", err, notRunning.ID)
	case errors.As(err, &notReady):
		return fmt.Errorf("cluster not healthy after %v: %w", limit, err)
	}
	return err
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
			out := upJSON{Dir: l.Dir, InMemory: l.InMemory, CertsDir: l.certsDir(), Insecure: l.Insecure, BasePort: l.BasePort, Nodes: l.nodesJSON()}
			var eps []string
			for _, n := range out.Nodes {
				if n.Running && !n.Removed {
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
			fmt.Fprintln(tw, "NODE\tPID\tRUNNING\tGRPC\tHTTP\tSTATE\tRING\tRAFT")
			for _, n := range out.Nodes {
				run := "no"
				if n.Running {
					run = "yes"
				}
				ring := dash(n.RingState)
				if n.Removed {
					ring += " (removed)"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, n.PID, run, n.GRPCAddr, n.HTTPAddr, dash(n.State), ring, dash(n.RaftRole))
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
				if !out.Nodes[i].Removed {
					out.Nodes[i].RingState = m.RingState
				}
			}
		}
	}
	return nil
}

// stopTimeout is how long cluster down waits after SIGTERM before SIGKILL.
const stopTimeout = 10 * time.Second

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
			lc, err := l.launcher()
			if err != nil {
				return err
			}
			stopped, killed, err := lc.StopAll(stopTimeout)
			if err != nil {
				return err
			}
			out := actionJSON{Action: "down", Nodes: append([]string{}, stopped...), Killed: killed}
			// Forget the PIDs, so that nothing later mistakes a reused
			// PID for a node (launch.NodeRunning checks anyway).
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
			case len(stopped) == 0:
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
			lc, err := l.launcher()
			if err != nil {
				return err
			}
			if err := lc.Kill(n.ID); err != nil {
				return fmt.Errorf("killing %s (pid %d): %w", n.ID, n.PID, err)
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
			lc, err := l.launcher()
			if err != nil {
				return err
			}
			err = lc.StartNode(n.ID)
			l.syncPIDs(lc)
			if err != nil {
				if lc.Node(n.ID).State() != launch.Stopped {
					l.save()
				}
				return err
			}
			if err := l.save(); err != nil {
				return err
			}
			var want []string
			for _, o := range lc.Nodes() {
				if o.State() != launch.Stopped {
					want = append(want, o.ID)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			if err := a.waitHealthy(ctx, lc, want, wait); err != nil {
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

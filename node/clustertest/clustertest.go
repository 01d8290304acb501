package clustertest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/launch"
)

// Options configure a Cluster.
type Options struct {
	// Nodes is the number of nodes; default 3.
	Nodes int
	// Dir holds the nodes' data directories; required unless InMemory.
	Dir string
	// InMemory runs every node on the in-memory engine.
	InMemory bool
	// Host is the loopback address the nodes bind; default 127.0.0.1.
	Host string
	// Logger receives the nodes' logs; nil discards them.
	Logger *slog.Logger
	// CertsDir, when set, runs every node secure with the node certificate
	// of this directory (see internal/security), and Client connects with
	// its root client certificate.
	CertsDir string
	// Configure, when set, adjusts node i's configuration before it starts.
	Configure func(i int, cfg *node.Config)
}

// Cluster is a running in-process cluster.
type Cluster struct {
	opts Options

	mu    sync.Mutex
	nodes []*node.Node
	cfgs  []node.Config
}

// Start starts opts.Nodes nodes and waits until the cluster is ready: a
// metadata leader, every node alive to every other, and the default
// keyspace applied everywhere.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Dir == "" && !opts.InMemory {
		return nil, errors.New("clustertest: Options.Dir is required unless InMemory")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{opts: opts, nodes: make([]*node.Node, opts.Nodes), cfgs: make([]node.Config, opts.Nodes)}
	var seed string
	for i := range opts.Nodes {
		cfg := node.DefaultLocalConfig()
		cfg.ID = fmt.Sprintf("n%d", i+1)
		cfg.InMemory = opts.InMemory
		if !opts.InMemory {
			cfg.DataDir = filepath.Join(opts.Dir, cfg.ID)
		}
		port0 := opts.Host + ":0"
		cfg.GRPCAddr, cfg.GossipAddr, cfg.RaftAddr, cfg.HTTPAddr = port0, port0, port0, port0
		cfg.BootstrapExpect = opts.Nodes
		cfg.Logger = opts.Logger.With("node", cfg.ID)
		if seed != "" {
			cfg.Seeds = []string{seed}
		}
		if opts.CertsDir != "" {
			m, err := security.LoadNode(opts.CertsDir)
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("clustertest: %w", err)
			}
			cfg.Security = m
		}
		if opts.Configure != nil {
			opts.Configure(i, &cfg)
		}
		n, err := startNode(ctx, opts.Host, &cfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("clustertest: start %s: %w", cfg.ID, err)
		}
		// Restarts reuse the bound addresses, so that the other nodes
		// recognise the node as the one that went away.
		a := n.Addrs()
		cfg.GRPCAddr, cfg.GossipAddr, cfg.RaftAddr, cfg.HTTPAddr = a.GRPC, a.Gossip, a.Raft, a.HTTP
		if seed == "" {
			seed = a.Gossip
		}
		c.nodes[i], c.cfgs[i] = n, cfg
	}
	// Every node can find every other after a restart.
	for i := range c.cfgs {
		c.cfgs[i].Seeds = c.gossipAddrs(i)
	}
	if err := c.WaitReady(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// startNode starts a node. Addresses left at port 0 get ports below the
// kernel's range for outgoing connections: a node restarted on the ports it
// had (RestartNode) could otherwise find one taken as the source port of
// some outgoing connection in the meantime (seen in CI: "bind: address
// already in use" on a restart). A bind that fails anyway (another test
// took the port between the check and the bind) is tried on other ports.
func startNode(ctx context.Context, host string, cfg *node.Config) (*node.Node, error) {
	pick := func(addr *string, port int) bool {
		if *addr != host+":0" {
			return false
		}
		*addr = net.JoinHostPort(host, strconv.Itoa(port))
		return true
	}
	orig := *cfg
	var last error
	for range 10 {
		*cfg = orig
		if base, ok := freeBlock(host); ok {
			pick(&cfg.GRPCAddr, base)
			pick(&cfg.GossipAddr, base+1)
			pick(&cfg.RaftAddr, base+2)
			pick(&cfg.HTTPAddr, base+3)
		}
		n, err := node.Start(ctx, *cfg)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			return n, err
		}
		last = err
	}
	return nil, last
}

// freeBlock returns the first of four consecutive ports free on host, at
// random between 20000 and the kernel's range for outgoing connections;
// false when that range leaves no room (the caller keeps port 0).
func freeBlock(host string) (int, bool) {
	lo, hi := 20000, launch.EphemeralLow()-4
	if hi-lo < 1000 {
		return 0, false
	}
	for range 50 {
		base := lo + rand.IntN(hi-lo)
		if launch.PortsFree([]string{host}, base, 4) {
			return base, true
		}
	}
	return 0, false
}

// New starts a cluster of n nodes for a test, with data in t.TempDir(), and
// stops it when the test ends. It fails the test if the cluster does not
// become ready within 30 s.
func New(t testing.TB, n int, opts ...func(*Options)) *Cluster {
	t.Helper()
	o := Options{Nodes: n, Dir: t.TempDir()}
	if os.Getenv("ADAPTKV_TEST_LOG") != "" {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func (c *Cluster) gossipAddrs(except int) []string {
	var out []string
	for i, cfg := range c.cfgs {
		if i != except {
			out = append(out, cfg.GossipAddr)
		}
	}
	return out
}

// WaitReady waits until every running node is ready and sees every other
// running node alive.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for {
		err := c.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clustertest: cluster not ready: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) ready(ctx context.Context) error {
	c.mu.Lock()
	nodes := append([]*node.Node(nil), c.nodes...)
	c.mu.Unlock()
	running := 0
	for _, n := range nodes {
		if n != nil {
			running++
		}
	}
	for _, n := range nodes {
		if n == nil {
			continue
		}
		if err := n.Ready(); err != nil {
			return fmt.Errorf("%s: %w", n.ID(), err)
		}
		if alive := n.AliveMembers(); alive < running {
			return fmt.Errorf("%s sees %d of %d nodes alive", n.ID(), alive, running)
		}
	}
	return nil
}

// Len is the number of nodes, running or stopped.
func (c *Cluster) Len() int { return len(c.cfgs) }

// Node returns node i (0-based), nil while it is stopped.
func (c *Cluster) Node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// ID is node i's ID.
func (c *Cluster) ID(i int) string { return c.cfgs[i].ID }

// Endpoints are the running nodes' gRPC addresses.
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for i, n := range c.nodes {
		if n != nil {
			out = append(out, c.cfgs[i].GRPCAddr)
		}
	}
	return out
}

// Client returns an SDK client connected to the cluster, closed when the
// test ends.
func (c *Cluster) Client(t testing.TB) *client.Client {
	t.Helper()
	cl, err := client.New(context.Background(), client.Config{Endpoints: c.Endpoints(), CertsDir: c.opts.CertsDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// StopNode stops node i as a crash would look to the others (no leave
// message); its data directory stays.
func (c *Cluster) StopNode(i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.stopNode(ctx, i)
}

// StopNodeNow stops node i like StopNode but cuts its in-flight requests
// off at once instead of waiting for them, as a crash would.
func (c *Cluster) StopNodeNow(i int) error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return c.stopNode(ctx, i)
}

// stopNode stops node i, giving its in-flight requests until ctx ends.
func (c *Cluster) stopNode(ctx context.Context, i int) error {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return nil
	}
	return n.Stop(ctx)
}

// RestartNode starts stopped node i again on its addresses and data.
func (c *Cluster) RestartNode(ctx context.Context, i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i] != nil {
		return fmt.Errorf("clustertest: node %s is running", c.cfgs[i].ID)
	}
	n, err := node.Start(ctx, c.cfgs[i])
	if err != nil {
		return fmt.Errorf("clustertest: restart %s: %w", c.cfgs[i].ID, err)
	}
	c.nodes[i] = n
	return nil
}

// AddNode starts one more node that joins the running cluster (no
// bootstrap, the others as seeds), as `adaptkv node --seeds ...
// --bootstrap-expect 0` does, and returns its index. It returns once the
// node serves; it does not wait for the node to own ranges.
func (c *Cluster) AddNode(ctx context.Context) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := len(c.cfgs)
	cfg := node.DefaultLocalConfig()
	cfg.ID = fmt.Sprintf("n%d", i+1)
	cfg.InMemory = c.opts.InMemory
	if !c.opts.InMemory {
		cfg.DataDir = filepath.Join(c.opts.Dir, cfg.ID)
	}
	port0 := c.opts.Host + ":0"
	cfg.GRPCAddr, cfg.GossipAddr, cfg.RaftAddr, cfg.HTTPAddr = port0, port0, port0, port0
	cfg.BootstrapExpect = 0
	cfg.Logger = c.opts.Logger.With("node", cfg.ID)
	cfg.Seeds = c.gossipAddrs(-1)
	if c.opts.Configure != nil {
		c.opts.Configure(i, &cfg)
	}
	n, err := startNode(ctx, c.opts.Host, &cfg)
	if err != nil {
		return 0, fmt.Errorf("clustertest: start %s: %w", cfg.ID, err)
	}
	a := n.Addrs()
	cfg.GRPCAddr, cfg.GossipAddr, cfg.RaftAddr, cfg.HTTPAddr = a.GRPC, a.Gossip, a.Raft, a.HTTP
	c.nodes, c.cfgs = append(c.nodes, n), append(c.cfgs, cfg)
	for j := range c.cfgs {
		c.cfgs[j].Seeds = c.gossipAddrs(j)
	}
	return i, nil
}

// Close stops every node.
func (c *Cluster) Close() {
	for i := range c.nodes {
		c.StopNode(i)
	}
}

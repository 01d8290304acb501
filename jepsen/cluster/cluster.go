package cluster

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node/launch"
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
	// Insecure runs the nodes plaintext (--insecure). Otherwise they are
	// secure, with the certificates in CertsDir, made there when absent.
	Insecure bool
	// CertsDir is the certificate directory of a secure cluster; default
	// Dir/certs.
	CertsDir string
	// ExtraArgs are added to every node's command line.
	ExtraArgs []string
	// ReadyTimeout bounds the wait for the cluster to become ready; default
	// 60 s.
	ReadyTimeout time.Duration
	// Logger receives the harness's logs about processes.
	Logger *slog.Logger
}

// State is a node process's state.
type State = launch.State

// Node states.
const (
	Running = launch.Running
	Paused  = launch.Paused
	Stopped = launch.Stopped // never started, exited, stopped or killed
)

// Node is one node process: ID, Host, its addresses (GRPC, Gossip, Raft,
// HTTP), DataDir and LogFile.
type Node = launch.Node

// Cluster is a set of node processes.
type Cluster struct {
	*launch.Cluster
	cfg Config

	mu      sync.Mutex
	closed  bool
	clients map[string]*client.Client // per node, DisableRouting
}

// New prepares a cluster without starting it. It picks the ports.
func New(cfg Config) (*Cluster, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 5
	}
	if cfg.FirstIP == "" {
		cfg.FirstIP = "127.0.0.2"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	lcfg := launch.Config{
		Binary: cfg.Bin, Nodes: cfg.Nodes, Dir: cfg.Dir, DataSubdir: "data",
		Host: cfg.FirstIP, HostPerNode: true, BasePort: cfg.BasePort, Insecure: cfg.Insecure,
		Args: append([]string{"--unsafe-test-hooks"}, cfg.ExtraArgs...),
		Name: "harness", Logger: cfg.Logger,
	}
	if !cfg.Insecure {
		if err := lcfg.Secure(cmp.Or(cfg.CertsDir, filepath.Join(cfg.Dir, "certs"))); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
	}
	l, err := launch.New(lcfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	cfg.BasePort = l.Config().BasePort
	return &Cluster{Cluster: l, cfg: cfg, clients: map[string]*client.Client{}}, nil
}

// Ports is the range of the ports the nodes listen on (gRPC, gossip, Raft,
// HTTP), the same on every node address.
func (c *Cluster) Ports() PortRange {
	return PortRange{First: c.cfg.BasePort, Last: c.cfg.BasePort + 3}
}

// Hosts maps node IDs to their addresses.
func (c *Cluster) Hosts() map[string]string {
	m := map[string]string{}
	for _, n := range c.Nodes() {
		m[n.ID] = n.Host
	}
	return m
}

// Start starts every node and waits until the cluster is ready (see
// WaitReady). On failure it kills what it started.
func (c *Cluster) Start(ctx context.Context) error {
	for _, id := range c.IDs() {
		if err := c.StartNode(id); err != nil {
			c.Close()
			return fmt.Errorf("cluster: %w", err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	if err := c.WaitReady(rctx, c.IDs()); err != nil {
		return fmt.Errorf("cluster: not ready within %v: %w (node logs in %s)", c.cfg.ReadyTimeout, err, c.cfg.Dir)
	}
	return nil
}

// WaitReady waits until every node in ids is running, healthy, and sees
// every node in ids alive (launch.Cluster.WaitReady), until ctx ends.
func (c *Cluster) WaitReady(ctx context.Context, ids []string) error {
	return c.Cluster.WaitReady(ctx, ids, nil)
}

// Close kills every node process (continuing paused ones first so that
// none is left stopped), waits for them to exit and closes the clients. It
// is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	c.closed = true
	clients := c.clients
	c.clients = map[string]*client.Client{}
	c.mu.Unlock()
	for _, cl := range clients {
		cl.Close()
	}
	if err := c.Cluster.Close(); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// Client returns a client that talks to node id only (routing disabled), for
// status queries of that node's own view.
func (c *Cluster) Client(ctx context.Context, id string) (*client.Client, error) {
	n := c.Node(id)
	if n == nil {
		return nil, fmt.Errorf("cluster: no node %q", id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("cluster: closed")
	}
	if cl := c.clients[id]; cl != nil {
		return cl, nil
	}
	cl, err := client.New(ctx, c.ClientConfig(client.Config{
		Endpoints: []string{n.GRPC}, DisableRouting: true, MaxRetries: -1,
		DialTimeout: time.Second, RequestTimeout: 2 * time.Second,
	}))
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

// Members returns the IDs of the nodes that have not been removed (by a
// decommission or a replacement), in order: those the run still waits
// for, asks and checks.
func (c *Cluster) Members() []string {
	var out []string
	for _, n := range c.Nodes() {
		if !n.Removed() {
			out = append(out, n.ID)
		}
	}
	return out
}

// ErrRetryable marks a refused or failed request that may pass if made
// again: no metadata leader reachable, a deadline, or another topology
// change still finishing.
var ErrRetryable = errors.New("may pass if asked again")

// Decommission asks the cluster to decommission node id without waiting
// for it to leave, and returns its ring state then ("leaving"). It runs
// `adaptkv node decommission ID --wait=false` with the other running
// members as endpoints, the code path of `adaptkv cluster remove`, which
// asks through a node other than id. The node's process will end by
// itself once it has left the ring, so its exit is marked expected first
// (and unmarked if the request fails). A request that timed out but was
// taken, asked again, finds the node leaving already: that is success.
// try rotates the endpoints, so that attempts start from different nodes:
// the command asks a node that the first endpoint answering sees alive,
// and one on the minority side of a partition knows no metadata leader.
func (c *Cluster) Decommission(ctx context.Context, id string, try int) (string, error) {
	if c.Node(id) == nil {
		return "", fmt.Errorf("cluster: no node %q", id)
	}
	var eps []string
	for _, n := range c.Nodes() {
		if n.ID != id && !n.Removed() && n.State() == Running {
			eps = append(eps, n.GRPC)
		}
	}
	if len(eps) == 0 {
		return "", fmt.Errorf("cluster: decommission %s: no other node running to ask", id)
	}
	k := try % len(eps)
	eps = append(eps[k:], eps[:k]...)
	if err := c.ExpectExit(id, true); err != nil {
		return "", fmt.Errorf("cluster: decommission %s: %w", id, err)
	}
	args := []string{"node", "decommission", id, "--wait=false", "--output", "json",
		"--timeout", "5s", "--endpoints", strings.Join(eps, ",")}
	// The command speaks to the nodes as they run: with the cluster's root
	// certificate, or plaintext.
	if lc := c.Cluster.Config(); lc.Insecure {
		args = append(args, "--insecure")
	} else {
		args = append(args, "--certs-dir", lc.CertsDir)
	}
	cmd := exec.CommandContext(ctx, c.cfg.Bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ADAPTKV_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, id+" is leaving") {
			return "leaving", nil
		}
		c.ExpectExit(id, false)
		err = fmt.Errorf("cluster: adaptkv node decommission %s: %w: %s", id, err, msg)
		for _, s := range []string{"code = Unavailable", "code = DeadlineExceeded", "code = Aborted", "no leader", "no node answered",
			"one topology change at a time", "context deadline exceeded"} {
			if strings.Contains(msg, s) {
				return "", fmt.Errorf("%w (%w)", err, ErrRetryable)
			}
		}
		return "", err
	}
	var out struct {
		RingState string `json:"ring_state"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return "", fmt.Errorf("cluster: adaptkv node decommission %s: output %q: %w", id, stdout.String(), err)
	}
	return out.RingState, nil
}

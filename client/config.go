package client

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"net"
	"time"

	"github.com/adaptkv/adaptkv/internal/security"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultDialTimeout      = 5 * time.Second
	DefaultRequestTimeout   = 5 * time.Second
	DefaultMaxRetries       = 3
	DefaultRetryBackoffBase = 50 * time.Millisecond
	DefaultRetryBackoffMax  = time.Second
	DefaultTopologyRefresh  = 5 * time.Second
	// DefaultHedgeBudget is the fraction of extra reads hedging may send.
	DefaultHedgeBudget = 0.1
	// DefaultHedgeDelayMin and DefaultHedgeDelayMax bound the adaptive
	// hedge delay (the p95 of the client's recent reads).
	DefaultHedgeDelayMin = 2 * time.Millisecond
	DefaultHedgeDelayMax = 25 * time.Millisecond
	// DefaultMaxInflightPerNode caps a node's concurrency window.
	DefaultMaxInflightPerNode = 256
	// DefaultMaxQueuedPerNode bounds the calls waiting for a node's window.
	DefaultMaxQueuedPerNode = 256
)

// Config configures a Client. The zero value of every field but Endpoints
// selects a default.
type Config struct {
	// Endpoints are host:port gRPC addresses of some of the cluster's nodes.
	// Any node serves every request, so one is enough to work; more let the
	// client start and fail over while some nodes are down. With routing
	// enabled they are only seeds: the client learns the other nodes'
	// addresses from the cluster. Required.
	Endpoints []string

	// TLS is the client's configuration for mutual TLS with the cluster,
	// which runs secure unless started with --insecure: it must present a
	// client certificate signed by the cluster's CA. Takes precedence over
	// CertsDir.
	TLS *tls.Config
	// CertsDir, when TLS is nil, is a certificate directory (see `adaptkv
	// cert`) holding ca.crt and the client certificate of User
	// (client.USER.crt and client.USER.key); certificates replaced there
	// are picked up by new connections. With TLS nil and CertsDir empty the
	// client connects in plaintext, which only an --insecure cluster
	// accepts.
	CertsDir string
	// User names the client certificate to load from CertsDir, or the user
	// to log in as with Password. Default "root".
	User string
	// Password, when set, authenticates User by password instead of a
	// client certificate, for tools that cannot hold one: the client logs
	// in (Admin.Login) over TLS that verifies the cluster with the CA
	// only (TLS, or CertsDir's ca.crt, which must then be set), sends the
	// short-lived token it gets with every call, and logs in again before
	// the token expires and once when a call is refused as
	// unauthenticated. A wrong password fails calls with
	// ErrUnauthenticated.
	Password string

	// DialTimeout bounds how long New waits for the first cluster topology
	// and how long one connection attempt to a node may take. Default 5s.
	// Shorter makes New and failover to a live node quicker when some
	// endpoints are black holes; too short fails connections over slow
	// links. New never fails because the cluster is unreachable: it logs
	// and lets the first call report the connection error.
	DialTimeout time.Duration

	// RequestTimeout is the deadline of a call whose context has none,
	// covering all its retries. Default 5s; negative means no deadline.
	// A context deadline always takes precedence. Shorter bounds latency
	// but turns more slow writes into ErrUnknownOutcome.
	RequestTimeout time.Duration

	// MaxRetries is how many times a call is retried after its first
	// attempt, only when that is safe (see the package documentation).
	// Default 3; negative disables retries. More retries ride out longer
	// node failures at the cost of latency before an error is reported.
	MaxRetries int

	// RetryBackoffBase and RetryBackoffMax shape the wait before retry k
	// (0-based): a uniformly random duration in [d/2, d] where
	// d = min(RetryBackoffMax, RetryBackoffBase * 2^k). Defaults 50ms and
	// 1s. The jitter keeps clients that failed together from retrying in
	// lockstep; a larger base spares a struggling cluster, a smaller one
	// recovers sooner from a single lost node.
	RetryBackoffBase time.Duration
	RetryBackoffMax  time.Duration

	// TopologyRefresh is how often the client re-reads the cluster's
	// members and keyspaces in the background, to route requests and to
	// learn new nodes. It is also re-read soon after a connection error.
	// Default 5s; negative disables the periodic refresh (the refresh
	// after errors still happens). Shorter follows membership changes
	// sooner at the price of two small admin calls per interval. Not used
	// with DisableRouting.
	TopologyRefresh time.Duration

	// Logger receives retries, topology changes and background errors.
	// Default: discard.
	Logger *slog.Logger

	// DisableRouting sends every request to the configured Endpoints in
	// turn instead of to a replica of its key, and never dials addresses
	// learned from the cluster (except for LocalGet, which must reach a
	// given node). Use it when the nodes' advertised addresses are not
	// reachable from the client, for example behind a load balancer or
	// NAT. It costs one extra network hop per request, since the
	// receiving node must forward to the replicas.
	DisableRouting bool

	// DisableBatching sends each Get, Put, Delete and Scan as a gRPC call
	// of its own instead of over the node's Batch stream. By default the
	// client keeps one long-lived stream per node and its sender puts
	// whatever requests are queued when it wakes into one message, with no
	// timer, so a lone request goes at once and batches grow only with
	// load; that saves most of gRPC's per-call cost on both sides. Errors,
	// retries and ErrUnknownOutcome are the same either way. Disable it
	// for a node that predates the stream (it answers Unimplemented).
	DisableBatching bool
	// DisableHedging turns off hedged reads. By default a Get or Scan whose
	// node has not answered within the hedge delay is sent again to the
	// next node in the ranking, and the first answer is taken (the other
	// copy is cancelled): a slow or gray-failing coordinator then costs a
	// read at most about the delay. Only reads are hedged, since they are
	// idempotent; a write, plain or conditional, never is. A session read
	// sends its session token with both copies, and whichever answers has
	// checked it. Hedges are bounded by HedgeBudget.
	DisableHedging bool
	// HedgeBudget is the most hedges may add to the reads sent, as a
	// fraction: every read earns this much of a hedge and a hedge spends
	// one (with a small burst of saved-up hedges), so a cluster that is
	// slow everywhere sees at most this much more load. Default 0.1;
	// between 0 and 1.
	HedgeBudget float64
	// HedgeDelay, when positive, is a fixed wait before a read hedges. By
	// default the wait follows the 95th percentile of the client's recent
	// read latencies, within DefaultHedgeDelayMin and DefaultHedgeDelayMax
	// (2-25 ms): long enough that a healthy node is rarely hedged, short
	// enough that a node slowed by tens of milliseconds is.
	HedgeDelay time.Duration

	// MaxInflightPerNode caps the client's concurrency window of each node:
	// the data calls (Get, Put, Delete, Scan, the conditional writes) it
	// lets be in flight at one node at once. A node admits a bounded number
	// of requests at once (adaptkv node --max-inflight, default 32) and
	// refuses the rest as OVERLOADED; instead of sending calls past that
	// to be refused, the client keeps a window per node, adapted like
	// TCP's congestion window: it starts at 32, grows by one call per
	// window's worth of successes up to this cap (lowered to the bound the
	// node states in its first refusal), and halves when the node refuses
	// a call as overloaded, which then waits for the smaller window rather
	// than failing. Callers past the window wait in the client, in FIFO
	// order, within their context: a closed loop of many callers sees its
	// latency grow with their number instead of errors. A call with room
	// in the window waits for nothing. Default 256; negative disables the
	// windows (every call is sent at once, as before).
	MaxInflightPerNode int
	// MaxQueuedPerNode bounds the calls waiting for one node's window.
	// Past it a call is refused at once, unsent, with ErrOverloaded (and
	// counts as a refusal for the retry budget and the client-side
	// throttle), so that an open loop offering more than the cluster
	// serves still sheds load and the client's memory stays bounded, and
	// the calls that wait do not wait behind an ever longer queue.
	// Default 256. More lets more callers wait (a closed loop of N callers
	// on n nodes queues about N/n per node, more on a node the ranking
	// favours): raise it for a program with more callers than about
	// 256 × nodes / 2. Fewer sheds sooner under an open loop, whose
	// admitted calls then wait behind a shorter queue (BENCHMARKS.md, how
	// cost grows: 1024 let a 3× overload's admitted p99 grow 3.4×).
	MaxQueuedPerNode int
}

// withDefaults validates cfg and returns it with defaults filled in and
// duplicate endpoints removed.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Endpoints) == 0 {
		return cfg, fmt.Errorf("%w: set Config.Endpoints to the host:port gRPC address of at least one node", ErrNoEndpoints)
	}
	seen := make(map[string]bool, len(cfg.Endpoints))
	eps := make([]string, 0, len(cfg.Endpoints))
	for i, ep := range cfg.Endpoints {
		host, port, err := net.SplitHostPort(ep)
		if err != nil {
			return cfg, fmt.Errorf("%w: Config.Endpoints[%d] %q is not host:port: %w", ErrInvalidArgument, i, ep, err)
		}
		if host == "" || port == "" {
			return cfg, fmt.Errorf("%w: Config.Endpoints[%d] %q needs both a host and a port", ErrInvalidArgument, i, ep)
		}
		if !seen[ep] {
			seen[ep] = true
			eps = append(eps, ep)
		}
	}
	cfg.Endpoints = eps
	if cfg.User == "" {
		cfg.User = security.RootUser
	}

	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"DialTimeout", cfg.DialTimeout},
		{"RetryBackoffBase", cfg.RetryBackoffBase},
		{"RetryBackoffMax", cfg.RetryBackoffMax},
	} {
		if d.v < 0 {
			return cfg, fmt.Errorf("%w: Config.%s is negative (%v)", ErrInvalidArgument, d.name, d.v)
		}
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if cfg.RetryBackoffBase == 0 {
		cfg.RetryBackoffBase = DefaultRetryBackoffBase
	}
	if cfg.RetryBackoffMax == 0 {
		cfg.RetryBackoffMax = max(DefaultRetryBackoffMax, cfg.RetryBackoffBase)
	}
	if cfg.RetryBackoffBase > cfg.RetryBackoffMax {
		return cfg, fmt.Errorf("%w: Config.RetryBackoffBase (%v) exceeds RetryBackoffMax (%v)", ErrInvalidArgument, cfg.RetryBackoffBase, cfg.RetryBackoffMax)
	}
	if cfg.TopologyRefresh == 0 {
		cfg.TopologyRefresh = DefaultTopologyRefresh
	}
	if cfg.HedgeBudget < 0 || cfg.HedgeBudget > 1 || math.IsNaN(cfg.HedgeBudget) {
		return cfg, fmt.Errorf("%w: Config.HedgeBudget %v is not a fraction between 0 and 1", ErrInvalidArgument, cfg.HedgeBudget)
	}
	if cfg.HedgeBudget == 0 {
		cfg.HedgeBudget = DefaultHedgeBudget
	}
	if cfg.HedgeDelay < 0 {
		return cfg, fmt.Errorf("%w: Config.HedgeDelay is negative (%v)", ErrInvalidArgument, cfg.HedgeDelay)
	}
	switch {
	case cfg.MaxInflightPerNode == 0:
		cfg.MaxInflightPerNode = DefaultMaxInflightPerNode
	case cfg.MaxInflightPerNode < 0:
		cfg.MaxInflightPerNode = 0
	}
	if cfg.MaxQueuedPerNode < 0 {
		return cfg, fmt.Errorf("%w: Config.MaxQueuedPerNode is negative (%d)", ErrInvalidArgument, cfg.MaxQueuedPerNode)
	}
	if cfg.MaxQueuedPerNode == 0 {
		cfg.MaxQueuedPerNode = DefaultMaxQueuedPerNode
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

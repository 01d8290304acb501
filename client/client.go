package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptkv/adaptkv/internal/security"
)

// Client is a connection to an adaptkv cluster. It is safe for concurrent
// use; create one per process and share it, since it keeps long-lived
// connections and a background topology refresh.
type Client struct {
	cfg   Config
	log   *slog.Logger
	creds credentials.TransportCredentials // mutual TLS, or plaintext

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn // by gRPC address; closed only by Close
	closed bool

	// bg is canceled by Close: it stops the refresher and backoff waits.
	bg        context.Context
	stop      context.CancelFunc
	closeOnce sync.Once
	done      chan struct{} // closed when the refresher has returned
	refreshCh chan struct{} // asks the refresher for an early refresh

	topo atomic.Pointer[topology]
	// lastRefresh is the Unix nanoseconds of the last refresh attempt, for
	// rate limiting refreshes triggered by errors.
	lastRefresh atomic.Int64
	rr          atomic.Uint64 // rotates requests any node serves over the nodes ranked equal
	// spread rotates reads over a key's replicas ranked equal. It is
	// separate from rr because one read advances rr too, and with a shared
	// counter an even step would pin a key with two replicas to one of them.
	spread atomic.Uint64
	// scores rank the nodes by latency (rank.go).
	scores scoreboard
	// hedge holds read hedging's delay and budget (rank.go).
	hedge hedging
	// budget limits retries after OVERLOADED refusals.
	budget retryBudget
	// throttle refuses locally what overloaded nodes would refuse.
	throttle throttle
	// windows bound the data calls in flight per node (window.go).
	windows windows
	// tokens logs in with Config.Password; nil for certificate or
	// plaintext clients.
	tokens *tokenSource
	// batch holds the Batch stream of each connection (batch.go).
	batch batchers
}

// New returns a Client for the cluster at cfg.Endpoints. It fails only on an
// invalid Config: connections are made lazily and in the background, and
// when no node answers within cfg.DialTimeout (or before ctx ends) New still
// returns a Client, whose calls report the connection errors. ctx bounds only
// this initial contact; the Client does not keep it.
//
// Connections use mutual TLS when Config.TLS or Config.CertsDir says how,
// and are plaintext otherwise (for an --insecure cluster).
func New(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	var material *security.Material
	switch {
	case cfg.TLS != nil:
		creds = credentials.NewTLS(cfg.TLS)
	case cfg.Password != "" && cfg.CertsDir != "":
		tc, err := security.CAClientConfig(cfg.CertsDir)
		if err != nil {
			return nil, fmt.Errorf("%w: Config.CertsDir: %w", ErrInvalidArgument, err)
		}
		creds = credentials.NewTLS(tc)
	case cfg.Password != "":
		return nil, fmt.Errorf("%w: Config.Password needs TLS: set Config.CertsDir (its ca.crt) or Config.TLS", ErrInvalidArgument)
	case cfg.CertsDir != "":
		if material, err = security.LoadClient(cfg.CertsDir, cfg.User); err != nil {
			return nil, fmt.Errorf("%w: Config.CertsDir: %w", ErrInvalidArgument, err)
		}
		creds = material.ClientCredentials()
	}
	c := &Client{
		creds:     creds,
		cfg:       cfg,
		log:       cfg.Logger,
		conns:     make(map[string]*grpc.ClientConn),
		done:      make(chan struct{}),
		refreshCh: make(chan struct{}, 1),
	}
	if cfg.Password != "" {
		c.tokens = &tokenSource{c: c}
	}
	c.bg, c.stop = context.WithCancel(context.Background())
	if material != nil {
		go material.Watch(c.bg, 10*time.Second, c.log)
	}
	c.budget.init()
	c.windows.cap, c.windows.queued = cfg.MaxInflightPerNode, cfg.MaxQueuedPerNode
	for _, ep := range cfg.Endpoints {
		if _, err := c.conn(ep); err != nil {
			close(c.done) // no refresher to wait for
			c.Close()
			return nil, err
		}
	}

	fctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	err = c.refresh(fctx, cfg.Endpoints)
	cancel()
	if err != nil {
		c.log.Warn("adaptkv client: no initial topology; using the configured endpoints until a node answers", "endpoints", cfg.Endpoints, "err", err)
	}

	if cfg.DisableRouting {
		close(c.done)
	} else {
		go c.refresher()
	}
	return c, nil
}

// Close stops the background refresh and closes every connection. Calls in
// flight fail; a write among them may report ErrUnknownOutcome. Calls after
// Close return ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	var errs []error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		conns := c.conns
		c.conns = nil
		c.mu.Unlock()
		c.stop()
		// The batchers end with c.bg; their streams fail what they carry.
		c.batch.close()
		for addr, cc := range conns {
			if err := cc.Close(); err != nil {
				errs = append(errs, err)
				c.log.Debug("adaptkv client: closing connection", "addr", addr, "err", err)
			}
		}
	})
	<-c.done
	return errors.Join(errs...)
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// conn returns the connection to addr, creating it on first use. Creating
// does no I/O: gRPC connects on the first RPC or Connect.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(c.creds)}
	if c.tokens != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(c.tokens))
	}
	cc, err := grpc.NewClient(addr, append(opts,
		grpc.WithConnectParams(grpc.ConnectParams{
			// gRPC's default reconnect backoff grows to 2 minutes, far
			// longer than a node restart; the client would keep a node
			// that is back marked as failed.
			Backoff: grpcbackoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   5 * time.Second,
			},
			MinConnectTimeout: c.cfg.DialTimeout,
		}),
	)...)
	if err != nil {
		// Only a malformed target gets here; Config validation and the
		// server's addresses should prevent it.
		return nil, localError("dial", codes.InvalidArgument, ReasonInvalidArgument, "address %q: %v", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// usable reports whether a request may be sent on cc now. A connection in
// TransientFailure would fail the request without sending it, so skipping it
// saves an attempt; Idle and Connecting connections are fine (the request
// waits for the connection).
func usable(cc *grpc.ClientConn) bool {
	switch cc.GetState() {
	case connectivity.TransientFailure, connectivity.Shutdown:
		return false
	case connectivity.Idle:
		cc.Connect()
	}
	return true
}

// pickFrom returns a target choosing, for each attempt, the first address of
// candidates() that has not been tried and whose connection is usable. When
// every candidate has been tried it starts over, so that a retry can return
// to a node that recovered.
func (c *Client) pickFrom(op string, candidates func() []string) target {
	return func(tried map[string]bool) (string, *grpc.ClientConn, *Error) {
		addrs := candidates()
		for pass := 0; pass < 2; pass++ {
			for _, addr := range addrs {
				if tried[addr] {
					continue
				}
				cc, err := c.conn(addr)
				if errors.Is(err, ErrClosed) {
					return "", nil, closedError(op)
				}
				if err != nil {
					continue
				}
				if usable(cc) {
					return addr, cc, nil
				}
			}
			clear(tried)
		}
		// Nothing was sent, so this is a definite failure that a retry
		// may cure. Let gRPC reconnect at once rather than after its
		// backoff, since a request is waiting.
		for _, addr := range addrs {
			if cc, err := c.conn(addr); err == nil {
				cc.ResetConnectBackoff()
			}
		}
		return "", nil, localError(op, codes.Unavailable, "", "no reachable node: the connections to %v are failing", addrs)
	}
}

// anyNode lists the nodes for requests that any node can serve, ranked by
// the client's latency scores (rank.go), flagged nodes last.
func (c *Client) anyNode() []string {
	var addrs []string
	if t := c.topo.Load(); t != nil && !c.cfg.DisableRouting {
		addrs = append(addrs, t.aliveAddrs...)
	}
	addrs = appendNew(addrs, c.cfg.Endpoints...)
	var flagged map[string]bool
	if t := c.topo.Load(); t != nil {
		addrs, flagged = t.demoteFlagged(addrs), t.flagged
	}
	return c.scores.rank(addrs, opRead, flagged, c.rr.Add(1))
}

// appendNew appends the addresses of add that dst does not hold yet.
func appendNew(dst []string, add ...string) []string {
	for _, a := range add {
		if a != "" && !slices.Contains(dst, a) {
			dst = append(dst, a)
		}
	}
	return dst
}

// rotate returns s rotated left by n places, in place.
func rotate(s []string, n uint64) []string {
	if len(s) < 2 {
		return s
	}
	k := int(n % uint64(len(s)))
	slices.Reverse(s[:k])
	slices.Reverse(s[k:])
	slices.Reverse(s)
	return s
}

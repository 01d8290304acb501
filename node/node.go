package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/node/membership"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/replication/antientropy"
	"github.com/adaptkv/adaptkv/storage"
)

// DefaultKeyspace is created by the first metadata leader, so that a new
// cluster can be written to at once.
const DefaultKeyspace = "default"

// Node is one running adaptkv process.
type Node struct {
	cfg Config
	log *slog.Logger

	engine    storage.Engine
	meta      *fsm
	gray      *nodeHealth
	raft      *raft.Raft
	members   *membership.Membership
	hints     *replication.HintStore
	replica   *replication.Replica
	coord     *replication.Coordinator
	transport *peerTransport
	clock     *replication.Clock
	metrics   *metrics
	tuning    *tuning
	repair    *antientropy.Runner
	scheduler *scheduler
	lease     configLease
	// gossipKeys is the gossip encryption keyring (keyring.go).
	gossipKeys *gossipKeys
	// number is this node's number once known (numbers.go); 0 until then.
	number    atomic.Uint32
	numberMu  sync.Mutex // serializes writes of the node-number file
	admission *admission // nil: no bound
	drain     drainState // drain.go
	catchUp   catchUp
	// leftSeen is when the leader first saw each left member alive in
	// gossip (join.go's rejoinDue); topologyLoop's only.
	leftSeen map[string]time.Time
	// stream is the topology change's stream this node drives, if any
	// (stream.go); streamStats count what this process streamed.
	stream      atomic.Pointer[streamRun]
	streamStats streamStats
	// left is closed once this node has left the ring and the cluster
	// (decommission.go).
	left     chan struct{}
	leftOnce sync.Once

	grpcServer *grpc.Server
	health     *health.Server
	httpServer *http.Server
	addrs      Addrs
	hooks      *testHooks  // nil unless Config.UnsafeTestHooks
	auth       *authorizer // nil on an insecure node (auth.go)

	raftHasState bool
	// joined is set once the node has joined the gossip cluster (at once
	// when it has no seeds). Until then its view of the ring may lack
	// members, so it coordinates nothing: a write placed on a partial ring
	// would miss replicas and leave no hint for them.
	joined         atomic.Bool
	defaultCreated bool // touched by leaderLoop only

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closers  []func() error
	stopOnce sync.Once
	// batchStop is closed when a drain or Stop begins, telling Batch
	// streams to wind down (batch.go).
	batchStop     chan struct{}
	batchStopOnce sync.Once
	batchStopped  sync.Once
	// peerStreams is closed when Stop begins (not a drain, which keeps
	// answering peers), ending the Peer streams served (peerstream_server.go).
	peerStreams stopSignal
}

// Addrs are the addresses a node actually bound.
type Addrs struct {
	GRPC, Gossip, Raft, HTTP string
}

// Start starts a node and returns once it serves; joining the cluster and
// electing a metadata leader go on in the background (see Ready).
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node_id", cfg.ID), meta: newFSM(), clock: replication.NewClock(nil), left: make(chan struct{})}
	n.meta.vnodes = cfg.Vnodes
	if err := n.start(ctx); err != nil {
		n.closeAll()
		return nil, err
	}
	return n, nil
}

func (n *Node) start(ctx context.Context) error {
	cfg := n.cfg
	if cfg.InMemory {
		n.engine = storage.NewMemory()
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		if err := checkNotDecommissioned(cfg.DataDir); err != nil {
			return err
		}
		eng, err := storage.OpenPebble(filepath.Join(cfg.DataDir, "data"), storage.Options{Logger: n.log, FS: cfg.StorageFS})
		if err != nil {
			return fmt.Errorf("open storage: %w", err)
		}
		n.engine = eng
	}
	n.closers = append(n.closers, n.engine.Close)

	grpcLn, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen grpc %s: %w", cfg.GRPCAddr, err)
	}
	n.closers = append(n.closers, func() error { grpcLn.Close(); return nil })
	raftLn, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("listen raft %s: %w", cfg.RaftAddr, err)
	}
	n.addrs.GRPC, n.addrs.Raft = grpcLn.Addr().String(), raftLn.Addr().String()
	var httpLn net.Listener
	if cfg.HTTPAddr != "" {
		if httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			raftLn.Close()
			return fmt.Errorf("listen http %s: %w", cfg.HTTPAddr, err)
		}
		n.addrs.HTTP = httpLn.Addr().String()
	}
	host, _, _ := net.SplitHostPort(n.addrs.GRPC)

	if err := n.loadNumber(); err != nil {
		raftLn.Close()
		return err
	}
	if n.hints, err = replication.NewHintStore(n.engine, replication.HintOptions{MaxHints: cfg.MaxHints, MaxWindow: cfg.MaxHintWindow, Logger: n.log}); err != nil {
		raftLn.Close()
		return err
	}
	n.replica = replication.NewReplica(n.engine, n.meta, n.clock)
	n.replica.SetPlacement(placement{n})
	if cfg.UnsafeTestHooks {
		n.hooks = &testHooks{linkDelay: map[string]time.Duration{}}
		n.log.Warn("unsafe test hooks enabled: this node accepts fault injection on its HTTP address")
	}
	n.transport = newPeerTransport(cfg.ID, n.replica, host, n.grpcAddrOf, cfg.Security)
	n.transport.hooks = n.hooks
	if cfg.TracerProvider != nil {
		n.transport.dialOpts = append(n.transport.dialOpts, peerTraceOption(cfg.TracerProvider))
	}
	n.transport.timeout = cfg.ReplicaTimeout
	// Closers run newest first: the peer connections close, so what the
	// coordinator still has in flight fails at once, then its background
	// goroutines are waited for, then the hints and storage they use close.
	n.closers = append(n.closers, func() error {
		if n.coord == nil {
			return nil
		}
		done := make(chan struct{})
		go func() { n.coord.Wait(); close(done) }()
		// Each is bounded by the replica timeout; the bound here only
		// keeps a stop from hanging on a bug.
		limit := 2*n.cfg.ReplicaTimeout + time.Second
		select {
		case <-done:
		case <-time.After(limit):
			n.log.Error("stop: the coordinator's background requests did not end", "waited", limit)
		}
		return nil
	})
	n.closers = append(n.closers, func() error { n.transport.Close(); return nil })

	if n.gossipKeys, err = loadGossipKeys(cfg, n.log); err != nil {
		raftLn.Close()
		return err
	}
	n.meta.gossip.onApply = n.gossipKeys.apply
	if err := n.startRaft(raftLn, host); err != nil {
		raftLn.Close()
		return err
	}
	n.closers = append(n.closers, func() error { return n.raft.Shutdown().Error() })

	meta := membership.Meta{ID: cfg.ID, GRPCAddr: n.addrs.GRPC, RaftAddr: n.addrs.Raft, HTTPAddr: n.addrs.HTTP, Zone: cfg.Zone, Replace: cfg.Replace}
	n.members, err = n.gossipKeys.startGossip(func(keys [][]byte) (*membership.Membership, error) {
		return membership.Start(membership.Config{
			Meta: meta, BindAddr: cfg.GossipAddr, Local: cfg.LocalTimings, Vnodes: cfg.Vnodes, Logger: n.log,
			OnChange: func(v *membership.View) { n.hints.Wake() }, Keys: keys,
		})
	})
	if err != nil {
		return err
	}
	n.addrs.Gossip = n.members.Addr()
	n.closers = append(n.closers, n.members.Shutdown)

	n.tuning = newTuning(n, max(cfg.TunerInterval, 100*time.Millisecond))
	n.gray = newNodeHealth(n, cfg.HealthWindow)
	n.coord = replication.NewCoordinator(replication.Config{
		NodeID: cfg.ID, NodeNumbers: n.nodeNumber, Transport: n.transport, Topology: topology{n},
		Keyspaces: n.meta, Hints: n.hints, Clock: n.clock, ReplicaTimeout: cfg.ReplicaTimeout,
		ReadRepairChance: cfg.ReadRepairChance, Observer: n.tuning, Fence: &n.lease, Logger: n.log,
		Calls: n.gray, Flagged: n.gray.flagged,
	})
	if cfg.MaxInflight >= 0 {
		n.admission = newAdmission(cmp.Or(cfg.MaxInflight, DefaultMaxInflight))
	}
	n.repair = newRepairRunner(n)
	n.scheduler = newScheduler(n)
	n.catchUp.sem = make(chan struct{}, 1)
	n.metrics = newMetrics(n)
	n.metrics.reg.MustRegister(n.gray)

	const streamWorkers = 128
	limit := cfg.MaxValueSize + cfg.MaxKeySize + 64<<10
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(max(limit, 4<<20)),
		// Serve streams on a pool of long-lived goroutines instead of one new
		// goroutine per RPC: a fresh goroutine's stack grows by copying on
		// every request (15% of a node's CPU in the profile BENCHMARKS.md
		// cites), a pooled one keeps its grown stack. When every worker is
		// busy gRPC falls back to a new goroutine, so the pool is sized for
		// the concurrency a node sees (a 32-client benchmark fell back on a
		// quarter of its requests with 8 workers), not for the CPUs; an
		// idle worker costs a parked goroutine.
		grpc.NumStreamWorkers(uint32(max(streamWorkers, 4*runtime.GOMAXPROCS(0)))),
	}
	var unary []grpc.UnaryServerInterceptor
	if cfg.Security != nil {
		// The API verifies a client certificate when one is presented but
		// does not require it (password users hold none); the interceptors
		// decide what each caller may do (auth.go).
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.Security.APIServerConfig())))
		n.auth = newAuthorizer(n)
		unary = append(unary, n.auth.unary)
		opts = append(opts, grpc.ChainStreamInterceptor(n.auth.stream))
	} else {
		n.log.Warn("running insecure: the gRPC API and Raft are plaintext and unauthenticated, gossip is unencrypted, and every caller may do everything")
	}
	if n.hooks != nil {
		unary = append(unary, n.hooks.replyDelayInterceptor, n.hooks.clientDelayInterceptor)
		opts = append(opts, grpc.ChainStreamInterceptor(n.hooks.clientDelayStream))
	}
	if len(unary) > 0 {
		opts = append(opts, grpc.ChainUnaryInterceptor(unary...))
	}
	if n.admission != nil {
		opts = append(opts, grpc.InTapHandle(n.admission.tap))
	}
	if cfg.TracerProvider != nil {
		opts = append(opts, grpc.StatsHandler(serverTraceHandler(cfg.TracerProvider)))
	}
	n.grpcServer = grpc.NewServer(opts...)
	registerServices(n.grpcServer, n)
	n.health = health.NewServer()
	if len(cfg.Seeds) > 0 {
		n.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	}
	healthpb.RegisterHealthServer(n.grpcServer, n.health)

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n.cancel = cancel
	n.goRun(func() {
		if err := n.grpcServer.Serve(grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("grpc server stopped", "err", err)
		}
	})
	if httpLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		mux.HandleFunc("/healthz", n.healthz)
		mux.HandleFunc("/livez", n.livez)
		mux.HandleFunc("/readyz", n.readyz)
		mux.HandleFunc("/{$}", n.statusPage)
		if n.hooks != nil {
			n.hooks.register(mux, n)
		}
		n.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		n.goRun(func() {
			if err := n.httpServer.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("http server stopped", "err", err)
			}
		})
	}
	n.goRun(func() { n.joinLoop(runCtx) })
	n.goRun(func() { n.bootstrapLoop(runCtx) })
	n.goRun(func() { n.leaderLoop(runCtx) })
	n.goRun(func() { n.topologyLoop(runCtx) })
	n.goRun(func() { n.hints.Run(runCtx, n.transport, topology{n}, cfg.HintInterval) })
	n.goRun(func() { n.collectLoop(runCtx) })
	n.goRun(func() { n.tuning.loop(runCtx) })
	n.goRun(func() { n.gray.loop(runCtx) })
	n.goRun(func() { n.scheduler.loop(runCtx) })
	n.goRun(func() { n.leaseLoop(runCtx) })
	n.goRun(func() { n.authSecretLoop(runCtx) })
	if cfg.Replace != "" {
		if err := n.requestReplace(ctx); err != nil {
			return err
		}
	}
	n.log.Info("node started", "grpc", n.addrs.GRPC, "gossip", n.addrs.Gossip, "raft", n.addrs.Raft, "http", n.addrs.HTTP, "data_dir", cfg.DataDir, "in_memory", cfg.InMemory)
	return nil
}

func (n *Node) goRun(f func()) {
	n.wg.Add(1)
	go func() { defer n.wg.Done(); f() }()
}

// joinLoop joins the seeds, retrying until one answers: a node restarted
// while its seeds are down must still find the cluster when they return.
func (n *Node) joinLoop(ctx context.Context) {
	defer n.joined.Store(true)
	if len(n.cfg.Seeds) == 0 {
		return
	}
	backoff := 100 * time.Millisecond
	for {
		var seeds []string
		for _, s := range n.cfg.Seeds {
			if s != n.addrs.Gossip && s != n.cfg.GossipAddr {
				seeds = append(seeds, s)
			}
		}
		if len(seeds) == 0 {
			return
		}
		joined, err := n.members.Join(seeds)
		if err == nil && joined > 0 {
			n.log.Info("joined cluster", "seeds_answered", joined)
			n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			return
		}
		n.log.Debug("join failed, retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// collectLoop removes tombstones past their grace period, hourly or at a
// tenth of the grace period if that is shorter.
func (n *Node) collectLoop(ctx context.Context) {
	every := min(time.Hour, max(n.cfg.TombstoneGrace/10, time.Second))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c, err := n.engine.CollectTombstones(time.Now(), n.cfg.TombstoneGrace); err != nil {
			n.log.Warn("tombstone collection failed", "err", err)
		} else if c > 0 {
			n.log.Info("tombstones collected", "count", c)
		}
		n.cleanPaxos(ctx, time.Now())
	}
}

// cleanPaxos forgets this replica's Paxos acceptor states older than half
// the tombstone grace, in every keyspace, and completes with a Paxos read
// each old proposal still in progress so that the next pass forgets it.
// Why half the grace? A forgotten state must never meet its proposal again:
// proposals older than the low bound are refused, and the value a completed
// round wrote is a plain record, so it is protected by the tombstone rule
// for as long as tombstones are (the argument is at the top of
// replication/replica_paxos.go). A failed repair is logged and left to the
// next pass: the state it concerns stays, which costs only space.
func (n *Node) cleanPaxos(ctx context.Context, now time.Time) {
	horizon := replication.PaxosHorizon(now, n.cfg.TombstoneGrace/2)
	for _, d := range n.meta.Defs() {
		res, err := n.replica.CleanPaxos(ctx, d.Name, horizon)
		if err != nil {
			if ctx.Err() == nil {
				n.log.Warn("paxos state cleanup failed", "keyspace", d.Name, "err", err)
			}
			continue
		}
		if res.Forgotten > 0 || len(res.InProgress) > 0 {
			n.log.Info("paxos state cleaned", "keyspace", d.Name, "forgotten", res.Forgotten, "in_progress", len(res.InProgress))
		}
		if len(res.InProgress) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = n.coord.RepairPaxos(rctx, d.Name, res.InProgress)
		cancel()
		if err != nil && ctx.Err() == nil {
			n.log.Warn("completing old paxos proposals failed; the next cleanup tries again", "keyspace", d.Name, "err", err)
		}
	}
}

func (n *Node) healthz(w http.ResponseWriter, r *http.Request) {
	if err := n.Ready(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Ready reports nil once the node can serve: it knows a metadata leader and
// has applied at least one keyspace.
func (n *Node) Ready() error {
	if !n.joined.Load() {
		return errors.New("not joined to the cluster yet")
	}
	if leader, _ := n.raft.LeaderWithID(); leader == "" {
		return errors.New("no metadata leader yet")
	}
	if len(n.meta.Defs()) == 0 {
		return errors.New("no keyspace applied yet")
	}
	return nil
}

// ID is the node's ID.
func (n *Node) ID() string { return n.cfg.ID }

// Addrs returns the addresses the node bound.
func (n *Node) Addrs() Addrs { return n.addrs }

// grpcAddrOf resolves a member's gRPC address through gossip.
func (n *Node) grpcAddrOf(id string) (string, bool) {
	if id == n.cfg.ID {
		return n.addrs.GRPC, true
	}
	m, ok := n.members.View().Member(id)
	if !ok || m.GRPCAddr == "" {
		return "", false
	}
	return m.GRPCAddr, true
}

// Stop shuts the node down without leaving the cluster. It waits for
// in-flight requests until ctx ends, then cuts them off.
func (n *Node) Stop(ctx context.Context) error {
	var err error
	n.stopOnce.Do(func() {
		n.stopBatches()
		n.peerStreams.close()
		if n.health != nil {
			n.health.Shutdown()
		}
		if n.grpcServer != nil {
			done := make(chan struct{})
			go func() { n.grpcServer.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				n.grpcServer.Stop()
			}
		}
		if n.httpServer != nil {
			n.httpServer.Close()
		}
		if n.cancel != nil {
			n.cancel()
		}
		n.wg.Wait()
		err = n.closeAll()
		n.log.Info("node stopped")
	})
	return err
}

// closeAll releases what start opened, newest first.
func (n *Node) closeAll() error {
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	n.closers = nil
	return errors.Join(errs...)
}

// topology is replication.Topology: placement from the metadata log's
// topology (topology.go), liveness from gossip.
type topology struct{ n *Node }

// Ring returns the ring of the log's topology; before the first topology
// entry is applied (a cluster being formed, or one upgraded from gossip
// placement whose leader has not yet adopted its members), gossip's ring,
// which is what placed keys before.
func (t topology) Ring() *ring.Ring {
	if r := t.n.meta.ring(); r != nil {
		return r
	}
	return t.n.members.View().Ring
}

// Pending implements replication.PendingTopology.
func (t topology) Pending() *ring.Ring  { return t.n.meta.futureRing() }
func (t topology) Alive(id string) bool { return t.n.members.View().Alive(id) }

// ringSize is the number of members that own ranges.
func (n *Node) ringSize() int { return topology{n}.Ring().Len() }

// AliveMembers is the number of members gossip reports alive, this node
// included.
func (n *Node) AliveMembers() int {
	c := 0
	v := n.members.View()
	for _, m := range v.Members {
		if v.Alive(m.ID) {
			c++
		}
	}
	return c
}

// MetadataLeader is the ID of the metadata log's leader as this node knows
// it, empty when there is none.
func (n *Node) MetadataLeader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// Topology returns the ring membership this node has applied from the
// metadata log.
func (n *Node) Topology() Topology { return n.meta.Topology() }

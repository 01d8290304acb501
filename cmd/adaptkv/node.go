package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node"
)

// nodeStopTimeout bounds the stop of a node that has been decommissioned
// (it has nothing left to drain).
const nodeStopTimeout = 8 * time.Second

// defaultDrainTimeout bounds a drain after SIGINT or SIGTERM. Kubernetes
// waits terminationGracePeriodSeconds (30 s by default) before SIGKILL;
// the manifests give the pod more than this.
const defaultDrainTimeout = 30 * time.Second

// nodeFlags are the flags of `adaptkv node`; they map one to one onto
// node.Config.
type nodeFlags struct {
	id, dataDir, zone, replace               string
	grpcAddr, gossipAddr, raftAddr, httpAddr string
	seeds                                    []string
	bootstrapExpect                          int
	inMemory, localTimings                   bool
	unsafeTestHooks, pprof                   bool
	tunerInterval, tunerDwell                time.Duration
	healthWindow                             time.Duration
	unsafeTunerForce                         time.Duration
	logLevel, logFormat                      string
	gcPercent                                int
	maxKeySize, maxValueSize                 int
	configLease                              time.Duration
	maxHints                                 int
	maxHintWindow                            time.Duration
	maxInflight                              int
	antiEntropyInterval                      time.Duration
	antiEntropyRate                          int64
	streamRate                               int64
	configFile                               string
	drainTimeout                             time.Duration
	trace, traceEndpoint                     string
	traceSample                              float64
}

func (a *app) nodeCommand() *cobra.Command {
	var f nodeFlags
	def := node.DefaultLocalConfig()
	cmd := &cobra.Command{
		Use:   "node --id ID --data-dir DIR",
		Short: "Run one node in the foreground",
		Long: `Run one adaptkv node in the foreground, logging to stderr, until SIGINT or
SIGTERM, which stop it cleanly. A restart with the same --id and --data-dir
picks up where it stopped.

A new cluster of N nodes is formed by starting each with --bootstrap-expect N
and --seeds listing the gossip addresses of the others.

A new node takes a dead member's place in one topology change with
--replace DEAD_ID (its own --id, --seeds, --bootstrap-expect 0): the
cluster streams the dead member's data to it from the surviving replicas.
It is refused (and the node exits) if the member is alive, not on the
ring, or another topology change is in progress.

Settings can also come from a YAML file (--config FILE), one key per flag
name; a flag on the command line wins over its ADAPTKV_<FLAG> variable,
which wins over the file, which wins over the default.

On SIGTERM or SIGINT the node drains before it stops (--drain-timeout): it
turns not-ready (/readyz, gRPC health, ClusterStatus), refuses new client
requests as NODE_DRAINING so that clients retry elsewhere, finishes those in
flight, keeps answering its peers, flushes, then stops.

A node is secure: it needs --certs-dir with ca.crt, node.crt and node.key
(see ` + "`adaptkv cert`" + `), and then speaks only mutual TLS 1.3. It reloads
its certificates on SIGHUP and when the files change (checked every 10 s).
--insecure runs it plaintext and unauthenticated instead, for a trusted
machine only.`,
		Example: `  adaptkv node --id n1 --data-dir /var/lib/adaptkv --certs-dir /etc/adaptkv/certs --bootstrap-expect 3 \
    --seeds 10.0.0.2:7401,10.0.0.3:7401 --grpc-addr 10.0.0.1:7400 \
    --gossip-addr 10.0.0.1:7401 --raft-addr 10.0.0.1:7402 --http-addr 10.0.0.1:7403`,
		Args: cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.configFile != "" {
				if err := applyConfigFile(cmd.Flags(), f.configFile); err != nil {
					return usageErr(err)
				}
			}
			if f.traceSample <= 0 || f.traceSample > 1 {
				return usagef("--trace-sample %v: want a share in (0, 1]", f.traceSample)
			}
			if f.drainTimeout <= 0 {
				return usagef("--drain-timeout %v: want a positive duration, e.g. 30s", f.drainTimeout)
			}
			cfg, err := f.config()
			if err != nil {
				return err
			}
			if cfg.Security, err = a.nodeSecurity(); err != nil {
				return err
			}
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(f.gcPercent)
			}
			if f.trace != node.TraceOff {
				tp, err := node.NewTracerProvider(cmd.Context(), node.TraceOptions{
					Exporter: f.trace, Endpoint: f.traceEndpoint, SampleRatio: f.traceSample, NodeID: cfg.ID, Writer: a.stdout})
				if err != nil {
					return usageErr(fmt.Errorf("--trace: %w", err))
				}
				// Flushes the spans still buffered once the node has stopped.
				defer tp.Shutdown(context.WithoutCancel(cmd.Context())) //nolint:errcheck // best effort at exit
				cfg.TracerProvider = tp
			}
			return runNode(cmd.Context(), cfg, f.drainTimeout)
		},
	}
	cmd.AddCommand(a.nodeDecommissionCommand(), a.nodeRemoveCommand())
	fs := cmd.Flags()
	fs.StringVar(&f.id, "id", "", "node ID, unique in the cluster and stable across restarts (required)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory (required unless --in-memory)")
	fs.StringVar(&f.grpcAddr, "grpc-addr", def.GRPCAddr, "host:port of the client, admin and peer gRPC API")
	fs.StringVar(&f.gossipAddr, "gossip-addr", def.GossipAddr, "host:port of gossip membership (UDP and TCP)")
	fs.StringVar(&f.raftAddr, "raft-addr", def.RaftAddr, "host:port of the metadata log's Raft transport")
	fs.StringVar(&f.httpAddr, "http-addr", def.HTTPAddr, "host:port of /metrics, /livez, /readyz and /healthz (and /debug/pprof with --pprof); empty disables it")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go's profiler under /debug/pprof on --http-addr; anyone who can reach that address can read the node's memory and stall it")
	fs.StringSliceVar(&f.seeds, "seeds", nil, "gossip addresses of other nodes to join, comma-separated")
	fs.IntVar(&f.bootstrapExpect, "bootstrap-expect", 0, "size of a new cluster: the metadata log forms once this many nodes are alive; 0 joins an existing cluster")
	fs.StringVar(&f.replace, "replace", "", "ID of a dead member this new node takes the place of, streamed from the surviving replicas (with --seeds and --bootstrap-expect 0)")
	fs.StringVar(&f.zone, "zone", "", "failure domain; replicas go to distinct zones first")
	fs.BoolVar(&f.inMemory, "in-memory", false, "keep data and metadata in memory only (lost on restart)")
	fs.BoolVar(&f.localTimings, "local-timings", true, "fast failure detection and elections, for nodes on one machine or rack")
	fs.DurationVar(&f.tunerInterval, "tuner-interval", def.TunerInterval, "how often the metadata leader decides for each adaptive keyspace")
	fs.DurationVar(&f.healthWindow, "health-window", def.HealthWindow, "window of the metadata leader's gray-failure detector (3 bad windows flag a node, 3 good reinstate it); negative turns detection off")
	fs.DurationVar(&f.tunerDwell, "tuner-dwell", 0, "least time between two cost-saving changes of a keyspace's configuration (0: the tuner's default, 2m)")
	fs.DurationVar(&f.unsafeTunerForce, "unsafe-tuner-force", 0, "with --unsafe-test-hooks: move adaptive keyspaces between safe configurations at this interval, for tests of transitions under faults")
	fs.BoolVar(&f.unsafeTestHooks, "unsafe-test-hooks", false, "serve fault-injection hooks under /unsafe/ on --http-addr (clock skew, slow replies, dropped writes), for the Jepsen harness; never in production")
	fs.IntVar(&f.maxKeySize, "max-key-size", def.MaxKeySize, "largest key accepted, in bytes; a longer one is refused with InvalidArgument")
	fs.IntVar(&f.maxValueSize, "max-value-size", def.MaxValueSize, "largest value accepted, in bytes; a larger one is refused with InvalidArgument before it is read into memory")
	fs.DurationVar(&f.configLease, "config-lease", def.ConfigLease, "how long the node serves adaptive keyspaces with a quorum floor after it last confirmed their configuration with the metadata leader; every node of a cluster must use the same value")
	fs.IntVar(&f.maxHints, "max-hints", def.MaxHints, "most hints (writes held for replicas that are down) kept on disk, all replicas together; beyond it writes for a down replica are left to repair")
	fs.DurationVar(&f.maxHintWindow, "max-hint-window", def.MaxHintWindow, "how long a hint is kept undelivered, and how long a replica may be unreachable and still get hints; past it the replica needs a repair")
	fs.IntVar(&f.maxInflight, "max-inflight", node.DefaultMaxInflight, "client requests the node coordinates at once; past it a request is refused at once with RESOURCE_EXHAUSTED (OVERLOADED) and a retry-after hint; -1 for no bound")
	fs.DurationVar(&f.antiEntropyInterval, "anti-entropy-interval", def.AntiEntropyInterval, "how often the metadata leader runs an anti-entropy pass (Merkle trees) of each keyspace; 0 disables scheduled passes")
	fs.Int64Var(&f.antiEntropyRate, "anti-entropy-rate", def.AntiEntropyRate, "bytes per second each node may send in a scheduled anti-entropy pass; 0 for no limit")
	fs.Int64Var(&f.streamRate, "stream-rate", def.StreamRate, "bytes per second the stream of a topology change (join, decommission, remove, replace) reads from the current replicas, when this node drives it as metadata leader; 0 for no limit")
	fs.IntVar(&f.gcPercent, "gc-percent", defaultGCPercent, "Go garbage collector target (GOGC) for the node process; the GOGC environment variable wins when set, and GOMEMLIMIT caps memory as usual")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.configFile, configFlag, "", "YAML file of settings, one key per flag (e.g. \"data-dir: /var/lib/adaptkv\"); a flag or an "+envPrefix+"<FLAG> variable overrides the file, an unknown key is an error")
	fs.StringVar(&f.trace, "trace", node.TraceOff, "record OpenTelemetry spans of every gRPC call the node serves and of its calls to replicas: stdout (JSON on standard output) or otlp (OTLP/gRPC to --trace-endpoint); off when empty")
	fs.StringVar(&f.traceEndpoint, "trace-endpoint", "", "host:port of the OTLP collector for --trace otlp (default: OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317)")
	fs.Float64Var(&f.traceSample, "trace-sample", 1, "share of new traces recorded with --trace, in (0, 1]; a call whose caller's trace is sampled is always recorded")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", defaultDrainTimeout, "on SIGTERM or SIGINT, how long the node may drain (turn not-ready, let clients move away, finish requests, flush) before it stops anyway")
	return cmd
}

// The node's live Go heap is small (data lives in pebble's files and block
// cache) while the request path allocates steadily, so with Go's default
// GOGC of 100 the collector runs many times a second under load; each cycle
// also shrinks the gRPC workers' stacks, which then grow again. Profiles of
// YCSB C at one showed the mark workers at 10% and stack copying at 7% of a
// node's CPU. A larger target trades some tens of MiB of heap for fewer
// cycles (BENCHMARKS.md has the figures).
const (
	defaultGCPercent = 400
	minGCPercent     = 50
	maxGCPercent     = 5000
)

// config builds the node configuration; a problem with the flags is a usage
// error.
func (f *nodeFlags) config() (node.Config, error) {
	cfg := node.DefaultConfig()
	if f.localTimings {
		cfg = node.DefaultLocalConfig()
	}
	cfg.ID, cfg.DataDir, cfg.Zone, cfg.InMemory = f.id, f.dataDir, f.zone, f.inMemory
	cfg.GRPCAddr, cfg.GossipAddr, cfg.RaftAddr, cfg.HTTPAddr = f.grpcAddr, f.gossipAddr, f.raftAddr, f.httpAddr
	cfg.Seeds, cfg.BootstrapExpect, cfg.Replace = f.seeds, f.bootstrapExpect, f.replace
	cfg.UnsafeTestHooks, cfg.Pprof = f.unsafeTestHooks, f.pprof
	cfg.TunerInterval, cfg.TunerDwell = f.tunerInterval, f.tunerDwell
	cfg.UnsafeTunerForce = f.unsafeTunerForce
	cfg.HealthWindow = f.healthWindow
	cfg.MaxKeySize, cfg.MaxValueSize = f.maxKeySize, f.maxValueSize
	cfg.ConfigLease = f.configLease
	if f.configLease <= 0 {
		return cfg, usagef("--config-lease %v: must be positive", f.configLease)
	}
	if f.maxHints < 1 {
		return cfg, usagef("--max-hints %d: want at least 1", f.maxHints)
	}
	if f.maxHintWindow <= 0 {
		return cfg, usagef("--max-hint-window %v: want a positive duration, e.g. 3h", f.maxHintWindow)
	}
	cfg.MaxHints, cfg.MaxHintWindow = f.maxHints, f.maxHintWindow
	cfg.MaxInflight = f.maxInflight
	if f.antiEntropyInterval < 0 {
		return cfg, usagef("--anti-entropy-interval %v: must not be negative (0 disables scheduled passes)", f.antiEntropyInterval)
	}
	if f.antiEntropyRate < 0 {
		return cfg, usagef("--anti-entropy-rate %d: must not be negative (0 for no limit)", f.antiEntropyRate)
	}
	cfg.AntiEntropyInterval, cfg.AntiEntropyRate = f.antiEntropyInterval, f.antiEntropyRate
	if f.streamRate < 0 {
		return cfg, usagef("--stream-rate %d: must not be negative (0 for no limit)", f.streamRate)
	}
	cfg.StreamRate = f.streamRate

	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return cfg, usagef("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, opts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	default:
		return cfg, usagef("--log-format %q: want text or json", f.logFormat)
	}
	if f.gcPercent < minGCPercent || f.gcPercent > maxGCPercent {
		return cfg, usagef("--gc-percent %d: want %d to %d", f.gcPercent, minGCPercent, maxGCPercent)
	}
	if f.maxInflight == 0 || f.maxInflight < -1 {
		return cfg, usagef("--max-inflight %d: want a positive bound, or -1 for none", f.maxInflight)
	}
	if f.id == "" {
		return cfg, usagef("--id is required: a name for the node, unique in the cluster (e.g. n1)")
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageErr(err)
	}
	return cfg, nil
}

// certReloadInterval is how often a node checks its certificate files for
// a change; SIGHUP reloads at once.
const certReloadInterval = 10 * time.Second

// nodeSecurity loads the node's certificates from --certs-dir, or returns
// nil with --insecure. A node with neither does not start: running
// plaintext by accident is the mistake secure-by-default exists to
// prevent.
func (a *app) nodeSecurity() (*security.Material, error) {
	if a.insecure {
		if a.certsDir != "" {
			return nil, usagef("--insecure and --certs-dir %s: choose one", a.certsDir)
		}
		return nil, nil
	}
	if a.certsDir == "" {
		return nil, usagef("no certificates: a node needs --certs-dir (or %s) holding ca.crt, node.crt and node.key; make them with `adaptkv cert create-ca` and `adaptkv cert create-node --host <its addresses>`, or run with --insecure (plaintext, unauthenticated) on a trusted machine only",
			envName("certs-dir"))
	}
	m, err := security.LoadNode(a.certsDir)
	if err != nil {
		return nil, usageErr(fmt.Errorf("--certs-dir %s: %w (make the node certificate with `adaptkv cert create-node --certs-dir %s --host <its addresses>`)", a.certsDir, err, a.certsDir))
	}
	return m, nil
}

// runNode runs a node until SIGINT or SIGTERM (a restart: the node keeps
// its place on the ring), then drains it within drainTimeout; or until it
// has been decommissioned, then stops it within nodeStopTimeout.
func runNode(ctx context.Context, cfg node.Config, drainTimeout time.Duration) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("node %s did not start: %w", cfg.ID, err)
	}
	if m := cfg.Security; m != nil {
		cfg.Logger.Info("secure: mutual TLS", "certs_dir", m.Dir(), "expires", m.NotAfter(), "ca_expires", m.CANotAfter())
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go m.Watch(wctx, certReloadInterval, cfg.Logger)
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-wctx.Done():
					return
				case <-hup:
				}
				if err := m.Reload(); err != nil {
					cfg.Logger.Error("SIGHUP: certificate reload failed; keeping the certificates in use", "dir", m.Dir(), "err", err)
					continue
				}
				cfg.Logger.Info("SIGHUP: certificates reloaded", "dir", m.Dir(), "expires", m.NotAfter())
			}
		}()
	}
	select {
	case <-ctx.Done():
	case <-n.Left():
		// Decommissioned: the node has left the cluster and has nothing
		// more to serve or drain.
		stop()
		cfg.Logger.Info("decommissioned, stopping", "timeout", nodeStopTimeout)
		sctx, cancel := context.WithTimeout(context.Background(), nodeStopTimeout)
		defer cancel()
		if err := n.Stop(sctx); err != nil {
			return fmt.Errorf("node %s stopped with errors: %w", cfg.ID, err)
		}
		return nil
	}
	// A second signal now kills the process the default way, for an
	// operator who does not want to wait.
	stop()
	cfg.Logger.Info("signal received, draining", "timeout", drainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := n.Drain(dctx); err != nil {
		return fmt.Errorf("node %s stopped with errors: %w", cfg.ID, err)
	}
	return nil
}

package node

import (
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/storage"
)

// Config configures a node. Start from DefaultConfig (or DefaultLocalConfig
// for clusters on one machine) and set ID, DataDir and the addresses.
type Config struct {
	// ID names the node in the cluster; it must be unique and stable across
	// restarts (its data, hints and Raft identity follow it).
	ID string
	// Zone is an optional failure domain; replicas of a key go to distinct
	// zones first.
	Zone string
	// DataDir holds the node's pebble store, hints and metadata log.
	DataDir string
	// InMemory keeps data and metadata in memory only (google/btree engine):
	// a restart loses the node's replicas, which then come back through
	// hints and read repair.
	InMemory bool
	// StorageFS, when set, is the filesystem the data engine lives on
	// instead of the operating system's (the metadata log stays on disk).
	// For tests: a storage.PowerCutFS simulates losing power.
	StorageFS storage.FS

	// GRPCAddr is the host:port of the client, admin and peer gRPC API.
	// Port 0 picks a free port. Outgoing peer connections leave from its host.
	GRPCAddr string
	// GossipAddr is the host:port of memberlist (UDP and TCP).
	GossipAddr string
	// RaftAddr is the host:port of the metadata log's Raft transport.
	RaftAddr string
	// HTTPAddr serves /metrics and /healthz (and /debug/pprof with Pprof);
	// empty disables it.
	HTTPAddr string
	// Pprof serves Go's profiler under /debug/pprof on HTTPAddr. Off by
	// default: the HTTP address is plaintext and unauthenticated, and a
	// profile exposes the process's memory and can stall it.
	Pprof bool

	// Security is the node's TLS material (security.LoadNode of its
	// certificate directory): mutual TLS 1.3 on the gRPC API (client, admin
	// and peer services) and on the Raft transport, with rotated
	// certificates picked up without a restart. Nil runs the node
	// insecure: plaintext and unauthenticated, which the `adaptkv node`
	// command allows only with --insecure.
	Security *security.Material
	// TokenTTL is how long a token from Admin.Login is accepted; default
	// DefaultTokenTTL (1 h). Shorter limits what a leaked token is worth,
	// at the price of more logins (each a bcrypt check on a node).
	TokenTTL time.Duration

	// TracerProvider, when set, records OpenTelemetry spans: one for each
	// gRPC call the node serves (a child of the caller's span when the call
	// carries a W3C traceparent) and one for each call to a replica, so a
	// trace follows a client request through the coordinator's fan-out.
	// Nil (the default) records nothing and costs nothing. See
	// NewTracerProvider (`--trace`).
	TracerProvider trace.TracerProvider

	// Seeds are gossip addresses of existing members to join.
	Seeds []string
	// BootstrapExpect is the number of nodes that form a new cluster: once a
	// node without metadata state sees that many members, the first five of
	// them by ID bootstrap the metadata log as its voters. 0 means join an
	// existing cluster and wait to be added to the log by its leader. The
	// nodes of one new cluster must all be given the same value.
	BootstrapExpect int
	// Replace is the ID of a dead member this node takes the place of
	// (`--replace`): Start asks the cluster to replace it in one topology
	// change and fails with ErrReplaceRefused if the cluster will not. Only
	// with Seeds and BootstrapExpect 0.
	Replace string
	// DefaultReplicationFactor is the RF of the "default" keyspace that the
	// first metadata leader creates: min(3, BootstrapExpect) when 0.
	DefaultReplicationFactor int

	// MaxKeySize is the largest key accepted, in bytes. Default 4 KiB, as
	// etcd-class stores limit keys to a few KiB so that keys stay cheap to
	// compare, index and gossip about.
	MaxKeySize int
	// MaxValueSize is the largest value accepted, in bytes. Default 1 MiB,
	// the limit users know from etcd (1.5 MiB requests) and DynamoDB
	// (400 KB): values beyond it belong in blob storage. gRPC messages over
	// MaxValueSize+MaxKeySize plus 64 KiB are refused before they are read
	// into memory.
	MaxValueSize int
	// MaxScanLimit caps a scan's limit; 0 in a request means DefaultScanLimit.
	MaxScanLimit     int
	DefaultScanLimit int

	// MaxInflight bounds the client requests (get, put, delete, scan) this
	// node coordinates at once; a request past it is refused at once with
	// RESOURCE_EXHAUSTED (reason OVERLOADED) and a retry-after hint, which
	// the SDK backs off on. 0 means DefaultMaxInflight; negative disables
	// the bound. By Little's law a node that serves X requests/s at its
	// peak holds about X × latency of them in flight: a bound near that
	// keeps the peak's throughput, and anything it admits waits at most
	// bound / X. Why not smaller? Bursts that the node could absorb would be
	// refused. Why not larger? Requests past the peak's concurrency only add
	// queueing to everyone's latency (BENCHMARKS.md, overload). The
	// refusal states the bound (ErrorInfo metadata max_inflight), and the
	// SDK keeps its window of requests in flight at this node within it,
	// queueing the rest in the client (client.Config.MaxInflightPerNode),
	// so one client with many callers waits instead of being refused.
	MaxInflight int

	// MaxHints bounds the hints a coordinator keeps for down replicas (all
	// replicas together). Default 1,000,000: at 1 KiB each that is 1 GiB of
	// disk; beyond it writes for a down replica are left to read repair.
	// 0 means the default.
	MaxHints int
	// MaxHintWindow is how long a hint is kept undelivered, and how long a
	// replica may stay unreachable and still be hinted; past it the replica
	// needs a repair (see replication.HintOptions). Default 3 h
	// (replication.DefaultMaxHintWindow); 0 means the default.
	MaxHintWindow time.Duration
	// HintInterval is how often hints are tried for replicas that are alive.
	HintInterval time.Duration
	// TombstoneGrace is how long a delete's tombstone is kept. It must exceed
	// the time a replica can be down and still be repaired by hints; default
	// 24 h. Cassandra's gc_grace_seconds defaults to 10 days because its
	// repair runs weekly; adaptkv delivers hints within seconds of a return.
	TombstoneGrace time.Duration
	// ReplicaTimeout bounds one replica request (see replication.Config).
	ReplicaTimeout time.Duration
	// ReadRepairChance is the share of reads that ask every replica and
	// repair the stale ones in the background (see replication.Config);
	// 0 means the default, replication.DefaultReadRepairChance. Adaptive
	// keyspaces use replication.ProbeReadRepairChance whatever this says.
	ReadRepairChance float64
	// LocalTimings selects fast failure detection and Raft elections, for
	// clusters whose nodes share a machine or a rack.
	LocalTimings bool
	// Vnodes per node on the ring; all nodes must agree. Default
	// ring.DefaultVnodes.
	Vnodes int

	// TunerInterval is how often the metadata leader decides for each
	// adaptive keyspace. Default 5s: long enough to gather hundreds of
	// samples per interval at modest load, short enough to react within
	// seconds to a replica that slows down.
	TunerInterval time.Duration
	// HealthWindow is the gray-failure detector's window: how often the
	// metadata leader gathers every coordinator's per-replica round trips
	// and failures and judges each node against its peers
	// (replication/health). Default DefaultHealthWindow; negative turns
	// detection off (flags already in the metadata log still apply).
	HealthWindow time.Duration
	// HealthFlagAfter, when positive, is the consecutive bad windows that
	// flag a node and good ones that reinstate it (default 3).
	HealthFlagAfter int
	// TunerDwell is the least time between two configuration changes of a
	// keyspace that are made only to save cost (stepping back to a safer
	// configuration never waits). 0 means the tuner's default, 2 minutes.
	TunerDwell time.Duration

	// ConfigLease is how long a node serves fenced keyspaces (adaptive
	// keyspaces with a quorum floor) after it last confirmed with the
	// metadata leader that it holds their current configuration; the
	// leader waits about this long before a configuration step that relies
	// on a node it cannot reach having left the step before (see
	// replication/fence.go). Default 4s: a node cut off from the leader
	// stops serving those keyspaces within 4 s, and a tuner step with a
	// node down waits about 4.5 s. At 2 s a busy node (a loaded test
	// machine) sometimes renewed too late and refused requests it could
	// serve. All nodes must use the same value: the leader waits out its
	// own, and a node holding a longer lease would outlast that wait.
	ConfigLease time.Duration

	// AntiEntropyInterval is how often the metadata leader runs an
	// anti-entropy pass (merkle method) of each keyspace; 0 disables the
	// schedule. Default DefaultAntiEntropyInterval (1 h). Shorter repairs
	// replicas that missed writes (past the hint window, or dropped by a
	// full hint store) sooner, at the cost of a scan of every key on every
	// node per pass.
	AntiEntropyInterval time.Duration
	// AntiEntropyRate bounds the bytes per second each node sends in a
	// scheduled pass; 0 means no limit. Default DefaultAntiEntropyRate
	// (4 MiB/s).
	AntiEntropyRate int64

	// StreamRate bounds the bytes per second the stream of a topology
	// change (join, decommission, removal, replacement) reads from the
	// current replicas, on the node that drives it (the metadata leader);
	// 0 means no limit. Default DefaultStreamRate (64 MiB/s).
	StreamRate int64
	// StreamCheckpoint is how often the stream's progress is written to
	// the metadata log, from where a new driver resumes it. 0 means
	// DefaultStreamCheckpoint (2 s).
	StreamCheckpoint time.Duration

	// UnsafeTestHooks serves fault-injection hooks (clock skew, slow
	// replies, link latency, dropped writes) under /unsafe/ on HTTPAddr, for
	// the Jepsen harness and experiments. Never enable it in production.
	UnsafeTestHooks bool
	// UnsafeTunerForce, with UnsafeTestHooks, makes the metadata leader move
	// every adaptive keyspace to another safe configuration at this interval
	// whatever the tuner's model says (as POST /unsafe/tuner-force does), so
	// that tests exercise configuration changes under faults. It survives
	// restarts, which the HTTP hook does not.
	UnsafeTunerForce time.Duration

	// Logger receives the node's structured logs; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults for nodes on a network.
func DefaultConfig() Config {
	return Config{
		GRPCAddr:         "127.0.0.1:7400",
		GossipAddr:       "127.0.0.1:7401",
		RaftAddr:         "127.0.0.1:7402",
		HTTPAddr:         "127.0.0.1:7403",
		MaxKeySize:       4 << 10,
		MaxValueSize:     1 << 20,
		MaxScanLimit:     10000,
		DefaultScanLimit: 1000,
		MaxHints:         replication.DefaultMaxHints,
		MaxHintWindow:    replication.DefaultMaxHintWindow,
		MaxInflight:      DefaultMaxInflight,
		HintInterval:     time.Second,
		TombstoneGrace:   24 * time.Hour,
		ReplicaTimeout:   2 * time.Second,
		Vnodes:           ring.DefaultVnodes,
		TunerInterval:    5 * time.Second,
		HealthWindow:     DefaultHealthWindow,
		ConfigLease:      4 * time.Second,

		AntiEntropyInterval: DefaultAntiEntropyInterval,
		AntiEntropyRate:     DefaultAntiEntropyRate,
		StreamRate:          DefaultStreamRate,
		StreamCheckpoint:    DefaultStreamCheckpoint,
	}
}

// DefaultMaxInflight is Config.MaxInflight's default, sized on 2-core
// machines (BENCHMARKS.md, overload): a 3-node cluster reaches its peak
// with 32 closed-loop clients, about 11 requests in flight per node, and
// a bound of three times that keeps the peak's throughput through bursts
// and uneven routing (hot keys) while capping the wait of what it admits.
const DefaultMaxInflight = 32

// DefaultLocalConfig returns DefaultConfig with timings for nodes on one
// machine: failures detected in about two seconds, hints tried every 250 ms.
func DefaultLocalConfig() Config {
	c := DefaultConfig()
	c.LocalTimings = true
	c.HintInterval = 250 * time.Millisecond
	return c
}

var idPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	if !idPattern.MatchString(c.ID) {
		return fmt.Errorf("node id %q: want 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", c.ID)
	}
	if c.DataDir == "" && !c.InMemory {
		return fmt.Errorf("node %s: a data directory is required unless the node runs in memory", c.ID)
	}
	for name, a := range map[string]string{"grpc": c.GRPCAddr, "gossip": c.GossipAddr, "raft": c.RaftAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%s address %q: %w", name, a, err)
		}
	}
	if c.BootstrapExpect < 0 {
		return fmt.Errorf("bootstrap-expect %d is negative", c.BootstrapExpect)
	}
	if c.Replace != "" && (c.Replace == c.ID || len(c.Seeds) == 0 || c.BootstrapExpect != 0) {
		return fmt.Errorf("replace %q: a node replacing a dead member joins an existing cluster under its own ID (seeds, bootstrap-expect 0)", c.Replace)
	}
	if c.ConfigLease < 0 {
		return fmt.Errorf("config lease %v is negative", c.ConfigLease)
	}
	if c.AntiEntropyInterval < 0 || c.AntiEntropyRate < 0 {
		return fmt.Errorf("anti-entropy interval %v and rate %d bytes/s must not be negative", c.AntiEntropyInterval, c.AntiEntropyRate)
	}
	if c.StreamRate < 0 || c.StreamCheckpoint < 0 {
		return fmt.Errorf("stream rate %d bytes/s and stream checkpoint %v must not be negative", c.StreamRate, c.StreamCheckpoint)
	}
	if c.MaxHints < 0 || c.MaxHintWindow < 0 {
		return fmt.Errorf("max hints %d and max hint window %v must not be negative", c.MaxHints, c.MaxHintWindow)
	}
	if c.MaxKeySize < 1 || c.MaxValueSize < 0 {
		return fmt.Errorf("max key size %d and max value size %d must be positive", c.MaxKeySize, c.MaxValueSize)
	}
	return nil
}

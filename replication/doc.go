// Package replication is adaptkv's data path: the coordinator's read and write
// paths over a keyspace's replicas, the replica side of the peer protocol,
// read repair and hinted handoff. Placement (api/ring) and the quorum
// arithmetic (sub-package quorum) are pure; this package adds the I/O, and
// talks to other nodes only through the Transport interface that the node
// package implements over gRPC. The anti-entropy pass is its sub-package
// antientropy.
//
// # Shape: a pure core and a shell
//
// Each client operation is a state machine (core.go, core_write.go,
// core_read.go, core_scan.go): a value that takes events (a plan of the
// key's replicas, a replica's reply, the hedge timer, the client's
// deadline, a hint batch stored, a lease checked, a catch-up done) and
// returns effects (requests to send, a timer to arm, hints to store, a lease
// to check, an epoch to catch up with, the answer), with no goroutines,
// clocks, random sources or locks (TestCoreIsPure holds it to that). The
// Coordinator (coordinator.go, shell.go) is the shell, as the code acting on
// etcd-io/raft's Ready is: it plans attempts, sends over the Transport,
// arms timers, stores hints, observes latencies and clocks, and drives an op
// on after its answer until the op finishes. The scripts in testdata/core
// are the core's specification (TestCoreDataDriven); TestWriteOpProperties
// and TestReadOpProperties drive random schedules against a model.
//
// # Write path
//
// The coordinator assigns the write a version from its hybrid logical clock,
// looks up the key's preference list of N replicas on the ring, and sends the
// record to every replica that gossip reports alive, in parallel. It answers
// the client as soon as W replicas have acknowledged; a replica that is down,
// fails or is slow gets a hint: the mutation stored durably on the
// coordinator and delivered once gossip shows the replica alive again. Hints
// are stored once some replica has acknowledged the write, and those of the
// replicas dead or failed by then are on disk before the client is answered
// (see writeOp). Hints never count towards W, and they expire after the
// hint window (HintOptions.MaxWindow). When fewer than W replicas are alive,
// nothing is sent (ErrNotEnoughReplicas, a definite failure); when replicas
// were asked and fewer than W acknowledged, the outcome is unknown
// (ErrQuorumNotReached).
//
// # Versions
//
// Every version the coordinator sees moves its clock past it: the records
// its replica stores, read replies and digests (late ones included), values
// fetched in a second round, scan replies, and the versions in repair
// digests. So a write coordinated after a read of version v gets a version
// above v, whatever the nodes' physical clocks say, and last writer wins
// keeps it.
//
// # Read path
//
// The coordinator asks the R best replicas (itself first, then by observed
// latency), the next one when one fails, and every alive replica on the
// read-repair share of reads; it answers once R have replied, with the
// greatest version among them. Only the first replica asked returns the
// value, the others digests. When those R disagree, it writes the winner
// to the stale ones before answering (foreground read repair), so a quorum
// read that returned a version leaves it on a quorum. Replies that arrive
// after the answer are compared in the background and stale replicas are
// repaired then (background read repair).
//
// # Scans
//
// A scan asks every alive node for its records in the key range and answers
// only if every token range of the ring has R of its replicas among the
// nodes that answered (keys are placed by hash, so any range may hold keys
// of the scan); otherwise it fails naming the ranges it could not cover.
//
// # Configuration epochs
//
// Every replica request carries the epoch of the keyspace configuration the
// coordinator acted under. A replica that knows a newer epoch refuses; the
// coordinator waits until its own metadata has caught up with that epoch and
// runs the operation again with the same version, which replicas that
// already stored it ignore (last writer wins makes the retry idempotent).
// Any refusal starts that catch-up, also when the request won its quorum
// without the refusing replica, and requests planned meanwhile wait for it
// (up to epochRefreshWait), so that they go out at the new epoch.
//
// # Contract
//
// replication owns the Coordinator, the Replica (the peer protocol's server
// side), the HintStore, the hybrid logical Clock, the sentinel errors the
// node maps to status reasons (ErrNotEnoughReplicas, ErrQuorumNotReached,
// ErrStaleEpoch, ...) and the conversions between storage records and peer
// messages. It imports api/kvpb (the peer messages), api/ring (placement),
// its sub-package quorum, and storage; never gRPC, node, membership, tuner or
// pebble. Everything it needs of its surroundings is an interface declared
// here (Transport, Topology, Keyspaces, Observer, Fence) and supplied by the
// node.
//
// Coordinator, Replica, HintStore and Clock are safe for concurrent use, and
// every interface the package consumes must be too: all are called from the
// request path of many requests at once. Observer's methods run inline and
// must not block. The coordinator may leave replica requests running after
// it has answered (the slow replicas finish in the background, each bounded
// by Config.ReplicaTimeout); HintStore.Run owns its delivery goroutines
// and returns only when they have ended. An op of the core is driven by one
// goroutine at a time (the shell's); its effects are the only way it acts.
package replication

import (
	"context"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/replication/quorum"
)

// Transport carries peer requests to the replica with the given node ID. The
// node package implements it over gRPC, calling the local Replica directly
// when the target is the node itself. Implementations must be safe for
// concurrent use.
type Transport interface {
	Write(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error)
	Read(ctx context.Context, to string, req *kvpb.ReplicaReadRequest) (*kvpb.ReplicaReadResponse, error)
	Scan(ctx context.Context, to string, req *kvpb.ReplicaScanRequest) (*kvpb.ReplicaScanResponse, error)
	Hint(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error)
	// Paxos carries one acceptor message of per-key Paxos (Replica.Paxos).
	Paxos(ctx context.Context, to string, req *kvpb.PaxosRequest) (*kvpb.PaxosResponse, error)
}

// A PaxosPoster is a Transport that can send an acceptor message nobody
// waits for: the coordinator posts the commit of a chosen proposal, sent
// after the client's answer, when its Transport implements it. PostPaxos
// queues req for another node (never this one) and returns at once; the
// message may go out with later ones, and it gets no reply. It is dropped
// unsent at ctx's deadline, or the transport's own bound when ctx has none. It returns
// ErrNotPosted when the message should be sent with Paxos instead (the
// peer does not serve batched streams, or a test hook delays the link).
// Losing a posted commit is safe: a later round or linearizable read
// completes the proposal (see "# Thrifty proposals" in paxos/doc.go).
type PaxosPoster interface {
	PostPaxos(ctx context.Context, to string, req *kvpb.PaxosRequest) error
}

// Topology is the coordinator's view of the cluster. Implementations must be
// safe for concurrent use and cheap: they are called on every request.
type Topology interface {
	// Ring returns the current ring: every member that has not left the
	// cluster, alive or not, so that a down replica keeps its place (and gets
	// hints) instead of shifting keys to other nodes.
	Ring() *ring.Ring
	// Alive reports whether gossip currently considers the node alive.
	Alive(id string) bool
}

// PendingTopology is a Topology whose membership is changing: Pending
// returns the ring the change leads to, nil when none is in progress. A
// key's replicas on that ring that are not among its current ones are
// pending replicas, like those a growing N adds (KeyspaceConfig.PendingN):
// every write goes to them too and is acknowledged only once they all have
// it, without counting them towards W; reads use the current replicas.
type PendingTopology interface {
	Topology
	Pending() *ring.Ring
}

// KeyspaceConfig is what the data path needs of a keyspace's configuration.
type KeyspaceConfig struct {
	Name string
	// N is the replication factor: the replicas that count in read and
	// write quorums.
	N int
	// PendingN, when larger than N, is the replication factor the keyspace
	// is growing to: writes and deletes go to the first PendingN replicas
	// of the key's preference list; only the first N count towards W, but
	// a write is acknowledged only once every added replica has it too (one
	// down refuses the write before anything is sent; one failing leaves a
	// hint and fails the write), and reads ask only the first N. It is in
	// force while a repair pass streams the existing data to the added
	// replicas, so that nothing acknowledged meanwhile is missing from them
	// when N is raised, not even as a hint (tuner.Step.RequiresStreaming).
	// Zero, or any value ≤ N, means none.
	PendingN int
	// Default is the level used when a request names none; R and W are used
	// when Default is quorum.Custom.
	Default quorum.Level
	R, W    int
	// Epoch is the metadata log index of the configuration.
	Epoch uint64
	// ReadAll makes reads ask every alive replica rather than the R nearest
	// (a read path the tuner may choose).
	ReadAll bool
	// HedgeAfter, when positive, sends a read to one more replica if the
	// ones asked have not answered R times within it (The Tail at Scale's
	// hedged requests).
	HedgeAfter time.Duration
	// ReadRepairChance, when not zero, replaces the coordinator's
	// Config.ReadRepairChance for this keyspace (negative: never).
	ReadRepairChance float64
	// Fenced makes the coordinator serve the keyspace only while its node
	// holds a configuration lease (Config.Fence): the keyspace promises an
	// invariant across configuration changes (an adaptive keyspace with a
	// quorum floor promises R + W > N at every instant), which holds only
	// if no node still acts on a configuration the metadata leader has
	// moved past. See fence.go.
	Fenced bool
}

// Keyspaces is the coordinator's and replica's view of the metadata log.
type Keyspaces interface {
	// Keyspace returns the configuration this node has applied.
	Keyspace(name string) (KeyspaceConfig, bool)
	// WaitForIndex blocks until this node has applied the metadata log up to
	// index, or ctx ends.
	WaitForIndex(ctx context.Context, index uint64) error
	// Applied is the last metadata log index this node has applied.
	Applied() uint64
}

// Observer receives what the coordinator sees of each request, for the
// tuner. Every method is called inline on the request path, concurrently:
// implementations must only record (a few atomic adds) and never block.
type Observer interface {
	// ClientRead reports a client read that succeeded: its latency and, when
	// it returned a version, the age of that version (its write time to now).
	ClientRead(keyspace string, key []byte, latency time.Duration, age time.Duration, found bool)
	// ClientWrite reports a client write that succeeded.
	ClientWrite(keyspace string, key []byte, latency time.Duration)
	// Replica reports one replica request's round trip (ok) or failure.
	// rank is the replica's place in the coordinator's order, nearest
	// first (0 is the coordinator itself when it is a replica): the tuner
	// models latencies as each coordinator sees them, since the SDK spreads
	// requests over the replicas.
	Replica(keyspace string, rank int, write bool, rtt time.Duration, ok bool)
	// Probe reports a read whose answer was compared with every replica
	// (the read-repair share of reads): stale when some replica held a newer
	// version than the one returned, behind when some held an older one.
	Probe(keyspace string, stale, behind bool)
}

// NodeObserver is an Observer that also learns which node each replica
// request went to: when the Observer implements it, the coordinator calls
// ReplicaAt instead of Replica. The tuner records by rank, but a request
// to a node the health detector has flagged under that node's own ID:
// coordinators rank a flagged node last, so by rank alone the last rank
// would mix its latencies with those of the healthy replicas ranked last
// for the keys it does not hold.
type NodeObserver interface {
	Observer
	// ReplicaAt is Replica with the node the request went to.
	ReplicaAt(keyspace string, rank int, node string, write bool, rtt time.Duration, ok bool)
}

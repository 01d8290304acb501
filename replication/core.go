package replication

// The coordinator's protocol core.
//
// Each client operation (a write, a read, a scan) is a value, an op, that
// decides everything about the operation and does nothing: it takes events
// (a plan of the key's replicas, a replica's reply, the hedge timer firing,
// the client's deadline, a hint batch stored, a lease checked, a catch-up
// done) through Step, and returns Effects (requests to send, a timer to arm,
// hints to store, a lease to check, an epoch to catch up with, the answer
// for the client). The ops have no goroutines, no clock and no random
// source: what a decision needs of them arrives as data in an event (the
// plan carries the ranked replicas and the read-repair draw; a read gets
// its start time and the write acknowledgement delay as values). So a test
// can script any interleaving, replies reordered, lost or late, timers
// firing early, and check every effect (testdata/*.txt, core_test.go), and a
// property test can drive random schedules against a reference model.
//
// The shell (coordinator.go) owns the I/O: it plans attempts (metadata
// waits, the ring, gossip's view, the ranking), sends the requests over the
// Transport, arms the timers, stores the hints, observes latencies and
// clocks, and keeps driving an op after the client has its answer, until the
// op says it is finished (late replies become hints or background read
// repair). This is etcd-io/raft's split between the Node state machine and
// the code that acts on its Ready.
//
// The files core*.go must stay free of go statements, clocks and random
// sources; TestCoreIsPure enforces it.

import (
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// opPlan is one attempt's view of a key, computed by the shell: the
// keyspace's configuration, the policy, and the key's replicas split by
// gossip's view.
type opPlan struct {
	ks  KeyspaceConfig
	pol quorum.Policy
	// replicas is the preference list's first N, the replicas that count.
	replicas []string
	alive    []string
	dead     []string
	// ranked is alive in the coordinator's order: itself first, then by
	// observed latency.
	ranked []string
	// pendingAlive and pendingDead are the replicas beyond N that writes
	// also reach while the keyspace grows (KeyspaceConfig.PendingN); they
	// never count in a quorum.
	pendingAlive []string
	pendingDead  []string
	// readAll makes a read ask every alive replica: the keyspace's read
	// path, or the read-repair draw the shell made.
	readAll bool
	// ackDelay estimates how long after it is stamped a write to these
	// replicas is acknowledged (Coordinator.ackDelay), for a read's probe.
	ackDelay time.Duration
}

// sendKind is what a replica request asks for.
type sendKind uint8

const (
	sendWrite  sendKind = iota
	sendRead            // the full record
	sendDigest          // key, version and tombstone only
	sendScan
)

func (k sendKind) String() string {
	return [...]string{"write", "read", "digest", "scan"}[k]
}

// send is one replica request an op asks the shell to make.
type send struct {
	// id numbers the request within its op; the reply carries it back.
	id   int
	to   string
	kind sendKind
	// rank, when observe is set, is the replica's place in the
	// coordinator's order, which the shell reports to the tuner with the
	// request's round trip; the reads observed also feed the ranking.
	rank    int
	observe bool
	// inline lets the shell make this request on its own goroutine, after
	// the others of the same Effects are out: a local read that does not
	// wait on the network (a goroutine per local read was a quarter of a
	// node's CPU at `one`).
	inline bool
	// detached requests outlive the client's request, bounded by the
	// replica timeout only: writes and reads finish in the background and
	// their failures become hints or repairs. Scans are not detached.
	detached bool

	write *kvpb.ReplicaWriteRequest
	read  *kvpb.ReplicaReadRequest
	scan  *kvpb.ReplicaScanRequest
}

// reply is a replica's answer to a send, or the transport's error.
type reply struct {
	id    int
	err   error
	write *kvpb.ReplicaWriteResponse
	read  *kvpb.ReplicaReadResponse
	scan  *kvpb.ReplicaScanResponse
}

// hintBatch is a set of hints an op asks the shell to store durably, in
// one batch.
type hintBatch struct {
	id      int
	targets []string
	mut     *kvpb.Mutation
}

// eventKind says what happened.
type eventKind uint8

const (
	// evPlanned: the shell planned the attempt the op asked for (plan), or
	// could not (err).
	evPlanned eventKind = iota
	// evReply: a replica answered (reply).
	evReply
	// evHedge: the hedge timer armed by Effects.hedge fired.
	evHedge
	// evDeadline: the client's context ended (err is its error).
	evDeadline
	// evHintsStored: the hint batch hint was stored (or failed to be;
	// either way the op no longer waits for it).
	evHintsStored
	// evLeaseChecked: the lease check the op asked for ended (err nil: the
	// lease holds and the epoch has not moved).
	evLeaseChecked
	// evCaughtUp: the catch-up the op asked for ended (err nil: this node
	// has applied the epoch).
	evCaughtUp
)

// event is one input to an op.
type event struct {
	kind  eventKind
	plan  *opPlan
	scan  *scanPlan
	reply reply
	hint  int
	err   error
}

// effects is what an op asks of the shell after an event, in the manner
// of raft's Ready: everything in it is to be done, in this order: plan,
// sends, hints, hedge, lease check, catch-up; the answer may come with any
// of them.
type effects struct {
	// plan asks for the next attempt's plan (evPlanned).
	plan bool
	// sends are replica requests to make (evReply for each).
	sends []send
	// hints are hint batches to store (evHintsStored for each).
	hints []hintBatch
	// hedge, when positive, arms the hedge timer (evHedge).
	hedge time.Duration
	// checkLease asks whether the node still holds its configuration lease
	// at the epoch of ks, and has not moved past it (evLeaseChecked).
	checkLease *KeyspaceConfig
	// catchUp asks the shell to wait until the local metadata has applied
	// this epoch (evCaughtUp).
	catchUp uint64
	// noteEpoch, when non-zero, is a newer epoch a replica reported for
	// the keyspace: the shell starts catching up in the background.
	noteEpoch uint64
	// probe, when set, is the comparison of a read's answer with every
	// replica asked, for the tuner.
	probe *probe
	// done, when set, is the answer for the client; it comes once.
	done *answer
	// finished says the op wants no more events.
	finished bool
}

// merge appends e2's effects to e's.
func (e *effects) merge(e2 effects) {
	e.plan = e.plan || e2.plan
	e.sends = append(e.sends, e2.sends...)
	e.hints = append(e.hints, e2.hints...)
	if e2.hedge > 0 {
		e.hedge = e2.hedge
	}
	if e2.checkLease != nil {
		e.checkLease = e2.checkLease
	}
	e.catchUp = max(e.catchUp, e2.catchUp)
	e.noteEpoch = max(e.noteEpoch, e2.noteEpoch)
	if e2.probe != nil {
		e.probe = e2.probe
	}
	if e2.done != nil {
		e.done = e2.done
	}
	e.finished = e.finished || e2.finished
}

// probe is what a read that asked every replica found about the answer:
// stale, a newer version acknowledged before the read began existed;
// behind, some replica held an older one.
type probe struct {
	stale, behind bool
}

// answer is an op's answer for the client.
type answer struct {
	err     error
	receipt Receipt
	// observe says the operation succeeded and the tuner hears of it.
	observe bool
	// read's result.
	record storage.Record
	found  bool
	// scan's result.
	scan *ScanResult
}

// op is one client operation's state machine.
type op interface {
	// begin returns the op's first effects.
	begin() effects
	// step takes an event and returns what to do about it.
	step(ev event) effects
}

// maxEpochAttempts bounds how often one operation is run again after a
// replica reported a newer epoch: each retry waits for the local metadata to
// catch up, so a second refusal means the configuration is changing fast.
const maxEpochAttempts = 3

func indexOf(ids []string, id string) int {
	for i, x := range ids {
		if x == id {
			return i
		}
	}
	return -1
}

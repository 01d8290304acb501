package antientropy

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/adaptkv/adaptkv/replication"
)

// Defaults and bounds of a pass.
const (
	// DefaultPageSize is how many local records a node reads per page.
	// Why not smaller? Each page costs one digest round trip per replica.
	// Why not larger? A page is held in memory with its values.
	DefaultPageSize = 256
	// MaxPageSize bounds Options.PageSize.
	MaxPageSize = 10000
	// DefaultConcurrency is how many replicas one node compares with and
	// writes to at once.
	DefaultConcurrency = 4
	// MaxConcurrency bounds Options.Concurrency.
	MaxConcurrency = 64
	// DefaultProgressInterval is the least time between two progress
	// messages on the node's gRPC streams.
	DefaultProgressInterval = time.Second

	// DefaultMerkleDepth is the depth of a merkle pass's trees: 4096
	// leaves per range. Why not smaller? A leaf that differs costs a digest
	// of every record in it; at 100,000 records in one range, a leaf holds
	// about 24. Why not larger? Every level costs the descent a few hashes
	// per differing leaf, and a replica of many small ranges gains nothing.
	DefaultMerkleDepth = 12
	// MaxMerkleDepth bounds Options.MerkleDepth.
	MaxMerkleDepth = 20
	// merkleStep is how many levels one round of a comparison descends:
	// each differing node is asked about its 16 descendants four levels
	// down, so a tree of depth 12 takes four round trips.
	merkleStep = 4
	// maxCompareNodes bounds the node hashes in one comparison request
	// (about 10 bytes each), well within the peer's 4 MiB message limit.
	maxCompareNodes = 32 << 10

	// pushRecords and pushBytes bound one replica write of a pass: within
	// the peer's 4 MiB message limit, one group commit each. pushRecords
	// is the node's write batcher's bound (maxBatchMutations).
	pushRecords = 512
	pushBytes   = 2 << 20
	// rpcTimeout bounds one digest or write of a pass: generous, since a
	// write may carry megabytes and wait on an fsync.
	rpcTimeout = 30 * time.Second
	// attempts is how often a failed digest or write to a replica is tried
	// before the node gives up its part of the pass.
	attempts = 3
	// epochAttempts is how often a page is redone after a replica reported
	// a newer configuration epoch.
	epochAttempts = 3
)

// Methods of comparing replicas (Options.Method).
const (
	// MethodMerkle compares per range Merkle trees, top down, and sends
	// digests only for the records of the leaves that differ: a pass over
	// replicas that agree sends a few hashes per range.
	MethodMerkle = "merkle"
	// MethodDigest sends another replica a (key, version) digest of every
	// record it should hold.
	MethodDigest = "digest"
)

// Options tune a pass. The zero value takes every default.
type Options struct {
	// PageSize is the number of local records a node reads at once;
	// 0 means DefaultPageSize.
	PageSize int
	// Concurrency is the number of replicas a node works with at once;
	// 0 means DefaultConcurrency.
	Concurrency int
	// ReplicationFactor, when larger than the keyspace's N, makes the pass
	// fill the first ReplicationFactor members of each key's preference
	// list: the streaming step before N is raised. 0 means N; a value
	// below N is refused.
	ReplicationFactor int
	// AllowDown runs the pass over the alive nodes when some ring members
	// are down, instead of refusing. The down members are reported in
	// Report.Down and are not repaired.
	AllowDown bool
	// PushAll skips every comparison and pushes every record to every
	// other replica, whatever the Method. More traffic; kept to measure what
	// comparing saves.
	PushAll bool
	// Method is how a node compares its records with another replica's:
	// MethodMerkle (the default, "" means it) or MethodDigest.
	Method string
	// MerkleDepth is the depth of the merkle method's trees; 0 means
	// DefaultMerkleDepth.
	MerkleDepth int
	// PassID names the pass, so that replicas build their trees once per
	// pass and share them between its requests. Run sets it; a part run
	// without one builds a fresh index for every request it serves.
	PassID string
	// RateLimit bounds the bytes per second that each node's part sends
	// to other replicas (its requests: tree comparisons, digests, writes);
	// 0 means no limit. It paces the whole part, so a pass that finds much
	// to repair takes longer rather than crowding out client traffic.
	RateLimit int64
	// Exclusive refuses the pass, on any node, while another pass of the
	// same keyspace runs there, so that scheduled passes never overlap
	// (see ErrPassRunning). Passes without it are never refused.
	Exclusive bool
	// ProgressInterval is the least time between progress messages on the
	// node's gRPC streams (the progress callback of Run is not throttled);
	// 0 means DefaultProgressInterval.
	ProgressInterval time.Duration
}

// WithDefaults returns o with every zero field set to its default.
func (o Options) WithDefaults() Options {
	if o.PageSize == 0 {
		o.PageSize = DefaultPageSize
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = DefaultProgressInterval
	}
	if o.Method == "" {
		o.Method = MethodMerkle
	}
	if o.MerkleDepth == 0 {
		o.MerkleDepth = DefaultMerkleDepth
	}
	return o
}

// Validate refuses options out of their bounds (after WithDefaults) with an
// error that is a replication.ErrInvalidRequest and names the problem.
func (o Options) Validate() error {
	switch {
	case o.PageSize < 1 || o.PageSize > MaxPageSize:
		return invalidf("repair page size %d: want 1 to %d", o.PageSize, MaxPageSize)
	case o.Concurrency < 1 || o.Concurrency > MaxConcurrency:
		return invalidf("repair concurrency %d: want 1 to %d", o.Concurrency, MaxConcurrency)
	case o.ReplicationFactor < 0:
		return invalidf("repair replication factor %d: must not be negative", o.ReplicationFactor)
	case o.ProgressInterval < 0:
		return invalidf("repair progress interval %v: must not be negative", o.ProgressInterval)
	case o.RateLimit < 0:
		return invalidf("repair rate limit %d bytes/s: must not be negative", o.RateLimit)
	case o.Method != MethodMerkle && o.Method != MethodDigest:
		return invalidf("repair method %q: want %q or %q", o.Method, MethodMerkle, MethodDigest)
	case o.MerkleDepth < 1 || o.MerkleDepth > MaxMerkleDepth:
		return invalidf("repair merkle depth %d: want 1 to %d", o.MerkleDepth, MaxMerkleDepth)
	}
	return nil
}

// invalidError is a request a pass refuses as given. It is a
// replication.ErrInvalidRequest whose message is the problem alone, so that
// the status the node builds from it reads as before the sentinel.
type invalidError string

func (e invalidError) Error() string { return string(e) }
func (e invalidError) Unwrap() error { return replication.ErrInvalidRequest }

func invalidf(format string, args ...any) error { return invalidError(fmt.Sprintf(format, args...)) }

// ErrPassRunning refuses an exclusive pass's part on a node where another
// pass of the keyspace is running.
var ErrPassRunning = errors.New("antientropy: another pass of the keyspace is running")

// ErrIncomplete is what an *IncompleteError is: a pass that did not cover
// every node it had to.
var ErrIncomplete = errors.New("antientropy: repair incomplete")

// IncompleteError is a pass that did not cover every node it had to: it did
// not start because ring members were down (Down), or nodes could not
// complete their part (Failed). Error is the message for a person; running
// the pass again is safe.
type IncompleteError struct {
	Keyspace string
	// Down are the ring members that were down, sorted; set when the pass
	// did not start.
	Down []string
	// Failed are the nodes blamed for the failure, sorted: those that
	// failed for a reason of their own, not because the pass was stopped
	// after another's failure (all of them when every one was stopped).
	Failed []string
	msg    string
}

func (e *IncompleteError) Error() string { return e.msg }

// Unwrap makes errors.Is(err, ErrIncomplete) hold.
func (e *IncompleteError) Unwrap() error { return ErrIncomplete }

// Stats count a pass's work, on one node or summed over nodes.
type Stats struct {
	// KeysScanned is the number of local records walked, tombstones
	// included. Summed over nodes, a key counts once per node holding it.
	KeysScanned uint64
	// TombstonesScanned is how many of them were tombstones.
	TombstonesScanned uint64
	// DigestsSent is the number of (key, version) pairs compared with
	// another replica.
	DigestsSent uint64
	// RecordsPushed is the number of records written to a replica that
	// lacked them (with PushAll: every record to every other replica).
	RecordsPushed uint64
	// BytesPushed is the keys and values of the pushed records.
	BytesPushed uint64
	// RangesCompared is the number of (token range, other replica) pairs
	// whose trees were compared (merkle method); RangesDiffering how many
	// of them differed, LeavesDiffering the leaves that did.
	RangesCompared, RangesDiffering, LeavesDiffering uint64
	// HashesSent is the number of tree node hashes sent to other replicas.
	HashesSent uint64
	// BytesSent is the encoded size of the pass's requests to other
	// replicas and their responses (tree comparisons, digests and writes):
	// what the pass costs the network, framing aside.
	BytesSent uint64
	// RepairedNodes are the replicas that were sent at least one record,
	// sorted.
	RepairedNodes []string
	// Elapsed is the time the pass (or the node's part) has run.
	Elapsed time.Duration
}

// add sums o into s; RepairedNodes become the sorted union.
func (s *Stats) add(o Stats) {
	s.KeysScanned += o.KeysScanned
	s.TombstonesScanned += o.TombstonesScanned
	s.DigestsSent += o.DigestsSent
	s.RecordsPushed += o.RecordsPushed
	s.BytesPushed += o.BytesPushed
	s.RangesCompared += o.RangesCompared
	s.RangesDiffering += o.RangesDiffering
	s.LeavesDiffering += o.LeavesDiffering
	s.HashesSent += o.HashesSent
	s.BytesSent += o.BytesSent
	for _, id := range o.RepairedNodes {
		if i, found := slices.BinarySearch(s.RepairedNodes, id); !found {
			s.RepairedNodes = slices.Insert(s.RepairedNodes, i, id)
		}
	}
}

// Report is the state of a pass: passed to the progress callback while it
// runs, and returned, with Done set, when it completed.
type Report struct {
	Keyspace string
	// Epoch is the keyspace configuration the pass started under.
	Epoch uint64
	// ReplicationFactor is the number of replicas of each key the pass
	// filled.
	ReplicationFactor int
	// Nodes are the nodes running the pass; NodesDone those that completed
	// their part. Both sorted.
	Nodes, NodesDone []string
	// Down are ring members that were not alive and were skipped
	// (Options.AllowDown only).
	Down []string
	// Stats are summed over the nodes so far.
	Stats Stats
	// Done is set when every node completed its part.
	Done bool
}

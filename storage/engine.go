package storage

import (
	"context"
	"errors"
	"time"
)

// ErrClosed is returned by every method once the engine is closed.
var ErrClosed = errors.New("storage: engine closed")

// Version orders the writes of one key. Timestamp is a hybrid logical clock
// reading: the upper 48 bits are Unix milliseconds, the lower 16 a logical
// counter. Node breaks ties between coordinators.
type Version struct {
	Timestamp uint64
	Node      uint32
}

// Less reports whether v orders before o.
func (v Version) Less(o Version) bool {
	if v.Timestamp != o.Timestamp {
		return v.Timestamp < o.Timestamp
	}
	return v.Node < o.Node
}

// IsZero reports whether v is the zero version (no write).
func (v Version) IsZero() bool { return v.Timestamp == 0 && v.Node == 0 }

// WallTime is the physical part of the version's timestamp.
func (v Version) WallTime() time.Time { return time.UnixMilli(int64(v.Timestamp >> 16)) }

// Record is one versioned value of a key. A tombstone has no value.
type Record struct {
	Key       []byte
	Value     []byte
	Version   Version
	Tombstone bool
}

// Mutation is one record written into a keyspace.
type Mutation struct {
	Keyspace string
	Record   Record
}

// Engine is a node's local store. All methods are safe for concurrent use.
// Keyspace names are non-empty and contain no NUL byte; keys are non-empty.
type Engine interface {
	// Get returns the stored record of key, tombstones included; ok is false
	// when the key has never been written (or its tombstone was collected).
	Get(keyspace string, key []byte) (rec Record, ok bool, err error)

	// Apply stores the mutations atomically: all of them or none. For each key
	// the record with the greater version is kept (last writer wins), so
	// applying an older version is a no-op and applying the same mutation twice
	// is harmless. applied[i] reports whether mutations[i] became the stored
	// record. When Apply returns nil on a durable engine, the batch is on disk.
	Apply(ctx context.Context, mutations []Mutation) (applied []bool, err error)

	// Scan returns up to limit records of keyspace with start <= key < end in
	// key order, tombstones included. A nil end means no upper bound; limit <= 0
	// means no limit.
	Scan(keyspace string, start, end []byte, limit int) ([]Record, error)

	// Purge removes keys outright (no tombstone, no version check), durably.
	// It is for the node's own bookkeeping (delivered hints) and for cleanup
	// (records of keys the node no longer replicates), never for user deletes.
	Purge(ctx context.Context, keyspace string, keys [][]byte) error

	// CollectTombstones removes the tombstones whose version's wall time is
	// before now minus grace, and returns how many it removed.
	CollectTombstones(now time.Time, grace time.Duration) (int, error)

	// Metrics returns a snapshot of the engine's counters.
	Metrics() Metrics

	// Close releases the engine; later calls return ErrClosed.
	Close() error
}

// UnsyncedApplier is an Engine that can store a batch without waiting for
// it to be on disk: ApplyUnsynced is Apply, atomic and last writer wins,
// except that a crash may lose the batch. What it may lose is a suffix: a
// durable engine's write-ahead log is one sequence, so a batch is on disk
// once any later batch was synced, and recovery never keeps a batch while
// losing an earlier one.
type UnsyncedApplier interface {
	ApplyUnsynced(ctx context.Context, mutations []Mutation) (applied []bool, err error)
}

// Flusher is an Engine that can write what it holds in memory to its
// files. Data is durable without it (the write-ahead log is synced); a
// node flushes before a planned stop so that its next start replays no log.
type Flusher interface {
	Flush() error
}

// Metrics are an engine's counters since it was opened.
type Metrics struct {
	// Mutations is the number of mutations passed to Apply.
	Mutations uint64
	// Applied is how many of them replaced the stored record.
	Applied uint64
	// Commits is the number of batches committed to the engine.
	Commits uint64
	// Syncs is the number of fsyncs of the write-ahead log. With group commit
	// it is lower than the number of Apply calls under concurrency.
	Syncs uint64
	// TombstonesCollected counts tombstones removed by CollectTombstones.
	TombstonesCollected uint64
	// RowCacheHits and RowCacheMisses count point reads (Get and the
	// committer's read-before-write) answered by the row cache or not;
	// RowCacheBytes is its size. Zero for engines without one.
	RowCacheHits, RowCacheMisses uint64
	RowCacheBytes                int64
}

package storage

// Pebble's writes all go through one committer goroutine.
//
// Last-writer-wins is a read-compare-write per key. Doing it in callers would
// need a lock per key and one fsync per Apply. Instead, Apply, Purge and
// CollectTombstones turn into requests on a queue and wait. The committer
// takes everything queued (up to Options.MaxGroupBytes), decides each key
// against what pebble holds and against the earlier requests of the same
// group, writes the winners into one pebble batch and commits it with a single
// fsync. While that fsync runs, new requests pile up and become the next group,
// so the number of fsyncs tracks disk latency, not the request rate, and a
// lone writer is never held back by a timer.
//
// A request's decisions are staged with an undo log: a request that cannot be
// decided (a corrupt stored value) fails alone and leaves no trace in the
// group's batch, while the others in the group commit. A failed commit fails
// the whole group, which is exactly what the batch contained.
//
// A queued request belongs to its caller until the committer takes it, so a
// cancelled context can withdraw it; once taken, the caller waits for the
// outcome because the write may already be on disk. The committer drops a
// request whose deadline passed while it was queued instead of writing it:
// its caller has given up and counted it as failed.
//
// The queue is bounded (Options.MaxQueueBytes): a request that finds it full
// waits for room within its context, so that a disk that cannot keep up
// pushes back on the writers instead of letting memory grow. Reads bypass the queue:
// every commit is an atomic pebble batch, so a reader sees a group whole or
// not at all.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
)

// Options configure OpenPebble. The zero value is valid and durable.
type Options struct {
	// NoSync commits without fsync: Apply returns once the batch is in the
	// operating system's cache, so a machine crash (not a process crash) can
	// lose acknowledged writes. It is a negative so that the zero Options,
	// and any option left unset, stays durable.
	NoSync bool

	// MaxGroupBytes bounds the approximate encoded size of one group commit.
	// Larger groups share an fsync among more callers but hold more memory and
	// delay the callers at the front of the group. A single request larger
	// than the bound is committed alone. Default 4 MiB.
	MaxGroupBytes int

	// MaxQueueBytes bounds the approximate encoded size of the requests
	// waiting for the committer; a request that would exceed it waits for
	// room until its context ends. A single request larger than the bound
	// is queued when the queue is empty. Default 8 × MaxGroupBytes: the
	// next eight groups. Why not smaller? Writers would wait at the door
	// rather than in the queue, for no gain. Why not larger? A queue that
	// takes longer to drain than the callers' deadlines holds memory for
	// work that is then dropped unwritten.
	MaxQueueBytes int

	// CacheSize is the byte size of pebble's block cache, which serves both
	// reads and the committer's version checks. Default 64 MiB.
	CacheSize int64

	// RowCacheSize is the byte budget of the row cache of decoded records
	// in front of pebble (see rowcache.go); records over 16 KiB are not
	// kept. 0 means the default, 32 MiB; negative disables it.
	RowCacheSize int64

	// Logger receives pebble's messages and the engine's warnings.
	// Default slog.Default().
	Logger *slog.Logger

	// FS is the filesystem the database lives on; nil means the operating
	// system's. Tests pass a PowerCutFS to lose what was never synced.
	FS FS
}

// EnsureDefaults replaces unset or invalid fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.MaxGroupBytes <= 0 {
		o.MaxGroupBytes = 4 << 20
	}
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = 8 * o.MaxGroupBytes
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 64 << 20
	}
	if o.RowCacheSize == 0 {
		o.RowCacheSize = 32 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Pebble is the on-disk Engine.
type Pebble struct {
	db       *pebble.DB
	log      *slog.Logger
	write    *pebble.WriteOptions
	maxGroup int
	maxQueue int
	rows     *rowCache // nil when disabled

	qmu         sync.Mutex
	queue       []*request
	queuedBytes int           // sum of the queued requests' sizes
	space       chan struct{} // closed (and dropped) when queued bytes are taken; nil when nobody waits
	closed      bool          // no more requests; guarded by qmu

	wake    chan struct{} // capacity 1: "the queue may be non-empty"
	stop    chan struct{}
	stopped chan struct{} // closed when the committer has exited

	// rmu keeps Close from closing the database under a reader.
	rmu      sync.RWMutex
	dbClosed bool

	mutations, applied, commits, syncs, collected atomic.Uint64
}

var _ Engine = (*Pebble)(nil)

// OpenPebble opens (creating if needed) the database in dir and starts its
// committer.
func OpenPebble(dir string, opts Options) (*Pebble, error) {
	opts.EnsureDefaults()
	if err := createDir(opts.FS, dir); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref() // the DB holds its own reference
	db, err := pebble.Open(dir, &pebble.Options{
		Cache:  cache,
		Logger: pebbleLogger{opts.Logger},
		FS:     opts.FS,
		// Every Apply point-reads each key it writes, and most keys are new:
		// bloom filters answer those misses without touching data blocks.
		// Deeper levels inherit the last entry.
		Levels: []pebble.LevelOptions{{FilterPolicy: bloom.FilterPolicy(10)}},
	})
	if err != nil {
		return nil, fmt.Errorf("storage: open pebble %s: %w", dir, err)
	}
	p := &Pebble{
		db:       db,
		log:      opts.Logger,
		write:    pebble.Sync,
		maxGroup: opts.MaxGroupBytes,
		maxQueue: opts.MaxQueueBytes,
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if opts.NoSync {
		p.write = pebble.NoSync
	}
	if opts.RowCacheSize > 0 {
		p.rows = newRowCache(opts.RowCacheSize)
	}
	go p.commitLoop()
	return p, nil
}

// Get implements Engine.
func (p *Pebble) Get(keyspace string, key []byte) (Record, bool, error) {
	if err := checkKeyspace(keyspace); err != nil {
		return Record{}, false, err
	}
	if err := checkKey(key); err != nil {
		return Record{}, false, err
	}
	p.rmu.RLock()
	defer p.rmu.RUnlock()
	if p.dbClosed {
		return Record{}, false, ErrClosed
	}
	ek := appendKey(nil, keyspace, key)
	var seq uint64
	if p.rows != nil {
		var row cachedRow
		var hit bool
		if row, hit, seq = p.rows.get(ek); hit {
			return makeRecord(key, row.value, row.version, row.tombstone), true, nil
		}
	}
	val, closer, err := p.db.Get(ek)
	if errors.Is(err, pebble.ErrNotFound) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("storage: get %q/%q: %w", keyspace, key, err)
	}
	defer closer.Close()
	rec, err := ownedRecord(key, val)
	if err != nil {
		return Record{}, false, fmt.Errorf("storage: get in keyspace %q: %w", keyspace, err)
	}
	if p.rows != nil {
		p.rows.fill(ek, seq, cachedRow{version: rec.Version, tombstone: rec.Tombstone, value: bytes.Clone(rec.Value)})
	}
	return rec, true, nil
}

// Scan implements Engine.
func (p *Pebble) Scan(keyspace string, start, end []byte, limit int) ([]Record, error) {
	if err := checkKeyspace(keyspace); err != nil {
		return nil, err
	}
	if end != nil && bytes.Compare(start, end) >= 0 {
		return nil, nil
	}
	prefix := appendKey(nil, keyspace, nil)
	n := len(prefix)
	iopts := &pebble.IterOptions{LowerBound: append(prefix[:n:n], start...)}
	if end == nil {
		// The keyspace ends where its terminating NUL would be 0x01.
		iopts.UpperBound = append(prefix[:n-1:n-1], keyspaceEnd+1)
	} else {
		iopts.UpperBound = append(prefix[:n:n], end...)
	}

	p.rmu.RLock()
	defer p.rmu.RUnlock()
	if p.dbClosed {
		return nil, ErrClosed
	}
	it, err := p.db.NewIter(iopts)
	if err != nil {
		return nil, fmt.Errorf("storage: scan %q: %w", keyspace, err)
	}
	var out []Record
	for ok := it.First(); ok && (limit <= 0 || len(out) < limit); ok = it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			break // surfaced by it.Close
		}
		rec, err := ownedRecord(it.Key()[n:], val)
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("storage: scan %q: %w", keyspace, err)
		}
		out = append(out, rec)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("storage: scan %q: %w", keyspace, err)
	}
	return out, nil
}

// Apply implements Engine. It returns after the group holding the mutations
// is committed (and, unless Options.NoSync, synced).
func (p *Pebble) Apply(ctx context.Context, mutations []Mutation) ([]bool, error) {
	return p.apply(ctx, mutations, false)
}

// ApplyUnsynced implements UnsyncedApplier: Apply without waiting for an
// fsync. The batch joins a group like any other; a group made only of
// unsynced requests commits without a sync, one with a synced request syncs
// for all of them.
func (p *Pebble) ApplyUnsynced(ctx context.Context, mutations []Mutation) ([]bool, error) {
	return p.apply(ctx, mutations, true)
}

func (p *Pebble) apply(ctx context.Context, mutations []Mutation, unsynced bool) ([]bool, error) {
	size := 0
	for i := range mutations {
		m := &mutations[i]
		if err := checkKeyspace(m.Keyspace); err != nil {
			return nil, err
		}
		if err := checkKey(m.Record.Key); err != nil {
			return nil, err
		}
		size += 2 + len(m.Keyspace) + len(m.Record.Key) + valueHeaderLen + len(m.Record.Value)
	}
	r := &request{muts: mutations, size: size, unsynced: unsynced, done: make(chan struct{})}
	if err := p.submit(ctx, r); err != nil {
		return nil, err
	}
	return r.applied, nil
}

// Purge implements Engine.
func (p *Pebble) Purge(ctx context.Context, keyspace string, keys [][]byte) error {
	if err := checkKeyspace(keyspace); err != nil {
		return err
	}
	size := 0
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
		size += 2 + len(keyspace) + len(k)
	}
	r := &request{purgeKeyspace: keyspace, purgeKeys: keys, size: size, done: make(chan struct{})}
	return p.submit(ctx, r)
}

// gcChunk bounds how many candidates CollectTombstones hands the committer at
// once, so that collection never forms a group that starves writers.
const gcChunk = 512

// CollectTombstones implements Engine. The scan for old tombstones runs
// outside the committer; the committer then deletes a candidate only if it is
// still the stored record, so a write racing with collection always survives.
func (p *Pebble) CollectTombstones(now time.Time, grace time.Duration) (int, error) {
	cutoff := now.Add(-grace)
	p.rmu.RLock()
	defer p.rmu.RUnlock()
	if p.dbClosed {
		return 0, ErrClosed
	}
	it, err := p.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{recordPrefix},
		UpperBound: []byte{recordPrefix + 1},
	})
	if err != nil {
		return 0, fmt.Errorf("storage: collect tombstones: %w", err)
	}
	defer it.Close()

	removed := 0
	var cands []candidate
	var size int
	flush := func() error {
		r := &request{gc: cands, size: size, done: make(chan struct{})}
		cands, size = nil, 0
		err := p.submit(context.Background(), r)
		removed += r.removed
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			break // surfaced by it.Error
		}
		v, tomb, _, err := decodeValue(val)
		if err != nil {
			// One bad record must not stop collection everywhere else.
			p.log.Warn("storage: skipping undecodable record in tombstone collection", "key", it.Key(), "err", err)
			continue
		}
		if !tomb || !v.WallTime().Before(cutoff) {
			continue
		}
		cands = append(cands, candidate{key: bytes.Clone(it.Key()), version: v})
		size += len(it.Key())
		if len(cands) == gcChunk {
			if err := flush(); err != nil {
				return removed, err
			}
		}
	}
	if err := it.Error(); err != nil {
		return removed, fmt.Errorf("storage: collect tombstones: %w", err)
	}
	if len(cands) > 0 {
		if err := flush(); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// Metrics implements Engine. Syncs counts the synced batches the engine
// committed; pebble's own WAL syncs (e.g. on memtable rotation) are not in it.
func (p *Pebble) Metrics() Metrics {
	m := Metrics{
		Mutations:           p.mutations.Load(),
		Applied:             p.applied.Load(),
		Commits:             p.commits.Load(),
		Syncs:               p.syncs.Load(),
		TombstonesCollected: p.collected.Load(),
	}
	if p.rows != nil {
		m.RowCacheHits, m.RowCacheMisses, m.RowCacheBytes = p.rows.stats()
	}
	return m
}

// Flush writes the memtables to sstables and waits for it, so that the
// next Open replays an empty write-ahead log.
func (p *Pebble) Flush() error {
	p.rmu.RLock()
	defer p.rmu.RUnlock()
	if p.dbClosed {
		return ErrClosed
	}
	if err := p.db.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// Close fails the requests still queued, waits for the group being committed,
// and closes the database. A second Close returns ErrClosed.
func (p *Pebble) Close() error {
	p.qmu.Lock()
	if p.closed {
		p.qmu.Unlock()
		return ErrClosed
	}
	p.closed = true
	pending := p.queue
	p.queue = nil
	p.queuedBytes = 0
	p.signalSpace()
	p.qmu.Unlock()
	for _, r := range pending {
		if r.state.CompareAndSwap(queued, taken) {
			r.err = ErrClosed
			close(r.done)
		}
	}
	close(p.stop)
	<-p.stopped

	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.dbClosed = true
	if err := p.db.Close(); err != nil {
		return fmt.Errorf("storage: close pebble: %w", err)
	}
	return nil
}

// Request states. A request moves from queued to exactly one of the others;
// whoever wins the compare-and-swap owns it.
const (
	queued int32 = iota
	taken
	cancelled
)

// request is one Apply, Purge or chunk of tombstone collection. Its inputs
// stay owned by the waiting caller, which does not return before done is
// closed (or before it cancelled the request while still queued).
type request struct {
	muts          []Mutation
	purgeKeyspace string
	purgeKeys     [][]byte
	gc            []candidate

	size     int
	deadline time.Time // the caller's; zero: none
	// unsynced: the caller does not wait for the fsync (ApplyUnsynced).
	unsynced bool
	state    atomic.Int32
	done     chan struct{}

	// Set by the committer before done is closed.
	applied []bool
	removed int
	err     error
}

// candidate is a tombstone CollectTombstones found old enough to remove.
type candidate struct {
	key     []byte // engine key
	version Version
}

// submit queues r, waiting for room within ctx, and waits for its outcome.
func (p *Pebble) submit(ctx context.Context, r *request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.deadline, _ = ctx.Deadline()
	p.qmu.Lock()
	for !p.closed && len(p.queue) > 0 && p.queuedBytes+r.size > p.maxQueue {
		if p.space == nil {
			p.space = make(chan struct{})
		}
		space := p.space
		p.qmu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return fmt.Errorf("storage: commit queue full (%d bytes queued): %w", p.maxQueue, ctx.Err())
		}
		p.qmu.Lock()
	}
	if p.closed {
		p.qmu.Unlock()
		return ErrClosed
	}
	p.queue = append(p.queue, r)
	p.queuedBytes += r.size
	p.qmu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default: // a wake-up is already pending
	}

	select {
	case <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, cancelled) {
			return ctx.Err()
		}
		<-r.done // taken: it may already be on disk, so report what happened
	}
	return r.err
}

func (p *Pebble) commitLoop() {
	defer close(p.stopped)
	for {
		select {
		case <-p.wake:
		case <-p.stop:
			return
		}
		for {
			group := p.take()
			if len(group) == 0 {
				break
			}
			p.commit(group)
		}
	}
}

// take removes the next group from the queue, dropping cancelled requests
// and failing those whose deadline has passed.
func (p *Pebble) take() []*request {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	var group []*request
	size, n := 0, 0
	now := time.Now()
	for ; n < len(p.queue); n++ {
		r := p.queue[n]
		if len(group) > 0 && size+r.size > p.maxGroup {
			break
		}
		p.queuedBytes -= r.size
		if !r.state.CompareAndSwap(queued, taken) {
			continue // cancelled by its caller
		}
		if !r.deadline.IsZero() && !now.Before(r.deadline) {
			r.err = fmt.Errorf("storage: request expired in the commit queue: %w", context.DeadlineExceeded)
			close(r.done)
			continue
		}
		group = append(group, r)
		size += r.size
	}
	rest := copy(p.queue, p.queue[n:])
	clear(p.queue[rest:])
	p.queue = p.queue[:rest]
	p.signalSpace()
	return group
}

// signalSpace wakes the requests waiting for room in the queue. The caller
// holds qmu.
func (p *Pebble) signalSpace() {
	if p.space != nil {
		close(p.space)
		p.space = nil
	}
}

// commit decides, writes and answers one group.
func (p *Pebble) commit(group []*request) {
	b := p.db.NewBatch()
	defer b.Close()
	s := stage{db: p.db, rows: p.rows, seen: make(map[string]stored)}
	var err error
	// What the batch writes, for the row cache: engine keys and the records
	// (nil: deleted) in batch order, so a later write of a key wins.
	var keys []string
	var rows []*cachedRow
	for _, r := range group {
		if err = s.add(b, r); err != nil {
			break
		}
		if r.err == nil && p.rows != nil {
			for _, w := range s.writes {
				keys = append(keys, string(w.key))
				var row *cachedRow
				if w.rec != nil {
					row = &cachedRow{version: w.rec.Version, tombstone: w.rec.Tombstone}
					if !w.rec.Tombstone {
						row.value = bytes.Clone(w.rec.Value)
					}
				}
				rows = append(rows, row)
			}
		}
	}
	if err == nil && !b.Empty() {
		var touched []int
		if p.rows != nil {
			touched = p.rows.beginCommit(keys)
		}
		write := p.write
		if !slices.ContainsFunc(group, func(r *request) bool { return !r.unsynced }) {
			write = pebble.NoSync
		}
		if err = p.db.Apply(b, write); err != nil {
			err = fmt.Errorf("storage: commit: %w", err)
			rows = nil // nothing was written: the keys stay dropped
		} else {
			p.commits.Add(1)
			if write.Sync {
				p.syncs.Add(1)
			}
		}
		if p.rows != nil {
			p.rows.endCommit(touched, keys, rows)
		}
	}
	for _, r := range group {
		switch {
		case r.err != nil: // failed alone; nothing of it was in the batch
		case err != nil:
			r.applied, r.removed, r.err = nil, 0, err
		default:
			p.mutations.Add(uint64(len(r.muts)))
			for _, a := range r.applied {
				if a {
					p.applied.Add(1)
				}
			}
			p.collected.Add(uint64(r.removed))
		}
		close(r.done)
	}
}

// stored is what the group knows of a key: its stored version, or that it is
// absent (ok false).
type stored struct {
	version   Version
	tombstone bool
	ok        bool
}

// stage holds the decisions of the requests added to a group so far, so that
// a later request in the same group compares against them, not against pebble.
type stage struct {
	db     *pebble.DB
	rows   *rowCache // consulted before pebble; nil when disabled
	seen   map[string]stored
	undo   []undoEntry
	writes []write
	buf    []byte
}

type undoEntry struct {
	key  string
	prev stored
	had  bool
}

// write is one staged batch operation; a nil rec deletes the key.
type write struct {
	key []byte
	rec *Record
}

// add decides r and appends its writes to b. When r cannot be decided, add
// undoes r's decisions, records the error in r and returns nil: the rest of
// the group is unaffected. An error returned spoils the whole batch.
func (s *stage) add(b *pebble.Batch, r *request) error {
	mark := len(s.undo)
	s.writes = s.writes[:0]
	if err := s.decide(r); err != nil {
		for i := len(s.undo) - 1; i >= mark; i-- {
			u := s.undo[i]
			if u.had {
				s.seen[u.key] = u.prev
			} else {
				delete(s.seen, u.key)
			}
		}
		s.undo = s.undo[:mark]
		r.applied, r.removed, r.err = nil, 0, err
		return nil
	}
	for _, w := range s.writes {
		var err error
		if w.rec == nil {
			err = b.Delete(w.key, nil)
		} else {
			s.buf = appendValue(s.buf[:0], w.rec)
			err = b.Set(w.key, s.buf, nil)
		}
		if err != nil {
			return fmt.Errorf("storage: build batch: %w", err)
		}
	}
	return nil
}

func (s *stage) decide(r *request) error {
	if len(r.muts) > 0 {
		r.applied = make([]bool, len(r.muts))
	}
	for i := range r.muts {
		m := &r.muts[i]
		key := appendKey(nil, m.Keyspace, m.Record.Key)
		cur, err := s.lookup(key)
		if err != nil {
			return err
		}
		if cur.ok && !cur.version.Less(m.Record.Version) {
			continue
		}
		r.applied[i] = true
		s.put(key, stored{version: m.Record.Version, tombstone: m.Record.Tombstone, ok: true}, &m.Record)
	}
	for _, k := range r.purgeKeys {
		s.put(appendKey(nil, r.purgeKeyspace, k), stored{}, nil)
	}
	for _, c := range r.gc {
		cur, err := s.lookup(c.key)
		if err != nil {
			return err
		}
		if cur.ok && cur.tombstone && cur.version == c.version {
			s.put(c.key, stored{}, nil)
			r.removed++
		}
	}
	return nil
}

func (s *stage) lookup(key []byte) (stored, error) {
	if st, ok := s.seen[string(key)]; ok {
		return st, nil
	}
	// The committer is the only writer and the cache holds only committed
	// records, so a cached record is what pebble holds.
	if s.rows != nil {
		if row, ok, _ := s.rows.get(key); ok {
			return stored{version: row.version, tombstone: row.tombstone, ok: true}, nil
		}
	}
	val, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return stored{}, nil
	}
	if err != nil {
		return stored{}, fmt.Errorf("storage: read %q: %w", key, err)
	}
	defer closer.Close()
	v, tomb, _, err := decodeValue(val)
	if err != nil {
		return stored{}, fmt.Errorf("storage: read %q: %w", key, err)
	}
	return stored{version: v, tombstone: tomb, ok: true}, nil
}

func (s *stage) put(key []byte, st stored, rec *Record) {
	k := string(key)
	prev, had := s.seen[k]
	s.undo = append(s.undo, undoEntry{key: k, prev: prev, had: had})
	s.seen[k] = st
	s.writes = append(s.writes, write{key: key, rec: rec})
}

// pebbleLogger routes pebble's log lines to slog.
type pebbleLogger struct{ l *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.l.Info(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf panics after logging: pebble calls it on broken invariants and relies
// on it not returning (its default logger exits the process).
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.l.Error(msg, "component", "pebble")
	panic("storage: pebble: " + msg)
}

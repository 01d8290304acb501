package storage

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/google/btree"
)

// Memory is the in-memory Engine: one B-tree of records per keyspace under a
// single lock. It keeps nothing across restarts, so Syncs stays 0. Records are
// copied on the way in and out, so neither side can change the other's bytes.
type Memory struct {
	mu      sync.RWMutex
	spaces  map[string]*btree.BTreeG[*Record]
	closed  bool
	metrics Metrics
}

var _ Engine = (*Memory)(nil)

// NewMemory returns an empty Memory engine.
func NewMemory() *Memory {
	return &Memory{spaces: make(map[string]*btree.BTreeG[*Record])}
}

// memDegree trades node size against tree depth; 32 is btree's usual choice.
const memDegree = 32

func lessRecord(a, b *Record) bool { return bytes.Compare(a.Key, b.Key) < 0 }

// Get implements Engine.
func (m *Memory) Get(keyspace string, key []byte) (Record, bool, error) {
	if err := checkKeyspace(keyspace); err != nil {
		return Record{}, false, err
	}
	if err := checkKey(key); err != nil {
		return Record{}, false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Record{}, false, ErrClosed
	}
	t := m.spaces[keyspace]
	if t == nil {
		return Record{}, false, nil
	}
	rec, ok := t.Get(&Record{Key: key})
	if !ok {
		return Record{}, false, nil
	}
	return cloneRecord(rec), true, nil
}

// Scan implements Engine.
func (m *Memory) Scan(keyspace string, start, end []byte, limit int) ([]Record, error) {
	if err := checkKeyspace(keyspace); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	t := m.spaces[keyspace]
	if t == nil || (end != nil && bytes.Compare(start, end) >= 0) {
		return nil, nil
	}
	var out []Record
	visit := func(rec *Record) bool {
		out = append(out, cloneRecord(rec))
		return limit <= 0 || len(out) < limit
	}
	if end == nil {
		t.AscendGreaterOrEqual(&Record{Key: start}, visit)
	} else {
		t.AscendRange(&Record{Key: start}, &Record{Key: end}, visit)
	}
	return out, nil
}

// ApplyUnsynced implements UnsyncedApplier; it is Apply (nothing is
// synced in memory).
func (m *Memory) ApplyUnsynced(ctx context.Context, mutations []Mutation) ([]bool, error) {
	return m.Apply(ctx, mutations)
}

// Apply implements Engine. The whole batch is decided and stored under one
// lock, which is what makes it atomic.
func (m *Memory) Apply(ctx context.Context, mutations []Mutation) ([]bool, error) {
	for i := range mutations {
		if err := checkKeyspace(mutations[i].Keyspace); err != nil {
			return nil, err
		}
		if err := checkKey(mutations[i].Record.Key); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	applied := make([]bool, len(mutations))
	n := 0
	for i := range mutations {
		mu := &mutations[i]
		t := m.spaces[mu.Keyspace]
		if t == nil {
			t = btree.NewG(memDegree, lessRecord)
			m.spaces[mu.Keyspace] = t
		}
		if cur, ok := t.Get(&mu.Record); ok && !cur.Version.Less(mu.Record.Version) {
			continue
		}
		rec := cloneRecord(&mu.Record)
		t.ReplaceOrInsert(&rec)
		applied[i] = true
		n++
	}
	m.metrics.Mutations += uint64(len(mutations))
	m.metrics.Applied += uint64(n)
	if n > 0 {
		m.metrics.Commits++
	}
	return applied, nil
}

// Purge implements Engine.
func (m *Memory) Purge(ctx context.Context, keyspace string, keys [][]byte) error {
	if err := checkKeyspace(keyspace); err != nil {
		return err
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	t := m.spaces[keyspace]
	if t == nil || len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		t.Delete(&Record{Key: k})
	}
	if t.Len() == 0 {
		delete(m.spaces, keyspace)
	}
	m.metrics.Commits++
	return nil
}

// CollectTombstones implements Engine.
func (m *Memory) CollectTombstones(now time.Time, grace time.Duration) (int, error) {
	cutoff := now.Add(-grace)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	removed := 0
	var old []*Record
	for name, t := range m.spaces {
		old = old[:0]
		t.Ascend(func(rec *Record) bool {
			if rec.Tombstone && rec.Version.WallTime().Before(cutoff) {
				old = append(old, rec)
			}
			return true
		})
		for _, rec := range old {
			t.Delete(rec)
		}
		removed += len(old)
		if t.Len() == 0 {
			delete(m.spaces, name)
		}
	}
	if removed > 0 {
		m.metrics.Commits++
		m.metrics.TombstonesCollected += uint64(removed)
	}
	return removed, nil
}

// Metrics implements Engine.
func (m *Memory) Metrics() Metrics {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.metrics
}

// Close implements Engine; it drops every record.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed = true
	m.spaces = nil
	return nil
}

func cloneRecord(rec *Record) Record {
	return makeRecord(rec.Key, rec.Value, rec.Version, rec.Tombstone)
}

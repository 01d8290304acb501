package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/hashicorp/raft"
)

// ErrKeyNotFound is returned by RaftStore.Get and GetUint64 for a key that was
// never set. Its message lacks the "storage: " prefix on purpose: raft tells a
// fresh node from a failing store by comparing err.Error() with "not found".
var ErrKeyNotFound = errors.New("not found")

// RaftStore is a raft.LogStore and raft.StableStore on its own pebble
// database. Every write is synced: raft assumes what it stored survives a
// crash, and its votes and terms are safe only if it does.
type RaftStore struct {
	db     *pebble.DB
	mu     sync.RWMutex // keeps Close from closing db under a call
	closed bool
}

var (
	_ raft.LogStore    = (*RaftStore)(nil)
	_ raft.StableStore = (*RaftStore)(nil)
)

// Key families of the raft database. Log keys are the prefix and the
// big-endian index, so pebble's order is log order.
const (
	raftLogPrefix    = 'l'
	raftStablePrefix = 's'

	raftLogKeyLen = 9

	// raftLogFormat leads every encoded log so a later layout can be told
	// apart from this one.
	raftLogFormat = 1
	// raftLogFixedLen is format, index, term, type, seconds and nanoseconds.
	raftLogFixedLen = 1 + 8 + 8 + 1 + 8 + 4
)

// OpenRaftStore opens (creating if needed) the raft database in dir, logging
// pebble's events to logger (nil: slog.Default()), which
// must not be shared with a Pebble engine.
func OpenRaftStore(dir string, logger *slog.Logger) (*RaftStore, error) {
	return openRaftStoreOn(nil, dir, logger)
}

// openRaftStoreOn opens the raft database on fs (nil: the operating
// system's), which the power-cut tests replace.
func openRaftStoreOn(fs FS, dir string, logger *slog.Logger) (*RaftStore, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if err := createDir(fs, dir); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(8 << 20) // raft reads recent entries, mostly from memtables
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{Cache: cache, Logger: pebbleLogger{logger}, FS: fs})
	if err != nil {
		return nil, fmt.Errorf("storage: open raft store %s: %w", dir, err)
	}
	return &RaftStore{db: db}, nil
}

// acquire holds the store open for one call; the caller must RUnlock s.mu
// when acquire succeeds.
func (s *RaftStore) acquire() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// FirstIndex implements raft.LogStore.
func (s *RaftStore) FirstIndex() (uint64, error) { return s.edgeIndex(true) }

// LastIndex implements raft.LogStore.
func (s *RaftStore) LastIndex() (uint64, error) { return s.edgeIndex(false) }

func (s *RaftStore) edgeIndex(first bool) (uint64, error) {
	if err := s.acquire(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: []byte{raftLogPrefix},
		UpperBound: []byte{raftLogPrefix + 1},
	})
	if err != nil {
		return 0, fmt.Errorf("storage: raft log index: %w", err)
	}
	var ok bool
	if first {
		ok = it.First()
	} else {
		ok = it.Last()
	}
	var idx uint64
	if ok {
		if k := it.Key(); len(k) == raftLogKeyLen {
			idx = binary.BigEndian.Uint64(k[1:])
		} else {
			err = fmt.Errorf("%w: raft log key %x", ErrCorrupt, k)
		}
	}
	if cerr := it.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("storage: raft log index: %w", err)
	}
	return idx, nil
}

// GetLog implements raft.LogStore.
func (s *RaftStore) GetLog(index uint64, log *raft.Log) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	val, closer, err := s.db.Get(raftLogKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("storage: raft log %d: %w", index, err)
	}
	defer closer.Close()
	if err := decodeRaftLog(val, log); err != nil {
		return fmt.Errorf("storage: raft log %d: %w", index, err)
	}
	if log.Index != index {
		return fmt.Errorf("storage: raft log %d: %w: holds index %d", index, ErrCorrupt, log.Index)
	}
	return nil
}

// StoreLog implements raft.LogStore.
func (s *RaftStore) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs implements raft.LogStore with one synced batch.
func (s *RaftStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	b := s.db.NewBatch()
	defer b.Close()
	var buf []byte
	for _, l := range logs {
		buf = appendRaftLog(buf[:0], l)
		if err := b.Set(raftLogKey(l.Index), buf, nil); err != nil {
			return fmt.Errorf("storage: store raft logs: %w", err)
		}
	}
	if err := s.db.Apply(b, pebble.Sync); err != nil {
		return fmt.Errorf("storage: store raft logs: %w", err)
	}
	return nil
}

// DeleteRange implements raft.LogStore; both bounds are inclusive.
func (s *RaftStore) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	end := []byte{raftLogPrefix + 1}
	if max < math.MaxUint64 {
		end = raftLogKey(max + 1)
	}
	if err := s.db.DeleteRange(raftLogKey(min), end, pebble.Sync); err != nil {
		return fmt.Errorf("storage: delete raft logs [%d, %d]: %w", min, max, err)
	}
	return nil
}

// Set implements raft.StableStore.
func (s *RaftStore) Set(key, val []byte) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.db.Set(raftStableKey(key), val, pebble.Sync); err != nil {
		return fmt.Errorf("storage: raft stable set %q: %w", key, err)
	}
	return nil
}

// Get implements raft.StableStore. A missing key yields ErrKeyNotFound.
func (s *RaftStore) Get(key []byte) ([]byte, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	val, closer, err := s.db.Get(raftStableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("storage: raft stable get %q: %w", key, err)
	}
	defer closer.Close()
	return append([]byte{}, val...), nil
}

// SetUint64 implements raft.StableStore.
func (s *RaftStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 implements raft.StableStore. A missing key yields 0 and
// ErrKeyNotFound.
func (s *RaftStore) GetUint64(key []byte) (uint64, error) {
	val, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(val) != 8 {
		return 0, fmt.Errorf("storage: raft stable get %q: %w: %d bytes for a uint64", key, ErrCorrupt, len(val))
	}
	return binary.BigEndian.Uint64(val), nil
}

// Close closes the database; a second Close returns ErrClosed.
func (s *RaftStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("storage: close raft store: %w", err)
	}
	return nil
}

func raftLogKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{raftLogPrefix}, index)
}

func raftStableKey(key []byte) []byte {
	return append([]byte{raftStablePrefix}, key...)
}

// appendRaftLog appends the encoding of l to dst. AppendedAt is kept as
// seconds and nanoseconds since the Unix epoch, which round-trips the zero
// time too (UnixNano cannot represent it).
func appendRaftLog(dst []byte, l *raft.Log) []byte {
	dst = append(dst, raftLogFormat)
	dst = binary.BigEndian.AppendUint64(dst, l.Index)
	dst = binary.BigEndian.AppendUint64(dst, l.Term)
	dst = append(dst, byte(l.Type))
	dst = binary.BigEndian.AppendUint64(dst, uint64(l.AppendedAt.Unix()))
	dst = binary.BigEndian.AppendUint32(dst, uint32(l.AppendedAt.Nanosecond()))
	dst = binary.AppendUvarint(dst, uint64(len(l.Data)))
	dst = append(dst, l.Data...)
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	return append(dst, l.Extensions...)
}

// decodeRaftLog fills l from b, copying the byte fields out of b.
func decodeRaftLog(b []byte, l *raft.Log) error {
	if len(b) < raftLogFixedLen {
		return fmt.Errorf("%w: raft log of %d bytes", ErrCorrupt, len(b))
	}
	if b[0] != raftLogFormat {
		return fmt.Errorf("%w: raft log format %d", ErrCorrupt, b[0])
	}
	nsec := binary.BigEndian.Uint32(b[26:])
	if nsec >= uint32(time.Second) {
		return fmt.Errorf("%w: raft log nanoseconds %d", ErrCorrupt, nsec)
	}
	rest := b[raftLogFixedLen:]
	data, rest, err := cutBytes(rest)
	if err != nil {
		return err
	}
	ext, rest, err := cutBytes(rest)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes after raft log", ErrCorrupt, len(rest))
	}
	*l = raft.Log{
		Index:      binary.BigEndian.Uint64(b[1:]),
		Term:       binary.BigEndian.Uint64(b[9:]),
		Type:       raft.LogType(b[17]),
		Data:       data,
		Extensions: ext,
		AppendedAt: time.Unix(int64(binary.BigEndian.Uint64(b[18:])), int64(nsec)),
	}
	return nil
}

// cutBytes splits a uvarint-length-prefixed field off b, returning a copy of
// it (nil when empty) and the remainder.
func cutBytes(b []byte) (field, rest []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, fmt.Errorf("%w: bad length prefix in raft log", ErrCorrupt)
	}
	// appendRaftLog writes the shortest form; a longer one (0x80 0x00 for
	// 0) is damage, and accepting it would give an entry two encodings.
	if w != len(binary.AppendUvarint(nil, n)) {
		return nil, nil, fmt.Errorf("%w: overlong length prefix in raft log", ErrCorrupt)
	}
	b = b[w:]
	if n > 0 {
		field = append([]byte(nil), b[:n]...)
	}
	return field, b[n:], nil
}

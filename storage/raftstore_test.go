package storage

import (
	"bytes"
	"errors"
	"io"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func openRaftStore(t *testing.T, dir string) *RaftStore {
	t.Helper()
	s, err := OpenRaftStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func checkIndexes(t *testing.T, s *RaftStore, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if f != first || l != last {
		t.Fatalf("indexes = [%d, %d], want [%d, %d]", f, l, first, last)
	}
}

func TestRaftStoreLogs(t *testing.T) {
	dir := t.TempDir()
	s := openRaftStore(t, dir)
	checkIndexes(t, s, 0, 0)

	at := time.Unix(1700000000, 42)
	if err := s.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("conf"), AppendedAt: at}); err != nil {
		t.Fatal(err)
	}
	var batch []*raft.Log
	for i := uint64(2); i <= 300; i++ { // past 255 so byte order is exercised
		batch = append(batch, &raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: []byte{byte(i)}, Extensions: []byte("x")})
	}
	if err := s.StoreLogs(batch); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, s, 1, 300)

	var l raft.Log
	if err := s.GetLog(1, &l); err != nil || l.Index != 1 || l.Type != raft.LogConfiguration || string(l.Data) != "conf" || !l.AppendedAt.Equal(at) {
		t.Fatalf("GetLog(1) = %+v, %v", l, err)
	}
	if err := s.GetLog(256, &l); err != nil || l.Term != 2 || !bytes.Equal(l.Data, []byte{0}) || string(l.Extensions) != "x" {
		t.Fatalf("GetLog(256) = %+v, %v", l, err)
	}
	if err := s.GetLog(301, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(301) error = %v, want raft.ErrLogNotFound", err)
	}

	// Compaction after a snapshot, then truncation of a conflicting suffix.
	if err := s.DeleteRange(1, 100); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, s, 101, 300)
	if err := s.DeleteRange(251, 300); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, s, 101, 250)
	if err := s.GetLog(100, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(100) after delete: %v", err)
	}
	if err := s.DeleteRange(5, 4); err != nil {
		t.Fatalf("empty DeleteRange: %v", err)
	}
	checkIndexes(t, s, 101, 250)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openRaftStore(t, dir)
	checkIndexes(t, s, 101, 250)
	if err := s.GetLog(200, &l); err != nil || l.Index != 200 {
		t.Fatalf("GetLog(200) after reopen = %+v, %v", l, err)
	}

	if err := s.StoreLog(&raft.Log{Index: math.MaxUint64}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(0, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, s, 0, 0)
}

func TestRaftStoreStable(t *testing.T) {
	dir := t.TempDir()
	s := openRaftStore(t, dir)

	if v, err := s.Get([]byte("missing")); err == nil || err.Error() != "not found" || v != nil {
		t.Fatalf("Get(missing) = %q, %v; raft needs the error text \"not found\"", v, err)
	}
	if v, err := s.GetUint64([]byte("missing")); err == nil || err.Error() != "not found" || v != 0 {
		t.Fatalf("GetUint64(missing) = %d, %v; raft needs 0 and \"not found\"", v, err)
	}

	if err := s.Set([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	// Stable keys and log keys do not collide.
	if err := s.StoreLog(&raft.Log{Index: 1, Term: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUint64([]byte("k")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetUint64 of a non-uint64 value: %v, want ErrCorrupt", err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
	if _, err := s.Get([]byte("k")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}

	s = openRaftStore(t, dir)
	if v, err := s.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("Get(k) after reopen = %q, %v", v, err)
	}
	if v, err := s.Get([]byte("empty")); err != nil || len(v) != 0 {
		t.Fatalf("Get(empty) after reopen = %q, %v", v, err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
		t.Fatalf("GetUint64 after reopen = %d, %v", v, err)
	}
	checkIndexes(t, s, 1, 1)
}

// recordingFSM remembers the commands raft applied.
type recordingFSM struct {
	mu      sync.Mutex
	applied [][]byte
}

func (f *recordingFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, bytes.Clone(l.Data))
	return len(f.applied)
}

func (f *recordingFSM) commands() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.applied...)
}

func (f *recordingFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (f *recordingFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnapshot) Release()                             {}

// TestRaftStoreWithRaft runs a one-node raft cluster on RaftStore, restarts
// it on the same directory, and checks the entry is replayed.
func TestRaftStoreWithRaft(t *testing.T) {
	dir := t.TempDir()
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.LogOutput = io.Discard

	start := func(bootstrap bool) (*raft.Raft, *recordingFSM, *RaftStore) {
		store, err := OpenRaftStore(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		addr, trans := raft.NewInmemTransport("")
		if bootstrap {
			servers := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
			if err := raft.BootstrapCluster(conf, store, store, raft.NewInmemSnapshotStore(), trans, servers); err != nil {
				t.Fatal(err)
			}
		}
		fsm := &recordingFSM{}
		r, err := raft.NewRaft(conf, fsm, store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for r.State() != raft.Leader {
			if time.Now().After(deadline) {
				t.Fatal("no leader elected")
			}
			time.Sleep(5 * time.Millisecond)
		}
		return r, fsm, store
	}
	stop := func(r *raft.Raft, s *RaftStore) {
		if err := r.Shutdown().Error(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}

	r, fsm, store := start(true)
	if err := r.Apply([]byte("hello"), time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if got := fsm.commands(); len(got) != 1 || string(got[0]) != "hello" {
		t.Fatalf("FSM applied %q", got)
	}
	stop(r, store)

	r, fsm, store = start(false)
	defer stop(r, store)
	if err := r.Barrier(time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if got := fsm.commands(); len(got) != 1 || string(got[0]) != "hello" {
		t.Fatalf("after restart FSM replayed %q, want [hello]", got)
	}
	if term, err := store.GetUint64([]byte("CurrentTerm")); err != nil || term < 2 {
		t.Fatalf("CurrentTerm = %d, %v; want a term past the first election", term, err)
	}
}

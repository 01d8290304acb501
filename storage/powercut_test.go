package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/adaptkv/adaptkv/internal/testseed"
)

// powerCutSeeds is how many seeds each power-cut test runs:
// ADAPTKV_POWERCUT_SEEDS, default 5 (CI); ADAPTKV_POWERCUT_SEED runs one.
func powerCutSeeds(t *testing.T) []uint64 {
	return testseed.FromEnv(t, "ADAPTKV_POWERCUT", 5)
}

// cutValue is the value written at version ts of key: a pure function, so
// that a record found after the cut can be checked whatever its version.
func cutValue(key string, ts uint64) []byte {
	n := int(ts*7919) % 3000 // sizes vary, and some groups fill memtables faster
	v := make([]byte, 0, len(key)+n+20)
	v = fmt.Appendf(v, "%s@%d:", key, ts)
	for len(v) < cap(v) {
		v = append(v, byte('a'+ts%26))
	}
	return v
}

// acked is what survives a cut: per key the last version a writer saw
// acknowledged before the power went off, and the highest version it tried.
type acked struct {
	mu    sync.Mutex
	last  map[string]uint64
	tried map[string]uint64
}

// Acknowledged writes to a Pebble engine survive a power cut taken while
// concurrent writers are committing: after the restart every key holds the
// last version acknowledged before the cut, or a later one that was tried
// (a write can land without its acknowledgement), never an older one, and
// every value is the one written at its version.
func TestPebblePowerCut(t *testing.T) {
	for _, seed := range powerCutSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			if err := pebblePowerCut(t, seed); err != nil {
				t.Fatalf("===== SEED %d =====\n%v", seed, err)
			}
		})
	}
}

func pebblePowerCut(t *testing.T, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 1))
	fs := NewPowerCutFS()
	opts := Options{FS: fs, Logger: slog.New(slog.DiscardHandler), RowCacheSize: -1}
	p, err := OpenPebble("/db", opts)
	if err != nil {
		return err
	}
	// Several cuts per seed: later rounds start from a database that
	// already went through a crash recovery.
	rounds := 1 + rng.IntN(3)
	ack := &acked{last: map[string]uint64{}, tried: map[string]uint64{}}
	var ts atomic.Uint64
	for round := range rounds {
		var powerOff atomic.Bool
		writers := 2 + rng.IntN(4)
		keys := 1 + rng.IntN(40)
		var wg sync.WaitGroup
		for w := range writers {
			wrng := rand.New(rand.NewPCG(seed, uint64(round*100+w+2)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !powerOff.Load() {
					n := 1 + wrng.IntN(8)
					muts := make([]Mutation, 0, n)
					seen := map[string]bool{}
					for range n {
						key := fmt.Sprintf("w%d-k%d", w, wrng.IntN(keys))
						if seen[key] {
							continue
						}
						seen[key] = true
						v := ts.Add(1)
						muts = append(muts, Mutation{Keyspace: "ks", Record: Record{Key: []byte(key), Value: cutValue(key, v), Version: Version{Timestamp: v, Node: 1}, Tombstone: v%11 == 0}})
						ack.mu.Lock()
						ack.tried[key] = max(ack.tried[key], v)
						ack.mu.Unlock()
					}
					_, err := p.Apply(context.Background(), muts)
					// An acknowledgement that comes after the cut does not
					// count: the syncs it waited for did nothing.
					if err != nil || powerOff.Load() {
						return
					}
					ack.mu.Lock()
					for _, m := range muts {
						ack.last[string(m.Record.Key)] = max(ack.last[string(m.Record.Key)], m.Record.Version.Timestamp)
					}
					ack.mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		fs.CutPower()
		powerOff.Store(true)
		fs.ReleaseSyncs()
		wg.Wait()
		if err := p.Close(); err != nil {
			return fmt.Errorf("round %d: close after the cut: %w", round, err)
		}
		fs.Restart()
		if p, err = OpenPebble("/db", opts); err != nil {
			return fmt.Errorf("round %d: reopen after the cut: %w", round, err)
		}
		if err := checkAcked(p, ack); err != nil {
			p.Close()
			return fmt.Errorf("round %d of %d (%d writers, %d keys each): %w", round, rounds, writers, keys, err)
		}
	}
	return p.Close()
}

func checkAcked(p *Pebble, ack *acked) error {
	ack.mu.Lock()
	defer ack.mu.Unlock()
	for key, want := range ack.last {
		rec, ok, err := p.Get("ks", []byte(key))
		if err != nil {
			return fmt.Errorf("get %s: %w", key, err)
		}
		if !ok {
			return fmt.Errorf("key %s acknowledged at version %d is gone", key, want)
		}
		got := rec.Version.Timestamp
		if got < want || got > ack.tried[key] {
			return fmt.Errorf("key %s at version %d; acknowledged %d, highest tried %d", key, got, want, ack.tried[key])
		}
		if wantTomb := got%11 == 0; rec.Tombstone != wantTomb {
			return fmt.Errorf("key %s version %d: tombstone %v, want %v", key, got, rec.Tombstone, wantTomb)
		}
		if !rec.Tombstone && !bytes.Equal(rec.Value, cutValue(key, got)) {
			return fmt.Errorf("key %s version %d holds %q, not the value written at that version", key, got, rec.Value)
		}
		// The next round starts from what survived.
		ack.last[key] = got
	}
	return nil
}

// Entries and stable values the Raft store acknowledged survive a power cut:
// raft's safety (a vote is cast once per term, a committed entry stays
// committed) rests on it.
func TestRaftStorePowerCut(t *testing.T) {
	for _, seed := range powerCutSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			if err := raftStorePowerCut(seed); err != nil {
				t.Fatalf("===== SEED %d =====\n%v", seed, err)
			}
		})
	}
}

func raftEntry(index uint64) *raft.Log {
	data := binary.BigEndian.AppendUint64(nil, index*31)
	data = append(data, bytes.Repeat([]byte{byte(index)}, int(index%500))...)
	return &raft.Log{Index: index, Term: 1 + index/10, Type: raft.LogCommand, Data: data, AppendedAt: time.Unix(int64(index), 0)}
}

func raftStorePowerCut(seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 2))
	fs := NewPowerCutFS()
	s, err := openRaftStoreOn(fs, "/raft", slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	var (
		powerOff atomic.Bool
		wg       sync.WaitGroup
		// Written by the log writer only, read after wg.Wait.
		ackedLast, triedDelete uint64
		// Written by the stable writer only.
		ackedTerm, triedTerm uint64
		ackedVote, triedVote []byte
	)
	wg.Add(2)
	logRng := rand.New(rand.NewPCG(seed, 3))
	go func() { // the log: appends, and a prefix compaction now and then
		defer wg.Done()
		next := uint64(1)
		for !powerOff.Load() {
			if next > 50 && logRng.IntN(10) == 0 {
				upTo := next - 40
				triedDelete = upTo
				if s.DeleteRange(0, upTo) != nil {
					return
				}
				continue
			}
			n := 1 + uint64(next%7)
			logs := make([]*raft.Log, 0, n)
			for i := range n {
				logs = append(logs, raftEntry(next+i))
			}
			if err := s.StoreLogs(logs); err != nil || powerOff.Load() {
				return
			}
			next += n
			ackedLast = next - 1
		}
	}()
	go func() { // the stable store: terms and votes
		defer wg.Done()
		for term := uint64(1); !powerOff.Load(); term++ {
			triedTerm = term
			if err := s.SetUint64([]byte("CurrentTerm"), term); err != nil || powerOff.Load() {
				return
			}
			ackedTerm = term
			vote := fmt.Appendf(nil, "n%d", term)
			triedVote = vote
			if err := s.Set([]byte("LastVoteCand"), vote); err != nil || powerOff.Load() {
				return
			}
			ackedVote = vote
		}
	}()
	time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
	fs.CutPower()
	powerOff.Store(true)
	fs.ReleaseSyncs()
	wg.Wait()
	if err := s.Close(); err != nil {
		return fmt.Errorf("close after the cut: %w", err)
	}
	fs.Restart()
	if s, err = openRaftStoreOn(fs, "/raft", slog.New(slog.DiscardHandler)); err != nil {
		return fmt.Errorf("reopen after the cut: %w", err)
	}
	defer s.Close()

	last, err := s.LastIndex()
	if err != nil {
		return err
	}
	if last < ackedLast {
		return fmt.Errorf("last index %d after the cut; %d was acknowledged", last, ackedLast)
	}
	for i := uint64(1); i <= last; i++ {
		var l raft.Log
		err := s.GetLog(i, &l)
		if errors.Is(err, raft.ErrLogNotFound) && i <= triedDelete {
			continue // compacted, or at least asked to be
		}
		if err != nil {
			return fmt.Errorf("entry %d (acknowledged up to %d, compaction tried up to %d): %w", i, ackedLast, triedDelete, err)
		}
		want := raftEntry(i)
		if l.Index != i || l.Term != want.Term || !bytes.Equal(l.Data, want.Data) || !l.AppendedAt.Equal(want.AppendedAt) {
			return fmt.Errorf("entry %d after the cut = %+v, want %+v", i, l, want)
		}
	}
	term, err := s.GetUint64([]byte("CurrentTerm"))
	if ackedTerm > 0 && (err != nil || term < ackedTerm || term > triedTerm) {
		return fmt.Errorf("CurrentTerm = %d, %v; acknowledged %d, tried up to %d", term, err, ackedTerm, triedTerm)
	}
	vote, err := s.Get([]byte("LastVoteCand"))
	if ackedVote != nil && (err != nil || (!bytes.Equal(vote, ackedVote) && !bytes.Equal(vote, triedVote))) {
		return fmt.Errorf("LastVoteCand = %q, %v; acknowledged %q, last tried %q", vote, err, ackedVote, triedVote)
	}
	return nil
}

// PowerCutFS keeps what was synced before the cut and nothing after it,
// even when the later sync reports success.
func TestPowerCutFS(t *testing.T) {
	fs := NewPowerCutFS()
	if err := createDir(fs, "/d"); err != nil {
		t.Fatal(err)
	}
	f, err := fs.Create("/d/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("synced")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := syncDir(fs, "/d"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("+lost")); err != nil {
		t.Fatal(err)
	}
	lost, err := fs.Create("/d/lost")
	if err != nil {
		t.Fatal(err)
	}
	fs.CutPower()
	done := make(chan error, 2)
	go func() { done <- f.Sync() }()
	go func() { done <- syncDir(fs, "/d") }()
	fs.ReleaseSyncs()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("sync after the cut: %v", err)
		}
	}
	f.Close()
	lost.Close()
	fs.Restart()
	got, err := fs.Open("/d/f")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	b, err := io.ReadAll(got)
	if err != nil || string(b) != "synced" {
		t.Fatalf("after the cut /d/f holds %q, %v; want %q", b, err, "synced")
	}
	if _, err := fs.Stat("/d/lost"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a file created after the last directory sync survived: %v", err)
	}
}

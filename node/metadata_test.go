package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/adaptkv/adaptkv/tuner"
)

// applyCmd applies one command to f as log entry index.
func applyCmd(t *testing.T, f *fsm, index uint64, c command) applyResult {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return f.Apply(&raft.Log{Index: index, Data: b}).(applyResult)
}

// A "tune" entry may change N only within the goal's bounds, and may raise
// it only while PendingN already covers the new N: the log itself refuses a
// grow that skipped sending writes to the added replicas.
func TestTuneReplicationFactor(t *testing.T) {
	goal := &tuner.Goal{MaxStale: 0.001, Floor: tuner.FloorQuorum, MinRF: 3, MaxRF: 5, MinW: 1}
	tune := func(n, r, w, pending int) command {
		return command{Op: "tune", Keyspace: KeyspaceDef{Name: "ks", ReplicationFactor: n, R: r, W: w, PendingN: pending}}
	}
	tests := []struct {
		name    string
		steps   []command
		wantErr bool // of the last step
		wantN   int
		wantP   int
	}{
		{"legacy entry keeps N", []command{tune(0, 3, 1, 0)}, false, 3, 0},
		{"grow without pending refused", []command{tune(5, 3, 4, 0)}, true, 3, 0},
		{"grow to a larger N than pending refused", []command{tune(3, 2, 2, 4), tune(5, 3, 4, 0)}, true, 3, 4},
		{"pending then grow", []command{tune(3, 2, 2, 5), tune(5, 3, 4, 0)}, false, 5, 0},
		{"pending above MaxRF refused", []command{tune(3, 2, 2, 6)}, true, 3, 0},
		{"pending not above N refused", []command{tune(3, 2, 2, 3)}, true, 3, 0},
		{"shrink needs no pending", []command{tune(3, 2, 2, 5), tune(5, 3, 4, 0), tune(3, 2, 2, 0)}, false, 3, 0},
		{"shrink below MinRF refused", []command{tune(2, 1, 2, 0)}, true, 3, 0},
		{"R above N refused", []command{tune(3, 4, 2, 0)}, true, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFSM()
			applyCmd(t, f, 1, command{Op: "create", Keyspace: KeyspaceDef{Name: "ks", ReplicationFactor: 3, Level: "custom", R: 2, W: 2, Adaptive: goal}})
			var res applyResult
			for i, c := range tt.steps {
				res = applyCmd(t, f, uint64(i+2), c)
				if i < len(tt.steps)-1 && res.err != nil {
					t.Fatalf("step %d: %v", i+1, res.err)
				}
			}
			if gotErr := res.err != nil; gotErr != tt.wantErr {
				t.Fatalf("last step error = %v; want error %v", res.err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(res.err, ErrUnsafeTune) {
				t.Errorf("error = %v; want ErrUnsafeTune", res.err)
			}
			d, _ := f.Def("ks")
			if d.ReplicationFactor != tt.wantN || d.PendingN != tt.wantP {
				t.Errorf("N=%d PendingN=%d; want N=%d PendingN=%d", d.ReplicationFactor, d.PendingN, tt.wantN, tt.wantP)
			}
			if cfg := d.config(); cfg.N != d.ReplicationFactor || cfg.PendingN != d.PendingN {
				t.Errorf("coordinator config N=%d PendingN=%d; want the definition's", cfg.N, cfg.PendingN)
			}
		})
	}
}

// A user's alter keeps the PendingN of a grow in progress: otherwise the
// added replicas would miss writes before they count.
func TestAlterKeepsPendingN(t *testing.T) {
	f := newFSM()
	goal := &tuner.Goal{MaxStale: 0.001, Floor: tuner.FloorQuorum, MinRF: 3, MaxRF: 5, MinW: 1}
	applyCmd(t, f, 1, command{Op: "create", Keyspace: KeyspaceDef{Name: "ks", ReplicationFactor: 3, Level: "custom", R: 2, W: 2, Adaptive: goal}})
	if res := applyCmd(t, f, 2, command{Op: "tune", Keyspace: KeyspaceDef{Name: "ks", R: 2, W: 2, PendingN: 5}}); res.err != nil {
		t.Fatal(res.err)
	}
	if res := applyCmd(t, f, 3, command{Op: "alter", Keyspace: KeyspaceDef{Name: "ks", Level: "custom", R: 3, W: 2}}); res.err != nil {
		t.Fatal(res.err)
	}
	if d, _ := f.Def("ks"); d.PendingN != 5 || d.R != 3 {
		t.Errorf("after alter R=%d PendingN=%d; want R=3 PendingN=5", d.R, d.PendingN)
	}
}

// A snapshot taken after decision entries (which move no keyspace's epoch)
// restores the applied index to the snapshot's index, not to the highest
// epoch: a node that waits for that index (the configuration lease, a
// coordinator catching up) would otherwise wait for an entry it never
// applies again.
func TestRestoreSetsSnapshotIndex(t *testing.T) {
	f := newFSM()
	applyCmd(t, f, 1, command{Op: "create", Keyspace: KeyspaceDef{Name: "ks", ReplicationFactor: 3, Level: "quorum"}})
	for i := uint64(2); i <= 5; i++ {
		applyCmd(t, f, i, command{Op: "decision", Keyspace: KeyspaceDef{Name: "ks"}, Decision: json.RawMessage(`{"n":1}`)})
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := g.Applied(); got != 5 {
		t.Fatalf("applied after restore = %d; want the snapshot's index 5", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := g.WaitForIndex(ctx, 5); err != nil {
		t.Fatalf("waiting for the snapshot's index after restore: %v", err)
	}
	if d, ok := g.Def("ks"); !ok || d.Epoch != 1 {
		t.Fatalf("restored keyspace = %+v, %v; want epoch 1", d, ok)
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

// Node numbers come from the log: unique, stable, never reused, and the
// same on every node that applies the log, whatever the IDs hash to.
func TestNodeNumbersUnique(t *testing.T) {
	f := newFSM()
	ids := []string{"n1", "n2", "n3", "n2", "n4"}
	got := map[string]uint32{}
	for i, id := range ids {
		res := applyCmd(t, f, uint64(i+1), command{Op: "number", Node: id})
		if prev, ok := got[id]; ok && prev != res.number {
			t.Fatalf("%s renumbered from %d to %d", id, prev, res.number)
		}
		got[id] = res.number
	}
	seen := map[uint32]string{}
	for id, n := range got {
		if n == 0 {
			t.Fatalf("%s got number 0", id)
		}
		if other, dup := seen[n]; dup {
			t.Fatalf("%s and %s share number %d", id, other, n)
		}
		seen[n] = id
	}
	snap, _ := f.Snapshot()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	for id, n := range got {
		if m, ok := g.Number(id); !ok || m != n {
			t.Fatalf("after restore %s has number %d, %v; want %d", id, m, ok, n)
		}
	}
	if res := applyCmd(t, g, 10, command{Op: "number", Node: "n5"}); seen[res.number] != "" {
		t.Fatalf("n5 got number %d, already %s's", res.number, seen[res.number])
	}
}

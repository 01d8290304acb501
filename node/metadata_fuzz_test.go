package node

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/adaptkv/adaptkv/tuner"
)

// bufferSink is a raft.SnapshotSink in memory.
type bufferSink struct{ bytes.Buffer }

func (s *bufferSink) ID() string    { return "fuzz" }
func (s *bufferSink) Cancel() error { return nil }
func (s *bufferSink) Close() error  { return nil }

// persisted is the state of f as its snapshot encodes it.
func persisted(t *testing.T, f *fsm) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("persist the metadata snapshot: %v", err)
	}
	return sink.Bytes()
}

// checkRoundTrip restores f's snapshot into a fresh state machine and
// requires the same keyspaces and decisions back.
func checkRoundTrip(t *testing.T, f *fsm) {
	t.Helper()
	b := persisted(t, f)
	g := newFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatalf("restore of a persisted snapshot: %v\n%s", err, b)
	}
	if again := persisted(t, g); !bytes.Equal(again, b) {
		t.Fatalf("snapshot round trip changed the state:\n%s\n%s", b, again)
	}
	if !reflect.DeepEqual(g.Defs(), f.Defs()) {
		t.Fatalf("restored keyspaces %+v, want %+v", g.Defs(), f.Defs())
	}
}

func metadataSeeds() [][]byte {
	goal := &tuner.Goal{MaxStale: 0.01, MinRF: 3, MaxRF: 5, MinW: 1}
	cmds := []command{
		{Op: "create", Keyspace: KeyspaceDef{Name: "ks", ReplicationFactor: 3, Level: "quorum"}, AtUnixMs: 1},
		{Op: "create", Keyspace: KeyspaceDef{Name: "ad", ReplicationFactor: 3, Level: "custom", R: 2, W: 2, Adaptive: goal}, AtUnixMs: 2},
		{Op: "tune", Keyspace: KeyspaceDef{Name: "ad", PendingN: 4, R: 2, W: 2}, AtUnixMs: 3},
		{Op: "tune", Keyspace: KeyspaceDef{Name: "ad", ReplicationFactor: 4, R: 3, W: 2, ReadAll: true, HedgeAfterNs: 5}, AtUnixMs: 4},
		{Op: "alter", Keyspace: KeyspaceDef{Name: "ks", Level: "all"}, AtUnixMs: 5},
		{Op: "decision", Keyspace: KeyspaceDef{Name: "ad"}, Decision: json.RawMessage(`{"reason":"x"}`), PrevObserved: json.RawMessage(`{"reads":1}`)},
	}
	var all [][]byte
	var lines []byte
	for _, c := range cmds {
		b, _ := json.Marshal(c)
		all = append(all, b)
		lines = append(append(lines, b...), '\n')
	}
	return append(all, lines, []byte(`{"op":"tune","keyspace":{"name":"ks","r":9}}`), []byte(`{"op":"nope"}`), []byte("{"))
}

// FuzzMetadataApply feeds arbitrary metadata log entries, one per line, to
// the state machine every node applies them with. It never panics; every
// entry advances the applied index; a refused entry changes nothing; an
// accepted configuration change is stored as returned, at the entry's index;
// a tuner step never leaves R or W outside 1..N nor moves N outside the
// goal's bounds; and the resulting state survives a snapshot round trip.
func FuzzMetadataApply(f *testing.F) {
	for _, s := range metadataSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := newFSM()
		for i, entry := range bytes.Split(b, []byte("\n")) {
			index := uint64(i + 1)
			before := m.Defs()
			var c command
			_ = json.Unmarshal(entry, &c)
			res, ok := m.Apply(&raft.Log{Index: index, Data: entry}).(applyResult)
			if !ok {
				t.Fatalf("entry %d: Apply returned %T", index, res)
			}
			if got := m.Applied(); got != index {
				t.Fatalf("entry %d: applied index %d", index, got)
			}
			if res.err != nil {
				if after := m.Defs(); !reflect.DeepEqual(after, before) {
					t.Fatalf("entry %d refused (%v) but changed the keyspaces:\n%+v\n%+v", index, res.err, before, after)
				}
				continue
			}
			if c.Op == "decision" {
				continue
			}
			stored, found := m.Def(res.def.Name)
			if !found || !reflect.DeepEqual(stored, res.def) || stored.Epoch != index {
				t.Fatalf("entry %d (%s) returned %+v but stored %+v (found %v)", index, c.Op, res.def, stored, found)
			}
			if c.Op == "tune" {
				// The goal's bounds bind a change of N; the log does not
				// re-validate what a create entry (checked by the proposer)
				// already put there.
				d, g := stored, stored.Adaptive
				var oldN int
				for _, o := range before {
					if o.Name == d.Name {
						oldN = o.ReplicationFactor
					}
				}
				if d.R < 1 || d.R > d.ReplicationFactor || d.W < 1 || d.W > d.ReplicationFactor ||
					d.ReplicationFactor != oldN && (d.ReplicationFactor < g.MinRF || d.ReplicationFactor > g.MaxRF) ||
					(d.PendingN != 0 && d.PendingN <= d.ReplicationFactor) {
					t.Fatalf("entry %d: tune left %q at N=%d R=%d W=%d pending %d, goal %d..%d", index, d.Name, d.ReplicationFactor, d.R, d.W, d.PendingN, g.MinRF, g.MaxRF)
				}
			}
		}
		checkRoundTrip(t, m)
	})
}

// FuzzMetadataRestore feeds arbitrary bytes to the metadata snapshot
// decoder, which reads snapshots from disk and from the leader. It never
// panics; a snapshot it refuses leaves the state as it was; one it accepts
// survives a snapshot round trip unchanged.
func FuzzMetadataRestore(f *testing.F) {
	m := newFSM()
	for i, s := range metadataSeeds() {
		m.Apply(&raft.Log{Index: uint64(i + 1), Data: s})
	}
	var sink bufferSink
	snap, _ := m.Snapshot()
	if err := snap.Persist(&sink); err != nil {
		f.Fatal(err)
	}
	f.Add(sink.Bytes())
	f.Add([]byte(`{"keyspaces":{"a":{"name":"a","rf":1,"level":"one","epoch":7}},"decisions":{"a":[{"x":1}, 2]}}`))
	f.Add([]byte(`{"keyspaces":null}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"keyspaces":{"a":{"adaptive":{},"tuner":{}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := newFSM()
		m.Apply(&raft.Log{Index: 1, Data: metadataSeeds()[0]})
		before := persisted(t, m)
		if err := m.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
			if after := persisted(t, m); !bytes.Equal(after, before) {
				t.Fatalf("refused snapshot (%v) changed the state:\n%s\n%s", err, before, after)
			}
			return
		}
		checkRoundTrip(t, m)
	})
}

package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/storage"
)

// replicaTransport delivers hints to real Replicas on their own engines,
// in process: the fuzz target exercises the hint store and the replica's
// handling of what it reads back, not gRPC.
type replicaTransport struct {
	Transport
	replicas map[string]*Replica
	got      map[string][]*kvpb.Mutation
}

func (t *replicaTransport) Hint(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	r, ok := t.replicas[to]
	if !ok {
		r = NewReplica(storage.NewMemory(), nil, NewClock(nil))
		t.replicas[to] = r
	}
	resp, err := r.Hint(ctx, req)
	if err == nil {
		t.got[to] = append(t.got[to], req.GetMutations()...)
	}
	return resp, err
}

// hintRecords parses fuzz bytes as records of the hint keyspace:
// [key length][key][value length, 2 bytes][value], repeated.
func hintRecords(b []byte) []storage.Record {
	var out []storage.Record
	for len(b) > 0 {
		n := int(b[0])
		b = b[1:]
		if n > len(b) {
			n = len(b)
		}
		key := b[:n]
		b = b[n:]
		var val []byte
		if len(b) >= 2 {
			m := int(binary.BigEndian.Uint16(b))
			b = b[2:]
			m = min(m, len(b))
			val, b = b[:m], b[m:]
		}
		if len(key) > 0 {
			out = append(out, storage.Record{Key: bytes.Clone(key), Value: bytes.Clone(val), Version: storage.Version{Timestamp: 1}})
		}
	}
	return out
}

// deliverable is the oracle of which stored hints a replica can take: a
// mutation with a keyspace the engine accepts and a key.
func deliverable(m *kvpb.Mutation) bool {
	ks := m.GetKeyspace()
	return ks != "" && !strings.Contains(ks, "\x00") && len(m.GetRecord().GetKey()) > 0
}

func hintSeed(target string, seq uint64, m *kvpb.Mutation) []byte {
	k := hintKey(target, seq)
	v, _ := proto.Marshal(m)
	b := append([]byte{byte(len(k))}, k...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// FuzzHintStore feeds arbitrary hint records, as a previous run (or a
// damaged disk) left them in the engine, to a node's hint store, which
// reads them back at start and delivers them to real replicas. It never
// panics; it counts exactly the well-formed hints; delivery hands each
// replica exactly the stored mutations that decode, in the order they were
// stored, and leaves nothing pending behind, so that one bad hint cannot
// hold up the good ones behind it.
func FuzzHintStore(f *testing.F) {
	good := &kvpb.Mutation{Keyspace: "ks", Epoch: 3, Record: &kvpb.Record{Key: []byte("k"), Value: []byte("v"), Version: &kvpb.Version{Timestamp: 1 << 20, Node: 2}}}
	tomb := &kvpb.Mutation{Keyspace: "ks", Record: &kvpb.Record{Key: []byte("gone"), Tombstone: true, Version: &kvpb.Version{Timestamp: 5}}}
	f.Add(hintSeed("n2", 1, good))
	f.Add(append(hintSeed("n2", 2, good), hintSeed("n3", 1, tomb)...))
	f.Add(append(hintSeed("n2", 1, good), []byte("\x0bn2\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x02\xff\xff")...))
	f.Add([]byte("\x03n2\x00\x00\x00"))
	f.Add(hintSeed("n2", 1, &kvpb.Mutation{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ctx := context.Background()
		engine := storage.NewMemory()
		recs := hintRecords(b)
		want := map[string][]*kvpb.Mutation{} // per target, in key order
		wellFormed := 0
		if len(recs) > 0 {
			muts := make([]storage.Mutation, len(recs))
			for i, r := range recs {
				muts[i] = storage.Mutation{Keyspace: hintKeyspace, Record: r}
			}
			if _, err := engine.Apply(ctx, muts); err != nil {
				t.Fatal(err)
			}
		}
		stored, err := engine.Scan(hintKeyspace, nil, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range stored {
			target, _, ok := splitHintKey(r.Key)
			if !ok {
				continue
			}
			wellFormed++
			if re := hintKey(target, binary.BigEndian.Uint64(r.Key[len(target)+1:])); !bytes.Equal(re, r.Key) {
				t.Fatalf("hint key %q splits into %q, which encodes to %q", r.Key, target, re)
			}
			m := &kvpb.Mutation{}
			if proto.Unmarshal(r.Value, m) == nil && deliverable(m) {
				want[target] = append(want[target], m)
			}
		}

		// The clock stands at the epoch, so that no fuzzed sequence number
		// (a hint's store time) is past the hint window: expiry has tests
		// of its own.
		h, err := NewHintStore(engine, HintOptions{MaxHints: 1 << 20, Now: func() time.Time { return time.Unix(0, 0) }})
		if err != nil {
			t.Fatalf("NewHintStore over %d stored records: %v", len(stored), err)
		}
		if h.Pending() != wellFormed {
			t.Fatalf("Pending() = %d after start; %d well-formed hints are stored", h.Pending(), wellFormed)
		}
		tr := &replicaTransport{replicas: map[string]*Replica{}, got: map[string][]*kvpb.Mutation{}}
		var targets []string
		for id, ts := range h.targets {
			if ts.count > 0 {
				targets = append(targets, id)
			}
		}
		slices.Sort(targets)
		for _, target := range targets {
			if _, err := h.Deliver(ctx, tr, target, 3); err != nil {
				t.Fatalf("deliver to %q: %v", target, err)
			}
			if p := h.PendingFor(target); p != 0 {
				t.Fatalf("PendingFor(%q) = %d after a complete delivery", target, p)
			}
		}
		if h.Pending() != 0 {
			t.Fatalf("Pending() = %d after every target was delivered", h.Pending())
		}
		for target, ms := range want {
			got := tr.got[target]
			if len(got) != len(ms) {
				t.Fatalf("target %q received %d hints, want %d", target, len(got), len(ms))
			}
			for i := range ms {
				if !proto.Equal(got[i], ms[i]) {
					t.Fatalf("target %q hint %d = %v, want %v", target, i, got[i], ms[i])
				}
			}
		}
		for target := range tr.got {
			if len(want[target]) == 0 && len(tr.got[target]) > 0 {
				t.Fatalf("target %q received %d hints none of which was stored for it", target, len(tr.got[target]))
			}
		}
	})
}

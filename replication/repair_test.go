package replication

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/storage"
)

func TestPlanRepair(t *testing.T) {
	rg := ring.New([]ring.Member{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}, 64)
	var recs []storage.Record
	for i := range 200 {
		recs = append(recs, storage.Record{Key: []byte(fmt.Sprintf("k%03d", i))})
	}
	for _, n := range []int{1, 2, 3, 4} {
		for _, self := range []string{"a", "d", "nobody"} {
			plan := PlanRepair("ks", recs, rg, n, self)
			got := map[string][]int{}
			for i, b := range plan {
				if i > 0 && plan[i-1].Target >= b.Target {
					t.Errorf("n=%d self=%s: targets not sorted: %q before %q", n, self, plan[i-1].Target, b.Target)
				}
				if b.Target == self {
					t.Errorf("n=%d self=%s: plan pushes to self", n, self)
				}
				if !slices.IsSorted(b.Records) {
					t.Errorf("n=%d self=%s: records of %s not in page order", n, self, b.Target)
				}
				got[b.Target] = b.Records
			}
			// Every record goes to exactly its preference list minus self.
			for i, r := range recs {
				for _, id := range rg.PreferenceList("ks", r.Key, n) {
					if id == self {
						continue
					}
					if !slices.Contains(got[id], i) {
						t.Errorf("n=%d self=%s: record %d not planned for its replica %s", n, self, i, id)
					}
				}
			}
			total := 0
			for _, idx := range got {
				total += len(idx)
			}
			want := 0
			for _, r := range recs {
				for _, id := range rg.PreferenceList("ks", r.Key, n) {
					if id != self {
						want++
					}
				}
			}
			if total != want {
				t.Errorf("n=%d self=%s: %d record pushes planned; want %d", n, self, total, want)
			}
		}
	}
	if p := PlanRepair("ks", nil, rg, 3, "a"); len(p) != 0 {
		t.Errorf("empty page planned %v", p)
	}
}

func TestChunkRecords(t *testing.T) {
	rec := func(size int) storage.Record { return storage.Record{Key: []byte("k"), Value: make([]byte, size-1)} }
	recs := []storage.Record{rec(10), rec(10), rec(10), rec(100), rec(10), rec(5)}
	all := []int{0, 1, 2, 3, 4, 5}
	tests := []struct {
		name              string
		idx               []int
		maxCount, maxSize int
		want              [][]int
	}{
		{"no limit hit", all, 100, 1000, [][]int{{0, 1, 2, 3, 4, 5}}},
		{"by count", all, 2, 1000, [][]int{{0, 1}, {2, 3}, {4, 5}}},
		{"by bytes, big record alone", all, 100, 30, [][]int{{0, 1, 2}, {3}, {4, 5}}},
		{"exact fit", []int{0, 1}, 100, 20, [][]int{{0, 1}}},
		{"one over", []int{0, 1}, 100, 19, [][]int{{0}, {1}}},
		{"subset keeps order", []int{5, 3, 0}, 100, 1000, [][]int{{5, 3, 0}}},
		{"empty", nil, 10, 10, nil},
		{"zero limits mean one", []int{0, 1}, 0, 0, [][]int{{0}, {1}}},
	}
	for _, tt := range tests {
		got := ChunkRecords(recs, tt.idx, tt.maxCount, tt.maxSize)
		if !slices.EqualFunc(got, tt.want, slices.Equal) {
			t.Errorf("%s: ChunkRecords = %v; want %v", tt.name, got, tt.want)
		}
		// Appending to a chunk must not overwrite the next one.
		if len(got) > 1 {
			before := slices.Clone(got[1])
			_ = append(got[0], 99)
			if !slices.Equal(got[1], before) {
				t.Errorf("%s: chunks share capacity", tt.name)
			}
		}
	}
}

type fixedKeyspaces struct{ cfg KeyspaceConfig }

func (f fixedKeyspaces) Keyspace(name string) (KeyspaceConfig, bool) {
	return f.cfg, name == f.cfg.Name
}
func (f fixedKeyspaces) WaitForIndex(ctx context.Context, index uint64) error {
	if index <= f.cfg.Epoch {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}
func (f fixedKeyspaces) Applied() uint64 { return f.cfg.Epoch }

func TestReplicaDigest(t *testing.T) {
	ctx := context.Background()
	eng := storage.NewMemory()
	v := func(ts uint64) storage.Version { return storage.Version{Timestamp: ts, Node: 1} }
	if _, err := eng.Apply(ctx, []storage.Mutation{
		{Keyspace: "ks", Record: storage.Record{Key: []byte("same"), Value: []byte("x"), Version: v(10)}},
		{Keyspace: "ks", Record: storage.Record{Key: []byte("older"), Value: []byte("x"), Version: v(10)}},
		{Keyspace: "ks", Record: storage.Record{Key: []byte("newer"), Value: []byte("x"), Version: v(30)}},
		{Keyspace: "ks", Record: storage.Record{Key: []byte("dead"), Tombstone: true, Version: v(10)}},
	}); err != nil {
		t.Fatal(err)
	}
	r := NewReplica(eng, fixedKeyspaces{KeyspaceConfig{Name: "ks", N: 3, Epoch: 5}}, NewClock(nil))
	entry := func(k string, ts uint64) *kvpb.DigestEntry {
		return &kvpb.DigestEntry{Key: []byte(k), Version: VersionToPB(v(ts))}
	}
	resp, err := r.Digest(ctx, &kvpb.ReplicaDigestRequest{Keyspace: "ks", Epoch: 5, Entries: []*kvpb.DigestEntry{
		entry("same", 10),   // 0: equal: not behind
		entry("older", 20),  // 1: replica older: behind
		entry("newer", 20),  // 2: replica newer: not behind
		entry("missing", 1), // 3: replica lacks it: behind
		entry("dead", 10),   // 4: same tombstone: not behind
		entry("dead", 11),   // 5: a newer write than the replica's tombstone: behind
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{1, 3, 5}; !slices.Equal(resp.GetBehind(), want) {
		t.Errorf("behind = %v; want %v", resp.GetBehind(), want)
	}
	// A coordinator on an older epoch is told the newer one, and nothing
	// else.
	resp, err = r.Digest(ctx, &kvpb.ReplicaDigestRequest{Keyspace: "ks", Epoch: 4, Entries: []*kvpb.DigestEntry{entry("missing", 1)}})
	if err != nil || resp.GetKnownEpoch() != 5 || len(resp.GetBehind()) != 0 {
		t.Errorf("stale epoch: %v, %v; want known epoch 5 and no answer", resp, err)
	}
	if _, err := r.Digest(ctx, &kvpb.ReplicaDigestRequest{Keyspace: "ks", Epoch: 5, Entries: []*kvpb.DigestEntry{{}}}); err == nil {
		t.Error("empty key accepted")
	}
}

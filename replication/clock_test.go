package replication

import (
	"context"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// A write coordinated after a read of version v gets a version above v, so
// that last writer wins keeps it, even when the coordinator's physical clock
// is behind the node that stamped v (skewed, or it never saw the write):
// every version the coordinator sees moves its hybrid clock. Reference:
// Kulkarni et al., "Logical Physical Clocks" (2014), receive rule.
func TestWriteAfterReadOrdersAfterIt(t *testing.T) {
	ctx := context.Background()
	key := []byte("k")
	tests := []struct {
		name string
		// held is the rank (in the preference list) of the replicas holding
		// the newer version; the others hold an older one.
		held []int
		// slow delays the replicas holding the newer version, so that the
		// read answers before their replies arrive.
		slow bool
		// slowOthers delays the replicas holding the older version, so
		// that the newer version's digests arrive before the value read
		// and the read must fetch the newest value (else the read may
		// answer the older value before the digests arrive, and a write
		// after it need only order after that).
		slowOthers bool
		read       func(f *fixture) error
	}{
		{"quorum read, full reply", []int{0, 1, 2}, false, false, func(f *fixture) error {
			_, err := f.coord.Get(ctx, "ks", key, Consistency{Level: quorum.Quorum})
			return err
		}},
		{"read at one, newest only in a digest", []int{1, 2}, false, true, func(f *fixture) error {
			_, err := f.coord.Get(ctx, "ks", key, Consistency{Level: quorum.One})
			return err
		}},
		{"read at one, newest only in late replies", []int{1, 2}, true, false, func(f *fixture) error {
			_, err := f.coord.Get(ctx, "ks", key, Consistency{Level: quorum.One})
			return err
		}},
		{"scan", []int{0, 1, 2}, false, false, func(f *fixture) error {
			_, err := f.coord.Scan(ctx, "ks", nil, nil, 10, Consistency{Level: quorum.Quorum})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 3, 3)
			// The coordinator's physical clock is an hour behind the node
			// that wrote the newer version.
			f.coord.cfg.Clock = NewClock(func() time.Time { return time.Now().Add(-time.Hour) })
			now := uint64(time.Now().UnixMilli()) << logicalBits
			older := storage.Record{Key: key, Value: []byte("older"), Version: storage.Version{Timestamp: now - 1000<<logicalBits, Node: 1}}
			newer := storage.Record{Key: key, Value: []byte("newer"), Version: storage.Version{Timestamp: now, Node: 1}}
			replicas := f.net.Ring().PreferenceList("ks", key, 3)
			for rank, id := range replicas {
				rec := older
				if tt.slowOthers {
					f.net.mu.Lock()
					f.net.slow[id] = 30 * time.Millisecond
					f.net.mu.Unlock()
				}
				for _, h := range tt.held {
					if h == rank {
						rec = newer
						if tt.slowOthers {
							f.net.mu.Lock()
							delete(f.net.slow, id)
							f.net.mu.Unlock()
						}
						if tt.slow {
							f.net.mu.Lock()
							f.net.slow[id] = 30 * time.Millisecond
							f.net.mu.Unlock()
						}
					}
				}
				if _, err := f.net.engines[id].Apply(ctx, []storage.Mutation{{Keyspace: "ks", Record: rec}}); err != nil {
					t.Fatal(err)
				}
			}
			if err := tt.read(f); err != nil {
				t.Fatal(err)
			}
			if tt.slow {
				// The late replies are compared (and the stale replica
				// repaired) in the background.
				waitFor(t, "background repair of the stale replica", func() bool {
					rec, _ := f.local(t, replicas[0], "k")
					return string(rec.Value) == "newer"
				})
			}
			f.net.mu.Lock()
			clear(f.net.slow)
			f.net.mu.Unlock()
			v, _, err := f.coord.Put(ctx, "ks", key, []byte("mine"), Consistency{Level: quorum.All})
			if err != nil {
				t.Fatal(err)
			}
			if !newer.Version.Less(v) {
				t.Errorf("write after the read got version %v, not above the version read %v: last writer wins drops it", v, newer.Version)
			}
			res, err := f.coord.Get(ctx, "ks", key, Consistency{Level: quorum.All})
			if err != nil || string(res.Record.Value) != "mine" {
				t.Errorf("read after the write = %q, %v; want the acknowledged write", res.Record.Value, err)
			}
		})
	}
}

// A replica that receives a digest moves its clock past the versions in it:
// it may coordinate the next write of those keys.
func TestDigestObservesVersions(t *testing.T) {
	eng := storage.NewMemory()
	defer eng.Close()
	clock := NewClock(func() time.Time { return time.Now().Add(-time.Hour) })
	r := NewReplica(eng, fixedKeyspaces{KeyspaceConfig{Name: "ks", N: 3, Epoch: 5}}, clock)
	ts := uint64(time.Now().UnixMilli()) << logicalBits
	req := &kvpb.ReplicaDigestRequest{Keyspace: "ks", Epoch: 5, Entries: []*kvpb.DigestEntry{
		{Key: []byte("a"), Version: VersionToPB(storage.Version{Timestamp: ts, Node: 2})},
	}}
	if _, err := r.Digest(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := clock.Now(); got <= ts {
		t.Errorf("after a digest of version %d the clock reads %d", ts, got)
	}
}

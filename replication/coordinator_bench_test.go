package replication

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/replication/quorum"
)

// BenchmarkCoordinator measures the coordinator's CPU per operation over
// three in-memory replicas (real Replica code, no network), with the
// coordinator a replica of every key as in a 3-node cluster at N=3: the
// cost of the request path itself, goroutines and allocations included.
func BenchmarkCoordinator(b *testing.B) {
	for _, bc := range []struct {
		name  string
		write bool
		level quorum.Level
	}{
		{"get/one", false, quorum.One},
		{"get/quorum", false, quorum.Quorum},
		{"put/one", true, quorum.One},
		{"put/quorum", true, quorum.Quorum},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, 3, 3)
			c := NewCoordinator(Config{
				NodeID: "n1", NodeNumber: 1, Transport: f.net, Topology: f.net,
				Keyspaces: f.cmeta, Hints: f.hints, Clock: NewClock(nil), ReplicaTimeout: time.Second,
				ReadRepairChance: -1,
			})
			ctx := context.Background()
			cons := Consistency{Level: bc.level}
			keys := make([][]byte, 1024)
			for i := range keys {
				keys[i] = []byte(fmt.Sprintf("key-%04d", i))
				if _, _, err := c.Put(ctx, "ks", keys[i], []byte("value"), Consistency{Level: quorum.All}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				key := keys[i%len(keys)]
				var err error
				if bc.write {
					_, _, err = c.Put(ctx, "ks", key, []byte("value"), cons)
				} else {
					_, err = c.Get(ctx, "ks", key, cons)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package replication

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/replication/paxos"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// BenchmarkCoordinator measures the coordinator's CPU per operation over
// three in-memory replicas (real Replica code, no network), with the
// coordinator a replica of every key as in a 3-node cluster at N=3: the
// cost of the request path itself, goroutines and allocations included.
func BenchmarkCoordinator(b *testing.B) {
	for _, bc := range []struct {
		name   string
		write  bool
		level  quorum.Level
		putIf  bool // a PutIf(IfVersion(the version it last wrote)) of its own key
		pebble bool // replicas over pebble (temporary directories) instead of memory
	}{
		{name: "get/one", level: quorum.One},
		{name: "get/quorum", level: quorum.Quorum},
		{name: "put/one", write: true, level: quorum.One},
		{name: "put/quorum", write: true, level: quorum.Quorum},
		{name: "get/linearizable", level: quorum.Linearizable},
		{name: "get/linearizable/pebble", level: quorum.Linearizable, pebble: true},
		{name: "putif", putIf: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, 3, 3)
			if bc.pebble {
				for id := range f.net.engines {
					eng, err := storage.OpenPebble(b.TempDir(), storage.Options{})
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { eng.Close() })
					f.net.engines[id], f.net.replicas[id] = eng, NewReplica(eng, f.meta, NewClock(nil))
				}
			}
			c := NewCoordinator(Config{
				NodeID: "n1", NodeNumber: 1, Transport: f.net, Topology: f.net,
				Keyspaces: f.cmeta, Hints: f.hints, Clock: NewClock(nil), ReplicaTimeout: time.Second,
				ReadRepairChance: -1,
			})
			ctx := context.Background()
			cons := Consistency{Level: bc.level}
			keys := make([][]byte, 1024)
			versions := make([]storage.Version, len(keys))
			for i := range keys {
				keys[i] = []byte(fmt.Sprintf("key-%04d", i))
				v, _, err := c.Put(ctx, "ks", keys[i], []byte("value"), Consistency{Level: quorum.All})
				if err != nil {
					b.Fatal(err)
				}
				versions[i] = v
			}
			b.ReportAllocs()
			cpu0 := processCPU(b)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				key := keys[i%len(keys)]
				var err error
				switch {
				case bc.putIf:
					var res CondResult
					res, err = c.CondPut(ctx, "ks", key, []byte("value"), paxos.Condition{Kind: paxos.IfVersion, Version: versions[i%len(keys)]}, Consistency{})
					if err == nil && !res.Applied {
						b.Fatalf("uncontended PutIf not applied: %+v", res)
					}
					versions[i%len(keys)] = res.Record.Version
				case bc.write:
					_, _, err = c.Put(ctx, "ks", key, []byte("value"), cons)
				default:
					_, err = c.Get(ctx, "ks", key, cons)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// The process's CPU time per op, background goroutines and GC
			// included: on a machine shared with other work, ns/op (wall
			// time) measures the neighbours more than the code.
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package replication

import (
	"context"
	"fmt"
	"testing"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication/paxos"
	"github.com/adaptkv/adaptkv/storage"
)

// BenchmarkReplicaPaxos measures one acceptor's work per message over
// pebble, on distinct keys, against a plain unsynced write of the same
// record: what a conditional write costs each replica beyond the network.
// cpu-sec/op is the process's CPU time (pebble's background work
// included).
func BenchmarkReplicaPaxos(b *testing.B) {
	for _, bc := range []string{"lazy-commit/non-acceptor", "lazy-commit/acceptor", "lazy-commits/batch-16", "record-write/unsynced"} {
		b.Run(bc, func(b *testing.B) {
			f := newFixture(b, 1, 1)
			eng, err := storage.OpenPebble(b.TempDir(), storage.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { eng.Close() })
			r := NewReplica(eng, f.meta, NewClock(nil))
			ctx := context.Background()
			prop := func(i int) paxos.Proposal {
				key := []byte(fmt.Sprintf("key-%08d", i))
				return paxos.Proposal{Ballot: paxos.Ballot{Counter: uint64(i + 1), Node: 1},
					Record: storage.Record{Key: key, Value: make([]byte, 128), Version: storage.Version{Timestamp: uint64(i + 1), Node: 1}}}
			}
			n := 0
			if bc == "lazy-commit/acceptor" {
				// Accepted first (synced), outside the measure.
				n = 20000
				for i := range n {
					p := prop(i)
					if _, err := r.Paxos(ctx, &kvpb.PaxosRequest{Kind: kvpb.PaxosRequest_PROPOSE, Keyspace: "ks", Epoch: 1, Key: p.Record.Key, Proposal: ProposalToPB(p)}); err != nil {
						b.Fatal(err)
					}
				}
			}
			cpu0 := processCPU(b)
			b.ResetTimer()
			i := 0
			var batch []*kvpb.PaxosRequest
			for ; b.Loop(); i++ {
				p := prop(i % max(n, 1<<30))
				switch bc {
				case "lazy-commits/batch-16":
					batch = append(batch, &kvpb.PaxosRequest{Kind: kvpb.PaxosRequest_COMMIT, Keyspace: "ks", Epoch: 1, Key: p.Record.Key, Proposal: ProposalToPB(p), Lazy: true})
					if len(batch) == 16 {
						err = r.LazyCommits(ctx, batch)
						batch = batch[:0]
					}
				case "record-write/unsynced":
					_, err = eng.ApplyUnsynced(ctx, []storage.Mutation{{Keyspace: "ks", Record: p.Record}})
				default:
					_, err = r.Paxos(ctx, &kvpb.PaxosRequest{Kind: kvpb.PaxosRequest_COMMIT, Keyspace: "ks", Epoch: 1, Key: p.Record.Key, Proposal: ProposalToPB(p), Lazy: true})
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(i)/1e9, "cpu-sec/op")
		})
	}
}

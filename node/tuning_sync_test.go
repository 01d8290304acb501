package node

import (
	"sync"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/tuner"
)

// syncRecorders runs from the tuner loop, what-if's gather and the
// TunerSnapshot RPC at once. When a keyspace becomes adaptive, every caller
// must end up recording into the same recorder: a second one installed over
// the first would lose what was recorded into the first.
func TestSyncRecordersConcurrent(t *testing.T) {
	for round := range 50 {
		n := &Node{meta: newFSM()}
		tn := newTuning(n, time.Second)
		applyCmd(t, n.meta, 1, command{Op: "create", Keyspace: KeyspaceDef{Name: "ks", ReplicationFactor: 3, Level: "custom", R: 2, W: 2,
			Adaptive: &tuner.Goal{MaxStale: 0.01, Floor: tuner.FloorQuorum, MinRF: 3, MaxRF: 3, MinW: 1}}})
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				tn.syncRecorders()
				// What the coordinator does right after: record a read.
				tn.ClientRead("ks", []byte("k"), time.Millisecond, 0, false)
			}()
		}
		close(start)
		wg.Wait()
		tn.syncRecorders()
		obs := tn.recorder("ks").rec.Snapshot(time.Now(), tuner.Policy{N: 3, R: 2, W: 2}, 3)
		if obs.Reads != 3 {
			t.Fatalf("round %d: the recorder in force counted %d of 3 reads; the others went to a recorder that was replaced", round, obs.Reads)
		}
	}
}

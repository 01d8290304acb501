package tuner

import (
	"sync"
	"testing"
	"time"
)

// The tuner loop, what-if's gather and the TunerSnapshot RPC take snapshots
// of one recorder at the same time as the coordinator records into it: no
// race (under -race), and every recorded read and probe lands in exactly
// one snapshot.
func TestRecorderConcurrentSnapshots(t *testing.T) {
	r := NewRecorder("ks", []string{"a", "b", "c"}, time.Now())
	const writers, perWriter = 4, 2000
	var (
		mu             sync.Mutex
		reads, probed  uint64
		wg, snapshotWG sync.WaitGroup
	)
	stop := make(chan struct{})
	take := func() {
		o := r.Snapshot(time.Now(), Policy{N: 3, R: 2, W: 2}, 3)
		mu.Lock()
		reads += o.Reads
		probed += o.Probed
		mu.Unlock()
	}
	for range 3 { // loop, gather, RPC
		snapshotWG.Add(1)
		go func() {
			defer snapshotWG.Done()
			for {
				select {
				case <-stop:
					return
				default:
					take()
				}
			}
		}()
	}
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				r.Read(time.Duration(i) * time.Microsecond)
				r.Key(uint64(i))
				r.Probe(i%2 == 0, false)
				r.Leg(i%3, LegReadRTT, time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(stop)
	snapshotWG.Wait()
	take()
	if want := uint64(writers * perWriter); reads != want || probed != want {
		t.Fatalf("snapshots counted %d reads and %d probes; want %d of each", reads, probed, want)
	}
}

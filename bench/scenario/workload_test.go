package scenario

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestZipfMatchesItsDistribution(t *testing.T) {
	z := newZipf(1000, zipfTheta)
	r := rand.New(rand.NewPCG(1, 2))
	const n = 200000
	counts := make([]int, 1000)
	for range n {
		counts[z.next(r)]++
	}
	// Ranks 0 and 1 are drawn exactly; beyond them the method of Gray et
	// al. approximates the distribution (YCSB's has the same bias), so the
	// next ranks and the head's share are checked loosely.
	for i := range 2 {
		p := z.prob(i)
		got := float64(counts[i]) / n
		if se := math.Sqrt(p * (1 - p) / n); math.Abs(got-p) > 5*se {
			t.Errorf("rank %d: frequency %.4f, want %.4f", i, got, p)
		}
	}
	head, want := 0, 0.0
	for i := range 20 {
		head += counts[i]
		want += z.prob(i)
		if p, got := z.prob(i), float64(counts[i])/n; got < p/1.5 || got > p*1.5 {
			t.Errorf("rank %d: frequency %.4f, want about %.4f", i, got, p)
		}
	}
	if got := float64(head) / n; math.Abs(got-want) > 0.05*want {
		t.Errorf("top 20 ranks drew %.3f of the draws, want about %.3f", got, want)
	}
}

func TestWorkloadIsDeterministic(t *testing.T) {
	a := newWorkload(7, 0, Phases[0], 1000, 10*time.Millisecond)
	b := newWorkload(7, 0, Phases[0], 1000, 10*time.Millisecond)
	reads := 0
	for i := range uint64(10000) {
		// Any order of taking operations gives the same operations.
		oa, ob := a.at(i), b.at(9999-i)
		if oa != a.at(i) {
			t.Fatal("the same index gave two operations")
		}
		_ = ob
		if oa.Read {
			reads++
		}
	}
	for i := range uint64(100) {
		if a.at(i) != b.at(i) {
			t.Fatalf("op %d differs between two workloads with the same seed", i)
		}
	}
	if share := float64(reads) / 10000; math.Abs(share-0.95) > 0.01 {
		t.Fatalf("read share %.3f, want 0.95", share)
	}
	other := newWorkload(7, 1, Phases[1], 1000, 10*time.Millisecond)
	same := 0
	for i := range uint64(100) {
		if other.at(i) == a.at(i) {
			same++
		}
	}
	if same > 50 {
		t.Fatalf("phases 0 and 1 share %d of 100 operations; they should differ", same)
	}
}

func TestReadAfterWriteWorkload(t *testing.T) {
	w := newWorkload(1, 2, Phases[2], 100, 10*time.Millisecond)
	if w.opsPerUnit() != 2 {
		t.Fatalf("opsPerUnit = %d, want 2", w.opsPerUnit())
	}
	for i := range uint64(1000) {
		o := w.at(i)
		if !o.Write || !o.Read {
			t.Fatalf("op %d is not a write then a read: %+v", i, o)
		}
		if o.Delay < 0 || o.Delay > 10*time.Millisecond {
			t.Fatalf("op %d delay %v outside [0, 10ms]", i, o.Delay)
		}
		if o.Key < 0 || o.Key >= 100 {
			t.Fatalf("op %d key %d outside the key space", i, o.Key)
		}
	}
}

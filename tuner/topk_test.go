package tuner

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestTopKExactWhenFewKeys(t *testing.T) {
	tk := NewTopK(4)
	for k, n := range map[uint64]uint64{1: 10, 2: 5, 3: 1} {
		tk.Add(k, n)
	}
	tk.Add(9, 0) // no-op
	top := tk.Top()
	want := []KeyCount{{1, 10, 0}, {2, 5, 0}, {3, 1, 0}}
	if len(top) != len(want) {
		t.Fatalf("Top() = %v; want %v", top, want)
	}
	for i := range want {
		if top[i] != want[i] {
			t.Errorf("Top()[%d] = %v; want %v", i, top[i], want[i])
		}
	}
	if tk.Share() != 1 || tk.GuaranteedShare() != 1 || tk.Total() != 16 {
		t.Errorf("share %v guaranteed %v total %d; want 1, 1, 16", tk.Share(), tk.GuaranteedShare(), tk.Total())
	}
}

// Space-Saving's guarantees: every reported count overestimates by at most
// its Err, and every key with more than Total/m occurrences is tracked
// (m = 4k counters); the top-k share is close to the truth.
// Reference: Metwally et al., ICDT 2005, Lemmas 3.3 and 3.4.
func TestTopKGuarantees(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	const k = 16
	tk := NewTopK(k)
	truth := map[uint64]uint64{}
	// Zipf-like: key i with weight 1/i over 10,000 keys.
	z := rand.NewZipf(rng, 1.2, 1, 9999)
	const n = 200_000
	for i := 0; i < n; i++ {
		key := z.Uint64()
		truth[key]++
		tk.Add(key, 1)
	}
	tracked := map[uint64]KeyCount{}
	for _, kc := range tk.Top() {
		tracked[kc.Key] = kc
		tr := truth[kc.Key]
		if kc.Count < tr || kc.Count-kc.Err > tr {
			t.Errorf("key %d: count %d err %d; true %d must lie in [count−err, count]", kc.Key, kc.Count, kc.Err, tr)
		}
	}
	var counts []uint64
	for key, c := range truth {
		counts = append(counts, c)
		// Only the k largest are reported; check the guarantee for keys
		// frequent enough to be among them.
		if c > n/k {
			if _, ok := tracked[key]; !ok {
				t.Errorf("key %d with %d > N/k = %d occurrences is not reported", key, c, n/k)
			}
		}
	}
	slices.Sort(counts)
	var top uint64
	for _, c := range counts[len(counts)-k:] {
		top += c
	}
	trueShare := float64(top) / n
	s, g := tk.Share(), tk.GuaranteedShare()
	t.Logf("top-%d share: true %.4f, estimate %.4f, guaranteed %.4f", k, trueShare, s, g)
	if !(g <= trueShare+1e-9 && trueShare <= s+1e-9 && s-g < 0.05) {
		t.Errorf("share %v guaranteed %v; want guaranteed ≤ true %v ≤ share, within 5 points", s, g, trueShare)
	}
}

func TestSkewMerge(t *testing.T) {
	a := Skew{K: 16, Sampled: 100, TopShare: 0.9}
	b := Skew{K: 16, Sampled: 300, TopShare: 0.1}
	if got := a.merge(b); got.Sampled != 400 || got.TopShare != 0.3 {
		t.Errorf("merge = %+v; want 400 samples, share 0.3", got)
	}
	if got := (Skew{}).merge(Skew{K: 8}); got.K != 8 || got.TopShare != 0 {
		t.Errorf("merge of empty = %+v", got)
	}
}

package bench

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func newRand() *rand.Rand { return rand.New(rand.NewPCG(42, 7)) }

// Reference: YCSB core/src/main/java/site/ycsb/Utils.java, fnvhash64; the
// values were computed with Java's signed 64-bit arithmetic. Record 0 is
// YCSB's familiar "user6284781860667377211".
func TestFNVHash64MatchesYCSB(t *testing.T) {
	for _, tt := range []struct {
		in   int64
		want uint64
	}{
		{0, 6284781860667377211},
		{1, 8517097267634966620},
		{2, 1820151046732198393},
		{12345, 1792800413050876852},
		{99999, 7592201923306675823},
	} {
		if got := FNVHash64(tt.in); got != tt.want {
			t.Errorf("FNVHash64(%d) = %d; want %d", tt.in, got, tt.want)
		}
	}
	if got, want := KeyName(0), "user6284781860667377211"; got != want {
		t.Errorf("KeyName(0) = %q; want %q", got, want)
	}
}

func TestZetaSmall(t *testing.T) {
	// zeta(2, θ) = 1 + 2^-θ.
	if got, want := Zeta(2, 0.99), 1+math.Pow(2, -0.99); math.Abs(got-want) > 1e-12 {
		t.Errorf("Zeta(2, 0.99) = %v; want %v", got, want)
	}
	// Extending a sum equals summing from scratch.
	if a, b := zetaFrom(500, 1000, 0.99, Zeta(500, 0.99)), Zeta(1000, 0.99); math.Abs(a-b) > 1e-9 {
		t.Errorf("zetaFrom(500, 1000) = %v; want Zeta(1000) = %v", a, b)
	}
}

// The most popular items' frequencies match 1/((i+1)^θ ζ(n, θ)). Gray's
// method is exact for items 0 and 1.
// Reference: Gray et al., "Quickly Generating Billion-Record Synthetic
// Databases", SIGMOD 1994.
func TestZipfianSkewMatchesZeta(t *testing.T) {
	const n, samples = 1000, 400_000
	z := NewZipfian(n, ZipfianConstant)
	r := newRand()
	counts := make([]int, n)
	for range samples {
		v := z.Next(r)
		if v < 0 || v >= n {
			t.Fatalf("Next() = %d, outside [0, %d)", v, n)
		}
		counts[v]++
	}
	for _, i := range []int64{0, 1} {
		got := float64(counts[i]) / samples
		want := z.Prob(i)
		// 5 binomial standard deviations.
		tol := 5 * math.Sqrt(want*(1-want)/samples)
		if math.Abs(got-want) > tol {
			t.Errorf("frequency of item %d = %.4f; want %.4f ± %.4f (1/((i+1)^θ ζ))", i, got, want, tol)
		}
	}
	// The rest decays: the first item outdraws the tenth by about 10^θ.
	if ratio := float64(counts[0]) / float64(counts[9]); ratio < 7 || ratio > 13 {
		t.Errorf("count[0]/count[9] = %.1f; want about 10^0.99 = 9.8", ratio)
	}
	if counts[0] <= counts[1] || counts[1] <= counts[10] || counts[10] <= counts[500] {
		t.Errorf("counts not decreasing: [0]=%d [1]=%d [10]=%d [500]=%d", counts[0], counts[1], counts[10], counts[500])
	}
}

// The scrambled zipfian keeps YCSB's skew (the hottest key draws 1/ζ(10^10,
// 0.99) ≈ 3.8 % whatever the record count) but scatters the hot keys over
// the key space instead of putting them first.
func TestScrambledZipfianSpreadsHotKeys(t *testing.T) {
	const n, samples = 100_000, 500_000
	s := NewScrambledZipfian(n)
	r := newRand()
	counts := make([]int, n)
	for range samples {
		v := s.Next(r)
		if v < 0 || v >= n {
			t.Fatalf("Next() = %d, outside [0, %d)", v, n)
		}
		counts[v]++
	}
	hottest := int64(FNVHash64(0) % n)
	got := float64(counts[hottest]) / samples
	want := 1 / scrambledZetan
	if math.Abs(got-want) > 0.1*want {
		t.Errorf("frequency of the hottest key %d = %.4f; want ≈ %.4f (1/ζ(10^10, 0.99))", hottest, got, want)
	}
	// The ten hottest keys are the hashes of the ten most popular zipfian
	// items, scattered: not packed at the start of the key space.
	keys := make([]int64, n)
	for i := range keys {
		keys[i] = int64(i)
	}
	sort.Slice(keys, func(a, b int) bool { return counts[keys[a]] > counts[keys[b]] })
	top := keys[:10]
	lo, hi := top[0], top[0]
	for _, k := range top {
		lo, hi = min(lo, k), max(hi, k)
	}
	if hi-lo < n/2 {
		t.Errorf("ten hottest keys %v lie within %d of each other; want them spread over the %d keys", top, hi-lo, n)
	}
	if top[0] != hottest {
		t.Errorf("hottest key = %d; want FNVHash64(0) %% n = %d", top[0], hottest)
	}
	// A plain zipfian puts about 60 % of its draws on the first 1 % of keys;
	// the scrambled one close to 1 %.
	first := 0
	for k := range n / 100 {
		first += counts[k]
	}
	if frac := float64(first) / samples; frac > 0.10 {
		t.Errorf("first 1%% of keys drew %.1f%% of requests; want the hot keys spread, not clustered", 100*frac)
	}
}

func TestUniformCoversRange(t *testing.T) {
	const n, samples = 100, 200_000
	u := NewUniform(n)
	r := newRand()
	counts := make([]int, n)
	for range samples {
		counts[u.Next(r)]++
	}
	want := samples / n
	for k, c := range counts {
		if c < want*8/10 || c > want*12/10 {
			t.Errorf("key %d drawn %d times; want %d ± 20%%", k, c, want)
		}
	}
}

func TestSkewedLatestFavoursRecentInserts(t *testing.T) {
	const n = 1000
	seq := NewAckCounter(n)
	l := NewSkewedLatest(seq)
	r := newRand()
	mode := func(samples int) (int64, int64, float64) {
		counts := map[int64]int{}
		var hi int64 = -1
		for range samples {
			v := l.Next(r)
			counts[v]++
			hi = max(hi, v)
		}
		var best int64
		for k, c := range counts {
			if c > counts[best] || (c == counts[best] && k > best) {
				best = k
			}
		}
		return best, hi, float64(counts[best]) / float64(samples)
	}
	best, hi, frac := mode(100_000)
	if best != n-1 || hi != n-1 {
		t.Errorf("most drawn = %d, highest = %d; want both %d (the newest key)", best, hi, n-1)
	}
	if frac < 0.1 {
		t.Errorf("newest key drew %.3f of requests; want a zipfian head (> 0.1)", frac)
	}
	// Insert 100 more: the newest moves, and nothing beyond it is drawn.
	for range 100 {
		seq.Ack(seq.Next())
	}
	best, hi, _ = mode(100_000)
	if best != n+99 || hi != n+99 {
		t.Errorf("after 100 inserts: most drawn = %d, highest = %d; want both %d", best, hi, n+99)
	}
	// An insert still in flight is never read.
	pending := seq.Next()
	if _, hi, _ = mode(10_000); hi >= pending {
		t.Errorf("drew key %d while its insert (%d) was not acknowledged", hi, pending)
	}
}

func TestAckCounterWaitsForGaps(t *testing.T) {
	c := NewAckCounter(10)
	if got := c.Last(); got != 9 {
		t.Fatalf("Last() = %d; want 9 (the loaded records)", got)
	}
	a, b, d := c.Next(), c.Next(), c.Next()
	c.Ack(d)
	c.Ack(b)
	if got := c.Last(); got != 9 {
		t.Errorf("Last() = %d with %d unacknowledged; want 9", got, a)
	}
	c.Ack(a)
	if got := c.Last(); got != d {
		t.Errorf("Last() = %d; want %d once every insert is acknowledged", got, d)
	}
	c.Ack(a) // a duplicate ack changes nothing
	if got := c.Last(); got != d {
		t.Errorf("Last() = %d after a duplicate ack; want %d", got, d)
	}
}

func TestNewKeyChooserRejectsBadInput(t *testing.T) {
	if _, err := NewKeyChooser(Zipfian, 0, nil); err == nil {
		t.Error("NewKeyChooser(zipfian, 0) succeeded; want an error")
	}
	if _, err := NewKeyChooser("pareto", 10, nil); err == nil {
		t.Error("NewKeyChooser(pareto) succeeded; want an error")
	}
	if _, err := ParseDistribution("pareto"); err == nil {
		t.Error("ParseDistribution(pareto) succeeded; want an error")
	}
}

func BenchmarkScrambledZipfian(b *testing.B) {
	s := NewScrambledZipfian(100_000)
	r := newRand()
	for b.Loop() {
		s.Next(r)
	}
}

func BenchmarkZipfian(b *testing.B) {
	z := NewZipfian(100_000, ZipfianConstant)
	r := newRand()
	for b.Loop() {
		z.Next(r)
	}
}

func BenchmarkUniform(b *testing.B) {
	u := NewUniform(100_000)
	r := newRand()
	for b.Loop() {
		u.Next(r)
	}
}

func BenchmarkSkewedLatest(b *testing.B) {
	seq := NewAckCounter(100_000)
	l := NewSkewedLatest(seq)
	r := newRand()
	i := 0
	for b.Loop() {
		if i++; i%20 == 0 { // workload D: 5 % inserts
			seq.Ack(seq.Next())
		}
		l.Next(r)
	}
}

func BenchmarkKeyName(b *testing.B) {
	var i int64
	for b.Loop() {
		i++
		_ = KeyName(i)
	}
}

func BenchmarkOpChooser(b *testing.B) {
	c, err := NewOpChooser(Workloads["b"])
	if err != nil {
		b.Fatal(err)
	}
	r := newRand()
	for b.Loop() {
		c.Next(r)
	}
}

// BenchmarkScrambledZipfianParallel shows that sharing one chooser among
// workers does not serialise them.
func BenchmarkScrambledZipfianParallel(b *testing.B) {
	s := NewScrambledZipfian(100_000)
	b.RunParallel(func(pb *testing.PB) {
		r := newRand()
		for pb.Next() {
			s.Next(r)
		}
	})
}

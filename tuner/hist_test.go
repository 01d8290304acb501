package tuner

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBucketLayout(t *testing.T) {
	// Every bucket's bounds map back to it, buckets tile the range without
	// gaps, and widths stay within 1/16 of the lower bound.
	var next int64
	for i := 0; i < histBuckets; i++ {
		lo, w := bucketBounds(i)
		if lo != next {
			t.Fatalf("bucket %d starts at %d; want %d (no gaps)", i, lo, next)
		}
		if got := bucketOf(lo); got != i {
			t.Fatalf("bucketOf(%d) = %d; want %d", lo, got, i)
		}
		if got := bucketOf(lo + w - 1); got != i {
			t.Fatalf("bucketOf(%d) = %d; want %d", lo+w-1, got, i)
		}
		if lo >= histLinear && float64(w) > float64(lo)/histSub {
			t.Fatalf("bucket %d: width %d over 1/16 of %d", i, w, lo)
		}
		next = lo + w
	}
	if next != histMaxValue+1 {
		t.Errorf("buckets end at %d; want %d", next, histMaxValue+1)
	}
	for _, tt := range []struct {
		v    int64
		want int
	}{{-5, 0}, {0, 0}, {31, 31}, {32, 32}, {33, 32}, {34, 33}, {63, 47}, {64, 48}, {math.MaxInt64, histBuckets - 1}} {
		if got := bucketOf(tt.v); got != tt.want {
			t.Errorf("bucketOf(%d) = %d; want %d", tt.v, got, tt.want)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	var h Hist
	if h.Quantile(0.5) != 0 || h.Mean() != 0 || h.Count() != 0 {
		t.Errorf("empty histogram: quantile %v mean %v count %d; want zeros", h.Quantile(0.5), h.Mean(), h.Count())
	}
	// Uniform 1..10000 µs: quantiles within the 1/32 half-bucket error.
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.01, 0.1, 0.5, 0.9, 0.99, 0.999} {
		want := q * 10000 * float64(time.Microsecond)
		got := float64(h.Quantile(q))
		if math.Abs(got-want) > want/32+float64(time.Microsecond) {
			t.Errorf("Quantile(%v) = %v; want %v ± 3%%", q, time.Duration(got), time.Duration(want))
		}
	}
	if h.Quantile(0) != time.Microsecond || h.Quantile(1) != 10*time.Millisecond {
		t.Errorf("Quantile(0), (1) = %v, %v; want the exact min and max", h.Quantile(0), h.Quantile(1))
	}
	if h.Mean() != 5000500*time.Nanosecond {
		t.Errorf("Mean() = %v; want exactly 5.0005ms", h.Mean())
	}
	// A single repeated value is returned exactly for every quantile.
	var c Hist
	c.RecordN(1234567*time.Nanosecond, 50)
	for _, q := range []float64{0, 0.3, 0.5, 0.99, 1} {
		if got := c.Quantile(q); got != 1234567*time.Nanosecond {
			t.Errorf("constant: Quantile(%v) = %v; want 1.234567ms", q, got)
		}
	}
	// Clamping: negatives count as zero, huge values as the maximum.
	var e Hist
	e.Record(-time.Second)
	e.Record(1000 * time.Hour)
	if e.Min() != 0 || e.Max() != time.Duration(histMaxValue) {
		t.Errorf("clamped min %v max %v; want 0 and %v", e.Min(), e.Max(), time.Duration(histMaxValue))
	}
}

func TestHistMergeCloneJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	var a, b, all Hist
	for i := 0; i < 5000; i++ {
		d := time.Duration(rng.ExpFloat64() * float64(time.Millisecond))
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	m := a.Clone()
	m.Merge(&b)
	if m.Count() != all.Count() || m.Min() != all.Min() || m.Max() != all.Max() || math.Abs(m.sum-all.sum) > 1 {
		t.Errorf("merged count/min/max/sum %d/%v/%v/%v; want %d/%v/%v/%v", m.Count(), m.Min(), m.Max(), m.sum, all.Count(), all.Min(), all.Max(), all.sum)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		if m.Quantile(q) != all.Quantile(q) {
			t.Errorf("merged Quantile(%v) = %v; want %v", q, m.Quantile(q), all.Quantile(q))
		}
	}
	if a.Count() == m.Count() {
		t.Errorf("Merge into a clone changed the original")
	}
	m.Merge(nil)
	m.Merge(&Hist{})

	j, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back Hist
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if back.Count() != m.Count() || back.Quantile(0.99) != m.Quantile(0.99) || back.Min() != m.Min() || back.Max() != m.Max() {
		t.Errorf("JSON round trip: %d %v; want %d %v", back.Count(), back.Quantile(0.99), m.Count(), m.Quantile(0.99))
	}
	for _, bad := range []string{`{"count":2,"buckets":[[1,1]]}`, `{"count":1,"buckets":[[99999,1]]}`, `[`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("Unmarshal(%s): err = nil; want an error", bad)
		}
	}
	m.Reset()
	if m.Count() != 0 || m.Quantile(0.5) != 0 {
		t.Errorf("Reset left count %d", m.Count())
	}
}

// TestHistSampler: the alias sampler and the scanning Sample draw from the
// recorded distribution (checked by quantiles), stay within [min, max], and
// reproduce a constant exactly.
func TestHistSampler(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	var h Hist
	for i := 0; i < 20000; i++ {
		h.Record(time.Duration((1 + rng.ExpFloat64()) * float64(time.Millisecond)))
	}
	s := h.Sampler()
	var fromAlias, fromScan Hist
	for i := 0; i < 40000; i++ {
		fromAlias.Record(s.Sample(rng))
		if i%4 == 0 {
			fromScan.Record(h.Sample(rng))
		}
	}
	for _, q := range []float64{0.1, 0.5, 0.9, 0.99} {
		want := float64(h.Quantile(q))
		for name, g := range map[string]*Hist{"alias": &fromAlias, "scan": &fromScan} {
			if got := float64(g.Quantile(q)); math.Abs(got-want) > 0.05*want {
				t.Errorf("%s sampler Quantile(%v) = %v; want %v ± 5%%", name, q, time.Duration(got), time.Duration(want))
			}
		}
	}
	if fromAlias.Min() < h.Min() || fromAlias.Max() > h.Max() {
		t.Errorf("samples span [%v, %v] outside the recorded [%v, %v]", fromAlias.Min(), fromAlias.Max(), h.Min(), h.Max())
	}
	var c Hist
	c.RecordN(7*time.Millisecond, 3)
	if got := c.Sampler().Sample(rng); got != 7*time.Millisecond {
		t.Errorf("constant sampler drew %v; want 7ms", got)
	}
	if (&Hist{}).Sampler() != nil {
		t.Errorf("empty histogram has a sampler")
	}
}

func TestAliasTable(t *testing.T) {
	w := []float64{1, 0, 3, 6}
	prob, alias := aliasTable(w)
	// The probability of each outcome from the tables equals its weight.
	got := make([]float64, len(w))
	for i := range w {
		got[i] += prob[i] / float64(len(w))
		got[alias[i]] += (1 - prob[i]) / float64(len(w))
	}
	for i, x := range w {
		if math.Abs(got[i]-x/10) > 1e-12 {
			t.Errorf("outcome %d: probability %v; want %v", i, got[i], x/10)
		}
	}
}

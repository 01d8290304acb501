package tuner

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"time"
)

// Bucket layout of Hist (log-linear, in the manner of HdrHistogram). Values
// are nanoseconds. Below 32 ns every nanosecond has its own bucket; from there
// on each power of two is split into 16 equal sub-buckets, so a bucket is at
// most 1/16 of its lower bound wide and any quantile is within 6.25% of the
// truth (3.1% in the middle of a bucket, where Quantile interpolates).
//
// Why 16 sub-buckets and not more? The tuner compares replicas whose latencies
// differ by tens of percent; 6% resolution is ample, and 16 keeps a histogram
// whose largest value is 1 s at 432 buckets (3.4 KB); a hot-path AtomicHist
// with the full range is 4.7 KB. Why cap at 2^40 ns
// (about 18 minutes)? Nothing the tuner weighs is longer: a write→read gap of
// a quarter of an hour is "never stale" under any WARS latency, and a request
// that slow has long timed out. Larger values are clamped into the top bucket.
const (
	histSubBits = 4
	histSub     = 1 << histSubBits // sub-buckets per power of two
	histLinear  = 2 * histSub      // values below this have one bucket each
	histMaxBits = 40               // values at or above 2^40 ns are clamped
	// histBuckets is the number of buckets of a full histogram.
	histBuckets = (histMaxBits - histSubBits + 1) * histSub
)

// histMaxValue is the largest value a Hist tracks exactly; larger ones are
// recorded as this value.
const histMaxValue = int64(1)<<histMaxBits - 1

// bucketOf returns the bucket index of v (ns, ≥ 0). O(1): one bit length.
func bucketOf(v int64) int {
	if v < histLinear {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	if v > histMaxValue {
		v = histMaxValue
	}
	msb := bits.Len64(uint64(v)) - 1 // ≥ 5
	shift := msb - histSubBits
	return (msb-histSubBits+1)*histSub + int(v>>uint(shift)) - histSub
}

// bucketBounds returns the lower bound and the width of bucket i, in ns.
func bucketBounds(i int) (lo, width int64) {
	if i < histLinear {
		return int64(i), 1
	}
	g := i / histSub // ≥ 2
	s := i % histSub
	shift := g - 1
	return int64(histSub+s) << uint(shift), int64(1) << uint(shift)
}

// Hist is a bounded log-scale histogram of durations. Recording is O(1) and
// never allocates once the histogram has grown to the largest value seen;
// memory is bounded by histBuckets counters whatever the number of samples.
//
// A Hist is not safe for concurrent use; the hot path records into an
// AtomicHist (see Recorder) and the tuner works on Hist snapshots. Copying a
// Hist value shares its buckets: use Clone to get an independent copy. The
// zero value is an empty histogram ready to use.
type Hist struct {
	counts []uint64 // grown on demand up to the highest bucket used
	n      uint64
	sum    float64 // ns; float so that it cannot overflow
	min    int64   // ns, meaningful when n > 0
	max    int64   // ns, meaningful when n > 0
}

// Record adds one sample. Negative durations count as zero.
func (h *Hist) Record(d time.Duration) { h.RecordN(d, 1) }

// RecordN adds k samples of the same value.
func (h *Hist) RecordN(d time.Duration, k uint64) {
	if k == 0 {
		return
	}
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if v > histMaxValue {
		v = histMaxValue
	}
	i := bucketOf(v)
	if i >= len(h.counts) {
		h.grow(i + 1)
	}
	h.counts[i] += k
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if h.n == 0 || v > h.max {
		h.max = v
	}
	h.n += k
	h.sum += float64(v) * float64(k)
}

func (h *Hist) grow(n int) {
	// Grow to at least a power-of-two group boundary so a stream of slowly
	// rising values does not reallocate on every new bucket.
	c := max(n, 2*len(h.counts), histLinear)
	c = min(c, histBuckets)
	counts := make([]uint64, c)
	copy(counts, h.counts)
	h.counts = counts
}

// Merge adds every sample of o to h. o is not modified.
func (h *Hist) Merge(o *Hist) {
	if o == nil || o.n == 0 {
		return
	}
	if len(o.counts) > len(h.counts) {
		h.grow(len(o.counts))
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if h.n == 0 || o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Clone returns an independent copy of h.
func (h *Hist) Clone() Hist {
	c := *h
	if h.counts != nil {
		c.counts = append([]uint64(nil), h.counts...)
	}
	return c
}

// Reset empties h, keeping its buckets allocated.
func (h *Hist) Reset() {
	clear(h.counts)
	h.n, h.sum, h.min, h.max = 0, 0, 0, 0
}

// Count is the number of samples.
func (h *Hist) Count() uint64 { return h.n }

// Sum is the total of all samples (exact up to float64 rounding).
func (h *Hist) Sum() time.Duration { return time.Duration(h.sum) }

// Mean is the exact mean of the samples, or 0 for an empty histogram.
func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Min is the smallest sample, or 0 for an empty histogram.
func (h *Hist) Min() time.Duration { return time.Duration(h.min) }

// Max is the largest sample, or 0 for an empty histogram.
func (h *Hist) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns the q-quantile (q in [0, 1]) of the samples, interpolating
// linearly inside the bucket that holds it and clamping to the exact minimum
// and maximum, so a histogram of one repeated value returns that value for
// every q. It returns 0 for an empty histogram.
func (h *Hist) Quantile(q float64) time.Duration {
	return time.Duration(h.quantile(q))
}

func (h *Hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	if !(q > 0) {
		return float64(h.min)
	}
	if q >= 1 {
		return float64(h.max)
	}
	rank := q * float64(h.n)
	var cum float64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		fc := float64(c)
		if cum+fc >= rank {
			lo, w := bucketBounds(i)
			v := float64(lo) + (rank-cum)/fc*float64(w)
			return math.Min(math.Max(v, float64(h.min)), float64(h.max))
		}
		cum += fc
	}
	return float64(h.max)
}

// Sample draws one value from the distribution the histogram describes: a
// bucket with probability proportional to its count, then a uniform value
// inside it (clamped to the observed minimum and maximum). It scans the
// buckets, so it costs O(buckets); for Monte Carlo use Sampler, which is O(1)
// per draw after an O(buckets) set-up.
func (h *Hist) Sample(r *rand.Rand) time.Duration {
	if h.n == 0 {
		return 0
	}
	u := r.Uint64N(h.n)
	var cum uint64
	for i, c := range h.counts {
		if u < cum+c {
			lo, hi := h.clampedBounds(i)
			return time.Duration(lo + r.Float64()*(hi-lo))
		}
		cum += c
	}
	return time.Duration(h.max)
}

// clampedBounds is bucket i's [lo, hi) range intersected with [min, max].
func (h *Hist) clampedBounds(i int) (lo, hi float64) {
	l, w := bucketBounds(i)
	lo = math.Max(float64(l), float64(h.min))
	hi = math.Min(float64(l+w), float64(h.max))
	if hi < lo {
		hi = lo
	}
	return lo, hi
}

// Sampler returns an O(1)-per-draw sampler of the histogram's distribution
// (Walker's alias method over the non-empty buckets), or nil if h is empty.
// The sampler is a snapshot: later records into h do not change it.
func (h *Hist) Sampler() *HistSampler {
	if h.n == 0 {
		return nil
	}
	s := &HistSampler{}
	var weights []float64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		lo, hi := h.clampedBounds(i)
		s.lo = append(s.lo, lo)
		s.span = append(s.span, hi-lo)
		weights = append(weights, float64(c))
	}
	s.prob, s.alias = aliasTable(weights)
	return s
}

// HistSampler draws values from a histogram's distribution in O(1). It is
// immutable and safe for concurrent use with distinct *rand.Rand values.
type HistSampler struct {
	lo, span []float64 // per non-empty bucket, ns
	prob     []float64 // alias method: keep bucket i with probability prob[i]
	alias    []int32   // … else take alias[i]
}

// Sample draws one duration.
func (s *HistSampler) Sample(r *rand.Rand) time.Duration { return time.Duration(s.sample(r)) }

// sample draws one value in ns.
func (s *HistSampler) sample(r *rand.Rand) float64 {
	i := 0
	if len(s.prob) > 1 {
		i = r.IntN(len(s.prob))
		if r.Float64() >= s.prob[i] {
			i = int(s.alias[i])
		}
	}
	if s.span[i] == 0 {
		return s.lo[i]
	}
	return s.lo[i] + r.Float64()*s.span[i]
}

// aliasTable builds Vose's alias tables for the given non-negative weights.
func aliasTable(w []float64) (prob []float64, alias []int32) {
	n := len(w)
	prob = make([]float64, n)
	alias = make([]int32, n)
	var total float64
	for _, x := range w {
		total += x
	}
	scaled := make([]float64, n)
	small := make([]int32, 0, n)
	large := make([]int32, 0, n)
	for i, x := range w {
		scaled[i] = x * float64(n) / total
		if scaled[i] < 1 {
			small = append(small, int32(i))
		} else {
			large = append(large, int32(i))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s := small[len(small)-1]
		small = small[:len(small)-1]
		l := large[len(large)-1]
		prob[s] = scaled[s]
		alias[s] = l
		scaled[l] -= 1 - scaled[s]
		if scaled[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What is left has (up to rounding) weight exactly 1.
	for _, i := range large {
		prob[i], alias[i] = 1, i
	}
	for _, i := range small {
		prob[i], alias[i] = 1, i
	}
	return prob, alias
}

// histJSON is the wire form of a Hist: only the non-empty buckets, as
// [index, count] pairs, so that a recorded trace stays small and can be
// replayed exactly.
type histJSON struct {
	Count   uint64      `json:"count"`
	SumNs   float64     `json:"sum_ns"`
	MinNs   int64       `json:"min_ns"`
	MaxNs   int64       `json:"max_ns"`
	Buckets [][2]uint64 `json:"buckets,omitempty"`
}

// MarshalJSON encodes the histogram losslessly (sparse buckets).
func (h Hist) MarshalJSON() ([]byte, error) {
	j := histJSON{Count: h.n, SumNs: h.sum, MinNs: h.min, MaxNs: h.max}
	for i, c := range h.counts {
		if c != 0 {
			j.Buckets = append(j.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON produced.
func (h *Hist) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*h = Hist{}
	var n uint64
	for _, bc := range j.Buckets {
		if bc[0] >= histBuckets {
			return fmt.Errorf("tuner: histogram bucket %d is outside 0..%d", bc[0], histBuckets-1)
		}
		if int(bc[0]) >= len(h.counts) {
			h.grow(int(bc[0]) + 1)
		}
		h.counts[bc[0]] += bc[1]
		n += bc[1]
	}
	if n != j.Count {
		return fmt.Errorf("tuner: histogram count %d does not match its buckets' total %d", j.Count, n)
	}
	h.n, h.sum, h.min, h.max = j.Count, j.SumNs, j.MinNs, j.MaxNs
	return nil
}

package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
)

// Distribution names how a workload picks the keys of its requests.
type Distribution string

// The request distributions of the YCSB core workloads.
const (
	// Zipfian favours a fixed set of hot keys: YCSB's scrambled zipfian with
	// θ = 0.99, whose hot keys are spread over the key space by an FNV hash
	// so that they do not all sit next to each other (and on one range or
	// replica).
	Zipfian Distribution = "zipfian"
	// Uniform picks every loaded key with the same probability.
	Uniform Distribution = "uniform"
	// Latest favours the most recently inserted keys (YCSB's skewed latest:
	// a zipfian distance back from the newest key).
	Latest Distribution = "latest"
)

// ParseDistribution returns the distribution named s.
func ParseDistribution(s string) (Distribution, error) {
	switch d := Distribution(s); d {
	case Zipfian, Uniform, Latest:
		return d, nil
	}
	return "", fmt.Errorf("unknown distribution %q: want zipfian, uniform or latest", s)
}

// ZipfianConstant is θ of YCSB's zipfian distributions: item i (0-based) is
// chosen with probability proportional to 1/(i+1)^θ.
const ZipfianConstant = 0.99

// YCSB's scrambled zipfian draws from a zipfian over this many items and
// folds the result onto the key space with a hash, so that its skew does not
// depend on the number of records. scrambledZetan is zeta(scrambledItems,
// 0.99), precomputed by YCSB (ScrambledZipfianGenerator.ZETAN) because the
// sum over 10^10 terms takes minutes.
const (
	scrambledItems = 10_000_000_000
	scrambledZetan = 26.46902820178302
)

// KeyChooser picks the key number of the next request. The choosers of this
// package are safe for concurrent use; every worker passes its own random
// source, so that workers do not contend on one.
type KeyChooser interface {
	Next(r *rand.Rand) int64
}

// Zeta returns the generalised harmonic number Σ_{i=1..n} 1/i^θ, the
// normalising constant of a zipfian over n items.
func Zeta(n int64, theta float64) float64 {
	return zetaFrom(0, n, theta, 0)
}

// zetaFrom extends sum, the zeta of st items, to n items; it is how the
// skewed latest distribution follows a growing key space without summing
// from the start each time.
func zetaFrom(st, n int64, theta, sum float64) float64 {
	for i := st; i < n; i++ {
		sum += 1 / math.Pow(float64(i+1), theta)
	}
	return sum
}

// ZipfianGen draws item numbers in [0, items) from a zipfian distribution
// with Gray et al.'s rejection-free method ("Quickly Generating
// Billion-Record Synthetic Databases", SIGMOD 1994), as YCSB's
// ZipfianGenerator does: item 0 is the most popular. It is immutable and
// safe for concurrent use.
type ZipfianGen struct {
	items      int64
	theta      float64
	alpha      float64
	zetan      float64
	zeta2theta float64
	eta        float64
	half       float64 // 0.5^θ, the probability mass of item 1 relative to item 0
}

// NewZipfian returns a zipfian over items items with constant theta (0 < θ <
// 1). It sums zeta(items, θ) once, which costs about a millisecond per 10^5
// items.
func NewZipfian(items int64, theta float64) *ZipfianGen {
	return newZipfianZeta(items, theta, Zeta(items, theta))
}

func newZipfianZeta(items int64, theta, zetan float64) *ZipfianGen {
	z := &ZipfianGen{
		items:      items,
		theta:      theta,
		alpha:      1 / (1 - theta),
		zetan:      zetan,
		zeta2theta: Zeta(2, theta),
		half:       math.Pow(0.5, theta),
	}
	z.eta = z.etaFor(items)
	return z
}

func (z *ZipfianGen) etaFor(items int64) float64 {
	return (1 - math.Pow(2/float64(items), 1-z.theta)) / (1 - z.zeta2theta/z.zetan)
}

// Next returns an item number in [0, items).
func (z *ZipfianGen) Next(r *rand.Rand) int64 {
	return z.next(r.Float64(), z.items, z.zetan, z.eta)
}

func (z *ZipfianGen) next(u float64, items int64, zetan, eta float64) int64 {
	uz := u * zetan
	if uz < 1 {
		return 0
	}
	if uz < 1+z.half || items < 3 {
		return min(1, items-1)
	}
	v := int64(float64(items) * math.Pow(eta*u-eta+1, z.alpha))
	// u < 1 keeps v below items in exact arithmetic; rounding may not.
	return min(max(v, 0), items-1)
}

// Prob returns the probability that Next returns item i: 1/((i+1)^θ ·
// zeta(items, θ)). Gray's method is exact for items 0 and 1 and
// approximate beyond.
func (z *ZipfianGen) Prob(i int64) float64 {
	return 1 / (math.Pow(float64(i+1), z.theta) * z.zetan)
}

// ScrambledZipfian is YCSB's ScrambledZipfianGenerator: a zipfian with θ =
// 0.99 over 10^10 items, hashed with 64-bit FNV-1a onto [0, n). The hot keys
// are thus scattered over the key space rather than being its first keys,
// and the popularity of the hottest key (≈ 1/26.47 ≈ 3.8 %) does not depend
// on n. It is immutable and safe for concurrent use.
type ScrambledZipfian struct {
	n int64
	z *ZipfianGen
}

// NewScrambledZipfian returns a scrambled zipfian over [0, n).
func NewScrambledZipfian(n int64) *ScrambledZipfian {
	return &ScrambledZipfian{n: n, z: newZipfianZeta(scrambledItems, ZipfianConstant, scrambledZetan)}
}

// Next returns a key number in [0, n).
func (s *ScrambledZipfian) Next(r *rand.Rand) int64 {
	return int64(FNVHash64(s.z.Next(r)) % uint64(s.n))
}

// UniformGen picks key numbers in [0, n) with equal probability. It is
// immutable and safe for concurrent use.
type UniformGen struct{ n int64 }

// NewUniform returns a uniform chooser over [0, n).
func NewUniform(n int64) *UniformGen { return &UniformGen{n: n} }

// Next returns a key number in [0, n).
func (u *UniformGen) Next(r *rand.Rand) int64 { return r.Int64N(u.n) }

// SkewedLatest is YCSB's SkewedLatestGenerator: it returns newest − z, with
// z zipfian, where newest is the highest key number whose insert (and every
// insert before it) has finished. The newest key is the most popular, and
// popularity moves with the inserts. It is safe for concurrent use.
type SkewedLatest struct {
	basis *AckCounter
	z     *ZipfianGen
	// mu guards the growing state below; it is held for a few arithmetic
	// operations per request, far less than the request itself.
	mu sync.Mutex
	// count and zetan describe the zipfian's current item count; they grow
	// incrementally as keys are inserted.
	count int64
	zetan float64
	eta   float64
}

// NewSkewedLatest returns a latest chooser over the keys acknowledged by
// basis.
func NewSkewedLatest(basis *AckCounter) *SkewedLatest {
	n := max(basis.Last()+1, 1)
	z := NewZipfian(n, ZipfianConstant)
	return &SkewedLatest{basis: basis, z: z, count: n, zetan: z.zetan, eta: z.eta}
}

// Next returns a key number in [0, newest]. Unlike YCSB, which draws over
// newest items and so never returns key 0, it draws over newest+1.
func (l *SkewedLatest) Next(r *rand.Rand) int64 {
	newest := l.basis.Last()
	if newest < 0 {
		return 0
	}
	n := newest + 1
	l.mu.Lock()
	if n > l.count {
		l.zetan = zetaFrom(l.count, n, l.z.theta, l.zetan)
		l.count = n
		l.eta = (1 - math.Pow(2/float64(n), 1-l.z.theta)) / (1 - l.z.zeta2theta/l.zetan)
	}
	// The counter only grows, so count ≥ n here; drawing over count
	// rather than n could reach below 0 only if count > n, which a
	// concurrent update can cause: clamp.
	count, zetan, eta := l.count, l.zetan, l.eta
	l.mu.Unlock()
	return max(newest-l.z.next(r.Float64(), count, zetan, eta), 0)
}

// AckCounter hands out the key numbers of inserts in order and tracks the
// highest number below which every insert has finished, as YCSB's
// AcknowledgedCounterGenerator does: reads then never target a key whose
// insert is still in flight, even with many workers. It is safe for
// concurrent use.
type AckCounter struct {
	mu      sync.Mutex
	next    int64
	limit   int64          // every number ≤ limit is acknowledged
	pending map[int64]bool // acknowledged numbers above limit
}

// NewAckCounter returns a counter whose first Next is start; the numbers
// below start count as acknowledged (the loaded records).
func NewAckCounter(start int64) *AckCounter {
	return &AckCounter{next: start, limit: start - 1, pending: make(map[int64]bool)}
}

// Next returns the next key number to insert.
func (c *AckCounter) Next() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.next
	c.next++
	return v
}

// Ack marks insert v as finished, successful or not (a failed insert must
// not hold the limit back forever; reads of its key then count as misses).
func (c *AckCounter) Ack(v int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v <= c.limit {
		return
	}
	c.pending[v] = true
	for c.pending[c.limit+1] {
		delete(c.pending, c.limit+1)
		c.limit++
	}
}

// Last returns the highest key number below which every insert has been
// acknowledged; -1 when there is none.
func (c *AckCounter) Last() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limit
}

// FNV-1a 64-bit constants, as in YCSB's Utils.fnvhash64.
const (
	fnvOffset64 = 0xCBF29CE484222325
	fnvPrime64  = 1099511628211
)

// FNVHash64 is YCSB's Utils.fnvhash64: FNV-1a over the 8 little-endian
// bytes of v, made non-negative with the absolute value of the signed
// result as YCSB does. The one hash whose absolute value overflows
// (MinInt64, where Java's Math.abs stays negative) maps to 0.
func FNVHash64(v int64) uint64 {
	h := uint64(fnvOffset64)
	u := uint64(v)
	for range 8 {
		h ^= u & 0xff
		u >>= 8
		h *= fnvPrime64
	}
	if int64(h) < 0 {
		h = uint64(-int64(h))
	}
	return h & math.MaxInt64
}

// KeyName returns the key of record n: "user" followed by the decimal FNV
// hash of n, as YCSB names keys with its default hashed insert order. The
// hash spreads consecutive inserts over the key space, so that a scan (which
// runs in key order) does not just walk the insert order.
func KeyName(n int64) string {
	return "user" + strconv.FormatUint(FNVHash64(n), 10)
}

// NewKeyChooser returns the chooser for distribution d over n loaded
// records; inserts, when the workload has them, advance seq, which Latest
// follows. Zipfian and Uniform choose among the loaded records only, as
// YCSB does when it is not told how many inserts to expect.
func NewKeyChooser(d Distribution, n int64, seq *AckCounter) (KeyChooser, error) {
	if n < 1 {
		return nil, fmt.Errorf("key chooser: %d records; need at least 1", n)
	}
	switch d {
	case Zipfian:
		return NewScrambledZipfian(n), nil
	case Uniform:
		return NewUniform(n), nil
	case Latest:
		if seq == nil {
			seq = NewAckCounter(n)
		}
		return NewSkewedLatest(seq), nil
	}
	return nil, fmt.Errorf("key chooser: unknown distribution %q", d)
}

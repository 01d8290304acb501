package scenario

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Figures are one arm's measurements over a span of a phase.
type Figures struct {
	// Seconds is how long the arm ran in the span (its slices, not the
	// wall time of the span).
	Seconds float64 `json:"seconds"`
	// Ops counts completed operations, Errors failed ones.
	Ops    uint64 `json:"ops"`
	Reads  uint64 `json:"reads"`
	Writes uint64 `json:"writes"`
	Errors uint64 `json:"errors"`
	// OpsPerSec is Ops over Seconds.
	OpsPerSec float64 `json:"ops_per_sec"`
	// Client-visible latencies, in milliseconds.
	ReadP50Ms  float64 `json:"read_p50_ms"`
	ReadP99Ms  float64 `json:"read_p99_ms"`
	WriteP50Ms float64 `json:"write_p50_ms"`
	WriteP99Ms float64 `json:"write_p99_ms"`
	// Stale counts stale reads; StaleRate is Stale over Reads.
	Stale     uint64  `json:"stale"`
	StaleRate float64 `json:"stale_rate"`
	// StaleAgeP50Ms and StaleAgeMaxMs: how long before a stale read began
	// the first write it missed had been acknowledged.
	StaleAgeP50Ms float64 `json:"stale_age_p50_ms"`
	StaleAgeMaxMs float64 `json:"stale_age_max_ms"`
	// Late counts paced operations that started more than lateAfter after
	// their slot: the workers could not keep up with the rate.
	Late uint64 `json:"late"`
}

// lateAfter is how late a paced operation may start before it counts as
// late.
const lateAfter = 10 * time.Millisecond

// recorder accumulates one arm's operations over a span. It is safe for
// concurrent use.
type recorder struct {
	mu                  sync.Mutex
	read, write, age    *hdrhistogram.Histogram // microseconds
	reads, writes, errs uint64
	stale, late         uint64
	active              time.Duration
}

// Latencies are kept in microseconds from 1 µs to 2 min, at three
// significant digits for a phase's figures and two for a slice's (a slice
// has a few hundred samples, and the adaptive arm's slices are kept for
// the whole run).
func newHist(digits int) *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(2*time.Minute/time.Microsecond), digits)
}

func newRecorder() *recorder { return newRecorderDigits(3) }

func newRecorderDigits(digits int) *recorder {
	return &recorder{read: newHist(digits), write: newHist(digits), age: newHist(digits)}
}

// merge adds o's samples and counts to r.
func (r *recorder) merge(o *recorder) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.read.Merge(o.read)
	r.write.Merge(o.write)
	r.age.Merge(o.age)
	r.reads += o.reads
	r.writes += o.writes
	r.errs += o.errs
	r.stale += o.stale
	r.late += o.late
	r.active += o.active
}

func us(d time.Duration) int64 { return max(int64(d/time.Microsecond), 1) }

// recordRead records a successful read and whether it was stale.
func (r *recorder) recordRead(lat time.Duration, stale bool, age time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	r.read.RecordValue(us(lat))
	if stale {
		r.stale++
		r.age.RecordValue(us(age))
	}
}

// recordWrite records a successful write.
func (r *recorder) recordWrite(lat time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes++
	r.write.RecordValue(us(lat))
}

// recordError records a failed operation.
func (r *recorder) recordError() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs++
}

// recordLate records a paced operation that started late.
func (r *recorder) recordLate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.late++
}

// addActive adds time the arm ran.
func (r *recorder) addActive(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active += d
}

func ms(v int64) float64 { return float64(v) / 1000 }

// figures summarises what was recorded.
func (r *recorder) figures() Figures {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := Figures{
		Seconds: r.active.Seconds(),
		Ops:     r.reads + r.writes, Reads: r.reads, Writes: r.writes, Errors: r.errs,
		ReadP50Ms: ms(r.read.ValueAtQuantile(50)), ReadP99Ms: ms(r.read.ValueAtQuantile(99)),
		WriteP50Ms: ms(r.write.ValueAtQuantile(50)), WriteP99Ms: ms(r.write.ValueAtQuantile(99)),
		Stale: r.stale, Late: r.late,
	}
	if f.Seconds > 0 {
		f.OpsPerSec = float64(f.Ops) / f.Seconds
	}
	if r.reads > 0 {
		f.StaleRate = float64(r.stale) / float64(r.reads)
	}
	if r.stale > 0 {
		f.StaleAgeP50Ms, f.StaleAgeMaxMs = ms(r.age.ValueAtQuantile(50)), ms(r.age.Max())
	}
	return f
}

// sinks fans one operation out to several recorders: the slice's, the
// phase's and, after the phase has settled, the steady part's.
type sinks []*recorder

func (s sinks) read(lat time.Duration, stale bool, age time.Duration) {
	for _, r := range s {
		r.recordRead(lat, stale, age)
	}
}

func (s sinks) write(lat time.Duration) {
	for _, r := range s {
		r.recordWrite(lat)
	}
}

func (s sinks) err() {
	for _, r := range s {
		r.recordError()
	}
}

func (s sinks) late() {
	for _, r := range s {
		r.recordLate()
	}
}

func (s sinks) active(d time.Duration) {
	for _, r := range s {
		r.addActive(d)
	}
}

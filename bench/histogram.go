package bench

import (
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms record latencies in microseconds from 1 µs to 60 s with three
// significant figures: 0.1 % error is finer than anything a loopback run can
// tell apart, and a histogram of that range is about 140 KB, cheap enough to
// keep one per worker and operation. A latency beyond 60 s is recorded as
// 60 s (the client's request timeout is far below that).
const (
	histLowest  = 1
	histHighest = 60_000_000
	histSigFigs = 3
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histSigFigs)
}

// recordLatency records d, clamped into the histogram's range: a value out
// of range would otherwise be dropped with an error, and a dropped sample
// biases the tail.
func recordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	us := min(max(d.Microseconds(), histLowest), histHighest)
	_ = h.RecordValue(us) // in range by construction
}

// Latency summarises a latency distribution, in milliseconds.
type Latency struct {
	// Count is the number of samples.
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize returns the percentiles of h, which holds microseconds. An
// empty histogram gives all zeros.
func Summarize(h *hdrhistogram.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

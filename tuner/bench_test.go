package tuner

import (
	"testing"
	"time"
)

// BenchmarkHistRecord is the hot-path cost of recording one latency into a
// plain histogram.
func BenchmarkHistRecord(b *testing.B) {
	var h Hist
	h.Record(time.Second) // grow once
	d := 1234567 * time.Nanosecond
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		h.Record(d + time.Duration(i&1023)*time.Microsecond)
	}
}

// BenchmarkAtomicHistRecord is the same through the concurrent recorder,
// from all Ps at once.
func BenchmarkAtomicHistRecord(b *testing.B) {
	var h AtomicHist
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			h.Record(time.Duration(1_000_000 + (i&1023)*1000))
			i++
		}
	})
}

// BenchmarkHistSample is one Monte Carlo draw from a histogram.
func BenchmarkHistSample(b *testing.B) {
	var h Hist
	fill(&h, lat(1, 0.5), nil, 2000)
	s := h.Sampler()
	rng := newRand(1)
	for b.Loop() {
		s.sample(rng)
	}
}

// BenchmarkModelPredict predicts every candidate of a 3-replica keyspace
// (14 candidates, N=3) at the default 4000 trials.
func BenchmarkModelPredict(b *testing.B) {
	obs := readHeavySlowReplica(nil)
	m := DefaultModel()
	cands := Candidates(DefaultGoal(), 0)
	for b.Loop() {
		if _, err := m.Predict(obs, cands, Calibration{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecide is one decision at default settings: N=3, and N in 3..5
// on a five-node cluster (96 candidates, three Monte Carlo runs).
func BenchmarkDecide(b *testing.B) {
	b.Run("N=3", func(b *testing.B) {
		obs := readHeavySlowReplica(nil)
		w := window(obs)
		s := NewState(Policy{N: 3, R: 2, W: 2})
		m, g := DefaultModel(), DefaultGoal()
		for b.Loop() {
			Decide(m, s, w, g, obs.End)
		}
	})
	b.Run("N=3..5", func(b *testing.B) {
		obs := synth(nil, synthSpec{replicas: fiveNodes(), reads: 400_000, writes: 4_000, gap: lat(1000, 1000), atRisk: 0.2, samples: 2000, topShare: 0.7, clusterSize: 5})
		w := window(obs)
		s := NewState(Policy{N: 3, R: 2, W: 2})
		m, g := DefaultModel(), DefaultGoal()
		g.MaxRF = 5
		for b.Loop() {
			Decide(m, s, w, g, obs.End)
		}
	})
}

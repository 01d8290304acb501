package tuner

import (
	"math"
	"math/rand/v2"
	"time"
)

// dist is a shifted exponential latency: base + Exp(tail), in ms.
type dist struct{ base, tail float64 }

func lat(base, tail float64) dist { return dist{base, tail} }

// at returns the distribution's u-quantile.
func (d dist) at(u float64) time.Duration {
	return time.Duration((d.base - d.tail*math.Log(1-u)) * float64(time.Millisecond))
}

// draw samples it, or returns its i-th of n evenly spaced quantiles when
// rng is nil (a noise-free histogram for golden tests).
func (d dist) draw(rng *rand.Rand, i, n int) time.Duration {
	if rng == nil {
		return d.at((float64(i) + 0.5) / float64(n))
	}
	return d.at(rng.Float64())
}

func (d dist) half() dist { return dist{d.base / 2, d.tail / 2} }

type replicaSpec struct {
	id          string
	read, write dist    // round trips
	timeouts    float64 // share of requests that time out
	oneWay      bool    // record W/A/R/S halves instead of round trips
}

type synthSpec struct {
	keyspace      string
	replicas      []replicaSpec
	reads, writes uint64
	gap           dist
	atRisk        float64 // share of reads with a gap sample
	samples       int     // per histogram
	probed, stale uint64
	topShare      float64
	span          time.Duration
	start         time.Time
	policy        Policy
	clusterSize   int
}

func fill(h *Hist, d dist, rng *rand.Rand, n int) {
	for i := 0; i < n; i++ {
		h.Record(d.draw(rng, i, n))
	}
}

// synth builds an observation from a spec. With rng nil it is exactly
// reproducible and free of sampling noise.
func synth(rng *rand.Rand, s synthSpec) Observation {
	if s.span == 0 {
		s.span = 10 * time.Second
	}
	if s.start.IsZero() {
		s.start = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	}
	if s.keyspace == "" {
		s.keyspace = "ks"
	}
	o := Observation{
		Keyspace: s.keyspace, Start: s.start, End: s.start.Add(s.span),
		Policy: s.policy, ClusterSize: s.clusterSize,
		Reads: s.reads, Writes: s.writes, Probed: s.probed, Stale: s.stale,
		Skew: Skew{K: 16, Sampled: 4096, TopShare: s.topShare},
	}
	for _, r := range s.replicas {
		ro := ReplicaObservation{ID: r.id}
		if r.oneWay {
			fill(&ro.W, r.write.half(), rng, s.samples)
			fill(&ro.A, r.write.half(), rng, s.samples)
			fill(&ro.R, r.read.half(), rng, s.samples)
			fill(&ro.S, r.read.half(), rng, s.samples)
		} else {
			fill(&ro.WriteRTT, r.write, rng, s.samples)
			fill(&ro.ReadRTT, r.read, rng, s.samples)
		}
		ro.WritesSent, ro.ReadsSent = uint64(s.samples), uint64(s.samples)
		ro.WriteTimeouts = uint64(r.timeouts * float64(s.samples))
		ro.ReadTimeouts = ro.WriteTimeouts
		o.Replicas = append(o.Replicas, ro)
		fill(&o.ReadLatency, r.read, rng, s.samples/len(s.replicas))
		fill(&o.WriteLatency, r.write, rng, s.samples/len(s.replicas))
	}
	if n := int(s.atRisk * float64(s.reads)); n > 0 {
		per := max(1, n/max(1, s.samples))
		k := n / per
		for i := 0; i < k; i++ {
			o.Gap.RecordN(s.gap.draw(rng, i, k), uint64(per))
		}
	}
	return o
}

// readHeavySlowReplica: three nodes, n3 48 ms slower than the others, 95%
// reads that come long after the writes they follow.
func readHeavySlowReplica(rng *rand.Rand) Observation {
	return synth(rng, readHeavySpec())
}

func readHeavySpec() synthSpec {
	return synthSpec{
		replicas: []replicaSpec{
			{id: "n1", read: lat(0.8, 0.4), write: lat(1, 0.5)},
			{id: "n2", read: lat(0.9, 0.5), write: lat(1.1, 0.5)},
			{id: "n3", read: lat(49, 2), write: lat(50, 2)},
		},
		reads: 95_000, writes: 5_000, gap: lat(500, 4000), atRisk: 0.3, samples: 2000,
		probed: 0, clusterSize: 3,
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }

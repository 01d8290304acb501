package tuner

import (
	"math"
	"strings"
	"testing"
	"time"
)

// TestCalibrationAccumulates drives Calibration.Observe and Close with
// sequences of intervals: probes add up across intervals under one policy
// until MinProbes is reached, a change of policy folds strong evidence and
// drops weak evidence, and each fold is the formula of the type's
// documentation applied to the summed counts.
func TestCalibrationAccumulates(t *testing.T) {
	cfg := DefaultModel().Calibration // Alpha 0.3, Prior 1, MinProbes 100, MinStale 3
	one := Policy{N: 3, R: 1, W: 1, Read: ReadNearest}
	two := Policy{N: 3, R: 1, W: 2, Read: ReadNearest}
	// fold is the factor after one fold from neutral of S stale against E
	// expected.
	fold := func(s, e float64) float64 { return math.Exp(0.3 * math.Log((s+1)/(e+1))) }

	type step struct {
		close         bool // Close instead of Observe
		p             Policy
		predicted     float64
		stale, probed uint64
	}
	tests := []struct {
		name    string
		steps   []step
		factor  float64
		updates int
		pending Evidence
	}{
		{
			name:    "one short interval only pends",
			steps:   []step{{p: one, predicted: 0.01, stale: 2, probed: 40}},
			factor:  1,
			pending: Evidence{Policy: one, Intervals: 1, Probed: 40, Stale: 2, Expected: 0.4},
		},
		{
			// 40 + 40 + 40 probes: the third interval reaches 100 and folds
			// S = 6 against E = 40·0.01 + 40·0.02 + 40·0.01 = 1.6.
			name: "three short intervals fold together",
			steps: []step{
				{p: one, predicted: 0.01, stale: 2, probed: 40},
				{p: one, predicted: 0.02, stale: 1, probed: 40},
				{p: one, predicted: 0.01, stale: 3, probed: 40},
			},
			factor: fold(6, 1.6), updates: 1,
			pending: Evidence{Policy: one},
		},
		{
			// The old rule (MinProbes in one interval) never moved here.
			name: "many quiet intervals as predicted stay neutral",
			steps: []step{
				{p: one, predicted: 0.05, stale: 1, probed: 20},
				{p: one, predicted: 0.05, stale: 1, probed: 20},
				{p: one, predicted: 0.05, stale: 1, probed: 20},
				{p: one, predicted: 0.05, stale: 1, probed: 20},
				{p: one, predicted: 0.05, stale: 1, probed: 20},
			},
			factor: 1, updates: 1,
			pending: Evidence{Policy: one},
		},
		{
			name: "a change of policy drops weak evidence",
			steps: []step{
				{p: one, predicted: 0.01, stale: 2, probed: 40},
				{p: two, predicted: 0.001, stale: 0, probed: 30},
			},
			factor:  1,
			pending: Evidence{Policy: two, Intervals: 1, Probed: 30, Expected: 0.03},
		},
		{
			// A step back: 4 stale of 50 where 0.05 were expected is folded
			// although short of MinProbes.
			name: "a change of policy folds strong evidence",
			steps: []step{
				{p: one, predicted: 0.001, stale: 4, probed: 50},
				{close: true},
			},
			factor: fold(4, 0.05), updates: 1,
		},
		{
			name: "closing weak evidence drops it",
			steps: []step{
				{p: one, predicted: 0.001, stale: 2, probed: 50},
				{close: true},
			},
			factor: 1,
		},
		{
			// Back to the same policy later: evidence starts from zero.
			name: "evidence does not survive a change and return",
			steps: []step{
				{p: one, predicted: 0.01, stale: 0, probed: 60},
				{close: true},
				{p: one, predicted: 0.01, stale: 0, probed: 60},
			},
			factor:  1,
			pending: Evidence{Policy: one, Intervals: 1, Probed: 60, Expected: 0.6},
		},
		{
			name: "intervals without probes count but do not fold",
			steps: []step{
				{p: one, predicted: 0.01},
				{p: one, predicted: 0.01},
			},
			factor:  1,
			pending: Evidence{Policy: one, Intervals: 2},
		},
		{
			// 1000 stale where 0.1 were expected: the factor is clamped.
			name:   "clamped at MaxFactor",
			steps:  []step{{p: one, predicted: 1e-6, stale: 1000, probed: 1000}, {p: one, predicted: 1e-6, stale: 1000, probed: 1000}, {p: one, predicted: 1e-6, stale: 1000, probed: 1000}, {p: one, predicted: 1e-6, stale: 1000, probed: 1000}, {p: one, predicted: 1e-6, stale: 1000, probed: 1000}, {p: one, predicted: 1e-6, stale: 1000, probed: 1000}, {p: one, predicted: 1e-6, stale: 1000, probed: 1000}, {p: one, predicted: 1e-6, stale: 1000, probed: 1000}},
			factor: 20, updates: 8,
			pending: Evidence{Policy: one},
		},
	}
	for _, tt := range tests {
		var c Calibration
		for _, s := range tt.steps {
			if s.close {
				c = c.Close(cfg)
			} else {
				c = c.Observe(cfg, s.p, s.predicted, s.stale, s.probed)
			}
		}
		if got := c.Factor(); math.Abs(got-tt.factor) > 1e-9*tt.factor {
			t.Errorf("%s: factor %v; want %v", tt.name, got, tt.factor)
		}
		if c.Updates != tt.updates {
			t.Errorf("%s: %d updates; want %d", tt.name, c.Updates, tt.updates)
		}
		got, want := c.Pending, tt.pending
		if got.Policy != want.Policy || got.Intervals != want.Intervals || got.Probed != want.Probed || got.Stale != want.Stale || math.Abs(got.Expected-want.Expected) > 1e-9 {
			t.Errorf("%s: pending %+v; want %+v", tt.name, got, want)
		}
	}
}

// TestDecideAccumulatesCalibration runs Decide interval after interval on
// a partial quorum whose probes find more stale reads than predicted, 30
// probes at a time: the factor must rise once the probes add up to
// MinProbes, which one interval alone never reaches.
func TestDecideAccumulatesCalibration(t *testing.T) {
	m := decideModel()
	cur := Policy{N: 3, R: 1, W: 2, Read: ReadNearest}
	spec := readHeavySpec()
	spec.policy = cur
	spec.probed, spec.stale = 30, 1
	w := NewWindow(4, 0)
	s := State{Policy: cur, LastChange: t0}
	g := DefaultGoal()
	g.MaxStale = 0.05 // so that the 3% measured does not step back
	var d Decision
	for i := 0; i < 4; i++ {
		spec.start = t0.Add(time.Duration(i) * 10 * time.Second)
		w.Push(synth(nil, spec))
		s, d = Decide(m, s, w, g, spec.start.Add(10*time.Second))
		if d.To != cur {
			t.Fatalf("interval %d: moved to %v (%s); the test needs %v kept", i, d.To, d.Reason, cur)
		}
		// The first decision has no prediction to compare with; intervals
		// 2, 3 and 4 add 30 probes each, 90 < MinProbes.
		if s.Calibration.Updates != 0 {
			t.Fatalf("interval %d: calibration folded after %d probes; want it to wait for %d", i, 30*i, m.Calibration.MinProbes)
		}
	}
	spec.start = t0.Add(40 * time.Second)
	w.Push(synth(nil, spec))
	s, d = Decide(m, s, w, g, spec.start.Add(10*time.Second))
	if s.Calibration.Updates != 1 || !(d.Calibration > 1) {
		t.Errorf("after 120 probes with 4 stale: calibration %+v (factor %v); want one fold upwards", s.Calibration, d.Calibration)
	}
}

// TestLatencyCalibration: the offsets follow measured minus predicted p99
// by Alpha per interval with enough samples, reads and writes apart, and
// are added to every prediction's p99 without taking it below its p50.
func TestLatencyCalibration(t *testing.T) {
	cfg := DefaultModel().Calibration // Alpha 0.3, MinLatencySamples 100
	ms := time.Millisecond
	obsOf := func(n int, read, write time.Duration) *Observation {
		var o Observation
		for i := 0; i < n; i++ {
			o.ReadLatency.Record(read)
			o.WriteLatency.Record(write)
		}
		return &o
	}
	tests := []struct {
		name                string
		c                   LatencyCalibration
		predRead, predWrite time.Duration
		obs                 *Observation
		read, write         time.Duration // offsets after
		updates             int           // read and write updates after
	}{
		{"coordinator overhead", LatencyCalibration{}, ms / 10, 22 * ms, obsOf(200, 2*ms/5, 24*ms), 90 * time.Microsecond, 600 * time.Microsecond, 2},
		{"too few samples", LatencyCalibration{}, ms / 10, 22 * ms, obsOf(50, 10*ms, 40*ms), 0, 0, 0},
		{"no prediction", LatencyCalibration{}, 0, 0, obsOf(200, 10*ms, 40*ms), 0, 0, 0},
		{"model too slow", LatencyCalibration{ReadOffset: ms}, 10 * ms, 10 * ms, obsOf(200, 5*ms, 10*ms), 700*time.Microsecond - 1500*time.Microsecond, 0, 2},
	}
	for _, tt := range tests {
		got := tt.c.Observe(cfg, tt.predRead, tt.predWrite, tt.obs)
		// Hist quantiles are exact to about 1%: allow 2% of the measured p99.
		tol := func(x time.Duration) time.Duration { return x/50 + time.Microsecond }
		if d := got.ReadOffset - tt.read; d > tol(tt.obs.ReadLatency.Quantile(0.99)) || -d > tol(tt.obs.ReadLatency.Quantile(0.99)) {
			t.Errorf("%s: read offset %v; want %v", tt.name, got.ReadOffset, tt.read)
		}
		if d := got.WriteOffset - tt.write; d > tol(tt.obs.WriteLatency.Quantile(0.99)) || -d > tol(tt.obs.WriteLatency.Quantile(0.99)) {
			t.Errorf("%s: write offset %v; want %v", tt.name, got.WriteOffset, tt.write)
		}
		if n := got.ReadUpdates + got.WriteUpdates; n != tt.updates {
			t.Errorf("%s: %d updates; want %d", tt.name, n, tt.updates)
		}
	}

	c := LatencyCalibration{ReadOffset: ms, WriteOffset: -5 * ms}
	p := Prediction{ReadP50: ms / 10, ReadP99: ms / 5, WriteP50: 2 * ms, WriteP99: 3 * ms}
	c.Apply(&p)
	if p.ReadP99 != 1200*time.Microsecond || p.RawReadP99 != ms/5 {
		t.Errorf("read p99 %v (raw %v); want 1.2 ms (raw 0.2 ms)", p.ReadP99, p.RawReadP99)
	}
	if p.WriteP99 != 2*ms || p.RawWriteP99 != 3*ms {
		t.Errorf("write p99 %v (raw %v); want the p50, 2 ms (raw 3 ms)", p.WriteP99, p.RawWriteP99)
	}
}

// TestDecideCalibratesLatency: after an interval under the policy the last
// decision predicted, the offsets move, every candidate's p99 carries them,
// the cost does not, and the decision says so.
func TestDecideCalibratesLatency(t *testing.T) {
	m := decideModel()
	q := Policy{N: 3, R: 2, W: 2}
	spec := readHeavySpec()
	spec.policy = q
	obs := synth(nil, spec)
	s, d0 := Decide(m, State{Policy: q, LastChange: t0}, window(obs), DefaultGoal(), obs.End)
	if d0.Latency.ReadUpdates != 0 {
		t.Fatalf("latency calibrated with no prediction to compare with: %+v", d0.Latency)
	}
	spec.start, spec.policy = obs.End, s.Policy
	next := synth(nil, spec)
	s, d := Decide(m, s, window(obs, next), DefaultGoal(), next.End)
	if d.Latency.ReadUpdates != 1 || d.Latency.WriteUpdates != 1 || s.Latency != d.Latency {
		t.Fatalf("latency calibration %+v (state %+v); want one update of each", d.Latency, s.Latency)
	}
	for _, c := range d.Candidates {
		if want := max(c.RawReadP99+d.Latency.ReadOffset, c.ReadP50); c.ReadP99 != want {
			t.Errorf("%v: read p99 %v; want raw %v plus offset %v", c.Policy, c.ReadP99, c.RawReadP99, d.Latency.ReadOffset)
		}
	}
	for i, c := range d.Candidates {
		if c0 := d0.Candidates[i]; c0.Policy == c.Policy && c0.Cost != c.Cost {
			t.Errorf("%v: cost %v after calibration, %v before; the offsets must not change costs", c.Policy, c.Cost, c0.Cost)
		}
	}
	if !strings.Contains(FormatDecision(d, 4), "latency calibration: measured p99s exceed the model's by") {
		t.Errorf("FormatDecision does not report the latency calibration:\n%s", FormatDecision(d, 4))
	}
}

package tuner

import (
	"math"
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

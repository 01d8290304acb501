package tuner

import "math"

// Calibration is a keyspace's online correction of the model's stale-read
// predictions: one multiplicative factor, learnt from what read repair and
// digest probes measure.
//
// Why a factor? The Monte Carlo's errors are mostly multiplicative: legs
// measured as round trips split half and half, queueing the histograms do
// not show, correlated latencies the model samples independently, and the
// gap histogram's conservative proxy all scale the stale probability rather
// than shift it. Why in log space? So that being 10× too pessimistic and 10×
// too optimistic weigh the same, and a factor can never become negative.
//
// After each interval in which a partial quorum (R+W ≤ N) was in force and
// at least CalibrationConfig.MinProbes reads were probed, with s stale of n
// probed and p the raw (uncalibrated) prediction for that policy:
//
//	x        = log((s + Prior) / (p·n + Prior))
//	LogFactor ← clamp((1−Alpha)·LogFactor + Alpha·x, ±log MaxFactor)
//
// The prior pseudo-count keeps the ratio near 1 while both counts are
// small, so a quiet interval barely moves the factor and one stale read in a
// thousand when 0.5 were expected moves it little. Intervals under an
// overlapping quorum do not update it: the model predicts exactly 0 there,
// and what probes see then (writes in flight, clock skew) says nothing about
// partial-quorum staleness. The factor multiplies every candidate's raw
// prediction alike; the model's relative ranking of candidates stands.
//
// The zero value is the neutral factor 1. Calibration lives in State, not in
// Model, because Decide is a pure function: the state goes in and the
// updated state comes out.
type Calibration struct {
	// LogFactor is the natural log of the factor applied to predictions.
	LogFactor float64 `json:"log_factor"`
	// Updates counts the intervals that moved it.
	Updates int `json:"updates"`
}

// Factor is exp(LogFactor).
func (c Calibration) Factor() float64 { return math.Exp(c.LogFactor) }

// Apply corrects a raw stale-read probability: p·Factor, at most 1. Zero
// stays zero: the calibration never makes an overlapping quorum stale.
func (c Calibration) Apply(p float64) float64 {
	if p <= 0 {
		return 0
	}
	return math.Min(1, p*c.Factor())
}

// Update folds one interval's evidence into the calibration (see the type's
// documentation). predicted is the raw prediction for the policy that was in
// force; stale and probed are what was measured. Intervals with fewer than
// MinProbes probed reads return c unchanged.
func (c Calibration) Update(cfg CalibrationConfig, predicted float64, stale, probed uint64) Calibration {
	if probed == 0 || probed < cfg.MinProbes {
		return c
	}
	prior := cfg.Prior
	if !(prior > 0) {
		prior = 1
	}
	x := math.Log((float64(stale) + prior) / (predicted*float64(probed) + prior))
	alpha := cfg.Alpha
	if !(alpha > 0 && alpha <= 1) {
		alpha = 1
	}
	lf := (1-alpha)*c.LogFactor + alpha*x
	if cfg.MaxFactor >= 1 {
		lim := math.Log(cfg.MaxFactor)
		lf = math.Max(-lim, math.Min(lim, lf))
	}
	return Calibration{LogFactor: lf, Updates: c.Updates + 1}
}

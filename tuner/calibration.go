package tuner

import "math"

// Calibration is a keyspace's online correction of the model's stale-read
// predictions: one multiplicative factor, learnt from what read repair and
// digest probes measure.
//
// Why a factor? The Monte Carlo's errors are mostly multiplicative: legs
// measured as round trips split between the directions, queueing the
// histograms do not show, correlated latencies the model samples
// independently, and the gap histogram's proxy all scale the stale
// probability rather than shift it. Why in log space? So that being 10× too
// pessimistic and 10× too optimistic weigh the same, and a factor can never
// become negative.
//
// # Evidence accumulates across intervals
//
// Each interval under a partial quorum (R+W ≤ N) adds its probed reads n_i,
// the stale ones among them s_i, and the stale reads the model expected,
// p_i·n_i, to Pending, where p_i is the raw (uncalibrated) prediction the
// previous decision made for that policy. Once Pending holds
// CalibrationConfig.MinProbes probed reads, with S = Σs_i, E = Σp_i·n_i:
//
//	x        = log((S + Prior) / (E + Prior))
//	LogFactor ← clamp((1−Alpha)·LogFactor + Alpha·x, ±log MaxFactor)
//
// and Pending starts afresh for the same policy. Why accumulate? A keyspace
// serving a few hundred reads per second at a read-repair chance of 0.1
// probes a few dozen reads per interval: counted one interval at a time,
// MinProbes was rarely reached and the factor never moved (the first
// experiment ran a whole hour at factor 1). Summing expected counts rather
// than averaging predictions weighs each interval's prediction by the
// evidence it faced, so a workload that changes under one policy is still
// judged fairly.
//
// Evidence is about one policy: when the policy in force changes, Pending
// is folded in if it holds at least CalibrationConfig.MinStale stale reads
// (a step back ends a partial quorum exactly when its evidence matters, and
// that many stale reads are significant however few reads were probed), and
// dropped otherwise. The prior pseudo-count keeps the ratio near 1 while
// both counts are small, so a fold of little evidence moves the factor
// little. Intervals under an overlapping quorum add nothing: the model
// predicts exactly 0 there, and what probes see then (writes in flight,
// clock skew) says nothing about partial-quorum staleness. The factor
// multiplies every candidate's raw prediction alike; the model's relative
// ranking of candidates stands.
//
// The zero value is the neutral factor 1 with no evidence pending.
// Calibration lives in State, not in Model, because Decide is a pure
// function: the state goes in and the updated state comes out.
type Calibration struct {
	// LogFactor is the natural log of the factor applied to predictions.
	LogFactor float64 `json:"log_factor"`
	// Updates counts the folds that moved it.
	Updates int `json:"updates"`
	// Pending is the evidence gathered since the last fold.
	Pending Evidence `json:"pending"`
}

// Evidence is what probes measured under one policy over one or more
// intervals, beside what the model expected.
type Evidence struct {
	// Policy is the partial quorum the evidence is about.
	Policy Policy `json:"policy"`
	// Intervals counts the intervals summed.
	Intervals int `json:"intervals"`
	// Probed and Stale are the probed reads and the stale ones among them.
	Probed uint64 `json:"probed"`
	Stale  uint64 `json:"stale"`
	// Expected is the stale reads the raw model expected: Σ p_i·n_i.
	Expected float64 `json:"expected"`
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

// Observe adds one interval's evidence: under policy p (a partial quorum)
// the model's raw prediction was predicted, and probes found stale of
// probed reads stale. A p other than Pending's closes the pending evidence
// first (see Close). When the pending evidence reaches cfg.MinProbes probed
// reads it is folded into the factor and pending starts afresh.
func (c Calibration) Observe(cfg CalibrationConfig, p Policy, predicted float64, stale, probed uint64) Calibration {
	if p != c.Pending.Policy {
		c = c.Close(cfg)
		c.Pending.Policy = p
	}
	e := &c.Pending
	e.Intervals++
	e.Probed += probed
	e.Stale += stale
	e.Expected += max(predicted, 0) * float64(probed)
	if e.Probed > 0 && e.Probed >= cfg.MinProbes {
		c = c.fold(cfg, *e)
		c.Pending = Evidence{Policy: p}
	}
	return c
}

// Close ends the pending evidence because the policy it is about is no
// longer in force: it is folded in when it holds at least cfg.MinStale
// stale reads (and cfg.MinStale is positive), and dropped otherwise.
func (c Calibration) Close(cfg CalibrationConfig) Calibration {
	e := c.Pending
	c.Pending = Evidence{}
	if cfg.MinStale > 0 && e.Stale >= cfg.MinStale && e.Probed > 0 {
		c = c.fold(cfg, e)
	}
	return c
}

// Update folds one batch of evidence into the calibration at once: a raw
// prediction predicted for the policy that was in force, and stale of
// probed reads measured stale. Batches of fewer than MinProbes probed
// reads return c unchanged. Decide uses Observe, which accumulates batches
// until MinProbes is reached; Update is the fold on its own.
func (c Calibration) Update(cfg CalibrationConfig, predicted float64, stale, probed uint64) Calibration {
	if probed == 0 || probed < cfg.MinProbes {
		return c
	}
	return c.fold(cfg, Evidence{Probed: probed, Stale: stale, Expected: max(predicted, 0) * float64(probed)})
}

// fold moves the factor by one batch of evidence (see the type's
// documentation); Pending is left as it is.
func (c Calibration) fold(cfg CalibrationConfig, e Evidence) Calibration {
	prior := cfg.Prior
	if !(prior > 0) {
		prior = 1
	}
	x := math.Log((float64(e.Stale) + prior) / (e.Expected + prior))
	alpha := cfg.Alpha
	if !(alpha > 0 && alpha <= 1) {
		alpha = 1
	}
	lf := (1-alpha)*c.LogFactor + alpha*x
	if cfg.MaxFactor >= 1 {
		lim := math.Log(cfg.MaxFactor)
		lf = math.Max(-lim, math.Min(lim, lf))
	}
	c.LogFactor = lf
	c.Updates++
	return c
}

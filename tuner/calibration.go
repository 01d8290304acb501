package tuner

import (
	"math"
	"time"
)

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

// LatencyCalibration is a keyspace's online correction of the model's
// latency predictions: an offset added to every candidate's predicted read
// p99 and one to its write p99, learnt from the client-visible p99s the
// coordinators measure under the policy in force.
//
// Why an offset and not a factor, as for staleness? What the model leaves
// out of a latency is mostly added to it: the coordinator's own work
// (decoding, planning, the local engine, the reply), which costs about the
// same whether the read then waits 0.1 ms for the local replica or 21 ms
// for a remote one. A factor learnt at R=1 (0.1 ms predicted, 0.4 ms
// measured: ×4) would turn a 21 ms R=2 prediction into 84 ms. An offset
// shifts every candidate alike, so it changes no ranking by cost; it makes
// the predicted p99s honest, and so the latency targets and the
// predicted-against-observed figures in decisions and metrics.
//
// After each interval in which the policy the last decision predicted was
// in force and at least CalibrationConfig.MinLatencySamples operations of a
// kind were measured, with o the measured p99 and p the raw prediction:
//
//	Offset ← (1−Alpha)·Offset + Alpha·(o − p)
//
// Alpha is CalibrationConfig.Alpha. The zero value adds nothing.
type LatencyCalibration struct {
	// ReadOffset and WriteOffset are added to predicted p99s.
	ReadOffset  time.Duration `json:"read_offset_ns"`
	WriteOffset time.Duration `json:"write_offset_ns"`
	// ReadUpdates and WriteUpdates count the intervals that moved them.
	ReadUpdates  int `json:"read_updates"`
	WriteUpdates int `json:"write_updates"`
}

// Observe folds one interval's measured p99s into the offsets: predRead and
// predWrite are the raw predictions for the policy that was in force (0:
// none), obs what was measured.
func (c LatencyCalibration) Observe(cfg CalibrationConfig, predRead, predWrite time.Duration, obs *Observation) LatencyCalibration {
	alpha := cfg.Alpha
	if !(alpha > 0 && alpha <= 1) {
		alpha = 1
	}
	minN := max(cfg.MinLatencySamples, 1)
	step := func(off time.Duration, pred time.Duration, h *Hist) (time.Duration, bool) {
		if pred <= 0 || h.Count() < minN {
			return off, false
		}
		x := float64(h.Quantile(0.99) - pred)
		return time.Duration((1-alpha)*float64(off) + alpha*x), true
	}
	var ok bool
	if c.ReadOffset, ok = step(c.ReadOffset, predRead, &obs.ReadLatency); ok {
		c.ReadUpdates++
	}
	if c.WriteOffset, ok = step(c.WriteOffset, predWrite, &obs.WriteLatency); ok {
		c.WriteUpdates++
	}
	return c
}

// Apply corrects a prediction's p99s, keeping each at least its p50, and
// keeps the raw ones in RawReadP99 and RawWriteP99.
func (c LatencyCalibration) Apply(p *Prediction) {
	p.RawReadP99, p.RawWriteP99 = p.ReadP99, p.WriteP99
	p.ReadP99 = max(p.ReadP99+c.ReadOffset, p.ReadP50)
	p.WriteP99 = max(p.WriteP99+c.WriteOffset, p.WriteP50)
}

package scenario

import (
	"fmt"
	"math"
	"time"
)

// The done-means criteria of the experiment.
const (
	// MaxReadP99VsOne: adaptive's read p99 at most this times one's.
	MaxReadP99VsOne = 1.2
	// MaxReadP99VsQuorum: adaptive's read p99 at most this times quorum's.
	MaxReadP99VsQuorum = 0.5
	// AgreeFactor and AgreeAbs: a prediction agrees with a measurement
	// when they are within this factor of each other, or this far apart in
	// absolute terms (0.05 percentage points), which is what decides when
	// both are tiny and a factor means nothing (0 against 0.0001).
	AgreeFactor = 2.0
	AgreeAbs    = 0.0005
	// TunerWarm is how long the tuner must have run before its
	// predictions are judged.
	TunerWarm = time.Minute
)

// Check is one criterion judged in one phase.
type Check struct {
	Name string `json:"name"`
	// Applies is false when the criterion does not apply to the phase (the
	// latency criteria apply only where one breaks the bound or quorum pays
	// cross-zone latency) or cannot be judged (no prediction).
	Applies bool   `json:"applies"`
	Pass    bool   `json:"pass"`
	Detail  string `json:"detail"`
}

// PhaseVerdict is the criteria judged on one phase's figures.
type PhaseVerdict struct {
	Phase string `json:"phase"`
	// Basis is "whole" (the whole phase) or "steady" (after Settle).
	Basis  string  `json:"basis"`
	Checks []Check `json:"checks"`
	// Pass: every applicable check passed.
	Pass bool `json:"pass"`
}

// Prediction sets the tuner's predicted stale-read rate beside the
// measured one for a span of a phase.
type Prediction struct {
	// Decisions is how many decisions, made after the tuner had run
	// TunerWarm and within the span, were averaged.
	Decisions int `json:"decisions"`
	// Predicted is their mean predicted stale-read probability for the
	// configuration in force; Measured is the adaptive arm's measured
	// rate over the span; Agree judges them (see Agree).
	Predicted float64 `json:"predicted_stale"`
	Measured  float64 `json:"measured_stale"`
	Agree     bool    `json:"agree"`
	// InForce lists the configurations in force during the span.
	InForce []string `json:"in_force"`
	// TunerStaleRate is the mean stale rate the tuner measured itself
	// (read-repair probes) over its windows.
	TunerStaleRate float64 `json:"tuner_stale_rate"`
	// ReadP99Ms and WriteP99Ms are the decisions' mean predicted p99s for
	// the configuration in force (calibrated: they include the offsets),
	// to set beside the adaptive arm's measured ones; Calibration,
	// ReadOffsetMs and WriteOffsetMs are the last decision's calibration.
	ReadP99Ms     float64 `json:"predicted_read_p99_ms"`
	WriteP99Ms    float64 `json:"predicted_write_p99_ms"`
	Calibration   float64 `json:"calibration"`
	ReadOffsetMs  float64 `json:"read_offset_ms"`
	WriteOffsetMs float64 `json:"write_offset_ms"`
	// OnePredicted is the model's what-if prediction for level one's
	// configuration at the end of the phase (-1: none), OneMeasured what
	// arm one measured over the span, and OneAgree judges them: a check of
	// the model on a configuration that is actually stale. Informative;
	// not a done-means criterion.
	OnePredicted float64 `json:"one_predicted_stale"`
	OneMeasured  float64 `json:"one_measured_stale"`
	OneAgree     bool    `json:"one_agree"`
}

// Agree reports whether a predicted and a measured rate agree: within
// AgreeFactor of each other, or within AgreeAbs.
func Agree(predicted, measured float64) bool {
	if predicted < 0 || measured < 0 {
		return false
	}
	if math.Abs(predicted-measured) <= AgreeAbs {
		return true
	}
	if predicted == 0 || measured == 0 {
		return false
	}
	r := predicted / measured
	return r <= AgreeFactor && r >= 1/AgreeFactor
}

// predictionOver averages the decisions made in [from, to) once the tuner
// had run since tunerStart for TunerWarm, against the measured rate.
func predictionOver(ds []Decision, from, to, tunerStart time.Time, measured float64) Prediction {
	p := Prediction{Measured: measured, OnePredicted: -1}
	warm := tunerStart.Add(TunerWarm)
	var sum, tsum, rsum, wsum float64
	for _, d := range ds {
		if d.At.Before(from) || !d.At.Before(to) || d.At.Before(warm) || d.PredictedStale < 0 {
			continue
		}
		p.Decisions++
		sum += d.PredictedStale
		tsum += d.TunerStaleRate
		rsum += d.PredictedReadP99Ms
		wsum += d.PredictedWriteP99M
		p.Calibration, p.ReadOffsetMs, p.WriteOffsetMs = d.Calibration, d.ReadOffsetMs, d.WriteOffsetMs
		if len(p.InForce) == 0 || p.InForce[len(p.InForce)-1] != d.To {
			p.InForce = append(p.InForce, d.To)
		}
	}
	if p.Decisions > 0 {
		p.Predicted = sum / float64(p.Decisions)
		p.TunerStaleRate = tsum / float64(p.Decisions)
		p.ReadP99Ms, p.WriteP99Ms = rsum/float64(p.Decisions), wsum/float64(p.Decisions)
		p.Agree = Agree(p.Predicted, p.Measured)
	}
	return p
}

// Judge checks one phase's figures against the done-means criteria.
func Judge(phase, basis string, one, quorum, adaptive Figures, pred Prediction, maxStale float64, crossZone time.Duration) PhaseVerdict {
	v := PhaseVerdict{Phase: phase, Basis: basis}

	stale := Check{Name: "adaptive stale reads ≤ bound", Applies: true}
	switch {
	case adaptive.Reads == 0:
		stale.Detail = "no reads were measured"
	default:
		stale.Pass = adaptive.StaleRate <= maxStale
		stale.Detail = fmt.Sprintf("%s (%d of %d) against %s", pct(adaptive.StaleRate), adaptive.Stale, adaptive.Reads, pct(maxStale))
	}
	v.Checks = append(v.Checks, stale)

	// The latency criteria apply where adapting is worth something: where
	// one is not good enough, or quorum is slow because it crosses zones.
	oneBreaks := one.Reads > 0 && one.StaleRate > maxStale
	quorumPays := quorum.Reads > 0 && quorum.ReadP99Ms >= float64(crossZone)/float64(time.Millisecond)
	var why string
	switch {
	case oneBreaks && quorumPays:
		why = fmt.Sprintf("one breaks the bound (%s) and quorum pays cross-zone latency (read p99 %s)", pct(one.StaleRate), msStr(quorum.ReadP99Ms))
	case oneBreaks:
		why = fmt.Sprintf("one breaks the bound (%s)", pct(one.StaleRate))
	case quorumPays:
		why = fmt.Sprintf("quorum pays cross-zone latency (read p99 %s)", msStr(quorum.ReadP99Ms))
	default:
		why = "does not apply: one keeps the bound and quorum does not pay cross-zone latency"
	}
	applies := oneBreaks || quorumPays
	ratio := func(a, b float64) float64 {
		if b <= 0 {
			return math.Inf(1)
		}
		return a / b
	}
	vsOne := Check{Name: fmt.Sprintf("adaptive read p99 ≤ %.1f× one", MaxReadP99VsOne), Applies: applies}
	vsQuorum := Check{Name: fmt.Sprintf("adaptive read p99 ≤ %.1f× quorum", MaxReadP99VsQuorum), Applies: applies}
	if applies {
		r1, rq := ratio(adaptive.ReadP99Ms, one.ReadP99Ms), ratio(adaptive.ReadP99Ms, quorum.ReadP99Ms)
		vsOne.Pass = adaptive.Reads > 0 && r1 <= MaxReadP99VsOne
		vsQuorum.Pass = adaptive.Reads > 0 && rq <= MaxReadP99VsQuorum
		vsOne.Detail = fmt.Sprintf("%s / %s = %.2f; applies: %s", msStr(adaptive.ReadP99Ms), msStr(one.ReadP99Ms), r1, why)
		vsQuorum.Detail = fmt.Sprintf("%s / %s = %.2f; applies: %s", msStr(adaptive.ReadP99Ms), msStr(quorum.ReadP99Ms), rq, why)
	} else {
		vsOne.Detail, vsQuorum.Detail = why, why
	}
	v.Checks = append(v.Checks, vsOne, vsQuorum)

	pc := Check{Name: "predicted ≈ measured stale rate", Applies: pred.Decisions > 0}
	if pred.Decisions > 0 {
		pc.Pass = pred.Agree
		pc.Detail = fmt.Sprintf("predicted %s (mean of %d decisions) against measured %s (within %.0f× or %s)",
			pct(pred.Predicted), pred.Decisions, pct(pred.Measured), AgreeFactor, pp(AgreeAbs))
	} else {
		pc.Detail = fmt.Sprintf("cannot be judged: no decisions after the tuner's first %v in this span", TunerWarm)
	}
	v.Checks = append(v.Checks, pc)

	v.Pass = true
	for _, c := range v.Checks {
		if c.Applies && !c.Pass {
			v.Pass = false
		}
	}
	return v
}

package tuner

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// State is the tuner's memory of one keyspace between decisions. Decide
// takes it and returns the next one; the caller stores it (in the metadata
// log, beside the keyspace's configuration, so a new metadata leader picks
// up where the old one stopped).
type State struct {
	// Policy is the configuration in force. Decide's returned state holds
	// the configuration it chose, assuming the caller applies its plan; a
	// caller that has not (yet) must pass the policy actually in force.
	Policy Policy `json:"policy"`
	// LastChange is when Policy was last changed (zero: never).
	LastChange time.Time `json:"last_change"`
	// Calibration is the keyspace's correction of stale-read predictions.
	Calibration Calibration `json:"calibration"`
	// PredictedFor and PredictedRawStale are the last decision's raw
	// stale-read prediction for the policy it left in force; the next
	// interval's measurement is compared with it to calibrate.
	PredictedFor      Policy  `json:"predicted_for"`
	PredictedRawStale float64 `json:"predicted_raw_stale"`
	// PredictedReadP99 and PredictedWriteP99 are that decision's raw
	// latency predictions for it, and Latency the keyspace's correction of
	// predicted latencies, learnt from them.
	PredictedReadP99  time.Duration      `json:"predicted_read_p99_ns,omitempty"`
	PredictedWriteP99 time.Duration      `json:"predicted_write_p99_ns,omitempty"`
	Latency           LatencyCalibration `json:"latency"`
	// Backoff holds weak partial quorums back after a move away from one
	// for staleness.
	Backoff Backoff `json:"backoff"`
	// Unrepaired lists the configurations, other than Policy, under which
	// writes may have been acknowledged since the keyspace's last complete
	// repair pass, and which Policy does not dominate (see Unrepaired). A
	// plan step whose reads would miss their writes requires a repair pass
	// (PlanAfter). Moved and Repaired keep it.
	Unrepaired []Policy `json:"unrepaired,omitempty"`
	// ShrunkAt is when N was first lowered below ShrunkFrom without the
	// cleanup since (zero: none owed). The replicas a shrink drops keep
	// their data but no longer see deletes; once the others have collected
	// those tombstones, growing N back would stream the old values to the
	// list again. So the shell cleans the dropped replicas after a shrink,
	// clears ShrunkAt once that completed on every node, and refuses to
	// grow N while it is set (rollout.Executor.GrowAllowed). CleanupError
	// says why the last attempt did not complete.
	ShrunkAt     time.Time `json:"shrunk_at,omitempty"`
	ShrunkFrom   int       `json:"shrunk_from,omitempty"`
	CleanupError string    `json:"cleanup_error,omitempty"`
}

// Moved records that the configuration in force changed to p without a
// repair pass: writes acknowledged under the one before stay where they
// were written.
func (s *State) Moved(p Policy) {
	if p == s.Policy {
		return
	}
	s.Unrepaired = Unrepaired(s.Unrepaired, s.Policy, p)
	s.Policy = p
}

// Repaired records a complete repair pass that began while s.Policy was in
// force on every node: every write acknowledged before it is on all of its
// replicas, and every later one was made under s.Policy.
func (s *State) Repaired() { s.Unrepaired = nil }

// Resized records a change of N to n at now: the first shrink since the
// last cleanup sets ShrunkAt and ShrunkFrom, and growing back to
// ShrunkFrom (whose streaming brought the dropped replicas up to date)
// clears them. Cleaned clears them too.
func (s *State) Resized(n int, now time.Time) {
	switch {
	case n < s.Policy.N && s.ShrunkAt.IsZero():
		s.ShrunkAt, s.ShrunkFrom = now, s.Policy.N
	case n > s.Policy.N && n >= s.ShrunkFrom:
		s.Cleaned()
	}
}

// Cleaned records a cleanup that completed on every node while s.Policy.N
// was in force: no replica holds records of keys outside its first N, so
// none is owed.
func (s *State) Cleaned() { s.ShrunkAt, s.ShrunkFrom, s.CleanupError = time.Time{}, 0, "" }

// Applied returns s after plan was carried out as its steps say: each step
// committed in turn, with a repair pass where one is required (before the
// step when it lowers a quorum or N, after it otherwise; see
// Step.RepairFirst).
func (s State) Applied(plan []Step) State {
	for _, st := range plan {
		first := st.RepairFirst(s.Policy)
		if first {
			s.Repaired()
		}
		s.Moved(st.Policy)
		if st.RequiresRepair && !first {
			s.Repaired()
		}
	}
	return s
}

// Backoff is the tuner's hysteresis after it leaves a partial quorum for
// staleness: a step back (measured stale reads above the goal) or a forced
// move (the partial quorum in force now predicted to miss the goal). Until
// Until, no partial quorum as weak as From (the same N, R ≤ From.R and
// W ≤ From.W) is eligible, so the tuner does not walk back
// into the configuration that just returned stale reads, nor into a weaker
// one, however cheap the model predicts them. Each wait doubles the last,
// from Model.BackoffBase up to Model.BackoffMax (and never below
// Model.Dwell); a step back more than BackoffMax after the last wait ended
// starts again from BackoffBase, since by then the workload the evidence
// came from has likely changed. Within a run of step backs From
// accumulates (R and W each the largest stepped back from), so that the
// tuner does not alternate between the partial quorums of the run.
//
// Why is dwell not enough? Dwell spaces changes, but after it the window's
// stale reads have aged out and the model that under-predicted the partial
// quorum predicts it the same way again: with a 5 s dwell the first
// experiment retried R=1 W=1 every 20–50 s, each retry returning stale
// reads, and the steady stale rate broke the goal (0.132% against 0.1%).
// Why forced moves too? A prediction that hovers about the goal otherwise
// cycles the same way: in a short run of the experiment with a 5 s dwell
// the tuner went R=1 W=2 → R=1 W=1 → (predicted stale) R=1 W=2 three times
// in 25 s, and three reads came back stale.
type Backoff struct {
	// From is the partial quorum left (within a run of moves away, the
	// weakest configuration holding back all of them).
	From Policy `json:"from"`
	// At is when, and Until when weak partial quorums become eligible
	// again.
	At    time.Time `json:"at"`
	Until time.Time `json:"until"`
	// Count is the moves away in a row (0: no backoff ever).
	Count int `json:"count"`
	// Cause is the reason of the last move away: ReasonStepBack or
	// ReasonPredictedStale.
	Cause Reason `json:"cause"`
	// Flagged are the nodes the health detector had flagged when the
	// backoff began (Observation.Flagged). A backoff is evidence about
	// partial quorums under one routing: when a node is flagged or
	// reinstated, reads go elsewhere and the evidence no longer applies,
	// so Decide lifts the backoff (keeping Count, so that a partial quorum
	// that is still stale backs off longer the next time).
	Flagged []string `json:"flagged,omitempty"`
}

// Blocks reports whether the backoff holds p back at now.
func (b Backoff) Blocks(p Policy, now time.Time) bool {
	return b.Count > 0 && now.Before(b.Until) && !p.Overlapping() &&
		p.N == b.From.N && p.R <= b.From.R && p.W <= b.From.W
}

// Active reports whether the backoff holds anything back at now.
func (b Backoff) Active(now time.Time) bool { return b.Count > 0 && now.Before(b.Until) }

// nextBackoff is the backoff after leaving `from` at now, for cause.
func (m Model) nextBackoff(prev Backoff, from Policy, now time.Time, cause Reason, flagged []string) Backoff {
	if m.BackoffBase <= 0 {
		return Backoff{}
	}
	count := 1
	if prev.Count > 0 && now.Sub(prev.Until) <= m.BackoffMax {
		count = prev.Count + 1
		if prev.From.N == from.N {
			// Hold back what the run of step backs held back: otherwise
			// the tuner alternates, after each wait, between the partial
			// quorum it stepped back from last and the one before.
			from.R, from.W = max(from.R, prev.From.R), max(from.W, prev.From.W)
		}
	}
	d := m.BackoffBase
	for i := 1; i < count && d < m.BackoffMax; i++ {
		d *= 2
	}
	d = max(min(d, m.BackoffMax), m.Dwell)
	return Backoff{From: from, At: now, Until: now.Add(d), Count: count, Cause: cause, Flagged: slices.Clone(flagged)}
}

// liftedBy reports whether the flagged nodes now differ from those the
// backoff began under, which ends it (see Backoff.Flagged).
func (b Backoff) liftedBy(flagged []string) bool {
	return !slices.Equal(b.Flagged, flagged)
}

// NewState returns the state of a keyspace that starts with policy p.
func NewState(p Policy) State { return State{Policy: p} }

// Reason classifies a decision, for logs, metrics and golden files.
type Reason string

const (
	// ReasonCheaper: moved to a cheaper configuration that meets the goal.
	ReasonCheaper Reason = "cheaper"
	// ReasonStepBack: the measured stale-read rate exceeded the goal under a
	// partial quorum; moved at once to an overlapping one.
	ReasonStepBack Reason = "step_back"
	// ReasonPredictedStale: the configuration in force is now predicted to
	// miss the stale-read goal; moved at once to one that meets it.
	ReasonPredictedStale Reason = "predicted_stale"
	// ReasonOutOfBounds: the configuration in force is outside the goal's
	// bounds or floor (the goal changed); moved at once.
	ReasonOutOfBounds Reason = "out_of_bounds"
	// ReasonBackoff: a cheaper partial quorum is predicted to meet the goal
	// and dwell and the minimum gain would allow the move, but a recent
	// move away from a partial quorum for staleness holds it back (see
	// Backoff).
	ReasonBackoff Reason = "backoff"
	// ReasonHold: the configuration in force is still the best.
	ReasonHold Reason = "hold"
	// ReasonDwell: a better configuration exists, but the last change was
	// less than Model.Dwell ago.
	ReasonDwell Reason = "dwell"
	// ReasonSmallGain: a better configuration exists, but it is not
	// Model.MinGain cheaper.
	ReasonSmallGain Reason = "small_gain"
	// ReasonNoData: no latencies were observed; nothing to predict from.
	ReasonNoData Reason = "no_data"
	// ReasonNoCandidate: no configuration satisfies the bounds (e.g. the
	// cluster has fewer nodes than the minimum replication factor).
	ReasonNoCandidate Reason = "no_candidate"
	// ReasonInvalid: the goal, the model or the state is invalid.
	ReasonInvalid Reason = "invalid"
)

// Changed reports whether the reason is one that changes the policy.
func (r Reason) Changed() bool {
	switch r {
	case ReasonCheaper, ReasonStepBack, ReasonPredictedStale, ReasonOutOfBounds:
		return true
	}
	return false
}

// CandidateReport is one candidate as the tuner weighed it.
type CandidateReport struct {
	Prediction
	// Cost is the total the tuner minimises (ms; see CostWeights), and
	// CostParts its terms.
	Cost      float64   `json:"cost"`
	CostParts CostParts `json:"cost_parts"`
	// Allowed: within the goal's bounds and floor, and N within the cluster.
	Allowed bool `json:"allowed"`
	// MeetsStale: the predicted (calibrated) stale-read probability is
	// within the goal, and, for a partial quorum, the window's measured
	// rate is not above it.
	MeetsStale bool `json:"meets_stale"`
	// MeetsLatency: the predicted p99s are within the goal's targets.
	MeetsLatency bool `json:"meets_latency"`
	// BackedOff: a partial quorum as weak as one recently left for
	// staleness, held back until the backoff ends (see Backoff).
	BackedOff bool `json:"backed_off,omitempty"`
	// Rejected says why a candidate is not eligible ("" if it is).
	Rejected string `json:"rejected,omitempty"`
}

// Eligible reports whether the candidate may be chosen: allowed, within
// the stale-read goal and not backed off. (Latency targets are
// preferences: see Decide.)
func (c *CandidateReport) Eligible() bool { return c.Allowed && c.MeetsStale && !c.BackedOff }

// CostParts are the terms of a candidate's cost, in ms.
type CostParts struct {
	Latency  float64 `json:"latency"`  // share-weighted p99s
	Load     float64 `json:"load"`     // replica requests per operation
	Replicas float64 `json:"replicas"` // copies kept
	Hot      float64 `json:"hot"`      // hot keys' load on one replica
	Fail     float64 `json:"fail"`     // chance of an operation failing
}

// Decision is one decision about one keyspace, with everything needed to
// explain it: its inputs, every candidate weighed, the choice, the reason,
// the plan to apply it, and later what was observed after it.
type Decision struct {
	Keyspace string    `json:"keyspace"` // the keyspace decided for
	At       time.Time `json:"at"`       // when (Decide's now)
	// From is the policy in force; To the one chosen (equal when holding).
	From Policy `json:"from"`
	To   Policy `json:"to"`
	// Changed reports whether To differs from From.
	Changed bool `json:"changed"`
	// Reason classifies the decision; Explanation says it for a person.
	Reason      Reason `json:"reason"`
	Explanation string `json:"explanation"`
	// Goal is the goal decided against.
	Goal Goal `json:"goal"`
	// LastChange is when the policy last changed before this decision.
	LastChange time.Time `json:"last_change"`
	// Inputs summarises the observation window.
	Inputs Summary `json:"inputs"`
	// Calibration is the factor applied to stale-read predictions, and
	// Latency the offsets added to predicted p99s.
	Calibration float64            `json:"calibration"`
	Latency     LatencyCalibration `json:"latency_calibration"`
	// CalibrationPending is the stale-read evidence gathered but not yet
	// folded into Calibration.
	CalibrationPending Evidence `json:"calibration_pending"`
	// Current and Chosen are the reports of From and To; Best is the
	// cheapest eligible candidate, which differs from Chosen when dwell or
	// the minimum gain held the change back.
	Current *CandidateReport `json:"current,omitempty"`
	Chosen  *CandidateReport `json:"chosen,omitempty"`
	Best    *CandidateReport `json:"best,omitempty"`
	// Candidates are all configurations weighed, in enumeration order.
	Candidates []CandidateReport `json:"candidates,omitempty"`
	// HeldBack is the cheapest candidate that would have been taken but
	// for the backoff (nil if none); Backoff the backoff in force after
	// the decision (nil if none).
	HeldBack *CandidateReport `json:"held_back,omitempty"`
	Backoff  *Backoff         `json:"backoff,omitempty"`
	// BackoffLifted is a backoff this decision ended early because the
	// flagged nodes changed since it began (see Backoff.Flagged).
	BackoffLifted *Backoff `json:"backoff_lifted,omitempty"`
	// LatencyTargetUnmet: no eligible candidate met the goal's latency
	// targets, so the cheapest eligible one was taken regardless.
	LatencyTargetUnmet bool `json:"latency_target_unmet,omitempty"`
	// Plan is how to get from From to To (nil when not changing).
	Plan []Step `json:"plan,omitempty"`
	// Observed is filled in later by Observe with what happened under To.
	Observed *Observed `json:"observed,omitempty"`
}

// Observed is what was measured in an interval after a decision, to set
// beside what was predicted.
type Observed struct {
	Start     time.Time     `json:"start"` // the span observed
	End       time.Time     `json:"end"`
	Policy    Policy        `json:"policy"` // the policy that was in force
	Reads     uint64        `json:"reads"`  // client operations
	Writes    uint64        `json:"writes"`
	Probed    uint64        `json:"probed"`      // reads checked for staleness
	Stale     uint64        `json:"stale"`       // … found stale
	StaleRate float64       `json:"stale_rate"`  // Stale/Probed
	ReadP50   time.Duration `json:"read_p50_ns"` // client-visible latencies
	ReadP99   time.Duration `json:"read_p99_ns"`
	WriteP50  time.Duration `json:"write_p50_ns"`
	WriteP99  time.Duration `json:"write_p99_ns"`
}

// Compact returns a copy of the decision that keeps only the k cheapest
// eligible candidates besides the current, chosen and best ones, for a
// decision log that must stay small (a decision over N in 3..5 weighs 96
// candidates). The figures of those three are kept in Current, Chosen and
// Best whatever k is.
func (d Decision) Compact(k int) Decision {
	keep := make([]int, 0, len(d.Candidates))
	for i := range d.Candidates {
		keep = append(keep, i)
	}
	slices.SortStableFunc(keep, func(i, j int) int {
		a, b := &d.Candidates[i], &d.Candidates[j]
		if a.Eligible() != b.Eligible() {
			if a.Eligible() {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Cost, b.Cost)
	})
	out := d
	out.Candidates = nil
	for n, i := range keep {
		c := d.Candidates[i]
		special := (d.Current != nil && c.Policy == d.Current.Policy) ||
			(d.Chosen != nil && c.Policy == d.Chosen.Policy) || (d.Best != nil && c.Policy == d.Best.Policy)
		if (n < k && c.Eligible()) || special {
			out.Candidates = append(out.Candidates, c)
		}
	}
	return out
}

// Observe records what was measured after the decision (typically the
// merged observations of the intervals until the next change), so that the
// decision log shows predicted against observed.
func (d *Decision) Observe(obs Observation) {
	d.Observed = &Observed{
		Start: obs.Start, End: obs.End, Policy: obs.Policy,
		Reads: obs.Reads, Writes: obs.Writes,
		Probed: obs.Probed, Stale: obs.Stale, StaleRate: obs.StaleRate(),
		ReadP50: obs.ReadLatency.Quantile(0.5), ReadP99: obs.ReadLatency.Quantile(0.99),
		WriteP50: obs.WriteLatency.Quantile(0.5), WriteP99: obs.WriteLatency.Quantile(0.99),
	}
}

// Decide chooses a keyspace's policy for the next interval. It is a pure
// function: it does no I/O, reads no clock (now is an input) and starts no
// goroutine, and the same model, state, window, goal and time always yield
// the same state and decision, so a recorded trace replays in a test. It
// does not modify w.
//
// In order:
//
//  1. Calibrate: if a partial quorum was in force during the newest
//     interval and the last decision predicted its stale rate, add the
//     interval's probes to the calibration's pending evidence, which is
//     folded in once it holds enough (Calibration.Observe); if another
//     policy is now in force, close the pending evidence (Calibration.Close).
//     Likewise fold the interval's measured read and write p99s into the
//     latency offsets (LatencyCalibration), which then correct every
//     candidate's predicted p99s.
//  2. Predict every candidate the goal allows (Candidates) on the merged
//     window, plus the policy in force, and cost them (CostWeights).
//     Eligible candidates meet the stale-read goal; while the window's
//     measured stale rate is above the goal, partial quorums are not
//     eligible whatever their prediction.
//  3. Step back at once, ignoring dwell and the minimum gain, when the
//     window measured at least Model.MinStaleEvents stale reads at a rate
//     above the goal under a partial quorum: to the cheapest overlapping
//     candidate at the same N (no streaming needed), and start or extend a
//     Backoff for partial quorums as weak as the one left.
//  4. Move at once, likewise, when the policy in force is outside the
//     goal's bounds, or is now predicted to miss the stale-read goal: to the
//     cheapest eligible candidate, at the same N when there is one; leaving
//     a partial quorum predicted stale starts or extends a Backoff too.
//  5. Otherwise take the cheapest eligible candidate (preferring those that
//     meet the latency targets), but only if the last change is at least
//     Model.Dwell old and the candidate costs at most (1 − Model.MinGain)
//     times the policy in force. Partial quorums as weak as one left for
//     staleness are not eligible until the Backoff ends; when
//     such a candidate would otherwise have been taken, the decision says
//     so (ReasonBackoff, or HeldBack beside a cheaper move).
//
// The decision's Plan says how to apply a change safely (see Plan).
func Decide(m Model, s State, w *Window, g Goal, now time.Time) (State, Decision) {
	d := Decision{At: now, From: s.Policy, To: s.Policy, Goal: g, LastChange: s.LastChange}
	merged := w.Merged()
	d.Keyspace = merged.Keyspace
	d.Inputs = Summarize(&merged)
	hold := func(r Reason) (State, Decision) {
		d.Reason = r
		d.Explanation = explain(&d, m)
		return s, d
	}
	invalid := func(why string) (State, Decision) {
		d.Reason = ReasonInvalid
		d.Explanation = fmt.Sprintf("Kept %s at %v: %s.", d.Keyspace, s.Policy, why)
		return s, d
	}
	if err := g.Validate(); err != nil {
		return invalid(err.Error())
	}
	if err := m.Validate(); err != nil {
		return invalid(err.Error())
	}
	if !s.Policy.Valid() {
		return invalid("the state's policy is not valid (want 1 ≤ R, W ≤ N)")
	}

	// 1. Calibrate on the newest interval.
	ns := s
	if last, ok := w.Last(); ok {
		inForce := last.Policy
		if inForce == (Policy{}) {
			inForce = s.Policy
		}
		switch {
		case inForce == s.PredictedFor && inForce.Valid() && !inForce.Overlapping():
			ns.Calibration = s.Calibration.Observe(m.Calibration, inForce, s.PredictedRawStale, last.Stale, last.Probed)
		case inForce != s.Calibration.Pending.Policy && s.Calibration.Pending != (Evidence{}):
			// The partial quorum the evidence is about left force.
			ns.Calibration = s.Calibration.Close(m.Calibration)
		}
	}
	if last, ok := w.Last(); ok && s.PredictedFor.Valid() && (last.Policy == s.PredictedFor || last.Policy == (Policy{}) && s.Policy == s.PredictedFor) {
		ns.Latency = s.Latency.Observe(m.Calibration, s.PredictedReadP99, s.PredictedWriteP99, &last)
	}
	d.Calibration = ns.Calibration.Factor()
	d.Latency = ns.Latency
	d.CalibrationPending = ns.Calibration.Pending
	s = ns // from here on, holding keeps the new calibration

	// 2. Predict and cost.
	cands := Candidates(g, merged.ClusterSize)
	if !slices.Contains(cands, s.Policy) {
		cands = append(cands, s.Policy)
	}
	preds, err := m.Predict(merged, cands, s.Calibration)
	if err != nil {
		return hold(ReasonNoData)
	}
	for i := range preds {
		s.Latency.Apply(&preds[i])
	}
	measuredBad := merged.Stale >= max(m.MinStaleEvents, 1) && merged.StaleRate() > g.MaxStale
	d.Candidates = make([]CandidateReport, len(cands))
	cur := -1
	for i, p := range preds {
		d.Candidates[i] = m.report(p, g, &d.Inputs, merged.ClusterSize, measuredBad)
		if p.Policy == s.Policy {
			cur = i
		}
	}
	if s.Backoff.Active(now) && s.Backoff.liftedBy(merged.Flagged) {
		lifted := s.Backoff
		d.BackoffLifted = &lifted
		s.Backoff.Until = now
	}
	if s.Backoff.Active(now) {
		for i := range d.Candidates {
			c := &d.Candidates[i]
			if s.Backoff.Blocks(c.Policy, now) {
				c.BackedOff = true
				if c.Rejected == "" {
					c.Rejected = fmt.Sprintf("backed off until %s after leaving %v", clock(s.Backoff.Until), s.Backoff.From)
				}
			}
		}
		b := s.Backoff
		d.Backoff = &b
	}
	d.Current = &d.Candidates[cur]
	curRep := d.Current

	best, unmet := cheapest(d.Candidates, func(c *CandidateReport) bool { return c.Eligible() })
	d.LatencyTargetUnmet = unmet
	if best < 0 {
		return hold(ReasonNoCandidate)
	}
	d.Best = &d.Candidates[best]
	sameN := func(c *CandidateReport) bool { return c.Eligible() && c.Policy.N == s.Policy.N }

	// s.PredictedFor is updated whatever is chosen.
	choose := func(i int, r Reason) (State, Decision) {
		c := &d.Candidates[i]
		d.Chosen = c
		d.To = c.Policy
		d.Reason = r
		d.Changed = d.To != d.From
		out := s
		out.PredictedFor, out.PredictedRawStale = c.Policy, c.RawStaleProb
		out.PredictedReadP99, out.PredictedWriteP99 = c.RawReadP99, c.RawWriteP99
		if r == ReasonStepBack || (r == ReasonPredictedStale && !s.Policy.Overlapping()) {
			out.Backoff = m.nextBackoff(s.Backoff, s.Policy, now, r, merged.Flagged)
			b := out.Backoff
			d.Backoff = &b
		}
		if d.Changed {
			d.Plan = PlanAfter(s.Unrepaired, d.From, d.To)
			out = out.Applied(d.Plan)
			out.LastChange = now
		}
		d.Explanation = explain(&d, m)
		return out, d
	}

	// 3. Step back on measured staleness.
	if measuredBad && !s.Policy.Overlapping() {
		safe := func(c *CandidateReport) bool { return c.Allowed && c.Policy.Overlapping() }
		i, _ := cheapest(d.Candidates, func(c *CandidateReport) bool { return safe(c) && c.Policy.N == s.Policy.N })
		if i < 0 {
			i, _ = cheapest(d.Candidates, safe)
		}
		if i >= 0 {
			return choose(i, ReasonStepBack)
		}
	}
	// 4. Forced moves.
	if !curRep.Allowed || !curRep.MeetsStale {
		r := ReasonOutOfBounds
		if curRep.Allowed {
			r = ReasonPredictedStale
		}
		i, _ := cheapest(d.Candidates, sameN)
		if i < 0 {
			i = best
		}
		return choose(i, r)
	}
	// 5. Optimise, within dwell, minimum gain and backoff.
	dwelling := !s.LastChange.IsZero() && now.Sub(s.LastChange) < m.Dwell
	if f, _ := cheapest(d.Candidates, func(c *CandidateReport) bool { return c.Allowed && c.MeetsStale }); f >= 0 &&
		d.Candidates[f].BackedOff && !dwelling && d.Candidates[f].Cost <= curRep.Cost*(1-m.MinGain) {
		d.HeldBack = &d.Candidates[f]
	}
	switch {
	case d.Candidates[best].Policy == s.Policy && d.HeldBack != nil:
		return choose(cur, ReasonBackoff)
	case d.Candidates[best].Policy == s.Policy:
		return choose(cur, ReasonHold)
	case dwelling:
		return choose(cur, ReasonDwell)
	case d.Candidates[best].Cost > curRep.Cost*(1-m.MinGain) && d.HeldBack != nil:
		return choose(cur, ReasonBackoff)
	case d.Candidates[best].Cost > curRep.Cost*(1-m.MinGain):
		return choose(cur, ReasonSmallGain)
	}
	return choose(best, ReasonCheaper)
}

// cheapest returns the index of the lowest-cost candidate satisfying ok,
// preferring those that meet the latency targets; unmet reports that none
// of those satisfying ok met them. Ties go to the earlier candidate (lower
// N, R, W), so the choice is deterministic. It returns -1 if none is ok.
func cheapest(cs []CandidateReport, ok func(*CandidateReport) bool) (best int, unmet bool) {
	best = -1
	bestLat := false
	for i := range cs {
		c := &cs[i]
		if !ok(c) {
			continue
		}
		switch {
		case best < 0,
			c.MeetsLatency && !bestLat,
			c.MeetsLatency == bestLat && c.Cost < cs[best].Cost:
			best, bestLat = i, c.MeetsLatency
		}
	}
	return best, best >= 0 && !bestLat
}

// report costs a prediction and checks it against the goal.
func (m Model) report(p Prediction, g Goal, in *Summary, clusterSize int, measuredBad bool) CandidateReport {
	c := CandidateReport{Prediction: p}
	c.Cost, c.CostParts = m.cost(&p, in)
	c.Allowed = g.Allows(p.Policy, clusterSize)
	c.MeetsStale = p.StaleProb <= g.MaxStale && !(measuredBad && !p.Policy.Overlapping())
	c.MeetsLatency = (g.ReadP99 == 0 || p.ReadP99 <= g.ReadP99) && (g.WriteP99 == 0 || p.WriteP99 <= g.WriteP99)
	switch {
	case !c.Allowed:
		c.Rejected = "outside the goal's bounds or floor"
	case p.StaleProb > g.MaxStale:
		c.Rejected = "predicted stale reads above the goal"
	case !c.MeetsStale:
		c.Rejected = "partial quorum while measured stale reads are above the goal"
	}
	return c
}

// cost computes a candidate's cost (see CostWeights).
func (m Model) cost(p *Prediction, in *Summary) (float64, CostParts) {
	rs := in.ReadShare
	ws := 1 - rs
	w := m.Cost
	var c CostParts
	// The latency calibration's offsets are left out: they are the same
	// for every candidate, so they change no ranking, and added to both
	// sides of Model.MinGain's relative test they would dilute the gain
	// with an overhead no candidate can remove.
	rp99, wp99 := p.ReadP99, p.WriteP99
	if p.RawReadP99 > 0 || p.RawWriteP99 > 0 {
		rp99, wp99 = p.RawReadP99, p.RawWriteP99
	}
	c.Latency = rs*ms(rp99) + ws*ms(wp99)
	c.Load = w.Load * (rs*p.ReadMsgs + ws*p.WriteMsgs)
	c.Replicas = w.Replica * float64(p.Policy.N)
	if w.Hot > 0 && w.Capacity > 0 && p.Policy.N > 0 {
		c.Hot = w.Hot * in.ReadRate * in.TopShare * p.ReadMsgs / float64(p.Policy.N) / w.Capacity
	}
	c.Fail = w.Fail * (rs*p.ReadFail + ws*p.WriteFail)
	return c.Latency + c.Load + c.Replicas + c.Hot + c.Fail, c
}

// clock renders an instant for an explanation: its UTC time of day.
func clock(t time.Time) string { return t.UTC().Format("15:04:05") }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// WhatIf predicts and costs every candidate the goal allows on an
// observation, with neutral calibration, for `adaptkv tuner whatif`: the
// eligible candidates first, cheapest first, then the others by cost.
func WhatIf(m Model, obs Observation, g Goal) ([]CandidateReport, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	in := Summarize(&obs)
	cands := Candidates(g, obs.ClusterSize)
	preds, err := m.Predict(obs, cands, Calibration{})
	if err != nil {
		return nil, err
	}
	bad := obs.Stale >= max(m.MinStaleEvents, 1) && obs.StaleRate() > g.MaxStale
	out := make([]CandidateReport, len(preds))
	for i, p := range preds {
		out[i] = m.report(p, g, &in, obs.ClusterSize, bad)
	}
	slices.SortStableFunc(out, func(a, b CandidateReport) int {
		if a.Eligible() != b.Eligible() {
			if a.Eligible() {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Cost, b.Cost)
	})
	return out, nil
}

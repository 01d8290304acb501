package tuner

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is the part of an observation window a person needs to follow a
// decision: scalar figures only, so it stays small in the decision log.
type Summary struct {
	Keyspace string    `json:"keyspace"` // the keyspace observed
	Start    time.Time `json:"start"`    // the window's span
	End      time.Time `json:"end"`
	Reads    uint64    `json:"reads"` // client operations in the window
	Writes   uint64    `json:"writes"`
	// ClusterSize is the number of live nodes that can hold replicas (0:
	// unknown).
	ClusterSize int `json:"cluster_size,omitempty"`
	// ReadRate and WriteRate are per second.
	ReadRate  float64 `json:"read_rate"`
	WriteRate float64 `json:"write_rate"`
	// ReadShare is reads/(reads+writes).
	ReadShare float64 `json:"read_share"`
	// TopK and TopShare: the K hottest keys took TopShare of accesses.
	TopK     int     `json:"top_k"`
	TopShare float64 `json:"top_share"`
	// AtRisk is the share of reads that followed a write of their key;
	// GapP50 and GapP99 how long after it they came.
	AtRisk float64       `json:"at_risk"`
	GapP50 time.Duration `json:"gap_p50_ns"`
	GapP99 time.Duration `json:"gap_p99_ns"`
	// Probed, Stale and StaleRate are the measured staleness.
	Probed    uint64  `json:"probed"`
	Stale     uint64  `json:"stale"`
	StaleRate float64 `json:"stale_rate"`
	// ReadP99 and WriteP99 are the measured client-visible latencies.
	ReadP99  time.Duration `json:"read_p99_ns"`
	WriteP99 time.Duration `json:"write_p99_ns"`
	// Replicas summarises each replica, in observation order.
	Replicas []ReplicaSummary `json:"replicas"`
	// Flagged are the nodes the health detector had flagged, which the
	// model read from last (Observation.Flagged).
	Flagged []string `json:"flagged,omitempty"`
	// FlaggedShare is Observation.FlaggedShare: by N, the share of keys
	// with a flagged replica.
	FlaggedShare []float64 `json:"flagged_share,omitempty"`
}

// ReplicaSummary is one replica's figures in a Summary.
type ReplicaSummary struct {
	ID string `json:"id"` // the node
	// ReadP50 and ReadP99 are read round trips (from ReadRTT, or the sum of
	// the R and S quantiles, which bounds the round trip's from above);
	// WriteP50 and WriteP99 likewise for writes.
	ReadP50  time.Duration `json:"read_p50_ns"`
	ReadP99  time.Duration `json:"read_p99_ns"`
	WriteP50 time.Duration `json:"write_p50_ns"`
	WriteP99 time.Duration `json:"write_p99_ns"`
	// TimeoutRate is the share of requests that timed out.
	TimeoutRate float64 `json:"timeout_rate"`
	// Flagged: the health detector had flagged this node.
	Flagged bool `json:"flagged,omitempty"`
	// Apart: the legs were recorded under the node's ID apart from the
	// ranks (ReplicaObservation.Apart).
	Apart bool `json:"apart,omitempty"`
}

// Summarize extracts the Summary of an observation.
func Summarize(o *Observation) Summary {
	s := Summary{
		Keyspace: o.Keyspace, Start: o.Start, End: o.End,
		Reads: o.Reads, Writes: o.Writes, ClusterSize: o.ClusterSize,
		ReadRate: o.ReadRate(), WriteRate: o.WriteRate(), ReadShare: o.ReadShare(),
		TopK: o.Skew.K, TopShare: o.Skew.TopShare,
		AtRisk: o.AtRisk(), GapP50: o.Gap.Quantile(0.5), GapP99: o.Gap.Quantile(0.99),
		Probed: o.Probed, Stale: o.Stale, StaleRate: o.StaleRate(),
		ReadP99: o.ReadLatency.Quantile(0.99), WriteP99: o.WriteLatency.Quantile(0.99),
		Flagged: slices.Clone(o.Flagged), FlaggedShare: slices.Clone(o.FlaggedShare),
	}
	for i := range o.Replicas {
		r := &o.Replicas[i]
		rs := ReplicaSummary{ID: r.ID, TimeoutRate: r.TimeoutRate(), Flagged: slices.Contains(o.Flagged, r.ID), Apart: r.Apart}
		rs.ReadP50, rs.ReadP99 = roundTrip(&r.ReadRTT, &r.R, &r.S)
		rs.WriteP50, rs.WriteP99 = roundTrip(&r.WriteRTT, &r.W, &r.A)
		s.Replicas = append(s.Replicas, rs)
	}
	return s
}

func roundTrip(rtt, a, b *Hist) (p50, p99 time.Duration) {
	if rtt.Count() > 0 {
		return rtt.Quantile(0.5), rtt.Quantile(0.99)
	}
	return a.Quantile(0.5) + b.Quantile(0.5), a.Quantile(0.99) + b.Quantile(0.99)
}

// explain writes the decision's sentence for a person on call, ending
// with the flagged nodes the model took into account.
func explain(d *Decision, m Model) string {
	s := explainChoice(d, m)
	if bo := d.BackoffLifted; bo != nil {
		s += fmt.Sprintf(" The backoff after leaving R=%d W=%d (until %s) was lifted: the nodes flagged by the health detector changed since it began (then %s, now %s), so reads are routed differently.",
			bo.From.R, bo.From.W, clock(bo.Until), orNone(bo.Flagged), orNone(d.Inputs.Flagged))
	}
	if f := d.Inputs.Flagged; len(f) > 0 && d.Reason != ReasonNoData {
		held := ""
		if n := d.From.N; n < len(d.Inputs.FlaggedShare) && d.Inputs.FlaggedShare[n] > 0 {
			held = fmt.Sprintf(" (a replica of %s of the keys at N=%d)", pct(d.Inputs.FlaggedShare[n]), n)
		}
		s += fmt.Sprintf(" The health detector has flagged %s%s: the model, like the coordinators, reads from %s last and never coordinates through %s, while %s still %s every write and %s toward W.",
			strings.Join(f, ", "), held, them(f), them(f), them(f), verb(f, "receives", "receive"), verb(f, "counts", "count"))
		if held != "" && slices.ContainsFunc(d.Inputs.Replicas, func(r ReplicaSummary) bool { return r.Apart && r.Flagged }) {
			s += fmt.Sprintf(" For those keys it draws the last-ranked replica from %s own latencies, recorded apart from the ranks, and for the others from the healthy replicas ranked last.",
				possessive(f))
		}
	}
	return s
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// possessive names the flagged nodes as owners: "n3's", "n3's and n4's".
func possessive(f []string) string {
	out := make([]string, len(f))
	for i, id := range f {
		out[i] = id + "'s"
	}
	return strings.Join(out, " and ")
}

// them is the pronoun for the flagged nodes.
func them(f []string) string {
	if len(f) == 1 {
		return "it"
	}
	return "them"
}

func verb(f []string, one, many string) string {
	if len(f) == 1 {
		return one
	}
	return many
}

// explainChoice explains the choice itself.
func explainChoice(d *Decision, m Model) string {
	ks := d.Keyspace
	if ks == "" {
		ks = "the keyspace"
	}
	goal := "goal " + pct(d.Goal.MaxStale)
	switch d.Reason {
	case ReasonNoData:
		return fmt.Sprintf("Kept %s at %v: no replica latencies were observed, so there is nothing to predict from.", ks, d.From)
	case ReasonNoCandidate:
		cs := ""
		if n := d.Inputs.ClusterSize; n > 0 {
			cs = fmt.Sprintf(" on a cluster of %d live nodes", n)
		}
		return fmt.Sprintf("Kept %s at %v: no configuration within the bounds (N %d–%d, W ≥ %d, floor %v)%s meets the stale-read %s.",
			ks, d.From, d.Goal.MinRF, d.Goal.MaxRF, d.Goal.minW(), d.Goal.Floor, cs, goal)
	}
	cur, ch, best := d.Current, d.Chosen, d.Best
	switch d.Reason {
	case ReasonHold:
		return fmt.Sprintf("Kept %s at %v: it is still the cheapest configuration that meets the goal (predicted stale reads %s, %s; read p99 %s, write p99 %s).",
			ks, d.From, pct(cur.StaleProb), goal, dur(cur.ReadP99), dur(cur.WriteP99))
	case ReasonDwell:
		return fmt.Sprintf("Kept %s at %v: %v would cost %s less (%s), but the last change was %s ago and changes are at least %s apart.",
			ks, d.From, best.Policy, pct(1-best.Cost/cur.Cost), deltas(cur, best), dur(d.At.Sub(d.LastChange)), dur(m.Dwell))
	case ReasonSmallGain:
		return fmt.Sprintf("Kept %s at %v: the best alternative, %v, would cost only %s less (minimum gain %s).",
			ks, d.From, best.Policy, pct(1-best.Cost/cur.Cost), pct(m.MinGain))
	case ReasonBackoff:
		h := d.HeldBack
		return fmt.Sprintf("Kept %s at %v: %v would cost %s less and is predicted to return stale reads %s of the time (%s), but %s.",
			ks, d.From, h.Policy, pct(1-h.Cost/cur.Cost), pct(h.StaleProb), goal, backoffClause(d.Backoff, d.At))
	}
	var b strings.Builder
	switch d.Reason {
	case ReasonStepBack:
		fmt.Fprintf(&b, "Stepped %s back from %v to %s at once, ignoring dwell: measured stale reads %s (%d of %d probed) exceed the %s",
			ks, d.From, change(d.From, d.To, ch), pct(d.Inputs.StaleRate), d.Inputs.Stale, d.Inputs.Probed, goal)
		fmt.Fprintf(&b, "; predicted stale reads now %s (R+W>N), %s.", pct(ch.StaleProb), deltas(cur, ch))
		backoffSentence(&b, d, m)
	case ReasonPredictedStale:
		fmt.Fprintf(&b, "Moved %s from %v to %s at once: the current configuration is now predicted to return stale reads %s of the time (%s)",
			ks, d.From, change(d.From, d.To, ch), pct(cur.StaleProb), goal)
		if why := workload(d); why != "" {
			fmt.Fprintf(&b, ", as %s", why)
		}
		fmt.Fprintf(&b, "; predicted stale reads %s, %s.", pct(ch.StaleProb), deltas(cur, ch))
		backoffSentence(&b, d, m)
	case ReasonOutOfBounds:
		fmt.Fprintf(&b, "Moved %s from %v to %s at once: the current configuration is outside the goal (N %d–%d, W ≥ %d, floor %v); predicted stale reads %s (%s), %s.",
			ks, d.From, change(d.From, d.To, ch), d.Goal.MinRF, d.Goal.MaxRF, d.Goal.minW(), d.Goal.Floor, pct(ch.StaleProb), goal, deltas(cur, ch))
	case ReasonCheaper:
		fmt.Fprintf(&b, "Moved %s from %v to %s", ks, d.From, change(d.From, d.To, ch))
		if why := workload(d); why != "" {
			fmt.Fprintf(&b, ": %s", why)
		}
		fmt.Fprintf(&b, "; predicted stale reads %s (%s), %s.", pct(ch.StaleProb), goal, deltas(cur, ch))
		if h := d.HeldBack; h != nil {
			fmt.Fprintf(&b, " %v would cost less still, but %s.", h.Policy, backoffClause(d.Backoff, d.At))
		}
	default:
		return fmt.Sprintf("Kept %s at %v (%s).", ks, d.From, d.Reason)
	}
	if d.LatencyTargetUnmet {
		b.WriteString(" No configuration meets the latency target; this is the cheapest that meets the stale-read goal.")
	}
	if n := len(d.Plan); n > 1 {
		fmt.Fprintf(&b, " Applied in %d steps", n)
		for _, s := range d.Plan {
			if s.RequiresStreaming {
				b.WriteString(", streaming to the new replicas first")
				break
			}
		}
		b.WriteString(".")
	}
	return b.String()
}

// backoffSentence appends, to the explanation of a move away from a
// partial quorum, the backoff the move started.
func backoffSentence(b *strings.Builder, d *Decision, m Model) {
	bo := d.Backoff
	if bo == nil || bo.Count == 0 || !bo.At.Equal(d.At) {
		return
	}
	fmt.Fprintf(b, " Partial quorums as weak as R=%d W=%d will not be tried again for %s (until %s; the %s move away in a row, each doubling the wait up to %s).",
		bo.From.R, bo.From.W, dur(bo.Until.Sub(d.At)), clock(bo.Until), ordinal(bo.Count), dur(m.BackoffMax))
}

// backoffClause says why a backoff holds partial quorums back, for a
// sentence that names the held-back candidate before it.
func backoffClause(bo *Backoff, at time.Time) string {
	if bo == nil {
		return "a recent move away from a weaker configuration holds it back"
	}
	why := "stepped back from R=%d W=%d %s ago after measuring stale reads"
	if bo.Cause == ReasonPredictedStale {
		why = "left R=%d W=%d %s ago when it was predicted to return too many stale reads"
	}
	return fmt.Sprintf("the keyspace "+why+", so partial quorums as weak as that are not tried again for another %s (until %s; the %s move away in a row)",
		bo.From.R, bo.From.W, dur(at.Sub(bo.At)), dur(bo.Until.Sub(at)), clock(bo.Until), ordinal(bo.Count))
}

// signedDur renders an offset with its sign: "+1.2 ms", "−0.3 ms".
func signedDur(d time.Duration) string {
	if d < 0 {
		return "−" + dur(-d)
	}
	return "+" + dur(d)
}

// ordinal renders 1 as "1st", 2 as "2nd", 11 as "11th".
func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return strconv.Itoa(n) + suffix
}

// change describes the target of a move: N only when it changes, R and W
// always, and how reads are routed when that is not "ask every replica".
func change(from, to Policy, c *CandidateReport) string {
	var s string
	if from.N != to.N {
		s = fmt.Sprintf("N=%d R=%d W=%d", to.N, to.R, to.W)
	} else {
		s = fmt.Sprintf("R=%d W=%d", to.R, to.W)
	}
	switch {
	case to.R == to.N:
	case to.Read == ReadNearest && to.R == 1:
		s += " reading from the nearest replica"
	case to.Read == ReadNearest:
		s += fmt.Sprintf(" reading from the %d nearest replicas", to.R)
	case to.Read == ReadHedged && c != nil:
		s += fmt.Sprintf(" reading nearest first, hedged after %s", dur(c.HedgeAfter))
	case to.Read == ReadHedged:
		s += " reading nearest first, hedged"
	case to.Read == ReadAll && from.Read != ReadAll:
		s += " reading from every replica"
	}
	return s
}

// workload lists the facts about the workload and the replicas that a
// person would look for first.
func workload(d *Decision) string {
	in := &d.Inputs
	var why []string
	switch {
	case in.Reads+in.Writes == 0:
	case in.ReadShare >= 0.7:
		why = append(why, fmt.Sprintf("reads are %s of traffic", pct(in.ReadShare)))
	case in.ReadShare <= 0.3:
		why = append(why, fmt.Sprintf("writes are %s of traffic", pct(1-in.ReadShare)))
	}
	if len(in.Replicas) > 1 {
		fast, slow := in.Replicas[0], in.Replicas[0]
		for _, r := range in.Replicas[1:] {
			if r.ReadP50 < fast.ReadP50 {
				fast = r
			}
			if r.ReadP50 > slow.ReadP50 {
				slow = r
			}
		}
		if gap := slow.ReadP50 - fast.ReadP50; gap >= time.Millisecond && gap >= fast.ReadP50/2 {
			why = append(why, fmt.Sprintf("replica %s is %s slower", slow.ID, dur(gap)))
		}
	}
	flaky := slices.Clone(in.Replicas)
	slices.SortStableFunc(flaky, func(a, b ReplicaSummary) int { return cmp.Compare(b.TimeoutRate, a.TimeoutRate) })
	if len(flaky) > 0 && flaky[0].TimeoutRate >= 0.01 {
		why = append(why, fmt.Sprintf("replica %s timed out on %s of requests", flaky[0].ID, pct(flaky[0].TimeoutRate)))
	}
	if in.AtRisk > 0 && in.GapP50 > 0 && in.GapP50 < 50*time.Millisecond {
		why = append(why, fmt.Sprintf("half the reads after a write come within %s of it", dur(in.GapP50)))
	}
	if in.TopShare >= 0.5 && in.TopK > 0 && in.ReadRate > 0 {
		why = append(why, fmt.Sprintf("the %d hottest keys take %s of accesses at %s reads/s", in.TopK, pct(in.TopShare), num(in.ReadRate)))
	}
	return strings.Join(why, " and ")
}

// deltas describes how the latencies and the read fan-out move from one
// candidate to another, leaving out what does not change by more than 10%.
func deltas(from, to *CandidateReport) string {
	var parts []string
	if changed(from.ReadP99, to.ReadP99) {
		parts = append(parts, fmt.Sprintf("read p99 from %s to %s", dur(from.ReadP99), dur(to.ReadP99)))
	}
	if changed(from.WriteP99, to.WriteP99) {
		parts = append(parts, fmt.Sprintf("write p99 from %s to %s", dur(from.WriteP99), dur(to.WriteP99)))
	}
	if math.Abs(from.ReadMsgs-to.ReadMsgs) >= 0.5 {
		parts = append(parts, fmt.Sprintf("replicas asked per read from %s to %s", num(from.ReadMsgs), num(to.ReadMsgs)))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("latencies about the same (read p99 %s, write p99 %s)", dur(to.ReadP99), dur(to.WriteP99))
	}
	return strings.Join(parts, ", ")
}

func changed(a, b time.Duration) bool {
	if a == b {
		return false
	}
	hi := max(a, b)
	return float64(hi-min(a, b)) > 0.1*float64(hi)
}

// pct renders a probability as a percentage with two significant digits:
// 0.0002 → "0.02%", 0.95 → "95%", 0 → "0%".
func pct(p float64) string {
	switch {
	case p == 0:
		return "0%"
	case p < 0.00001:
		return "<0.001%"
	}
	if v := p * 100; v >= 10 {
		// 'g' would print 100% as "1e+02%".
		return strconv.FormatFloat(v, 'f', 0, 64) + "%"
	}
	return strconv.FormatFloat(p*100, 'g', 2, 64) + "%"
}

// dur renders a duration for people: "52 ms", "3.4 ms", "0.45 ms", "1.2 s",
// "2 min".
func dur(d time.Duration) string {
	msv := float64(d) / float64(time.Millisecond)
	switch {
	case d == 0:
		return "0 ms"
	case d >= time.Minute:
		return strconv.FormatFloat(d.Minutes(), 'g', 2, 64) + " min"
	case d >= 10*time.Second:
		return fmt.Sprintf("%.0f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case msv >= 10:
		return fmt.Sprintf("%.0f ms", msv)
	case msv >= 1:
		return strconv.FormatFloat(msv, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(msv, 'g', 2, 64) + " ms"
}

// num renders a rate with at most three significant digits.
func num(x float64) string {
	if x >= 1000 {
		return strconv.FormatFloat(math.Round(x), 'f', 0, 64)
	}
	return strconv.FormatFloat(x, 'g', 3, 64)
}

// String renders the decision as FormatDecision does with 8 candidates.
func (d Decision) String() string { return FormatDecision(d, 8) }

// FormatDecision renders a decision for `adaptkv tuner explain`: the
// sentence, the inputs, the maxCandidates cheapest candidates (eligible
// ones first; the current and chosen ones always shown), the plan, and what
// was observed afterwards if known.
func FormatDecision(d Decision, maxCandidates int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", d.Explanation)
	fmt.Fprintf(&b, "  keyspace %s at %s: %s, reason %s, calibration ×%.2f\n",
		d.Keyspace, d.At.UTC().Format(time.RFC3339), transition(d), d.Reason, d.Calibration)
	if l := d.Latency; l.ReadUpdates+l.WriteUpdates > 0 {
		fmt.Fprintf(&b, "  latency calibration: measured p99s exceed the model's by %s (reads), %s (writes); predicted p99s below include it\n",
			signedDur(l.ReadOffset), signedDur(l.WriteOffset))
	}
	if e := d.CalibrationPending; e.Intervals > 0 {
		fmt.Fprintf(&b, "  calibration evidence pending under %v: %d stale of %d probed (%s expected) over %d intervals\n",
			e.Policy, e.Stale, e.Probed, num(e.Expected), e.Intervals)
	}
	if bo := d.Backoff; bo != nil && bo.Count > 0 {
		fmt.Fprintf(&b, "  backoff: partial quorums as weak as R=%d W=%d held back until %s (left at %s, %s, %d in a row)\n",
			bo.From.R, bo.From.W, bo.Until.UTC().Format(time.RFC3339), bo.At.UTC().Format(time.RFC3339), bo.Cause, bo.Count)
	}
	in := &d.Inputs
	fmt.Fprintf(&b, "  goal: stale reads ≤ %s, floor %v, N %d–%d, W ≥ %d", pct(d.Goal.MaxStale), d.Goal.Floor, d.Goal.MinRF, d.Goal.MaxRF, d.Goal.minW())
	if d.Goal.ReadP99 > 0 {
		fmt.Fprintf(&b, ", read p99 ≤ %s", dur(d.Goal.ReadP99))
	}
	if d.Goal.WriteP99 > 0 {
		fmt.Fprintf(&b, ", write p99 ≤ %s", dur(d.Goal.WriteP99))
	}
	b.WriteString("\n")
	if d.Goal.Floor == FloorSession {
		fmt.Fprintf(&b, "  floor session: partial quorums allowed (now R=%d W=%d of N=%d); clients using SDK sessions keep read-your-writes, monotonic reads and writes-follow-reads at any R and W (a session read skips replicas behind its token, and fails with SESSION_BEHIND rather than answer older data); the stale-read bound covers other clients' writes\n",
			d.To.R, d.To.W, d.To.N)
	}
	fmt.Fprintf(&b, "  inputs: %s reads/s, %s writes/s (%s reads) over %s; top %d keys %s; reads at risk %s (gap p50 %s, p99 %s); stale %d of %d probed (%s)\n",
		num(in.ReadRate), num(in.WriteRate), pct(in.ReadShare), dur(in.End.Sub(in.Start)), in.TopK, pct(in.TopShare),
		pct(in.AtRisk), dur(in.GapP50), dur(in.GapP99), in.Stale, in.Probed, pct(in.StaleRate))
	for _, r := range in.Replicas {
		flag := ""
		switch {
		case r.Flagged && r.Apart:
			flag = " (flagged: read last), its own legs apart from the ranks"
		case r.Flagged:
			flag = " (flagged: read last)"
		case r.Apart:
			flag = " (recorded while flagged, apart from the ranks; reinstated since, so left out of the model)"
		}
		fmt.Fprintf(&b, "    replica %s: read p50 %s p99 %s, write p50 %s p99 %s, timeouts %s%s\n",
			r.ID, dur(r.ReadP50), dur(r.ReadP99), dur(r.WriteP50), dur(r.WriteP99), pct(r.TimeoutRate), flag)
	}
	if len(d.Candidates) > 0 {
		order := make([]int, len(d.Candidates))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(i, j int) int {
			a, c := &d.Candidates[i], &d.Candidates[j]
			if a.Eligible() != c.Eligible() {
				if a.Eligible() {
					return -1
				}
				return 1
			}
			return cmp.Compare(a.Cost, c.Cost)
		})
		shown := 0
		fmt.Fprintf(&b, "  candidates (%d weighed, eligible first, cheapest first):\n", len(d.Candidates))
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "    \tpolicy\tstale\tread p50/p99\twrite p50/p99\tmsgs r/w\tcost\tnote")
		for _, i := range order {
			c := &d.Candidates[i]
			mark := ""
			isCur, isCh := d.Current != nil && c.Policy == d.Current.Policy, d.Chosen != nil && c.Policy == d.Chosen.Policy
			switch {
			case isCh && isCur:
				mark = "*="
			case isCh:
				mark = "*"
			case isCur:
				mark = "="
			}
			if shown >= maxCandidates && !isCur && !isCh {
				continue
			}
			shown++
			note := c.Rejected
			if c.HedgeAfter > 0 {
				note = strings.TrimPrefix(note+"; hedge after "+dur(c.HedgeAfter), "; ")
			}
			fmt.Fprintf(tw, "    %s\t%v\t%s\t%s/%s\t%s/%s\t%s/%s\t%.2f\t%s\n", mark, c.Policy, pct(c.StaleProb),
				dur(c.ReadP50), dur(c.ReadP99), dur(c.WriteP50), dur(c.WriteP99), num(c.ReadMsgs), num(c.WriteMsgs), c.Cost, note)
		}
		tw.Flush()
	}
	if len(d.Plan) > 0 {
		b.WriteString("  plan:\n")
		for i, s := range d.Plan {
			fmt.Fprintf(&b, "    %d. %v: %s\n", i+1, s.Policy, s.Note)
		}
	}
	if o := d.Observed; o != nil {
		fmt.Fprintf(&b, "  observed under %v: stale %d of %d probed (%s), read p50 %s p99 %s, write p50 %s p99 %s\n",
			o.Policy, o.Stale, o.Probed, pct(o.StaleRate), dur(o.ReadP50), dur(o.ReadP99), dur(o.WriteP50), dur(o.WriteP99))
		if d.Chosen != nil {
			fmt.Fprintf(&b, "  predicted:    stale %s, read p50 %s p99 %s, write p50 %s p99 %s\n",
				pct(d.Chosen.StaleProb), dur(d.Chosen.ReadP50), dur(d.Chosen.ReadP99), dur(d.Chosen.WriteP50), dur(d.Chosen.WriteP99))
		}
	}
	return b.String()
}

func transition(d Decision) string {
	if d.Changed {
		return fmt.Sprintf("%v → %v", d.From, d.To)
	}
	return fmt.Sprintf("%v kept", d.From)
}

// FormatWhatIf renders WhatIf's reports as a table, marking the policy in
// force, for `adaptkv tuner whatif`: what each candidate is predicted to cost
// in staleness and latency, so an operator sees the trade-off.
func FormatWhatIf(reports []CandidateReport, inForce Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-2s %-34s %-9s %10s %10s %10s %10s %9s  %s\n", "", "configuration", "eligible", "stale", "read p50", "read p99", "write p99", "cost", "note")
	for _, c := range reports {
		mark := ""
		if c.Policy == inForce {
			mark = "*"
		}
		elig := "no"
		if c.Eligible() {
			elig = "yes"
		}
		fmt.Fprintf(&b, "%-2s %-34s %-9s %10s %10s %10s %10s %9.2f  %s\n", mark, c.Policy.String(), elig,
			pct(c.StaleProb), dur(c.ReadP50), dur(c.ReadP99), dur(c.WriteP99), c.Cost, c.Rejected)
	}
	b.WriteString("* in force now; stale is the predicted probability that a read misses the latest completed write\n")
	return b.String()
}

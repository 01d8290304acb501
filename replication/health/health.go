// Package health finds gray failures: nodes that gossip still calls alive
// but that answer their peers slowly or not at all (a failing disk, a lossy
// link, a starved CPU).
//
// The package is pure: it does no I/O and reads no clock. The caller (the
// metadata leader, node/health.go) gathers every coordinator's per-replica
// round trips, timeouts and errors for one window, hands them to
// Detector.Step with the window's end time, and records the decisions it
// returns in the metadata log. A recorded sequence of windows replays
// exactly.
//
// # Model
//
// Each node is compared with its peers in the same window, not with a fixed
// threshold: a node's latency is the median, over the coordinators that
// sent it requests (itself excluded), of their median round trip to it, and
// its failure rate is its timeouts and errors over the requests sent to it.
// Across the nodes with at least Params.MinSamples requests, the cluster's
// median m and median absolute deviation (MAD) give a robust centre and
// spread that one or two sick nodes cannot drag (Hampel's identifier). A
// node is bad in a window when its latency exceeds
//
//	m + max(Z·σ, MinExcess, (Ratio−1)·m)
//
// where σ is the larger of this window's scaled MAD (1.4826·MAD, the
// standard deviation of a normal sample) and the median of the scaled MADs
// of the last History windows: the threshold is learned from the cluster's
// own recent spread, so a noisy cluster needs a larger departure than a
// quiet one, and one quiet window does not make it trigger-happy. The
// floors keep a cluster on loopback, whose spread is microseconds, from
// flagging a node for a scheduler hiccup. Failure rates are judged the same
// way with their own floor. Reads and writes are judged apart (a write's
// round trip includes the replica's fsync, and a node read last is sent
// mostly writes); a node is bad when either kind is.
//
// # Hysteresis and bounds
//
// A node is flagged after Params.FlagAfter consecutive bad windows and
// reinstated after Params.ClearAfter consecutive good ones. A window in
// which it had too few samples says nothing on its own: its requests are
// carried into the next window, up to Params.CarryWindows windows, and the
// verdict on the pooled requests counts for every window they span. A node
// that coordinators already read last (the latency ranking does that before
// the detector does) may be sent only a few requests per window, and would
// otherwise never be judged at all. At
// most a minority of the members, (n−1)/2, are flagged at once: with more
// candidates the worst are flagged first. A detector that flagged half the
// cluster would have mistaken the peers' median itself.
package health

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// Sample is one coordinator's view of one replica during a window.
type Sample struct {
	// Coordinator sent the requests; Replica answered them (or not).
	Coordinator string `json:"coordinator"`
	Replica     string `json:"replica"`
	// Sent counts requests sent; Failed those that timed out or failed.
	Sent   uint64 `json:"sent"`
	Failed uint64 `json:"failed"`
	// Latency is the median round trip of the requests that succeeded.
	Latency time.Duration `json:"latency_ns"`
	// Write is true for replica writes, false for reads. The two are
	// judged apart: a write's round trip includes the replica's fsync, a
	// read's does not, and a node that coordinators stop reading from (a
	// flagged one) is sent only writes, so pooled it would look slower
	// than its peers for as long as it is avoided.
	Write bool `json:"write,omitempty"`
}

// Window is every coordinator's samples over one interval.
type Window struct {
	// End is when the window closed: the detector's only notion of time.
	End time.Time `json:"end"`
	// Members are the nodes that could be judged (alive ring members); a
	// node with samples but not listed is ignored, and the minority bound
	// is taken over len(Members).
	Members []string `json:"members"`
	Samples []Sample `json:"samples"`
}

// Params tune the detector. DefaultParams explains each default.
type Params struct {
	// MinSamples is the fewest requests a node must have been sent in a
	// window for the window to say anything about it.
	MinSamples uint64
	// MinPeers is the fewest judged nodes (with MinSamples each) needed to
	// compute a cluster median at all.
	MinPeers int
	// Z is how many robust standard deviations above the median is bad.
	Z float64
	// Ratio: a latency below Ratio times the median is never bad.
	Ratio float64
	// MinExcess: a latency less than this above the median is never bad.
	MinExcess time.Duration
	// MinFailureExcess: a failure rate less than this above the median is
	// never bad.
	MinFailureExcess float64
	// FlagAfter and ClearAfter are the consecutive bad windows that flag a
	// node and the consecutive good ones that reinstate it.
	FlagAfter, ClearAfter int
	// History is how many past windows' spreads the threshold learns from.
	History int
	// CarryWindows is how many consecutive windows a node's requests may
	// be pooled over when each alone has fewer than MinSamples; 1 judges
	// every window on its own.
	CarryWindows int
}

// DefaultParams are the detector's defaults. Z=5 with the MAD is Hampel's
// outlier rule made stricter (3 is usual) because a false flag costs reads
// their nearest replica; Ratio 2 and MinExcess 5ms because a node only
// twice as slow as the median by a few milliseconds is not worth routing
// around (the coordinator's latency ranking already handles it); 3 windows
// to flag and 3 to clear so that a node flapping faster than three windows
// is flagged once and stays flagged while it flaps, rather than
// oscillating. History 30 windows is a few minutes at the default window.
// CarryWindows 3: a node sent a third of the minimum per window is still
// judged, on evidence no older than three windows.
func DefaultParams() Params {
	return Params{MinSamples: 20, MinPeers: 3, Z: 5, Ratio: 2, MinExcess: 5 * time.Millisecond,
		MinFailureExcess: 0.05, FlagAfter: 3, ClearAfter: 3, History: 30, CarryWindows: 3}
}

// Evidence is what a window showed about one node.
type Evidence struct {
	Node string `json:"node"`
	// Op is the requests judged, "read" or "write": the kind that made
	// the verdict (for "good", the one with more samples).
	Op string `json:"op"`
	// Samples is the requests sent to the node by its peers.
	Samples uint64 `json:"samples"`
	// Windows is how many windows those requests were pooled over (see
	// Params.CarryWindows); a verdict counts for each of them.
	Windows int `json:"windows,omitempty"`
	// Latency is the median of its peers' median round trips to it.
	Latency time.Duration `json:"latency_ns"`
	// FailureRate is the share of requests to it that failed.
	FailureRate float64 `json:"failure_rate"`
	// ClusterLatency and ClusterFailure are the medians across the nodes
	// judged; LatencyLimit and FailureLimit the thresholds they set.
	ClusterLatency time.Duration `json:"cluster_latency_ns"`
	LatencyLimit   time.Duration `json:"latency_limit_ns"`
	ClusterFailure float64       `json:"cluster_failure"`
	FailureLimit   float64       `json:"failure_limit"`
	// Verdict is "bad", "good" or "unknown" (too few samples or peers).
	Verdict string `json:"verdict"`
	// Streak is how many consecutive windows gave this verdict.
	Streak int `json:"streak"`
}

func (e Evidence) String() string {
	return fmt.Sprintf("%s: %d %ss, median rtt %v vs cluster %v (limit %v), failures %.1f%% vs %.1f%% (limit %.1f%%), %s %d window(s)",
		e.Node, e.Samples, e.Op, e.Latency.Round(10*time.Microsecond), e.ClusterLatency.Round(10*time.Microsecond), e.LatencyLimit.Round(10*time.Microsecond),
		100*e.FailureRate, 100*e.ClusterFailure, 100*e.FailureLimit, e.Verdict, e.Streak)
}

// Decision flags or reinstates one node.
type Decision struct {
	At   time.Time `json:"at"`
	Node string    `json:"node"`
	// Flag is true to flag the node, false to reinstate it.
	Flag bool `json:"flag"`
	// Reason says why in a sentence.
	Reason   string   `json:"reason"`
	Evidence Evidence `json:"evidence"`
}

// nodeState is the detector's memory of one node.
type nodeState struct {
	flagged   bool
	bad, good int
}

// Detector is the health model. The zero value is not usable: use New.
type Detector struct {
	p     Params
	nodes map[string]*nodeState
	// carried holds, for reads [0] and writes [1], each node's requests
	// from recent windows that had too few to judge.
	carried [2]map[string]*pooled
	// spreads and fspreads are the scaled MADs of latency (ns) and of
	// failure rate of recent windows, for reads [0] and writes [1].
	spreads, fspreads [2][]float64
}

// pooled is a node's requests of one kind over one or more windows.
type pooled struct {
	sent, failed uint64
	// lats are the coordinators' median round trips, one per coordinator
	// and window.
	lats    []float64
	windows int
}

// New returns a detector with no history and nothing flagged.
func New(p Params) *Detector {
	return &Detector{p: p, nodes: map[string]*nodeState{},
		carried: [2]map[string]*pooled{{}, {}}}
}

// Restore marks nodes already flagged (by an earlier leader's decisions),
// so that a new leader continues where the log says rather than starting
// with every node healthy.
func (d *Detector) Restore(flagged []string) {
	for _, id := range flagged {
		d.state(id).flagged = true
	}
}

// Flagged returns the nodes flagged now, sorted.
func (d *Detector) Flagged() []string {
	var out []string
	for id, s := range d.nodes {
		if s.flagged {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func (d *Detector) state(id string) *nodeState {
	s, ok := d.nodes[id]
	if !ok {
		s = &nodeState{}
		d.nodes[id] = s
	}
	return s
}

// Step judges one window and returns the decisions it leads to, and the
// evidence about every member.
func (d *Detector) Step(w Window) ([]Decision, []Evidence) {
	ev := d.judge(w)
	members := map[string]bool{}
	for _, m := range w.Members {
		members[m] = true
	}
	// Forget nodes that left; a flagged node that left needs no reinstating.
	for id := range d.nodes {
		if !members[id] {
			delete(d.nodes, id)
		}
	}
	for _, c := range d.carried {
		for id := range c {
			if !members[id] {
				delete(c, id)
			}
		}
	}
	var decs []Decision
	var candidates []int
	for i := range ev {
		e := &ev[i]
		s := d.state(e.Node)
		switch e.Verdict {
		case "bad":
			s.bad += max(e.Windows, 1)
			s.good = 0
			e.Streak = s.bad
			if !s.flagged && s.bad >= d.p.FlagAfter {
				candidates = append(candidates, i)
			}
		case "good":
			s.good += max(e.Windows, 1)
			s.bad = 0
			e.Streak = s.good
			if s.flagged && s.good >= d.p.ClearAfter {
				s.flagged = false
				decs = append(decs, Decision{At: w.End, Node: e.Node, Flag: false, Evidence: *e,
					Reason: fmt.Sprintf("%s is back in line with its peers for %d consecutive windows", e.Node, s.good)})
			}
		}
	}
	// The worst first, up to a minority of the members.
	sort.SliceStable(candidates, func(a, b int) bool { return severity(ev[candidates[a]]) > severity(ev[candidates[b]]) })
	room := (len(w.Members)-1)/2 - len(d.Flagged())
	for _, i := range candidates {
		if room <= 0 {
			break
		}
		e := ev[i]
		d.state(e.Node).flagged = true
		room--
		decs = append(decs, Decision{At: w.End, Node: e.Node, Flag: true, Evidence: e, Reason: reason(e, e.Streak)})
	}
	return decs, ev
}

// severity orders candidates: how far past its limit each node is.
func severity(e Evidence) float64 {
	s := 0.0
	if e.LatencyLimit > 0 {
		s = float64(e.Latency) / float64(e.LatencyLimit)
	}
	if e.FailureLimit > 0 {
		s = max(s, e.FailureRate/e.FailureLimit)
	}
	return s
}

func reason(e Evidence, k int) string {
	if e.Latency > e.LatencyLimit {
		return fmt.Sprintf("%s answered its peers' %ss in %v against the cluster's %v (limit %v) for %d consecutive windows",
			e.Node, e.Op, e.Latency.Round(10*time.Microsecond), e.ClusterLatency.Round(10*time.Microsecond), e.LatencyLimit.Round(10*time.Microsecond), k)
	}
	return fmt.Sprintf("%s failed %.1f%% of its peers' %ss against the cluster's %.1f%% (limit %.1f%%) for %d consecutive windows",
		e.Node, 100*e.FailureRate, e.Op, 100*e.ClusterFailure, 100*e.FailureLimit, k)
}

// judge computes each member's evidence and verdict in w, reads and
// writes apart: a node is bad when either kind is, good when no kind is
// bad and one had enough samples to say so.
func (d *Detector) judge(w Window) []Evidence {
	reads, writes := d.judgeOp(w, false), d.judgeOp(w, true)
	out := make([]Evidence, len(w.Members))
	for i := range w.Members {
		r, wr := reads[i], writes[i]
		switch {
		case wr.Verdict == "bad" && (r.Verdict != "bad" || severity(wr) >= severity(r)):
			out[i] = wr
		case r.Verdict == "bad":
			out[i] = r
		case r.Verdict == "good" && (wr.Verdict != "good" || r.Samples >= wr.Samples):
			out[i] = r
		case wr.Verdict == "good":
			out[i] = wr
		case r.Samples >= wr.Samples:
			out[i] = r
		default:
			out[i] = wr
		}
	}
	return out
}

// judgeOp judges one kind of request, and learns the window's spread of
// it.
func (d *Detector) judgeOp(w Window, write bool) []Evidence {
	op, k := "read", 0
	if write {
		op, k = "write", 1
	}
	by := map[string]*pooled{}
	for _, m := range w.Members {
		by[m] = &pooled{windows: 1}
	}
	for _, s := range w.Samples {
		a, ok := by[s.Replica]
		if !ok || s.Coordinator == s.Replica || s.Write != write {
			continue // not judged, its own local replica (no network), or the other kind
		}
		a.sent += s.Sent
		a.failed += s.Failed
		if s.Sent > s.Failed && s.Latency > 0 {
			a.lats = append(a.lats, float64(s.Latency))
		}
	}
	// A node with too few requests in this window is judged on them
	// pooled with those carried from the windows before, if that is
	// enough; otherwise they are carried on, at most CarryWindows deep.
	carried := d.carried[k]
	for _, m := range w.Members {
		a := by[m]
		if a.sent >= d.p.MinSamples {
			delete(carried, m)
			continue
		}
		if c, ok := carried[m]; ok && c.windows < d.p.CarryWindows {
			a.sent += c.sent
			a.failed += c.failed
			a.lats = append(a.lats, c.lats...)
			a.windows += c.windows
		}
		if a.sent >= d.p.MinSamples || d.p.CarryWindows <= 1 || a.sent == 0 {
			delete(carried, m)
			continue
		}
		carried[m] = &pooled{sent: a.sent, failed: a.failed, lats: slices.Clone(a.lats), windows: a.windows}
		a.sent, a.failed, a.lats, a.windows = 0, 0, nil, 1 // nothing to judge yet
	}
	ev := make([]Evidence, 0, len(w.Members))
	var lats, fails []float64
	for _, m := range w.Members {
		a := by[m]
		e := Evidence{Node: m, Op: op, Samples: a.sent, Verdict: "unknown"}
		if a.windows > 1 {
			e.Windows = a.windows
		}
		if a.sent > 0 {
			e.FailureRate = float64(a.failed) / float64(a.sent)
		}
		if len(a.lats) > 0 {
			// Nothing succeeded leaves 0: the failure rate says it.
			e.Latency = time.Duration(median(a.lats))
		}
		if a.sent >= d.p.MinSamples {
			lats = append(lats, float64(e.Latency))
			fails = append(fails, e.FailureRate)
		}
		ev = append(ev, e)
	}
	if len(lats) < max(d.p.MinPeers, 1) {
		return ev
	}
	m, mad := median(lats), 1.4826*medianAbsDev(lats)
	fm, fmad := median(fails), 1.4826*medianAbsDev(fails)
	sigma := max(mad, median(d.spreads[k]))
	fsigma := max(fmad, median(d.fspreads[k]))
	d.spreads[k] = pushBounded(d.spreads[k], mad, d.p.History)
	d.fspreads[k] = pushBounded(d.fspreads[k], fmad, d.p.History)
	limit := m + max(d.p.Z*sigma, float64(d.p.MinExcess), (d.p.Ratio-1)*m)
	flimit := fm + max(d.p.Z*fsigma, d.p.MinFailureExcess)
	for i := range ev {
		e := &ev[i]
		e.ClusterLatency, e.LatencyLimit = time.Duration(m), time.Duration(limit)
		e.ClusterFailure, e.FailureLimit = fm, flimit
		if e.Samples < d.p.MinSamples {
			continue
		}
		if float64(e.Latency) > limit || e.FailureRate > flimit {
			e.Verdict = "bad"
		} else {
			e.Verdict = "good"
		}
	}
	return ev
}

func pushBounded(s []float64, v float64, n int) []float64 {
	s = append(s, v)
	if n > 0 && len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// median of xs (0 for none); it does not modify xs.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.SortFunc(s, cmp.Compare[float64])
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianAbsDev(xs []float64) float64 {
	m := median(xs)
	dev := make([]float64, len(xs))
	for i, x := range xs {
		dev[i] = math.Abs(x - m)
	}
	return median(dev)
}

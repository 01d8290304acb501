package tuner

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// decideModel is DefaultModel with fewer trials, to keep -race runs short;
// the policy tests compare candidates whose costs differ by far more than
// the Monte Carlo noise at 2000 trials.
func decideModel() Model {
	m := DefaultModel()
	m.Trials = 2000
	return m
}

func window(obs ...Observation) *Window {
	w := NewWindow(6, 0)
	for _, o := range obs {
		w.Push(o)
	}
	return w
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// symmetric is three alike replicas of about 1 ms.
func symmetric() []replicaSpec {
	return []replicaSpec{
		{id: "n1", read: lat(0.8, 0.4), write: lat(1, 0.5)},
		{id: "n2", read: lat(0.8, 0.4), write: lat(1, 0.5)},
		{id: "n3", read: lat(0.8, 0.4), write: lat(1, 0.5)},
	}
}

// jittery is three alike replicas whose writes have a long tail (a
// replica's fsync or compaction stalls it now and then), so a replica that
// was not among the first W to acknowledge can lag the commit by
// milliseconds.
func jittery() []replicaSpec {
	return []replicaSpec{
		{id: "n1", read: lat(0.5, 0.3), write: lat(0.5, 3)},
		{id: "n2", read: lat(0.5, 0.3), write: lat(0.5, 3)},
		{id: "n3", read: lat(0.5, 0.3), write: lat(0.5, 3)},
	}
}

func fiveNodes() []replicaSpec {
	return []replicaSpec{
		{id: "n1", read: lat(0.8, 0.4), write: lat(1, 0.5)},
		{id: "n2", read: lat(0.9, 0.5), write: lat(1.1, 0.5)},
		{id: "n3", read: lat(0.9, 0.5), write: lat(1.1, 0.5)},
		{id: "n4", read: lat(1, 0.5), write: lat(1.2, 0.5)},
		{id: "n5", read: lat(1, 0.6), write: lat(1.2, 0.6)},
	}
}

// A read-heavy keyspace whose third replica is 48 ms slower moves from
// quorum to R=1 routed to the nearest (fast) replica: its reads come seconds
// after the writes, so the stale-read bound allows a partial quorum.
func TestDecideReadHeavySlowReplica(t *testing.T) {
	obs := readHeavySlowReplica(nil)
	s := NewState(Policy{N: 3, R: 2, W: 2})
	ns, d := Decide(decideModel(), s, window(obs), DefaultGoal(), obs.End)
	if d.Reason != ReasonCheaper || !d.Changed {
		t.Fatalf("reason %s, changed %v; want cheaper, changed\n%v", d.Reason, d.Changed, d)
	}
	if d.To.R != 1 || d.To.W != 2 || d.To.N != 3 || (d.To.Read != ReadNearest && d.To.Read != ReadHedged) {
		t.Errorf("chose %v; want N=3 R=1 W=2 read from the nearest replica\n%v", d.To, d)
	}
	if d.Chosen.StaleProb > DefaultGoal().MaxStale {
		t.Errorf("chosen stale %v; want ≤ %v", d.Chosen.StaleProb, DefaultGoal().MaxStale)
	}
	if d.Chosen.ReadP99 > 5*time.Millisecond {
		t.Errorf("chosen read p99 %v; want under 5 ms: the nearest replica is n1, not the 50 ms n3", d.Chosen.ReadP99)
	}
	if ns.Policy != d.To || ns.LastChange != obs.End || ns.PredictedFor != d.To {
		t.Errorf("new state %+v does not record the change", ns)
	}
	for _, want := range []string{"Moved ks from quorum(N=3 R=2 W=2) to R=1 W=2", "reads are 95% of traffic", "replica n3 is", "goal 0.1%", "read p99 from"} {
		if !strings.Contains(d.Explanation, want) {
			t.Errorf("explanation %q lacks %q", d.Explanation, want)
		}
	}
	if len(d.Plan) != 1 || d.Plan[0].Policy != d.To {
		t.Errorf("plan %s; want one step to %v", short(d.Plan), d.To)
	}
}

// When reads follow writes within a fraction of a millisecond and replicas'
// writes have a long tail, no partial quorum meets 0.1%: the tuner keeps an
// overlapping one.
func TestDecideReadsRightAfterWrites(t *testing.T) {
	obs := synth(nil, synthSpec{replicas: jittery(), reads: 60_000, writes: 40_000, gap: lat(0, 0.2), atRisk: 0.6, samples: 2000})
	for _, start := range []Policy{{N: 3, R: 2, W: 2}, {N: 3, R: 1, W: 3}} {
		_, d := Decide(decideModel(), NewState(start), window(obs), DefaultGoal(), obs.End)
		if !d.To.Overlapping() {
			t.Errorf("from %v chose %v; want R+W>N\n%v", start, d.To, d)
		}
		for _, c := range d.Candidates {
			if !c.Policy.Overlapping() && c.Eligible() {
				t.Errorf("%v is eligible with predicted stale %v", c.Policy, c.StaleProb)
			}
		}
	}
}

// Dwell and the minimum gain keep noisy observations of a steady workload
// from flapping the policy: 100 intervals, each with its own sampling noise
// and a read share wandering ±10 points.
func TestDecideDwellPreventsFlapping(t *testing.T) {
	run := func(m Model) (changes int, last Policy) {
		rng := rand.New(rand.NewPCG(11, 12))
		w := NewWindow(6, 0)
		s := NewState(Policy{N: 3, R: 2, W: 2})
		for i := 0; i < 100; i++ {
			spec := readHeavySpec()
			spec.samples = 300
			share := 0.6 + 0.2*(rng.Float64()-0.5)
			spec.reads = uint64(100_000 * share)
			spec.writes = 100_000 - spec.reads
			spec.start = t0.Add(time.Duration(i) * 10 * time.Second)
			spec.policy = s.Policy
			w.Push(synth(rng, spec))
			var d Decision
			s, d = Decide(m, s, w, DefaultGoal(), spec.start.Add(spec.span))
			if d.Changed {
				changes++
			}
		}
		return changes, s.Policy
	}
	m := decideModel()
	changes, last := run(m)
	t.Logf("with dwell %v and minimum gain %v: %d changes, ending at %v", m.Dwell, m.MinGain, changes, last)
	if changes > 3 {
		t.Errorf("%d changes in 100 intervals; want at most 3", changes)
	}
	m.Dwell, m.MinGain = 0, 0
	free, _ := run(m)
	t.Logf("without: %d changes", free)
	if free <= changes {
		t.Errorf("without dwell and minimum gain: %d changes; want more than %d, or the test shows nothing", free, changes)
	}
}

// Measured staleness above the goal under a partial quorum moves the
// keyspace at once, within the dwell time, to an overlapping quorum at the
// same N, and the tuner does not go back while the window still shows it.
func TestDecideStepBack(t *testing.T) {
	spec := readHeavySpec()
	spec.policy = Policy{N: 3, R: 1, W: 2, Read: ReadNearest}
	spec.probed, spec.stale = 1000, 20
	obs := synth(nil, spec)
	s := State{Policy: spec.policy, LastChange: obs.End.Add(-10 * time.Second)}
	m := decideModel()
	ns, d := Decide(m, s, window(obs), DefaultGoal(), obs.End)
	if d.Reason != ReasonStepBack {
		t.Fatalf("reason %s; want step_back\n%v", d.Reason, d)
	}
	if !d.To.Overlapping() || d.To.N != 3 {
		t.Errorf("stepped back to %v; want R+W>N at N=3", d.To)
	}
	if len(d.Plan) != 1 {
		t.Errorf("plan %s; want a single raising step", short(d.Plan))
	}
	if !strings.Contains(d.Explanation, "measured stale reads 2% (20 of 1000 probed) exceed the goal 0.1%") {
		t.Errorf("explanation %q does not give the measured figures", d.Explanation)
	}
	// Next interval, same window: stays overlapping despite the model.
	ns2, d2 := Decide(m, ns, window(obs), DefaultGoal(), obs.End.Add(10*time.Minute))
	if !d2.To.Overlapping() {
		t.Errorf("after stepping back, chose %v while measured staleness is still above the goal", d2.To)
	}
	_ = ns2

	// Two stale reads are below MinStaleEvents: no step back.
	spec.stale = 2
	obs = synth(nil, spec)
	_, d = Decide(m, s, window(obs), DefaultGoal(), obs.End)
	if d.Reason == ReasonStepBack {
		t.Errorf("stepped back on %d stale reads; want at least %d", spec.stale, m.MinStaleEvents)
	}
}

// The policy in force predicted to miss the goal (the workload changed)
// moves at once, ignoring dwell.
func TestDecidePredictedStale(t *testing.T) {
	obs := synth(nil, synthSpec{replicas: jittery(), reads: 60_000, writes: 40_000, gap: lat(0, 0.2), atRisk: 0.6, samples: 2000})
	cur := Policy{N: 3, R: 1, W: 2, Read: ReadNearest}
	s := State{Policy: cur, LastChange: obs.End.Add(-time.Second)}
	_, d := Decide(decideModel(), s, window(obs), DefaultGoal(), obs.End)
	if d.Reason != ReasonPredictedStale || !d.To.Overlapping() || d.To.N != 3 {
		t.Errorf("reason %s, to %v; want predicted_stale to R+W>N at N=3\n%v", d.Reason, d.To, d)
	}
	if !strings.Contains(d.Explanation, "at once") {
		t.Errorf("explanation %q", d.Explanation)
	}
}

// A goal whose floor no longer admits the policy in force moves at once.
func TestDecideOutOfBounds(t *testing.T) {
	obs := readHeavySlowReplica(nil)
	g := DefaultGoal()
	g.Floor = FloorQuorum
	s := State{Policy: Policy{N: 3, R: 1, W: 2, Read: ReadNearest}, LastChange: obs.End}
	_, d := Decide(decideModel(), s, window(obs), g, obs.End)
	if d.Reason != ReasonOutOfBounds || !d.To.Overlapping() {
		t.Errorf("reason %s, to %v; want out_of_bounds to R+W>N", d.Reason, d.To)
	}
}

// With floor quorum the tuner never yields R+W ≤ N, whatever the workload,
// replica latencies, start policy or calibration.
func TestDecideFloorQuorumNeverPartial(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	m := decideModel()
	m.Trials = 500
	for i := 0; i < 40; i++ {
		var reps []replicaSpec
		nodes := 3 + rng.IntN(3)
		for j := 0; j < nodes; j++ {
			reps = append(reps, replicaSpec{
				id:       string(rune('a' + j)),
				read:     lat(rng.Float64()*20, rng.Float64()*10),
				write:    lat(rng.Float64()*20, rng.Float64()*10),
				timeouts: rng.Float64() * 0.1 * float64(rng.IntN(2)),
				oneWay:   rng.IntN(2) == 0,
			})
		}
		g := Goal{MaxStale: 0.5, Floor: FloorQuorum, MinRF: 1 + rng.IntN(3), MinW: rng.IntN(2)}
		g.MaxRF = g.MinRF + rng.IntN(nodes-g.MinRF+1)
		spec := synthSpec{replicas: reps, reads: uint64(rng.IntN(10000)), writes: uint64(rng.IntN(10000)),
			gap: lat(rng.Float64()*1000, rng.Float64()*1000), atRisk: rng.Float64(), samples: 200,
			topShare: rng.Float64(), clusterSize: nodes}
		obs := synth(rng, spec)
		start := Policy{N: g.MinRF, R: 1, W: 1}
		s := State{Policy: start, Calibration: Calibration{LogFactor: rng.NormFloat64()}}
		for k := 0; k < 3; k++ {
			var d Decision
			s, d = Decide(m, s, window(obs), g, obs.End.Add(time.Duration(k)*time.Hour))
			if !d.To.Overlapping() || !s.Policy.Overlapping() {
				t.Fatalf("case %d, decision %d: floor quorum chose %v (reason %s)\n%v", i, k, d.To, d.Reason, d)
			}
			for _, c := range d.Candidates {
				if c.Eligible() && !c.Policy.Overlapping() {
					t.Fatalf("case %d: %v eligible under floor quorum", i, c.Policy)
				}
			}
		}
	}
}

// Replication factor: more replicas for a read-hot, skewed keyspace; fewer
// for a cold, write-heavy one; more when replicas flap.
func TestDecideReplicationFactor(t *testing.T) {
	g := DefaultGoal()
	g.MaxRF = 5
	tests := []struct {
		name  string
		spec  synthSpec
		start Policy
		check func(Policy) bool
		want  string
	}{
		{"read-hot, skewed", synthSpec{replicas: fiveNodes(), reads: 400_000, writes: 4_000, gap: lat(1000, 1000), atRisk: 0.2, samples: 2000, topShare: 0.7, clusterSize: 5},
			Policy{N: 3, R: 2, W: 2}, func(p Policy) bool { return p.N > 3 }, "N > 3"},
		{"cold, write-heavy", synthSpec{replicas: fiveNodes(), reads: 100, writes: 2000, gap: lat(1000, 1000), atRisk: 0.2, samples: 2000, clusterSize: 5},
			Policy{N: 5, R: 3, W: 3}, func(p Policy) bool { return p.N == 3 }, "N = 3"},
		{"two flapping replicas", synthSpec{replicas: func() []replicaSpec {
			r := fiveNodes()
			r[1].timeouts, r[3].timeouts = 0.3, 0.3
			return r
		}(), reads: 50_000, writes: 50_000, gap: lat(1000, 1000), atRisk: 0.2, samples: 2000, clusterSize: 5},
			Policy{N: 3, R: 2, W: 2}, func(p Policy) bool { return p.N > 3 }, "N > 3"},
	}
	for _, tt := range tests {
		obs := synth(nil, tt.spec)
		_, d := Decide(decideModel(), NewState(tt.start), window(obs), g, obs.End)
		if !tt.check(d.To) {
			t.Errorf("%s: chose %v; want %s\n%v", tt.name, d.To, tt.want, d)
		}
		if d.Changed && tt.start.N < d.To.N && !d.Plan[0].RequiresStreaming {
			t.Errorf("%s: plan %s does not stream to the new replicas first", tt.name, short(d.Plan))
		}
	}
}

// The calibration moves with measured staleness under a partial quorum,
// and not under an overlapping one.
func TestDecideCalibrates(t *testing.T) {
	spec := readHeavySpec()
	cur := Policy{N: 3, R: 1, W: 2, Read: ReadNearest}
	spec.policy = cur
	spec.probed, spec.stale = 1000, 1 // one stale read in 1000; 0.1 predicted
	obs := synth(nil, spec)
	m := decideModel()
	s := State{Policy: cur, PredictedFor: cur, PredictedRawStale: 0.0001}
	ns, d := Decide(m, s, window(obs), DefaultGoal(), obs.End)
	// x = log((1+1)/(0.1+1)); LogFactor = 0.3·x.
	want := math.Exp(0.3 * math.Log(2/1.1))
	if math.Abs(d.Calibration-want) > 1e-9 || math.Abs(ns.Calibration.Factor()-want) > 1e-9 || ns.Calibration.Updates != 1 {
		t.Errorf("calibration %v (state %+v); want %v after one update", d.Calibration, ns.Calibration, want)
	}
	// Under an overlapping quorum the measurement says nothing about the
	// model: unchanged.
	q := Policy{N: 3, R: 2, W: 2}
	spec.policy = q
	obs = synth(nil, spec)
	ns, _ = Decide(m, State{Policy: q, PredictedFor: q}, window(obs), DefaultGoal(), obs.End)
	if ns.Calibration != (Calibration{}) {
		t.Errorf("calibration moved under an overlapping quorum: %+v", ns.Calibration)
	}
}

func TestCalibrationUpdate(t *testing.T) {
	cfg := DefaultModel().Calibration
	tests := []struct {
		name          string
		c             Calibration
		predicted     float64
		stale, probed uint64
		want          float64 // factor
	}{
		{"too few probes", Calibration{}, 0.01, 5, 50, 1},
		{"as predicted", Calibration{}, 0.01, 10, 1000, 1},
		{"10x more stale", Calibration{}, 0.001, 21, 20000, math.Exp(0.3 * math.Log(22.0/21))},
		{"none seen, 5 expected", Calibration{}, 0.005, 0, 1000, math.Exp(0.3 * math.Log(1.0/6))},
		{"clamped", Calibration{LogFactor: math.Log(19)}, 1e-6, 1000, 1000, 20},
		{"zero prediction, stale seen", Calibration{}, 0, 30, 1000, math.Exp(0.3 * math.Log(31))},
	}
	for _, tt := range tests {
		got := tt.c.Update(cfg, tt.predicted, tt.stale, tt.probed).Factor()
		if math.Abs(got-tt.want) > 1e-9*tt.want {
			t.Errorf("%s: factor %v; want %v", tt.name, got, tt.want)
		}
	}
	c := Calibration{LogFactor: math.Log(4)}
	if got := c.Apply(0.01); math.Abs(got-0.04) > 1e-12 {
		t.Errorf("Apply(0.01) = %v; want 0.04", got)
	}
	if got := c.Apply(0); got != 0 {
		t.Errorf("Apply(0) = %v; want 0 (overlapping quorums stay never stale)", got)
	}
	if got := c.Apply(0.5); got != 1 {
		t.Errorf("Apply(0.5) = %v; want 1", got)
	}
}

func TestDecideLatencyTarget(t *testing.T) {
	obs := readHeavySlowReplica(nil)
	g := DefaultGoal()
	g.WriteP99 = 10 * time.Millisecond // excludes W=3, which waits for n3
	_, d := Decide(decideModel(), NewState(Policy{N: 3, R: 1, W: 3}), window(obs), g, obs.End)
	if d.To.W == 3 || d.LatencyTargetUnmet {
		t.Errorf("chose %v (unmet %v); want W<3 to meet the write p99 target", d.To, d.LatencyTargetUnmet)
	}
	g.ReadP99 = time.Microsecond // nothing meets it
	_, d = Decide(decideModel(), NewState(Policy{N: 3, R: 2, W: 2}), window(obs), g, obs.End)
	if !d.LatencyTargetUnmet || !strings.Contains(d.Explanation, "No configuration meets the latency target") {
		t.Errorf("unmet %v, explanation %q; want the target reported as unmet", d.LatencyTargetUnmet, d.Explanation)
	}
}

func TestDecideHoldsWithoutData(t *testing.T) {
	s := NewState(Policy{N: 3, R: 2, W: 2})
	ns, d := Decide(decideModel(), s, NewWindow(4, 0), DefaultGoal(), t0)
	if d.Reason != ReasonNoData || d.Changed || !reflect.DeepEqual(ns, s) {
		t.Errorf("reason %s, changed %v, state %+v; want no_data, unchanged", d.Reason, d.Changed, ns)
	}
	if !strings.Contains(d.Explanation, "no replica latencies") {
		t.Errorf("explanation %q", d.Explanation)
	}
}

func TestDecideNoCandidate(t *testing.T) {
	spec := readHeavySpec()
	spec.clusterSize = 2
	obs := synth(nil, spec)
	s := NewState(Policy{N: 3, R: 2, W: 2})
	ns, d := Decide(decideModel(), s, window(obs), DefaultGoal(), obs.End)
	if d.Reason != ReasonNoCandidate || d.Changed || ns.Policy != s.Policy {
		t.Errorf("reason %s, to %v; want no_candidate, unchanged", d.Reason, d.To)
	}
	if !strings.Contains(d.Explanation, "on a cluster of 2 live nodes") {
		t.Errorf("explanation %q", d.Explanation)
	}
}

func TestDecideRejectsInvalidInput(t *testing.T) {
	obs := readHeavySlowReplica(nil)
	g := DefaultGoal()
	g.MaxStale = 2
	_, d := Decide(decideModel(), NewState(Policy{N: 3, R: 2, W: 2}), window(obs), g, obs.End)
	if d.Reason != ReasonInvalid || !strings.Contains(d.Explanation, "max stale-read probability 2 is outside [0, 1)") {
		t.Errorf("reason %s, explanation %q", d.Reason, d.Explanation)
	}
	_, d = Decide(decideModel(), NewState(Policy{N: 3, R: 4, W: 2}), window(obs), DefaultGoal(), obs.End)
	if d.Reason != ReasonInvalid || !strings.Contains(d.Explanation, "not valid") {
		t.Errorf("reason %s, explanation %q", d.Reason, d.Explanation)
	}
}

// Decide is a pure function: the same inputs give the same outputs, and the
// window is not modified.
func TestDecideDeterministic(t *testing.T) {
	obs := readHeavySlowReplica(rand.New(rand.NewPCG(1, 1)))
	w := window(obs)
	before, _ := json.Marshal(w.Observations())
	s := NewState(Policy{N: 3, R: 2, W: 2})
	s1, d1 := Decide(decideModel(), s, w, DefaultGoal(), obs.End)
	s2, d2 := Decide(decideModel(), s, w, DefaultGoal(), obs.End)
	j1, _ := json.Marshal(d1)
	j2, _ := json.Marshal(d2)
	if !reflect.DeepEqual(s1, s2) || string(j1) != string(j2) {
		t.Errorf("two runs differ:\n%s\n%s", j1, j2)
	}
	after, _ := json.Marshal(w.Observations())
	if string(before) != string(after) {
		t.Errorf("Decide modified the window")
	}
}

func TestDecisionJSON(t *testing.T) {
	obs := readHeavySlowReplica(nil)
	_, d := Decide(decideModel(), NewState(Policy{N: 3, R: 2, W: 2}), window(obs), DefaultGoal(), obs.End)
	d.Observe(obs)
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"reason":"cheaper"`, `"read":"nearest"`, `"from":{"n":3,"r":2,"w":2,"read":"all"}`, `"floor":"one"`, `"stale_prob":`, `"read_p99_ns":`, `"requires_all_applied"`, `"observed":{`} {
		if want == `"requires_all_applied"` {
			continue // a one-step plan omits it
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	var back Decision
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(back)
	if string(b) != string(b2) {
		t.Errorf("JSON round trip differs:\n%s\n%s", b, b2)
	}
	if !reflect.DeepEqual(back.To, d.To) || back.Reason != d.Reason {
		t.Errorf("decoded %v %s; want %v %s", back.To, back.Reason, d.To, d.Reason)
	}
}

func TestDecisionCompact(t *testing.T) {
	obs := readHeavySlowReplica(nil)
	_, d := Decide(decideModel(), NewState(Policy{N: 3, R: 3, W: 3}), window(obs), DefaultGoal(), obs.End)
	c := d.Compact(2)
	if len(c.Candidates) > 5 || len(c.Candidates) < 3 || len(d.Candidates) != 14 {
		t.Errorf("Compact(2) kept %d of %d candidates; want 3 to 5", len(c.Candidates), len(d.Candidates))
	}
	has := func(p Policy) bool {
		for _, x := range c.Candidates {
			if x.Policy == p {
				return true
			}
		}
		return false
	}
	if !has(d.From) || !has(d.To) || !has(d.Best.Policy) {
		t.Errorf("Compact dropped the current, chosen or best candidate")
	}
}

func TestDecisionObserve(t *testing.T) {
	obs := readHeavySlowReplica(nil)
	_, d := Decide(decideModel(), NewState(Policy{N: 3, R: 2, W: 2}), window(obs), DefaultGoal(), obs.End)
	after := obs.Clone()
	after.Policy, after.Probed, after.Stale = d.To, 500, 1
	d.Observe(after)
	if d.Observed == nil || d.Observed.StaleRate != 0.002 || d.Observed.Policy != d.To || d.Observed.ReadP99 == 0 {
		t.Errorf("observed %+v", d.Observed)
	}
	if !strings.Contains(d.String(), "observed under") || !strings.Contains(d.String(), "predicted:") {
		t.Errorf("String() lacks the predicted/observed lines:\n%s", d)
	}
}

func TestWhatIf(t *testing.T) {
	obs := synth(nil, synthSpec{replicas: symmetric(), reads: 60_000, writes: 40_000, gap: lat(0, 0.2), atRisk: 0.6, samples: 500})
	reps, err := WhatIf(decideModel(), obs, DefaultGoal())
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != len(Candidates(DefaultGoal(), 0)) {
		t.Fatalf("%d reports; want one per candidate", len(reps))
	}
	seenIneligible := false
	for i, r := range reps {
		if !r.Eligible() {
			seenIneligible = true
			if r.Rejected == "" {
				t.Errorf("%v ineligible without a reason", r.Policy)
			}
		} else if seenIneligible {
			t.Errorf("eligible %v listed after an ineligible one", r.Policy)
		}
		if i > 0 && r.Eligible() == reps[i-1].Eligible() && r.Cost < reps[i-1].Cost {
			t.Errorf("%v (cost %v) after %v (cost %v)", r.Policy, r.Cost, reps[i-1].Policy, reps[i-1].Cost)
		}
	}
	if _, err := WhatIf(decideModel(), Observation{}, DefaultGoal()); err == nil {
		t.Errorf("WhatIf on an empty observation: err = nil; want ErrNoData")
	}
}

// Resized remembers the first shrink until N grows back to where it was.
func TestStateResized(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	s := NewState(Policy{N: 5, R: 3, W: 3})
	steps := []struct {
		n        int
		now      int
		wantAt   time.Time
		wantFrom int
	}{
		{3, 1, at(1), 5},       // first shrink
		{2, 2, at(1), 5},       // a second one keeps the first
		{4, 3, at(1), 5},       // growing part of the way keeps it
		{5, 4, time.Time{}, 0}, // back where it was: cleared
		{3, 5, at(5), 5},       // a new shrink starts afresh
	}
	for i, st := range steps {
		s.Resized(st.n, at(st.now))
		s.Policy.N = st.n
		if !s.ShrunkAt.Equal(st.wantAt) || s.ShrunkFrom != st.wantFrom {
			t.Errorf("step %d (N→%d): ShrunkAt %v ShrunkFrom %d; want %v %d", i+1, st.n, s.ShrunkAt, s.ShrunkFrom, st.wantAt, st.wantFrom)
		}
	}
}

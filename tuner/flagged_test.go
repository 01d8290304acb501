package tuner

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// slowPhaseSpec is the experiment's slow-replica phase as one coordinator
// sees a key's replicas: n1 local, n2 a zone away (20 ms), n3 a zone away
// and replying 50 ms late; 95% reads, a few of them soon after a write.
func slowPhaseSpec() synthSpec {
	return synthSpec{
		replicas: []replicaSpec{
			{id: "n1", read: lat(1, 0.5), write: lat(1.5, 0.5)},
			{id: "n2", read: lat(21, 1), write: lat(22, 1)},
			{id: "n3", read: lat(71, 2), write: lat(72, 2)},
		},
		reads: 95_000, writes: 5_000, gap: lat(2, 40), atRisk: 0.05, samples: 2000, clusterSize: 3,
	}
}

func flaggedModel() Model {
	m := decideModel()
	m.CoordinatorSpread = true // as the node runs it
	return m
}

// A flagged replica is read last and never coordinates, so a write quorum
// that leaves it out (W=2 here: its acknowledgement is the slowest) is
// never stale for a read of the nearest replica; unflagged, the model must
// assume another coordinator may read it first.
func TestPredictFlaggedReplica(t *testing.T) {
	w2 := Policy{N: 3, R: 1, W: 2, Read: ReadNearest}
	for _, tc := range []struct {
		name      string
		flagged   []string
		wantStale bool // W=2 predicted stale at all
	}{
		{"none flagged", nil, true},
		{"slow replica flagged", []string{"n3"}, false},
		{"unknown node flagged", []string{"n9"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := synth(nil, slowPhaseSpec())
			obs.Flagged = tc.flagged
			ps, err := flaggedModel().Predict(obs, []Policy{w2}, Calibration{})
			if err != nil {
				t.Fatal(err)
			}
			p := ps[0]
			if got := p.StaleProb > 0; got != tc.wantStale {
				t.Errorf("%v predicted stale %v; want stale: %v", w2, p.StaleProb, tc.wantStale)
			}
			if p.ReadP99 > 5*time.Millisecond {
				t.Errorf("read p99 %v; want under 5 ms (the nearest replica is n1)", p.ReadP99)
			}
			if p.WriteP99 > 30*time.Millisecond {
				t.Errorf("write p99 %v; want under 30 ms: W=2 never waits for the 72 ms n3", p.WriteP99)
			}
		})
	}
}

// The regression of issue 16: in the slow-replica phase the tuner held R=1
// W=3, waiting on every write for the slow replica. With it flagged, it
// moves to R=1 W=2, whose writes do not wait for it, and says why.
func TestDecideFlaggedSlowReplica(t *testing.T) {
	goal := Goal{MaxStale: 0.001, Floor: FloorOne, MinRF: 3, MaxRF: 3, ReadP99: 10 * time.Millisecond}
	w3 := Policy{N: 3, R: 1, W: 3, Read: ReadNearest}
	for _, tc := range []struct {
		name       string
		flagged    []string
		backoff    *Backoff // in force from before
		wantReason Reason
		wantW      int
		wantText   []string
		notText    []string
	}{
		{name: "none flagged: holds W=3", wantReason: ReasonHold, wantW: 3, notText: []string{"flagged"}},
		{name: "n3 flagged: W=2", flagged: []string{"n3"}, wantReason: ReasonCheaper, wantW: 2,
			wantText: []string{"to R=1 W=2", "The health detector has flagged n3", "reads from it last", "counts toward W"}, notText: []string{"lifted"}},
		// A backoff from W=2 begun before the flag is evidence about
		// another routing: the flag lifts it.
		{name: "n3 flagged after a backoff began", flagged: []string{"n3"}, wantReason: ReasonCheaper, wantW: 2,
			backoff:  &Backoff{From: Policy{N: 3, R: 1, W: 2, Read: ReadNearest}, At: t0, Until: t0.Add(time.Hour), Count: 3, Cause: ReasonPredictedStale},
			wantText: []string{"to R=1 W=2", "was lifted", "then none, now n3"}},
		// One begun with n3 already flagged still holds.
		{name: "backoff begun under the same flags", flagged: []string{"n3"}, wantReason: ReasonBackoff, wantW: 3,
			backoff:  &Backoff{From: Policy{N: 3, R: 1, W: 2, Read: ReadNearest}, At: t0, Until: t0.Add(time.Hour), Count: 3, Cause: ReasonPredictedStale, Flagged: []string{"n3"}},
			wantText: []string{"The health detector has flagged n3"}, notText: []string{"lifted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := synth(nil, slowPhaseSpec())
			obs.Policy = w3
			obs.Flagged = tc.flagged
			st := NewState(w3)
			if tc.backoff != nil {
				st.Backoff = *tc.backoff
			}
			_, d := Decide(flaggedModel(), st, window(obs), goal, obs.End)
			if d.Reason != tc.wantReason || d.To.W != tc.wantW || d.To.R != 1 {
				t.Fatalf("%s to %v; want %s to R=1 W=%d\n%s", d.Reason, d.To, tc.wantReason, tc.wantW, d.Explanation)
			}
			if d.Chosen.StaleProb > goal.MaxStale && tc.wantW < 3 {
				t.Errorf("chosen predicted stale %v above the goal", d.Chosen.StaleProb)
			}
			var quorum *CandidateReport
			for i := range d.Candidates {
				if d.Candidates[i].Policy == (Policy{N: 3, R: 2, W: 2}) {
					quorum = &d.Candidates[i]
				}
			}
			if quorum == nil {
				t.Fatal("quorum was not a candidate")
			}
			if tc.wantW == 2 && d.Chosen.WriteP99 > quorum.WriteP99 {
				t.Errorf("chosen write p99 %v above quorum's %v", d.Chosen.WriteP99, quorum.WriteP99)
			}
			for _, s := range tc.wantText {
				if !strings.Contains(d.Explanation, s) {
					t.Errorf("explanation %q lacks %q", d.Explanation, s)
				}
			}
			for _, s := range tc.notText {
				if strings.Contains(d.Explanation, s) {
					t.Errorf("explanation %q has %q", d.Explanation, s)
				}
			}
			if !slices.Equal(d.Inputs.Flagged, tc.flagged) {
				t.Errorf("inputs flagged %v; want %v", d.Inputs.Flagged, tc.flagged)
			}
			out := FormatDecision(d, 3)
			if got := strings.Contains(out, "replica n3: ") && strings.Contains(out, "(flagged: read last)"); got != (tc.flagged != nil) {
				t.Errorf("tuner explain marks n3 flagged: %v; want %v\n%s", got, tc.flagged != nil, out)
			}
		})
	}
}

// Merging keeps the later interval's flags, including none: a reinstated
// node is read from again.
func TestMergeFlagged(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, tc := range []struct {
		name     string
		a, b     []string
		aEnd     int
		bEnd     int
		want     []string
		wantSame bool
	}{
		{name: "later flags win", a: nil, b: []string{"n3"}, aEnd: 1, bEnd: 2, want: []string{"n3"}},
		{name: "reinstated", a: []string{"n3"}, b: nil, aEnd: 1, bEnd: 2, want: nil},
		{name: "earlier second argument", a: []string{"n3"}, b: []string{"n2"}, aEnd: 2, bEnd: 1, want: []string{"n3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := Observation{End: at(tc.aEnd), Flagged: tc.a}
			b := Observation{End: at(tc.bEnd), Flagged: tc.b}
			if got := Merge(a, b).Flagged; !slices.Equal(got, tc.want) {
				t.Errorf("Merge flagged %v; want %v", got, tc.want)
			}
			w := NewWindow(4, 0)
			for _, o := range []Observation{a, b} {
				if tc.aEnd < tc.bEnd {
					w.Push(o)
				}
			}
			if tc.aEnd < tc.bEnd {
				if got := w.Merged().Flagged; !slices.Equal(got, tc.want) {
					t.Errorf("window merged flagged %v; want %v", got, tc.want)
				}
			}
		})
	}
}

// adaptkv's node names replicas by rank from the coordinator, not by node;
// it passes the share of keys whose replicas include a flagged node
// instead, and the model takes the last-ranked replica of that share of
// keys to be the flagged one (coordinators rank it last).
func TestPredictFlaggedByRank(t *testing.T) {
	w2 := Policy{N: 3, R: 1, W: 2, Read: ReadNearest}
	spec := slowPhaseSpec()
	for i, id := range []string{"nearest", "2nd-nearest", "3rd-nearest"} {
		spec.replicas[i].id = id
	}
	predict := func(share float64) float64 {
		t.Helper()
		obs := synth(nil, spec)
		if share > 0 {
			obs.Flagged, obs.FlaggedShare = []string{"n3"}, []float64{0, 0, 0, share}
		}
		ps, err := flaggedModel().Predict(obs, []Policy{w2}, Calibration{})
		if err != nil {
			t.Fatal(err)
		}
		return ps[0].StaleProb
	}
	none, half, all := predict(0), predict(0.5), predict(1)
	if !(none > half && half > all && all == 0) {
		t.Errorf("%v predicted stale %.4f with no key's last replica flagged, %.4f with half, %.4f with all; want falling to 0", w2, none, half, all)
	}
	if half < none/4 || half > 3*none/4 {
		t.Errorf("half the keys flagged: %.4f; want about half of %.4f", half, none)
	}

	// All the keys: Decide leaves W=3 and says how many keys n3 holds.
	w3 := Policy{N: 3, R: 1, W: 3, Read: ReadNearest}
	obs := synth(nil, spec)
	obs.Policy, obs.Flagged, obs.FlaggedShare = w3, []string{"n3"}, []float64{0, 0.2, 0.6, 1}
	_, d := Decide(flaggedModel(), NewState(w3), window(obs), Goal{MaxStale: 0.001, Floor: FloorOne, MinRF: 3, MaxRF: 3}, obs.End)
	if d.To.W != 2 || !strings.Contains(d.Explanation, "flagged n3 (a replica of 100% of the keys at N=3)") {
		t.Errorf("%s to %v: %s; want R=1 W=2, naming n3 and the keys it holds", d.Reason, d.To, d.Explanation)
	}
}

// byRankSlowPhase builds the slow-replica phase of the adaptive experiment
// (5 nodes, N=3, n3 flagged and a replica of share of the keys) as
// adaptkv's node records it by rank from the coordinator. apart: the legs
// to n3 are recorded under its own ID, so the 3rd-nearest rank holds only
// the healthy replica ranked last for the keys n3 does not hold; else (the
// recording before) the 3rd-nearest rank mixes n3's legs, share of them,
// with the healthy one's.
func byRankSlowPhase(share float64, apart bool) Observation {
	slow := replicaSpec{id: "n3", read: lat(71, 2), write: lat(72, 2)}
	third := replicaSpec{id: "3rd-nearest", read: lat(21, 12), write: lat(22, 12)}
	spec := slowPhaseSpec()
	spec.atRisk = 0.1
	spec.replicas[0].id, spec.replicas[1].id, spec.replicas[2] = "nearest", "2nd-nearest", third
	obs := synth(nil, spec)
	if share == 0 {
		return obs
	}
	obs.Flagged, obs.FlaggedShare = []string{"n3"}, []float64{0, share / 3, share * 2 / 3, share}
	n := spec.samples
	if apart {
		ro := synth(nil, synthSpec{replicas: []replicaSpec{slow}, samples: n}).Replicas[0]
		ro.Apart = true
		obs.Replicas = append(obs.Replicas, ro)
		return obs
	}
	k := int(share * float64(n))
	mix := synth(nil, synthSpec{replicas: []replicaSpec{third}, samples: n - k}).Replicas[0]
	mix.merge(&synth(nil, synthSpec{replicas: []replicaSpec{slow}, samples: k}).Replicas[0])
	mix.ID = "3rd-nearest"
	obs.Replicas[2] = mix
	return obs
}

// The prediction that crept in the quiet re-run of 2026-12-05: by rank,
// the 3rd-nearest replica's legs mixed the flagged n3's 72 ms writes (for
// the 60% of keys it holds) with a healthy replica's, so for the 40% of
// keys n3 does not hold the model drew their third replica from n3's
// latencies too, and a read coordinated there found the write not yet
// applied: R=1 W=2 was predicted above the 0.1% goal. With n3's legs
// recorded apart, the keys it holds are never stale at W=2 (it is read
// last and never coordinates) and the others are predicted as the healthy
// replicas are: 40% of the healthy cluster's rate.
func TestPredictFlaggedApart(t *testing.T) {
	w2 := Policy{N: 3, R: 1, W: 2, Read: ReadNearest}
	m := flaggedModel()
	m.Trials = 40_000 // the healthy rate rests on about 150 stale trials
	predict := func(obs Observation) Prediction {
		t.Helper()
		ps, err := m.Predict(obs, []Policy{w2}, Calibration{})
		if err != nil {
			t.Fatal(err)
		}
		return ps[0]
	}
	const share, goal = 0.6, 0.001
	healthy := predict(byRankSlowPhase(0, false)).StaleProb
	mixed := predict(byRankSlowPhase(share, false)).StaleProb
	apart := predict(byRankSlowPhase(share, true))
	want := (1 - share) * healthy
	t.Logf("%v predicted stale: healthy cluster %.4f%%, n3 flagged and recorded by rank %.4f%%, recorded apart %.4f%% (want about %.4f%%)",
		w2, 100*healthy, 100*mixed, 100*apart.StaleProb, 100*want)
	if healthy == 0 {
		t.Fatal("the healthy cluster is never stale at W=2: the test cannot tell the recordings apart")
	}
	if mixed <= goal {
		t.Errorf("recorded by rank: %.4f%%; the mixture should over-predict above the %.1f%% goal, as in the experiment", 100*mixed, 100*goal)
	}
	if got := apart.StaleProb; got < 0.6*want || got > 1.4*want {
		t.Errorf("recorded apart: %.4f%%; want within 40%% of %.4f%% (the %.0f%% of keys without n3 at the healthy rate)", 100*got, 100*want, 100*(1-share))
	}
	if apart.WriteP99 > 40*time.Millisecond {
		t.Errorf("recorded apart: W=2 write p99 %v; want under 40 ms (never waits for n3's 72 ms)", apart.WriteP99)
	}
	// R=3 reads wait for n3 on the keys it holds: its own legs (its write
	// round trips when it answered no read) must show in the read p99.
	r3 := Policy{N: 3, R: 3, W: 1, Read: ReadAll}
	obs := byRankSlowPhase(share, true)
	ro := &obs.Replicas[len(obs.Replicas)-1]
	ro.ReadRTT, ro.ReadsSent = Hist{}, 0
	ps, err := m.Predict(obs, []Policy{r3}, Calibration{})
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].ReadP99 < 70*time.Millisecond {
		t.Errorf("%v with n3 answering no read: read p99 %v; want at least n3's 72 ms", r3, ps[0].ReadP99)
	}
}

// Decide on the same observations: from R=1 W=2 with n3 flagged, the
// recording by rank made the tuner move to W=3 (write p99 about n3's
// 72 ms); recorded apart, it holds W=2.
func TestDecideFlaggedApart(t *testing.T) {
	w2 := Policy{N: 3, R: 1, W: 2, Read: ReadNearest}
	goal := Goal{MaxStale: 0.001, Floor: FloorOne, MinRF: 3, MaxRF: 3, ReadP99: 10 * time.Millisecond}
	for _, tc := range []struct {
		apart bool
		wantW int
	}{{false, 3}, {true, 2}} {
		obs := byRankSlowPhase(0.6, tc.apart)
		obs.Policy = w2
		m := flaggedModel()
		m.Trials = 20_000
		_, d := Decide(m, NewState(w2), window(obs), goal, obs.End)
		if d.To.W != tc.wantW || d.To.R != 1 {
			t.Errorf("apart=%v: %s to %v; want R=1 W=%d\n%s", tc.apart, d.Reason, d.To, tc.wantW, d.Explanation)
		}
		if out := FormatDecision(d, 3); tc.apart != strings.Contains(out, "replica n3: ") ||
			tc.apart != strings.Contains(out, "its own legs apart from the ranks") ||
			tc.apart != strings.Contains(d.Explanation, "For those keys it draws the last-ranked replica from n3's own latencies") {
			t.Errorf("apart=%v: tuner explain lists n3's own legs and says the model draws from them: %v; want %v\n%s", tc.apart, !tc.apart, tc.apart, out)
		}
	}
}

// The recorder lists the nodes recorded apart after the ranks, sorted,
// and only in the intervals that recorded any; Merge adds an apart entry
// to the same node's apart entry, never to an entry of the same name by
// rank or by node.
func TestRecorderApart(t *testing.T) {
	r := NewRecorder("ks", []string{"nearest", "2nd-nearest"}, t0)
	r.Sent(1, true)
	r.Leg(1, LegWriteRTT, 20*time.Millisecond)
	for _, id := range []string{"n4", "n3"} {
		r.SentApart(id, true)
		r.LegApart(id, LegWriteRTT, 70*time.Millisecond)
	}
	r.SentApart("n3", false)
	r.TimeoutApart("n3", false)
	a := r.Snapshot(t0.Add(time.Second), Policy{}, 5)
	var got []string
	for _, ro := range a.Replicas {
		got = append(got, fmt.Sprintf("%s/%v", ro.ID, ro.Apart))
	}
	if want := []string{"nearest/false", "2nd-nearest/false", "n3/true", "n4/true"}; !slices.Equal(got, want) {
		t.Fatalf("replicas %v; want %v", got, want)
	}
	if n3 := a.Replicas[2]; n3.WritesSent != 1 || n3.ReadsSent != 1 || n3.ReadTimeouts != 1 || n3.WriteRTT.Count() != 1 {
		t.Errorf("n3 apart: %+v; want one write answered and one read timed out", n3)
	}
	r.LegApart("n3", LegWriteRTT, 71*time.Millisecond)
	b := r.Snapshot(t0.Add(2*time.Second), Policy{}, 5)
	if len(b.Replicas) != 3 || b.Replicas[2].ID != "n3" {
		t.Fatalf("second interval: %d replicas; want the ranks and n3 only (n4 recorded nothing)", len(b.Replicas))
	}
	b.Replicas = append(b.Replicas, ReplicaObservation{ID: "n3", WritesSent: 5}) // named by node, not apart
	m := Merge(a, b)
	var n3Apart, n3 *ReplicaObservation
	for i := range m.Replicas {
		if m.Replicas[i].ID == "n3" && m.Replicas[i].Apart {
			n3Apart = &m.Replicas[i]
		} else if m.Replicas[i].ID == "n3" {
			n3 = &m.Replicas[i]
		}
	}
	if n3Apart == nil || n3 == nil || n3Apart.WriteRTT.Count() != 2 || n3.WritesSent != 5 {
		t.Errorf("merged: n3 apart %+v, n3 by node %+v; want 2 write samples apart and the 5 writes by node kept separate", n3Apart, n3)
	}
}

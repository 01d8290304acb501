package tuner

import (
	"strings"
	"testing"
	"time"
)

// TestDecideBacksOff replays the flapping of the first experiment: partial
// quorums the model predicts fresh return stale reads whenever they are
// tried. Without a backoff the tuner retries one as soon as dwell has passed
// and the stale reads have left the window; with one it waits BackoffBase,
// then twice that, and so on up to BackoffMax, and every decision that
// holds a cheaper candidate back says so.
func TestDecideBacksOff(t *testing.T) {
	m := decideModel()
	m.Dwell = 5 * time.Second
	m.BackoffBase, m.BackoffMax = time.Minute, 4*time.Minute
	g := DefaultGoal()
	g.MinW = 1
	safe := Policy{N: 3, R: 1, W: 3, Read: ReadNearest}

	// run decides every 5 s for 20 min, the probes finding 1% of reads
	// stale whenever a partial quorum is in force, and returns the
	// decisions and how many of them moved to a partial quorum.
	run := func(m Model) (tries int, ds []Decision) {
		s := State{Policy: safe}
		w := NewWindow(2, 0) // 10 s of evidence: stale reads leave quickly
		for at := t0; at.Before(t0.Add(20 * time.Minute)); at = at.Add(5 * time.Second) {
			spec := readHeavySpec()
			spec.start, spec.span, spec.policy = at, 5*time.Second, s.Policy
			spec.probed = 1000
			if !s.Policy.Overlapping() {
				spec.stale = 10
			}
			w.Push(synth(nil, spec))
			var d Decision
			s, d = Decide(m, s, w, g, at.Add(5*time.Second))
			ds = append(ds, d)
			if d.Changed && !d.To.Overlapping() {
				tries++
			}
		}
		return tries, ds
	}

	off := m
	off.BackoffBase = 0
	if tries, _ := run(off); tries < 20 {
		t.Fatalf("without backoff partial quorums were tried %d times in 20 min; the test needs the flapping to reproduce", tries)
	}

	tries, ds := run(m)
	// The waits after each step back: 1, 2, 4, 4… min.
	var waits []time.Duration
	held := 0
	for _, d := range ds {
		switch d.Reason {
		case ReasonStepBack:
			if d.Backoff == nil || d.Backoff.Count != len(waits)+1 {
				t.Fatalf("step back %d records backoff %+v", len(waits)+1, d.Backoff)
			}
			waits = append(waits, d.Backoff.Until.Sub(d.At))
			if !strings.Contains(d.Explanation, "will not be tried again for") {
				t.Errorf("a step back that does not say it backs off: %s", d.Explanation)
			}
		case ReasonBackoff:
			held++
			if d.HeldBack == nil || d.HeldBack.Policy.Overlapping() || !strings.Contains(d.Explanation, "stepped back from") {
				t.Fatalf("a backoff decision that does not say what it holds back: %s", d.Explanation)
			}
		}
		for _, c := range d.Candidates {
			if c.BackedOff && (c.Policy.Overlapping() || c.Eligible()) {
				t.Fatalf("candidate %v backed off while overlapping or eligible: %+v", c.Policy, c)
			}
		}
	}
	if tries > 10 || len(waits) != tries {
		t.Errorf("with backoff: %d tries and %d step backs in 20 min; want at most 10, each stepped back", tries, len(waits))
	}
	for i, got := range waits {
		if want := m.BackoffBase << min(i, 2); got != want {
			t.Errorf("wait after step back %d: %v; want %v", i+1, got, want)
		}
	}
	if held == 0 {
		t.Errorf("no decision gave backoff as its reason")
	}
}

// TestNextBackoff: the wait doubles up to the maximum and never undercuts
// dwell; a quiet spell starts again from the base; a run of step backs
// holds back what each of them held back.
func TestNextBackoff(t *testing.T) {
	m := DefaultModel() // dwell 2 min, base 1 min, max 30 min
	p11 := Policy{N: 3, R: 1, W: 1, Read: ReadNearest}
	p12 := Policy{N: 3, R: 1, W: 2, Read: ReadNearest}
	p21 := Policy{N: 3, R: 2, W: 1, Read: ReadNearest}
	b := m.nextBackoff(Backoff{}, p11, t0, ReasonStepBack, nil)
	if b.Count != 1 || b.Until.Sub(t0) != m.Dwell || b.From != p11 {
		t.Errorf("first backoff %+v; want count 1 for dwell (%v), the base being shorter", b, m.Dwell)
	}
	at := b.Until.Add(time.Minute)
	b = m.nextBackoff(b, p12, at, ReasonStepBack, nil)
	if b.Count != 2 || b.Until.Sub(at) != 2*time.Minute || b.From != p12 {
		t.Errorf("second backoff %+v; want count 2 for 2 min from R=1 W=2", b)
	}
	at = b.Until.Add(3 * time.Minute)
	b = m.nextBackoff(b, p21, at, ReasonStepBack, nil)
	if want := (Policy{N: 3, R: 2, W: 2, Read: ReadNearest}); b.Count != 3 || b.Until.Sub(at) != 4*time.Minute || b.From != want {
		t.Errorf("third backoff %+v; want count 3 for 4 min from %v", b, want)
	}
	for range 10 {
		at = b.Until
		b = m.nextBackoff(b, p11, at, ReasonStepBack, nil)
	}
	if b.Until.Sub(at) != m.BackoffMax {
		t.Errorf("after 13 step backs the wait is %v; want the maximum %v", b.Until.Sub(at), m.BackoffMax)
	}
	late := b.Until.Add(m.BackoffMax + time.Second)
	if b = m.nextBackoff(b, p11, late, ReasonStepBack, nil); b.Count != 1 || b.From != p11 {
		t.Errorf("backoff after a quiet spell: %+v; want count 1 from R=1 W=1", b)
	}
	off := m
	off.BackoffBase = 0
	if b := off.nextBackoff(Backoff{}, p11, t0, ReasonStepBack, nil); b.Count != 0 || !b.Until.IsZero() {
		t.Errorf("backoff with BackoffBase 0: %+v; want none", b)
	}
}

// TestBackoffBlocks: only partial quorums of the same N as weak as the one
// stepped back from, and only until the backoff ends.
func TestBackoffBlocks(t *testing.T) {
	b := Backoff{From: Policy{N: 5, R: 2, W: 2}, At: t0, Until: t0.Add(time.Minute), Count: 1}
	tests := []struct {
		p    Policy
		at   time.Duration
		want bool
	}{
		{Policy{N: 5, R: 2, W: 2}, 0, true},
		{Policy{N: 5, R: 1, W: 2, Read: ReadHedged}, 0, true},
		{Policy{N: 5, R: 2, W: 1}, 30 * time.Second, true},
		{Policy{N: 5, R: 1, W: 3}, 0, false}, // stronger in W
		{Policy{N: 5, R: 3, W: 3}, 0, false}, // overlapping
		{Policy{N: 3, R: 1, W: 1}, 0, false}, // another N
		{Policy{N: 5, R: 2, W: 2}, time.Minute, false},
	}
	for _, tt := range tests {
		if got := b.Blocks(tt.p, t0.Add(tt.at)); got != tt.want {
			t.Errorf("Blocks(%v, +%v) = %v; want %v", tt.p, tt.at, got, tt.want)
		}
	}
	if (Backoff{}).Blocks(Policy{N: 3, R: 1, W: 1}, t0) {
		t.Errorf("the zero Backoff blocks")
	}
}

// TestPredictedStaleBacksOff: leaving a partial quorum because it is now
// predicted to miss the goal starts a backoff as a step back does, so a
// prediction hovering about the goal does not cycle the policy; the held
// decision says which cause it was.
func TestPredictedStaleBacksOff(t *testing.T) {
	m := decideModel()
	m.Dwell = 5 * time.Second
	nearest := Policy{N: 3, R: 1, W: 2, Read: ReadNearest}
	// Reads follow writes within a fraction of a millisecond.
	obs := synth(nil, synthSpec{start: t0, replicas: jittery(), reads: 60_000, writes: 40_000, gap: lat(0, 0.2), atRisk: 0.6, samples: 2000, policy: nearest})
	s, d := Decide(m, State{Policy: nearest, LastChange: t0.Add(-time.Minute)}, window(obs), DefaultGoal(), obs.End)
	if d.Reason != ReasonPredictedStale || s.Backoff.Count != 1 || s.Backoff.Cause != ReasonPredictedStale || s.Backoff.From != nearest {
		t.Fatalf("%s to %v with backoff %+v; want a predicted_stale move starting a backoff from %v", d.Reason, d.To, s.Backoff, nearest)
	}
	// Twenty seconds later reads come long after writes: R=1 W=2 is
	// predicted fresh again, dwell has passed, but the backoff holds it.
	spec := readHeavySpec()
	spec.start, spec.policy = obs.End.Add(10*time.Second), s.Policy
	later := synth(nil, spec)
	_, d = Decide(m, s, window(later), DefaultGoal(), later.End)
	if d.Reason != ReasonBackoff || !strings.Contains(d.Explanation, "left R=1 W=2") || !strings.Contains(d.Explanation, "predicted to return too many stale reads") {
		t.Errorf("%s: %s\nwant a backoff decision naming the predicted staleness", d.Reason, d.Explanation)
	}
}

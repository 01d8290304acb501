package tuner

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// short renders a plan compactly for table tests: "N/R/W[flags] → …" with
// s = streaming, a = all applied, r = repair.
func short(steps []Step) string {
	var parts []string
	for _, s := range steps {
		f := ""
		if s.RequiresStreaming {
			f += "s"
		}
		if s.RequiresAllApplied {
			f += "a"
		}
		if s.RequiresRepair {
			f += "r"
		}
		p := fmt.Sprintf("%d/%d/%d", s.Policy.N, s.Policy.R, s.Policy.W)
		if f != "" {
			p += "[" + f + "]"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " → ")
}

func pol(n, r, w int) Policy { return Policy{N: n, R: r, W: w} }

// Reference: DESIGN.md, "Cluster metadata and configuration changes".
func TestPlanExamples(t *testing.T) {
	tests := []struct {
		name     string
		from, to Policy
		want     string
	}{
		{"no change", pol(3, 2, 2), pol(3, 2, 2), ""},
		{"raise R only: one step", pol(3, 1, 2), pol(3, 2, 2), "3/2/2"},
		{"raise both", pol(3, 1, 1), pol(3, 2, 2), "3/2/2[r]"},
		{"lower R only: the joint is from itself", pol(3, 3, 3), pol(3, 2, 3), "3/2/3"},
		{"lower R, raise W", pol(3, 3, 1), pol(3, 2, 2), "3/3/2[a] → 3/2/2[r]"},
		{"lower R, raise W: joint first", pol(3, 2, 2), pol(3, 1, 3), "3/2/3[a] → 3/1/3[r]"},
		{"quorum to one: lowering only", pol(3, 2, 2), pol(3, 1, 1), "3/1/1"},
		{"read path only", pol(3, 1, 2), Policy{N: 3, R: 1, W: 2, Read: ReadNearest}, "3/1/2"},
		{"grow: stream then count, joint on the way", pol(3, 2, 2), pol(5, 3, 3), "5/3/4[sa] → 5/3/3"},
		{"grow keeping quorum sizes", pol(3, 2, 2), pol(5, 2, 4), "5/2/4[s]"},
		{"grow, partial quorum", pol(3, 1, 1), pol(5, 1, 1), "5/1/1[s]"},
		{"shrink last", pol(5, 3, 3), pol(3, 2, 2), "5/4/4[a] → 3/2/2[r]"},
		{"shrink keeping sizes", pol(5, 3, 3), pol(3, 3, 3), "3/3/3"},
		{"shrink to a partial quorum", pol(5, 3, 3), pol(3, 1, 2), "3/1/2"},
	}
	for _, tt := range tests {
		got := short(Plan(tt.from, tt.to))
		if got != tt.want {
			t.Errorf("%s: Plan(%v, %v) = %q; want %q", tt.name, tt.from, tt.to, got, tt.want)
		}
	}
}

// copiesSeen is how many replicas in the first readN of the ring walk are
// sure to hold a write acknowledged by w of the first writeN, when added
// replicas (readN > writeN) were streamed and sent every write (grow) or
// were not (shrink: they never received writes of the smaller list).
func copiesSeen(w, writeN, readN int, streamed bool) int {
	switch {
	case readN < writeN:
		return w - (writeN - readN)
	case readN > writeN && streamed:
		return w + (readN - writeN)
	}
	return w
}

// meets reports whether a read under rd surely meets a write under wr.
func meets(rd, wr Policy, streamed bool) bool {
	return rd.R+copiesSeen(wr.W, wr.N, rd.N, streamed) > rd.N
}

// TestPlanExhaustive checks every plan between every two valid policies
// with N ≤ 7 (140 policies, 19,600 plans) for:
//
//   - every step is valid and the last step is the target;
//   - N changes in exactly one step: the first when it grows (flagged
//     RequiresStreaming), the last when it shrinks;
//   - every step but the last requires all nodes to have applied it;
//   - a step that lowers R or W below the previous step follows a step
//     that every node applied (so no three configurations mix);
//   - when both ends overlap (floor quorum): every step has R+W > N, reads
//     and writes under any two adjacent steps meet in both directions, and
//     a step not flagged RequiresRepair meets every write acknowledged since
//     the last repair.
func TestPlanExhaustive(t *testing.T) {
	var all []Policy
	for n := 1; n <= 7; n++ {
		for r := 1; r <= n; r++ {
			for w := 1; w <= n; w++ {
				all = append(all, pol(n, r, w))
			}
		}
	}
	pairs, quorumPairs := 0, 0
	for _, from := range all {
		for _, to := range all {
			pairs++
			steps := Plan(from, to)
			if from == to {
				if steps != nil {
					t.Fatalf("Plan(%v, %v) = %s; want no steps", from, to, short(steps))
				}
				continue
			}
			if len(steps) == 0 || steps[len(steps)-1].Policy != to {
				t.Fatalf("Plan(%v, %v) = %s; want it to end at the target", from, to, short(steps))
			}
			nChanges := 0
			prev := from
			both := from.Overlapping() && to.Overlapping()
			if both {
				quorumPairs++
			}
			unrepaired := []Policy{from}
			for i, s := range steps {
				p := s.Policy
				fail := func(why string) {
					t.Fatalf("Plan(%v, %v) = %s: step %d (%v): %s", from, to, short(steps), i+1, p, why)
				}
				if !p.Valid() {
					fail("invalid policy")
				}
				if s.RequiresAllApplied != (i < len(steps)-1) {
					fail("RequiresAllApplied must be set on every step but the last")
				}
				if p.N != prev.N {
					nChanges++
					if p.N > prev.N && (i != 0 || !s.RequiresStreaming) {
						fail("N must grow in the first step, with streaming")
					}
					if p.N < prev.N && i != len(steps)-1 {
						fail("N must shrink in the last step")
					}
				} else if s.RequiresStreaming {
					fail("streaming without a change of N")
				}
				if both {
					if !p.Overlapping() {
						fail("R+W ≤ N between two overlapping policies")
					}
					grow := p.N > prev.N
					if !meets(p, prev, grow) || !meets(prev, p, false) {
						fail(fmt.Sprintf("reads and writes under %v and %v need not meet", prev, p))
					}
					if !s.RequiresRepair {
						for _, old := range unrepaired {
							if !meets(p, old, true) {
								fail(fmt.Sprintf("misses writes acknowledged under %v without a repair", old))
							}
						}
					}
				}
				if s.RequiresRepair {
					unrepaired = unrepaired[:0]
				}
				unrepaired = append(unrepaired, p)
				prev = p
			}
			if (from.N != to.N) != (nChanges == 1) || nChanges > 1 {
				t.Fatalf("Plan(%v, %v) = %s: N changes %d times", from, to, short(steps), nChanges)
			}
		}
	}
	t.Logf("checked %d plans, %d between overlapping policies", pairs, quorumPairs)
}

// TestPlanFloorQuorumNeverBreaksOverlap is the property the brief states,
// over every pair of floor-respecting policies with N ≤ 7 and every read
// path: each step of each plan keeps R+W > N.
func TestPlanFloorQuorumNeverBreaksOverlap(t *testing.T) {
	g := Goal{Floor: FloorQuorum, MinRF: 1, MaxRF: 7}
	var ps []Policy
	for n := 1; n <= 7; n++ {
		for r := 1; r <= n; r++ {
			for w := 1; w <= n; w++ {
				for _, rp := range []ReadPath{ReadAll, ReadNearest, ReadHedged} {
					if p := (Policy{N: n, R: r, W: w, Read: rp}); g.Allows(p, 0) {
						ps = append(ps, p)
					}
				}
			}
		}
	}
	for _, from := range ps {
		for _, to := range ps {
			for _, s := range Plan(from, to) {
				if !s.Policy.Overlapping() {
					t.Fatalf("Plan(%v, %v) has step %v with R+W ≤ N", from, to, s.Policy)
				}
			}
		}
	}
}

func TestPlanNotes(t *testing.T) {
	steps := Plan(pol(3, 2, 2), pol(5, 3, 3))
	if !strings.Contains(steps[0].Note, "grow N 3→5") || !strings.Contains(steps[0].Note, "every live node") {
		t.Errorf("grow step note = %q; want it to name the growth and the wait", steps[0].Note)
	}
	steps = Plan(pol(3, 2, 2), pol(3, 1, 3))
	if !strings.Contains(steps[0].Note, "joint step") || !strings.Contains(steps[1].Note, "repair") {
		t.Errorf("notes = %q, %q; want a joint step and a repair", steps[0].Note, steps[1].Note)
	}
}

// The first CI failure of the forced-change Jepsen test: R=3 W=1, then
// R=3 W=3, then R=2 W=3. The last move lowers R from a configuration whose
// own writes it meets, but writes made under W=1 two moves ago may still sit
// on one replica, so it needs a repair pass.
func TestPlanAfterRemembersWeakerWrites(t *testing.T) {
	s := NewState(pol(3, 3, 1))
	s = s.Applied(Plan(s.Policy, pol(3, 3, 3)))
	if len(s.Unrepaired) != 1 || s.Unrepaired[0] != pol(3, 3, 1) {
		t.Fatalf("after R=3 W=1 → R=3 W=3, unrepaired = %v; want the W=1 configuration", s.Unrepaired)
	}
	if got := short(PlanAfter(s.Unrepaired, s.Policy, pol(3, 2, 3))); got != "3/2/3[r]" {
		t.Errorf("PlanAfter(…, 3/3/3, 3/2/3) = %q; want 3/2/3[r]", got)
	}
	if got := short(Plan(s.Policy, pol(3, 2, 3))); got != "3/2/3" {
		t.Errorf("without the history the same move = %q; want no repair", got)
	}
	if !PlanAfter(s.Unrepaired, s.Policy, pol(3, 2, 3))[0].RepairFirst(s.Policy) {
		t.Error("lowering R must repair before the step is committed")
	}
	s = s.Applied(PlanAfter(s.Unrepaired, s.Policy, pol(3, 2, 3)))
	if len(s.Unrepaired) != 0 {
		t.Errorf("after a repaired move to a configuration as strong in W, unrepaired = %v; want none", s.Unrepaired)
	}
}

// TestPlanAfterRandomWalks follows random walks over overlapping policies,
// carrying the state from plan to plan as the caller does (State.Applied),
// and checks that a step not flagged RequiresRepair meets every write
// acknowledged since the last repair pass, whichever earlier plan made it.
func TestPlanAfterRandomWalks(t *testing.T) {
	var overlapping []Policy
	for n := 1; n <= 5; n++ {
		for r := 1; r <= n; r++ {
			for w := 1; w <= n; w++ {
				if p := pol(n, r, w); p.Overlapping() {
					overlapping = append(overlapping, p)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	repairs := 0
	for walk := 0; walk < 2000; walk++ {
		s := NewState(overlapping[rng.IntN(len(overlapping))])
		written := []Policy{s.Policy} // every configuration since the last repair, unpruned
		for move := 0; move < 8; move++ {
			to := overlapping[rng.IntN(len(overlapping))]
			plan := PlanAfter(s.Unrepaired, s.Policy, to)
			prev := s.Policy
			for i, st := range plan {
				if st.RequiresRepair && st.RepairFirst(prev) {
					written = []Policy{prev}
					repairs++
				}
				if !st.RequiresRepair {
					for _, old := range written {
						if !meets(st.Policy, old, true) {
							t.Fatalf("walk %d: PlanAfter(%v, %v, %v) step %d (%v) misses writes made under %v without a repair",
								walk, s.Unrepaired, s.Policy, to, i+1, st.Policy, old)
						}
					}
				}
				written = append(written, st.Policy)
				if st.RequiresRepair && !st.RepairFirst(prev) {
					written = []Policy{st.Policy}
					repairs++
				}
				prev = st.Policy
			}
			s = s.Applied(plan)
			if s.Policy != to {
				t.Fatalf("walk %d: state after the plan is at %v; want %v", walk, s.Policy, to)
			}
		}
	}
	t.Logf("2000 walks of 8 moves, %d repair passes", repairs)
}

package checker

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

const (
	ok   = history.OK
	fail = history.Fail
	info = history.Info
)

// addOp adds a set add of element e over [call, ret].
func (b *hb) addEl(p int, e int64, call, ret int64, typ history.Type) {
	b.add(p, history.FAdd, "e"+itoa(e), history.Int(e), call, ret, typ, nil, uint64(e))
}

// readAll adds the final read-all returning elems.
func (b *hb) readAll(call, ret int64, elems ...int64) {
	b.ops = append(b.ops,
		history.Op{Process: 99, Type: history.Invoke, F: history.FReadAll, Time: call * msNs, Phase: history.PhaseFinal},
		history.Op{Process: 99, Type: history.OK, F: history.FReadAll, Time: ret * msNs, Values: elems, Phase: history.PhaseFinal})
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestSet(t *testing.T) {
	tests := []struct {
		name                            string
		build                           func(b *hb)
		want                            Validity
		lost, recovered, unexpected, sm int
	}{
		{"all found", func(b *hb) {
			b.addEl(0, 1, 0, 10, ok)
			b.addEl(1, 2, 0, 10, ok)
			b.readAll(100, 110, 1, 2)
		}, Valid, 0, 0, 0, 0},
		{"acknowledged add lost", func(b *hb) {
			b.addEl(0, 1, 0, 10, ok)
			b.addEl(1, 2, 0, 10, ok)
			b.readAll(100, 110, 1)
		}, Invalid, 1, 0, 0, 0},
		{"info add found is recovered, info add missing is fine", func(b *hb) {
			b.addEl(0, 1, 0, 10, info)
			b.addEl(1, 2, 0, 10, info)
			b.readAll(100, 110, 1)
		}, Valid, 0, 1, 0, 0},
		{"failed add present is unexpected", func(b *hb) {
			b.addEl(0, 1, 0, 10, fail)
			b.readAll(100, 110, 1)
		}, Invalid, 0, 0, 1, 0},
		{"element never added is unexpected", func(b *hb) {
			b.addEl(0, 1, 0, 10, ok)
			b.readAll(100, 110, 1, 42)
		}, Invalid, 0, 0, 1, 0},
		{"scan missed an element its own read found", func(b *hb) {
			b.addEl(0, 1, 0, 10, ok)
			b.readAll(100, 110)
			b.r(5, "e1", 1, 120, 130, 1, phase(history.PhaseFinal))
		}, Invalid, 0, 0, 0, 1},
		{"final read of the key confirms the loss", func(b *hb) {
			b.addEl(0, 1, 0, 10, ok)
			b.readAll(100, 110)
			b.r(5, "e1", 0, 120, 130, 0, phase(history.PhaseFinal))
		}, Invalid, 1, 0, 0, 0},
		{"no final read", func(b *hb) {
			b.addEl(0, 1, 0, 10, ok)
		}, Unknown, 0, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b hb
			tc.build(&b)
			res := Set(b.build())
			if res.Valid != tc.want {
				t.Fatalf("valid = %v, want %v: %s", res.Valid, tc.want, res.Summary)
			}
			st := res.Stats.(SetStats)
			if st.LostCount != tc.lost || st.RecoveredCount != tc.recovered || st.UnexpectedCount != tc.unexpected || st.ScanMissedCount != tc.sm {
				t.Errorf("stats %+v; want lost %d recovered %d unexpected %d scan-missed %d", st, tc.lost, tc.recovered, tc.unexpected, tc.sm)
			}
		})
	}
}

func TestSession(t *testing.T) {
	tests := []struct {
		name      string
		build     func(b *hb)
		ryw, mono int
	}{
		{"reads see own writes", func(b *hb) {
			b.w(0, "s0", 1, 0, 10, ok, 1)
			b.r(0, "s0", 1, 20, 30, 1)
			b.w(0, "s0", 2, 40, 50, ok, 2)
			b.r(0, "s0", 2, 60, 70, 2)
		}, 0, 0},
		{"read misses own acknowledged write", func(b *hb) {
			b.w(0, "s0", 1, 0, 10, ok, 1)
			b.w(0, "s0", 2, 20, 30, ok, 2)
			b.r(0, "s0", 1, 40, 50, 1)
		}, 1, 0},
		{"read of nothing after own write", func(b *hb) {
			b.w(0, "s0", 1, 0, 10, ok, 1)
			b.r(0, "s0", 0, 40, 50, 0)
		}, 1, 0},
		{"info write may or may not be seen, but reads must not go back", func(b *hb) {
			b.w(0, "s0", 1, 0, 10, ok, 1)
			b.w(0, "s0", 2, 20, 30, info, 0)
			b.r(0, "s0", 2, 40, 50, 2)
			b.r(0, "s0", 1, 60, 70, 1)
		}, 0, 1},
		{"info write not seen is fine", func(b *hb) {
			b.w(0, "s0", 1, 0, 10, ok, 1)
			b.w(0, "s0", 2, 20, 30, info, 0)
			b.r(0, "s0", 1, 40, 50, 1)
		}, 0, 0},
		{"other clients' reads of the key are not sessions", func(b *hb) {
			b.w(0, "s0", 1, 0, 10, ok, 1)
			b.r(1, "s0", 0, 40, 50, 0)
		}, 0, 0},
		{"a session persists across process numbers", func(b *hb) {
			b.w(0, "s0", 1, 0, 10, ok, 1, client(0))
			b.w(0, "s0", 2, 20, 30, info, 0, client(0))
			b.r(10, "s0", 0, 40, 50, 0, client(0))
		}, 1, 0},
		{"keys written by two clients are skipped", func(b *hb) {
			b.w(0, "s0", 1, 0, 10, ok, 1)
			b.w(1, "s0", 2, 20, 30, ok, 2)
			b.r(0, "s0", 0, 40, 50, 0)
		}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b hb
			tc.build(&b)
			res := Session(b.build())
			st := res.Stats.(SessionStats)
			if st.ReadYourWrites != tc.ryw || st.MonotonicReads != tc.mono {
				t.Fatalf("stats %+v, want ryw %d mono %d: %+v", st, tc.ryw, tc.mono, res.Anomalies)
			}
			want := Valid
			if tc.ryw+tc.mono > 0 {
				want = Invalid
			}
			if res.Valid != want {
				t.Errorf("valid = %v, want %v", res.Valid, want)
			}
		})
	}
}

// A write the client makes right after reading the key through the same
// coordinator must get a version above the one read, or last writer wins
// drops it (the hybrid clock's promise; a coordinator whose clock the read
// did not advance broke it under the clock nemesis).
func TestSessionReadThenWrite(t *testing.T) {
	tests := []struct {
		name                     string
		build                    func(b *hb)
		checked, lost, other, ob int
	}{
		{"write above the version read", func(b *hb) {
			b.w(0, "s0", 1, 0, 10, ok, 100, via("n1"))
			b.r(0, "s0", 1, 20, 30, 100, via("n2"))
			b.w(0, "s0", 2, 40, 50, ok, 101, via("n2"))
		}, 1, 0, 0, 0},
		{"write below the version read through the same node is lost", func(b *hb) {
			b.w(0, "s0", 1, 0, 10, ok, 100, via("n1"))
			b.r(0, "s0", 1, 20, 30, 100, via("n2"))
			b.w(0, "s0", 2, 40, 50, ok, 60, via("n2"))
		}, 1, 1, 0, 0},
		{"equal version is lost too", func(b *hb) {
			b.r(0, "s0", 1, 20, 30, 100, via("n2"))
			b.w(0, "s0", 2, 40, 50, ok, 100, via("n2"))
		}, 1, 1, 0, 0},
		{"read and write through two nodes are counted, not judged", func(b *hb) {
			b.r(0, "s0", 1, 20, 30, 100, via("n2"))
			b.w(0, "s0", 2, 40, 50, ok, 60, via("n3"))
		}, 0, 0, 1, 1},
		{"an unacknowledged write is not judged", func(b *hb) {
			b.r(0, "s0", 1, 20, 30, 100, via("n2"))
			b.w(0, "s0", 2, 40, 50, info, 0, via("n2"))
		}, 0, 0, 0, 0},
		{"a read that found nothing orders nothing", func(b *hb) {
			b.r(0, "s0", 0, 20, 30, 0, via("n2"))
			b.w(0, "s0", 2, 40, 50, ok, 60, via("n2"))
		}, 0, 0, 0, 0},
		{"only the operation right before the write counts", func(b *hb) {
			b.r(0, "s0", 1, 0, 10, 100, via("n2"))
			b.w(0, "s0", 2, 20, 30, ok, 101, via("n2"))
			b.w(0, "s0", 3, 40, 50, ok, 102, via("n2"))
		}, 1, 0, 0, 0},
		{"another client's pairs on its own key", func(b *hb) {
			b.r(1, "s1", 1, 20, 30, 100, via("n2"))
			b.w(1, "s1", 2, 40, 50, ok, 99, via("n2"))
		}, 1, 1, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b hb
			tc.build(&b)
			res := Session(b.build())
			st := res.Stats.(SessionStats)
			if st.ReadThenWrites != tc.checked || st.LostWrites != tc.lost || st.OtherNode != tc.other || st.OtherNodeBelow != tc.ob {
				t.Fatalf("stats %+v; want checked %d lost %d other-node %d (below %d)", st, tc.checked, tc.lost, tc.other, tc.ob)
			}
			want := Valid
			if tc.lost > 0 {
				want = Invalid
			}
			if res.Valid != want {
				t.Fatalf("valid = %v, want %v: %s", res.Valid, want, res.Summary)
			}
			if tc.lost > 0 {
				a := res.Anomalies[0]
				if a.Type != "lost-read-then-write" || len(a.Ops) != 2 || !strings.Contains(a.Description, "not above") {
					t.Errorf("anomaly %+v", a)
				}
				t.Log(a.Description)
			}
		})
	}
}

func TestStaleness(t *testing.T) {
	one, quorum := level("one", 1, 3), level("quorum", 2, 3)
	tests := []struct {
		name       string
		build      func(b *hb)
		level      string
		reads      int
		stale      int
		versions   float64 // mean versions behind
		ageMs      float64 // mean age
		violations int
		during     int // stale reads during faults
	}{
		{"fresh read", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1, one)
			b.r(1, "x", 1, 20, 30, 1, one)
		}, "one", 1, 0, 0, 0, 0, 0},
		{"read of nothing after an acknowledged write", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1, one)
			b.r(1, "x", 0, 25, 30, 0, one)
		}, "one", 1, 1, 1, 15, 0, 0},
		{"concurrent write does not count", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1, one)
			b.w(0, "x", 2, 15, 40, ok, 2, one)
			b.r(1, "x", 1, 20, 30, 1, one)
		}, "one", 1, 0, 0, 0, 0, 0},
		{"two versions behind, age from the first missed", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1, one)
			b.w(0, "x", 2, 20, 30, ok, 2, one)
			b.w(0, "x", 3, 40, 50, ok, 3, one)
			b.r(1, "x", 1, 60, 70, 1, one)
		}, "one", 1, 1, 2, 30, 0, 0},
		{"info writes do not count", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1, one)
			b.w(0, "x", 2, 20, 30, info, 0, one)
			b.r(1, "x", 1, 60, 70, 1, one)
		}, "one", 1, 0, 0, 0, 0, 0},
		{"version order, not real time: the higher version wins", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 5, one)
			b.w(0, "x", 2, 20, 30, ok, 3, one)
			b.r(1, "x", 1, 60, 70, 5, one)
		}, "one", 1, 0, 0, 0, 0, 0},
		{"stale quorum read of a quorum write breaks R+W>N", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1, quorum)
			b.r(1, "x", 0, 20, 30, 0, quorum)
		}, "quorum", 1, 1, 1, 10, 1, 0},
		{"stale quorum read of a write at one does not", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1, one)
			b.r(1, "x", 0, 20, 30, 0, quorum)
		}, "quorum", 1, 1, 1, 10, 0, 0},
		{"stale read during a fault", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1, one)
			b.fault("partition", 15, 50)
			b.r(1, "x", 0, 20, 30, 0, one)
			b.r(1, "x", 1, 60, 70, 1, one)
		}, "one", 2, 1, 1, 10, 0, 1},
		{"final reads are not measured", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1, one)
			b.r(1, "x", 0, 20, 30, 0, one, phase(history.PhaseFinal))
		}, "", 0, 0, 0, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b hb
			tc.build(&b)
			res := Staleness(b.build())
			st := res.Stats.(StaleStats)
			if tc.level == "" {
				if len(st.Levels) != 0 {
					t.Fatalf("levels %+v, want none", st.Levels)
				}
				return
			}
			if len(st.Levels) != 1 {
				t.Fatalf("levels %+v", st.Levels)
			}
			l := st.Levels[0]
			if l.Level != tc.level || l.Reads != tc.reads || l.Stale != tc.stale || l.Versions.Mean != tc.versions || l.AgeMs.Mean != tc.ageMs || l.DuringFaults.Stale != tc.during {
				t.Errorf("got %+v", l)
			}
			if st.Violations != tc.violations {
				t.Errorf("violations = %d, want %d", st.Violations, tc.violations)
			}
			if (tc.violations > 0) != (res.Valid == Invalid) {
				t.Errorf("valid = %v with %d violations", res.Valid, tc.violations)
			}
		})
	}
}

// probe adds the replica-local reads of a key.
func (b *hb) probe(key string, at int64, reps ...history.Op) {
	for _, r := range reps {
		r.Process, r.F, r.Key, r.Time = history.ProbeProcess, history.FReplicaRead, key, at*msNs
		if r.Type == "" {
			r.Type = ok
		}
		b.ops = append(b.ops, r)
	}
}

func rep(node string, v int64, ver uint64) history.Op {
	op := history.Op{Node: node}
	if v != 0 {
		op.Value, op.Version = history.Int(v), &history.Version{Timestamp: ver}
	}
	return op
}

func TestConvergence(t *testing.T) {
	tests := []struct {
		name                 string
		build                func(b *hb)
		want                 Validity
		divergent, wrongWins int
	}{
		{"converged on the last write", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1)
			b.w(0, "x", 2, 20, 30, ok, 2)
			b.probe("x", 100, rep("n1", 2, 2), rep("n2", 2, 2), rep("n3", 2, 2))
		}, Valid, 0, 0},
		{"replicas disagree", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1)
			b.w(0, "x", 2, 20, 30, ok, 2)
			b.probe("x", 100, rep("n1", 2, 2), rep("n2", 1, 1), rep("n3", 2, 2))
		}, Invalid, 1, 0},
		{"agreed on an older value than acknowledged", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1)
			b.w(0, "x", 2, 20, 30, ok, 2)
			b.probe("x", 100, rep("n1", 1, 1), rep("n2", 1, 1), rep("n3", 1, 1))
		}, Invalid, 0, 1},
		{"an info write with a higher version may win", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1)
			b.w(0, "x", 2, 20, 30, info, 0)
			b.probe("x", 100, rep("n1", 2, 7), rep("n2", 2, 7), rep("n3", 2, 7))
		}, Valid, 0, 0},
		{"nothing stored though acknowledged", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1)
			b.probe("x", 100, rep("n1", 0, 0), rep("n2", 0, 0), rep("n3", 0, 0))
		}, Invalid, 0, 1},
		{"nothing stored, only an info write", func(b *hb) {
			b.w(0, "x", 1, 0, 10, info, 0)
			b.probe("x", 100, rep("n1", 0, 0), rep("n2", 0, 0), rep("n3", 0, 0))
		}, Valid, 0, 0},
		{"a failed write's value stored", func(b *hb) {
			b.w(0, "x", 1, 0, 10, fail, 0)
			b.probe("x", 100, rep("n1", 1, 1), rep("n2", 1, 1), rep("n3", 1, 1))
		}, Invalid, 0, 1},
		{"an unreadable replica leaves it unknown", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1)
			bad := rep("n3", 0, 0)
			bad.Type = fail
			b.probe("x", 100, rep("n1", 1, 1), rep("n2", 1, 1), bad)
		}, Unknown, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b hb
			tc.build(&b)
			res := Convergence(b.build())
			st := res.Stats.(ConvergenceStats)
			if res.Valid != tc.want || st.Divergent != tc.divergent || st.WrongWinner != tc.wrongWins {
				t.Fatalf("valid %v stats %+v, want %v divergent %d wrong %d: %+v", res.Valid, st, tc.want, tc.divergent, tc.wrongWins, res.Anomalies)
			}
		})
	}
}

func TestNoPhantom(t *testing.T) {
	tests := []struct {
		name                       string
		build                      func(b *hb)
		phantom, failed, mismatchs int
	}{
		{"read of a written value", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1)
			b.r(1, "x", 1, 20, 30, 1)
		}, 0, 0, 0},
		{"read of a value written to another key", func(b *hb) {
			b.w(0, "y", 1, 0, 10, ok, 1)
			b.r(1, "x", 1, 20, 30, 1)
		}, 1, 0, 0},
		{"read of an info write", func(b *hb) {
			b.w(0, "x", 1, 0, 10, info, 0)
			b.r(1, "x", 1, 20, 30, 9)
		}, 0, 0, 0},
		{"read of a failed write", func(b *hb) {
			b.w(0, "x", 1, 0, 10, fail, 0)
			b.r(1, "x", 1, 20, 30, 1)
		}, 0, 1, 0},
		{"version differs from the write's receipt", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1)
			b.r(1, "x", 1, 20, 30, 2)
		}, 0, 0, 1},
		{"garbage value", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1)
			b.r(1, "x", 1, 20, 30, 1)
			b.ops[len(b.ops)-1].Raw = "zzz"
		}, 1, 0, 0},
		{"replica holding a value no one wrote", func(b *hb) {
			b.w(0, "x", 1, 0, 10, ok, 1)
			b.probe("x", 100, rep("n1", 5, 1))
		}, 1, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b hb
			tc.build(&b)
			res := NoPhantom(b.build())
			st := res.Stats.(PhantomStats)
			if st.Phantom != tc.phantom || st.FailedVisible != tc.failed || st.VersionMismatch != tc.mismatchs {
				t.Fatalf("stats %+v: %+v", st, res.Anomalies)
			}
		})
	}
}

func TestValidityJSON(t *testing.T) {
	for _, v := range []Validity{Valid, Invalid, Unknown} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var back Validity
		if err := json.Unmarshal(b, &back); err != nil || back != v {
			t.Errorf("%v -> %s -> %v, %v", v, b, back, err)
		}
	}
	if Merge(Valid, Unknown) != Unknown || Merge(Unknown, Invalid) != Invalid || Merge() != Valid {
		t.Error("Merge")
	}
}

func TestPerf(t *testing.T) {
	var b hb
	b.w(0, "x", 1, 0, 10, ok, 1)
	b.fault("kill", 15, 50)
	b.w(0, "x", 2, 20, 30, info, 0)
	b.r(1, "x", 1, 60, 70, 1)
	res := Perf(b.build())
	st := res.Stats.(PerfStats)
	if st.Ops != 3 || st.OK != 2 || st.Info != 1 || st.AvailabilityDuringFaults != 0 || st.AvailabilityQuiet != 1 {
		t.Fatalf("%+v", st)
	}
}

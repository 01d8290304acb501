package checker

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

func TestLinearizableTiny(t *testing.T) {
	I, F, O := history.Info, history.Fail, history.OK
	tests := []struct {
		name  string
		build func(b *hb)
		want  Validity
		// culprit is the expected offending operation: its process.
		culprit int
	}{
		{"empty", func(b *hb) {}, Valid, 0},
		{"write then read", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.r(1, "x", 1, 20, 30, 1)
		}, Valid, 0},
		{"read of nothing before any write", func(b *hb) {
			b.r(1, "x", 0, 0, 5, 0)
			b.w(0, "x", 1, 10, 20, O, 1)
		}, Valid, 0},
		{"stale read after completed write", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.w(0, "x", 2, 20, 30, O, 2)
			b.r(1, "x", 1, 40, 50, 1)
		}, Invalid, 1},
		{"read concurrent with write may see either", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.w(0, "x", 2, 20, 60, O, 2)
			b.r(1, "x", 1, 30, 40, 1)
			b.r(2, "x", 2, 35, 45, 2)
		}, Valid, 0},
		{"new-old inversion between concurrent reads", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.w(0, "x", 2, 20, 100, O, 2)
			b.r(1, "x", 2, 30, 40, 2)
			b.r(2, "x", 1, 50, 60, 1) // began after a read saw 2
		}, Invalid, 2},
		{"info write may take effect late", func(b *hb) {
			b.w(0, "x", 1, 0, 10, I, 0)
			b.r(1, "x", 0, 20, 30, 0)
			b.r(1, "x", 1, 1000, 1010, 1)
		}, Valid, 0},
		{"info write never completing may never take effect", func(b *hb) {
			b.w(0, "x", 1, 0, -1, I, 0) // no completion at all
			b.r(1, "x", 0, 20, 30, 0)
		}, Valid, 0},
		{"info write seen then unseen", func(b *hb) {
			b.w(0, "x", 1, 0, 10, I, 0)
			b.r(1, "x", 1, 20, 30, 1)
			b.r(1, "x", 0, 40, 50, 0)
		}, Invalid, 1},
		{"failed write is left out: its value is a phantom", func(b *hb) {
			b.w(0, "x", 1, 0, 10, F, 0)
			b.r(1, "x", 1, 20, 30, 1)
		}, Invalid, 1},
		{"failed write not seen", func(b *hb) {
			b.w(0, "x", 1, 0, 10, F, 0)
			b.r(1, "x", 0, 20, 30, 0)
		}, Valid, 0},
		{"lost update: completed write overwritten by an older one", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 5) // skewed clock: higher version
			b.w(1, "x", 2, 20, 30, O, 3)
			b.r(2, "x", 1, 40, 50, 5)
		}, Invalid, 2},
		{"keys are independent", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.w(1, "y", 2, 0, 10, O, 1)
			b.r(2, "x", 1, 20, 30, 1)
			b.r(3, "y", 2, 20, 30, 1)
		}, Valid, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b hb
			tc.build(&b)
			ops := b.build()
			res := Linearizable(context.Background(), ops, LinearOptions{Timeout: 10 * time.Second})
			if res.Valid != tc.want {
				t.Fatalf("valid = %v, want %v: %s", res.Valid, tc.want, res.Summary)
			}
			if tc.want == Invalid {
				if res.Count != 1 || len(res.Anomalies[0].Ops) == 0 {
					t.Fatalf("anomalies = %+v", res.Anomalies)
				}
				culprit := ops[res.Anomalies[0].Ops[0]]
				if culprit.Process != tc.culprit || culprit.F != history.FRead {
					t.Errorf("offending op = %+v, want a read by p%d; %s", culprit, tc.culprit, res.Anomalies[0].Description)
				}
				t.Log(res.Anomalies[0].Description)
			}
		})
	}
}

func TestLinearizableNamesOnlyBadKeysAndVisualizes(t *testing.T) {
	var b hb
	b.w(0, "good", 1, 0, 10, history.OK, 1)
	b.r(1, "good", 1, 20, 30, 1)
	b.w(2, "bad", 7, 0, 10, history.OK, 1)
	b.r(3, "bad", 0, 20, 30, 0)
	b.fault("partition", 5, 25)
	path := filepath.Join(t.TempDir(), "linear.html")
	res := Linearizable(context.Background(), b.build(), LinearOptions{Visualize: path, Annotations: Annotations(b.build())})
	st := res.Stats.(LinearStats)
	if res.Valid != Invalid || len(st.Illegal) != 1 || st.Illegal[0] != "bad" {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(res.Anomalies[0].Description, "read(bad)") {
		t.Errorf("description does not name the read: %s", res.Anomalies[0].Description)
	}
	html, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), "partition") {
		t.Error("visualization lacks the fault annotation")
	}
}

// simulate generates a linearizable register history: procs processes run
// operations back to back on keys; each takes effect at a random point
// inside its interval, and reads return what the register held then. A
// fraction of writes end as info (never returning), some of which take
// effect and some not.
func simulate(seed uint64, procs, nops, keys int) []history.Op {
	rng := rand.New(rand.NewPCG(seed, 1))
	type ev struct {
		proc      int
		key       string
		write     bool
		val       int64
		call, lin int64
		ret       int64
		info      bool
		applied   bool
	}
	var evs []*ev
	next := make([]int64, procs)
	pid := make([]int, procs)
	for i := range pid {
		pid[i] = i
	}
	val := int64(0)
	for range nops {
		p := rng.IntN(procs)
		e := &ev{proc: pid[p], key: "k" + string(rune('a'+rng.IntN(keys))), call: next[p]}
		e.lin = e.call + 1 + rng.Int64N(20)
		e.ret = e.lin + 1 + rng.Int64N(20)
		if rng.IntN(2) == 0 {
			val++
			e.write, e.val = true, val
			if rng.IntN(20) == 0 {
				e.info = true
				e.applied = rng.IntN(2) == 0
				pid[p] += procs
			}
		}
		next[p] = e.ret + 1 + rng.Int64N(5)
		evs = append(evs, e)
	}
	byLin := append([]*ev(nil), evs...)
	sort.Slice(byLin, func(i, j int) bool { return byLin[i].lin < byLin[j].lin })
	state := map[string]int64{}
	for _, e := range byLin {
		if e.write {
			if !e.info || e.applied {
				state[e.key] = e.val
			}
		} else {
			e.val = state[e.key]
		}
	}
	var ops []history.Op
	for _, e := range evs {
		inv := history.Op{Process: e.proc, Type: history.Invoke, F: history.FRead, Key: e.key, Time: e.call * 1000}
		comp := history.Op{Process: e.proc, Type: history.OK, F: history.FRead, Key: e.key, Time: e.ret * 1000}
		if e.write {
			inv.F, comp.F = history.FWrite, history.FWrite
			inv.Value, comp.Value = history.Int(e.val), history.Int(e.val)
			if e.info {
				comp.Type = history.Info
			}
		} else if e.val != 0 {
			comp.Value = history.Int(e.val)
		}
		ops = append(ops, inv, comp)
	}
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Time < ops[j].Time })
	for i := range ops {
		ops[i].Index = i
	}
	return ops
}

// TestPorcupineSpeed measures the check of a few thousand operations, the
// size of a one-minute run, and checks that a single stale read planted in
// it is found and named.
func TestPorcupineSpeed(t *testing.T) {
	const nops = 5000
	ops := simulate(1, 10, nops, 16)
	start := time.Now()
	res := Linearizable(context.Background(), ops, LinearOptions{Timeout: time.Minute})
	took := time.Since(start)
	if res.Valid != Valid {
		t.Fatalf("simulated linearizable history judged %v: %s", res.Valid, res.Summary)
	}
	t.Logf("porcupine: %d operations on 16 keys, 10 processes: %v", nops, took)
	if took > 60*time.Second {
		t.Errorf("check took %v", took)
	}

	// Plant a stale read: a read returning the value of a write w0 although
	// a later write w1 (invoked after w0 completed) completed before the
	// read began.
	bad := append([]history.Op(nil), ops...)
	invokeOf := map[int]history.Op{} // completion index -> invocation
	open := map[int]history.Op{}
	for i, op := range bad {
		if op.Type == history.Invoke {
			open[op.Process] = op
		} else {
			invokeOf[i] = open[op.Process]
		}
	}
	planted := -1
	for i := len(bad) / 2; i < len(bad) && planted < 0; i++ {
		c := bad[i]
		if c.Type != history.OK || c.F != history.FRead {
			continue
		}
		begin := invokeOf[i].Time
		var done []int // ok writes of the key completed before the read began
		for j := 0; j < i; j++ {
			if w := bad[j]; w.F == history.FWrite && w.Type == history.OK && w.Key == c.Key && w.Time < begin {
				done = append(done, j)
			}
		}
		for _, j0 := range done {
			for _, j1 := range done {
				if bad[j0].Time < invokeOf[j1].Time && planted < 0 {
					bad[i].Value = history.Int(*bad[j0].Value)
					planted = i
				}
			}
		}
	}
	if planted < 0 {
		t.Fatal("no read to plant a stale value in")
	}
	start = time.Now()
	res = Linearizable(context.Background(), bad, LinearOptions{Timeout: time.Minute})
	t.Logf("porcupine with a planted stale read: %v, %s", time.Since(start), res.Summary)
	if res.Valid != Invalid {
		t.Fatalf("planted stale read not found: %s", res.Summary)
	}
	found := false
	for _, a := range res.Anomalies {
		for _, idx := range a.Ops {
			if bad[idx].Process == bad[planted].Process && bad[idx].Key == bad[planted].Key {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("anomaly does not name the planted read (process %d key %s): %+v", bad[planted].Process, bad[planted].Key, res.Anomalies)
	}
}

func BenchmarkPorcupine5000(b *testing.B) {
	ops := simulate(2, 10, 5000, 16)
	pops := RegisterOperations(ops)
	for b.Loop() {
		if porcupine.CheckOperations(RegisterModel, pops) != true {
			b.Fatal("not linearizable")
		}
	}
}

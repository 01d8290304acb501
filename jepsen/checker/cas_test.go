package checker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

// cas adds a compare-and-set of key from `from` (0: absent) to v by
// process p over [call, ret]. typ OK: it applied; Fail with notApplied:
// the condition failed and the store reported current (0: absent); Fail
// without: nothing written (contended); Info: unknown.
func (b *hb) cas(p int, key string, from, v int64, call, ret int64, typ history.Type, notApplied bool, current int64) {
	inv := history.Op{Process: p, Client: p, Type: history.Invoke, F: history.FCas, Key: key, From: history.Int(from), Value: history.Int(v),
		Time: call * msNs, Level: "linearizable", Phase: history.PhaseFaults}
	comp := inv
	comp.Type, comp.Time = typ, ret*msNs
	switch {
	case typ == history.OK:
		comp.Version = &history.Version{Timestamp: uint64(v)}
	case notApplied:
		comp.NotApplied, comp.Value = true, nil
		if current != 0 {
			comp.Value = history.Int(current)
		}
	default:
		comp.Error = "boom"
	}
	b.ops = append(b.ops, inv)
	if ret >= 0 {
		b.ops = append(b.ops, comp)
	}
}

func TestLinearizableCas(t *testing.T) {
	I, F, O := history.Info, history.Fail, history.OK
	tests := []struct {
		name  string
		build func(b *hb)
		want  Validity
		// culprit is the process of the operation at which the history
		// stops being linearizable.
		culprit int
	}{
		{"cas from absent applies", func(b *hb) {
			b.cas(0, "x", 0, 1, 0, 10, O, false, 0)
			b.r(1, "x", 1, 20, 30, 1)
		}, Valid, 0},
		{"cas from the current value applies", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.cas(1, "x", 1, 2, 20, 30, O, false, 0)
			b.r(2, "x", 2, 40, 50, 2)
		}, Valid, 0},
		{"cas from a value the register no longer holds cannot apply", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.w(0, "x", 2, 20, 30, O, 2)
			b.cas(1, "x", 1, 3, 40, 50, O, false, 0)
		}, Invalid, 1},
		{"two cas from the same value cannot both apply", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.cas(1, "x", 1, 2, 20, 40, O, false, 0)
			b.cas(2, "x", 1, 3, 20, 50, O, false, 0)
		}, Invalid, 2},
		{"not applied, reporting the current value", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.cas(1, "x", 5, 2, 20, 30, F, true, 1)
			b.r(2, "x", 1, 40, 50, 1)
		}, Valid, 0},
		{"not applied although the condition held", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.cas(1, "x", 1, 2, 20, 30, F, true, 1)
		}, Invalid, 1},
		{"not applied reporting a stale current value", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.w(0, "x", 2, 20, 30, O, 2)
			b.cas(1, "x", 7, 3, 40, 50, F, true, 1)
		}, Invalid, 1},
		{"not applied reporting absent after a write", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.cas(1, "x", 7, 3, 20, 30, F, true, 0)
		}, Invalid, 1},
		{"not applied concurrent with the write it missed", func(b *hb) {
			b.cas(1, "x", 7, 3, 0, 30, F, true, 0)
			b.w(0, "x", 1, 10, 20, O, 1)
		}, Valid, 0},
		{"contended cas is left out, so its value is a phantom", func(b *hb) {
			b.cas(0, "x", 0, 1, 0, 10, F, false, 0)
			b.r(1, "x", 1, 20, 30, 1)
		}, Invalid, 1},
		{"info cas may apply late", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.cas(1, "x", 1, 2, 20, 30, I, false, 0)
			b.r(2, "x", 1, 40, 50, 1)
			b.r(2, "x", 2, 60, 70, 2)
		}, Valid, 0},
		{"info cas may never apply", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.cas(1, "x", 1, 2, 20, -1, I, false, 0)
			b.r(2, "x", 1, 40, 50, 1)
		}, Valid, 0},
		{"info cas whose condition never held cannot apply", func(b *hb) {
			b.w(0, "x", 1, 0, 10, O, 1)
			b.cas(1, "x", 9, 2, 20, 30, I, false, 0)
			b.r(2, "x", 2, 40, 50, 2)
		}, Invalid, 2},
		{"lost update: a write lost under a cas chain", func(b *hb) {
			b.cas(0, "x", 0, 1, 0, 10, O, false, 0)
			b.w(1, "x", 2, 20, 30, O, 2)
			b.cas(0, "x", 1, 3, 40, 50, O, false, 0) // must have seen 2
		}, Invalid, 0},
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
			if tc.want != Invalid {
				return
			}
			if res.Count != 1 || len(res.Anomalies[0].Ops) == 0 {
				t.Fatalf("anomalies = %+v", res.Anomalies)
			}
			if culprit := ops[res.Anomalies[0].Ops[0]]; culprit.Process != tc.culprit {
				t.Errorf("offending op = %+v, want one by p%d; %s", culprit, tc.culprit, res.Anomalies[0].Description)
			}
			t.Log(res.Anomalies[0].Description)
		})
	}
}

// TestCasInOtherCheckers: a cas's value counts as written (no phantom) and
// a cas that did not apply as a definite failure, whose value read is a
// failed write made visible.
func TestCasInOtherCheckers(t *testing.T) {
	var b hb
	b.cas(0, "x", 0, 1, 0, 10, history.OK, false, 0)
	b.r(1, "x", 1, 20, 30, 1)
	if res := NoPhantom(b.build()); res.Valid != Valid {
		t.Fatalf("applied cas's value reported: %s", res.Summary)
	}
	b.cas(0, "x", 9, 2, 40, 50, history.Fail, true, 1)
	b.r(1, "x", 2, 60, 70, 2)
	res := NoPhantom(b.build())
	if res.Valid != Invalid || !strings.Contains(res.Summary, "1 from failed writes") {
		t.Fatalf("value of a cas that did not apply was not flagged: %s", res.Summary)
	}
}

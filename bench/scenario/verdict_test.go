package scenario

import (
	"testing"
	"time"
)

func TestAgree(t *testing.T) {
	cases := []struct {
		pred, meas float64
		want       bool
	}{
		{0, 0, true},
		{0, 0.0004, true},      // both tiny: 0.04 pp apart
		{0.0006, 0, false},     // 0.06 pp apart and no ratio
		{0.0001, 0.0005, true}, // 5× but only 0.04 pp apart
		{0.01, 0.02, true},     // exactly 2×
		{0.01, 0.021, false},
		{0.02, 0.01, true},
		{0.03, 0.01, false},
		{-1, 0, false}, // no prediction
	}
	for _, c := range cases {
		if got := Agree(c.pred, c.meas); got != c.want {
			t.Errorf("Agree(%v, %v) = %v, want %v", c.pred, c.meas, got, c.want)
		}
	}
}

func TestJudge(t *testing.T) {
	fig := func(readP99 float64, reads, stale uint64) Figures {
		f := Figures{ReadP99Ms: readP99, Reads: reads, Stale: stale}
		if reads > 0 {
			f.StaleRate = float64(stale) / float64(reads)
		}
		return f
	}
	agreeing := Prediction{Decisions: 10, Predicted: 0, Measured: 0, Agree: true}
	cases := []struct {
		name               string
		one, quorum, adapt Figures
		pred               Prediction
		wantPass           bool
		wantLatencyApplies bool
		wantFailed         []string
	}{
		{
			name: "adaptive as fast as one and fresh",
			one:  fig(1.0, 10000, 80), quorum: fig(22, 10000, 0), adapt: fig(1.1, 10000, 0), pred: agreeing,
			wantPass: true, wantLatencyApplies: true,
		},
		{
			name: "adaptive stale",
			one:  fig(1.0, 10000, 80), quorum: fig(22, 10000, 0), adapt: fig(1.0, 10000, 20), pred: agreeing,
			wantLatencyApplies: true, wantFailed: []string{"adaptive stale reads ≤ bound"},
		},
		{
			name: "adaptive as slow as quorum",
			one:  fig(1.0, 10000, 80), quorum: fig(22, 10000, 0), adapt: fig(21, 10000, 0), pred: agreeing,
			wantLatencyApplies: true, wantFailed: []string{"adaptive read p99 ≤ 1.2× one", "adaptive read p99 ≤ 0.5× quorum"},
		},
		{
			name: "slightly slower than one but far below quorum",
			one:  fig(1.0, 10000, 80), quorum: fig(22, 10000, 0), adapt: fig(1.3, 10000, 0), pred: agreeing,
			wantLatencyApplies: true, wantFailed: []string{"adaptive read p99 ≤ 1.2× one"},
		},
		{
			name: "latency criteria do not apply when one is fresh and quorum is fast",
			one:  fig(1.0, 10000, 0), quorum: fig(3, 10000, 0), adapt: fig(3, 10000, 0), pred: agreeing,
			wantPass: true,
		},
		{
			name: "quorum paying cross-zone latency is enough to apply them",
			one:  fig(1.0, 10000, 0), quorum: fig(21, 10000, 0), adapt: fig(21, 10000, 0), pred: agreeing,
			wantLatencyApplies: true, wantFailed: []string{"adaptive read p99 ≤ 1.2× one", "adaptive read p99 ≤ 0.5× quorum"},
		},
		{
			name: "prediction disagrees",
			one:  fig(1.0, 10000, 80), quorum: fig(22, 10000, 0), adapt: fig(1.0, 10000, 0),
			pred:               Prediction{Decisions: 5, Predicted: 0.004, Measured: 0, Agree: false},
			wantLatencyApplies: true, wantFailed: []string{"predicted ≈ measured stale rate"},
		},
		{
			name: "no prediction is not judged",
			one:  fig(1.0, 10000, 80), quorum: fig(22, 10000, 0), adapt: fig(1.0, 10000, 0),
			wantPass: true, wantLatencyApplies: true,
		},
		{
			name: "no adaptive reads fails",
			one:  fig(1.0, 10000, 80), quorum: fig(22, 10000, 0), adapt: fig(0, 0, 0), pred: agreeing,
			wantLatencyApplies: true,
			wantFailed:         []string{"adaptive stale reads ≤ bound", "adaptive read p99 ≤ 1.2× one", "adaptive read p99 ≤ 0.5× quorum"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Judge("p", "steady", c.one, c.quorum, c.adapt, c.pred, 0.001, 20*time.Millisecond)
			if v.Pass != c.wantPass {
				t.Errorf("Pass = %v, want %v: %+v", v.Pass, c.wantPass, v.Checks)
			}
			var failed []string
			for _, ch := range v.Checks {
				if ch.Applies && !ch.Pass {
					failed = append(failed, ch.Name)
				}
				if ch.Name == "adaptive read p99 ≤ 1.2× one" && ch.Applies != c.wantLatencyApplies {
					t.Errorf("latency criteria apply = %v, want %v (%s)", ch.Applies, c.wantLatencyApplies, ch.Detail)
				}
			}
			if len(failed) != len(c.wantFailed) {
				t.Fatalf("failed %q, want %q", failed, c.wantFailed)
			}
			for i := range failed {
				if failed[i] != c.wantFailed[i] {
					t.Fatalf("failed %q, want %q", failed, c.wantFailed)
				}
			}
		})
	}
}

func TestPredictionOver(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	ds := []Decision{
		{At: at(30), To: "R=2 W=2", PredictedStale: 0.5},   // tuner not warm yet
		{At: at(70), To: "R=1 W=3", PredictedStale: 0.002}, // before the span
		{At: at(100), To: "R=1 W=3", PredictedStale: 0.001, TunerStaleRate: 0.002, PredictedReadP99Ms: 1, PredictedWriteP99M: 30},
		{At: at(101), To: "R=1 W=3", PredictedStale: 0.003, PredictedReadP99Ms: 2, PredictedWriteP99M: 30},
		{At: at(102), To: "R=2 W=2", PredictedStale: 0, PredictedReadP99Ms: 21, PredictedWriteP99M: 24, Calibration: 1.5, ReadOffsetMs: 0.3},
		{At: at(103), To: "R=2 W=2", PredictedStale: -1},  // no prediction
		{At: at(200), To: "R=2 W=2", PredictedStale: 0.9}, // after the span
	}
	p := predictionOver(ds, at(80), at(200), t0, 0.0012)
	if p.Decisions != 3 {
		t.Fatalf("Decisions = %d, want 3", p.Decisions)
	}
	if want := (0.001 + 0.003 + 0) / 3; p.Predicted != want {
		t.Fatalf("Predicted = %v, want %v", p.Predicted, want)
	}
	if !p.Agree {
		t.Fatalf("%v and %v should agree", p.Predicted, p.Measured)
	}
	if p.ReadP99Ms != 8 || p.WriteP99Ms != 28 || p.Calibration != 1.5 || p.ReadOffsetMs != 0.3 {
		t.Fatalf("predicted p99s %v/%v ms and calibration ×%v %+v ms; want the means 8/28 ms and the last decision's ×1.5 +0.3 ms", p.ReadP99Ms, p.WriteP99Ms, p.Calibration, p.ReadOffsetMs)
	}
	if len(p.InForce) != 2 || p.InForce[0] != "R=1 W=3" || p.InForce[1] != "R=2 W=2" {
		t.Fatalf("InForce = %q", p.InForce)
	}
	if p := predictionOver(ds, at(0), at(50), t0, 0); p.Decisions != 0 || p.Agree {
		t.Fatalf("decisions in the tuner's first minute were judged: %+v", p)
	}
}

func TestByConfig(t *testing.T) {
	slice := func(start float64, p99 int64, stale bool) Point {
		rec := newRecorderDigits(2)
		rec.recordRead(time.Duration(p99)*time.Millisecond, stale, time.Millisecond)
		rec.addActive(2 * time.Second)
		return Point{Arm: ArmAdaptive, Phase: "p", StartS: start, EndS: start + 2, rec: rec}
	}
	timeline := []Point{
		slice(0, 20, false),                            // before any change: the first decision's From
		slice(4, 20, false),                            // a change at 5 falls inside: left out
		slice(8, 1, false),                             // R=1 W=3
		slice(12, 1, true),                             // R=1 W=3
		{Arm: ArmOne, Phase: "p", StartS: 8, EndS: 10}, // another arm
		slice(20, 21, false),                           // R=2 W=2 again
	}
	ds := []Decision{
		{OffsetS: -1, From: "R=2 W=2", To: "R=2 W=2"},
		{OffsetS: 5, From: "R=2 W=2", To: "R=1 W=3", Changed: true},
		{OffsetS: 16, From: "R=1 W=3", To: "R=2 W=2", Changed: true},
	}
	got := byConfig(timeline, ds, "p")
	if len(got) != 2 {
		t.Fatalf("got %d configurations, want 2: %+v", len(got), got)
	}
	if got[0].Config != "R=2 W=2" || got[0].Slices != 2 || got[0].Reads != 2 {
		t.Errorf("first: %+v", got[0])
	}
	if got[1].Config != "R=1 W=3" || got[1].Slices != 2 || got[1].Stale != 1 || got[1].ReadP99Ms > 1.1 {
		t.Errorf("second: %+v", got[1])
	}
}

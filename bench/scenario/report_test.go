package scenario

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sampleResult is a made-up result with the shape of a real one.
func sampleResult() *Result {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg, _ := Config{Binary: "adaptkv", Out: "x", Seed: 1}.withDefaults()
	res := &Result{
		Command: "adaptkv bench --scenario adaptive --out x", Config: runConfigOf(cfg),
		Machine: Machine{Hostname: "h", OS: "linux", Arch: "amd64", CPUs: 2, GoVersion: "go1.26"},
		Started: t0.Add(-90 * time.Second), Finished: t0.Add(600 * time.Second), T0: t0, Arms: arms(0.001, AdaptiveReadP99Target),
	}
	fig := func(p99, stale float64) Figures {
		return Figures{Seconds: 60, Ops: 24000, Reads: 22800, Writes: 1200, OpsPerSec: 400, ReadP50Ms: p99 / 3, ReadP99Ms: p99,
			WriteP50Ms: 20, WriteP99Ms: 25, Stale: uint64(stale * 22800), StaleRate: stale, StaleAgeP50Ms: 8, StaleAgeMaxMs: 19}
	}
	for i, p := range Phases {
		pr := PhaseResult{Phase: p, StartS: float64(180 * i), SteadyFromS: float64(180*i + 60), EndS: float64(180 * (i + 1))}
		pr.Arms = []ArmFigures{
			{Arm: ArmOne, Whole: fig(1.0, 0.008), Steady: fig(1.0, 0.008)},
			{Arm: ArmQuorum, Whole: fig(22, 0), Steady: fig(22, 0)},
			{Arm: ArmAdaptive, Whole: fig(4, 0.0005), Steady: fig(1.1, 0)},
		}
		pr.PredictionSteady = Prediction{Decisions: 120, Predicted: 0, Measured: 0, Agree: true, InForce: []string{"R=1 W=3 nearest"}, OnePredicted: 0.004, OneMeasured: 0.008, OneAgree: true,
			ReadP99Ms: 0.6, WriteP99Ms: 24, Calibration: 1.5, ReadOffsetMs: 0.25, WriteOffsetMs: -1.2}
		pr.WhatIf = []WhatIfCandidate{{Policy: "R=1 W=3 nearest", Overlapping: true, ReadP99Ms: 1, WriteP99Ms: 21, Cost: 3, Eligible: true}}
		res.Phases = append(res.Phases, pr)
		one, quo, ad := pr.arm(ArmOne), pr.arm(ArmQuorum), pr.arm(ArmAdaptive)
		vw := Judge(p.Name, "whole", one.Whole, quo.Whole, ad.Whole, pr.PredictionWhole, 0.001, 20*time.Millisecond)
		vs := Judge(p.Name, "steady", one.Steady, quo.Steady, ad.Steady, pr.PredictionSteady, 0.001, 20*time.Millisecond)
		res.Verdicts = append(res.Verdicts, vw, vs)
	}
	res.PassWhole, res.PassSteady = false, true
	res.Decisions = []Decision{
		{At: t0.Add(-50 * time.Second), OffsetS: -50, From: "R=2 W=2", To: "R=1 W=3 nearest", Changed: true, Reason: "cheaper",
			Explanation: "Moved arm_adaptive | to R=1 W=3", PredictedStale: 0},
		{At: t0.Add(10 * time.Second), OffsetS: 10, From: "R=1 W=3 nearest", To: "R=1 W=3 nearest", Reason: "hold"},
	}
	for i, p := range res.Phases {
		for _, a := range p.Arms {
			res.Timeline = append(res.Timeline, Point{Arm: a.Arm, Phase: p.Name, StartS: float64(180*i + 10), EndS: float64(180*i + 12), Figures: a.Whole})
			res.Timeline = append(res.Timeline, Point{Arm: a.Arm, Phase: p.Name, StartS: float64(180*i + 100), EndS: float64(180*i + 102), Figures: a.Steady})
		}
	}
	return res
}

func TestRenderMarkdown(t *testing.T) {
	md := RenderMarkdown(sampleResult())
	for _, want := range []string{
		"# Adaptive consistency experiment",
		"`adaptkv bench --scenario adaptive --out x`",
		"| read-heavy | whole | FAIL | n/a |", // adaptive 0.05% ≤ 0.1% passes… see below
		"| read-heavy | steady | PASS | PASS | PASS | PASS | PASS |",
		"Overall: whole phases **FAIL**, steady parts **PASS**.",
		"## Phase 2: slow replica",
		"| one | 400 | 22800 | 0.33 ms | 1.00 ms | 20.0 ms | 25.0 ms | 182 | 0.800% | 8.00 ms / 19.0 ms | 0 | 0 |",
		"Read p99 ratios: adaptive/one **1.10**, adaptive/quorum **0.05**.",
		"predicted stale reads 0% (mean of 120 decisions) against measured 0%: **agree**",
		"the what-if prediction for R=1 W=1 at the phase's end is 0.400%, arm one measured 0.800%: agree",
		"Predicted read p99 0.60 ms and write p99 24.0 ms (mean; they include the tuner's latency calibration, +0.25 ms and −1.20 ms at the span's end, and its stale-read factor was ×1.50) against the adaptive arm's measured 1.10 ms and 25.0 ms",
		"- FAIL — adaptive read p99 ≤ 1.2× one: 4.00 ms / 1.00 ms = 4.00",
		"| -50.0 | warm-up | R=2 W=2 | R=1 W=3 nearest | cheaper | 0% | 0% (0 of 0) | 0% | Moved arm_adaptive \\| to R=1 W=3 |",
	} {
		if strings.HasPrefix(want, "| read-heavy | whole") {
			// Whole phase: stale passes (0.05%), latency fails (4 ms
			// against 1 ms), prediction not judged.
			want = "| read-heavy | whole | PASS | FAIL | PASS | n/a | FAIL |"
		}
		if !strings.Contains(md, want) {
			t.Errorf("results.md lacks %q\n%s", want, md)
		}
	}
}

func TestWriteResultsAndPlot(t *testing.T) {
	dir := t.TempDir()
	res := sampleResult()
	if err := writeResults(dir, res); err != nil {
		t.Fatal(err)
	}
	if err := writePlot(filepath.Join(dir, "plot.png"), res); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("results.json does not decode: %v", err)
	}
	if len(back.Phases) != 3 || len(back.Phases[0].Arms) != 3 || back.Phases[2].Arms[2].Steady.ReadP99Ms != 1.1 {
		t.Fatalf("results.json round trip lost figures: %+v", back.Phases)
	}
	if st, err := os.Stat(filepath.Join(dir, "plot.png")); err != nil || st.Size() < 1000 {
		t.Fatalf("plot.png missing or empty: %v", err)
	}
}

func TestParseDecision(t *testing.T) {
	js := `{"keyspace":"arm_adaptive","at":"2026-01-02T03:04:15Z","from":{"n":3,"r":2,"w":2,"read":"nearest"},
"to":{"n":3,"r":1,"w":3,"read":"nearest"},"changed":true,"reason":"cheaper","explanation":"Moved.",
"calibration":1.5,"inputs":{"probed":400,"stale":2,"stale_rate":0.005,"at_risk":0.9,"gap_p50_ns":5000000},
"current":{"policy":{"n":3,"r":2,"w":2,"read":"nearest"},"stale_prob":0,"read_p99_ns":21000000},
"chosen":{"policy":{"n":3,"r":1,"w":3,"read":"nearest"},"stale_prob":0.0002,"raw_stale_prob":0.0001,"read_p99_ns":1500000,"write_p99_ns":22000000}}`
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d, err := parseDecision(js, t0)
	if err != nil {
		t.Fatal(err)
	}
	if d.OffsetS != 10 || d.From != "R=2 W=2 nearest" || d.To != "R=1 W=3 nearest" || !d.Changed || !d.Overlapping {
		t.Fatalf("decoded %+v", d)
	}
	if d.PredictedStale != 0.0002 || d.PredictedReadP99Ms != 1.5 || d.TunerStaleRate != 0.005 || d.GapP50Ms != 5 {
		t.Fatalf("figures decoded as %+v", d)
	}
	if _, err := parseDecision("{", t0); err == nil {
		t.Fatal("a broken decision decoded")
	}
}

func TestParseWhatIf(t *testing.T) {
	js := `[{"policy":{"n":3,"r":1,"w":3,"read":"nearest"},"stale_prob":0,"read_p99_ns":1000000,"allowed":true,"meets_stale":true,"cost":2.5},
{"policy":{"n":3,"r":1,"w":1,"read":"nearest"},"stale_prob":0.004,"allowed":true,"meets_stale":false,"rejected":"predicted stale reads above the goal"},
{"policy":{"n":3,"r":3,"w":1,"read":"all"},"stale_prob":0}]`
	cs, err := parseWhatIf(js)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 || !cs[0].Eligible || cs[1].Eligible || cs[2].Policy != "R=3 W=1" {
		t.Fatalf("decoded %+v", cs)
	}
	one, ok := whatIfOne(cs)
	if !ok || one.StaleProb != 0.004 {
		t.Fatalf("whatIfOne = %+v, %v", one, ok)
	}
}

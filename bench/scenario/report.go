package scenario

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// pct formats a rate as a percentage with enough digits for 0.1% bounds.
func pct(v float64) string {
	switch {
	case v < 0:
		return "–"
	case v == 0:
		return "0%"
	case v >= 0.1:
		return fmt.Sprintf("%.1f%%", 100*v)
	case v >= 0.01:
		return fmt.Sprintf("%.2f%%", 100*v)
	}
	return fmt.Sprintf("%.3f%%", 100*v)
}

// pp formats a difference of rates in percentage points.
func pp(v float64) string { return fmt.Sprintf("%.2g pp", 100*v) }

// msStr formats milliseconds.
func msStr(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func ratioStr(a, b float64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func mark(c Check) string {
	switch {
	case !c.Applies:
		return "n/a"
	case c.Pass:
		return "PASS"
	}
	return "FAIL"
}

// writeResults writes results.json and results.md into dir.
func writeResults(dir string, res *Result) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(RenderMarkdown(res)), 0o644); err != nil {
		return fmt.Errorf("writing results.md: %w", err)
	}
	return nil
}

// RenderMarkdown renders a result as results.md: the setup, the verdict,
// a table per phase with the ratios the criteria use, the tuner's
// prediction against the measurement, and the tuner's changes.
func RenderMarkdown(res *Result) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	c := res.Config
	w("# Adaptive consistency experiment: one, quorum and adaptive\n\n")
	w("- Command: `%s`\n", res.Command)
	w("- Machine: %s\n", res.Machine)
	w("- Run: %s, %s\n", res.Started.UTC().Format(time.RFC3339), res.Finished.Sub(res.Started).Round(time.Second))
	w("- Cluster: 5 `adaptkv node` processes on 127.0.0.1 in zones a (n1, n2), b (n3, n4), c (n5); injected one-way request delay %s within a zone and %s across; RF 3, one replica per zone; tuner interval %s, dwell %s.\n",
		c.IntraZoneDelay, c.CrossZoneDelay, c.TunerInterval, c.TunerDwell)
	w("- Arms:")
	for i, a := range res.Arms {
		if i > 0 {
			w(";")
		}
		w(" `%s` (%s)", a.Keyspace, a.Describe)
	}
	w(".\n")
	rate := fmt.Sprintf("%d ops/s per arm (open loop)", c.Rate)
	if c.Rate < 0 {
		rate = "closed loop"
	}
	w("- Workload: seed %d, %d keys per arm, %s, %d workers, %s of traffic per arm per phase, arms %s in %s slices (a phase lasts three times as long), %s warm-up; steady figures leave out the first %s of each phase.\n",
		c.Seed, c.Keys, rate, c.Concurrency, c.PhaseDuration, c.Schedule, c.Slice, c.Warmup, c.Settle)
	w("- Stale read: a read that began after a write of its key was acknowledged to this client and returned an older version (or nothing).\n\n")

	w("## Verdict\n\n")
	w("Done means, in every phase: adaptive's measured stale-read rate ≤ %s; where one breaks the bound or quorum pays cross-zone latency, adaptive's read p99 ≤ %.1f× one's and ≤ %.1f× quorum's; the predicted and measured stale-read rates agree within %.0f× or %s once the tuner has run %v.\n\n",
		pct(c.MaxStale), MaxReadP99VsOne, MaxReadP99VsQuorum, AgreeFactor, pp(AgreeAbs), TunerWarm)
	if len(res.Verdicts) > 0 {
		w("| phase | basis |")
		for _, ch := range res.Verdicts[0].Checks {
			w(" %s |", ch.Name)
		}
		w(" all |\n|---|---|")
		for range res.Verdicts[0].Checks {
			w("---|")
		}
		w("---|\n")
		for _, v := range res.Verdicts {
			w("| %s | %s |", v.Phase, v.Basis)
			for _, ch := range v.Checks {
				w(" %s |", mark(ch))
			}
			all := "FAIL"
			if v.Pass {
				all = "PASS"
			}
			w(" %s |\n", all)
		}
		w("\nOverall: whole phases **%s**, steady parts **%s**.\n\n", passStr(res.PassWhole), passStr(res.PassSteady))
	}

	for i, p := range res.Phases {
		w("## Phase %d: %s\n\n", i+1, p.Title)
		w("From %.0f s to %.0f s; steady from %.0f s.", p.StartS, p.EndS, p.SteadyFromS)
		for _, n := range p.Notes {
			w(" Note: %s.", n)
		}
		w("\n\n")
		for _, basis := range []string{"whole", "steady"} {
			if basis == "whole" {
				w("Whole phase:\n\n")
			} else {
				w("Steady part:\n\n")
			}
			w("| arm | ops/s | reads | read p50 | read p99 | write p50 | write p99 | stale reads | stale rate | stale age p50 / max | errors | late |\n")
			w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
			for _, a := range p.Arms {
				f := a.Whole
				if basis == "steady" {
					f = a.Steady
				}
				age := "–"
				if f.Stale > 0 {
					age = msStr(f.StaleAgeP50Ms) + " / " + msStr(f.StaleAgeMaxMs)
				}
				w("| %s | %.0f | %d | %s | %s | %s | %s | %d | %s | %s | %d | %d |\n", a.Arm, f.OpsPerSec, f.Reads,
					msStr(f.ReadP50Ms), msStr(f.ReadP99Ms), msStr(f.WriteP50Ms), msStr(f.WriteP99Ms), f.Stale, pct(f.StaleRate), age, f.Errors, f.Late)
			}
			one, quo, ad := pick(p.arm(ArmOne), basis), pick(p.arm(ArmQuorum), basis), pick(p.arm(ArmAdaptive), basis)
			w("\nRead p99 ratios: adaptive/one **%s**, adaptive/quorum **%s**.", ratioStr(ad.ReadP99Ms, one.ReadP99Ms), ratioStr(ad.ReadP99Ms, quo.ReadP99Ms))
			pr := p.PredictionWhole
			if basis == "steady" {
				pr = p.PredictionSteady
			}
			if pr.Decisions > 0 {
				w(" Tuner: configuration in force %s; predicted stale reads %s (mean of %d decisions) against measured %s: **%s**; the tuner's own probes measured %s.",
					strings.Join(pr.InForce, " → "), pct(pr.Predicted), pr.Decisions, pct(pr.Measured), agreeStr(pr.Agree), pct(pr.TunerStaleRate))
				w(" Predicted read p99 %s and write p99 %s (mean; they include the tuner's latency calibration, %s and %s at the span's end, and its stale-read factor was ×%.2f) against the adaptive arm's measured %s and %s (the bench's figures include the client's hop).",
					msStr(pr.ReadP99Ms), msStr(pr.WriteP99Ms), signedMs(pr.ReadOffsetMs), signedMs(pr.WriteOffsetMs), pr.Calibration, msStr(ad.ReadP99Ms), msStr(ad.WriteP99Ms))
			} else {
				w(" Tuner: no decisions after its first %v in this span, so no prediction to compare.", TunerWarm)
			}
			if pr.OnePredicted >= 0 {
				w(" Model check on a stale configuration: the what-if prediction for R=1 W=1 at the phase's end is %s, arm one measured %s: %s.",
					pct(pr.OnePredicted), pct(pr.OneMeasured), agreeStr(pr.OneAgree))
			}
			w("\n\n")
			for _, v := range res.Verdicts {
				if v.Phase != p.Name || v.Basis != basis {
					continue
				}
				for _, ch := range v.Checks {
					w("- %s — %s: %s\n", mark(ch), ch.Name, ch.Detail)
				}
			}
			w("\n")
		}
		if len(p.AdaptiveByConfig) > 0 {
			w("Adaptive arm by the configuration in force (whole phase; slices during a change left out):\n\n")
			w("| configuration | time | reads | read p50 | read p99 | write p99 | stale reads | stale rate |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
			for _, c := range p.AdaptiveByConfig {
				w("| %s | %.0f s | %d | %s | %s | %s | %d | %s |\n", c.Config, c.Seconds, c.Reads, msStr(c.ReadP50Ms), msStr(c.ReadP99Ms), msStr(c.WriteP99Ms), c.Stale, pct(c.StaleRate))
			}
			w("\n")
		}
		if len(p.TunerReasons) > 0 {
			w("Tuner decisions in the phase by reason: %s.", reasons(p.TunerReasons))
			if len(p.NodeCounters) > 0 {
				w(" Cluster counters over the phase (all keyspaces):")
				for i, name := range nodeCounters {
					if i > 0 {
						w(",")
					}
					w(" %s +%.0f", strings.TrimPrefix(name, "adaptkv_"), p.NodeCounters[name])
				}
				w(".")
			}
			w("\n\n")
		}
		if len(p.WhatIf) > 0 {
			w("<details><summary>Model what-if at the end of the phase</summary>\n\n")
			w("| configuration | predicted stale | read p99 | write p99 | cost | eligible |\n|---|---:|---:|---:|---:|---|\n")
			for _, c := range p.WhatIf {
				el := "yes"
				if !c.Eligible {
					el = "no: " + c.Rejected
				}
				w("| %s | %s | %s | %s | %.1f | %s |\n", c.Policy, pct(c.StaleProb), msStr(c.ReadP99Ms), msStr(c.WriteP99Ms), c.Cost, el)
			}
			w("\n</details>\n\n")
		}
	}

	w("## Tuner changes\n\n")
	changes := 0
	for _, d := range res.Decisions {
		if d.Changed {
			changes++
		}
	}
	if changes == 0 {
		w("The tuner did not change arm_adaptive's configuration (%d decisions seen).\n\n", len(res.Decisions))
	} else {
		w("%d changes among %d decisions seen (times from the start of phase 1; negative is warm-up).\n\n", changes, len(res.Decisions))
		w("| t (s) | phase | from | to | reason | predicted stale | tuner-measured stale | replica timeouts (max) | explanation |\n|---:|---|---|---|---|---:|---:|---:|---|\n")
		for _, d := range res.Decisions {
			if !d.Changed {
				continue
			}
			w("| %.1f | %s | %s | %s | %s | %s | %s (%d of %d) | %s | %s |\n", d.OffsetS, phaseAt(res.Phases, d.OffsetS), d.From, d.To, d.Reason,
				pct(d.PredictedStale), pct(d.TunerStaleRate), d.TunerStale, d.TunerProbed, pct(d.MaxTimeoutRate), strings.ReplaceAll(d.Explanation, "|", "\\|"))
		}
		w("\n")
	}
	w("## Gray-failure detector\n\n")
	if len(res.Health) == 0 {
		w("No node was flagged or reinstated during the run (--health-window %s).\n\n", res.Config.HealthWindow)
	} else {
		w("| t (s) | phase | node | decision | reason |\n|---:|---|---|---|---|\n")
		for _, e := range res.Health {
			what := "reinstated"
			if e.Flag {
				what = "flagged"
			}
			w("| %.1f | %s | %s | %s | %s |\n", e.OffsetS, phaseAt(res.Phases, e.OffsetS), e.Node, what, strings.ReplaceAll(e.Reason, "|", "\\|"))
		}
		w("\n")
	}
	w("Files: results.json (all figures, the time series and every decision), plot.png (read p99 and stale rate per slice, phases shaded, tuner changes marked), nodes/ (node data and logs).\n")
	return b.String()
}

// reasons lists decision counts by reason, most frequent first.
func reasons(m map[string]int) string {
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range m {
		all = append(all, kv{k, n})
	}
	slices.SortFunc(all, func(a, b kv) int {
		if a.n != b.n {
			return b.n - a.n
		}
		return strings.Compare(a.k, b.k)
	})
	var parts []string
	for _, e := range all {
		parts = append(parts, fmt.Sprintf("%s %d", e.k, e.n))
	}
	return strings.Join(parts, ", ")
}

func pick(a ArmFigures, basis string) Figures {
	if basis == "steady" {
		return a.Steady
	}
	return a.Whole
}

func passStr(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func agreeStr(ok bool) string {
	if ok {
		return "agree"
	}
	return "disagree"
}

// phaseAt names the phase an offset falls in.
func phaseAt(ps []PhaseResult, s float64) string {
	for _, p := range ps {
		if s >= p.StartS && s < p.EndS {
			return p.Name
		}
	}
	if len(ps) > 0 && s < ps[0].StartS {
		return "warm-up"
	}
	return "–"
}

// writeSummary prints a one-screen summary of a result.
func writeSummary(out io.Writer, res *Result) {
	fmt.Fprintf(out, "\n=== adaptive scenario: %s ===\n", res.Finished.Sub(res.Started).Round(time.Second))
	fmt.Fprintf(out, "%-13s %-9s %8s %10s %10s %10s %9s\n", "phase", "arm", "ops/s", "read p99", "write p99", "stale", "vs one")
	for _, p := range res.Phases {
		one := p.arm(ArmOne).Steady
		for _, a := range p.Arms {
			f := a.Steady
			fmt.Fprintf(out, "%-13s %-9s %8.0f %10s %10s %10s %9s\n", p.Name, a.Arm, f.OpsPerSec, msStr(f.ReadP99Ms), msStr(f.WriteP99Ms), pct(f.StaleRate), ratioStr(f.ReadP99Ms, one.ReadP99Ms))
		}
		pr := p.PredictionSteady
		if pr.Decisions > 0 {
			fmt.Fprintf(out, "%-13s tuner: %s, predicted %s vs measured %s (%s)\n", "", strings.Join(pr.InForce, " → "), pct(pr.Predicted), pct(pr.Measured), agreeStr(pr.Agree))
		}
	}
	fmt.Fprintln(out, "(steady parts; results.md has the whole phases too)")
	for _, v := range res.Verdicts {
		var failed []string
		for _, c := range v.Checks {
			if c.Applies && !c.Pass {
				failed = append(failed, c.Name)
			}
		}
		line := "PASS"
		if !v.Pass {
			line = "FAIL: " + strings.Join(failed, "; ")
		}
		fmt.Fprintf(out, "%-13s %-6s %s\n", v.Phase, v.Basis, line)
	}
	fmt.Fprintf(out, "overall: whole phases %s, steady parts %s\n", passStr(res.PassWhole), passStr(res.PassSteady))
}

// signedMs renders a latency offset with its sign.
func signedMs(v float64) string {
	if v < 0 {
		return "−" + msStr(-v)
	}
	return "+" + msStr(v)
}

package jepsen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/adaptkv/adaptkv/jepsen/checker"
	"github.com/adaptkv/adaptkv/jepsen/history"
	"github.com/adaptkv/adaptkv/jepsen/nemesis"
	"github.com/adaptkv/adaptkv/jepsen/report"
)

// Exit statuses of a run.
const (
	ExitValid   = 0 // every checker found the history valid
	ExitAnomaly = 1 // a checker found an anomaly
	ExitNotDone = 2 // the run could not be done, or could not be decided
)

// PhaseTime is when a phase started (seconds from the run's start) and how
// long it lasted.
type PhaseTime struct {
	Name    string  `json:"name"`
	Start   float64 `json:"start"`
	Seconds float64 `json:"seconds"`
}

// RunInfo describes how a run went.
type RunInfo struct {
	Workload    string           `json:"workload"`
	Consistency []string         `json:"consistency"`
	Nemesis     string           `json:"nemesis"`
	Nodes       int              `json:"nodes"`
	Seed        uint64           `json:"seed"`
	Started     time.Time        `json:"started"`
	Seconds     float64          `json:"seconds"`
	Phases      []PhaseTime      `json:"phases,omitempty"`
	Events      int              `json:"events"`
	Schedule    []nemesis.Window `json:"schedule,omitempty"`
	// HintsWaitSeconds is how long the hints took to drain after the heal;
	// ConvergeSeconds the whole convergence phase.
	HintsWaitSeconds float64 `json:"hints_wait_seconds"`
	ConvergeSeconds  float64 `json:"converge_seconds"`
	// ConvergeRepair, when set, is the repair pass the convergence phase
	// ran because replicas still disagreed once the hints were delivered.
	ConvergeRepair *ConvergeRepair `json:"converge_repair,omitempty"`
	CheckSeconds   float64         `json:"check_seconds"`
	Command        string          `json:"command"`
	// Chain is the run's iptables chain (removed at the end), if any.
	Chain string `json:"chain,omitempty"`
	// Hosts maps node IDs to their addresses (the added nodes' too).
	Hosts map[string]string `json:"hosts,omitempty"`
	// Membership describes the membership nemesis's changes: which node
	// was added and when the ring made it normal.
	Membership []string `json:"membership,omitempty"`
}

// ConvergeRepair describes the convergence phase's repair pass.
type ConvergeRepair struct {
	// Disagreeing is the number of probed keys whose replicas disagreed
	// before the pass; RecordsPushed what the pass wrote to replicas that
	// lacked it; Seconds its duration; Error why it failed, if it did.
	Disagreeing   int     `json:"disagreeing"`
	RecordsPushed uint64  `json:"records_pushed"`
	Seconds       float64 `json:"seconds"`
	Error         string  `json:"error,omitempty"`
}

// Result is a run's verdict and what led to it; results.json holds it.
type Result struct {
	// Valid is the combined verdict of the checkers (unknown when the run
	// had harness errors and no anomaly).
	Valid checker.Validity `json:"valid"`
	// Dir is the run folder.
	Dir string `json:"dir"`
	// Checkers are the individual verdicts, with their anomalies.
	Checkers []checker.Result `json:"checkers"`
	// HarnessErrors are problems of the run itself (a fault that could not
	// be applied, a cluster that did not heal, an interruption): they make
	// a run without anomalies inconclusive.
	HarnessErrors []string `json:"harness_errors,omitempty"`
	Run           RunInfo  `json:"run"`
	// Files lists the run folder's report files.
	Files []string `json:"files"`
}

// ExitCode is the process exit status for the result: 0 valid, 1 an
// anomaly found, 2 the run could not be done or decided.
func (r *Result) ExitCode() int {
	switch r.Valid {
	case checker.Valid:
		return ExitValid
	case checker.Invalid:
		return ExitAnomaly
	}
	return ExitNotDone
}

// Checker returns the named checker's result, or nil.
func (r *Result) Checker(name string) *checker.Result {
	for i := range r.Checkers {
		if r.Checkers[i].Name == name {
			return &r.Checkers[i]
		}
	}
	return nil
}

func (r *runner) result(valid checker.Validity, checks []checker.Result) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.phases); n > 0 && r.phases[n-1].Seconds == 0 {
		r.phases[n-1].Seconds = round3(time.Since(r.rec.Base()).Seconds() - r.phases[n-1].Start)
	}
	res := &Result{Valid: valid, Dir: r.dir, Checkers: checks, HarnessErrors: append([]string(nil), r.harnessErrs...),
		Run: RunInfo{Workload: r.cfg.Workload, Consistency: r.cfg.Consistency, Nemesis: nemesis.FormatSpecs(r.cfg.specs()), Nodes: r.cfg.Nodes,
			Seed: r.cfg.Seed, Started: r.rec.Base(), Seconds: round3(time.Since(r.rec.Base()).Seconds()), Phases: append([]PhaseTime(nil), r.phases...),
			Events: r.rec.Len(), Schedule: r.sched, HintsWaitSeconds: round3(r.hintsWait.Seconds()), ConvergeSeconds: round3(r.convergeDur.Seconds()),
			ConvergeRepair: r.convergeRepair,
			Command:        r.cfg.Command()}}
	if r.net != nil {
		res.Run.Chain = r.net.Chain()
	}
	if r.c != nil {
		res.Run.Hosts = r.c.Hosts()
	}
	if r.nem != nil {
		res.Run.Membership = r.nem.Changes()
	}
	if len(res.HarnessErrors) > 0 && res.Valid == checker.Valid {
		res.Valid = checker.Unknown
	}
	return res
}

// check runs the checkers and writes the report.
func (r *runner) check(ctx context.Context) *Result {
	if err := r.rec.Flush(); err != nil {
		r.harnessError(err)
	}
	ops := r.rec.Ops()
	start := time.Now()
	valid, checks, err := checker.Check(ctx, r.cfg.Workload, ops, checker.Options{LinearTimeout: r.cfg.CheckTimeout.D(), Visualize: filepath.Join(r.dir, LinearFile)})
	if err != nil {
		r.harnessError(err)
	}
	res := r.result(valid, checks)
	res.Run.CheckSeconds = round3(time.Since(start).Seconds())
	if res.Valid == checker.Valid && !r.cfg.KeepData {
		for _, n := range r.c.Nodes() {
			r.c.Kill(n.ID) // data is removed below; the processes go first
			os.RemoveAll(n.DataDir)
		}
	}
	writeReport(r.dir, ops, res, nil)
	return res
}

// writeReport writes the plots, results.json and summary.txt, and prints
// the summary to out (if not nil).
func writeReport(dir string, ops []history.Op, res *Result, out io.Writer) {
	title := fmt.Sprintf("%s, %s, nemesis %s, %d nodes, seed %d", res.Run.Workload, strings.Join(res.Run.Consistency, "+"), res.Run.Nemesis, res.Run.Nodes, res.Run.Seed)
	if err := report.Latency(filepath.Join(dir, LatencyPlot), ops, "latency: "+title); err != nil {
		res.HarnessErrors = append(res.HarnessErrors, fmt.Sprintf("latency plot: %v", err))
	}
	if err := report.Throughput(filepath.Join(dir, ThroughputPlot), ops, "throughput: "+title); err != nil {
		res.HarnessErrors = append(res.HarnessErrors, fmt.Sprintf("throughput plot: %v", err))
	}
	res.Files = nil
	for _, f := range []string{ConfigFile, HistoryFile, ResultsFile, SummaryFile, LinearFile, LatencyPlot, ThroughputPlot, LogFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil || f == ResultsFile || f == SummaryFile {
			res.Files = append(res.Files, f)
		}
	}
	if err := res.write(dir); err != nil {
		res.HarnessErrors = append(res.HarnessErrors, err.Error())
	}
	if out != nil {
		res.Summary(out)
	}
}

func (res *Result) write(dir string) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ResultsFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	var sb strings.Builder
	res.Summary(&sb)
	if err := os.WriteFile(filepath.Join(dir, SummaryFile), []byte(sb.String()), 0o644); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	return nil
}

// Summary writes the one-screen summary of a run.
func (res *Result) Summary(w io.Writer) {
	ri := res.Run
	fmt.Fprintf(w, "\nadaptkv jepsen: workload %s, consistency %s, nemesis %s, %d nodes, seed %d\n", ri.Workload, strings.Join(ri.Consistency, ","), ri.Nemesis, ri.Nodes, ri.Seed)
	fmt.Fprintf(w, "run folder: %s\n", res.Dir)
	if len(ri.Phases) > 0 {
		var ps []string
		for _, p := range ri.Phases {
			ps = append(ps, fmt.Sprintf("%s %.1fs", p.Name, p.Seconds))
		}
		fmt.Fprintf(w, "phases: %s (total %.1fs)\n", strings.Join(ps, ", "), ri.Seconds)
	}
	if len(ri.Schedule) > 0 {
		var ws []string
		for i, win := range ri.Schedule {
			if i == 6 {
				ws = append(ws, fmt.Sprintf("... %d more", len(ri.Schedule)-6))
				break
			}
			var fs []string
			for _, f := range win.Faults {
				fs = append(fs, describeFault(f))
			}
			ws = append(ws, fmt.Sprintf("%.0f-%.0fs %s", win.Start.Seconds(), win.End.Seconds(), strings.Join(fs, "+")))
		}
		fmt.Fprintf(w, "faults (from the start of the fault phase): %s\n", strings.Join(ws, "; "))
	}
	for _, m := range ri.Membership {
		fmt.Fprintf(w, "membership: %s\n", m)
	}
	if cr := ri.ConvergeRepair; cr != nil {
		if cr.Error != "" {
			fmt.Fprintf(w, "converge: %d keys disagreed once hints were delivered; the repair pass failed: %s\n", cr.Disagreeing, cr.Error)
		} else {
			fmt.Fprintf(w, "converge: %d keys disagreed once hints were delivered (writes no hint covers: a coordinator killed before it stored one, or a replica that acknowledged without storing); a repair pass pushed %d records in %.2fs (--converge-repair=false judges hints and read repair alone)\n",
				cr.Disagreeing, cr.RecordsPushed, cr.Seconds)
		}
	}
	for _, c := range res.Checkers {
		if c.Name != "perf" {
			continue
		}
		fmt.Fprintf(w, "operations: %s\n", c.Summary)
		if st, ok := c.Stats.(checker.PerfStats); ok {
			var gs []string
			for _, g := range st.Groups {
				if g.LatencyMs.N > 0 {
					gs = append(gs, fmt.Sprintf("%s@%s p50 %.1f p99 %.1f max %.0f", g.F, g.Level, g.LatencyMs.P50, g.LatencyMs.P99, g.LatencyMs.Max))
				}
			}
			if len(gs) > 0 {
				fmt.Fprintf(w, "latency ms (ok): %s\n", strings.Join(gs, " | "))
			}
		}
	}
	fmt.Fprintln(w, "\ncheckers:")
	for _, c := range res.Checkers {
		if c.Name == "perf" {
			continue
		}
		fmt.Fprintf(w, "  %-13s %-7s %s\n", c.Name, strings.ToUpper(c.Valid.String()), c.Summary)
		for i, a := range c.Anomalies {
			if i == 3 {
				fmt.Fprintf(w, "      ... %d more in results.json\n", c.Count-3)
				break
			}
			d := a.Description
			if len(d) > 400 {
				d = d[:400] + "..."
			}
			fmt.Fprintf(w, "      - [%s] %s\n", a.Type, d)
		}
	}
	for _, c := range res.Checkers {
		st, ok := c.Stats.(checker.StaleStats)
		if c.Name != "staleness" || !ok || len(st.Levels) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nstaleness      reads   stale  fraction  95%% CI            versions behind     age ms (p50/p99/max)   during faults / quiet\n")
		for _, l := range st.Levels {
			fmt.Fprintf(w, "  %-10s %7d %7d  %7.3f%%  [%.3f%%, %.3f%%]  mean %.2f max %-4.0f  %6.1f/%6.1f/%6.1f     %d/%d  %d/%d\n",
				l.Level, l.Reads, l.Stale, 100*l.Fraction, 100*l.CI95[0], 100*l.CI95[1], l.Versions.Mean, l.Versions.Max,
				l.AgeMs.P50, l.AgeMs.P99, l.AgeMs.Max, l.DuringFaults.Stale, l.DuringFaults.Reads, l.Quiet.Stale, l.Quiet.Reads)
		}
	}
	if len(res.HarnessErrors) > 0 {
		fmt.Fprintln(w, "\nharness errors (the run itself had problems):")
		for _, e := range res.HarnessErrors {
			fmt.Fprintf(w, "  - %s\n", e)
		}
	}
	verdict := map[checker.Validity]string{
		checker.Valid:   "VALID: no anomaly found",
		checker.Invalid: "INVALID: anomalies found",
		checker.Unknown: "UNKNOWN: the run could not be done or decided",
	}[res.Valid]
	fmt.Fprintf(w, "\nverdict: %s (exit status %d)\n", verdict, res.ExitCode())
	if len(res.Files) > 0 {
		fmt.Fprintf(w, "files: %s\n", strings.Join(res.Files, " "))
	}
}

func describeFault(f history.Fault) string {
	s := f.Kind
	if f.Kind == nemesis.Partition {
		return s + "(" + f.Shape + ")"
	}
	if f.Kind == nemesis.Membership {
		return s + "(" + f.Shape + " " + strings.Join(f.Targets, "+") + ")"
	}
	var parts []string
	if len(f.Targets) > 0 {
		parts = append(parts, strings.Join(f.Targets, "+"))
	}
	if f.Offset != "" {
		parts = append(parts, f.Offset)
	}
	if f.Delay != "" {
		parts = append(parts, f.Delay)
	}
	return s + "(" + strings.Join(parts, " ") + ")"
}

// Analyze re-checks a stored run: it reads DIR/config.json and
// DIR/history.jsonl, runs the workload's checkers again, and rewrites the
// report files (results.json, summary.txt, plots, the linearizability
// visualization). Harness errors and run details of the original
// results.json are kept. Summary lines go to out when not nil.
func Analyze(ctx context.Context, dir string, out io.Writer) (*Result, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, fmt.Errorf("jepsen analyze: %w", err)
	}
	ops, err := history.ReadFile(filepath.Join(dir, HistoryFile))
	if err != nil {
		return nil, fmt.Errorf("jepsen analyze: %w", err)
	}
	if len(ops) == 0 {
		return nil, errors.New("jepsen analyze: the history is empty")
	}
	res := &Result{Dir: dir}
	if b, err := os.ReadFile(filepath.Join(dir, ResultsFile)); err == nil {
		var old Result
		if json.Unmarshal(b, &old) == nil {
			res.HarnessErrors, res.Run = old.HarnessErrors, old.Run
		}
	}
	if res.Run.Workload == "" {
		res.Run = RunInfo{Workload: cfg.Workload, Consistency: cfg.Consistency, Nemesis: cfg.Nemesis, Nodes: cfg.Nodes, Seed: cfg.Seed, Command: cfg.Command()}
	}
	res.Run.Events = len(ops)
	os.Remove(filepath.Join(dir, LinearFile))
	start := time.Now()
	valid, checks, err := checker.Check(ctx, cfg.Workload, ops, checker.Options{LinearTimeout: cfg.CheckTimeout.D(), Visualize: filepath.Join(dir, LinearFile)})
	if err != nil {
		return nil, fmt.Errorf("jepsen analyze: %w", err)
	}
	res.Run.CheckSeconds = round3(time.Since(start).Seconds())
	res.Valid, res.Checkers = valid, checks
	var plotErrs []string
	for _, e := range res.HarnessErrors {
		if !strings.Contains(e, " plot: ") {
			plotErrs = append(plotErrs, e)
		}
	}
	res.HarnessErrors = plotErrs
	if len(res.HarnessErrors) > 0 && res.Valid == checker.Valid {
		res.Valid = checker.Unknown
	}
	writeReport(dir, ops, res, out)
	return res, nil
}

// LoadResult reads a run folder's results.json.
func LoadResult(dir string) (*Result, error) {
	b, err := os.ReadFile(filepath.Join(dir, ResultsFile))
	if err != nil {
		return nil, err
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %w", ResultsFile, err)
	}
	return &res, nil
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

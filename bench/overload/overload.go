package overload

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/adaptkv/adaptkv/bench"
)

// Config configures the benchmark. Zero fields take the defaults below.
type Config struct {
	// Binary is the adaptkv executable of the build under test; Baseline,
	// when set, is an older build run the same way afterwards.
	Binary, Baseline string
	// BinaryFlags are extra `node` flags for Binary's nodes only (say
	// --max-inflight 32); the baseline gets none, since an older build may
	// not know them.
	BinaryFlags []string
	// Variants are further arms of Binary with other node flags, run
	// after the first, each named (say "max-inflight 16").
	Variants []Variant
	// Out holds results.json, results.md and the nodes' data and logs.
	Out string

	Nodes       int
	Workload    string
	Records     int64
	ValueSize   int
	Concurrency int
	Keyspace    string
	RF          int
	Consistency string
	Seed        uint64

	Peak, Warmup, NormalTime, Overload, Recovery time.Duration
	// Multiplier is the overload's offered rate as a multiple of the peak;
	// Normal is the normal rate's (before and after the overload).
	Multiplier, Normal float64
	// QuietWait is how long to wait before each arm for other processes
	// to use less than QuietCores CPUs (0: do not wait).
	QuietWait  time.Duration
	QuietCores float64
	// Command is recorded in the results.
	Command string
	Logger  *slog.Logger `json:"-"`
}

// Variant is an extra arm of the build under test with its own node flags.
type Variant struct {
	Name  string   `json:"name"`
	Flags []string `json:"flags"`
}

// Defaults.
const (
	DefaultNodes       = 3
	DefaultRecords     = 20_000
	DefaultConcurrency = 32
	DefaultPeak        = 20 * time.Second
	DefaultWarmup      = 5 * time.Second
	DefaultNormal      = 10 * time.Second
	DefaultOverload    = 60 * time.Second
	DefaultRecovery    = 30 * time.Second
	DefaultMultiplier  = 3
	DefaultNormalShare = 0.5
)

func (c Config) withDefaults() (Config, error) {
	if c.Binary == "" {
		return c, fmt.Errorf("overload: no binary to start nodes with")
	}
	set := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	set(&c.Peak, DefaultPeak)
	set(&c.Warmup, DefaultWarmup)
	set(&c.NormalTime, DefaultNormal)
	set(&c.Overload, DefaultOverload)
	set(&c.Recovery, DefaultRecovery)
	if c.Nodes == 0 {
		c.Nodes = DefaultNodes
	}
	if c.Workload == "" {
		c.Workload = "a"
	}
	if c.Records == 0 {
		c.Records = DefaultRecords
	}
	if c.ValueSize == 0 {
		c.ValueSize = bench.DefaultValueSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Keyspace == "" {
		c.Keyspace = "overload"
	}
	if c.RF == 0 {
		c.RF = min(3, c.Nodes)
	}
	if c.Consistency == "" {
		c.Consistency = "quorum"
	}
	if c.Multiplier == 0 {
		c.Multiplier = DefaultMultiplier
	}
	if c.Normal == 0 {
		c.Normal = DefaultNormalShare
	}
	if c.Out == "" {
		c.Out = "overload-results"
	}
	if c.QuietCores == 0 {
		c.QuietCores = 0.3
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Nodes < 1 || c.Concurrency < 1 || c.Multiplier <= 0 || c.Normal <= 0 {
		return c, fmt.Errorf("overload: nodes, concurrency, multiplier and normal share must be positive")
	}
	return c, nil
}

// NodeMemory is one node's memory over an arm.
type NodeMemory struct {
	ID string `json:"id"`
	// PeakRSS is VmHWM at the end of the arm: the node's peak resident set
	// since it started, load and every phase included.
	PeakRSS int64 `json:"peak_rss_bytes"`
	// OverloadRSS is the largest VmRSS sampled during the overload.
	OverloadRSS int64 `json:"overload_rss_bytes"`
}

// Arm is what one build measured.
type Arm struct {
	Name   string   `json:"name"`
	Binary string   `json:"binary"`
	Flags  []string `json:"flags,omitempty"`
	// PeakOps and PeakP99 are the closed loop's throughput and p99 (ms).
	PeakOps float64           `json:"peak_ops_per_sec"`
	PeakP99 float64           `json:"peak_p99_ms"`
	Closed  *bench.Result     `json:"closed_loop"`
	Open    *bench.OpenResult `json:"open_loop"`
	Memory  []NodeMemory      `json:"memory"`
	// Verdict figures: goodput during the overload over PeakOps; the p99
	// of the requests the cluster admitted (answered successfully) during
	// the overload over PeakP99; the normal step's p99; and the seconds
	// after the overload ended until the per-second p99 was back within
	// twice the normal p99 for three seconds in a row (-1: never within
	// the recovery step).
	GoodputRatio     float64 `json:"goodput_ratio"`
	AdmittedP99      float64 `json:"admitted_p99_ms"`
	AdmittedP99Ratio float64 `json:"admitted_p99_ratio"`
	NormalP99        float64 `json:"normal_p99_ms"`
	RecoverySeconds  float64 `json:"recovery_s"`
	// NodeCores and BenchCores are the CPUs the nodes (together) and the
	// bench process used during the overload, in cores: on a small
	// machine the load generator competes with the cluster.
	NodeCores  float64 `json:"node_cores"`
	BenchCores float64 `json:"bench_cores"`
	// OtherCores is what every other process on the machine used during
	// the overload, in cores: other users of a shared machine.
	OtherCores float64 `json:"other_cores"`
	// OtherBefore is what other processes used just before the arm
	// started, after the quiet wait.
	OtherBefore float64 `json:"other_cores_before"`
}

// Result is the whole run.
type Result struct {
	Command  string     `json:"command"`
	Host     bench.Host `json:"host"`
	Started  time.Time  `json:"started"`
	Settings Config     `json:"settings"`
	Arms     []*Arm     `json:"arms"`
}

// Run runs the benchmark against Binary, then Baseline if set, writes
// results.json and results.md into cfg.Out and a summary to progress.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	if cfg.Out, err = filepath.Abs(cfg.Out); err != nil {
		return nil, err
	}
	res := &Result{Command: cfg.Command, Host: bench.ThisHost(), Started: time.Now().UTC(), Settings: cfg}
	type armSpec struct {
		name, bin string
		flags     []string
	}
	arms := []armSpec{{"this build", cfg.Binary, cfg.BinaryFlags}}
	for _, v := range cfg.Variants {
		arms = append(arms, armSpec{"this build, " + v.Name, cfg.Binary, append(append([]string(nil), cfg.BinaryFlags...), v.Flags...)})
	}
	if cfg.Baseline != "" {
		arms = append(arms, armSpec{"baseline", cfg.Baseline, nil})
	}
	for i, a := range arms {
		dir := filepath.Join(cfg.Out, "nodes", fmt.Sprintf("arm%d", i))
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		arm, err := runArm(ctx, cfg, a.name, a.bin, a.flags, dir, progress)
		if err != nil {
			return res, fmt.Errorf("overload: %s (%s): %w", a.name, a.bin, err)
		}
		res.Arms = append(res.Arms, arm)
	}
	if err := writeResults(cfg.Out, res); err != nil {
		return res, err
	}
	writeMarkdown(progress, res)
	return res, nil
}

func runArm(ctx context.Context, cfg Config, name, binary string, flags []string, dir string, pr io.Writer) (*Arm, error) {
	arm := &Arm{Name: name, Binary: binary, Flags: flags}
	// The machine may be shared: starting during someone else's burst
	// measures them as much as the cluster.
	for deadline := time.Now().Add(cfg.QuietWait); ; {
		other, err := otherCores(ctx, 2*time.Second)
		if err != nil {
			break
		}
		arm.OtherBefore = other
		if other < cfg.QuietCores || !time.Now().Before(deadline) {
			break
		}
		fmt.Fprintf(pr, "   waiting for other processes to quiet down: they use %.2f CPUs\n", other)
	}
	fmt.Fprintf(pr, "== %s: starting %d nodes from %s %v\n", name, cfg.Nodes, binary, flags)
	c, err := startCluster(ctx, binary, dir, cfg.Nodes, flags)
	if err != nil {
		return nil, err
	}
	defer c.stop()

	w, err := bench.ParseWorkload(cfg.Workload)
	if err != nil {
		return nil, err
	}
	level, err := bench.ParseConsistency(cfg.Consistency)
	if err != nil {
		return nil, err
	}
	store, err := bench.OpenAdaptkv(ctx, bench.AdaptkvOptions{Endpoints: c.endpoints(), Keyspace: cfg.Keyspace,
		ReplicationFactor: cfg.RF, Consistency: level, Logger: cfg.Logger, CertsDir: c.certsDir()})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	bcfg := bench.Config{Workload: w, Records: cfg.Records, ValueSize: cfg.ValueSize, Concurrency: cfg.Concurrency, Seed: cfg.Seed}
	// The load's own concurrency stays modest: it only has to insert the
	// records, and a build that bounds what it admits would shed some of a
	// load at the peak's concurrency.
	lcfg := bcfg
	lcfg.Concurrency = min(bcfg.Concurrency, 16)
	load, err := bench.Load(ctx, store, lcfg)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(pr, "   load: %d records in %.1f s, %d errors\n", load.Ops, load.Elapsed, load.Errors)

	closed := bcfg
	closed.Duration, closed.Warmup = cfg.Peak, cfg.Warmup
	if arm.Closed, err = bench.Run(ctx, store, closed); err != nil {
		return nil, err
	}
	arm.PeakOps, arm.PeakP99 = arm.Closed.Throughput, arm.Closed.Latency.P99
	fmt.Fprintf(pr, "   peak (closed loop, %d clients, %v): %.0f ops/s, p99 %.2f ms, %d errors\n",
		cfg.Concurrency, cfg.Peak, arm.PeakOps, arm.PeakP99, arm.Closed.Errors)

	normal, over := cfg.Normal*arm.PeakOps, cfg.Multiplier*arm.PeakOps
	steps := []bench.RateStep{
		{Name: "normal", Rate: normal, Duration: cfg.NormalTime},
		{Name: "overload", Rate: over, Duration: cfg.Overload},
		{Name: "recovery", Rate: normal, Duration: cfg.Recovery},
	}
	fmt.Fprintf(pr, "   open loop: %.0f ops/s for %v, %.0f ops/s for %v, %.0f ops/s for %v\n", normal, cfg.NormalTime, over, cfg.Overload, normal, cfg.Recovery)

	// Sample the nodes' memory while the open loop runs.
	sctx, stopSampling := context.WithCancel(ctx)
	overloadStart := time.Now().Add(cfg.NormalTime)
	overloadEnd := overloadStart.Add(cfg.Overload)
	mem := make([]NodeMemory, len(c.Nodes()))
	cpu := func() (nodes, self, machine float64) {
		for _, p := range c.Nodes() {
			s, _ := cpuSeconds(strconv.Itoa(p.PID()))
			nodes += s
		}
		self, _ = cpuSeconds("self")
		machine, _ = machineBusy()
		return nodes, self, machine
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		var first time.Time
		var n0, b0, m0 float64
		for {
			select {
			case <-sctx.Done():
				return
			case now := <-t.C:
				if now.Before(overloadStart) || now.After(overloadEnd) {
					continue
				}
				for i, p := range c.Nodes() {
					if rss, _, err := memory(p.PID()); err == nil {
						mem[i].OverloadRSS = max(mem[i].OverloadRSS, rss)
					}
				}
				n, b, m := cpu()
				if first.IsZero() {
					first, n0, b0, m0 = now, n, b, m
				} else if wall := now.Sub(first).Seconds(); wall > 0 {
					arm.NodeCores, arm.BenchCores = (n-n0)/wall, (b-b0)/wall
					arm.OtherCores = max((m-m0)/wall-arm.NodeCores-arm.BenchCores, 0)
				}
			}
		}
	})
	openCfg := bcfg
	openCfg.OnTick = nil
	arm.Open, err = bench.RunOpenLoop(ctx, store, openCfg, steps, 0)
	stopSampling()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	for i, p := range c.Nodes() {
		mem[i].ID = p.ID
		if _, hwm, err := memory(p.PID()); err == nil {
			mem[i].PeakRSS = hwm
		}
	}
	arm.Memory = mem
	verdict(arm, cfg)
	for _, p := range arm.Open.Timeline {
		fmt.Fprintf(pr, "   t=%3.0fs %-8s offered %6d ok %6d shed %6d other errors %6d p50 %8.2f ms p99 %8.2f ms\n",
			p.Elapsed, p.Step, p.Offered, p.Ops, p.Shed, p.Errors-p.Shed, p.P50, p.P99)
	}
	return arm, nil
}

// verdict derives the figures the issue asks for from an arm's
// measurements.
func verdict(a *Arm, cfg Config) {
	var over, normal bench.StepResult
	for _, s := range a.Open.Steps {
		switch s.Name {
		case "overload":
			over = s
		case "normal":
			normal = s
		}
	}
	if a.PeakOps > 0 {
		a.GoodputRatio = over.Goodput / a.PeakOps
	}
	a.AdmittedP99 = over.Latency.P99
	if a.PeakP99 > 0 {
		a.AdmittedP99Ratio = a.AdmittedP99 / a.PeakP99
	}
	a.NormalP99 = normal.Latency.P99
	a.RecoverySeconds = recoverySeconds(a.Open.Timeline, cfg.NormalTime+cfg.Overload, 2*a.NormalP99, 3)
}

// recoverySeconds returns the time from end (since the timeline began) to
// the start of the first of run consecutive ticks whose p99 is at most
// limit, or -1 when that never happens. Ticks are bench.DefaultTick long.
func recoverySeconds(tl []bench.OpenPoint, end time.Duration, limit float64, run int) float64 {
	tick := bench.DefaultTick.Seconds()
	streak := 0
	for i, p := range tl {
		if p.Elapsed-tick < end.Seconds()-1e-9 {
			continue // began before the end
		}
		if p.Ops == 0 || p.P99 > limit {
			streak = 0
			continue
		}
		if streak++; streak == run {
			return tl[i-run+1].Elapsed - tick - end.Seconds()
		}
	}
	return -1
}

func writeResults(dir string, res *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "results.md"))
	if err != nil {
		return err
	}
	defer f.Close()
	writeMarkdown(f, res)
	return nil
}

// writeMarkdown writes the comparison table.
func writeMarkdown(w io.Writer, res *Result) {
	s := res.Settings
	fmt.Fprintf(w, "\n## Overload: %s\n\n", res.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- command: `%s`\n", res.Command)
	fmt.Fprintf(w, "- machine: %d CPUs (%s), %s/%s, %s\n", res.Host.NumCPU, res.Host.CPUModel, res.Host.OS, res.Host.Arch, res.Host.GoVersion)
	fmt.Fprintf(w, "- cluster: %d node processes per arm on 127.0.0.1 (pebble, fsync), keyspace rf %d, consistency %s; YCSB %s, %d records of %d B, zipfian\n",
		s.Nodes, s.RF, s.Consistency, s.Workload, s.Records, s.ValueSize)
	fmt.Fprintf(w, "- schedule: closed loop %d clients %v (after %v warmup) → open loop %.2f× peak %v → %.0f× peak %v → %.2f× peak %v\n\n",
		s.Concurrency, s.Peak, s.Warmup, s.Normal, s.NormalTime, s.Multiplier, s.Overload, s.Normal, s.Recovery)
	fmt.Fprintln(w, "| arm | peak ops/s | peak p99 ms | offered ops/s | goodput ops/s | goodput / peak | shed | other errors | admitted p99 ms | admitted p99 / peak p99 | normal p99 ms | recovery s | peak RSS per node (VmHWM) MiB | max RSS in overload MiB | CPUs in overload: nodes / bench / other processes |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
	for _, a := range res.Arms {
		var over bench.StepResult
		for _, st := range a.Open.Steps {
			if st.Name == "overload" {
				over = st
			}
		}
		shed := over.ErrorKinds["resource_exhausted/overloaded"]
		var hwm, rss string
		for i, m := range a.Memory {
			if i > 0 {
				hwm += ", "
				rss += ", "
			}
			hwm += fmt.Sprintf("%.0f", float64(m.PeakRSS)/(1<<20))
			rss += fmt.Sprintf("%.0f", float64(m.OverloadRSS)/(1<<20))
		}
		rec := fmt.Sprintf("%.0f", a.RecoverySeconds)
		if a.RecoverySeconds < 0 {
			rec = fmt.Sprintf("> %.0f", s.Recovery.Seconds())
		}
		fmt.Fprintf(w, "| %s | %.0f | %.2f | %.0f | %.0f | %.2f | %d | %d | %.2f | %.2f | %.2f | %s | %s | %s | %.2f / %.2f / %.2f |\n",
			a.Name, a.PeakOps, a.PeakP99, over.Rate, over.Goodput, a.GoodputRatio, shed, over.Errors-shed,
			a.AdmittedP99, a.AdmittedP99Ratio, a.NormalP99, rec, hwm, rss, a.NodeCores, a.BenchCores, a.OtherCores)
	}
	for _, a := range res.Arms {
		for _, st := range a.Open.Steps {
			if len(st.ErrorKinds) > 0 {
				fmt.Fprintf(w, "\n%s, %s step: errors by kind %v", a.Name, st.Name, st.ErrorKinds)
			}
		}
		fmt.Fprintf(w, "\n%s: at most %d requests outstanding in the bench", a.Name, a.Open.MaxOutstanding)
	}
	fmt.Fprintln(w)
}

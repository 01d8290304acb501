package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/adaptkv/adaptkv/bench"
)

// Systems and settings as they appear in the tables.
const (
	sysAdaptkv = "adaptkv"
	sysEtcd    = "etcd"
	sysRedis   = "redis"
	sysEcho    = "grpc-echo"

	setOne          = "one"
	setQuorum       = "quorum"
	setLinearizable = "linearizable"
	setSerializable = "serializable"
	setAOFAlways    = "aof always"
	// Compare-and-set (workload cas): adaptkv's PutIf(IfVersion) and
	// etcd's Txn comparing the mod revision, each client on a key of its
	// own, or every client on --hot-keys keys.
	setPutIf    = "putif"
	setPutIfHot = "putif hot"
	setTxn      = "txn"
	setTxnHot   = "txn hot"
	setBare     = "bare unary"
)

// phase is one measured run of one workload on one system.
type phase struct {
	System   string        `json:"system"`
	Setting  string        `json:"setting"`
	Workload string        `json:"workload"`
	Result   *bench.Result `json:"result"`
	// CPU is how the machine's CPUs were used during the phase, warmup
	// included; nil where /proc is not available.
	CPU *CPUUse `json:"cpu,omitempty"`
}

// results are every phase of a comparison.
type results []phase

// find returns the phase of system and setting for workload, or nil.
func (rs results) find(system, setting, workload string) *phase {
	for i := range rs {
		p := &rs[i]
		if p.System == system && p.Setting == setting && p.Workload == workload {
			return p
		}
	}
	return nil
}

// target is one of the goals: adaptkv at a level against a
// baseline, with the least throughput ratio and the greatest p99 ratio
// that meet it (0: no bound).
type target struct {
	workloads       []string
	level           string
	baseSystem      string
	baseSetting     string
	minThroughput   float64
	maxP99          float64
	informationOnly bool
}

// targets are the goals from the issue, then the informational comparisons
// against etcd's serializable reads.
var targets = []target{
	{workloads: []string{"a", "b"}, level: setOne, baseSystem: sysEtcd, baseSetting: setLinearizable, minThroughput: 4, maxP99: 0.5},
	{workloads: []string{"a", "b"}, level: setQuorum, baseSystem: sysEtcd, baseSetting: setLinearizable, minThroughput: 2.5, maxP99: 0.75},
	{workloads: []string{"a", "b"}, level: setOne, baseSystem: sysRedis, baseSetting: setAOFAlways, minThroughput: 0.5},
	{workloads: []string{"c"}, level: setOne, baseSystem: sysEcho, baseSetting: setBare, minThroughput: 0.7},
	{workloads: []string{"cas"}, level: setPutIf, baseSystem: sysEtcd, baseSetting: setTxn, minThroughput: 2, maxP99: 1},
	{workloads: []string{"c"}, level: setLinearizable, baseSystem: sysEtcd, baseSetting: setLinearizable, minThroughput: 2},
	{workloads: []string{"cas"}, level: setPutIfHot, baseSystem: sysEtcd, baseSetting: setTxnHot, informationOnly: true},
	{workloads: []string{"a", "b"}, level: setOne, baseSystem: sysEtcd, baseSetting: setSerializable, informationOnly: true},
	{workloads: []string{"a", "b"}, level: setQuorum, baseSystem: sysEtcd, baseSetting: setSerializable, informationOnly: true},
	{workloads: []string{"a", "b"}, level: setQuorum, baseSystem: sysRedis, baseSetting: setAOFAlways, informationOnly: true},
}

// ratio is adaptkv's figure over the baseline's.
type ratio struct {
	workload             string
	level                string
	base                 string
	throughput, p50, p99 float64
	// cpuPerOp is adaptkv's CPU time per operation over the baseline's
	// (servers and load generator); 0 when unknown. Unlike throughput it
	// hardly moves when other processes share the machine.
	cpuPerOp float64
	goal     string
	met      string // "yes", "no" or "" (no goal)
}

// ratios computes every target whose phases were measured.
func (rs results) ratios() []ratio {
	var out []ratio
	for _, t := range targets {
		for _, w := range t.workloads {
			a := rs.find(sysAdaptkv, t.level, w)
			b := rs.find(t.baseSystem, t.baseSetting, w)
			if a == nil || b == nil || b.Result.Throughput == 0 {
				continue
			}
			r := ratio{
				workload:   strings.ToUpper(w),
				level:      t.level,
				base:       t.baseSystem + " (" + t.baseSetting + ")",
				throughput: a.Result.Throughput / b.Result.Throughput,
				p50:        safeDiv(a.Result.Latency.P50, b.Result.Latency.P50),
				p99:        safeDiv(a.Result.Latency.P99, b.Result.Latency.P99),
			}
			if ca, cb := a.cpuPerOp(), b.cpuPerOp(); ca > 0 && cb > 0 {
				r.cpuPerOp = ca / cb
			}
			if !t.informationOnly {
				var goals []string
				met := true
				if t.minThroughput > 0 {
					goals = append(goals, fmt.Sprintf("throughput ≥ %g×", t.minThroughput))
					met = met && r.throughput >= t.minThroughput
				}
				if t.maxP99 > 0 {
					goals = append(goals, fmt.Sprintf("p99 ≤ %g×", t.maxP99))
					met = met && r.p99 <= t.maxP99
				}
				r.goal = strings.Join(goals, ", ")
				r.met = map[bool]string{true: "yes", false: "**no**"}[met]
			}
			out = append(out, r)
		}
	}
	return out
}

// cpuPerOp is the CPU seconds the phase's processes used per operation, 0
// when unknown.
func (p *phase) cpuPerOp() float64 {
	if p.CPU == nil || p.Result.Throughput <= 0 {
		return 0
	}
	return p.CPU.Ours / p.Result.Throughput
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// writeMarkdown writes the results table and the ratios table.
func (rs results) writeMarkdown(w io.Writer) {
	fmt.Fprintln(w, "| workload | system | setting | ops/s | p50 ms | p99 ms | p99.9 ms | errors | CPUs used: ours / others | CPU µs per op |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, p := range rs {
		r := p.Result
		errs := fmt.Sprint(r.Errors)
		if r.Errors > 0 {
			var kinds []string
			for k, n := range r.ErrorKinds {
				kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
			}
			errs += " (" + strings.Join(kinds, ", ") + ")"
		}
		cpu, perOp := "n/a", "n/a"
		if p.CPU != nil {
			cpu = fmt.Sprintf("%.2f / %.2f", p.CPU.Ours, p.CPU.Other)
			if c := p.cpuPerOp(); c > 0 {
				// Servers and load generator together: on a machine
				// whose cores they share, this is what bounds
				// throughput.
				perOp = fmt.Sprintf("%.0f", c*1e6)
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f | %.2f | %.2f | %.2f | %s | %s | %s |\n",
			strings.ToUpper(p.Workload), p.System, p.Setting, r.Throughput, r.Latency.P50, r.Latency.P99, r.Latency.P999, errs, cpu, perOp)
	}
	rats := rs.ratios()
	if len(rats) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | adaptkv at | against | throughput ratio | p50 ratio | p99 ratio | CPU per op ratio | goal | met |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---|---|")
	for _, r := range rats {
		goal := r.goal
		if goal == "" {
			goal = "(for information)"
		}
		cpu := "n/a"
		if r.cpuPerOp > 0 {
			cpu = fmt.Sprintf("%.2f×", r.cpuPerOp)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.2f× | %.2f× | %.2f× | %s | %s | %s |\n",
			r.workload, r.level, r.base, r.throughput, r.p50, r.p99, cpu, goal, r.met)
	}
}

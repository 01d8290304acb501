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
	System   string `json:"system"`
	Setting  string `json:"setting"`
	Workload string `json:"workload"`
	// TLS is whether the system ran with mutual TLS on all its links.
	TLS    bool          `json:"tls"`
	Result *bench.Result `json:"result"`
	// CPU is how the machine's CPUs were used during the phase, warmup
	// included; nil where /proc is not available.
	CPU *CPUUse `json:"cpu,omitempty"`
	// Point is the --sweep value the phase ran at ("clients=8"); empty
	// without a sweep.
	Point string `json:"point,omitempty"`
	// NodeProfile and ClientProfile are the CPU profiles of node n1 and of
	// the client process taken during the phase (--profile), if any.
	NodeProfile   string `json:"node_profile,omitempty"`
	ClientProfile string `json:"client_profile,omitempty"`
}

// results are every phase of a comparison.
type results []phase

// find returns the phase of system and setting for workload with or
// without TLS, or nil.
func (rs results) find(system, setting, workload string, secure bool) *phase {
	for i := range rs {
		p := &rs[i]
		if p.System == system && p.Setting == setting && p.Workload == workload && p.TLS == secure {
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
	{workloads: []string{"c"}, level: setOne, baseSystem: sysEcho, baseSetting: setBare, minThroughput: 0.8},
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
	tls                  bool
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

// ratios computes every target whose phases were measured, for each
// sitting (with and without TLS): adaptkv against etcd with the same
// transport security, against Redis and the echo floor (always
// plaintext) as they are.
func (rs results) ratios() []ratio {
	var out []ratio
	for _, secure := range rs.sittings() {
		for _, t := range targets {
			for _, w := range t.workloads {
				a := rs.find(sysAdaptkv, t.level, w, secure)
				b := rs.find(t.baseSystem, t.baseSetting, w, secure && t.baseSystem == sysEtcd)
				if a == nil || b == nil || b.Result.Throughput == 0 {
					continue
				}
				out = append(out, t.ratio(w, secure, a, b))
			}
		}
	}
	return out
}

// sittings are the TLS settings adaptkv's phases ran with, with TLS first.
func (rs results) sittings() []bool {
	var on, off bool
	for _, p := range rs {
		if p.System == sysAdaptkv {
			on = on || p.TLS
			off = off || !p.TLS
		}
	}
	var out []bool
	if on {
		out = append(out, true)
	}
	if off {
		out = append(out, false)
	}
	return out
}

// ratio is adaptkv's phase a against the baseline's b for workload w.
func (t target) ratio(w string, secure bool, a, b *phase) ratio {
	r := ratio{
		workload:   strings.ToUpper(w),
		tls:        secure,
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
	return r
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
	fmt.Fprintln(w, "| workload | system | setting | TLS | ops/s | p50 ms | p99 ms | p99.9 ms | errors | CPUs used: ours / others | CPU µs per op |")
	fmt.Fprintln(w, "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
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
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.0f | %.2f | %.2f | %.2f | %s | %s | %s |\n",
			strings.ToUpper(p.Workload), p.System, p.Setting, tlsName(p.TLS), r.Throughput, r.Latency.P50, r.Latency.P99, r.Latency.P999, errs, cpu, perOp)
	}
	rs.writeRatios(w)
	rs.writeTLSCost(w)
}

// writeRatios writes adaptkv's ratios to the baselines.
func (rs results) writeRatios(w io.Writer) {
	rats := rs.ratios()
	if len(rats) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | TLS | adaptkv at | against | throughput ratio | p50 ratio | p99 ratio | CPU per op ratio | goal | met |")
	fmt.Fprintln(w, "|---|---|---|---|---:|---:|---:|---:|---|---|")
	for _, r := range rats {
		goal := r.goal
		if goal == "" {
			goal = "(for information)"
		}
		cpu := "n/a"
		if r.cpuPerOp > 0 {
			cpu = fmt.Sprintf("%.2f×", r.cpuPerOp)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.2f× | %.2f× | %.2f× | %s | %s | %s |\n",
			r.workload, tlsName(r.tls), r.level, r.base, r.throughput, r.p50, r.p99, cpu, goal, r.met)
	}
}

// tlsCost is what TLS costs one system at one setting and workload: its
// phase with TLS against its phase without.
type tlsCost struct {
	system, setting, workload string
	on, off                   *phase
	// throughput and p99 are the on/off ratios; cpuAdded is the CPU
	// microseconds per operation TLS adds (0 when unknown).
	throughput, p50, p99 float64
	cpuAdded             float64
}

// tlsCosts pairs every phase measured with TLS with the same phase
// without, in the order the phases ran.
func (rs results) tlsCosts() []tlsCost {
	var out []tlsCost
	for i := range rs {
		on := &rs[i]
		if !on.TLS {
			continue
		}
		off := rs.find(on.System, on.Setting, on.Workload, false)
		if off == nil || off.Result.Throughput == 0 {
			continue
		}
		c := tlsCost{
			system: on.System, setting: on.Setting, workload: strings.ToUpper(on.Workload), on: on, off: off,
			throughput: on.Result.Throughput / off.Result.Throughput,
			p50:        safeDiv(on.Result.Latency.P50, off.Result.Latency.P50),
			p99:        safeDiv(on.Result.Latency.P99, off.Result.Latency.P99),
		}
		if a, b := on.cpuPerOp(), off.cpuPerOp(); a > 0 && b > 0 {
			c.cpuAdded = (a - b) * 1e6
		}
		out = append(out, c)
	}
	return out
}

// tlsPairs are the settings whose costs of TLS are set side by side:
// adaptkv's quorum against etcd's linearizable reads (the pair),
// and one against serializable.
var tlsPairs = [][2]string{{setQuorum, setLinearizable}, {setOne, setSerializable}}

// tlsVerdict compares adaptkv's loss from TLS with etcd's at one pair of
// settings and one workload.
type tlsVerdict struct {
	workload, level, etcdSetting string
	ours, theirs                 tlsCost
	// noLarger: our throughput keeps at least etcd's share and our p99
	// grows by no more than etcd's.
	noLarger bool
}

// tlsVerdicts compares the costs of TLS of adaptkv and etcd.
func (rs results) tlsVerdicts() []tlsVerdict {
	costs := rs.tlsCosts()
	get := func(system, setting, workload string) *tlsCost {
		for i := range costs {
			if c := &costs[i]; c.system == system && c.setting == setting && c.workload == workload {
				return c
			}
		}
		return nil
	}
	var out []tlsVerdict
	for _, pair := range tlsPairs {
		for _, c := range costs {
			if c.system != sysAdaptkv || c.setting != pair[0] {
				continue
			}
			e := get(sysEtcd, pair[1], c.workload)
			if e == nil {
				continue
			}
			out = append(out, tlsVerdict{
				workload: c.workload, level: pair[0], etcdSetting: pair[1], ours: c, theirs: *e,
				noLarger: c.throughput >= e.throughput && c.p99 <= e.p99,
			})
		}
	}
	return out
}

// writeTLSCost writes the cost of TLS to each system and the comparison
// of adaptkv's loss with etcd's, when both sittings were measured.
func (rs results) writeTLSCost(w io.Writer) {
	costs := rs.tlsCosts()
	if len(costs) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Cost of TLS (the same system, setting and workload with mutual TLS on every link against plaintext):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | system | setting | ops/s off → on | throughput on/off | p50 ms off → on | p99 ms off → on | p99 on/off | CPU µs per op off → on (added) |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|")
	for _, c := range costs {
		cpu := "n/a"
		if c.cpuAdded != 0 {
			cpu = fmt.Sprintf("%.0f → %.0f (%+.0f)", c.off.cpuPerOp()*1e6, c.on.cpuPerOp()*1e6, c.cpuAdded)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f → %.0f | %.2f× | %.2f → %.2f | %.2f → %.2f | %.2f× | %s |\n",
			c.workload, c.system, c.setting, c.off.Result.Throughput, c.on.Result.Throughput, c.throughput,
			c.off.Result.Latency.P50, c.on.Result.Latency.P50, c.off.Result.Latency.P99, c.on.Result.Latency.P99, c.p99, cpu)
	}
	vs := rs.tlsVerdicts()
	if len(vs) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | adaptkv at | etcd at | adaptkv throughput on/off | etcd throughput on/off | adaptkv p99 on/off | etcd p99 on/off | adaptkv's loss no larger than etcd's |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---|")
	for _, v := range vs {
		fmt.Fprintf(w, "| %s | %s | %s | %.2f× | %.2f× | %.2f× | %.2f× | %s |\n",
			v.workload, v.level, v.etcdSetting, v.ours.throughput, v.theirs.throughput, v.ours.p99, v.theirs.p99,
			map[bool]string{true: "yes", false: "**no**"}[v.noLarger])
	}
}

// writeBudget writes the CPU budget per operation: for every phase, the
// CPU microseconds its servers and its client process spent per
// operation, and the total against the echo floor's (the bare gRPC call
// measured in the same run, at the same sweep point when there is one).
func (c *comparison) writeBudget(w io.Writer) {
	floors := map[string]float64{}
	for i := range c.results {
		p := &c.results[i]
		if p.System == sysEcho {
			if v := p.cpuPerOp(); v > 0 {
				floors[p.Point] = v * 1e6
			}
		}
	}
	have := false
	for i := range c.results {
		if c.results[i].CPU != nil {
			have = true
		}
	}
	if !have {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU budget per operation (CPU time of the servers' processes and of the client process, from /proc, over the phase's operations; warmup included in both):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | system | setting | TLS | point | ops/s | servers µs/op | client µs/op | total µs/op | total / echo floor's |")
	fmt.Fprintln(w, "|---|---|---|---|---|---:|---:|---:|---:|---:|")
	for i := range c.results {
		p := &c.results[i]
		srv, cli := p.perOp()
		if srv+cli <= 0 {
			continue
		}
		floor := "n/a"
		if f := floors[p.Point]; f > 0 {
			floor = fmt.Sprintf("%.2f×", (srv+cli)/f)
		}
		point := p.Point
		if point == "" {
			point = fmt.Sprintf("clients=%d", p.Result.Concurrency)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.0f | %s | %s | %.0f | %s |\n",
			strings.ToUpper(p.Workload), p.System, p.Setting, tlsName(p.TLS), point, p.Result.Throughput, us(srv), us(cli), srv+cli, floor)
	}
	c.writeProfiles(w)
}

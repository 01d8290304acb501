package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
)

// ReportSchema names the layout of Report's JSON; it changes when a field
// changes meaning or goes away, so that scripts can tell.
const ReportSchema = "adaptkv.bench/v1"

// Report is what `adaptkv bench --json` prints: the settings, the machine
// and the results of the load and run phases.
type Report struct {
	Schema   string   `json:"schema"`
	Store    string   `json:"store"`
	Target   Target   `json:"target"`
	Settings Settings `json:"settings"`
	Host     Host     `json:"host"`
	// Load is absent when the load phase was skipped.
	Load *Result `json:"load,omitempty"`
	Run  *Result `json:"run"`
}

// Target says which cluster was measured.
type Target struct {
	// Endpoints of the cluster; for a local cluster, its nodes.
	Endpoints []string `json:"endpoints"`
	// Local is the node count of a cluster the command started itself, 0
	// for an external one.
	Local    int  `json:"local,omitempty"`
	InMemory bool `json:"in_memory,omitempty"`
}

// Settings are the benchmark's parameters.
type Settings struct {
	Workload      string       `json:"workload"`
	Description   string       `json:"description"`
	Distribution  Distribution `json:"distribution"`
	Records       int64        `json:"records"`
	ValueSize     int          `json:"value_size"`
	Concurrency   int          `json:"concurrency"`
	Duration      float64      `json:"duration_s,omitempty"`
	Operations    int64        `json:"operations,omitempty"`
	Warmup        float64      `json:"warmup_s,omitempty"`
	MaxScanLength int          `json:"max_scan_length,omitempty"`
	Keyspace      string       `json:"keyspace"`
	RF            int          `json:"rf"`
	Consistency   string       `json:"consistency"`
	Seed          uint64       `json:"seed"`
}

// Host describes the machine the benchmark ran on; a figure means little
// without it.
type Host struct {
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	NumCPU    int    `json:"num_cpu"`
	CPUModel  string `json:"cpu_model,omitempty"`
}

// ThisHost describes the running machine.
func ThisHost() Host {
	return Host{
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS,
		Arch:      runtime.GOARCH,
		NumCPU:    runtime.NumCPU(),
		CPUModel:  cpuModel(),
	}
}

// cpuModel reads the first "model name" of /proc/cpuinfo; empty elsewhere.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("bench: write JSON: %w", err)
	}
	return nil
}

// WriteText writes r for people: the settings, a line per phase, a table
// of latency percentiles per operation and the errors by kind.
func (r *Report) WriteText(w io.Writer) error {
	s := r.Settings
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s: workload %s (%s), %s over %d records of %d B, %d clients, consistency %s, rf %d, seed %d\n",
		r.Store, s.Workload, s.Description, s.Distribution, s.Records, s.ValueSize, s.Concurrency, s.Consistency, s.RF, s.Seed)
	if r.Target.Local > 0 {
		engine := "pebble"
		if r.Target.InMemory {
			engine = "in-memory"
		}
		fmt.Fprintf(bw, "cluster: %d local in-process nodes (%s)\n", r.Target.Local, engine)
	} else {
		fmt.Fprintf(bw, "cluster: %s\n", strings.Join(r.Target.Endpoints, ","))
	}
	if r.Load != nil {
		fmt.Fprintf(bw, "load: %d records in %.1f s (%.0f ops/s), %d errors\n", r.Load.Ops, r.Load.Elapsed, r.Load.Throughput, r.Load.Errors)
	}
	if r.Run != nil {
		fmt.Fprintf(bw, "run:  %d ops in %.1f s (%.0f ops/s), %d errors\n\n", r.Run.Ops, r.Run.Elapsed, r.Run.Throughput, r.Run.Errors)
		writeLatencyTable(bw, r.Run)
		writeNotApplied(bw, r.Run)
		writeErrors(bw, r.Run)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("bench: write report: %w", err)
	}
	return nil
}

func writeLatencyTable(w io.Writer, res *Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tops\tops/s\tmean ms\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\terrors\t")
	row := func(name string, ops, errs int64, l Latency) {
		tput := 0.0
		if res.Elapsed > 0 {
			tput = float64(ops) / res.Elapsed
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t\n",
			name, ops, tput, l.Mean, l.P50, l.P90, l.P99, l.P999, l.Max, errs)
	}
	for _, name := range OpNames(res) {
		o := res.Operations[name]
		row(name, o.Ops, o.Errors, o.Latency)
	}
	if len(res.Operations) > 1 {
		row("total", res.Ops, res.Errors, res.Latency)
	}
	tw.Flush()
}

// writeNotApplied says how many conditional writes found their condition
// false (contention on the key).
func writeNotApplied(w io.Writer, res *Result) {
	for _, name := range OpNames(res) {
		if o := res.Operations[name]; o.NotApplied > 0 {
			fmt.Fprintf(w, "\n%s: %d conditional writes not applied (the key had changed)\n", name, o.NotApplied)
		}
	}
}

func writeErrors(w io.Writer, res *Result) {
	if res.Errors == 0 {
		return
	}
	fmt.Fprintln(w, "\nerrors by kind:")
	for _, name := range OpNames(res) {
		o := res.Operations[name]
		for _, k := range sortedKinds(o.ErrorKinds) {
			fmt.Fprintf(w, "  %-7s %-40s %d\n", name, k, o.ErrorKinds[k])
		}
	}
}

// LiveLine formats a timeline point as the one-line status printed every
// second while a run goes on.
func LiveLine(p Point) string {
	return fmt.Sprintf("%6.1fs  %9.0f ops/s  p50 %7.3f ms  p99 %7.3f ms  errors %d", p.Elapsed, p.Throughput, p.P50, p.P99, p.Errors)
}

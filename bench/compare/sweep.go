package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/adaptkv/adaptkv/bench"
)

// The settings --sweep can vary.
const (
	sweepClients   = "clients"
	sweepValueSize = "value-size"
	sweepRecords   = "records"
)

// sweepSpec is --sweep: one setting and the values it takes, in order.
type sweepSpec struct {
	dim    string
	values []int64
}

// parseSweep reads "clients=1,8,32", "value-size=128,1024" or
// "records=100000,10000000"; "" is no sweep.
func parseSweep(s string) (sweepSpec, error) {
	if strings.TrimSpace(s) == "" {
		return sweepSpec{}, nil
	}
	dim, list, ok := strings.Cut(s, "=")
	dim = strings.TrimSpace(strings.ToLower(dim))
	switch dim {
	case "concurrency":
		dim = sweepClients
	case "value_size", "valuesize":
		dim = sweepValueSize
	}
	if !ok || (dim != sweepClients && dim != sweepValueSize && dim != sweepRecords) {
		return sweepSpec{}, fmt.Errorf("--sweep %q: want clients=N,N,..., value-size=N,N,... or records=N,N,...", s)
	}
	sw := sweepSpec{dim: dim}
	for _, f := range strings.Split(list, ",") {
		f = strings.ReplaceAll(strings.TrimSpace(f), "_", "")
		if f == "" {
			continue
		}
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil || v <= 0 {
			return sweepSpec{}, fmt.Errorf("--sweep %q: %q is not a positive integer", s, f)
		}
		if slices.Contains(sw.values, v) {
			return sweepSpec{}, fmt.Errorf("--sweep %q: %d twice", s, v)
		}
		sw.values = append(sw.values, v)
	}
	if len(sw.values) == 0 {
		return sweepSpec{}, fmt.Errorf("--sweep %q: no values", s)
	}
	return sw, nil
}

// label names a sweep point as phases carry it.
func (sw sweepSpec) label(v int64) string { return fmt.Sprintf("%s=%d", sw.dim, v) }

// x is a phase's value of the swept setting.
func (sw sweepSpec) x(p *phase) int64 {
	switch sw.dim {
	case sweepClients:
		return int64(p.Result.Concurrency)
	case sweepValueSize:
		return int64(p.Result.ValueSize)
	default:
		return p.Result.Records
	}
}

// runPoints runs the comparison once, or once per sweep point. A clients
// sweep loads each system once and measures every phase at each number of
// clients in turn (clientPoints); a value-size or records sweep starts
// every system afresh at each point, since the data differ, and removes
// the point's data before the next unless --keep.
func (c *comparison) runPoints(ctx context.Context) error {
	sw := c.o.sweep
	if sw.dim == "" || sw.dim == sweepClients {
		return c.runSystems(ctx, c.o.workdir)
	}
	base := c.o
	defer func() { c.o = base }()
	for i, v := range sw.values {
		o := *base
		switch sw.dim {
		case sweepValueSize:
			o.valueSize = int(v)
		case sweepRecords:
			o.records = v
		}
		c.o, c.point = &o, sw.label(v)
		slog.Info("sweep point", "point", c.point, "n", i+1, "of", len(sw.values), "elapsed", time.Since(c.started).Round(time.Second))
		dir := filepath.Join(base.workdir, strings.ReplaceAll(c.point, "=", "-"))
		err := c.runSystems(ctx, dir)
		if !base.keep {
			os.RemoveAll(dir)
		}
		if err != nil {
			return fmt.Errorf("sweep %s: %w", c.point, err)
		}
	}
	return nil
}

// clientPoints are the numbers of clients each system is measured at:
// the sweep's with --sweep clients=..., else --concurrency alone.
func (c *comparison) clientPoints() []int {
	if c.o.sweep.dim != sweepClients {
		return []int{c.o.concurrency}
	}
	var out []int
	for _, v := range c.o.sweep.values {
		out = append(out, int(v))
	}
	return out
}

// setClients makes the next phases run with n clients.
func (c *comparison) setClients(n int) {
	c.clients = n
	if c.o.sweep.dim == sweepClients {
		c.point = c.o.sweep.label(int64(n))
	}
}

// series is one line of a sweep: a system at one setting, workload and TLS
// sitting, with its phases in the order of the swept values.
type series struct {
	name   string
	phases []*phase
}

// sweepSeries groups the phases into lines, in the order each line first
// appears.
func (rs results) sweepSeries(sw sweepSpec) []series {
	var out []series
	idx := map[string]int{}
	for i := range rs {
		p := &rs[i]
		name := fmt.Sprintf("%s %s %s", p.System, p.Setting, strings.ToUpper(p.Workload))
		if p.TLS {
			name += " tls"
		}
		j, ok := idx[name]
		if !ok {
			j = len(out)
			idx[name] = j
			out = append(out, series{name: name})
		}
		out[j].phases = append(out[j].phases, p)
	}
	for _, s := range out {
		slices.SortStableFunc(s.phases, func(a, b *phase) int { return cmp.Compare(sw.x(a), sw.x(b)) })
	}
	return out
}

// perOp is the CPU microseconds per operation of the servers and of the
// client process; 0 when unknown.
func (p *phase) perOp() (servers, client float64) {
	if p.CPU == nil || p.Result.Throughput <= 0 {
		return 0, 0
	}
	return p.CPU.Servers / p.Result.Throughput * 1e6, p.CPU.Client / p.Result.Throughput * 1e6
}

// us formats microseconds per operation, "n/a" when unknown.
func us(v float64) string {
	if v <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", v)
}

// writeSweepReport writes the report of a sweep: the settings, one row per
// phase grouped by line, adaptkv's ratios at each point, the CPU budget
// and, with --profile, where the time goes.
func (c *comparison) writeSweepReport(w io.Writer, elapsed time.Duration) {
	sw := c.o.sweep
	c.writeHeader(w, elapsed)
	var vs []string
	for _, v := range sw.values {
		vs = append(vs, strconv.FormatInt(v, 10))
	}
	fmt.Fprintf(w, "\nHow cost grows with %s (%s; every other setting as above, one run):\n\n", sw.dim, strings.Join(vs, ", "))
	fmt.Fprintf(w, "| system | setting | workload | %s | ops/s | p50 ms | p99 ms | errors | servers CPU µs/op | client CPU µs/op | others' CPUs |\n", sw.dim)
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range c.results.sweepSeries(sw) {
		for _, p := range s.phases {
			srv, cli := p.perOp()
			other := "n/a"
			if p.CPU != nil {
				other = fmt.Sprintf("%.2f", p.CPU.Other)
			}
			setting := p.Setting
			if p.TLS {
				setting += " (TLS)"
			}
			fmt.Fprintf(w, "| %s | %s | %s | %d | %.0f | %.2f | %.2f | %s | %s | %s | %s |\n",
				p.System, setting, strings.ToUpper(p.Workload), sw.x(p), p.Result.Throughput, p.Result.Latency.P50, p.Result.Latency.P99, errorsCell(p.Result), us(srv), us(cli), other)
		}
	}
	// adaptkv against the others at each point.
	var rows []string
	for _, v := range sw.values {
		var sub results
		for _, p := range c.results {
			if sw.x(&p) == v {
				sub = append(sub, p)
			}
		}
		for _, r := range sub.ratios() {
			cpu := "n/a"
			if r.cpuPerOp > 0 {
				cpu = fmt.Sprintf("%.2f×", r.cpuPerOp)
			}
			rows = append(rows, fmt.Sprintf("| %d | %s | %s | %s | %.2f× | %.2f× | %s |", v, r.workload, r.level, r.base, r.throughput, r.p99, cpu))
		}
	}
	if len(rows) > 0 {
		fmt.Fprintf(w, "\n| %s | workload | adaptkv at | against | throughput ratio | p99 ratio | CPU per op ratio |\n", sw.dim)
		fmt.Fprintln(w, "|---:|---|---|---|---:|---:|---:|")
		for _, r := range rows {
			fmt.Fprintln(w, r)
		}
	}
	c.writeBudget(w)
	c.writeNotes(w)
}

// sweepMetrics are the plot's panels: a label and how to read the metric
// from a phase (0: unknown, left out).
var sweepMetrics = []struct {
	label string
	log   bool
	get   func(p *phase) float64
}{
	{"throughput (ops/s)", true, func(p *phase) float64 { return p.Result.Throughput }},
	{"p50 latency (ms)", true, func(p *phase) float64 { return p.Result.Latency.P50 }},
	{"p99 latency (ms)", true, func(p *phase) float64 { return p.Result.Latency.P99 }},
	{"servers' CPU µs per op", false, func(p *phase) float64 { s, _ := p.perOp(); return s }},
	{"client's CPU µs per op", false, func(p *phase) float64 { _, c := p.perOp(); return c }},
}

// writeSweepPlot writes a PNG of the sweep to path: one panel per metric,
// one line per system and setting, the swept setting on a log x axis.
func (rs results) writeSweepPlot(path string, sw sweepSpec) error {
	ss := rs.sweepSeries(sw)
	if len(ss) == 0 {
		return errors.New("plot: no phases measured")
	}
	var ticks plot.ConstantTicks
	for _, v := range sw.values {
		ticks = append(ticks, plot.Tick{Value: float64(v), Label: humanCount(v)})
	}
	const cols = 2
	// One cell more than the metrics: the legend gets a cell of its own
	// rather than covering a panel's lines.
	rows := (len(sweepMetrics) + 1 + cols - 1) / cols
	legend := plot.New()
	legend.HideAxes()
	legend.Legend.Top, legend.Legend.Left = true, true
	legend.Legend.TextStyle.Font.Size = vg.Points(11)
	legend.Title.Text = "lines"
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for m, metric := range sweepMetrics {
		p := plot.New()
		p.Title.Text = metric.label
		p.X.Label.Text = sw.dim + " (log)"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = ticks
		p.X.Min, p.X.Max = float64(sw.values[0]), float64(sw.values[0])
		for _, v := range sw.values {
			p.X.Min, p.X.Max = math.Min(p.X.Min, float64(v)), math.Max(p.X.Max, float64(v))
		}
		p.X.Min, p.X.Max = p.X.Min/1.3, p.X.Max*1.3
		if metric.log {
			p.Y.Scale = plot.LogScale{}
			p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
			p.Y.Label.Text = "(log)"
		} else {
			p.Y.Min = 0
		}
		for i, s := range ss {
			var xys plotter.XYs
			for _, ph := range s.phases {
				if y := metric.get(ph); y > 0 {
					xys = append(xys, plotter.XY{X: float64(sw.x(ph)), Y: y})
				}
			}
			if len(xys) == 0 {
				continue
			}
			l, pts, err := plotter.NewLinePoints(xys)
			if err != nil {
				return fmt.Errorf("plot %s: %w", s.name, err)
			}
			l.Color, pts.Color = plotutil.Color(i), plotutil.Color(i)
			l.Width = vg.Points(1.5)
			l.Dashes = plotutil.Dashes(i)
			pts.Shape = plotutil.Shape(i)
			p.Add(l, pts)
			if m == 0 {
				legend.Legend.Add(s.name, l, pts)
			}
		}
		grid[m/cols][m%cols] = p
	}
	grid[len(sweepMetrics)/cols][len(sweepMetrics)%cols] = legend
	img := vgimg.New(vg.Points(900), vg.Points(float64(330*rows)))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(16), PadX: vg.Points(16), PadY: vg.Points(16)}
	canvases := plot.Align(grid, tiles, dc)
	for i := range grid {
		for j := range grid[i] {
			if grid[i][j] != nil {
				grid[i][j].Draw(canvases[i][j])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("plot: write %s: %w", path, err)
	}
	return f.Close()
}

// humanCount writes round counts short (100000 as 100k, 10000000 as 10M)
// for tick labels that fit.
func humanCount(v int64) string {
	switch {
	case v >= 1_000_000 && v%1_000_000 == 0:
		return fmt.Sprintf("%dM", v/1_000_000)
	case v >= 10_000 && v%1_000 == 0:
		return fmt.Sprintf("%dk", v/1_000)
	}
	return strconv.FormatInt(v, 10)
}

// errorsCell is a phase's failed operations with their share, "0" when
// none.
func errorsCell(r *bench.Result) string {
	if r.Errors == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%.1f%%)", r.Errors, 100*float64(r.Errors)/float64(r.Errors+r.Ops))
}

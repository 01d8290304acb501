package report

import (
	"fmt"
	"image/color"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/adaptkv/adaptkv/jepsen/history"
)

// Size of the images.
const (
	width  = 12 * vg.Inch
	height = 5 * vg.Inch
)

var (
	okColor   = color.RGBA{R: 0x1b, G: 0x9e, B: 0x77, A: 0xff}
	infoColor = color.RGBA{R: 0xd9, G: 0x5f, B: 0x02, A: 0xff}
	failColor = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}

	// Fault shading by kind, translucent.
	faultColors = map[string]color.NRGBA{
		"partition":   {R: 0xe7, G: 0x29, B: 0x8a, A: 0x30},
		"kill":        {R: 0x66, G: 0x66, B: 0x66, A: 0x30},
		"pause":       {R: 0x75, G: 0x70, B: 0xb3, A: 0x30},
		"clock":       {R: 0xe6, G: 0xab, B: 0x02, A: 0x38},
		"slow":        {R: 0x1f, G: 0x78, B: 0xb4, A: 0x30},
		"drop-writes": {R: 0xa6, G: 0x36, B: 0x03, A: 0x30},
	}
)

func faultColor(kind string) color.NRGBA {
	if c, ok := faultColors[kind]; ok {
		return c
	}
	return color.NRGBA{R: 0x99, G: 0x99, B: 0x99, A: 0x30}
}

// shade adds the fault windows as translucent bands from ymin to ymax,
// with one legend entry per kind.
func shade(p *plot.Plot, ops []history.Op, ymin, ymax float64) error {
	seen := map[string]bool{}
	ws := history.FaultWindows(ops)
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Kind < ws[j].Kind })
	for _, w := range ws {
		x0, x1 := float64(w.Start)/1e9, float64(w.End)/1e9
		poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: ymin}, {X: x1, Y: ymin}, {X: x1, Y: ymax}, {X: x0, Y: ymax}})
		if err != nil {
			return err
		}
		poly.Color = faultColor(w.Kind)
		poly.LineStyle.Width = 0
		p.Add(poly)
		if !seen[w.Kind] {
			seen[w.Kind] = true
			p.Legend.Add(w.Kind, poly)
		}
	}
	return nil
}

// phaseLines marks the phase boundaries with thin dashed lines, each
// labelled near the bottom with the phase it starts (the legend is at the
// top).
func phaseLines(p *plot.Plot, ops []history.Op, ymin, ymax float64, logY bool) error {
	var lx plotter.XYLabels
	ly := ymin + 0.02*(ymax-ymin)
	if logY {
		ly = ymin * 1.1
	}
	for _, op := range ops {
		if op.F != history.FPhase || op.Phase == history.PhaseSetup || op.Phase == history.PhaseCheck {
			continue
		}
		x := float64(op.Time) / 1e9
		l, err := plotter.NewLine(plotter.XYs{{X: x, Y: ymin}, {X: x, Y: ymax}})
		if err != nil {
			return err
		}
		l.LineStyle.Color = color.Gray{Y: 0x90}
		l.LineStyle.Width = vg.Points(0.5)
		l.LineStyle.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
		p.Add(l)
		lx.XYs = append(lx.XYs, plotter.XY{X: x, Y: ly})
		lx.Labels = append(lx.Labels, " "+op.Phase)
	}
	if len(lx.XYs) == 0 {
		return nil
	}
	labels, err := plotter.NewLabels(lx)
	if err != nil {
		return err
	}
	for i := range labels.TextStyle {
		labels.TextStyle[i].Color = color.Gray{Y: 0x60}
		labels.TextStyle[i].Font.Size = vg.Points(8)
	}
	p.Add(labels)
	return nil
}

// Latency writes a PNG of every client operation's latency (milliseconds,
// log scale) against the time it was invoked, coloured by how it completed,
// with per-second median and 99th percentile lines of the ok operations and
// the fault windows shaded.
func Latency(path string, ops []history.Op, title string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time since start (s)"
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true

	pts := map[history.Type]plotter.XYs{}
	perSec := map[int][]float64{}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, pr := range history.Pairs(ops) {
		if pr.Completion == nil {
			continue
		}
		l := math.Max(float64(pr.Return()-pr.Call())/1e6, 0.01)
		x := float64(pr.Call()) / 1e9
		pts[pr.Type()] = append(pts[pr.Type()], plotter.XY{X: x, Y: l})
		if pr.Type() == history.OK {
			perSec[int(x)] = append(perSec[int(x)], l)
		}
		lo, hi = math.Min(lo, l), math.Max(hi, l)
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0.1, 10
	}
	ymin, ymax := lo/1.5, hi*1.5
	p.Y.Min, p.Y.Max = ymin, ymax
	if err := shade(p, ops, ymin, ymax); err != nil {
		return err
	}
	if err := phaseLines(p, ops, ymin, ymax, true); err != nil {
		return err
	}
	for _, t := range []struct {
		typ history.Type
		c   color.Color
		s   draw.GlyphDrawer
	}{{history.OK, okColor, draw.CircleGlyph{}}, {history.Info, infoColor, draw.TriangleGlyph{}}, {history.Fail, failColor, draw.CrossGlyph{}}} {
		if len(pts[t.typ]) == 0 {
			continue
		}
		s, err := plotter.NewScatter(pts[t.typ])
		if err != nil {
			return err
		}
		s.GlyphStyle.Color = t.c
		s.GlyphStyle.Radius = vg.Points(1.2)
		s.GlyphStyle.Shape = t.s
		p.Add(s)
		p.Legend.Add(fmt.Sprintf("%s (%d)", t.typ, len(pts[t.typ])), s)
	}
	secs := make([]int, 0, len(perSec))
	for s := range perSec {
		secs = append(secs, s)
	}
	sort.Ints(secs)
	var p50, p99 plotter.XYs
	for _, s := range secs {
		v := perSec[s]
		sort.Float64s(v)
		q := func(f float64) float64 { return v[max(0, min(len(v)-1, int(math.Ceil(f*float64(len(v))))-1))] }
		p50 = append(p50, plotter.XY{X: float64(s) + 0.5, Y: q(0.5)})
		p99 = append(p99, plotter.XY{X: float64(s) + 0.5, Y: q(0.99)})
	}
	for _, l := range []struct {
		name string
		xys  plotter.XYs
		c    color.Color
	}{{"ok p50 per second", p50, color.RGBA{B: 0x80, A: 0xff}}, {"ok p99 per second", p99, color.RGBA{R: 0x80, A: 0xff}}} {
		if len(l.xys) < 2 {
			continue
		}
		line, err := plotter.NewLine(l.xys)
		if err != nil {
			return err
		}
		line.LineStyle.Color = l.c
		line.LineStyle.Width = vg.Points(1.2)
		p.Add(line)
		p.Legend.Add(l.name, line)
	}
	p.Add(plotter.NewGrid())
	return p.Save(width, height, path)
}

// Throughput writes a PNG of completed operations per second (ok, info and
// fail, by completion time), with the fault windows shaded.
func Throughput(path string, ops []history.Op, title string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time since start (s)"
	p.Y.Label.Text = "operations completed per second"
	p.Legend.Top = true
	counts := map[history.Type]map[int]int{history.OK: {}, history.Info: {}, history.Fail: {}}
	last := 0
	for _, op := range ops {
		if !op.IsClient() || op.Type == history.Invoke {
			continue
		}
		s := int(op.Time / 1e9)
		counts[op.Type][s]++
		last = max(last, s)
	}
	ymax := 1.0
	series := map[history.Type]plotter.XYs{}
	for typ, m := range counts {
		for s := 0; s <= last; s++ {
			series[typ] = append(series[typ], plotter.XY{X: float64(s) + 0.5, Y: float64(m[s])})
			ymax = math.Max(ymax, float64(m[s]))
		}
	}
	ymax *= 1.1
	p.Y.Min, p.Y.Max = 0, ymax
	if err := shade(p, ops, 0, ymax); err != nil {
		return err
	}
	if err := phaseLines(p, ops, 0, ymax, false); err != nil {
		return err
	}
	for _, t := range []struct {
		typ history.Type
		c   color.Color
	}{{history.OK, okColor}, {history.Info, infoColor}, {history.Fail, failColor}} {
		if len(series[t.typ]) < 2 {
			continue
		}
		line, err := plotter.NewLine(series[t.typ])
		if err != nil {
			return err
		}
		line.LineStyle.Color = t.c
		line.LineStyle.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(string(t.typ), line)
	}
	p.Add(plotter.NewGrid())
	return p.Save(width, height, path)
}

package scenario

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var armColors = map[string]color.Color{
	ArmOne:      color.RGBA{R: 210, G: 60, B: 40, A: 255},
	ArmQuorum:   color.RGBA{R: 40, G: 90, B: 200, A: 255},
	ArmAdaptive: color.RGBA{R: 20, G: 150, B: 60, A: 255},
}

// Floors of the log-scale panels: a slice with no stale read is drawn at
// the floor rather than left out, so that a clean stretch shows as clean.
const (
	plotMinMs  = 0.05
	plotMinPct = 0.001
)

// series is one line of a panel.
type series struct {
	name   string
	xys    plotter.XYs
	color  color.Color
	dashes []vg.Length
}

// panel is one of the plot's two graphs before it is drawn.
type panel struct {
	p      *plot.Plot
	series []series
}

func (pn *panel) add(s series) {
	if len(s.xys) > 0 {
		pn.series = append(pn.series, s)
	}
}

// yRange is the span of the panel's data, widened for the labels.
func (pn *panel) yRange() (float64, float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range pn.series {
		for _, xy := range s.xys {
			lo, hi = math.Min(lo, xy.Y), math.Max(hi, xy.Y)
		}
	}
	if math.IsInf(lo, 0) {
		return 1, 10
	}
	return lo / 1.6, hi * 3
}

// writePlot draws plot.png: read p99 per slice per arm on top, the stale
// rate per slice per arm (with the tuner's predicted rate for the adaptive
// arm and the bound) below, both on log scales against seconds from the
// start of phase 1. Phases are shaded and labelled, a dotted line marks
// where each phase's steady part begins, and purple lines mark the tuner's
// changes of arm_adaptive's configuration.
func writePlot(path string, res *Result) error {
	top := &panel{p: plot.New()}
	top.p.Title.Text = "read p99 per slice (log scale)"
	top.p.Y.Label.Text = "read p99 (ms)"
	bottom := &panel{p: plot.New()}
	bottom.p.Title.Text = "stale reads per slice (log scale; none drawn at the floor)"
	bottom.p.X.Label.Text = "time since phase 1 began (s)"
	bottom.p.Y.Label.Text = "stale reads (%)"

	lo, hi := math.Inf(1), math.Inf(-1)
	for _, a := range res.Arms {
		var p99, stale plotter.XYs
		for _, pt := range res.Timeline {
			if pt.Arm != a.Name || pt.Reads == 0 {
				continue
			}
			x := (pt.StartS + pt.EndS) / 2
			p99 = append(p99, plotter.XY{X: x, Y: math.Max(pt.ReadP99Ms, plotMinMs)})
			stale = append(stale, plotter.XY{X: x, Y: math.Max(100*pt.StaleRate, plotMinPct)})
			lo, hi = math.Min(lo, pt.StartS), math.Max(hi, pt.EndS)
		}
		top.add(series{name: a.Name, xys: p99, color: armColors[a.Name]})
		bottom.add(series{name: a.Name, xys: stale, color: armColors[a.Name]})
	}
	if math.IsInf(lo, 0) {
		return errors.New("scenario: plot: no slice with reads to draw")
	}
	if n := len(res.Phases); n > 0 {
		lo, hi = math.Min(lo, res.Phases[0].StartS), math.Max(hi, res.Phases[n-1].EndS)
	}
	var pred plotter.XYs
	for _, d := range res.Decisions {
		if d.PredictedStale >= 0 && d.OffsetS >= lo && d.OffsetS <= hi {
			pred = append(pred, plotter.XY{X: d.OffsetS, Y: math.Max(100*d.PredictedStale, plotMinPct)})
		}
	}
	bottom.add(series{name: "adaptive predicted", xys: pred, color: armColors[ArmAdaptive], dashes: []vg.Length{vg.Points(4), vg.Points(3)}})
	bottom.add(series{name: "bound", xys: plotter.XYs{{X: lo, Y: 100 * res.Config.MaxStale}, {X: hi, Y: 100 * res.Config.MaxStale}},
		color: color.Gray{Y: 60}, dashes: []vg.Length{vg.Points(1), vg.Points(3)}})

	for _, pn := range []*panel{top, bottom} {
		p := pn.p
		p.X.Min, p.X.Max = lo, hi
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		ymin, ymax := pn.yRange()
		p.Y.Min, p.Y.Max = ymin, ymax
		p.Legend.Top, p.Legend.Left = true, true
		// Shading first, so that the data is drawn over it.
		if err := decorate(p, res, ymin, ymax); err != nil {
			return err
		}
		for _, s := range pn.series {
			l, err := plotter.NewLine(s.xys)
			if err != nil {
				return fmt.Errorf("scenario: plot %s: %w", s.name, err)
			}
			l.LineStyle.Color, l.LineStyle.Width, l.LineStyle.Dashes = s.color, vg.Points(1.3), s.dashes
			p.Add(l)
			p.Legend.Add(s.name, l)
		}
		// Adding plotters widens the axes to their data (the shading
		// spans whole phases); keep the range of the measurements.
		p.X.Min, p.X.Max = lo, hi
		p.Y.Min, p.Y.Max = ymin, ymax
	}

	img := vgimg.New(vg.Points(1000), vg.Points(700))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(16), PadY: vg.Points(14)}
	plots := [][]*plot.Plot{{top.p}, {bottom.p}}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("scenario: plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("scenario: plot: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("scenario: plot: %w", err)
	}
	return nil
}

// decorate shades and labels the phases, and marks where their steady
// parts begin and where the tuner changed the adaptive arm.
func decorate(p *plot.Plot, res *Result, ymin, ymax float64) error {
	shades := []color.Color{color.RGBA{R: 232, G: 232, B: 250, A: 255}, color.RGBA{R: 250, G: 238, B: 222, A: 255}, color.RGBA{R: 228, G: 245, B: 228, A: 255}}
	var labels plotter.XYLabels
	for i, ph := range res.Phases {
		poly, err := plotter.NewPolygon(plotter.XYs{{X: ph.StartS, Y: ymin}, {X: ph.EndS, Y: ymin}, {X: ph.EndS, Y: ymax}, {X: ph.StartS, Y: ymax}})
		if err != nil {
			return fmt.Errorf("scenario: plot: %w", err)
		}
		poly.Color = shades[i%len(shades)]
		poly.LineStyle.Width = 0
		p.Add(poly)
		// Phase names at the bottom: the legend takes the top left.
		labels.XYs = append(labels.XYs, plotter.XY{X: ph.StartS, Y: ymin * 1.15})
		labels.Labels = append(labels.Labels, fmt.Sprintf(" %d. %s", i+1, ph.Name))
		if ph.SteadyFromS > ph.StartS && ph.SteadyFromS < ph.EndS {
			if err := vline(p, ph.SteadyFromS, ymin, ymax, color.Gray{Y: 150}, []vg.Length{vg.Points(2), vg.Points(2)}); err != nil {
				return err
			}
		}
	}
	k := 0
	for _, d := range res.Decisions {
		if !d.Changed || d.OffsetS < p.X.Min || d.OffsetS > p.X.Max {
			continue
		}
		if err := vline(p, d.OffsetS, ymin, ymax, color.RGBA{R: 120, G: 60, B: 160, A: 255}, nil); err != nil {
			return err
		}
		// Stagger the labels: changes often come a second apart (a move
		// and its step back).
		k++
		labels.XYs = append(labels.XYs, plotter.XY{X: d.OffsetS, Y: ymax / math.Pow(2, float64(1+k%4))})
		labels.Labels = append(labels.Labels, " "+d.To)
	}
	if len(labels.XYs) == 0 {
		return nil
	}
	l, err := plotter.NewLabels(labels)
	if err != nil {
		return fmt.Errorf("scenario: plot: %w", err)
	}
	for i := range l.TextStyle {
		l.TextStyle[i].Font.Size = vg.Points(8)
	}
	p.Add(l)
	return nil
}

// vline draws a vertical line at x.
func vline(p *plot.Plot, x, ymin, ymax float64, c color.Color, dashes []vg.Length) error {
	l, err := plotter.NewLine(plotter.XYs{{X: x, Y: ymin}, {X: x, Y: ymax}})
	if err != nil {
		return fmt.Errorf("scenario: plot: %w", err)
	}
	l.LineStyle.Color, l.LineStyle.Width, l.LineStyle.Dashes = c, vg.Points(0.8), dashes
	p.Add(l)
	return nil
}

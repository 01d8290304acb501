package bench

import (
	"errors"
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WritePlot writes a PNG of res's timeline to path: throughput on top, p50
// and p99 latency below, both against seconds since the measured part
// began. The two share the time axis so that a stall shows as a dip in one
// and a spike in the other at the same x.
func WritePlot(path, title string, res *Result) error {
	if res == nil || len(res.Timeline) == 0 {
		return errors.New("bench: plot: the run has no timeline to plot")
	}
	tput := make(plotter.XYs, len(res.Timeline))
	p50 := make(plotter.XYs, len(res.Timeline))
	p99 := make(plotter.XYs, len(res.Timeline))
	for i, p := range res.Timeline {
		tput[i] = plotter.XY{X: p.Elapsed, Y: p.Throughput}
		p50[i] = plotter.XY{X: p.Elapsed, Y: p.P50}
		p99[i] = plotter.XY{X: p.Elapsed, Y: p.P99}
	}

	top := plot.New()
	top.Title.Text = title
	top.Y.Label.Text = "ops/s"
	top.Y.Min = 0
	if err := addLine(top, "throughput", tput, color.RGBA{B: 200, A: 255}); err != nil {
		return err
	}

	bottom := plot.New()
	bottom.X.Label.Text = "time (s)"
	bottom.Y.Label.Text = "latency (ms)"
	bottom.Y.Min = 0
	if err := addLine(bottom, "p50", p50, color.RGBA{G: 150, A: 255}); err != nil {
		return err
	}
	if err := addLine(bottom, "p99", p99, color.RGBA{R: 200, A: 255}); err != nil {
		return err
	}
	bottom.Legend.Top = true

	img := vgimg.New(vg.Points(800), vg.Points(600))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(16), PadY: vg.Points(12)}
	plots := [][]*plot.Plot{{top}, {bottom}}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: plot: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	return nil
}

func addLine(p *plot.Plot, name string, xys plotter.XYs, c color.Color) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return fmt.Errorf("bench: plot %s: %w", name, err)
	}
	l.LineStyle.Color = c
	l.LineStyle.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// Command healthy runs the gray-failure detector's false-positive check of
// issue 16: a cluster of node processes with health detection on (its
// defaults) under YCSB B for a fixed time, no fault injected, recording the
// detector's view every --interval: each node's median read and write
// round trip as its peers saw it in the last window, and which nodes are
// flagged. A healthy run should flag no node.
//
//	go build -o /tmp/adaptkv ./cmd/adaptkv
//	go run ./bench/scenario/healthy --binary /tmp/adaptkv --out /tmp/healthy --duration 10m
//
// It writes samples.json, results.md and healthy.png into --out.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/adaptkv/adaptkv/bench"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node/launch"
)

// config holds the flags.
type config struct {
	Binary, Out  string
	Nodes        int
	Records      int64
	Concurrency  int
	Consistency  string
	Duration     time.Duration
	Interval     time.Duration
	HealthWindow time.Duration
}

// nodeView is one node as the detector's last window saw it.
type nodeView struct {
	ReadRTTms  float64 `json:"read_rtt_ms"`  // median read round trip; 0 if too few samples
	WriteRTTms float64 `json:"write_rtt_ms"` // median write round trip; 0 if too few samples
	Flagged    bool    `json:"flagged"`
}

// sample is one poll of the health report.
type sample struct {
	Elapsed float64             `json:"elapsed_s"`
	Leader  string              `json:"leader"`
	Nodes   map[string]nodeView `json:"nodes"`
}

// result is the run's output.
type result struct {
	Date      time.Time `json:"date"`
	Command   string    `json:"command"`
	Config    config    `json:"config"`
	Ops       int64     `json:"ops"`
	Errors    int64     `json:"errors"`
	ReadP99   float64   `json:"read_p99_ms"`
	UpdateP99 float64   `json:"update_p99_ms"`
	// Decisions are the health decisions the cluster recorded during the
	// run (flags and reinstatements); Flagged the nodes ever seen flagged.
	Decisions []client.HealthDecision `json:"decisions"`
	Flagged   []string                `json:"flagged"`
	Samples   []sample                `json:"samples"`
}

func main() {
	var cfg config
	flag.StringVar(&cfg.Binary, "binary", "", "adaptkv executable to start the nodes with (required)")
	flag.StringVar(&cfg.Out, "out", "healthy-results", "folder for samples.json, results.md, healthy.png and the nodes' data and logs")
	flag.IntVar(&cfg.Nodes, "nodes", 5, "node processes")
	flag.Int64Var(&cfg.Records, "records", 10000, "records to load")
	flag.IntVar(&cfg.Concurrency, "concurrency", 16, "closed-loop clients")
	flag.StringVar(&cfg.Consistency, "consistency", "quorum", "consistency of every request")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Minute, "how long to run YCSB B")
	flag.DurationVar(&cfg.Interval, "interval", 10*time.Second, "how often to record the detector's view")
	flag.DurationVar(&cfg.HealthWindow, "health-window", 2*time.Second, "the nodes' --health-window")
	replot := flag.String("replot", "", "only redraw the plot (and results.md) of this samples.json into --out")
	flag.Parse()
	if *replot != "" {
		if err := redraw(*replot, cfg.Out); err != nil {
			fmt.Fprintln(os.Stderr, "healthy:", err)
			os.Exit(1)
		}
		return
	}
	if cfg.Binary == "" {
		fmt.Fprintln(os.Stderr, "healthy: --binary is required (go build -o /tmp/adaptkv ./cmd/adaptkv)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, strings.Join(os.Args, " "), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "healthy:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, command string, pr io.Writer) error {
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}
	lcfg := launch.Config{Binary: cfg.Binary, Nodes: cfg.Nodes, Dir: filepath.Join(cfg.Out, "cluster"), Name: "healthy-run bench",
		Args: []string{"--log-level", "warn", "--health-window", cfg.HealthWindow.String()}}
	if err := lcfg.Secure(filepath.Join(cfg.Out, "certs")); err != nil {
		return err
	}
	l, err := launch.New(lcfg)
	if err != nil {
		return err
	}
	defer l.StopAll(10 * time.Second)
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = l.Start(sctx)
	cancel()
	if err != nil {
		return fmt.Errorf("cluster not healthy: %w", err)
	}
	level, err := bench.ParseConsistency(cfg.Consistency)
	if err != nil {
		return err
	}
	w, err := bench.ParseWorkload("b")
	if err != nil {
		return err
	}
	store, err := bench.OpenAdaptkv(ctx, bench.AdaptkvOptions{Endpoints: l.Endpoints(), Keyspace: "healthy", ReplicationFactor: 3,
		Consistency: level, CertsDir: l.Config().CertsDir})
	if err != nil {
		return err
	}
	defer store.Close()
	watcher, err := client.New(ctx, client.Config{Endpoints: l.Endpoints(), CertsDir: l.Config().CertsDir})
	if err != nil {
		return err
	}
	defer watcher.Close()
	bcfg := bench.Config{Workload: w, Records: cfg.Records, Concurrency: cfg.Concurrency, Seed: 1}
	if _, err := bench.Load(ctx, store, bcfg); err != nil {
		return err
	}

	res := &result{Date: time.Now().UTC(), Command: command, Config: cfg}
	start := time.Now()
	flagged := map[string]bool{}
	seen := map[string]bool{} // decisions already recorded, by node and time
	wctx, stopWatch := context.WithCancel(ctx)
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			hctx, cancel := context.WithTimeout(wctx, 5*time.Second)
			h, err := watcher.Health(hctx)
			cancel()
			if err != nil {
				fmt.Fprintf(pr, "   %5.0fs health: %v\n", time.Since(start).Seconds(), err)
				continue
			}
			s := sample{Elapsed: time.Since(start).Seconds(), Leader: h.NodeID, Nodes: map[string]nodeView{}}
			for _, id := range l.IDs() {
				s.Nodes[id] = nodeView{}
			}
			for _, e := range h.Evidence {
				v := s.Nodes[e.Node]
				ms := float64(e.Latency) / float64(time.Millisecond)
				if e.Verdict == "unknown" {
					ms = 0
				}
				if e.Op == "write" {
					v.WriteRTTms = ms
				} else {
					v.ReadRTTms = ms
				}
				s.Nodes[e.Node] = v
			}
			mu.Lock()
			for id := range h.Flagged {
				v := s.Nodes[id]
				v.Flagged = true
				s.Nodes[id] = v
				flagged[id] = true
			}
			for _, d := range h.Decisions {
				k := d.Node + d.At.String()
				if !seen[k] && d.At.After(start) {
					seen[k] = true
					res.Decisions = append(res.Decisions, d)
				}
			}
			res.Samples = append(res.Samples, s)
			mu.Unlock()
			fmt.Fprintf(pr, "   %5.0fs leader %s flagged %d evidence %d\n", s.Elapsed, h.NodeID, len(h.Flagged), len(h.Evidence))
		}
	})
	bcfg.Duration = cfg.Duration
	r, err := bench.Run(ctx, store, bcfg)
	stopWatch()
	wg.Wait()
	if err != nil {
		return err
	}
	res.Ops, res.Errors = r.Ops, r.Errors
	if op := r.Operations["read"]; op != nil {
		res.ReadP99 = op.Latency.P99
	}
	if op := r.Operations["update"]; op != nil {
		res.UpdateP99 = op.Latency.P99
	}
	for id := range flagged {
		res.Flagged = append(res.Flagged, id)
	}
	slices.Sort(res.Flagged)
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.Out, "samples.json"), b, 0o644); err != nil {
		return err
	}
	var md strings.Builder
	writeMarkdown(&md, res, l.IDs())
	if err := os.WriteFile(filepath.Join(cfg.Out, "results.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprint(pr, md.String())
	return writePlot(filepath.Join(cfg.Out, "healthy.png"), res, l.IDs())
}

// redraw renders results.md and healthy.png again from a run's samples.
func redraw(path, out string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res result
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var ids []string
	for i := 1; i <= res.Config.Nodes; i++ {
		ids = append(ids, fmt.Sprintf("n%d", i))
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var md strings.Builder
	writeMarkdown(&md, &res, ids)
	if err := os.WriteFile(filepath.Join(out, "results.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	return writePlot(filepath.Join(out, "healthy.png"), &res, ids)
}

// writeMarkdown summarises the run: the verdict, then per node the range
// of its median round trips over the samples.
func writeMarkdown(w io.Writer, res *result, ids []string) {
	c := res.Config
	fmt.Fprintf(w, "Healthy run, %s: %d nodes, YCSB B at %s, %d records, %d clients, %v, --health-window %v, a sample every %v.\n\n",
		res.Date.Format("2006-01-02"), c.Nodes, c.Consistency, c.Records, c.Concurrency, c.Duration, c.HealthWindow, c.Interval)
	fmt.Fprintf(w, "%d ops, %d errors, read p99 %.2f ms, update p99 %.2f ms; %d samples; nodes ever flagged: %v; health decisions: %d.\n\n",
		res.Ops, res.Errors, res.ReadP99, res.UpdateP99, len(res.Samples), orNone(res.Flagged), len(res.Decisions))
	fmt.Fprintln(w, "| node | read RTT median of samples (ms) | read RTT max (ms) | write RTT median (ms) | write RTT max (ms) | samples flagged |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, id := range ids {
		var rd, wr []float64
		nflag := 0
		for _, s := range res.Samples {
			v := s.Nodes[id]
			if v.ReadRTTms > 0 {
				rd = append(rd, v.ReadRTTms)
			}
			if v.WriteRTTms > 0 {
				wr = append(wr, v.WriteRTTms)
			}
			if v.Flagged {
				nflag++
			}
		}
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %.2f | %.2f | %d |\n", id, median(rd), maxOf(rd), median(wr), maxOf(wr), nflag)
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func maxOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return slices.Max(v)
}

var palette = []color.Color{
	color.RGBA{R: 31, G: 119, B: 180, A: 255}, color.RGBA{R: 255, G: 127, B: 14, A: 255},
	color.RGBA{R: 44, G: 160, B: 44, A: 255}, color.RGBA{R: 214, G: 39, B: 40, A: 255},
	color.RGBA{R: 148, G: 103, B: 189, A: 255}, color.RGBA{R: 140, G: 86, B: 75, A: 255},
}

// writePlot draws each node's median round trip as its peers saw it in the
// detector's last window against time, and below how many nodes were
// flagged.
func writePlot(path string, res *result, ids []string) error {
	if len(res.Samples) == 0 {
		return errors.New("no samples to plot")
	}
	read, flags := plot.New(), plot.New()
	read.Title.Text = fmt.Sprintf("Healthy run: %d nodes, YCSB B at %s, detection on (%v windows)", res.Config.Nodes, res.Config.Consistency, res.Config.HealthWindow)
	read.Y.Label.Text = "median read RTT to the node (ms)"
	read.X.Label.Text = "time (s)"
	flags.Y.Label.Text = "nodes flagged"
	flags.X.Label.Text = "time (s)"
	read.Y.Min = 0
	read.Legend.Top = true
	flags.Y.Min, flags.Y.Max = 0, float64(max(1, (len(ids)-1)/2))
	nflag := make(plotter.XYs, len(res.Samples))
	for i, s := range res.Samples {
		n := 0
		for _, v := range s.Nodes {
			if v.Flagged {
				n++
			}
		}
		nflag[i] = plotter.XY{X: s.Elapsed, Y: float64(n)}
	}
	for i, id := range ids {
		// The detector's evidence shows one kind of request per node and
		// window, nearly always reads; the rare write windows (their
		// round trip includes an fsync) are left out of the plot, so that
		// the lines compare like with like. results.md lists both.
		var rd plotter.XYs
		for _, s := range res.Samples {
			if v := s.Nodes[id]; v.ReadRTTms > 0 {
				rd = append(rd, plotter.XY{X: s.Elapsed, Y: v.ReadRTTms})
			}
		}
		if len(rd) == 0 {
			continue
		}
		ln, err := plotter.NewLine(rd)
		if err != nil {
			return err
		}
		ln.Color = palette[i%len(palette)]
		read.Add(ln)
		read.Legend.Add(id, ln)
	}
	ln, err := plotter.NewLine(nflag)
	if err != nil {
		return err
	}
	ln.Color = color.RGBA{R: 200, A: 255}
	flags.Add(ln)

	img := vgimg.New(vg.Points(800), vg.Points(560))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(16), PadY: vg.Points(12)}
	plots := [][]*plot.Plot{{read}, {flags}}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

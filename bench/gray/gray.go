// Package gray is the gray-failure experiment, `adaptkv bench --scenario
// gray-failure`: five node processes under YCSB B; after a steady phase one
// node turns slow (its replies to its peers, to its clients or both delayed
// through the unsafe test hooks), then recovers. It runs the schedule with
// the health detector on and off at each consistency level asked for, and
// reports how long the detector took to flag and to reinstate the node,
// and the read p99 of each phase in each arm.
package gray

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/adaptkv/adaptkv/bench"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node/launch"
)

// Config configures the experiment. Zero fields take the defaults of
// NewCommand's flags.
type Config struct {
	Binary, Out string
	Nodes       int
	Records     int64
	Concurrency int
	// Levels are the consistency levels to run the schedule at, each with
	// detection on and off.
	Levels   []string
	Workload string
	Steady   time.Duration
	Fault    time.Duration
	Recovery time.Duration
	Delay    time.Duration // the slow node's reply delay
	// Flap, when positive, turns the delay on and off every Flap during
	// the fault phase instead of holding it.
	Flap time.Duration
	Slow string // the node made slow
	// SlowTo says whose requests the slow node answers late: "peers" (its
	// replica replies), "clients" (the KV calls it coordinates) or "all".
	SlowTo       string
	HealthWindow time.Duration // the detector's window in the detection arm
	// Reinstate bounds the wait for reinstatement after the recovery phase.
	Reinstate time.Duration
	Seed      uint64
	Logger    *slog.Logger
	Command   string
}

// Phase is one phase's measurements.
type Phase struct {
	Name      string  `json:"name"`
	Ops       int64   `json:"ops"`
	Errors    int64   `json:"errors"`
	ReadP50   float64 `json:"read_p50_ms"`
	ReadP99   float64 `json:"read_p99_ms"`
	UpdateP99 float64 `json:"update_p99_ms"`
}

// Arm is one run of the schedule.
type Arm struct {
	Name      string  `json:"name"`
	Level     string  `json:"level"`
	Detection bool    `json:"detection"`
	Phases    []Phase `json:"phases"`
	// FlaggedAfter is the seconds from the fault's start until the slow
	// node showed flagged; -1 if it never did.
	FlaggedAfter float64 `json:"flagged_after_s"`
	// ReinstatedAfter is the seconds from the recovery's start until it
	// showed unflagged; -1 if it did not within Config.Reinstate.
	ReinstatedAfter float64 `json:"reinstated_after_s"`
	// FalseFlags are the other nodes ever flagged.
	FalseFlags []string `json:"false_flags,omitempty"`
	// Reason is the slow node's flag reason.
	Reason string `json:"reason,omitempty"`
	// Changes counts the slow node's flag changes (flagged, then
	// reinstated, ...) seen: how often it oscillated.
	Changes int `json:"changes"`
}

// Result is the experiment's output.
type Result struct {
	Date    time.Time `json:"date"`
	Command string    `json:"command"`
	Config  Config    `json:"config"`
	Arms    []Arm     `json:"arms"`
}

// Run runs both arms and writes results.json and results.md into cfg.Out.
func Run(ctx context.Context, cfg Config, pr io.Writer) (*Result, error) {
	res := &Result{Date: time.Now().UTC(), Command: cfg.Command, Config: cfg}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	for _, level := range cfg.Levels {
		for _, detect := range []bool{true, false} {
			name := level + "-detection-on"
			if !detect {
				name = level + "-detection-off"
			}
			arm, err := runArm(ctx, cfg, level, name, detect, filepath.Join(cfg.Out, name), pr)
			if err != nil {
				return res, fmt.Errorf("arm %s: %w", name, err)
			}
			res.Arms = append(res.Arms, *arm)
		}
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(cfg.Out, "results.json"), b, 0o644); err != nil {
		return res, err
	}
	f, err := os.Create(filepath.Join(cfg.Out, "results.md"))
	if err != nil {
		return res, err
	}
	defer f.Close()
	WriteMarkdown(f, res)
	WriteMarkdown(pr, res)
	return res, nil
}

func runArm(ctx context.Context, cfg Config, levelName, name string, detect bool, dir string, pr io.Writer) (*Arm, error) {
	window := cfg.HealthWindow
	if !detect {
		window = -1
	}
	lcfg := launch.Config{Binary: cfg.Binary, Nodes: cfg.Nodes, Dir: dir, Name: "gray-failure bench",
		Args: []string{"--log-level", "warn", "--unsafe-test-hooks", "--health-window", window.String()}}
	if err := lcfg.Secure(filepath.Join(dir, "certs")); err != nil {
		return nil, err
	}
	l, err := launch.New(lcfg)
	if err != nil {
		return nil, err
	}
	defer l.StopAll(10 * time.Second)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = l.Start(wctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("cluster not healthy: %w", err)
	}
	fmt.Fprintf(pr, "== %s: %d nodes, --health-window %v\n", name, cfg.Nodes, window)

	level, err := bench.ParseConsistency(levelName)
	if err != nil {
		return nil, err
	}
	w, err := bench.ParseWorkload(cfg.Workload)
	if err != nil {
		return nil, err
	}
	store, err := bench.OpenAdaptkv(ctx, bench.AdaptkvOptions{Endpoints: l.Endpoints(), Keyspace: "gray", ReplicationFactor: 3,
		Consistency: level, Logger: cfg.Logger, CertsDir: l.Config().CertsDir})
	if err != nil {
		return nil, err
	}
	defer store.Close()
	watcher, err := client.New(ctx, client.Config{Endpoints: l.Endpoints(), CertsDir: l.Config().CertsDir, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	defer watcher.Close()

	bcfg := bench.Config{Workload: w, Records: cfg.Records, Concurrency: cfg.Concurrency, Seed: cfg.Seed}
	lc := bcfg
	lc.Concurrency = min(bcfg.Concurrency, 16)
	if _, err := bench.Load(ctx, store, lc); err != nil {
		return nil, err
	}

	arm := &Arm{Name: name, Level: levelName, Detection: detect, FlaggedAfter: -1, ReinstatedAfter: -1}
	var mu sync.Mutex
	var faultAt, recoverAt time.Time
	flagged := map[string]bool{}
	slowFlagged := false // as last seen, to count changes
	wctx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			hctx, cancel := context.WithTimeout(wctx, 2*time.Second)
			h, err := watcher.Health(hctx)
			cancel()
			if err != nil {
				continue
			}
			now := time.Now()
			mu.Lock()
			if _, on := h.Flagged[cfg.Slow]; on != slowFlagged {
				slowFlagged = on
				arm.Changes++
			}
			for id, d := range h.Flagged {
				if id != cfg.Slow && !flagged[id] {
					arm.FalseFlags = append(arm.FalseFlags, id)
				}
				flagged[id] = true
				if id == cfg.Slow && arm.FlaggedAfter < 0 && !faultAt.IsZero() {
					arm.FlaggedAfter, arm.Reason = now.Sub(faultAt).Seconds(), d.Reason
				}
			}
			if _, ok := h.Flagged[cfg.Slow]; !ok && !recoverAt.IsZero() && arm.ReinstatedAfter < 0 && arm.FlaggedAfter >= 0 {
				arm.ReinstatedAfter = now.Sub(recoverAt).Seconds()
			}
			mu.Unlock()
		}
	})
	defer func() { stopWatch(); wg.Wait() }()

	phase := func(pname string, d time.Duration, warm time.Duration) error {
		c := bcfg
		c.Duration, c.Warmup = d, warm
		r, err := bench.Run(ctx, store, c)
		if err != nil {
			return err
		}
		p := Phase{Name: pname, Ops: r.Ops, Errors: r.Errors}
		if op := r.Operations["read"]; op != nil {
			p.ReadP50, p.ReadP99 = op.Latency.P50, op.Latency.P99
		}
		if op := r.Operations["update"]; op != nil {
			p.UpdateP99 = op.Latency.P99
		}
		arm.Phases = append(arm.Phases, p)
		fmt.Fprintf(pr, "   %-8s %7d ops %4d errors, read p50 %.2f ms p99 %.2f ms, update p99 %.2f ms\n", pname, p.Ops, p.Errors, p.ReadP50, p.ReadP99, p.UpdateP99)
		return nil
	}
	if err := phase("steady", cfg.Steady, 3*time.Second); err != nil {
		return nil, err
	}
	if err := l.Hook(ctx, cfg.Slow, "slow", url.Values{"delay": {cfg.Delay.String()}, "to": {cfg.SlowTo}}); err != nil {
		return nil, err
	}
	mu.Lock()
	faultAt = time.Now()
	mu.Unlock()
	fctx, stopFlap := context.WithCancel(ctx)
	var fwg sync.WaitGroup
	if cfg.Flap > 0 {
		fwg.Go(func() {
			on := true
			t := time.NewTicker(cfg.Flap)
			defer t.Stop()
			for {
				select {
				case <-fctx.Done():
					return
				case <-t.C:
				}
				on = !on
				d := time.Duration(0)
				if on {
					d = cfg.Delay
				}
				if err := l.Hook(fctx, cfg.Slow, "slow", url.Values{"delay": {d.String()}, "to": {cfg.SlowTo}}); err != nil && fctx.Err() == nil {
					fmt.Fprintf(pr, "   flap hook: %v\n", err)
				}
			}
		})
	}
	err = phase("fault", cfg.Fault, 0)
	stopFlap()
	fwg.Wait()
	if err != nil {
		return nil, err
	}
	if err := l.Hook(ctx, cfg.Slow, "slow", url.Values{"delay": {"0s"}, "to": {cfg.SlowTo}}); err != nil {
		return nil, err
	}
	mu.Lock()
	recoverAt = time.Now()
	mu.Unlock()
	if err := phase("recovery", cfg.Recovery, 0); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(cfg.Reinstate); detect && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		mu.Lock()
		done := arm.FlaggedAfter < 0 || arm.ReinstatedAfter >= 0
		mu.Unlock()
		if done {
			break
		}
	}
	stopWatch()
	wg.Wait()
	fmt.Fprintf(pr, "   flagged after %.1f s, reinstated %.1f s after recovery, %d flag changes, false flags %v\n", arm.FlaggedAfter, arm.ReinstatedAfter, arm.Changes, arm.FalseFlags)
	return arm, nil
}

// WriteMarkdown renders the result as a table.
func WriteMarkdown(w io.Writer, res *Result) {
	c := res.Config
	fmt.Fprintf(w, "## Gray failure (%s)\n\n", res.Date.Format(time.DateOnly))
	flap := ""
	if c.Flap > 0 {
		flap = fmt.Sprintf(", flapping every %v", c.Flap)
	}
	fmt.Fprintf(w, "%d nodes, YCSB %s at %s, %d records, %d clients; %s slow (replies to %s delayed %v%s) after %v steady, for %v, then %v of recovery; detector window %v.\n\n",
		c.Nodes, strings.ToUpper(c.Workload), strings.Join(c.Levels, " and "), c.Records, c.Concurrency, c.Slow, c.SlowTo, c.Delay, flap, c.Steady, c.Fault, c.Recovery, c.HealthWindow)
	fmt.Fprintln(w, "| arm | steady read p99 | fault read p99 | recovery read p99 | fault update p99 | fault/steady read p99 | flagged after | reinstated after | flag changes | false flags | errors |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, a := range res.Arms {
		var s, f, r Phase
		for _, p := range a.Phases {
			switch p.Name {
			case "steady":
				s = p
			case "fault":
				f = p
			case "recovery":
				r = p
			}
		}
		ratio := 0.0
		if s.ReadP99 > 0 {
			ratio = f.ReadP99 / s.ReadP99
		}
		secs := func(v float64) string {
			if v < 0 {
				return "never"
			}
			return fmt.Sprintf("%.1f s", v)
		}
		fmt.Fprintf(w, "| %s | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f× | %s | %s | %d | %v | %d |\n", a.Name, s.ReadP99, f.ReadP99, r.ReadP99, f.UpdateP99, ratio,
			secs(a.FlaggedAfter), secs(a.ReinstatedAfter), a.Changes, len(a.FalseFlags), s.Errors+f.Errors+r.Errors)
	}
	fmt.Fprintln(w)
}

package scenario

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

// progressEvery is how often Run prints a progress line while a phase runs.
const progressEvery = 5 * time.Second

// Run runs the experiment: it starts the cluster, injects the zones'
// latency, creates and loads the arms, warms up, runs the phases, and
// writes results.json, results.md and plot.png into cfg.Out. Progress lines
// and a final summary go to progress (nil: discarded). The nodes are
// stopped before Run returns, whatever happens.
//
// Run returns an error when the experiment could not be carried out; a run
// that misses its targets is a result, not an error (see Result.PassSteady).
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if progress == nil {
		progress = io.Discard
	}
	out, err := filepath.Abs(cfg.Out)
	if err != nil {
		return nil, fmt.Errorf("scenario: output folder: %w", err)
	}
	cfg.Out = out
	nodesDir := filepath.Join(out, "nodes")
	// A previous run's node folders hold a formed cluster's metadata log;
	// new nodes must start empty to bootstrap a new one.
	for _, z := range layoutZones {
		if err := os.RemoveAll(filepath.Join(nodesDir, z.id)); err != nil {
			return nil, fmt.Errorf("scenario: clearing the previous run's %s: %w", z.id, err)
		}
	}
	if err := os.MkdirAll(nodesDir, 0o755); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	r := &runner{cfg: cfg, pr: &printer{w: progress}, arms: arms(cfg.MaxStale, cfg.AdaptiveReadP99)}
	res, err := r.run(ctx)
	if err != nil {
		return nil, err
	}
	writeSummary(progress, res)
	fmt.Fprintf(progress, "results: %s, %s, %s\n", filepath.Join(out, "results.md"), filepath.Join(out, "results.json"), filepath.Join(out, "plot.png"))
	return res, nil
}

// printer serialises progress lines from the run and the decision poller.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// runner is one run's state.
type runner struct {
	cfg   Config
	pr    *printer
	arms  []Arm
	state []*armState
	cl    *cluster
	cls   clients
	dlog  *decisionLog
	t0    time.Time // phase 1 began

	res *Result
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	started := time.Now()
	r.res = &Result{Command: cfg.command(), Config: runConfigOf(cfg), Machine: thisMachine(), Started: started, Arms: r.arms}

	r.pr.printf("starting 5 nodes (%s) in %s", cfg.Binary, filepath.Join(cfg.Out, "nodes"))
	cl, err := startCluster(ctx, cfg, filepath.Join(cfg.Out, "nodes"))
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	r.cl = cl
	defer cl.stop()
	r.res.Nodes = cl.info()
	if err := cl.waitHealthy(ctx, 90*time.Second); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	r.pr.printf("cluster healthy in %s; injecting latency: %v within a zone, %v across", time.Since(started).Round(100*time.Millisecond), cfg.IntraZoneDelay, cfg.CrossZoneDelay)
	if err := cl.injectZones(ctx, cfg.IntraZoneDelay, cfg.CrossZoneDelay); err != nil {
		return nil, fmt.Errorf("scenario: injecting zone latency: %w", err)
	}

	if err := r.connect(ctx); err != nil {
		return nil, err
	}
	defer r.cls.w.Close()
	defer r.cls.r.Close()
	if err := r.setup(ctx); err != nil {
		return nil, err
	}

	// Poll the tuner in the background for the rest of the run.
	pctx, stopPoll := context.WithCancel(ctx)
	var pollDone sync.WaitGroup
	pollDone.Add(1)
	go func() {
		defer pollDone.Done()
		r.dlog.run(pctx, 3*time.Second, func(err error) { cfg.Logger.Warn("polling tuner decisions", "err", err) })
	}()
	defer func() { stopPoll(); pollDone.Wait() }()
	// And the health detector's decisions: the tuner routes around a
	// flagged node, so when the slow node was flagged matters.
	health := &healthLog{c: r.cls.w, since: started, pr: r.pr}
	pollDone.Add(1)
	go func() {
		defer pollDone.Done()
		health.run(pctx, 2*time.Second)
	}()

	tunerStart := time.Now()
	if cfg.Warmup > 0 {
		r.pr.printf("warm-up: %v of the %s workload, unmeasured, so that the tuner has data and has made its first moves", cfg.Warmup, Phases[0].Name)
		if _, err := r.runPhase(ctx, len(Phases), Phases[0], cfg.Warmup/time.Duration(len(r.arms)), false); err != nil {
			return nil, fmt.Errorf("scenario: warm-up: %w", err)
		}
	}

	r.t0 = time.Now()
	for i, p := range Phases {
		r.pr.printf("phase %d/%d: %s (%v per arm, %v in all)", i+1, len(Phases), p.Title, cfg.PhaseDuration, cfg.PhaseDuration*time.Duration(len(r.arms)))
		pres, err := r.runPhase(ctx, i, p, cfg.PhaseDuration, true)
		if err != nil {
			return nil, fmt.Errorf("scenario: phase %s: %w", p.Name, err)
		}
		r.res.Phases = append(r.res.Phases, *pres)
	}
	// The last decisions, then stop polling and the cluster: the results
	// need nothing more from it.
	if err := r.dlog.poll(ctx); err != nil {
		cfg.Logger.Warn("polling tuner decisions", "err", err)
	}
	health.poll(ctx)
	stopPoll()
	pollDone.Wait()
	cl.stop()

	r.res.Health = health.events()
	r.finish(tunerStart)
	if err := writeResults(cfg.Out, r.res); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	if err := writePlot(filepath.Join(cfg.Out, "plot.png"), r.res); err != nil {
		return nil, err
	}
	return r.res, nil
}

// connect opens the bench's two client connections.
func (r *runner) connect(ctx context.Context) error {
	cc := r.cl.ClientConfig(client.Config{Endpoints: r.cl.endpoints(), Logger: r.cfg.Logger})
	w, err := client.New(ctx, cc)
	if err != nil {
		return fmt.Errorf("scenario: client: %w", err)
	}
	rd, err := client.New(ctx, cc)
	if err != nil {
		w.Close()
		return fmt.Errorf("scenario: client: %w", err)
	}
	r.cls = clients{w: w, r: rd}
	return nil
}

// setup creates the arms' keyspaces and loads their keys.
func (r *runner) setup(ctx context.Context) error {
	for _, a := range r.arms {
		if _, err := r.cls.w.CreateKeyspace(ctx, a.Keyspace, a.Spec); err != nil {
			return fmt.Errorf("scenario: creating keyspace %s: %w", a.Keyspace, err)
		}
		// Both clients route by the keyspace's replication factor from
		// their first request, rather than after their next refresh.
		for _, c := range []*client.Client{r.cls.w, r.cls.r} {
			if _, err := c.DescribeKeyspace(ctx, a.Keyspace); err != nil {
				return fmt.Errorf("scenario: describing keyspace %s: %w", a.Keyspace, err)
			}
		}
		r.state = append(r.state, &armState{Arm: a, tracker: NewTracker(), value: valueOf(r.cfg.ValueSize)})
	}
	t := time.Now()
	for _, a := range r.state {
		if err := load(ctx, r.cls.w, a, r.cfg.Keys, r.cfg.Concurrency); err != nil {
			return fmt.Errorf("scenario: %w", err)
		}
	}
	r.pr.printf("created %d keyspaces and loaded %d keys into each in %s", len(r.state), r.cfg.Keys, time.Since(t).Round(100*time.Millisecond))
	r.dlog = &decisionLog{c: r.cls.w, keyspace: r.armByName(ArmAdaptive).Keyspace, seen: map[int64]bool{}}
	r.dlog.onChange = func(d Decision) {
		r.pr.printf("tuner: %s %s → %s (%s): %s", r.dlog.keyspace, d.From, d.To, d.Reason, d.Explanation)
	}
	return nil
}

func (r *runner) armByName(name string) *armState {
	for _, a := range r.state {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// runPhase runs one phase: every arm for perArm, interleaved in slices.
// Unmeasured (warm-up) phases return no result.
func (r *runner) runPhase(ctx context.Context, index int, p Phase, perArm time.Duration, measure bool) (*PhaseResult, error) {
	cfg := r.cfg
	var notes []string
	if p.Slow {
		if err := r.cl.setSlow(ctx, cfg.SlowNode, cfg.SlowDelay); err != nil {
			return nil, fmt.Errorf("making %s slow: %w", cfg.SlowNode, err)
		}
		r.pr.printf("%s now replies %v late to its peers", cfg.SlowNode, cfg.SlowDelay)
		defer func() {
			// Undo even when ctx has ended, so that a node left running
			// by a failed stop is not left slow.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := r.cl.setSlow(uctx, cfg.SlowNode, 0); err != nil {
				r.pr.printf("undoing the slow replica: %v", err)
			} else {
				r.pr.printf("%s is no longer slow", cfg.SlowNode)
			}
		}()
	}
	w := newWorkload(cfg.Seed, index, p, cfg.Keys, cfg.ReadAfterWriteMax)
	whole := map[string]*recorder{}
	steady := map[string]*recorder{}
	done := map[string]time.Duration{}
	for _, a := range r.state {
		a.next = 0 // every arm starts the phase's sequence at its beginning
		whole[a.Name], steady[a.Name] = newRecorder(), newRecorder()
	}
	before, cerr := r.cl.counters(ctx, nodeCounters)
	if cerr != nil {
		notes = append(notes, cerr.Error())
	}
	start := time.Now()
	settle := start.Add(cfg.Settle)
	lastPrint := start
	for round := 0; ; round++ {
		ran := false
		for k := range r.state {
			// Rotate which arm goes first, so that none always follows
			// the same other arm.
			a := r.state[(round+k)%len(r.state)]
			d := min(cfg.Slice, perArm-done[a.Name])
			if d <= 0 {
				continue
			}
			ran = true
			sliceRec := newRecorderDigits(2)
			sk := sinks{sliceRec}
			sliceStart := time.Now()
			if measure {
				sk = append(sk, whole[a.Name])
				if !sliceStart.Before(settle) {
					sk = append(sk, steady[a.Name])
				}
			}
			if err := runSlice(ctx, cfg, r.cls, a, w, d, sk); err != nil {
				return nil, err
			}
			done[a.Name] += d
			if measure {
				pt := Point{Arm: a.Name, Phase: p.Name,
					StartS: sliceStart.Sub(r.t0).Seconds(), EndS: time.Since(r.t0).Seconds(), Figures: sliceRec.figures()}
				if a.Name == ArmAdaptive {
					// Kept to break the arm's figures down by the
					// configuration in force (see byConfig).
					pt.rec = sliceRec
				}
				r.res.Timeline = append(r.res.Timeline, pt)
			}
			if time.Since(lastPrint) >= progressEvery {
				lastPrint = time.Now()
				r.progressLine(index, p, start, perArm, whole, measure)
			}
		}
		if !ran {
			break
		}
	}
	if !measure {
		return nil, nil
	}
	end := time.Now()
	after, cerr := r.cl.counters(ctx, nodeCounters)
	if cerr != nil {
		notes = append(notes, cerr.Error())
	}
	delta := map[string]float64{}
	for _, name := range nodeCounters {
		delta[name] = after[name] - before[name]
	}
	pres := &PhaseResult{NodeCounters: delta, Phase: p, StartS: start.Sub(r.t0).Seconds(), SteadyFromS: settle.Sub(r.t0).Seconds(), EndS: end.Sub(r.t0).Seconds(), Notes: notes}
	for _, a := range r.state {
		pres.Arms = append(pres.Arms, ArmFigures{Arm: a.Name, Whole: whole[a.Name].figures(), Steady: steady[a.Name].figures()})
	}
	// The model's view of every configuration now, for the model check
	// against arm one.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, js, err := r.cls.w.TunerWhatIf(wctx, r.armByName(ArmAdaptive).Keyspace)
	cancel()
	switch {
	case err != nil:
		pres.Notes = append(pres.Notes, fmt.Sprintf("tuner what-if failed: %v", err))
	default:
		if pres.WhatIf, err = parseWhatIf(js); err != nil {
			pres.Notes = append(pres.Notes, err.Error())
		}
	}
	return pres, nil
}

// progressLine prints the phase so far.
func (r *runner) progressLine(index int, p Phase, start time.Time, perArm time.Duration, whole map[string]*recorder, measure bool) {
	var b strings.Builder
	name := p.Name
	if !measure {
		name = "warm-up"
	} else {
		fmt.Fprintf(&b, "phase %d/%d ", index+1, len(Phases))
	}
	fmt.Fprintf(&b, "%s %3.0f/%.0fs", name, time.Since(start).Seconds(), (perArm * time.Duration(len(r.state))).Seconds())
	if measure {
		for _, a := range r.state {
			f := whole[a.Name].figures()
			fmt.Fprintf(&b, " | %s %.0f/s r99 %s w99 %s stale %s", a.Name, f.OpsPerSec, msStr(f.ReadP99Ms), msStr(f.WriteP99Ms), pct(f.StaleRate))
		}
	}
	if d, ok := r.dlog.latest(); ok {
		fmt.Fprintf(&b, " | tuner %s", d.To)
		if d.PredictedStale >= 0 {
			fmt.Fprintf(&b, " (predicted stale %s)", pct(d.PredictedStale))
		}
	}
	r.pr.printf("%s", b.String())
}

// finish fills in the decisions, the predictions and the verdicts.
func (r *runner) finish(tunerStart time.Time) {
	res := r.res
	res.Finished = time.Now()
	res.T0 = r.t0
	res.TunerStartS = tunerStart.Sub(r.t0).Seconds()
	res.Decisions = r.dlog.decisions()
	for i := range res.Health {
		res.Health[i].OffsetS = res.Health[i].At.Sub(r.t0).Seconds()
	}
	for i := range res.Decisions {
		res.Decisions[i].OffsetS = res.Decisions[i].At.Sub(r.t0).Seconds()
	}
	res.PassWhole, res.PassSteady = true, true
	for i := range res.Phases {
		p := &res.Phases[i]
		at := func(s float64) time.Time { return r.t0.Add(time.Duration(s * float64(time.Second))) }
		one, quo, ad := p.arm(ArmOne), p.arm(ArmQuorum), p.arm(ArmAdaptive)
		p.PredictionWhole = predictionOver(res.Decisions, at(p.StartS), at(p.EndS), tunerStart, ad.Whole.StaleRate)
		p.PredictionSteady = predictionOver(res.Decisions, at(p.SteadyFromS), at(p.EndS), tunerStart, ad.Steady.StaleRate)
		if c, ok := whatIfOne(p.WhatIf); ok {
			for _, pr := range []*Prediction{&p.PredictionWhole, &p.PredictionSteady} {
				pr.OnePredicted = c.StaleProb
			}
		}
		p.TunerReasons = map[string]int{}
		for _, d := range res.Decisions {
			if d.OffsetS >= p.StartS && d.OffsetS < p.EndS {
				p.TunerReasons[d.Reason]++
			}
		}
		p.PredictionWhole.OneMeasured, p.PredictionSteady.OneMeasured = one.Whole.StaleRate, one.Steady.StaleRate
		for _, pr := range []*Prediction{&p.PredictionWhole, &p.PredictionSteady} {
			pr.OneAgree = pr.OnePredicted >= 0 && Agree(pr.OnePredicted, pr.OneMeasured)
		}
		p.AdaptiveByConfig = byConfig(res.Timeline, res.Decisions, p.Name)
		vw := Judge(p.Name, "whole", one.Whole, quo.Whole, ad.Whole, p.PredictionWhole, r.cfg.MaxStale, r.cfg.CrossZoneDelay)
		vs := Judge(p.Name, "steady", one.Steady, quo.Steady, ad.Steady, p.PredictionSteady, r.cfg.MaxStale, r.cfg.CrossZoneDelay)
		res.Verdicts = append(res.Verdicts, vw, vs)
		res.PassWhole = res.PassWhole && vw.Pass
		res.PassSteady = res.PassSteady && vs.Pass
	}
}

// healthLog polls the cluster's health decisions and keeps those made
// since the run started.
type healthLog struct {
	c     *client.Client
	since time.Time
	pr    *printer

	mu   sync.Mutex
	seen map[string]bool
	evs  []HealthEvent
}

func (h *healthLog) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.poll(ctx)
	}
}

func (h *healthLog) poll(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	rep, err := h.c.Health(pctx)
	cancel()
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen == nil {
		h.seen = map[string]bool{}
	}
	for _, d := range rep.Decisions {
		k := d.Node + "@" + d.At.String()
		if h.seen[k] || d.At.Before(h.since) {
			continue
		}
		h.seen[k] = true
		h.evs = append(h.evs, HealthEvent{At: d.At, Node: d.Node, Flag: d.Flag, Reason: d.Reason})
		what := "reinstated"
		if d.Flag {
			what = "flagged"
		}
		h.pr.printf("health: %s %s: %s", d.Node, what, d.Reason)
	}
}

// events returns the decisions seen, oldest first.
func (h *healthLog) events() []HealthEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.evs)
}

// command returns the command line recorded in the results.
func (cfg Config) command() string {
	if cfg.Command != "" {
		return cfg.Command
	}
	return strings.Join(os.Args, " ")
}

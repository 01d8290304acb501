package jepsen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/jepsen/checker"
	"github.com/adaptkv/adaptkv/jepsen/cluster"
	"github.com/adaptkv/adaptkv/jepsen/history"
	"github.com/adaptkv/adaptkv/jepsen/nemesis"
)

// Keyspace is the keyspace the harness creates and uses.
const Keyspace = "jepsen"

// Files of a run folder.
const (
	ConfigFile     = "config.json"
	HistoryFile    = "history.jsonl"
	ResultsFile    = "results.json"
	SummaryFile    = "summary.txt"
	LogFile        = "jepsen.log"
	LinearFile     = "linearizability.html"
	LatencyPlot    = "latency.png"
	ThroughputPlot = "throughput.png"
	NodesDir       = "nodes"
	// CertsDir holds the certificates of a secure run's cluster.
	CertsDir = "certs"
)

// runner holds one run's state.
type runner struct {
	cfg   Config
	dir   string
	log   *slog.Logger
	rec   *history.Recorder
	c     *cluster.Cluster
	net   *cluster.Net
	nem   *nemesis.Nemesis
	gen   generator
	sched []nemesis.Window

	routed *client.Client
	pinned []*client.Client
	// tokens holds each worker's session token (Config.Sessions); each
	// worker reads and writes only its own.
	tokens []string

	lim                    *limiter
	invoked                atomic.Int64
	okN, failN, infoN      atomic.Int64
	phaseStart             atomic.Int64 // unix nanos
	mu                     sync.Mutex
	harnessErrs            []string
	phases                 []PhaseTime
	hintsWait, convergeDur time.Duration
	convergeRepair         *ConvergeRepair
}

func (r *runner) harnessError(err error) {
	if err == nil {
		return
	}
	r.log.Error("harness", "err", err)
	r.mu.Lock()
	r.harnessErrs = append(r.harnessErrs, err.Error())
	r.mu.Unlock()
}

func (r *runner) setPhase(name string) {
	now := time.Now()
	r.mu.Lock()
	if n := len(r.phases); n > 0 {
		r.phases[n-1].Seconds = round3(now.Sub(r.rec.Base()).Seconds() - r.phases[n-1].Start)
	}
	r.phases = append(r.phases, PhaseTime{Name: name, Start: round3(now.Sub(r.rec.Base()).Seconds())})
	r.mu.Unlock()
	r.phaseStart.Store(now.UnixNano())
	r.rec.SetPhase(name)
	r.log.Info("phase", "phase", name)
}

// Run runs a test: it starts the cluster, runs the workload through the
// phases (warm-up, faults, heal, recovery, convergence probe, final reads),
// checks the history and writes the run folder. The error is non-nil when
// the run could not be done at all (bad configuration, no cluster); a run
// that was done returns its Result, whose ExitCode says whether it was
// valid. Every process started and the run's iptables chain are removed
// before Run returns, also when ctx is canceled.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	start := time.Now()
	if cfg.Out == "" {
		cfg.Out = cfg.defaultOut(start)
	}
	dir, err := filepath.Abs(cfg.Out)
	if err != nil {
		return nil, fmt.Errorf("jepsen: run folder: %w", err)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("jepsen: run folder %s is not empty; give a new --out", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("jepsen: run folder: %w", err)
	}
	cfg.Out = dir
	if cfg.Bin, err = resolveBin(ctx, cfg.Bin); err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, LogFile))
	if err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	defer logf.Close()
	log := slog.New(teeHandler{slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug}), cfg.Logger})
	histf, err := os.Create(filepath.Join(dir, HistoryFile))
	if err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	defer histf.Close()

	r := &runner{cfg: cfg, dir: dir, log: log, rec: history.NewRecorder(start, histf), gen: newGenerator(&cfg)}
	r.setPhase(history.PhaseSetup)
	specs := cfg.specs()
	needNet := false
	for _, s := range specs {
		needNet = needNet || s.Kind == nemesis.Partition
	}
	if needNet {
		if err := cluster.CheckNet(ctx); err != nil {
			return nil, fmt.Errorf("jepsen: %w", err)
		}
		if gone, err := cluster.SweepStaleChains(ctx); err == nil && len(gone) > 0 {
			log.Warn("removed iptables chains left by earlier runs", "chains", gone)
		}
	}

	nodeArgs := cfg.NodeArgs
	if cfg.Adaptive != "" {
		// Decide often, so that forced changes land within the run.
		nodeArgs = append(slices.Clone(nodeArgs), "--tuner-interval=500ms")
		if cfg.TunerForce > 0 {
			nodeArgs = append(nodeArgs, "--unsafe-tuner-force="+cfg.TunerForce.D().String())
		}
	}
	r.c, err = cluster.New(cluster.Config{Bin: cfg.Bin, Nodes: cfg.Nodes, Dir: filepath.Join(dir, NodesDir), FirstIP: cfg.FirstIP, BasePort: cfg.BasePort, Insecure: cfg.Insecure, CertsDir: filepath.Join(dir, CertsDir), ExtraArgs: nodeArgs, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	defer func() {
		if err := r.c.Close(); err != nil {
			log.Error("closing the cluster", "err", err)
		}
	}()
	r.sched, err = nemesis.Schedule(nemesis.ScheduleConfig{Specs: specs, Nodes: r.c.IDs(), Duration: cfg.Time.D(), On: cfg.NemesisOn.D(), Off: cfg.NemesisOff.D(),
		Mode: cfg.NemesisMode, Seed: cfg.Seed, ClockMax: cfg.ClockMax.D(), SlowMax: cfg.SlowMax.D(),
		// A decommission never leaves fewer members than the keyspace's
		// largest N (the cluster would refuse it).
		MinNodes: max(3, cfg.RF, cfg.AdaptiveMaxRF)})
	if err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	if err := r.writeConfig(start); err != nil {
		return nil, err
	}
	if needNet {
		if r.net, err = cluster.NewNet(ctx, r.c.Hosts(), r.c.Ports(), log); err != nil {
			return nil, fmt.Errorf("jepsen: iptables chain: %w", err)
		}
		defer func() {
			if err := r.net.Close(); err != nil {
				log.Error("removing the iptables chain", "chain", r.net.Chain(), "err", err)
			}
		}()
	}
	r.nem = nemesis.New(r.c, r.net, r.rec, log)
	r.progressf("starting %d nodes (%s) from %s in %s", cfg.Nodes, strings.Join(r.c.Endpoints(), " "), cfg.Bin, dir)
	if err := r.c.Start(ctx); err != nil {
		return r.abort(fmt.Errorf("jepsen: cluster did not start: %w", err))
	}
	if err := r.setup(ctx); err != nil {
		return r.abort(fmt.Errorf("jepsen: %w", err))
	}
	defer r.closeClients()

	r.traffic(ctx)
	if ctx.Err() == nil {
		r.setPhase(history.PhaseConverge)
		r.converge(ctx)
	}
	if ctx.Err() == nil {
		r.setPhase(history.PhaseFinal)
		r.finalReads(ctx)
	}
	if ctx.Err() != nil {
		r.harnessError(fmt.Errorf("interrupted (%v) in phase %s: the history is incomplete", context.Cause(ctx), r.rec.Phase()))
	}
	for _, crash := range r.c.Crashes() {
		r.harnessError(fmt.Errorf("node crashed: %s", crash))
	}
	r.setPhase(history.PhaseCheck)
	res := r.check(context.WithoutCancel(ctx))
	return res, nil
}

// abort finishes a run that could not be done: it still writes what it has.
func (r *runner) abort(err error) (*Result, error) {
	r.harnessError(err)
	r.rec.Flush()
	res := r.result(checker.Unknown, nil)
	res.write(r.dir)
	return res, err
}

// resolveBin finds the node binary and checks that it has the test hooks.
func resolveBin(ctx context.Context, bin string) (string, error) {
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("node binary: %w (give --bin)", err)
		}
		bin = exe
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, abs, "node", "--help").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("node binary %s: `node --help` failed: %w: %s", abs, err, firstLine(out))
	}
	if !bytes.Contains(out, []byte("--unsafe-test-hooks")) {
		return "", fmt.Errorf("node binary %s has no `node --unsafe-test-hooks` flag, which the harness needs for its faults; rebuild it (go build -o bin/adaptkv ./cmd/adaptkv)", abs)
	}
	return abs, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// configDoc is config.json.
type configDoc struct {
	Config   Config            `json:"config"`
	Command  string            `json:"command"`
	Started  time.Time         `json:"started"`
	Nodes    map[string]string `json:"nodes"`
	Schedule []nemesis.Window  `json:"schedule"`
	Go       string            `json:"go"`
	Host     string            `json:"host,omitempty"`
	Binary   map[string]string `json:"binary,omitempty"`
}

func (r *runner) writeConfig(start time.Time) error {
	host, _ := os.Hostname()
	doc := configDoc{Config: r.cfg, Command: r.cfg.Command() + " --out " + r.dir + "-rerun", Started: start, Nodes: map[string]string{},
		Schedule: r.sched, Go: runtime.Version(), Host: host}
	for _, n := range r.c.Nodes() {
		doc.Nodes[n.ID] = fmt.Sprintf("grpc %s gossip %s raft %s http %s", n.GRPC, n.Gossip, n.Raft, n.HTTP)
	}
	if st, err := os.Stat(r.cfg.Bin); err == nil {
		doc.Binary = map[string]string{"path": r.cfg.Bin, "modified": st.ModTime().Format(time.RFC3339), "size": fmt.Sprint(st.Size())}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("jepsen: config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, ConfigFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("jepsen: config: %w", err)
	}
	return nil
}

// setup connects the clients and creates the keyspace.
func (r *runner) setup(ctx context.Context) error {
	var err error
	r.routed, err = client.New(ctx, r.c.ClientConfig(client.Config{Endpoints: r.c.Endpoints(), DialTimeout: time.Second,
		RequestTimeout: r.cfg.OpTimeout.D(), TopologyRefresh: time.Second, Logger: r.log.With("client", "routed")}))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	r.tokens = make([]string, r.cfg.Concurrency)
	if r.cfg.Clients != ClientsRouted {
		for _, n := range r.c.Nodes() {
			cl, err := client.New(ctx, r.c.ClientConfig(client.Config{Endpoints: []string{n.GRPC}, DisableRouting: true, DialTimeout: time.Second,
				RequestTimeout: r.cfg.OpTimeout.D(), Logger: r.log.With("client", "pinned-"+n.ID)}))
			if err != nil {
				return fmt.Errorf("client: %w", err)
			}
			r.pinned = append(r.pinned, cl)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		spec := client.KeyspaceSpec{ReplicationFactor: r.cfg.RF, Consistency: client.Quorum}
		if r.cfg.Adaptive != "" {
			floor := client.One
			if r.cfg.Adaptive == client.Quorum.String() {
				floor = client.Quorum
			}
			spec = client.KeyspaceSpec{ReplicationFactor: r.cfg.RF, Adaptive: &client.AdaptiveGoal{MaxStale: r.cfg.AdaptiveMaxStale, Floor: floor}}
			if r.cfg.AdaptiveMaxRF > r.cfg.RF {
				spec.Adaptive.MinRF, spec.Adaptive.MaxRF = r.cfg.RF, r.cfg.AdaptiveMaxRF
			}
		}
		_, err := r.routed.CreateKeyspace(cctx, Keyspace, spec)
		cancel()
		if err == nil || errors.Is(err, client.ErrKeyspaceExists) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("create keyspace %s: %w", Keyspace, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Every node must know the keyspace before the first operation, or an
	// early read could fail for a reason that has nothing to do with the
	// test.
	for _, n := range r.c.Nodes() {
		for {
			cl, err := r.c.Client(ctx, n.ID)
			if err == nil {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err = cl.DescribeKeyspace(cctx, Keyspace)
				cancel()
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("keyspace %s not known to %s: %w", Keyspace, n.ID, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func (r *runner) closeClients() {
	if r.routed != nil {
		r.routed.Close()
	}
	for _, c := range r.pinned {
		c.Close()
	}
}

// clientFor returns worker w's client.
func (r *runner) clientFor(w int) (*client.Client, string) {
	switch {
	case r.cfg.Clients == ClientsPinned || r.cfg.Clients == ClientsHop || (r.cfg.Clients == ClientsMixed && w%2 == 1):
		i := w % len(r.pinned)
		if r.cfg.Clients == ClientsMixed {
			i = (w / 2) % len(r.pinned)
		}
		return r.pinned[i], "pinned to " + r.c.Nodes()[i].ID
	}
	return r.routed, "routed"
}

// traffic runs the workers through warm-up, faults (with the nemesis),
// heal and recovery, then stops them and waits for their last operations.
func (r *runner) traffic(ctx context.Context) {
	tctx, stop := context.WithCancel(ctx)
	defer stop()
	r.lim = newLimiter(r.cfg.Rate)
	var wg sync.WaitGroup
	for w := range r.cfg.Concurrency {
		wg.Add(1)
		go func() { defer wg.Done(); r.worker(tctx, w) }()
	}
	pdone := make(chan struct{})
	go r.progress(tctx, pdone)

	r.setPhase(history.PhaseWarmup)
	sleepCtx(ctx, r.cfg.WarmUp.D())
	if r.okN.Load() == 0 && ctx.Err() == nil {
		r.harnessError(fmt.Errorf("no operation succeeded during the %v warm-up: the cluster is not serving, so the run proves nothing", r.cfg.WarmUp.D()))
	}
	if ctx.Err() == nil {
		r.setPhase(history.PhaseFaults)
		nctx, ncancel := context.WithCancel(ctx)
		ndone := make(chan struct{})
		go func() { defer close(ndone); r.nem.Run(nctx, r.sched) }()
		sleepCtx(ctx, r.cfg.Time.D())
		ncancel()
		<-ndone
		r.nem.Wait()
	}
	if ctx.Err() == nil {
		// (An interrupted run skips the heal: its nodes are killed and its
		// chain removed on the way out.)
		r.setPhase(history.PhaseHeal)
		hctx, hcancel := context.WithTimeout(ctx, r.cfg.HealTimeout.D())
		if err := r.nem.HealAll(hctx, r.cfg.HealTimeout.D()); err != nil {
			r.harnessError(fmt.Errorf("heal: %w", err))
		}
		hcancel()
	}
	for _, err := range r.nem.Errors() {
		r.log.Warn("fault action failed", "err", err)
	}
	if ctx.Err() == nil {
		r.setPhase(history.PhaseRecovery)
		okBefore := r.okN.Load()
		sleepCtx(ctx, r.cfg.Recovery.D())
		if r.okN.Load() == okBefore && ctx.Err() == nil && r.cfg.Recovery > 0 {
			r.harnessError(fmt.Errorf("no operation succeeded during the %v recovery: the cluster did not recover from the faults", r.cfg.Recovery.D()))
		}
	}
	stop()
	wg.Wait()
	<-pdone
	if err := r.rec.Flush(); err != nil {
		r.harnessError(err)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// worker runs operations as one client: a single-threaded logical process
// that moves to a fresh process number after an info completion.
func (r *runner) worker(ctx context.Context, w int) {
	cl, _ := r.clientFor(w)
	process := w
	hops, wrote := 0, false
	for {
		if err := r.lim.wait(ctx); err != nil {
			return
		}
		if r.invoked.Add(1) > int64(r.cfg.MaxOps) {
			return
		}
		spec := r.gen.next(w)
		if r.cfg.Clients == ClientsHop && spec.f == history.FRead && wrote {
			hops, wrote = hops+1, false
			cl = r.pinned[(w+hops)%len(r.pinned)]
		}
		// A worker pinned to a node that left the cluster (a decommission
		// or a replacement) moves to the next member, as a client told of
		// the node's removal would.
		for i := 0; i < len(r.pinned) && r.pinnedRemoved(cl); i++ {
			hops++
			cl = r.pinned[(w+hops)%len(r.pinned)]
		}
		if r.execute(ctx, cl, process, w, spec) == history.Info {
			process += r.cfg.Concurrency
			if u, ok := r.gen.(interface{ unknownOutcome(string) }); ok && spec.f != history.FRead {
				u.unknownOutcome(spec.key)
			}
		}
		wrote = wrote || spec.f != history.FRead
	}
}

// pinnedRemoved says whether cl is the pinned client of a node that has
// been removed from the cluster.
func (r *runner) pinnedRemoved(cl *client.Client) bool {
	i := slices.Index(r.pinned, cl)
	return i >= 0 && r.c.Nodes()[i].Removed()
}

// execute runs one operation and records its invocation and completion.
func (r *runner) execute(ctx context.Context, cl *client.Client, process, w int, spec opSpec) history.Type {
	r.rec.Append(history.Op{Process: process, Client: w, Type: history.Invoke, F: spec.f, Key: spec.key, Value: spec.value, From: spec.from, Level: spec.level})
	comp := history.Op{Process: process, Client: w, F: spec.f, Key: spec.key, Value: spec.value, From: spec.from, Level: spec.level}
	// An operation is not cut short when traffic stops: it runs to its own
	// deadline, so that the end of a phase does not manufacture info ops.
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.OpTimeout.D())
	defer cancel()
	opts := []client.CallOption{client.WithKeyspace(Keyspace), levelOption(spec.level)}
	var kv interface {
		Get(context.Context, []byte, ...client.CallOption) (*client.GetResult, error)
		Put(context.Context, []byte, []byte, ...client.CallOption) (*client.WriteResult, error)
	} = cl
	if r.cfg.Sessions && w < len(r.tokens) {
		// The worker's session goes with it from client to client (the
		// final reads, numbered past the workers, are not sessions).
		s := cl.Session()
		if tok := r.tokens[w]; tok != "" {
			var err error
			if s, err = cl.SessionFrom(tok); err != nil {
				r.harnessError(fmt.Errorf("worker %d: session token: %w", w, err))
				s = cl.Session()
			}
		}
		defer func() { r.tokens[w] = s.Token() }()
		kv = s
	}
	var err error
	switch spec.f {
	case history.FRead:
		var res *client.GetResult
		res, err = kv.Get(octx, []byte(spec.key), opts...)
		comp.Value = nil
		if err == nil {
			fillReceipt(&comp, res.Receipt)
			if res.Found {
				comp.Value, comp.Raw = decodeValue(res.Value)
				comp.Version = toVersion(res.Version)
			}
		}
	case history.FCas:
		// A conditional write is always a Paxos round; the level is not
		// passed (it names how plain reads and writes are served).
		cond := client.IfAbsent()
		if *spec.from != 0 {
			cond = client.IfValue(encodeValue(*spec.from))
		}
		var res *client.CondResult
		res, err = cl.PutIf(octx, []byte(spec.key), encodeValue(*spec.value), cond, client.WithKeyspace(Keyspace))
		var notApplied bool
		comp.Type, notApplied = casCompletion(res, err)
		if err == nil {
			fillReceipt(&comp, res.Receipt)
			comp.Version = toVersion(res.Version)
			if notApplied {
				comp.NotApplied, comp.Value, comp.Version = true, nil, nil
				if res.Found {
					comp.Value, comp.Raw = decodeValue(res.Value)
					comp.Version = toVersion(res.Current)
				}
			}
		}
	default:
		var res *client.WriteResult
		res, err = kv.Put(octx, []byte(spec.key), encodeValue(*spec.value), opts...)
		if err == nil {
			fillReceipt(&comp, res.Receipt)
			comp.Version = toVersion(res.Version)
		}
	}
	if spec.f != history.FCas {
		comp.Type = completionType(spec.f != history.FRead, err)
	}
	if err != nil {
		fillError(&comp, err)
	}
	r.rec.Append(comp)
	switch comp.Type {
	case history.OK:
		r.okN.Add(1)
	case history.Fail:
		r.failN.Add(1)
	default:
		r.infoN.Add(1)
	}
	return comp.Type
}

// limiter spaces operations 1/rate apart over all workers, without
// bursts to catch up after stalls.
type limiter struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

func newLimiter(rate float64) *limiter {
	return &limiter{interval: time.Duration(float64(time.Second) / rate)}
}

func (l *limiter) wait(ctx context.Context) error {
	l.mu.Lock()
	now := time.Now()
	t := l.next
	if t.Before(now) {
		t = now
	}
	l.next = t.Add(l.interval)
	l.mu.Unlock()
	if d := time.Until(t); d > 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return ctx.Err()
}

// progress prints a line per second until ctx ends.
func (r *runner) progress(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	if r.cfg.Progress == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastOK int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok := r.okN.Load()
		in := time.Since(time.Unix(0, r.phaseStart.Load())).Truncate(time.Second)
		line := fmt.Sprintf("[%-8s %4s] ops %6d  ok %6d  fail %4d  info %4d  %4d ok/s", r.rec.Phase(), in, r.invoked.Load(), ok, r.failN.Load(), r.infoN.Load(), ok-lastOK)
		if a := r.nem.Active(); len(a) > 0 {
			line += "  faults: " + strings.Join(a, ",")
		}
		lastOK = ok
		fmt.Fprintln(r.cfg.Progress, line)
	}
}

func (r *runner) progressf(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, format+"\n", args...)
	}
}

// teeHandler sends records to two handlers (the second may be nil).
type teeHandler struct {
	a slog.Handler
	b *slog.Logger
}

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.a.Enabled(ctx, l) || (h.b != nil && h.b.Handler().Enabled(ctx, l))
}

func (h teeHandler) Handle(ctx context.Context, rec slog.Record) error {
	var errs []error
	if h.a.Enabled(ctx, rec.Level) {
		errs = append(errs, h.a.Handle(ctx, rec.Clone()))
	}
	if h.b != nil && h.b.Handler().Enabled(ctx, rec.Level) {
		errs = append(errs, h.b.Handler().Handle(ctx, rec.Clone()))
	}
	return errors.Join(errs...)
}

func (h teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b *slog.Logger
	if h.b != nil {
		b = slog.New(h.b.Handler().WithAttrs(attrs))
	}
	return teeHandler{h.a.WithAttrs(attrs), b}
}

func (h teeHandler) WithGroup(name string) slog.Handler {
	var b *slog.Logger
	if h.b != nil {
		b = slog.New(h.b.Handler().WithGroup(name))
	}
	return teeHandler{h.a.WithGroup(name), b}
}

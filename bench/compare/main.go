package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/adaptkv/adaptkv/bench"
	"github.com/adaptkv/adaptkv/client"
)

// The hidden first arguments that make this binary one of its own
// children.
const (
	etcdMemberCmd  = "__etcd-member"
	adaptkvNodeCmd = "__adaptkv-node"
	echoServerCmd  = "__echo-server"
)

// runChild runs this process as one of the children the comparison starts
// from its own executable (an etcd member, an adaptkv node in reexec mode,
// the echo server) when os.Args names one, and exits; otherwise it returns.
func runChild() {
	if len(os.Args) < 2 {
		return
	}
	var child func([]string) error
	switch os.Args[1] {
	case etcdMemberCmd:
		child = etcdMemberMain
	case adaptkvNodeCmd:
		child = adaptkvNodeMain
	case echoServerCmd:
		child = echoServerMain
	default:
		return
	}
	if err := child(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func main() {
	runChild()
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	args []string
	// tls are the sittings of every TLS-capable system (adaptkv, etcd),
	// in order: true with mutual TLS, false plaintext.
	tls          []bool
	etcdGRPCOnly bool
	systems      []string
	workloads    []string
	levels       []string
	floor        string
	serializable bool
	cas          bool
	hotKeys      int

	records     int64
	valueSize   int
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	seed        uint64

	mode        string
	repo        string
	workdir     string
	keep        bool
	profileDir  string
	profileSecs int
	quietWait   time.Duration
	retryNoisy  int
	out         string
	jsonOut     string
	verbose     bool
	// sweep is --sweep: the setting varied (sweepClients, sweepValueSize
	// or sweepRecords) and its values in order; empty dim: no sweep.
	sweep    sweepSpec
	plotOut  string
	bulkLoad bool
	fromJSON string
}

func parseFlags(args []string) (*options, error) {
	o := &options{args: args}
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	systems := fs.String("systems", "adaptkv,etcd,redis,echo", "systems to measure, comma-separated")
	workloads := fs.String("workloads", "a,b", "YCSB workloads to run on every system")
	levels := fs.String("levels", "one,quorum", "adaptkv consistency levels to run")
	fs.StringVar(&o.floor, "floor-workload", "c", "workload run on adaptkv at one and on the gRPC echo floor")
	fs.BoolVar(&o.serializable, "etcd-serializable", true, "also run etcd with serializable reads")
	fs.BoolVar(&o.cas, "cas", false, "also compare compare-and-set (adaptkv PutIf(IfVersion) against etcd Txn on the mod revision; each client on its own key, then all on --hot-keys keys) and linearizable reads (workload c at adaptkv's linearizable against etcd's default reads)")
	fs.IntVar(&o.hotKeys, "hot-keys", 10, "with --cas: the keys every client shares in the contended phase")
	fs.Int64Var(&o.records, "records", 100_000, "records loaded into each system")
	fs.IntVar(&o.valueSize, "value-size", 128, "value size in bytes")
	fs.IntVar(&o.concurrency, "concurrency", 32, "concurrent clients")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "measured time of each phase")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured warmup before each phase")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the workload generator")
	fs.StringVar(&o.mode, "adaptkv-mode", modeAuto, "how to run adaptkv nodes: binary (go build ./cmd/adaptkv), reexec (node.Start in a child of this binary) or auto")
	tlsFlag := fs.String("tls", "on", "transport security of adaptkv and etcd: on (mutual TLS 1.3 on client and peer links of both), off (both plaintext), both (on, then off: measures the cost of TLS in one sitting) or a comma list such as off,on to choose the order; Redis and the echo floor are always plaintext")
	fs.IntVar(&maxInflight, "adaptkv-max-inflight", 0, "run the adaptkv nodes with --max-inflight N (admission bound of client requests per node; -1: none); 0 keeps the node's default of 32, past which a node refuses requests as OVERLOADED")
	fs.BoolVar(&unaryClient, "adaptkv-unary", false, "send the SDK's requests as one gRPC call each (client.Config.DisableBatching) instead of over the Batch stream")
	insecure := fs.Bool("adaptkv-insecure", false, "the same as --tls off (kept for old commands)")
	fs.BoolVar(&o.etcdGRPCOnly, "etcd-grpc-only", false, "serve etcd's HTTP on URLs of its own (--listen-client-http-urls), so that its client URLs serve gRPC natively rather than through Go's HTTP/2 server as etcd does by default with TLS")
	fs.StringVar(&o.repo, "repo", "", "adaptkv repository root (default: found from the working directory)")
	fs.StringVar(&o.workdir, "workdir", "", "directory for data and logs (default: a new temporary directory, removed at the end unless --keep)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory")
	fs.StringVar(&o.profileDir, "profile", "", "write CPU profiles of adaptkv node n1 and of this process during each adaptkv phase to this directory")
	fs.IntVar(&o.profileSecs, "profile-seconds", 10, "length of each CPU profile in seconds (at most --duration)")
	fs.StringVar(&o.out, "out", "", "also write the markdown report to this file")
	fs.StringVar(&o.jsonOut, "json", "", "write every phase's full result as JSON to this file")
	fs.DurationVar(&o.quietWait, "quiet-wait", 30*time.Second, "before each phase, wait up to this long for other processes to leave the CPUs idle (0: do not wait)")
	fs.IntVar(&o.retryNoisy, "retry-noisy", 1, "measure a phase again, up to this many times, when other processes used the CPUs during it; the least disturbed attempt is kept")
	fs.BoolVar(&o.verbose, "v", false, "print a status line every second during each phase")
	sweep := fs.String("sweep", "", "measure how cost grows: clients=1,8,32,128,512, value-size=128,1024,16384 or records=100000,10000000; every chosen system, workload and level runs at each value with the other settings fixed, and the report is a table per value (and --plot)")
	fs.StringVar(&o.fromJSON, "from-json", "", "measure nothing: write the report (and --plot) of an earlier run from the file its --json wrote, with its profiles where they still are; give the same --sweep")
	fs.StringVar(&o.plotOut, "plot", "", "with --sweep: write a PNG of the sweep here (one panel per metric, one line per system and setting, log x axis)")
	fs.BoolVar(&o.bulkLoad, "bulk-load", false, "load each system through its fastest realistic bulk path (adaptkv: 48 concurrent SDK inserts at one over the batched stream, retried after OVERLOADED; etcd: Txns of 128 puts; Redis: pipelines of 512 SETs) instead of the generator's 32 inserting workers; for millions of records")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	tlsSet := false
	fs.Visit(func(f *flag.Flag) { tlsSet = tlsSet || f.Name == "tls" })
	if *insecure {
		if tlsSet && *tlsFlag != "off" {
			return nil, fmt.Errorf("--adaptkv-insecure contradicts --tls %s", *tlsFlag)
		}
		*tlsFlag = "off"
	}
	var err error
	if o.tls, err = parseTLS(*tlsFlag); err != nil {
		return nil, err
	}
	if o.sweep, err = parseSweep(*sweep); err != nil {
		return nil, err
	}
	if o.plotOut != "" && o.sweep.dim == "" {
		return nil, errors.New("--plot needs --sweep")
	}
	o.systems = splitList(*systems)
	o.workloads = splitList(*workloads)
	o.levels = splitList(*levels)
	for _, s := range o.systems {
		switch s {
		case sysAdaptkv, sysEtcd, sysRedis, "echo":
		default:
			return nil, fmt.Errorf("unknown system %q: want adaptkv, etcd, redis or echo", s)
		}
	}
	for _, w := range append(o.workloads, o.floor) {
		if _, err := bench.ParseWorkload(w); err != nil {
			return nil, err
		}
	}
	for _, l := range o.levels {
		if _, err := bench.ParseConsistency(l); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// parseTLS reads --tls: on, off, both (on then off) or a comma list of on
// and off, each at most once.
func parseTLS(s string) ([]bool, error) {
	if strings.TrimSpace(strings.ToLower(s)) == "both" {
		return []bool{true, false}, nil
	}
	var out []bool
	seen := map[string]bool{}
	for _, f := range splitList(s) {
		if f != "on" && f != "off" {
			return nil, fmt.Errorf("--tls %q: want on, off, both or a list such as off,on", s)
		}
		if seen[f] {
			return nil, fmt.Errorf("--tls %q: %s twice", s, f)
		}
		seen[f] = true
		out = append(out, f == "on")
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--tls %q: want on, off, both or a list such as off,on", s)
	}
	return out, nil
}

// tlsName is how a sitting's transport security appears in the tables.
func tlsName(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(strings.ToLower(f)); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// run is the comparison with the command-line arguments args, the report
// written to stdout.
func run(args []string, stdout io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	if o.repo == "" {
		if o.repo, err = findRepo(); err != nil {
			return err
		}
	}
	if o.workdir == "" {
		if o.workdir, err = os.MkdirTemp("", "adaptkv-compare-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(o.workdir)
		}
	} else if err := os.MkdirAll(o.workdir, 0o755); err != nil {
		return err
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}
	started := time.Now()
	c := &comparison{o: o, self: self, started: started}
	if o.fromJSON != "" {
		b, err := os.ReadFile(o.fromJSON)
		if err != nil {
			return err
		}
		var saved struct {
			Phases results `json:"phases"`
		}
		if err := json.Unmarshal(b, &saved); err != nil {
			return fmt.Errorf("%s: %w", o.fromJSON, err)
		}
		c.results = saved.Phases
		c.notes = append(c.notes, "report written from "+o.fromJSON+" (--from-json): the load lines and the notes of that run are in its own report")
	} else if err := c.runPoints(ctx); err != nil {
		return err
	}
	elapsed := time.Since(started)

	var md strings.Builder
	if o.sweep.dim != "" {
		c.writeSweepReport(&md, elapsed)
	} else {
		c.writeReport(&md, elapsed)
	}
	fmt.Fprint(stdout, md.String())
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md.String()), 0o644); err != nil {
			return err
		}
	}
	if o.plotOut != "" {
		if err := c.results.writeSweepPlot(o.plotOut, o.sweep); err != nil {
			return err
		}
		slog.Info("plot written", "path", o.plotOut)
	}
	if o.jsonOut != "" {
		b, err := json.MarshalIndent(struct {
			Host   bench.Host `json:"host"`
			Phases results    `json:"phases"`
		}{bench.ThisHost(), c.results}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runSystems starts, loads and measures every chosen system in turn, each
// on fresh servers with data under dir.
func (c *comparison) runSystems(ctx context.Context, workdir string) error {
	o := c.o
	// A system's sittings with and without TLS follow each other, each on
	// a fresh cluster, so that the ratio of the two (the cost of TLS) is
	// measured as close together in time as the machine allows.
	for _, s := range o.systems {
		sittings := o.tls
		if s != sysAdaptkv && s != sysEtcd {
			sittings = []bool{false}
		}
		for _, secure := range sittings {
			dir := filepath.Join(workdir, s)
			if s == sysAdaptkv || s == sysEtcd {
				dir = filepath.Join(workdir, s+"-tls-"+tlsName(secure))
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			var err error
			switch s {
			case sysAdaptkv:
				err = c.runAdaptkv(ctx, dir, secure)
			case sysEtcd:
				err = c.runEtcd(ctx, dir, secure)
			case sysRedis:
				err = c.runRedis(ctx, dir)
			case "echo":
				err = c.runEcho(ctx, dir)
			}
			if err != nil {
				return fmt.Errorf("%s (TLS %s): %w (logs in %s)", s, tlsName(secure), err, dir)
			}
		}
	}
	return nil
}

// gitDescribe names the repository's commit, and says when the working tree
// differs from it, since the nodes are built from the working tree.
func gitDescribe(repo string) string {
	head, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown commit"
	}
	desc := "commit " + strings.TrimSpace(string(head))
	if st, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		desc += " with uncommitted changes"
	}
	return desc
}

// findRepo walks up from the working directory to adaptkv's go.mod.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/adaptkv/adaptkv\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("adaptkv repository not found above the working directory; pass --repo")
		}
		dir = parent
	}
}

// comparison runs the phases and collects their results.
type comparison struct {
	o       *options
	self    string
	started time.Time
	// point is the sweep's current value as it labels phases
	// ("clients=8"), empty without --sweep; clients is the concurrency of
	// the phases being measured (0: --concurrency).
	point       string
	clients     int
	results     results
	adaptkvMode string
	loads       []string
	notes       []string
}

// configFor is the configuration of a phase: with the hot keys for the
// contended compare-and-set settings.
func (c *comparison) configFor(setting, w string) bench.Config {
	cfg := c.config(w)
	if setting == setPutIfHot || setting == setTxnHot {
		cfg.HotKeys = c.o.hotKeys
	}
	return cfg
}

func (c *comparison) config(w string) bench.Config {
	wl, _ := bench.ParseWorkload(w)
	n := c.o.concurrency
	if c.clients > 0 {
		n = c.clients
	}
	cfg := bench.Config{
		Workload: wl, Records: c.o.records, ValueSize: c.o.valueSize, Concurrency: n,
		Duration: c.o.duration, Warmup: c.o.warmup, Seed: c.o.seed,
	}
	if c.o.verbose {
		cfg.OnTick = func(p bench.Point) { fmt.Fprintln(os.Stderr, "   ", bench.LiveLine(p)) }
	}
	return cfg
}

// bulkPath is how --bulk-load loads one system: put takes chunks of batch
// records from each of workers goroutines.
type bulkPath struct {
	put            putBatch
	workers, batch int
}

// load inserts the records with a progress bar on a terminal and progress
// lines in the log: through the generator's workers (bench.Load), or
// through bulk with --bulk-load.
func (c *comparison) load(ctx context.Context, system string, secure bool, s bench.Store, bulk bulkPath) error {
	if len(c.o.tls) > 1 && (system == sysAdaptkv || system == sysEtcd) {
		system += " (TLS " + tlsName(secure) + ")"
	}
	cfg := c.config("a")
	cfg.Concurrency = c.o.concurrency
	var res *bench.Result
	var err error
	if c.o.bulkLoad {
		res, err = bulkLoad(ctx, system, cfg.Records, cfg.ValueSize, bulk.workers, bulk.batch, cfg.Seed, bulk.put)
		if res != nil {
			system += fmt.Sprintf(" [bulk: %d workers × %d]", bulk.workers, bulk.batch)
		}
	} else {
		bar := bench.NewProgress(os.Stdout, cfg.Records, "load "+system)
		var done atomic.Int64
		stop := progressLines(ctx, "load "+system, cfg.Records, &done)
		cfg.OnProgress = func(n int64) { bar.Add(1); done.Store(n) }
		res, err = bench.Load(ctx, s, cfg)
		stop()
		bar.Finish()
	}
	if err != nil {
		return err
	}
	slog.Info("loaded", "system", system, "records", res.Ops, "seconds", fmt.Sprintf("%.1f", res.Elapsed),
		"ops_per_sec", fmt.Sprintf("%.0f", res.Throughput), "errors", res.Errors)
	c.loads = append(c.loads, fmt.Sprintf("%s %d records at %.0f records/s (%.1f s, %d errors)", system, res.Ops, res.Throughput, res.Elapsed, res.Errors))
	if res.Errors > 0 {
		c.notes = append(c.notes, fmt.Sprintf("%s: %d of %d inserts of the load failed (%v)", system, res.Errors, cfg.Records, res.ErrorKinds))
	}
	return nil
}

// measure runs one phase and records it. A phase during which other
// processes used more than quietThreshold CPUs is measured again, up to
// --retry-noisy times, and the least disturbed attempt is kept: on a shared
// machine interference only ever slows a system down, so keeping the
// cleanest attempt removes noise rather than flattering anyone.
func (c *comparison) measure(ctx context.Context, system, setting, w string, secure bool, s bench.Store, during func(ctx context.Context)) error {
	var best *phase
	for attempt := 0; attempt <= c.o.retryNoisy; attempt++ {
		if c.o.quietWait > 0 {
			waitQuiet(ctx, c.o.quietWait)
		}
		if c.point != "" {
			slog.Info("sweep", "point", c.point, "system", system, "setting", setting, "workload", strings.ToUpper(w),
				"clients", c.config(w).Concurrency, "elapsed", time.Since(c.started).Round(time.Second))
		}
		p, err := c.measureOnce(ctx, system, setting, w, secure, s, during)
		if err != nil {
			return err
		}
		p.Point = c.point
		if best == nil || p.other() < best.other() {
			best = p
		}
		if best.other() <= quietThreshold {
			break
		}
		if attempt < c.o.retryNoisy {
			slog.Warn("other processes disturbed the phase; measuring it again", "system", system, "setting", setting, "workload", w, "other_cpus", fmt.Sprintf("%.2f", p.other()))
		}
		during = nil // one profile per phase is enough
	}
	if o := best.other(); o > quietThreshold {
		c.notes = append(c.notes, fmt.Sprintf("%s %s %s (TLS %s): other processes used %.2f CPUs during the phase; its figures are depressed by them", strings.ToUpper(w), system, setting, tlsName(secure), o))
	}
	c.results = append(c.results, *best)
	return nil
}

// other is the CPU other processes used during the phase, 0 when unknown.
func (p *phase) other() float64 {
	if p.CPU == nil {
		return 0
	}
	return p.CPU.Other
}

// measureOnce runs the phase once; during, when set, runs alongside once
// the warmup is over.
func (c *comparison) measureOnce(ctx context.Context, system, setting, w string, secure bool, s bench.Store, during func(ctx context.Context)) (*phase, error) {
	cfg := c.configFor(setting, w)
	if during != nil {
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			select {
			case <-time.After(cfg.Warmup):
				during(pctx)
			case <-pctx.Done():
			}
		}()
		// The profiles end about when the phase does; wait for them to
		// be written (not cancel them half taken), but not for ever.
		defer func() {
			select {
			case <-done:
			case <-time.After(time.Duration(c.o.profileSecs)*time.Second + 10*time.Second):
			}
			cancel()
			<-done
		}()
	}
	before := sampleCPU()
	res, err := bench.Run(ctx, s, cfg)
	if err != nil {
		return nil, err
	}
	cpu := cpuBetween(before, sampleCPU())
	attrs := []any{"system", system, "setting", setting, "workload", w, "tls", tlsName(secure),
		"ops_per_sec", fmt.Sprintf("%.0f", res.Throughput), "p50_ms", res.Latency.P50, "p99_ms", res.Latency.P99, "errors", res.Errors}
	if cpu != nil {
		attrs = append(attrs, "cpus_ours", fmt.Sprintf("%.2f", cpu.Ours), "cpus_other", fmt.Sprintf("%.2f", cpu.Other))
	}
	slog.Info("phase", attrs...)
	return &phase{System: system, Setting: setting, Workload: w, TLS: secure, Result: res, CPU: cpu}, nil
}

func (c *comparison) runAdaptkv(ctx context.Context, dir string, secure bool) error {
	cl, err := startAdaptkv(ctx, c.o.mode, c.self, c.o.repo, dir, 3, !secure, c.o.profileDir != "")
	if err != nil {
		return err
	}
	defer cl.stop()
	c.adaptkvMode = cl.mode
	slog.Info("adaptkv cluster up", "mode", cl.mode, "endpoints", cl.endpoints)

	// The load writes at quorum, the keyspace's default: every record is
	// on two replicas when acknowledged, whichever level the phases use.
	st, err := bench.OpenAdaptkv(ctx, bench.AdaptkvOptions{Endpoints: cl.endpoints, Keyspace: "bench", ReplicationFactor: 3, Consistency: client.Quorum, CertsDir: cl.certsDir})
	if err != nil {
		return err
	}
	defer st.Close()
	// One SDK client for every phase, as an application would keep one.
	cli, err := client.New(ctx, cl.clientConfig(client.Config{Endpoints: cl.endpoints}))
	if err != nil {
		return err
	}
	defer cli.Close()
	// A bulk load writes at one: still sent to all three replicas, each
	// fsyncing in its group commit, but acknowledged after the first, so
	// that many concurrent inserts fill the SDK's Batch stream.
	bulk := bulkPath{put: storeBatch(bench.NewAdaptkvStore(cli, "bench", client.One)), workers: adaptkvBulkWorkers, batch: 16}
	if err := c.load(ctx, sysAdaptkv, secure, st, bulk); err != nil {
		return err
	}
	type run struct{ w, level string }
	var runs []run
	for _, w := range c.o.workloads {
		for _, l := range c.o.levels {
			runs = append(runs, run{w, l})
		}
	}
	if c.o.floor != "" && c.has("echo") {
		runs = append(runs, run{c.o.floor, setOne})
	}
	if c.o.cas {
		runs = append(runs, run{"cas", setPutIf}, run{"cas", setPutIfHot}, run{"c", setLinearizable})
	}
	for _, n := range c.clientPoints() {
		c.setClients(n)
		for _, r := range runs {
			if c.measured(sysAdaptkv, r.level, r.w, secure) {
				continue
			}
			lv, _ := bench.ParseConsistency(r.level)
			s := bench.NewAdaptkvStore(cli, "bench", lv)
			var during func(context.Context)
			var nodeProf, clientProf string
			if c.o.profileDir != "" {
				name := fmt.Sprintf("%s-%s-tls-%s", r.w, r.level, tlsName(secure))
				if c.point != "" {
					name += "-" + strings.ReplaceAll(c.point, "=", "")
				}
				nodeProf = filepath.Join(c.o.profileDir, "node-n1-"+name+".pprof")
				clientProf = filepath.Join(c.o.profileDir, "client-"+name+".pprof")
				during = func(ctx context.Context) { c.profile(ctx, cl.httpAddrs[0], nodeProf, clientProf) }
			}
			if err := c.measure(ctx, sysAdaptkv, r.level, r.w, secure, s, during); err != nil {
				return err
			}
			if nodeProf != "" {
				p := &c.results[len(c.results)-1]
				p.NodeProfile, p.ClientProfile = existing(nodeProf), existing(clientProf)
			}
		}
	}
	return nil
}

// existing returns path when a file is there, else "".
func existing(path string) string {
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return ""
	}
	return path
}

// measured reports whether the phase was measured already at the current
// sweep point and number of clients (the floor workload may be one of
// the workloads).
func (c *comparison) measured(system, setting, w string, secure bool) bool {
	n := c.config(w).Concurrency
	for _, p := range c.results {
		if p.System == system && p.Setting == setting && p.Workload == w && p.TLS == secure && p.Point == c.point && p.Result.Concurrency == n {
			return true
		}
	}
	return false
}

// profile takes a CPU profile of a node (through its /debug/pprof) and of
// this process at the same time, into the profile directory.
func (c *comparison) profile(ctx context.Context, httpAddr, path, clientPath string) {
	secs := c.o.profileSecs
	if d := int(c.o.duration / time.Second); d >= 1 && secs > d {
		secs = d
	}
	cf, err := os.Create(clientPath)
	if err == nil {
		if err := pprof.StartCPUProfile(cf); err == nil {
			defer func() {
				pprof.StopCPUProfile()
				cf.Close()
			}()
		} else {
			cf.Close()
		}
	}
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", httpAddr, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		slog.Warn("profile", "err", err)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		slog.Warn("profile", "url", url, "err", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		slog.Warn("profile", "err", err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		slog.Warn("profile", "err", err)
		return
	}
	slog.Info("profiled", "node", path, "client", clientPath)
}

func (c *comparison) has(system string) bool {
	for _, s := range c.o.systems {
		if s == system {
			return true
		}
	}
	return false
}

func (c *comparison) runEtcd(ctx context.Context, dir string, secure bool) error {
	cl, err := startEtcd(ctx, c.self, dir, 3, etcdOptions{secure: secure, grpcOnly: c.o.etcdGRPCOnly, quotaBytes: etcdQuota(c.o.records, c.o.valueSize)})
	if err != nil {
		return err
	}
	defer cl.stop()
	slog.Info("etcd cluster up", "endpoints", cl.endpoints)
	settings := []string{setLinearizable}
	if c.o.serializable {
		settings = append(settings, setSerializable)
	}
	var stores []*etcdStore
	defer func() {
		for _, s := range stores {
			s.Close()
		}
	}()
	for i, setting := range settings {
		s, err := newEtcdStore(cl.endpoints, cl.tls, setting == setSerializable)
		if err != nil {
			return err
		}
		stores = append(stores, s)
		if i == 0 {
			if err := c.load(ctx, sysEtcd, secure, s, bulkPath{put: etcdBatch(s.cli), workers: etcdBulkWorkers, batch: etcdBatchSize(c.o.valueSize)}); err != nil {
				return err
			}
		}
	}
	for _, n := range c.clientPoints() {
		c.setClients(n)
		for _, w := range c.o.workloads {
			for i, setting := range settings {
				if err := c.measure(ctx, sysEtcd, setting, w, secure, stores[i], nil); err != nil {
					return err
				}
			}
		}
	}
	if c.o.cas {
		if c.results.find(sysEtcd, setLinearizable, "c", secure) == nil {
			if err := c.measure(ctx, sysEtcd, setLinearizable, "c", secure, stores[0], nil); err != nil {
				return err
			}
		}
		for _, setting := range []string{setTxn, setTxnHot} {
			if err := c.measure(ctx, sysEtcd, setting, "cas", secure, stores[0], nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *comparison) runRedis(ctx context.Context, dir string) error {
	r, err := startRedis(ctx, dir)
	if errors.Is(err, errNoRedis) {
		msg := "Redis skipped: " + err.Error()
		slog.Warn(msg)
		c.notes = append(c.notes, msg)
		return nil
	}
	if err != nil {
		return err
	}
	defer r.stop()
	s := newRedisStore(r.addr, max(c.o.concurrency, slices.Max(c.clientPoints())))
	defer s.Close()
	if err := c.load(ctx, sysRedis, false, s, bulkPath{put: redisBatch(s.cli), workers: redisBulkWorkers, batch: redisPipeline}); err != nil {
		return err
	}
	for _, n := range c.clientPoints() {
		c.setClients(n)
		for _, w := range c.o.workloads {
			wl, _ := bench.ParseWorkload(w)
			if wl.Scan > 0 {
				c.notes = append(c.notes, fmt.Sprintf("Redis: workload %s skipped (no ordered scan)", w))
				continue
			}
			if err := c.measure(ctx, sysRedis, setAOFAlways, w, false, s, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *comparison) runEcho(ctx context.Context, dir string) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	p, err := startProc("echo", dir, c.self, echoServerCmd, "-addr", addr, "-value-size", fmt.Sprint(c.o.valueSize))
	if err != nil {
		return err
	}
	defer p.stop(5 * time.Second)
	s, err := newEchoStore(addr)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := waitFor(ctx, "echo", 30*time.Second, []*proc{p}, func(ctx context.Context) error {
		return s.Read(ctx, "ping")
	}); err != nil {
		return err
	}
	for _, n := range c.clientPoints() {
		c.setClients(n)
		if err := c.measure(ctx, sysEcho, setBare, c.o.floor, false, s, nil); err != nil {
			return err
		}
	}
	return nil
}

// writeReport writes the markdown report: the command, the machine, the
// settings, the tables and any notes.
func (c *comparison) writeReport(w io.Writer, elapsed time.Duration) {
	c.writeHeader(w, elapsed)
	fmt.Fprintln(w)
	c.results.writeMarkdown(w)
	c.writeBudget(w)
	c.writeNotes(w)
}

// writeHeader writes the command, the machine and the settings.
func (c *comparison) writeHeader(w io.Writer, elapsed time.Duration) {
	h := bench.ThisHost()
	o := c.o
	fmt.Fprintf(w, "## adaptkv vs etcd vs Redis: YCSB on one machine\n\n")
	fmt.Fprintf(w, "- command: `%s`\n", strings.Join(append([]string{"go run ."}, o.args...), " "))
	fmt.Fprintf(w, "- machine: %d CPUs (%s), %s/%s, %s, GOMAXPROCS %d per process\n", h.NumCPU, h.CPUModel, h.OS, h.Arch, h.GoVersion, runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "- date: %s; the comparison took %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), elapsed.Round(time.Second))
	fmt.Fprintf(w, "- adaptkv source: %s\n", gitDescribe(o.repo))
	fmt.Fprintf(w, "- workload generator: adaptkv bench (bench), closed loop, %d clients, %d records of %d B, zipfian (YCSB scrambled, θ 0.99), %s measured per phase after %s warmup, seed %d\n",
		o.concurrency, o.records, o.valueSize, o.duration, o.warmup, o.seed)
	mode := c.adaptkvMode
	switch mode {
	case modeBinary:
		mode = "3 `adaptkv node` processes built from this repository (pebble, default fsync/group commit), keyspace rf 3"
	case modeReexec:
		mode = "3 processes running node.Start (cmd/adaptkv did not build), pebble, keyspace rf 3"
	}
	if mode != "" {
		inflight := "default admission bound (32 client requests in flight per node, refused past it as OVERLOADED)"
		if maxInflight != 0 {
			inflight = fmt.Sprintf("--max-inflight %d", maxInflight)
		}
		fmt.Fprintf(w, "- adaptkv: %s, %s; one SDK client (token-aware routing) shared by the workers\n", mode, inflight)
	}
	if c.has(sysEtcd) {
		serving := ""
		if o.etcdGRPCOnly {
			serving = ", HTTP on URLs of its own (gRPC alone on the client URLs)"
		}
		fmt.Fprintf(w, "- etcd: v3.7.3 embedded server, 3 member processes, default settings (fsync per commit)%s; one clientv3 client shared by the workers\n", serving)
	}
	if c.has(sysAdaptkv) || c.has(sysEtcd) {
		var ts []string
		for _, t := range o.tls {
			ts = append(ts, tlsName(t))
		}
		fmt.Fprintf(w, "- TLS: sittings %s. On: mutual TLS 1.3 (ECDSA P-256 certificates from adaptkv's certificate tool, one CA) on every link of both systems: adaptkv's client, peer and Raft gRPC/TCP and AES-256 gossip encryption; etcd's client and peer URLs with --cert-file, --key-file, --trusted-ca-file, --client-cert-auth and the --peer-* twins. Off: plaintext (`adaptkv node --insecure`, http URLs). Redis and the echo floor are plaintext throughout\n", strings.Join(ts, ", "))
	}
	if c.has(sysRedis) {
		fmt.Fprintf(w, "- redis: Debian redis-server, 1 node, `--appendonly yes --appendfsync always --save ''`; go-redis pool of %d\n", o.concurrency+4)
	}
	if c.has("echo") {
		fmt.Fprintf(w, "- floor: bare gRPC unary echo in its own process (key in, %d B value out), one connection\n", o.valueSize)
	}
	if len(c.loads) > 0 {
		fmt.Fprintf(w, "- load (%d clients unless bulk): %s\n", o.concurrency, strings.Join(c.loads, "; "))
	}
	if sw := o.sweep; sw.dim != "" {
		fmt.Fprintf(w, "- sweep: %s over %v, the other settings as above; pebble's block cache is 64 MiB and adaptkv's row cache 32 MiB per node (storage defaults)\n", sw.dim, sw.values)
	}
}

// writeNotes writes what went wrong or was left out.
func (c *comparison) writeNotes(w io.Writer) {
	if len(c.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range c.notes {
			fmt.Fprintf(w, "- note: %s\n", n)
		}
	}
}

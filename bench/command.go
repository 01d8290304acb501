package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/node/clustertest"
)

// EndpointsEnv is read for the endpoints when --endpoints is not given, as
// every adaptkv command does.
const EndpointsEnv = "ADAPTKV_ENDPOINTS"

// cmdOptions are the command's flags.
type cmdOptions struct {
	certsDir, user string
	insecure       bool
	workload       string
	distribution   string
	records        int64
	valueSize      int
	concurrency    int
	duration       time.Duration
	operations     int64
	warmup         time.Duration
	keyspace       string
	rf             int
	consistency    string
	seed           uint64
	maxScanLength  int
	rate           float64
	rmw            string
	hotKeys        int

	endpoints []string
	local     int
	inMemory  bool

	load    bool
	json    bool
	plot    string
	quiet   bool
	verbose bool
}

// NewCommand returns the `bench` command: YCSB workloads against an adaptkv
// cluster, given by --endpoints (or ADAPTKV_ENDPOINTS), or a local
// in-process cluster it starts itself with --local N.
func NewCommand() *cobra.Command {
	o := &cmdOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run YCSB workloads against a cluster and report throughput and latency",
		Long: `bench loads records into a keyspace and runs one of the YCSB core workloads
against it with a number of concurrent clients, then reports throughput and
HdrHistogram latency percentiles per operation, and errors by kind.

Workloads (YCSB's core set):
  a  50% read, 50% update              zipfian
  b  95% read, 5% update               zipfian
  c  100% read                         zipfian
  d  95% read, 5% insert               latest
  e  95% scan (1-100 keys), 5% insert  zipfian
  f  50% read, 50% read-modify-write   zipfian
       (--rmw cas: the write is a PutIf expecting the version read,
       retried from the current version while the condition fails)
  cas  100% PutIf(IfVersion) of a key of each client's own, expecting
       the version it last saw (--hot-keys N: all clients on N keys)

Zipfian is YCSB's scrambled zipfian (θ 0.99, hot keys spread by FNV hash).
Clients run closed loops: each sends its next request when the last returns.

The load phase shows a progress bar when stdout is a terminal; the run prints
a status line every second on stderr (--quiet silences it). --json prints a
machine-readable report on stdout instead of the table.`,
		Example: `  adaptkv bench --local 3 --workload a --duration 30s
  adaptkv bench --endpoints 127.0.0.1:7400 --workload b --consistency one --json > b.json
  adaptkv bench --local 3 --in-memory --workload c --plot c.png`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.workload, "workload", "w", "a", "YCSB core workload: a, b, c, d, e or f; or cas")
	f.StringVar(&o.rmw, "rmw", "plain", "workload f's read-modify-write: plain (read, then put) or cas (read the version, then PutIf(IfVersion), retried while the condition fails)")
	f.IntVar(&o.hotKeys, "hot-keys", 0, "workload cas: every client compare-and-sets keys drawn from this many (0: each client its own key)")
	f.StringVar(&o.distribution, "distribution", "", "request distribution: zipfian, uniform or latest (default: the workload's)")
	f.Int64Var(&o.records, "records", DefaultRecords, "number of records to load and to choose keys from")
	f.IntVar(&o.valueSize, "value-size", DefaultValueSize, "size of each value in bytes")
	f.IntVarP(&o.concurrency, "concurrency", "c", DefaultConcurrency, "number of concurrent clients")
	f.DurationVarP(&o.duration, "duration", "d", DefaultDuration, "length of the measured run (ignored when --operations is given)")
	f.Float64Var(&o.rate, "rate", 0, "offer this many operations per second in an open loop (each sent on schedule, latency from its intended send time) instead of --concurrency closed-loop clients")
	f.Int64Var(&o.operations, "operations", 0, "run this many operations instead of for --duration")
	f.DurationVar(&o.warmup, "warmup", 0, "run the workload unmeasured for this long first")
	f.StringVar(&o.keyspace, "keyspace", "bench", "keyspace to use; created when missing")
	f.IntVar(&o.rf, "rf", 3, "replication factor of a keyspace the command creates (with --local: at most the node count)")
	f.StringVar(&o.consistency, "consistency", "quorum", "consistency of every request: one, quorum, all or linearizable (conditional writes are linearizable at any)")
	f.Uint64Var(&o.seed, "seed", 1, "seed of the workers' random choices")
	f.IntVar(&o.maxScanLength, "max-scan-length", DefaultMaxScanLength, "longest scan of workload e")
	f.StringSliceVar(&o.endpoints, "endpoints", nil, "gRPC addresses (host:port) of cluster nodes, comma-separated (env "+EndpointsEnv+")")
	f.StringVar(&o.certsDir, "certs-dir", "", "with --endpoints: certificate directory holding ca.crt and the client certificate of --user (default: <--dir>/certs when it exists)")
	f.StringVar(&o.user, "user", "root", "with --endpoints: the user whose client certificate is used")
	f.BoolVar(&o.insecure, "insecure", false, "plaintext: with --endpoints, a cluster started --insecure; with --scenario, start the nodes --insecure")
	f.IntVar(&o.local, "local", 0, "start a local in-process cluster of this many nodes instead of using --endpoints")
	f.BoolVar(&o.inMemory, "in-memory", false, "with --local: use the in-memory engine instead of pebble in a temporary directory")
	f.BoolVar(&o.load, "load", true, "run the load phase (--load=false to reuse records loaded before)")
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	f.StringVar(&o.plot, "plot", "", "write a PNG of throughput and latency over time to this file")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "no status line every second")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log the client's and local nodes' warnings to stderr")
	return cmd
}

// run is the command's body.
func (o *cmdOptions) run(cmd *cobra.Command) error {
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	w, err := ParseWorkload(o.workload)
	if err != nil {
		return err
	}
	if o.maxScanLength < 1 {
		return fmt.Errorf("--max-scan-length %d: need at least 1", o.maxScanLength)
	}
	w.MaxScanLength = o.maxScanLength
	dist := w.Distribution
	if o.distribution != "" {
		if dist, err = ParseDistribution(o.distribution); err != nil {
			return err
		}
	}
	level, err := ParseConsistency(o.consistency)
	if err != nil {
		return err
	}
	// Config fills zero values with defaults; on the command line a zero
	// is a mistake, not a request for the default.
	switch {
	case o.records < 1:
		return fmt.Errorf("--records %d: need at least 1", o.records)
	case o.concurrency < 1:
		return fmt.Errorf("--concurrency %d: need at least 1", o.concurrency)
	case o.valueSize < 0:
		return fmt.Errorf("--value-size %d is negative", o.valueSize)
	case o.duration <= 0 && o.operations <= 0:
		return fmt.Errorf("--duration %v: need a positive duration or --operations", o.duration)
	case o.local < 0:
		return fmt.Errorf("--local %d is negative", o.local)
	case o.rmw != "plain" && o.rmw != "cas":
		return fmt.Errorf("--rmw %q: want plain or cas", o.rmw)
	case o.hotKeys < 0:
		return fmt.Errorf("--hot-keys %d is negative", o.hotKeys)
	}
	duration := o.duration
	if o.operations > 0 && !cmd.Flags().Changed("duration") {
		duration = 0
	}
	cfg := Config{
		Workload: w, Distribution: dist, Records: o.records, ValueSize: o.valueSize,
		Concurrency: o.concurrency, Duration: duration, Operations: o.operations,
		Warmup: o.warmup, Seed: o.seed, CondRMW: o.rmw == "cas", HotKeys: o.hotKeys,
	}
	if _, err := cfg.withDefaults(); err != nil {
		return err
	}

	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	// ^C ends the run early but still prints what was measured.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	logger := slog.New(slog.DiscardHandler)
	if o.verbose {
		logger = slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}

	target := Target{Local: o.local, InMemory: o.inMemory}
	rf := o.rf
	switch {
	case o.local > 0:
		if !cmd.Flags().Changed("rf") {
			rf = min(rf, o.local)
		}
		lc, err := startLocal(ctx, o.local, o.inMemory, logger)
		if err != nil {
			return err
		}
		defer lc.close()
		target.Endpoints = lc.c.Endpoints()
	case len(o.endpoints) > 0:
		target.Endpoints = o.endpoints
	case os.Getenv(EndpointsEnv) != "":
		target.Endpoints = strings.Split(os.Getenv(EndpointsEnv), ",")
	default:
		return fmt.Errorf("no cluster to benchmark: give --endpoints host:port (or set %s), or --local N to start one", EndpointsEnv)
	}
	var certsDir string
	if o.local == 0 && !o.insecure {
		// The in-process cluster of --local is plaintext; a real one is
		// secure unless it was started --insecure.
		if certsDir = o.certsDir; certsDir == "" {
			if d := cmd.Flags().Lookup("dir"); d != nil && d.Value.String() != "" {
				if fi, err := os.Stat(filepath.Join(d.Value.String(), "certs")); err == nil && fi.IsDir() {
					certsDir = filepath.Join(d.Value.String(), "certs")
				}
			}
		}
		if certsDir == "" {
			return errors.New("no certificates to connect with: give --certs-dir (the cluster's certificate directory), or --insecure for a cluster started with --insecure")
		}
	}
	if o.inMemory && o.local == 0 {
		return errors.New("--in-memory applies only with --local")
	}

	store, err := OpenAdaptkv(ctx, AdaptkvOptions{
		Endpoints: target.Endpoints, Keyspace: o.keyspace, ReplicationFactor: rf,
		Consistency: level, Logger: logger, CertsDir: certsDir, User: o.user,
	})
	if err != nil {
		return err
	}
	defer store.Close()

	rep := &Report{
		Schema: ReportSchema,
		Store:  "adaptkv",
		Target: target,
		Settings: Settings{
			Workload: w.Name, Description: w.Description, Distribution: dist,
			Records: cfg.Records, ValueSize: cfg.ValueSize, Concurrency: cfg.Concurrency,
			Duration: cfg.Duration.Seconds(), Operations: cfg.Operations, Warmup: cfg.Warmup.Seconds(),
			Keyspace: o.keyspace, RF: rf, Consistency: o.consistency, Seed: o.seed,
		},
		Host: ThisHost(),
	}
	if w.Scan > 0 {
		rep.Settings.MaxScanLength = w.MaxScanLength
	}

	if o.load {
		bar := NewProgress(out, cfg.Records, "load")
		lcfg := cfg
		lcfg.OnProgress = func(int64) { bar.Add(1) }
		rep.Load, err = Load(ctx, store, lcfg)
		bar.Finish()
		if err != nil {
			return err
		}
		if !o.quiet {
			fmt.Fprintf(errOut, "load: %d records in %.1f s (%.0f/s), %d errors\n", rep.Load.Ops, rep.Load.Elapsed, rep.Load.Throughput, rep.Load.Errors)
		}
	}
	if o.rate != 0 {
		return o.runOpen(ctx, store, cfg, out)
	}
	if !o.quiet {
		cfg.OnTick = func(p Point) { fmt.Fprintln(errOut, LiveLine(p)) }
	}
	rep.Run, err = Run(ctx, store, cfg)
	if rep.Run == nil {
		return err
	}
	if err != nil {
		// Interrupted: report what was measured, then say so.
		fmt.Fprintf(errOut, "adaptkv bench: %v\n", err)
	}
	if o.plot != "" {
		title := fmt.Sprintf("adaptkv YCSB %s, %s, %d clients, %s", w.Name, dist, cfg.Concurrency, o.consistency)
		if perr := WritePlot(o.plot, title, rep.Run); perr != nil {
			return perr
		}
	}
	if o.json {
		return rep.WriteJSON(out)
	}
	return rep.WriteText(out)
}

// runOpen runs the open-loop mode: one step at --rate for --duration.
func (o *cmdOptions) runOpen(ctx context.Context, store Store, cfg Config, out io.Writer) error {
	if o.rate < 0 || cfg.Duration <= 0 {
		return fmt.Errorf("--rate %v: need a positive rate and --duration", o.rate)
	}
	res, err := RunOpenLoop(ctx, store, cfg, []RateStep{{Name: "open", Rate: o.rate, Duration: cfg.Duration}}, 0)
	if res == nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(res); jerr != nil {
			return jerr
		}
		return err
	}
	for _, p := range res.Timeline {
		fmt.Fprintf(out, "t=%4.0fs offered %7d ok %7d shed %6d errors %6d p50 %8.2f ms p99 %8.2f ms\n", p.Elapsed, p.Offered, p.Ops, p.Shed, p.Errors, p.P50, p.P99)
	}
	st := res.Steps[0]
	fmt.Fprintf(out, "offered %.0f/s for %.0f s: goodput %.0f/s, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms (from intended send time), %d errors %v\n",
		st.Rate, st.Duration, st.Goodput, st.Latency.P50, st.Latency.P99, st.Latency.P999, st.Errors, st.ErrorKinds)
	return err
}

// localCluster is a cluster the command started in its own process.
type localCluster struct {
	c   *clustertest.Cluster
	dir string
}

// startLocal starts n in-process nodes, on pebble in a temporary directory
// unless inMemory.
func startLocal(ctx context.Context, n int, inMemory bool, log *slog.Logger) (*localCluster, error) {
	lc := &localCluster{}
	if !inMemory {
		dir, err := os.MkdirTemp("", "adaptkv-bench-")
		if err != nil {
			return nil, fmt.Errorf("bench: local cluster: %w", err)
		}
		lc.dir = dir
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := clustertest.Start(sctx, clustertest.Options{Nodes: n, Dir: lc.dir, InMemory: inMemory, Logger: log})
	if err != nil {
		lc.close()
		return nil, fmt.Errorf("bench: start local cluster of %d nodes: %w", n, err)
	}
	lc.c = c
	return lc, nil
}

func (lc *localCluster) close() {
	if lc.c != nil {
		lc.c.Close()
	}
	if lc.dir != "" {
		os.RemoveAll(lc.dir)
	}
}

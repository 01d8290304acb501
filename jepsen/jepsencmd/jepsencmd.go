package jepsencmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/jepsen"
)

// ExitError carries the exit status of a jepsen command: 1 when an anomaly
// was found, 2 when the run could not be done. Its message has been printed
// already when Printed is set.
type ExitError struct {
	Code    int
	Err     error
	Printed bool
}

func (e *ExitError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// Unwrap returns the underlying error.
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode returns the exit status the error stands for.
func (e *ExitError) ExitCode() int { return e.Code }

// ExitCode returns the process exit status for an error returned by the
// command: the ExitError's code, 2 for any other error, 0 for nil.
func ExitCode(err error) int {
	var ee *ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	}
	return jepsen.ExitNotDone
}

// NewCommand returns `jepsen`, with `jepsen analyze DIR` below it. A run's
// verdict becomes the returned error: nil when valid, an *ExitError with
// code 1 (anomaly) or 2 (not done); use ExitCode to map it to the exit
// status.
func NewCommand() *cobra.Command {
	cfg := jepsen.DefaultConfig()
	var consistency, configFile string
	var quiet, verbose, dryRun bool
	var ctime, warm, recov, on, off, opTimeout, checkTimeout, convTimeout, healTimeout, clockMax, slowMax, tunerForce time.Duration
	cmd := &cobra.Command{
		Use:   "jepsen",
		Short: "Run a Jepsen-style consistency test against a local cluster of real nodes",
		Long: `Start a cluster of real adaptkv node processes, node i on its own loopback address
127.0.0.(i+1), run a workload against it from 127.0.0.1 while faults are injected,
heal, read everything back at the strongest level, and check the history:

  register   reads and writes of unique integers per key, checked for
             linearizability with Porcupine (per key)
  cas-register  reads, writes and compare-and-sets (PutIf IfValue, IfAbsent on a
             fresh key) per key, at linearizable unless --consistency says
             otherwise, checked with Porcupine against a register with cas: a
             cas that did not apply must have found a value other than the one
             it expected, and the value it reports must be the register's
  set        unique elements added as keys; after the heal a read at "all" must
             find every acknowledged one (lost, recovered, unexpected)
  session    each client checks read-your-writes and monotonic reads on its keys

Every workload also measures staleness per consistency level (reads older than the
newest write acknowledged before they began: how many, how many versions, how many
ms), checks that no read returns a value no one wrote, and checks convergence
(every replica of every key holds the last-writer-wins winner after the heal).

Faults (--nemesis, comma-separated, each optionally ":target"): kill, pause,
partition (iptables DROP between node addresses; shapes halves, ring, one,
bridge; needs root and iptables), clock (skew a node's clock), slow (delay a
node's replies to peers), drop-writes (a deliberately broken node that acks
writes without storing them), membership:add (start one more node on the next
loopback address, joining with --bootstrap-expect 0; the window's end waits until
the ring makes it normal; later windows' faults include it; at most 3 added),
membership:decommission (adaptkv node decommission of a live node, never below 3
nodes or the keyspace's N; the window's end waits until it left and exited) and
membership:replace (SIGKILL a node, start the next one with --replace DEAD_ID;
the window's end waits until it is normal and the dead one left); several
membership actions take turns, one change per window.
Targets: one, minority, majority, all, or node IDs joined with + (kill:n2+n3).
Windows are --nemesis-on long, --nemesis-off apart.

The run folder (--out) gets config.json (the whole configuration and the
command that repeats it), history.jsonl, results.json, summary.txt, latency.png,
throughput.png, linearizability.html when linearizability fails, jepsen.log, and
nodes/<id>/node.log. The same seed gives the same operations and faults.

Exit status: 0 valid, 1 an anomaly was found, 2 the run could not be done.`,
		Example: `  adaptkv jepsen --nodes 5 --workload register --consistency quorum \
      --nemesis partition,kill --time 60s --rate 200 --concurrency 10 --seed 1 --out /tmp/run1
  adaptkv jepsen --workload set --consistency one --nemesis partition:halves --time 30s
  adaptkv jepsen --config /tmp/run1/config.json --out /tmp/run1-again
  adaptkv jepsen analyze /tmp/run1`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			if configFile != "" {
				loaded, err := jepsen.LoadConfig(configFile)
				if err != nil {
					return &ExitError{Code: jepsen.ExitNotDone, Err: err}
				}
				// Flags given explicitly override the file.
				if !fs.Changed("out") {
					loaded.Out = ""
				}
				applyChanged(fs.Changed, &loaded, &cfg, consistency, durations{ctime, warm, recov, on, off, opTimeout, checkTimeout, convTimeout, healTimeout, clockMax, slowMax, tunerForce})
				cfg = loaded
			} else {
				applyChanged(func(string) bool { return true }, &cfg, &cfg, consistency, durations{ctime, warm, recov, on, off, opTimeout, checkTimeout, convTimeout, healTimeout, clockMax, slowMax, tunerForce})
				if cfg.Workload == jepsen.WorkloadCasRegister && !fs.Changed("consistency") {
					// Compare-and-set is linearizable; so must the reads
					// and writes beside it be for the history to be.
					cfg.Consistency = []string{"linearizable"}
				}
			}
			if dryRun {
				plan, err := jepsen.MakePlan(cfg)
				if err != nil {
					return &ExitError{Code: jepsen.ExitNotDone, Err: err}
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(plan)
			}
			stderr := cmd.ErrOrStderr()
			if !quiet {
				cfg.Progress = progressWriter(stderr)
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Say what happens on Ctrl-C, and let a second one kill the
			// process; not when the run ended on its own.
			finished := make(chan struct{})
			watcher := make(chan struct{})
			go func() {
				defer close(watcher)
				select {
				case <-finished:
				case <-ctx.Done():
					if cmd.Context().Err() == nil {
						fmt.Fprintln(stderr, "adaptkv jepsen: interrupted: stopping the clients, removing the faults and the nodes (Ctrl-C again to abandon the cleanup)")
						stop()
					}
				}
			}()
			res, err := jepsen.Run(ctx, cfg)
			close(finished)
			<-watcher
			if res != nil {
				res.Summary(cmd.OutOrStdout())
			}
			if err != nil {
				return &ExitError{Code: jepsen.ExitNotDone, Err: err}
			}
			if code := res.ExitCode(); code != 0 {
				return &ExitError{Code: code, Err: fmt.Errorf("verdict %s (see %s)", res.Valid, res.Dir), Printed: true}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Workload, "workload", cfg.Workload, "register, cas-register, set or session")
	fs.StringVar(&consistency, "consistency", strings.Join(cfg.Consistency, ","), "consistency levels of the operations, comma-separated (one, quorum, all, linearizable, adaptive); each operation draws one (cas-register: default linearizable)")
	fs.StringVar(&cfg.Adaptive, "adaptive", "", "make the test keyspace adaptive with this floor (one or quorum); use --consistency adaptive for its tuned level")
	fs.Float64Var(&cfg.AdaptiveMaxStale, "adaptive-max-stale", 0.001, "stale-read bound of the adaptive keyspace")
	fs.IntVar(&cfg.AdaptiveMaxRF, "adaptive-max-rf", 0, "with --adaptive: let the tuner choose N between --rf and this (with --tuner-force, the forced moves grow and shrink N too)")
	fs.DurationVar(&tunerForce, "tuner-force", 0, "with --adaptive: move the keyspace to another safe configuration at this interval (an unsafe node hook)")
	fs.StringVar(&cfg.Nemesis, "nemesis", cfg.Nemesis, "faults, comma-separated: kill, pause, partition, clock, slow, drop-writes, membership:add, membership:decommission, membership:replace, each optionally :target (one, minority, majority, all, n1+n2; partition: halves, ring, one, bridge); none for none")
	fs.StringVar(&cfg.NemesisMode, "nemesis-mode", cfg.NemesisMode, "which faults each window starts: random (each with probability 1/2, at least one), all, or cycle (one per window, in turn)")
	fs.DurationVar(&on, "nemesis-on", cfg.NemesisOn.D(), "how long each fault window lasts")
	fs.DurationVar(&off, "nemesis-off", cfg.NemesisOff.D(), "quiet time between fault windows")
	fs.DurationVar(&clockMax, "clock-max", cfg.ClockMax.D(), "largest clock skew the clock fault applies")
	fs.DurationVar(&slowMax, "slow-max", cfg.SlowMax.D(), "largest reply delay the slow fault applies")
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "number of node processes (node i on 127.0.0.(i+1))")
	fs.IntVar(&cfg.RF, "rf", cfg.RF, "replication factor of the test keyspace")
	fs.DurationVar(&ctime, "time", cfg.Time.D(), "length of the fault phase")
	fs.DurationVar(&warm, "warmup", cfg.WarmUp.D(), "traffic without faults before the fault phase")
	fs.DurationVar(&recov, "recovery", cfg.Recovery.D(), "traffic after the heal, before the final reads")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "target operations per second over all clients")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "number of clients, each one operation at a time")
	fs.BoolVar(&cfg.Sessions, "sessions", cfg.Sessions, "each client is an SDK session (kv.Session): its token goes with every read and write, and with the client when it moves to another node")
	fs.StringVar(&cfg.Clients, "clients", cfg.Clients, "routed (token-aware SDK), pinned (each client talks to one node), mixed, or hop (each client moves to the next node at its first read after a write)")
	fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "register, cas-register: keys in use at once")
	fs.IntVar(&cfg.OpsPerKey, "ops-per-key", cfg.OpsPerKey, "register, cas-register: operations on a key before a fresh key replaces it")
	fs.IntVar(&cfg.SessionKeys, "session-keys", cfg.SessionKeys, "session: keys of each client")
	fs.Float64Var(&cfg.ReadRatio, "read-ratio", cfg.ReadRatio, "fraction of operations that are reads")
	fs.IntVar(&cfg.MaxOps, "max-ops", cfg.MaxOps, "stop the clients after this many operations")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the operations and the fault schedule")
	fs.DurationVar(&opTimeout, "op-timeout", cfg.OpTimeout.D(), "deadline of each operation")
	fs.DurationVar(&checkTimeout, "check-timeout", cfg.CheckTimeout.D(), "bound on Porcupine's check of one key (0: none)")
	fs.DurationVar(&convTimeout, "converge-timeout", cfg.ConvergeTimeout.D(), "bound on the wait for hints and replica agreement after the heal")
	fs.BoolVar(&cfg.ConvergeRepair, "converge-repair", cfg.ConvergeRepair, "when replicas still disagree once hints are delivered, run a repair pass (as an operator would after an outage) and probe again; false judges hints and read repair alone")
	fs.DurationVar(&healTimeout, "heal-timeout", cfg.HealTimeout.D(), "bound on the wait for the cluster to be whole after the heal")
	fs.StringVar(&cfg.Out, "out", "", "run folder (default store/<workload>-<nemesis>-<consistency>/<time>)")
	fs.StringVar(&cfg.Bin, "bin", "", "adaptkv binary the nodes run (default: this program)")
	fs.StringVar(&cfg.FirstIP, "first-ip", cfg.FirstIP, "address of node 1; node i gets the i-th address from it")
	fs.IntVar(&cfg.BasePort, "base-port", 0, "first of the four ports of every node (0: pick free ports)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "run the nodes plaintext and unauthenticated; by default they use mutual TLS with certificates made in the run folder")
	fs.StringArrayVar(&cfg.NodeArgs, "node-arg", nil, "extra flag for every node, repeatable (e.g. --node-arg=--log-level=debug)")
	fs.BoolVar(&cfg.KeepData, "keep-data", false, "keep the nodes' data of a valid run (always kept when an anomaly is found)")
	fs.StringVar(&configFile, "config", "", "run with the configuration of a run folder's config.json (flags given here override it)")
	fs.BoolVar(&dryRun, "dry-run", false, "print the resolved configuration and the fault schedule as JSON, and run nothing")
	fs.BoolVarP(&quiet, "quiet", "q", false, "no progress lines")
	fs.BoolVarP(&verbose, "verbose", "v", false, "log the harness's actions to stderr")
	cmd.AddCommand(analyzeCommand())
	return cmd
}

type durations struct {
	time, warm, recov, on, off, op, check, conv, heal, clockMax, slowMax, tunerForce time.Duration
}

// applyChanged copies the flag values (held in src and the loose
// variables) that changed() reports into dst.
func applyChanged(changed func(string) bool, dst, src *jepsen.Config, consistency string, d durations) {
	if dst != src {
		s := *src
		set := func(name string, f func()) {
			if changed(name) {
				f()
			}
		}
		set("workload", func() { dst.Workload = s.Workload })
		set("nemesis", func() { dst.Nemesis = s.Nemesis })
		set("nemesis-mode", func() { dst.NemesisMode = s.NemesisMode })
		set("nodes", func() { dst.Nodes = s.Nodes })
		set("rf", func() { dst.RF = s.RF })
		set("rate", func() { dst.Rate = s.Rate })
		set("concurrency", func() { dst.Concurrency = s.Concurrency })
		set("clients", func() { dst.Clients = s.Clients })
		set("sessions", func() { dst.Sessions = s.Sessions })
		set("keys", func() { dst.Keys = s.Keys })
		set("ops-per-key", func() { dst.OpsPerKey = s.OpsPerKey })
		set("session-keys", func() { dst.SessionKeys = s.SessionKeys })
		set("read-ratio", func() { dst.ReadRatio = s.ReadRatio })
		set("max-ops", func() { dst.MaxOps = s.MaxOps })
		set("seed", func() { dst.Seed = s.Seed })
		set("out", func() { dst.Out = s.Out })
		set("bin", func() { dst.Bin = s.Bin })
		set("first-ip", func() { dst.FirstIP = s.FirstIP })
		set("base-port", func() { dst.BasePort = s.BasePort })
		set("keep-data", func() { dst.KeepData = s.KeepData })
		set("node-arg", func() { dst.NodeArgs = s.NodeArgs })
		set("insecure", func() { dst.Insecure = s.Insecure })
		set("adaptive", func() { dst.Adaptive = s.Adaptive })
		set("adaptive-max-stale", func() { dst.AdaptiveMaxStale = s.AdaptiveMaxStale })
		set("adaptive-max-rf", func() { dst.AdaptiveMaxRF = s.AdaptiveMaxRF })
		set("converge-repair", func() { dst.ConvergeRepair = s.ConvergeRepair })
	}
	setD := func(name string, p *jepsen.Duration, v time.Duration) {
		if changed(name) {
			*p = jepsen.Duration(v)
		}
	}
	setD("time", &dst.Time, d.time)
	setD("warmup", &dst.WarmUp, d.warm)
	setD("recovery", &dst.Recovery, d.recov)
	setD("nemesis-on", &dst.NemesisOn, d.on)
	setD("nemesis-off", &dst.NemesisOff, d.off)
	setD("op-timeout", &dst.OpTimeout, d.op)
	setD("check-timeout", &dst.CheckTimeout, d.check)
	setD("converge-timeout", &dst.ConvergeTimeout, d.conv)
	setD("heal-timeout", &dst.HealTimeout, d.heal)
	setD("clock-max", &dst.ClockMax, d.clockMax)
	setD("slow-max", &dst.SlowMax, d.slowMax)
	setD("tuner-force", &dst.TunerForce, d.tunerForce)
	if changed("consistency") {
		dst.Consistency = nil
		for _, l := range strings.Split(consistency, ",") {
			if l = strings.TrimSpace(l); l != "" {
				dst.Consistency = append(dst.Consistency, strings.ToLower(l))
			}
		}
	}
}

func analyzeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "analyze DIR",
		Short: "Re-check a stored run: run the checkers again on DIR/history.jsonl and rewrite the report",
		Long: `Read a run folder's config.json and history.jsonl, run the workload's checkers
again (no cluster is started), rewrite results.json, summary.txt, the plots and,
if linearizability fails, linearizability.html, and print the summary.

Exit status: 0 valid, 1 an anomaly was found, 2 the history could not be checked.`,
		Args:         cobra.ExactArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := jepsen.Analyze(cmd.Context(), args[0], cmd.OutOrStdout())
			if err != nil {
				return &ExitError{Code: jepsen.ExitNotDone, Err: err}
			}
			if code := res.ExitCode(); code != 0 {
				return &ExitError{Code: code, Err: fmt.Errorf("verdict %s", res.Valid), Printed: true}
			}
			return nil
		},
	}
}

// progressWriter returns where progress lines go: stderr when it is a
// terminal; otherwise a writer that keeps one line in ten, so that logs of
// long runs stay short.
func progressWriter(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		return w
	}
	return &sparse{w: w}
}

// sparse passes through lines that do not look like per-second progress,
// and one progress line in ten.
type sparse struct {
	w io.Writer
	n int
}

func (s *sparse) Write(p []byte) (int, error) {
	if strings.HasPrefix(string(p), "[") {
		s.n++
		if s.n%10 != 1 {
			return len(p), nil
		}
	}
	return s.w.Write(p)
}

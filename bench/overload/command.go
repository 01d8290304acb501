package overload

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/bench/internal/scenariocmd"
)

// NewCommand returns the command that runs the benchmark, reached as
// `adaptkv bench --scenario overload`: it starts its own nodes from
// --binary (by default the running executable) and, with --baseline, from
// an older build too.
func NewCommand() *cobra.Command {
	var cfg Config
	var verbose bool
	var variants []string
	cmd := &cobra.Command{
		Use:   "overload",
		Short: "Offer a cluster three times its peak and measure goodput, admitted latency, memory and recovery",
		Long: `Run the overload benchmark: start a local cluster of node processes, load
records, measure the closed-loop peak (--concurrency clients for --peak),
then run an open loop (requests sent at their scheduled time whatever the
cluster does, latency measured from that time) at --normal × peak for
--normal-time, --multiplier × peak for --overload, and --normal × peak for
--recovery. It reports goodput and the p99 of the admitted requests during
the overload against the peak, each node's peak RSS (VmHWM) and largest RSS
during the overload, and how many seconds after the overload the
per-second p99 is back within twice the normal p99. With --baseline it runs
the same against nodes of another adaptkv binary (an older build), one arm
after the other, and writes both into results.md and results.json in --out.`,
		Example: `  adaptkv bench --scenario overload --out /tmp/overload
  adaptkv bench --scenario overload --baseline /tmp/adaptkv-old --overload 60s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Binary, err = scenariocmd.Binary(cfg.Binary); err != nil {
				return err
			}
			if verbose {
				cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			}
			for _, v := range variants {
				name, flags, ok := strings.Cut(v, "=")
				if !ok || name == "" || strings.TrimSpace(flags) == "" {
					return fmt.Errorf("--variant %q: want NAME=FLAGS, e.g. 'max16=--max-inflight=16'", v)
				}
				cfg.Variants = append(cfg.Variants, Variant{Name: name, Flags: strings.Fields(flags)})
			}
			cfg.Command = strings.Join(os.Args, " ")
			ctx, stop := scenariocmd.Context(cmd)
			defer stop()
			_, err = Run(ctx, cfg, cmd.OutOrStdout())
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Binary, "binary", "", "adaptkv executable to start the nodes with (default: this executable)")
	fs.StringVar(&cfg.Baseline, "baseline", "", "a second adaptkv executable (an older build) to run the same schedule against, for comparison")
	fs.StringSliceVar(&cfg.BinaryFlags, "node-flags", nil, "extra node flags for --binary's nodes (not the baseline's), e.g. --max-inflight=32")
	fs.StringArrayVar(&variants, "variant", nil, "NAME=FLAGS: one more arm of --binary with these node flags (space-separated), after the first; repeatable")
	fs.StringVar(&cfg.Out, "out", "overload-results", "folder for results.json, results.md and the nodes' data and logs")
	fs.IntVar(&cfg.Nodes, "nodes", DefaultNodes, "node processes per arm")
	fs.StringVar(&cfg.Workload, "workload", "a", "YCSB core workload")
	fs.Int64Var(&cfg.Records, "records", DefaultRecords, "records to load")
	fs.IntVar(&cfg.Concurrency, "concurrency", DefaultConcurrency, "clients of the closed loop that measures the peak")
	fs.StringVar(&cfg.Consistency, "consistency", "quorum", "consistency of every request")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the operation sequence")
	fs.DurationVar(&cfg.Peak, "peak", DefaultPeak, "length of the closed loop that measures the peak")
	fs.DurationVar(&cfg.Warmup, "warmup", DefaultWarmup, "unmeasured closed loop before the peak")
	fs.DurationVar(&cfg.NormalTime, "normal-time", DefaultNormal, "open loop at the normal rate before the overload")
	fs.DurationVar(&cfg.Overload, "overload", DefaultOverload, "length of the overload")
	fs.DurationVar(&cfg.Recovery, "recovery", DefaultRecovery, "open loop at the normal rate after the overload")
	fs.Float64Var(&cfg.Multiplier, "multiplier", DefaultMultiplier, "the overload's rate as a multiple of the measured peak")
	fs.Float64Var(&cfg.Normal, "normal", DefaultNormalShare, "the normal rate as a share of the measured peak")
	fs.DurationVar(&cfg.QuietWait, "quiet-wait", 0, "before each arm, wait up to this long for other processes to use less than --quiet-cpus")
	fs.Float64Var(&cfg.QuietCores, "quiet-cpus", 0.3, "CPUs other processes may use for the machine to count as quiet")
	fs.BoolVar(&verbose, "verbose", false, "log the client's warnings to stderr")
	return cmd
}

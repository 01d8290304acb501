package scenario

import (
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/bench/internal/scenariocmd"
)

// NewCommand returns the command that runs the experiment, meant to be
// reached as `adaptkv bench --scenario adaptive`: it starts its own local
// cluster from --binary (by default the running executable, which is
// adaptkv itself) and writes its results into --out.
func NewCommand() *cobra.Command {
	var cfg Config
	var verbose bool
	cmd := &cobra.Command{
		Use:   "adaptive",
		Short: "Compare one, quorum and adaptive consistency on a local 5-node, 3-zone cluster",
		Long: `Run the tuner experiment: five local nodes in three zones with injected
latency (about 1 ms within a zone, 20 ms across), and the same seeded
workload against three keyspaces of RF 3 — static one, static quorum and
adaptive (at most 0.1% stale reads, floor one, read p99 target 10 ms) —
through three phases:
read-heavy (95/5 zipfian), a slow replica (one node 50 ms slower), and
write-heavy with reads that follow writes within 10 ms. The nodes run
the gray-failure detector with --health-window (5 s here, so that the slow
node, sent few requests, is judged); the tuner routes reads around a node
it flags, and the run reports its flag decisions.

For every arm and phase it measures throughput, read and write p50/p99 and
the stale-read rate (a read is stale when it returns an older version than
the newest write acknowledged to the bench before the read began), collects
the tuner's decisions, and writes results.json, results.md and plot.png
into --out. The arms are interleaved in short slices so that they see the
same conditions; a phase takes three times --phase. With the defaults the
whole run takes about 11 minutes.`,
		Example: `  adaptkv bench --scenario adaptive --out results/adaptive
  adaptkv bench --scenario adaptive --out /tmp/quick --phase 20s --keys 500`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Binary, err = scenariocmd.Binary(cfg.Binary); err != nil {
				return err
			}
			if verbose {
				cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			cfg.Command = strings.Join(os.Args, " ")
			ctx, stop := scenariocmd.Context(cmd)
			defer stop()
			_, err = Run(ctx, cfg, cmd.OutOrStdout())
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Out, "out", "adaptive-results", "folder for results.json, results.md, plot.png and the nodes' data and logs")
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed of the operation sequence; every arm gets the same one")
	fs.DurationVar(&cfg.PhaseDuration, "phase", DefaultPhaseDuration, "traffic per arm per phase (a phase lasts three times this)")
	fs.IntVar(&cfg.Keys, "keys", DefaultKeys, "keys per arm")
	fs.IntVar(&cfg.Concurrency, "concurrency", DefaultConcurrency, "workers issuing operations")
	fs.IntVar(&cfg.Rate, "rate", DefaultRate, "operations per second sent to the running arm; -1 for a closed loop")
	fs.DurationVar(&cfg.Slice, "slice", DefaultSlice, "how long one arm runs before the next takes over")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "unmeasured warm-up before phase 1 (0: min(60s, 3×--phase); negative: none)")
	fs.DurationVar(&cfg.Settle, "settle", 0, "start of each phase left out of the steady figures (0: min(60s, --phase))")
	fs.DurationVar(&cfg.AdaptiveReadP99, "adaptive-read-p99", AdaptiveReadP99Target, "read p99 target in the adaptive arm's goal; negative for none")
	fs.DurationVar(&cfg.TunerDwell, "tuner-dwell", DefaultTunerDwell, "the nodes' --tuner-dwell: least time between two cost-saving changes")
	fs.DurationVar(&cfg.HealthWindow, "health-window", DefaultHealthWindow, "the nodes' --health-window (gray-failure detector); negative turns detection off")
	fs.StringVar(&cfg.Binary, "binary", "", "adaptkv executable to start the nodes with (default: this executable)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "run the nodes plaintext and unauthenticated (default: mutual TLS, certificates made in --out/certs)")
	fs.BoolVar(&verbose, "verbose", false, "log the client's and the run's diagnostics to stderr")
	return cmd
}

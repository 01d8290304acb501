package gray

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/bench"
	"github.com/adaptkv/adaptkv/bench/internal/scenariocmd"
)

// NewCommand returns `adaptkv bench --scenario gray-failure`.
func NewCommand() *cobra.Command {
	var cfg Config
	var verbose bool
	cmd := &cobra.Command{
		Use:     "gray-failure",
		Short:   "Make one node slow under YCSB B and measure detection, read p99 and reinstatement, with the health detector on and off",
		Example: `  adaptkv bench --scenario gray-failure --out /tmp/gray`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Binary, err = scenariocmd.Binary(cfg.Binary); err != nil {
				return err
			}
			if cfg.Nodes < 3 {
				return fmt.Errorf("--nodes %d: the detector needs at least 3 nodes to compare", cfg.Nodes)
			}
			switch cfg.SlowTo {
			case "peers", "clients", "all":
			default:
				return fmt.Errorf("--slow-to %q: want peers, clients or all", cfg.SlowTo)
			}
			if len(cfg.Levels) == 0 {
				return fmt.Errorf("--levels: name at least one consistency level")
			}
			for _, l := range cfg.Levels {
				if _, err := bench.ParseConsistency(l); err != nil {
					return fmt.Errorf("--levels: %w", err)
				}
			}
			if verbose {
				cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
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
	fs.StringVar(&cfg.Out, "out", "gray-results", "folder for results.json, results.md and the nodes' data and logs")
	fs.IntVar(&cfg.Nodes, "nodes", 5, "node processes")
	fs.StringVar(&cfg.Workload, "workload", "b", "YCSB core workload")
	fs.Int64Var(&cfg.Records, "records", 10000, "records to load")
	fs.IntVar(&cfg.Concurrency, "concurrency", 16, "closed-loop clients")
	fs.StringSliceVar(&cfg.Levels, "levels", []string{"one", "quorum"}, "consistency levels to run the schedule at (each with detection on and off)")
	fs.StringVar(&cfg.SlowTo, "slow-to", "all", "whose requests the slow node answers late: peers (replica replies), clients (the calls it coordinates) or all")
	fs.DurationVar(&cfg.Steady, "steady", 20*time.Second, "measured phase before the fault")
	fs.DurationVar(&cfg.Fault, "fault", 30*time.Second, "phase with the slow node")
	fs.DurationVar(&cfg.Recovery, "recovery", 20*time.Second, "phase after the fault")
	fs.DurationVar(&cfg.Delay, "delay", 50*time.Millisecond, "the slow node's reply delay")
	fs.DurationVar(&cfg.Flap, "flap", 0, "turn the delay on and off at this interval during the fault phase (0: hold it)")
	fs.StringVar(&cfg.Slow, "slow", "n3", "the node made slow")
	fs.DurationVar(&cfg.HealthWindow, "health-window", 2*time.Second, "the detector's window in the detection arm")
	fs.DurationVar(&cfg.Reinstate, "reinstate-wait", 30*time.Second, "how long after the recovery phase to wait for reinstatement")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the operation sequence")
	fs.BoolVar(&verbose, "verbose", false, "log the client's warnings to stderr")
	return cmd
}

package shape

import (
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/bench/internal/scenariocmd"
)

// NewCommand returns the command that runs the check, reached as
// `adaptkv bench --scenario shape`: it starts its own nodes from --binary
// (by default the running executable).
func NewCommand() *cobra.Command {
	var cfg Config
	var verbose bool
	cmd := &cobra.Command{
		Use:   "shape",
		Short: "Scale a cluster out and back in under a quorum writer and check every acknowledged key and each node's storage",
		Long: `Run the shape check: start 3 pebble node processes, load --keys keys at
quorum, then add --add nodes one at a time and decommission as many one at a
time (the added ones, newest first, or with --from-first n1, n2, ...) while a
writer keeps writing at quorum. After each change it reads every
acknowledged key at quorum (none may be missing or stale), waits until each
node's own storage (Admin.LocalGet) holds exactly the keys it owns (the
automatic cleanup after a change), and runs keyspace cleanup, whose per-node
scanned count must equal what the node holds. It writes results.md and
results.json in --out and exits non-zero when a check fails.`,
		Example: `  adaptkv bench --scenario shape --out /tmp/shape
  adaptkv bench --scenario shape --keys 300 --add 1 --out /tmp/shape-small`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Binary, err = scenariocmd.Binary(cfg.Binary); err != nil {
				return err
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
	fs.StringVar(&cfg.Out, "out", "shape-results", "folder for results.json, results.md and the nodes' data and logs")
	fs.IntVar(&cfg.Keys, "keys", DefaultKeys, "keys loaded at quorum before the first change")
	fs.IntVar(&cfg.Add, "add", DefaultAdd, "nodes added one at a time (then as many decommissioned)")
	fs.StringSliceVar(&cfg.Decommission, "decommission", nil, "nodes to decommission, in order (default: the added ones, newest first)")
	fs.StringSliceVar(&cfg.Replace, "replace", nil, "nodes to kill (SIGKILL) and replace with a new node started with --replace, in order, after the adds")
	fs.BoolVar(&cfg.FromFirst, "from-first", false, "decommission n1, n2, ... (the first nodes, the metadata leader among them) rather than the added ones")
	fs.IntVar(&cfg.WriteRate, "write-rate", DefaultWriteRate, "the writer's writes per second at most")
	fs.IntVar(&cfg.Concurrency, "concurrency", DefaultConcurrency, "requests in flight during the load and the checks")
	fs.DurationVar(&cfg.StepTimeout, "step-timeout", 5*time.Minute, "how long a change may take")
	fs.DurationVar(&cfg.CleanupWait, "cleanup-wait", time.Minute, "how long after a change each node's storage may take to match what it owns before keyspace cleanup is run")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "run the nodes plaintext and unauthenticated (default: mutual TLS, certificates made in --out/certs)")
	fs.BoolVar(&verbose, "verbose", false, "log the launcher's warnings on stderr")
	return cmd
}

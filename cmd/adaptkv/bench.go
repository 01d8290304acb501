package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/adaptkv/adaptkv/client/bench"
	"github.com/adaptkv/adaptkv/client/bench/scenario"
)

// benchCommand is `adaptkv bench`: the YCSB tool, and with --scenario
// adaptive the tuner experiment (one, quorum and adaptive arms on a local
// five-node, three-zone cluster). The experiment's flags are added to the
// bench command; where both define a flag (say --seed), the value given is
// passed on to the experiment.
func benchCommand() *cobra.Command {
	cmd := bench.NewCommand()
	exp := scenario.NewCommand()
	var name string
	cmd.Flags().StringVar(&name, "scenario", "", "run an experiment instead of one workload: adaptive (the tuner against static one and quorum)")
	shared := map[string]bool{}
	exp.Flags().VisitAll(func(f *pflag.Flag) {
		if cmd.Flags().Lookup(f.Name) != nil {
			shared[f.Name] = true
			return
		}
		cmd.Flags().AddFlag(f)
	})
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		switch name {
		case "":
			return run(c, args)
		case "adaptive":
		default:
			return usagef("--scenario %q: the only scenario is adaptive", name)
		}
		var err error
		c.Flags().Visit(func(f *pflag.Flag) {
			if shared[f.Name] && err == nil {
				err = exp.Flags().Set(f.Name, f.Value.String())
			}
		})
		if err != nil {
			return usageErr(fmt.Errorf("--scenario adaptive: %w", err))
		}
		exp.SetContext(c.Context())
		exp.SetOut(c.OutOrStdout())
		exp.SetErr(c.ErrOrStderr())
		return exp.RunE(exp, args)
	}
	return cmd
}

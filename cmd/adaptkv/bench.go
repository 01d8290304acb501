package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/adaptkv/adaptkv/bench"
	"github.com/adaptkv/adaptkv/bench/gray"
	"github.com/adaptkv/adaptkv/bench/overload"
	"github.com/adaptkv/adaptkv/bench/scenario"
	"github.com/adaptkv/adaptkv/bench/shape"
)

// benchCommand is `adaptkv bench`: the YCSB tool, and with --scenario an
// experiment: adaptive (one, quorum and adaptive arms on a local five-node,
// three-zone cluster), overload (three times the peak, open loop, against
// this build and optionally an older one) or shape (scale out and in under a
// quorum writer, with the checks of issue 11). The experiments' flags are added
// to the bench command; where a flag of the chosen experiment has the name of
// one already there (say --seed, or another experiment's --out), the value
// given is passed on to it.
func benchCommand() *cobra.Command {
	cmd := bench.NewCommand()
	exps := map[string]*cobra.Command{"adaptive": scenario.NewCommand(), "gray-failure": gray.NewCommand(), "overload": overload.NewCommand(), "shape": shape.NewCommand()}
	names := make([]string, 0, len(exps))
	for name := range exps {
		names = append(names, name)
	}
	sort.Strings(names)
	var name string
	cmd.Flags().StringVar(&name, "scenario", "", "run an experiment instead of one workload: adaptive (the tuner against static one and quorum), overload (3× the peak, open loop; --baseline compares an older build), gray-failure (one node turns slow under YCSB B; detection on against off), or shape (3 to 6 nodes and back under a quorum writer, checking every acknowledged key and each node's storage)")
	for _, n := range names {
		exps[n].Flags().VisitAll(func(f *pflag.Flag) {
			if cmd.Flags().Lookup(f.Name) == nil {
				cmd.Flags().AddFlag(f)
			}
		})
	}
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if name == "" {
			return run(c, args)
		}
		exp, ok := exps[name]
		if !ok {
			return usagef("--scenario %q: want one of %s", name, strings.Join(names, ", "))
		}
		var err error
		c.Flags().Visit(func(f *pflag.Flag) {
			own := exp.Flags().Lookup(f.Name)
			if own != nil && own != f && err == nil {
				err = exp.Flags().Set(f.Name, f.Value.String())
			}
		})
		if err != nil {
			return usageErr(fmt.Errorf("--scenario %s: %w", name, err))
		}
		exp.SetContext(c.Context())
		exp.SetOut(c.OutOrStdout())
		exp.SetErr(c.ErrOrStderr())
		return exp.RunE(exp, args)
	}
	return cmd
}

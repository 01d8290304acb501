package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// tunerCommand groups the commands that show what the tuner decided and
// what it would decide.
func (a *app) tunerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tuner",
		Short: "Explain the tuner's decisions for an adaptive keyspace, and show its predictions",
	}
	var limit int
	explain := &cobra.Command{
		Use:     "explain KEYSPACE",
		Short:   "Print the tuner's recent decisions about a keyspace: inputs, candidates, choice and reason",
		Example: `  adaptkv tuner explain feed --limit 5`,
		Args:    cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			decisions, err := c.TunerExplain(ctx, args[0], limit)
			if err != nil {
				return err
			}
			if a.json() {
				out := make([]json.RawMessage, 0, len(decisions))
				for _, d := range decisions {
					out = append(out, json.RawMessage(d.JSON))
				}
				return a.printJSON(out)
			}
			if len(decisions) == 0 {
				fmt.Fprintf(a.stdout, "no decisions about %s yet: the tuner decides every few seconds once the keyspace has traffic\n", args[0])
				return nil
			}
			for i, d := range decisions {
				if i > 0 {
					fmt.Fprintln(a.stdout, strings.Repeat("-", 72))
				}
				fmt.Fprintln(a.stdout, strings.TrimRight(d.Text, "\n"))
			}
			return nil
		},
	}
	explain.Flags().IntVar(&limit, "limit", 10, "how many of the most recent decisions to show")

	whatif := &cobra.Command{
		Use:     "whatif KEYSPACE",
		Short:   "Show the model's predicted staleness and latency for every configuration the goal allows, as things stand now",
		Example: `  adaptkv tuner whatif feed`,
		Args:    cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			text, js, err := c.TunerWhatIf(ctx, args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(json.RawMessage(js))
			}
			fmt.Fprint(a.stdout, text)
			return nil
		},
	}
	cmd.AddCommand(explain, whatif)
	return cmd
}

package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/client"
)

// doctorJSON is the JSON output of doctor.
type doctorJSON struct {
	AnsweredBy string                           `json:"answered_by"`
	Leader     bool                             `json:"leader"`
	Enabled    bool                             `json:"enabled"`
	Flagged    map[string]client.HealthDecision `json:"flagged"`
	Evidence   []client.HealthEvidence          `json:"evidence"`
	Decisions  []client.HealthDecision          `json:"decisions"`
}

func (a *app) doctorCommand() *cobra.Command {
	var last int
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Show gray failures: flagged nodes with their evidence, the detector's last window, and recent health decisions",
		Long: `doctor shows what the metadata leader's gray-failure detector sees: nodes that are
alive to gossip but answer their peers much more slowly, or fail much more often,
than the others. A flagged node is read last by every coordinator and coordinates
no request a client can send elsewhere; it still takes writes and counts for W.
It is reinstated once its peers see it back in line for a few windows.`,
		Args: cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			if last < 0 {
				return usagef("--last must be at least 0, got %d", last)
			}
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			h, err := c.Health(ctx)
			if err != nil {
				return err
			}
			out := doctorJSON{AnsweredBy: h.NodeID, Leader: h.Leader, Enabled: h.Enabled, Flagged: h.Flagged, Evidence: h.Evidence, Decisions: h.Decisions}
			if out.Flagged == nil {
				out.Flagged = map[string]client.HealthDecision{}
			}
			if len(out.Decisions) > last {
				out.Decisions = out.Decisions[len(out.Decisions)-last:]
			}
			if a.json() {
				return a.printJSON(out)
			}
			a.printDoctor(out)
			return nil
		},
	}
	cmd.Flags().IntVar(&last, "last", 10, "how many recent health decisions to show")
	return cmd
}

func (a *app) printDoctor(d doctorJSON) {
	w := a.stdout
	switch {
	case len(d.Flagged) == 0:
		fmt.Fprintln(w, "no node flagged")
	default:
		for id, f := range d.Flagged {
			fmt.Fprintf(w, "FLAGGED %s since %s: %s\n", id, f.At.Format(time.DateTime), f.Reason)
		}
	}
	if !d.Enabled {
		fmt.Fprintf(w, "detection is off on %s (--health-window negative)\n", d.AnsweredBy)
	}
	if len(d.Evidence) > 0 {
		fmt.Fprintf(w, "\nlast window on the metadata leader %s:\n", d.AnsweredBy)
		tw := a.table()
		fmt.Fprintln(tw, "NODE\tVERDICT\tOP\tREQUESTS\tMEDIAN RTT\tCLUSTER\tLIMIT\tFAILURES\tLIMIT")
		for _, e := range d.Evidence {
			fmt.Fprintf(tw, "%s\t%s %d\t%s\t%d\t%v\t%v\t%v\t%.1f%%\t%.1f%%\n", e.Node, e.Verdict, e.Streak, dash(e.Op), e.Samples,
				e.Latency.Round(10*time.Microsecond), e.ClusterLatency.Round(10*time.Microsecond), e.LatencyLimit.Round(10*time.Microsecond),
				100*e.FailureRate, 100*e.FailureLimit)
		}
		tw.Flush()
	} else if !d.Leader {
		fmt.Fprintf(w, "\n%s does not lead the metadata log: no live evidence\n", d.AnsweredBy)
	}
	if len(d.Decisions) > 0 {
		fmt.Fprintln(w, "\nrecent health decisions:")
		for _, dec := range d.Decisions {
			verb := "reinstated"
			if dec.Flag {
				verb = "flagged"
			}
			fmt.Fprintf(w, "%s %s %s: %s\n", dec.At.Format(time.DateTime), verb, dec.Node, dec.Reason)
		}
	}
}

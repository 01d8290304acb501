package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/client"
)

// cleanupJSON is one member's line in the JSON output of keyspace cleanup.
type cleanupJSON struct {
	Node        string `json:"node"`
	KeysScanned uint64 `json:"keys_scanned"`
	KeysRemoved uint64 `json:"keys_removed"`
	Error       string `json:"error,omitempty"`
}

// cleanupCommand is `adaptkv keyspace cleanup NAME`: every ring member
// deletes its records of keys it no longer replicates.
func (a *app) cleanupCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cleanup NAME",
		Short: "Delete, on every node, the records of keys it no longer replicates",
		Long: `Delete, on every ring member, the records of the keyspace's keys that member is
no longer a replica of (after a join, a decommission or N shrinking). It runs
once the ring is in force on every member, and is refused while a topology
change or a growth of N is in progress. The leader runs it by itself after a
join or a decommission; this command runs it again, e.g. after a member that
was down comes back. It reports, per node, the keys scanned and removed.`,
		Args: cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "" {
				return usagef("keyspace name is empty")
			}
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			res, err := c.CleanupKeyspace(ctx, args[0])
			if err != nil {
				return err
			}
			return a.printCleanup(res)
		},
	}
}

func (a *app) printCleanup(res []client.CleanupResult) error {
	failed := 0
	for _, r := range res {
		if r.Err != "" {
			failed++
		}
	}
	if a.json() {
		out := make([]cleanupJSON, 0, len(res))
		for _, r := range res {
			out = append(out, cleanupJSON{Node: r.NodeID, KeysScanned: r.KeysScanned, KeysRemoved: r.KeysRemoved, Error: r.Err})
		}
		if err := a.printJSON(out); err != nil {
			return err
		}
	} else {
		tw := a.table()
		fmt.Fprintln(tw, "NODE\tKEYS SCANNED\tKEYS REMOVED\tERROR")
		for _, r := range res {
			e := "-"
			if r.Err != "" {
				e = r.Err
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", r.NodeID, r.KeysScanned, r.KeysRemoved, e)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("cleanup failed on %d of %d nodes", failed, len(res))
	}
	return nil
}

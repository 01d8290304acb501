package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/security"
)

func (a *app) keyringCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keyring",
		Short: "List and rotate the gossip encryption keys",
		Long: `Gossip between secure nodes is encrypted with a keyring: the primary key
encrypts, every key of the ring decrypts. A cluster starts with the key in
gossip.key of its certificate directory; each node keeps its keyring in its
data directory from then on.

Rotate without downtime in three steps, each taken once the previous one
is in force on every member (the command waits for that and fails, naming
the members, if it is not):

  adaptkv keyring install NEW   # every member decrypts with NEW too
  adaptkv keyring use NEW       # every member encrypts with NEW
  adaptkv keyring remove OLD    # OLD no longer opens the cluster

Then write NEW to gossip.key wherever new nodes get their certificates.`,
	}
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Print a fresh random gossip key (base64)",
		Args:  cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(a.stdout, security.EncodeGossipKey(security.NewGossipKey()))
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "Show the cluster's gossip keys and which members hold them",
		Args:  cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.keyringRun(cmd.Context(), "", func(ctx context.Context, c *client.Client) (*client.Keyring, error) {
				return c.KeyringList(ctx)
			})
		},
	}
	change := func(use, short, done string, call func(*client.Client, context.Context, string) (*client.Keyring, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " KEY",
			Short: short,
			Args:  cobraArgs(cobra.ExactArgs(1)),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := security.DecodeGossipKey(args[0]); err != nil {
					return usageErr(fmt.Errorf("%w (make one with `adaptkv keyring generate`)", err))
				}
				return a.keyringRun(cmd.Context(), done, func(ctx context.Context, c *client.Client) (*client.Keyring, error) {
					return call(c, ctx, args[0])
				})
			},
		}
	}
	cmd.AddCommand(gen, list,
		change("install", "Add a key every member decrypts with", "installed", (*client.Client).KeyringInstall),
		change("use", "Make an installed key the one every member encrypts with", "in use", (*client.Client).KeyringUse),
		change("remove", "Remove a key that is not the primary from every member", "removed", (*client.Client).KeyringRemove),
	)
	return cmd
}

// keyringJSON is the JSON output of the keyring commands.
type keyringJSON struct {
	Primary    string            `json:"primary"`
	Keys       []string          `json:"keys"`
	Index      uint64            `json:"index"`
	Nodes      []keyringNodeJSON `json:"nodes"`
	NotApplied []string          `json:"not_applied,omitempty"`
}

type keyringNodeJSON struct {
	ID      string   `json:"id"`
	Primary string   `json:"primary,omitempty"`
	Keys    []string `json:"keys,omitempty"`
	Applied uint64   `json:"applied"`
	Error   string   `json:"error,omitempty"`
}

// keyringRun runs a keyring call and prints the keyring; done, for a
// change, is what the change did. A change not yet in force everywhere
// fails after printing, so that a script does not take the next step.
func (a *app) keyringRun(ctx context.Context, done string, call func(context.Context, *client.Client) (*client.Keyring, error)) error {
	c, ctx, cancel, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	kr, err := call(ctx, c)
	if err != nil {
		return err
	}
	if a.json() {
		out := keyringJSON{Primary: kr.Primary, Keys: kr.Keys, Index: kr.Index, NotApplied: kr.NotApplied}
		for _, n := range kr.Nodes {
			out.Nodes = append(out.Nodes, keyringNodeJSON{ID: n.ID, Primary: n.Primary, Keys: n.Keys, Applied: n.Applied, Error: n.Error})
		}
		if err := a.printJSON(out); err != nil {
			return err
		}
	} else {
		for _, k := range kr.Keys {
			holders := 0
			for _, n := range kr.Nodes {
				if slices.Contains(n.Keys, k) {
					holders++
				}
			}
			role := ""
			if k == kr.Primary {
				role = "primary"
			}
			fmt.Fprintf(a.stdout, "%s  %-7s  on %d/%d members\n", k, role, holders, len(kr.Nodes))
		}
		for _, n := range kr.Nodes {
			if n.Error != "" {
				fmt.Fprintf(a.stdout, "%s did not answer: %s\n", n.ID, n.Error)
			}
		}
	}
	if len(kr.NotApplied) > 0 {
		what := "the keyring"
		if done != "" {
			what = "the change"
		}
		return fmt.Errorf("%s is not in force on %s yet; wait until `adaptkv keyring list` shows every member agreeing before the next step",
			what, strings.Join(kr.NotApplied, ", "))
	}
	if done != "" && !a.json() {
		fmt.Fprintf(a.stdout, "key %s on every alive member (%d)\n", done, len(kr.Nodes))
	}
	return nil
}

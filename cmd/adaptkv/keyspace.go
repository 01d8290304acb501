package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/client"
)

// keyspaceJSON is a keyspace in JSON output.
type keyspaceJSON struct {
	Name              string    `json:"name"`
	ReplicationFactor int       `json:"replication_factor"`
	Consistency       string    `json:"consistency"`
	R                 int       `json:"r,omitempty"`
	W                 int       `json:"w,omitempty"`
	Epoch             uint64    `json:"epoch"`
	Created           string    `json:"created,omitempty"`
	Updated           string    `json:"updated,omitempty"`
	Adaptive          *goalJSON `json:"adaptive,omitempty"`
}

// goalJSON is an adaptive keyspace's goal in JSON output.
type goalJSON struct {
	MaxStale      float64 `json:"max_stale"`
	Floor         string  `json:"floor"`
	RFMin         int     `json:"rf_min"`
	RFMax         int     `json:"rf_max"`
	LatencyTarget string  `json:"latency_target,omitempty"`
}

func toKeyspaceJSON(k *client.Keyspace) keyspaceJSON {
	out := keyspaceJSON{Name: k.Name, ReplicationFactor: k.ReplicationFactor, Consistency: k.Consistency.String(), R: k.R, W: k.W, Epoch: k.Epoch}
	if !k.Created.IsZero() {
		out.Created = k.Created.UTC().Format(time.RFC3339Nano)
	}
	if !k.Updated.IsZero() {
		out.Updated = k.Updated.UTC().Format(time.RFC3339Nano)
	}
	if g := k.Adaptive; g != nil {
		out.Adaptive = &goalJSON{MaxStale: g.MaxStale, Floor: floorText(g), RFMin: g.MinRF, RFMax: g.MaxRF}
		if g.LatencyTarget > 0 {
			out.Adaptive.LatencyTarget = g.LatencyTarget.String()
		}
	}
	return out
}

func floorText(g *client.AdaptiveGoal) string {
	switch {
	case g.SessionFloor:
		return "session"
	case g.Floor == client.Quorum:
		return client.Quorum.String()
	}
	return client.One.String()
}

// levelText renders a keyspace's default level: "quorum" or "custom(R=2 W=1)".
func levelText(k *client.Keyspace) string {
	if g := k.Adaptive; g != nil {
		return fmt.Sprintf("%s(max-stale=%g floor=%s, now R=%d W=%d)", api.AdaptiveName, g.MaxStale, floorText(g), k.R, k.W)
	}
	if k.Consistency == client.Custom {
		return fmt.Sprintf("%s(R=%d W=%d)", client.Custom, k.R, k.W)
	}
	return k.Consistency.String()
}

func (a *app) printKeyspaces(list []*client.Keyspace, one bool) error {
	if a.json() {
		if one {
			return a.printJSON(toKeyspaceJSON(list[0]))
		}
		out := make([]keyspaceJSON, 0, len(list))
		for _, k := range list {
			out = append(out, toKeyspaceJSON(k))
		}
		return a.printJSON(out)
	}
	tw := a.table()
	fmt.Fprintln(tw, "NAME\tRF\tCONSISTENCY\tEPOCH\tUPDATED")
	for _, k := range list {
		upd := "-"
		if !k.Updated.IsZero() {
			upd = k.Updated.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", k.Name, k.ReplicationFactor, levelText(k), k.Epoch, upd)
	}
	return tw.Flush()
}

// specFlags are the configuration flags of keyspace create and alter.
type specFlags struct {
	rf    int
	level string
	r, w  int
	// Goal of an adaptive keyspace (--consistency adaptive).
	maxStale      float64
	floor         string
	rfMin, rfMax  int
	latencyTarget time.Duration
}

func (f *specFlags) register(cmd *cobra.Command, rfUsage string) {
	fs := cmd.Flags()
	fs.IntVar(&f.rf, "rf", 0, rfUsage)
	fs.StringVar(&f.level, "consistency", "", "default consistency level: one, quorum, all, linearizable, or adaptive (with a goal)")
	fs.IntVar(&f.r, "r", 0, "default read quorum R of a custom level (with --w)")
	fs.IntVar(&f.w, "w", 0, "default write quorum W of a custom level (with --r)")
	fs.Float64Var(&f.maxStale, "max-stale", 0.001, "adaptive: bound on the probability that a read misses the latest completed write")
	fs.StringVar(&f.floor, "floor", "one", "adaptive: the weakest level allowed, one, quorum (keeps R+W>N at every instant) or session (as one; the clients use SDK sessions, whose guarantees hold at any R and W)")
	fs.IntVar(&f.rfMin, "rf-min", 0, "adaptive: least replication factor the tuner may choose (default: --rf)")
	fs.IntVar(&f.rfMax, "rf-max", 0, "adaptive: largest replication factor the tuner may choose (default: --rf)")
	fs.DurationVar(&f.latencyTarget, "latency-target", 0, "adaptive: read p99 target, e.g. 10ms (optional)")
}

// spec converts the flags. A custom default needs both R and W, since a
// keyspace default serves reads and writes alike.
func (f *specFlags) spec(cmd *cobra.Command) (client.KeyspaceSpec, error) {
	s := client.KeyspaceSpec{ReplicationFactor: f.rf}
	fs := cmd.Flags()
	if fs.Changed("r") || fs.Changed("w") {
		if f.level != "" {
			return s, usagef("--consistency and --r/--w cannot be combined: --r/--w set a custom level")
		}
		if !fs.Changed("r") || !fs.Changed("w") {
			return s, usagef("a custom default level needs both --r and --w")
		}
		s.Consistency, s.R, s.W = client.Custom, f.r, f.w
		return s, nil
	}
	adaptiveFlags := []string{"max-stale", "floor", "rf-min", "rf-max", "latency-target"}
	if f.level == api.AdaptiveName {
		g := &client.AdaptiveGoal{MaxStale: f.maxStale, MinRF: f.rfMin, MaxRF: f.rfMax, LatencyTarget: f.latencyTarget}
		switch l, _ := api.ParseLevel(f.floor); {
		case f.floor == "session":
			g.Floor, g.SessionFloor = client.One, true
		case l == client.One || l == client.Quorum:
			g.Floor = l
		default:
			return s, usagef("--floor %q: want one, quorum or session", f.floor)
		}
		if f.maxStale < 0 || f.maxStale >= 1 {
			return s, usagef("--max-stale %g: want a probability in [0, 1)", f.maxStale)
		}
		s.Adaptive = g
		return s, nil
	}
	for _, name := range adaptiveFlags {
		if fs.Changed(name) {
			return s, usagef("--%s is a goal of an adaptive keyspace: use it with --consistency adaptive", name)
		}
	}
	l, err := parseLevel(f.level)
	if err != nil {
		return s, err
	}
	s.Consistency = l
	return s, nil
}

// waitApplied waits until every alive node has applied the keyspace change
// ks, or ctx ends. The server answers once the change is committed, when
// followers may not have applied it for some milliseconds yet; a script's
// next command (describe, or a put in the new keyspace) can reach one of
// them and be told the keyspace does not exist. Waiting here gives the CLI
// read-your-writes across nodes. A node that lags past the deadline gets a
// warning, not an error: the change itself is committed.
func (a *app) waitApplied(ctx context.Context, c *client.Client, ks *client.Keyspace) {
	st, err := c.ClusterStatus(ctx)
	if err != nil {
		return
	}
	var (
		mu     sync.Mutex
		lagged []string
		wg     sync.WaitGroup
	)
	// Bounded well below --timeout: a node that died a moment ago still
	// looks alive to gossip, and must not hold the command up for long.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for _, m := range st.Members {
		if m.State != client.StateAlive || m.GRPCAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !a.memberApplied(ctx, m.GRPCAddr, ks.Epoch) {
				mu.Lock()
				lagged = append(lagged, m.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(lagged) > 0 {
		slices.Sort(lagged)
		fmt.Fprintf(a.stderr, "adaptkv: warning: keyspace %q is committed (epoch %d) but %s had not applied it yet; requests through them may not see it for a moment\n",
			ks.Name, ks.Epoch, strings.Join(lagged, ", "))
	}
}

// memberApplied polls the node at addr until it has applied the metadata
// log up to index, and reports whether it did before ctx ended.
func (a *app) memberApplied(ctx context.Context, addr string, index uint64) bool {
	mc, err := a.memberClient(ctx, addr)
	if err != nil {
		return false
	}
	defer mc.Close()
	for {
		if s, err := mc.ClusterStatus(ctx); err == nil && s.MetadataIndex >= index {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (a *app) keyspaceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "keyspace",
		Aliases: []string{"keyspaces", "ks"},
		Short:   "Create, change and list keyspaces",
	}

	var cf specFlags
	create := &cobra.Command{
		Use:   "create NAME --rf N",
		Short: "Create a keyspace with N replicas of every key",
		Example: `  adaptkv keyspace create users --rf 3 --consistency quorum
  adaptkv keyspace create feed --rf 3 --consistency adaptive --max-stale 0.001 --floor one`,
		Args: cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("rf") {
				return usagef("--rf is required: the number of replicas of every key (at most the number of nodes)")
			}
			spec, err := cf.spec(cmd)
			if err != nil {
				return err
			}
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			ks, err := c.CreateKeyspace(ctx, args[0], spec)
			if err != nil {
				return err
			}
			a.waitApplied(ctx, c, ks)
			return a.printKeyspaces([]*client.Keyspace{ks}, true)
		},
	}
	cf.register(create, "replication factor: replicas of every key (required)")

	var af specFlags
	alter := &cobra.Command{
		Use:     "alter NAME",
		Short:   "Change a keyspace's default consistency",
		Example: `  adaptkv keyspace alter users --consistency one`,
		Args:    cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := af.spec(cmd)
			if err != nil {
				return err
			}
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			ks, err := c.AlterKeyspace(ctx, args[0], spec)
			if err != nil {
				return err
			}
			a.waitApplied(ctx, c, ks)
			return a.printKeyspaces([]*client.Keyspace{ks}, true)
		},
	}
	af.register(alter, "new replication factor (0 keeps it; changing it is not supported by the server yet)")

	describe := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a keyspace's configuration",
		Args:  cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			ks, err := c.DescribeKeyspace(ctx, args[0])
			if err != nil {
				return err
			}
			return a.printKeyspaces([]*client.Keyspace{ks}, true)
		},
	}

	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List every keyspace",
		Args:    cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := a.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			defer c.Close()
			all, err := c.ListKeyspaces(ctx)
			if err != nil {
				return err
			}
			return a.printKeyspaces(all, false)
		},
	}

	cmd.AddCommand(create, alter, describe, list, a.repairCommand(), a.cleanupCommand())
	return cmd
}

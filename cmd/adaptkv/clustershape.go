package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/launch"
)

// exitWait is how long cluster remove waits for a node that has left the
// ring to end its own process before it stops it.
const exitWait = 20 * time.Second

// shapeJSON is the JSON output of cluster add and cluster remove.
type shapeJSON struct {
	Action string `json:"action"`
	// Nodes are the nodes added or removed.
	Nodes []string `json:"nodes"`
	// Stopped is set when a removed node's process did not exit on its own
	// and was stopped.
	Stopped bool       `json:"stopped,omitempty"`
	Layout  []nodeJSON `json:"layout"`
}

func (a *app) clusterAddCommand() *cobra.Command {
	var nodes int
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Add nodes to the running local cluster, one at a time, each streamed to until it is normal",
		Long: `Start K more node processes that join the running local cluster, one after
another: each is started with --bootstrap-expect 0 and the other nodes as
seeds, the metadata leader records it as joining, copies to it the ranges it
will hold, and makes it normal. The command waits for that before it adds
the next one (the metadata log takes one topology change at a time). Every
node must be running: a join waits while a member is down.`,
		Example: `  adaptkv cluster add
  adaptkv cluster add --nodes 2`,
		Args: cobraArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.clusterAdd(cmd.Context(), nodes, wait)
		},
	}
	cmd.Flags().IntVar(&nodes, "nodes", 1, "number of nodes to add")
	cmd.Flags().DurationVar(&wait, "wait", 5*time.Minute, "how long to wait for each node to become normal")
	return cmd
}

// requireRunning checks that every node of l that has not been removed is
// running, but for except: topology changes need every member up.
func (l *layout) requireRunning(what, except string) error {
	live := l.live()
	var down []string
	for _, n := range live {
		if n.ID != except && !n.running() {
			down = append(down, n.ID)
		}
	}
	switch {
	case len(down) == len(live) || (len(down) == len(live)-1 && except != ""):
		return fmt.Errorf("the local cluster in %s is not running; start it with `adaptkv cluster up`", l.Dir)
	case len(down) > 0:
		return fmt.Errorf("%s not running; %s needs every node up: start it with `adaptkv cluster up` (or cluster start %s)", strings.Join(down, ", "), what, down[0])
	}
	return nil
}

func (a *app) clusterAdd(ctx context.Context, k int, wait time.Duration) error {
	if k < 1 {
		return usagef("--nodes %d: want at least 1", k)
	}
	if wait <= 0 {
		return usagef("--wait %v: must be positive", wait)
	}
	l, unlock, err := a.openLayout()
	if err != nil {
		return err
	}
	defer unlock()
	if err := l.requireRunning("adding a node", ""); err != nil {
		return err
	}
	lc, err := l.launcher()
	if err != nil {
		return err
	}
	var added []string
	for i := range k {
		ln, err := lc.AddNode("")
		if err != nil {
			return fmt.Errorf("laying out node %d of %d: %w", i+1, k, err)
		}
		// Recorded before it starts, so that a node that runs is always
		// in cluster.json, whatever happens next.
		l.Nodes = append(l.Nodes, entryOf(ln))
		if err := l.save(); err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "adaptkv: adding %s (%d of %d), grpc %s\n", ln.ID, i+1, k, ln.GRPC)
		err = lc.StartNode(ln.ID)
		l.syncPIDs(lc)
		if serr := l.save(); err == nil {
			err = serr
		}
		if err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		err = a.waitRingState(wctx, lc, l, ln.ID, string(node.StateNormal))
		if err == nil {
			err = a.waitHealthy(wctx, lc, l.liveIDs(), wait)
		}
		cancel()
		if err != nil {
			return err
		}
		added = append(added, ln.ID)
	}
	if a.json() {
		return a.printJSON(shapeJSON{Action: "add", Nodes: added, Layout: l.nodesJSON()})
	}
	fmt.Fprintf(a.stdout, "added %s; the cluster has %d nodes\n\n", strings.Join(added, ", "), len(l.live()))
	a.printNodes(l)
	return nil
}

// waitRingState waits until the cluster, asked through the other running
// nodes, places node id in ring state want, printing a line on stderr
// each time its state changes. It fails at once if id's process exits.
func (a *app) waitRingState(ctx context.Context, lc *launch.Cluster, l *layout, id, want string) error {
	var eps []string
	for _, n := range l.live() {
		if n.ID != id && n.running() {
			eps = append(eps, n.GRPCAddr)
		}
	}
	c, err := client.New(ctx, l.clientConfig(client.Config{Endpoints: eps, DialTimeout: 2 * time.Second, RequestTimeout: 3 * time.Second}))
	if err != nil {
		return err
	}
	defer c.Close()
	begin := time.Now()
	last := ""
	for {
		if n := lc.Node(id); n.State() == launch.Stopped {
			return fmt.Errorf("%s exited while joining: %s; see %s", id, launch.LastLogLine(n.LogFile), n.LogFile)
		}
		if st, err := c.ClusterStatus(ctx); err == nil {
			state := "not seen yet"
			for _, m := range st.Members {
				if m.ID == id && m.RingState != "" {
					state = m.RingState
				}
			}
			if state != last {
				mark := " "
				if state == want {
					mark = "✓"
				}
				fmt.Fprintf(a.stderr, "  %s %s %s (%.1fs)\n", mark, id, state, time.Since(begin).Seconds())
				last = state
			}
			if state == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is still %s after %.0fs (the change goes on; see adaptkv status and %s)", id, last, time.Since(begin).Seconds(), lc.Node(id).LogFile)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (a *app) clusterRemoveCommand() *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "remove ID",
		Short: "Decommission one node of the local cluster and record it as removed",
		Long: `Decommission a node of the local cluster (as adaptkv node decommission,
asked through another node): its ranges are streamed to their new owners,
it leaves the ring and its process exits. The command waits for both (it
stops the process if it has not exited 20s after leaving), then records the
node as removed in cluster.json: cluster up, down, start, kill and status
and the default endpoints of every command leave it alone from then on.
The cluster refuses when fewer nodes would remain than a keyspace's
replication factor.`,
		Example: `  adaptkv cluster remove n4`,
		Args:    cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.clusterRemove(cmd.Context(), args[0], wait)
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Minute, "how long to wait for the node to leave the ring")
	return cmd
}

func (a *app) clusterRemove(ctx context.Context, id string, wait time.Duration) error {
	if wait <= 0 {
		return usagef("--wait %v: must be positive", wait)
	}
	l, unlock, err := a.openLayout()
	if err != nil {
		return err
	}
	defer unlock()
	n, err := l.node(id)
	if err != nil {
		return err
	}
	if err := l.requireRunning("removing a node", id); err != nil {
		return err
	}
	lc, err := l.launcher()
	if err != nil {
		return err
	}
	var eps []string
	for _, o := range l.live() {
		if o.ID != id {
			eps = append(eps, o.GRPCAddr)
		}
	}
	// A remove interrupted after the node left finds it left: only the
	// record is then missing.
	state, err := a.ringStateOf(ctx, eps, id)
	if err != nil {
		return err
	}
	if state != string(node.StateLeft) {
		if !n.running() {
			return fmt.Errorf("%s is not running; a node is decommissioned while it is alive (it may hold the only copies of recent writes): start it with `adaptkv cluster start %s` first", id, id)
		}
		if _, err := a.decommission(ctx, eps, id, true, wait); err != nil {
			var se interface{ GRPCStatus() *status.Status }
			if errors.As(err, &se) {
				switch st := se.GRPCStatus(); st.Code() {
				case codes.FailedPrecondition:
					return fmt.Errorf("the cluster refused to remove %s: %s", id, st.Message())
				case codes.NotFound:
					return fmt.Errorf("the cluster does not place %s on its ring: %s", id, st.Message())
				}
			}
			return err
		}
	}
	fmt.Fprintf(a.stderr, "adaptkv: %s has left the ring; waiting for its process to exit\n", id)
	stopped := false
	if left := launch.WaitGone([]launch.Proc{{ID: id, PID: n.PID}}, exitWait); len(left) > 0 {
		sctx, cancel := context.WithTimeout(ctx, stopTimeout)
		err := lc.Stop(sctx, id)
		cancel()
		if err != nil {
			return fmt.Errorf("%s left the ring but its process (pid %d) did not exit, even when stopped: %w", id, n.PID, err)
		}
		stopped = true
	}
	os.Remove(n.pidFile())
	n.PID, n.Removed = 0, true
	if err := l.save(); err != nil {
		return err
	}
	if a.json() {
		return a.printJSON(shapeJSON{Action: "remove", Nodes: []string{id}, Stopped: stopped, Layout: l.nodesJSON()})
	}
	how := "its process exited"
	if stopped {
		how = fmt.Sprintf("its process did not exit within %v and was stopped", exitWait)
	}
	fmt.Fprintf(a.stdout, "removed %s: it left the ring and %s; the cluster has %d nodes\n\n", id, how, len(l.live()))
	a.printNodes(l)
	return nil
}

// ringStateOf returns node id's ring state as the first of eps that
// answers sees it ("" when it is not on the ring).
func (a *app) ringStateOf(ctx context.Context, eps []string, id string) (string, error) {
	c, ctx, cancel, err := a.connectTo(ctx, client.Config{Endpoints: eps})
	if err != nil {
		return "", err
	}
	defer cancel()
	defer c.Close()
	st, err := c.ClusterStatus(ctx)
	if err != nil {
		return "", errors.New(describe(err))
	}
	for _, m := range st.Members {
		if m.ID == id {
			return m.RingState, nil
		}
	}
	return "", nil
}

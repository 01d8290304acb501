package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/node"
)

// decommissionJSON is the JSON output of node decommission.
type decommissionJSON struct {
	ID            string `json:"id"`
	RingState     string `json:"ring_state"`
	TopologyEpoch uint64 `json:"topology_epoch"`
	Duration      string `json:"duration"`
}

func (a *app) nodeDecommissionCommand() *cobra.Command {
	var wait bool
	var maxTime time.Duration
	cmd := &cobra.Command{
		Use:   "decommission ID",
		Short: "Take a node off the ring for good, streaming its ranges to their new owners",
		Long: `Take a running node off the ring for good. The metadata log marks it
leaving; writes then also go to the nodes that will own its ranges, its
ranges are streamed to them, and the log marks it left. The node then
leaves the cluster and its process exits; its data directory refuses to
start again (start an empty one to add the machine back).

The node must be alive: it may hold the only copies among W replicas of
recent writes. Stopping a node (SIGTERM) is a restart, not a decommission:
it keeps its place on the ring. One topology change runs at a time.`,
		Example: `  adaptkv node decommission n4
  adaptkv node decommission n4 --wait=false   # return once it is leaving`,
		Args: cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.printTakeOff(cmd.Context(), args[0], wait, maxTime, a.decommission)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the node has left the ring")
	cmd.Flags().DurationVar(&maxTime, "max-time", 30*time.Minute, "give up waiting after this long (the decommission goes on)")
	return cmd
}

// printTakeOff runs a decommission or a removal of id (take) through the
// local cluster's endpoints and prints where it stands.
func (a *app) printTakeOff(ctx context.Context, id string, wait bool, maxTime time.Duration,
	take func(context.Context, []string, string, bool, time.Duration) (decommissionJSON, error)) error {
	eps, err := a.clusterEndpoints()
	if err != nil {
		return err
	}
	out, err := take(ctx, eps, id, wait, maxTime)
	if err != nil {
		return err
	}
	if a.json() {
		return a.printJSON(out)
	}
	fmt.Fprintf(a.stdout, "%s is %s (topology epoch %d, %s)\n", out.ID, out.RingState, out.TopologyEpoch, out.Duration)
	return nil
}

// decommission asks the cluster, through eps, to decommission id through a
// node other than id, and with wait follows ClusterStatus until id has
// left.
func (a *app) decommission(ctx context.Context, eps []string, id string, wait bool, maxTime time.Duration) (decommissionJSON, error) {
	return a.takeOff(ctx, eps, id, wait, maxTime, "decommission", func(ctx context.Context, admin kvpb.AdminClient) (uint64, string, error) {
		resp, err := admin.DecommissionNode(ctx, &kvpb.DecommissionNodeRequest{Id: id})
		return resp.GetTopologyEpoch(), resp.GetRingState(), err
	})
}

// removeDead asks the cluster, through eps, to remove the dead member id,
// and with wait follows ClusterStatus until id has left.
func (a *app) removeDead(ctx context.Context, eps []string, id string, wait bool, maxTime time.Duration) (decommissionJSON, error) {
	return a.takeOff(ctx, eps, id, wait, maxTime, "remove", func(ctx context.Context, admin kvpb.AdminClient) (uint64, string, error) {
		resp, err := admin.RemoveNode(ctx, &kvpb.RemoveNodeRequest{Id: id})
		return resp.GetTopologyEpoch(), resp.GetRingState(), err
	})
}

// takeOff makes call (a decommission or a removal of id) on a node other
// than id and with wait follows ClusterStatus until id has left. A node
// that cannot pass the call on (it knows no metadata leader: a partition
// may have cut it off) is not the last word: the next live member is asked.
func (a *app) takeOff(ctx context.Context, eps []string, id string, wait bool, maxTime time.Duration, verb string,
	call func(context.Context, kvpb.AdminClient) (uint64, string, error)) (decommissionJSON, error) {
	start := time.Now()
	addrs, err := a.membersAvoiding(ctx, eps, id)
	if err != nil {
		return decommissionJSON{}, err
	}
	creds, err := a.grpcCreds()
	if err != nil {
		return decommissionJSON{}, err
	}
	var (
		admin kvpb.AdminClient
		out   decommissionJSON
		errs  []error
	)
	for _, addr := range addrs {
		cc, err := grpc.NewClient(addr, creds)
		if err != nil {
			continue
		}
		defer cc.Close()
		c := kvpb.NewAdminClient(cc)
		rctx, cancel := context.WithTimeout(ctx, a.timeout)
		epoch, state, err := call(rctx, c)
		cancel()
		if err == nil {
			admin, out = c, decommissionJSON{ID: id, RingState: state, TopologyEpoch: epoch}
			break
		}
		if !noLeaderThere(err) {
			return decommissionJSON{}, fmt.Errorf("%s %s: %w", verb, id, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	if admin == nil {
		return decommissionJSON{}, fmt.Errorf("%s %s: no member could reach the metadata leader: %w", verb, id, errors.Join(errs...))
	}
	if wait && out.RingState != string(node.StateLeft) {
		fmt.Fprintf(a.stderr, "adaptkv: %s is %s; streaming its ranges to their new owners\n", id, out.RingState)
		deadline := time.Now().Add(maxTime)
		for out.RingState != string(node.StateLeft) {
			if time.Now().After(deadline) {
				return out, fmt.Errorf("%s is still %s after --max-time %v; the %s goes on (see adaptkv status)", id, out.RingState, maxTime, verb)
			}
			select {
			case <-ctx.Done():
				return out, ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
			sctx, cancel := context.WithTimeout(ctx, a.timeout)
			st, err := admin.ClusterStatus(sctx, &kvpb.ClusterStatusRequest{})
			cancel()
			if err != nil {
				continue // the node answering may be changing leader; ask again
			}
			out.TopologyEpoch = st.GetTopologyEpoch()
			gone := true
			for _, m := range st.GetMembers() {
				if m.GetId() == id {
					out.RingState, gone = m.GetRingState(), false
				}
			}
			if gone {
				// Gossip has forgotten it: it left after the log said so.
				out.RingState = string(node.StateLeft)
			}
		}
	}
	out.Duration = time.Since(start).Round(time.Millisecond).String()
	return out, nil
}

// noLeaderThere reports whether err says only that the member asked could
// not reach the metadata leader (none known, or unreachable from there):
// another member may.
func noLeaderThere(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	case codes.FailedPrecondition:
		for _, d := range status.Convert(err).Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == api.ReasonNoMetadataLeader {
				return true
			}
		}
	}
	return false
}

func (a *app) nodeRemoveCommand() *cobra.Command {
	var wait bool
	var maxTime time.Duration
	cmd := &cobra.Command{
		Use:   "remove ID",
		Short: "Take a dead node that will never return off the ring, streaming its ranges from the survivors",
		Long: `Take a dead node off the ring for good, for a machine that will never
return. The metadata log marks it removing; writes then also go to the
nodes that will own its ranges, its ranges are streamed to them from the
surviving replicas, the log marks it left, and every node drops the hints
it held for it.

What survives is what the survivors hold: a write acknowledged at W is on
at least W-1 of them, so with W >= 2 (quorum with 3 replicas) none is lost;
a write only the dead node acknowledged (W = 1) is. The node must be dead
to gossip: a live node is decommissioned instead, which streams from it.
A node that died while joining is taken off at once. One topology change
runs at a time.`,
		Example: `  adaptkv node remove n4
  adaptkv node remove n4 --wait=false   # return once it is removing`,
		Args: cobraArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.printTakeOff(cmd.Context(), args[0], wait, maxTime, a.removeDead)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the node has left the ring")
	cmd.Flags().DurationVar(&maxTime, "max-time", 30*time.Minute, "give up waiting after this long (the removal goes on)")
	return cmd
}

// membersAvoiding returns the gRPC addresses of the members other than id
// that gossip sees alive (the decommissioned node stops answering once it
// has left), as the first endpoint of eps that answers ClusterStatus
// lists them.
func (a *app) membersAvoiding(ctx context.Context, eps []string, id string) ([]string, error) {
	creds, err := a.grpcCreds()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ep := range eps {
		cc, err := grpc.NewClient(ep, creds)
		if err != nil {
			return nil, usageErr(fmt.Errorf("endpoint %q: %w", ep, err))
		}
		sctx, cancel := context.WithTimeout(ctx, a.timeout)
		st, err := kvpb.NewAdminClient(cc).ClusterStatus(sctx, &kvpb.ClusterStatusRequest{})
		cancel()
		cc.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		var addrs []string
		for _, m := range st.GetMembers() {
			if m.GetId() != id && m.GetState() == kvpb.MemberState_MEMBER_ALIVE && m.GetGrpcAddr() != "" {
				addrs = append(addrs, m.GetGrpcAddr())
			}
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("no node other than %s is alive to ask", id)
		}
		return addrs, nil
	}
	return nil, fmt.Errorf("no node answered: %w", errors.Join(errs...))
}

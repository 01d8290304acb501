package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/api/kvpb"
)

// Replace: a node started with `--replace DEAD_ID` publishes it in its
// gossip metadata (so that the leader does not propose it as an ordinary
// joiner) and asks, from Start, for Admin.ReplaceNode; the metadata leader
// checks the dead member and commits "topo-replace"; topologyLoop streams
// from the survivors and commits "topo-replaced" (join.go's finishReplace).

// ErrReplaceRefused is returned by Start when the cluster refuses to let
// this node replace the member named by Config.Replace; the error says why.
var ErrReplaceRefused = errors.New("node: replace refused")

// replaceWait bounds how long Start waits for the cluster to take the
// replacement: gossip must see this node alive and the dead member dead.
const replaceWait = 60 * time.Second

// requestReplace asks a live member to put this node in the place of
// cfg.Replace, until it is taken or refused for good.
func (n *Node) requestReplace(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, replaceWait)
	defer cancel()
	req := &kvpb.ReplaceNodeRequest{DeadId: n.cfg.Replace, NewId: n.cfg.ID}
	var last error
	for {
		for _, m := range n.members.View().Members {
			if m.ID == n.cfg.ID || !n.members.View().Alive(m.ID) {
				continue
			}
			c, err := n.transport.adminClient(m.ID)
			if err != nil {
				last = err
				continue
			}
			resp, err := c.ReplaceNode(ctx, req)
			if err == nil {
				n.log.Info("replacing a dead member", "dead", n.cfg.Replace, "ring_state", resp.GetRingState(),
					"topology_epoch", resp.GetTopologyEpoch())
				return nil
			}
			last = err
			if replaceRetryable(err) {
				// Another member may do better: one cut off from the
				// metadata leader answers that it knows none.
				continue
			}
			return fmt.Errorf("%w: %s", ErrReplaceRefused, status.Convert(err).Message())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: not taken within %v: %v", ErrReplaceRefused, replaceWait, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// replaceRetryable says whether a refusal may pass by itself: no leader
// yet (or none the member asked can reach, as on the minority side of a
// partition), this node not yet seen alive, or the dead member not yet seen
// dead (gossip takes a few probe rounds after a crash).
func replaceRetryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	case codes.FailedPrecondition:
		for _, d := range status.Convert(err).Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == api.ReasonNoMetadataLeader {
				return true
			}
		}
		msg := status.Convert(err).Message()
		return strings.Contains(msg, "alive yet") || strings.Contains(msg, "is alive") ||
			strings.Contains(msg, "one topology change at a time")
	}
	return false
}

// ReplaceNode implements Admin.ReplaceNode: the checks run on the node
// asked and again on the leader, whose gossip view decides whether the dead
// member is dead and the new one alive.
func (s adminServer) ReplaceNode(ctx context.Context, req *kvpb.ReplaceNodeRequest) (*kvpb.ReplaceNodeResponse, error) {
	dead, nu := req.GetDeadId(), req.GetNewId()
	if dead == "" || nu == "" {
		return nil, invalidArgument("replace: the dead member's ID and the new node's ID are required")
	}
	if dead == nu {
		return nil, invalidArgument(fmt.Sprintf("replace: %s cannot replace itself; start the new node with its own --id", nu))
	}
	topo := s.n.meta.Topology()
	dm, ok := topo.Member(dead)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "replace: %s is not on the ring (the ring has %d members)", dead, len(topo.Members))
	}
	if nm, ok := topo.Member(nu); ok && nm.State != StateLeft {
		// Asked again (a restart of the replacement): answer as the first
		// time when it is this replacement, in progress or done.
		if (nm.State == StateJoining && dm.State == StateRemoving) || (nm.State == StateNormal && dm.State == StateLeft) {
			return &kvpb.ReplaceNodeResponse{TopologyEpoch: topo.Epoch, RingState: string(nm.State)}, nil
		}
		return nil, status.Errorf(codes.FailedPrecondition, "replace: %s is already %s on the ring", nu, nm.State)
	}
	view := s.n.members.View()
	if view.Alive(dead) {
		return nil, status.Errorf(codes.FailedPrecondition,
			"replace: %s is alive; replace only a dead member (take a live one off with decommission)", dead)
	}
	if dm.State != StateNormal {
		return nil, status.Errorf(codes.FailedPrecondition, "replace: %s is %s, not normal", dead, dm.State)
	}
	if c, ok := topo.Changing(); ok {
		return nil, status.Errorf(codes.FailedPrecondition, "replace: %s is %s; one topology change at a time", c.ID, c.State)
	}
	if !view.Alive(nu) {
		return nil, status.Errorf(codes.FailedPrecondition, "replace: gossip does not see %s alive yet", nu)
	}
	if m, _ := view.Member(nu); m.Replace != dead {
		return nil, status.Errorf(codes.FailedPrecondition, "replace: %s was not started with --replace %s", nu, dead)
	}
	ms := []TopologyMember{{ID: dead, Zone: dm.Zone}, {ID: nu, Zone: memberZone(s.n, nu)}}
	return changeTopology(ctx, s, "replace "+dead+" with "+nu,
		func(c kvpb.AdminClient, fctx context.Context) (*kvpb.ReplaceNodeResponse, error) {
			return c.ReplaceNode(fctx, req)
		},
		command{Op: "topo-replace", Members: ms},
		func(t Topology) *kvpb.ReplaceNodeResponse {
			s.n.log.Info("replacing a dead member", "dead", dead, "member", nu, "topology_epoch", t.Epoch)
			return &kvpb.ReplaceNodeResponse{TopologyEpoch: t.Epoch, RingState: string(ringStateOf(t, nu))}
		})
}

// memberZone is a member's zone as gossip publishes it.
func memberZone(n *Node, id string) string {
	m, _ := n.members.View().Member(id)
	return m.Zone
}

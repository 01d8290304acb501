package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// Decommission: an operator asks (Admin.DecommissionNode) and the metadata
// leader commits "topo-leave"; topologyLoop on the leader streams the
// member's ranges and commits "topo-left" (join.go's finishLeave); the
// member, once it has applied its own left entry, leaves the cluster
// (afterLeft). SIGTERM is not a decommission: a stopped node keeps its
// place on the ring, and its writes become hints until it returns.

// decommissionedFile marks a data directory whose node has left the ring.
// Its data is a past copy of ranges others now own: a node started on it
// would serve nothing right, so it refuses to start, as Cassandra's does.
const decommissionedFile = "DECOMMISSIONED"

// ErrDecommissioned refuses to start a node on the data directory of one
// that was decommissioned.
var ErrDecommissioned = errors.New("node: this data directory belongs to a decommissioned node")

func checkNotDecommissioned(dataDir string) error {
	b, err := os.ReadFile(filepath.Join(dataDir, decommissionedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	return fmt.Errorf("%w (%s: %s); to add this machine again, start it on an empty data directory", ErrDecommissioned, dataDir, b)
}

// Left is closed once this node has been taken off the ring by a
// decommission and has left the cluster; it then serves nothing and the
// process should exit (`adaptkv node` does).
func (n *Node) Left() <-chan struct{} { return n.left }

// afterLeft runs on every node each topology tick: it drops the hints held
// for members that have left, and, once this node has applied its own left
// entry, hands over the metadata leadership if it holds it, marks its data
// directory and leaves gossip, so that the leader removes it from the
// metadata group (reconcile) and nobody proposes it as joining again.
func (n *Node) afterLeft(ctx context.Context) {
	topo := n.meta.Topology()
	for _, m := range topo.Members {
		if m.State != StateLeft || m.ID == n.cfg.ID || n.hints.PendingFor(m.ID) == 0 {
			continue
		}
		if c, err := n.hints.Drop(ctx, m.ID); err != nil {
			n.log.Warn("dropping the hints of a left member", "member", m.ID, "dropped", c, "err", err)
		} else {
			n.log.Info("hints of a left member dropped", "member", m.ID, "dropped", c)
		}
	}
	if ringStateOf(topo, n.cfg.ID) != StateLeft {
		return
	}
	select {
	case <-n.left:
		return
	default:
	}
	n.leftOnce.Do(func() {
		n.log.Info("decommissioned: leaving the cluster", "topology_epoch", topo.Epoch)
		if !n.cfg.InMemory {
			msg := fmt.Sprintf("left the ring at topology epoch %d, %s\n", topo.Epoch, time.Now().UTC().Format(time.RFC3339))
			if err := os.WriteFile(filepath.Join(n.cfg.DataDir, decommissionedFile), []byte(msg), 0o644); err != nil {
				n.log.Error("marking the data directory decommissioned", "err", err)
			}
		}
		n.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		if n.raft.State() == raft.Leader {
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("handing over the metadata leadership", "err", err)
			}
		}
		if err := n.members.Leave(5 * time.Second); err != nil {
			n.log.Warn("leaving gossip", "err", err)
		}
		close(n.left)
	})
}

// DecommissionNode implements Admin.DecommissionNode.
func (s adminServer) DecommissionNode(ctx context.Context, req *kvpb.DecommissionNodeRequest) (*kvpb.DecommissionNodeResponse, error) {
	id := req.GetId()
	if id == "" {
		return nil, invalidArgument("decommission: a member ID is required")
	}
	topo := s.n.meta.Topology()
	m, ok := topo.Member(id)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "decommission: %s is not on the ring (the ring has %d members)", id, len(topo.Members))
	}
	if m.State != StateNormal {
		return nil, status.Errorf(codes.FailedPrecondition, "decommission: %s is %s, not normal", id, m.State)
	}
	if c, ok := topo.Changing(); ok {
		return nil, status.Errorf(codes.FailedPrecondition, "decommission: %s is %s; one topology change at a time", c.ID, c.State)
	}
	if err := s.checkMembersRemain("decommission", topo.normal()-1); err != nil {
		return nil, err
	}
	return changeTopology(ctx, s, "decommission "+id,
		func(c kvpb.AdminClient, fctx context.Context) (*kvpb.DecommissionNodeResponse, error) {
			return c.DecommissionNode(fctx, req)
		},
		command{Op: "topo-leave", Members: []TopologyMember{{ID: id}}},
		func(t Topology) *kvpb.DecommissionNodeResponse {
			s.n.log.Info("member leaving the ring", "member", id, "topology_epoch", t.Epoch)
			return &kvpb.DecommissionNodeResponse{TopologyEpoch: t.Epoch, RingState: string(ringStateOf(t, id))}
		})
}

// checkMembersRemain refuses a change after which fewer members than some
// keyspace's replication factor would remain normal.
func (s adminServer) checkMembersRemain(verb string, remain int) error {
	for _, d := range s.n.meta.Defs() {
		if rf := max(d.ReplicationFactor, d.PendingN); rf > remain {
			return status.Errorf(codes.FailedPrecondition,
				"%s: keyspace %q has %d replicas of each key and only %d members would remain", verb, d.Name, rf, remain)
		}
	}
	return nil
}

// topologyAnswer is what every topology RPC answers: the epoch of the entry
// that started the change.
type topologyAnswer interface{ GetTopologyEpoch() uint64 }

// changeTopology carries out a checked topology request on the metadata
// leader. A node that does not lead forwards it there, then waits until it
// has applied the answer's epoch itself, so that the caller sees the change
// on the node it asked; the leader proposes cmd and builds the answer from
// the topology in force after it.
func changeTopology[R topologyAnswer](ctx context.Context, s adminServer, what string,
	forward func(kvpb.AdminClient, context.Context) (R, error), cmd command, answer func(Topology) R) (R, error) {
	var zero R
	if c, fctx, err := s.leaderAdmin(ctx); err != nil {
		return zero, err
	} else if c != nil {
		resp, err := forward(c, fctx)
		if err != nil {
			return zero, err
		}
		if err := s.n.meta.WaitForIndex(ctx, resp.GetTopologyEpoch()); err != nil {
			return zero, toStatus(err)
		}
		return resp, nil
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd.AtUnixMs = time.Now().UnixMilli()
	if _, err := propose(pctx, s.n.raft, cmd); err != nil {
		return zero, toStatus(fmt.Errorf("%s: %w", what, err))
	}
	return answer(s.n.meta.Topology()), nil
}

// leaderAdmin returns nil when this node leads the metadata log, and
// otherwise an Admin client on the leader with the context to forward a
// request on; a request already forwarded is not forwarded again.
func (s adminServer) leaderAdmin(ctx context.Context) (kvpb.AdminClient, context.Context, error) {
	_, leader := s.n.raft.LeaderWithID()
	if string(leader) == s.n.cfg.ID {
		return nil, ctx, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedHeader)) > 0 {
		return nil, nil, toStatus(fmt.Errorf("%w: this node was told it leads, and it does not", ErrNoLeader))
	}
	if leader == "" {
		return nil, nil, toStatus(fmt.Errorf("%w: try again once the metadata voters have elected one", ErrNoLeader))
	}
	c, err := s.n.transport.adminClient(string(leader))
	if err != nil {
		return nil, nil, toStatus(fmt.Errorf("%w: leader %s unreachable: %w", ErrNoLeader, leader, err))
	}
	return c, metadata.AppendToOutgoingContext(ctx, forwardedHeader, s.n.cfg.ID), nil
}

// RemoveNode implements Admin.RemoveNode: the checks run on the node
// asked and again on the leader, whose gossip view decides whether the
// member is dead.
func (s adminServer) RemoveNode(ctx context.Context, req *kvpb.RemoveNodeRequest) (*kvpb.RemoveNodeResponse, error) {
	id := req.GetId()
	if id == "" {
		return nil, invalidArgument("remove: a member ID is required")
	}
	topo := s.n.meta.Topology()
	m, ok := topo.Member(id)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "remove: %s is not on the ring (the ring has %d members)", id, len(topo.Members))
	}
	if s.n.members.View().Alive(id) {
		return nil, status.Errorf(codes.FailedPrecondition,
			"remove: %s is alive; take a live member off the ring with decommission, which streams from it", id)
	}
	remain := topo.normal()
	switch m.State {
	case StateNormal:
		if c, ok := topo.Changing(); ok {
			return nil, status.Errorf(codes.FailedPrecondition, "remove: %s is %s; one topology change at a time", c.ID, c.State)
		}
		remain--
	case StateLeaving, StateJoining:
		// The change in progress is this member's own: a dead member
		// would block it for ever.
	default:
		return nil, status.Errorf(codes.FailedPrecondition, "remove: %s is %s", id, m.State)
	}
	if m.State != StateJoining {
		if err := s.checkMembersRemain("remove", remain); err != nil {
			return nil, err
		}
	}
	return changeTopology(ctx, s, "remove "+id,
		func(c kvpb.AdminClient, fctx context.Context) (*kvpb.RemoveNodeResponse, error) {
			return c.RemoveNode(fctx, req)
		},
		command{Op: "topo-remove", Members: []TopologyMember{{ID: id}}},
		func(t Topology) *kvpb.RemoveNodeResponse {
			s.n.log.Info("removing a dead member from the ring", "member", id, "topology_epoch", t.Epoch)
			return &kvpb.RemoveNodeResponse{TopologyEpoch: t.Epoch, RingState: string(ringStateOf(t, id))}
		})
}

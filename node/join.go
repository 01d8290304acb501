package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/adaptkv/adaptkv/node/membership"
)

// The topology changes the metadata leader drives (see topology.go for the
// states and why the steps keep R + W > N).

// streamPage is how many records one scan page and one push carry.
const streamPage = 512

// errStreamNotReady: a join cannot stream yet (a current member is down,
// or a replica knew a newer epoch); the leader tries again later.
var errStreamNotReady = errors.New("node: join stream not ready")

// topologyLoop runs on every node and acts while this node leads the
// metadata log: it initialises the ring, proposes a member gossip sees and
// the log does not as joining, and finishes the join in progress (streams
// its ranges to it, then makes it normal). A new leader picks a join up
// where the log says it is, and its stream continues from the last
// checkpoint in the log (stream.go); pushing a record twice is harmless
// (last writer wins).
func (n *Node) topologyLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.afterLeft(ctx)
		if n.raft.State() != raft.Leader {
			continue
		}
		if err := n.stepTopology(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("topology change", "err", err)
		}
	}
}

// stepTopology takes the next topology step, if any.
func (n *Node) stepTopology(ctx context.Context) error {
	topo := n.meta.Topology()
	if len(topo.Members) == 0 {
		return nil // leaderLoop initialises it, before the default keyspace
	}
	if dead, nu, ok := topo.replacing(); ok {
		return n.finishReplace(ctx, dead, nu)
	}
	if c, ok := topo.Changing(); ok {
		switch c.State {
		case StateJoining:
			return n.finishJoin(ctx, c)
		case StateRemoving:
			return n.finishRemove(ctx, c)
		}
		return n.finishLeave(ctx, c)
	}
	view := n.members.View()
	for _, m := range view.Members {
		if m.State != membership.Alive || m.Leaving || m.Replace != "" {
			// A node started with --replace waits for its own
			// Admin.ReplaceNode, which checks the dead member first.
			continue
		}
		if tm, ok := topo.Member(m.ID); ok && tm.State != StateLeft {
			continue
		} else if ok && !n.rejoinDue(m.ID) {
			continue
		}
		if err := n.proposeTopology(ctx, "topo-join", TopologyMember{ID: m.ID, Zone: m.Zone}); err != nil {
			return fmt.Errorf("propose %s as joining: %w", m.ID, err)
		}
		n.log.Info("member joining the ring", "member", m.ID, "topology_epoch", n.meta.Topology().Epoch)
		return nil // one change at a time
	}
	return nil
}

// initTopology places the members gossip knows as normal: on a new
// cluster, the bootstrap members (the leader's first entries, before the
// default keyspace, so that a node ready to serve knows the ring); on a
// cluster upgraded from gossip placement, every member that owned ranges,
// left ones excepted, as before.
func (n *Node) initTopology(ctx context.Context) error {
	var ms []TopologyMember
	for _, m := range n.members.View().Members {
		if m.State != membership.Left {
			ms = append(ms, TopologyMember{ID: m.ID, Zone: m.Zone})
		}
	}
	if err := n.proposeTopology(ctx, "topo-init", ms...); err != nil {
		return fmt.Errorf("initialise the ring: %w", err)
	}
	n.log.Info("ring initialised from the metadata log", "members", len(ms))
	return nil
}

func (n *Node) proposeTopology(ctx context.Context, op string, ms ...TopologyMember) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := propose(pctx, n.raft, command{Op: op, Members: ms, AtUnixMs: time.Now().UnixMilli()})
	return err
}

// change is one topology change for finishChange to complete: stream the
// ranges that move, then commit the entry that ends it.
type change struct {
	since uint64 // the index of the entry that started it
	// mustBeAlive, when set, is a member the stream needs alive (the joining
	// one); dead is a member not read (removed or replaced).
	mustBeAlive, dead string
	// done is the entry that ends the change, with its members.
	done    string
	members []TopologyMember
	// what names the change in errors and the log.
	what string
}

// finishChange waits until every member has applied the change's entry,
// streams every keyspace from the members to read to every future replica
// that is not a current one, commits the entry that ends the change, and
// has every node clean up what it no longer owns. Every change ends here:
// finishJoin, finishLeave, finishRemove and finishReplace only say which.
func (n *Node) finishChange(ctx context.Context, c change) error {
	if err := n.awaitApplied(ctx, c.since); err != nil {
		return err
	}
	st := n.meta.topo.Load()
	if st.future == nil {
		return nil
	}
	if c.mustBeAlive != "" && !n.members.View().Alive(c.mustBeAlive) {
		return fmt.Errorf("%w: %s: %s is down", errStreamNotReady, c.what, c.mustBeAlive)
	}
	start := time.Now()
	pushed, err := n.streamChange(ctx, st, c)
	if err != nil {
		return fmt.Errorf("%s: stream: %w", c.what, err)
	}
	if err := n.proposeTopology(ctx, c.done, c.members...); err != nil {
		return fmt.Errorf("%s: commit %s: %w", c.what, c.done, err)
	}
	epoch := n.meta.Topology().Epoch
	n.log.Info("topology change done", "change", c.what, "records_streamed_by_this_driver", pushed,
		"took", time.Since(start).Round(time.Millisecond), "topology_epoch", epoch)
	// After a removal no member gives ranges away (the survivors only gain
	// the dead one's), but cleaning finds nothing then and costs one scan.
	n.goRun(func() { n.cleanupAfterChange(ctx, epoch) })
	return nil
}

// finishJoin streams a joining member's ranges to it and makes it normal.
func (n *Node) finishJoin(ctx context.Context, j TopologyMember) error {
	return n.finishChange(ctx, change{since: j.Since, mustBeAlive: j.ID, done: "topo-normal",
		members: []TopologyMember{{ID: j.ID}}, what: "join of " + j.ID})
}

// finishLeave streams a leaving member's ranges to the members that will
// own them once it has left, then takes it off the ring. The leaving member
// must be alive: it may hold the only copies among W of a key's replicas.
// A member that will never return is not decommissioned but removed.
func (n *Node) finishLeave(ctx context.Context, x TopologyMember) error {
	return n.finishChange(ctx, change{since: x.Since, done: "topo-left",
		members: []TopologyMember{{ID: x.ID}}, what: "decommission of " + x.ID})
}

// finishRemove streams a removed (dead) member's ranges from the surviving
// replicas to the members that will own them, then takes it off the ring;
// its hints are dropped once the left entry is applied (afterLeft).
func (n *Node) finishRemove(ctx context.Context, x TopologyMember) error {
	return n.finishChange(ctx, change{since: x.Since, dead: x.ID, done: "topo-left",
		members: []TopologyMember{{ID: x.ID}}, what: "removal of " + x.ID})
}

// finishReplace streams, from the surviving replicas, to every future
// replica (the new member and any survivor whose ranges shifted) the
// records it will hold, then, in one entry, makes the new member normal and
// the dead one left; every node then drops its hints for the dead one
// (afterLeft) and cleans what it no longer owns.
func (n *Node) finishReplace(ctx context.Context, dead, nu TopologyMember) error {
	return n.finishChange(ctx, change{since: max(dead.Since, nu.Since), mustBeAlive: nu.ID, dead: dead.ID,
		done: "topo-replaced", members: []TopologyMember{{ID: dead.ID}, {ID: nu.ID}},
		what: "replacement of " + dead.ID + " by " + nu.ID})
}

// rejoinGrace is how long the leader waits, after it first sees a member
// as left, before it takes that member alive in gossip for a new node
// wanting to join: a member that has just left is still alive in gossip
// until it has applied its left entry and said goodbye.
const rejoinGrace = 15 * time.Second

// rejoinDue reports whether a left member that gossip sees alive may be
// proposed as joining again. Called from topologyLoop only.
func (n *Node) rejoinDue(id string) bool {
	if n.leftSeen == nil {
		n.leftSeen = map[string]time.Time{}
	}
	first, ok := n.leftSeen[id]
	if !ok {
		n.leftSeen[id] = time.Now()
		return false
	}
	if time.Since(first) < rejoinGrace {
		return false
	}
	delete(n.leftSeen, id)
	return true
}

// awaitApplied waits until every member gossip knows says it has applied
// the metadata log up to index, so that no coordinator still places writes
// on the ring from before it (a replica that has applied it refuses them).
// A member gossip reports dead is waited for one configuration lease only:
// past it, it serves no fenced keyspace from before the entry.
func (n *Node) awaitApplied(ctx context.Context, index uint64) error {
	deadline := time.Now().Add(n.leaseWait())
	for {
		var waiting []string
		view := n.members.View()
		topo := n.meta.Topology()
		for _, m := range view.Members {
			if m.State == membership.Left {
				continue
			}
			if tm, ok := topo.Member(m.ID); ok && tm.State == StateLeft && !view.Alive(m.ID) {
				// Removed or replaced: it will never apply anything, and
				// were it to start again it would apply its left entry
				// and exit before serving.
				continue
			}
			if !view.Alive(m.ID) && time.Now().After(deadline) {
				continue
			}
			if !n.tuning.memberApplied(ctx, m.ID, index) {
				waiting = append(waiting, m.ID)
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %v to apply topology index %d: %w", waiting, index, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

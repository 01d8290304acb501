package node

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// The configuration lease (the node side of replication/fence.go).
//
// Every node renews its lease a few times per lease duration: it asks the
// metadata leader for a read index (MetadataReadIndex), waits until it has
// applied its own log up to that index, and then holds the lease until one
// duration after the moment it asked. The leader, before a configuration
// step that relies on every node having applied the one before
// (rollout.Executor.WaitApplied), accepts for each node either its word that it has
// applied that step or the passing of one lease duration, with a margin,
// since the step was committed: by then a node that did not apply it has
// no lease left from before the commit, and cannot take a new one without
// applying it.

// defaultConfigLease is the lease when Config.ConfigLease is zero.
const defaultConfigLease = 4 * time.Second

// configLease is this node's configuration lease.
type configLease struct {
	expiry atomic.Pointer[time.Time]
}

// LeaseExpiry implements replication.Fence.
func (l *configLease) LeaseExpiry() time.Time {
	if t := l.expiry.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// extend moves the expiry to until if that is later.
func (l *configLease) extend(until time.Time) {
	for {
		cur := l.expiry.Load()
		if cur != nil && !until.After(*cur) {
			return
		}
		if l.expiry.CompareAndSwap(cur, &until) {
			return
		}
	}
}

// leaseDuration is the node's configuration lease duration.
func (n *Node) leaseDuration() time.Duration {
	if n.cfg.ConfigLease > 0 {
		return n.cfg.ConfigLease
	}
	return defaultConfigLease
}

// leaseWait is how long after committing a step the leader waits before it
// treats a node it could not hear from as having no lease from before the
// step: the lease plus a tenth for clocks that run at slightly different
// rates and 100 ms for scheduling.
func (n *Node) leaseWait() time.Duration {
	d := n.leaseDuration()
	return d + d/10 + 100*time.Millisecond
}

// leaseLoop renews the configuration lease eight times per duration, and
// retries a failed renewal after leaseRetry: a busy node (or metadata
// leader) whose renewals are slow must still renew several times before the
// lease ends, or its clients see requests refused that it could serve.
func (n *Node) leaseLoop(ctx context.Context) {
	every := n.leaseDuration() / 8
	for {
		wait := every
		if err := n.renewLease(ctx); err != nil {
			n.log.Debug("configuration lease not renewed", "err", err)
			wait = min(every, leaseRetry)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// leaseRetry is how soon a failed renewal is tried again.
const leaseRetry = 50 * time.Millisecond

// renewLease takes a read index from the metadata leader, applies the log up
// to it, and extends the lease to one duration after the request was sent.
func (n *Node) renewLease(ctx context.Context) error {
	d := n.leaseDuration()
	asked := time.Now()
	rctx, cancel := context.WithTimeout(ctx, d/2)
	defer cancel()
	index, err := n.metadataReadIndex(rctx)
	if err != nil {
		return err
	}
	if err := n.meta.WaitForIndex(rctx, index); err != nil {
		return fmt.Errorf("apply metadata log to read index %d: %w", index, err)
	}
	n.lease.extend(asked.Add(d))
	return nil
}

// metadataReadIndex returns the metadata leader's read index: its own when
// this node leads, else the leader's answer to MetadataReadIndex.
func (n *Node) metadataReadIndex(ctx context.Context) (uint64, error) {
	_, leader := n.raft.LeaderWithID()
	switch leader {
	case "":
		return 0, ErrNoLeader
	case raft.ServerID(n.cfg.ID):
		return n.localReadIndex(ctx)
	}
	c, err := n.transport.adminClient(string(leader))
	if err != nil {
		return 0, fmt.Errorf("reach metadata leader %s: %w", leader, err)
	}
	resp, err := c.MetadataReadIndex(ctx, &kvpb.MetadataReadIndexRequest{From: n.cfg.ID})
	if err != nil {
		return 0, fmt.Errorf("read index from metadata leader %s: %w", leader, err)
	}
	return resp.GetIndex(), nil
}

// localReadIndex is Raft's read index on the leader: the last index of its
// log, read before it confirms with a quorum of voters that it still leads,
// so that no other leader can have committed past it by the time it
// answers. The last index rather than the commit index, so that a leader
// new in its term, whose commit index may lag the entries it holds, never
// answers low.
//
// The index must be one the state machine sees: hashicorp/raft hands only
// commands to it, not the no-op of a new term, configuration changes or
// barriers, so a node waiting for such an index would wait forever. When
// the log ends in one of those, the leader first appends a "nop" command.
func (n *Node) localReadIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, ErrNoLeader
	}
	index := n.raft.LastIndex()
	for attempt := 0; n.meta.Applied() < index && attempt < 3; attempt++ {
		if _, err := propose(ctx, n.raft, command{Op: "nop", AtUnixMs: time.Now().UnixMilli()}); err != nil {
			return 0, fmt.Errorf("read index: %w", err)
		}
		index = n.raft.LastIndex()
	}
	if n.meta.Applied() < index {
		return 0, fmt.Errorf("read index: the log keeps growing past what is applied (%d < %d)", n.meta.Applied(), index)
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoLeader, err)
	}
	return index, nil
}

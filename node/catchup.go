package node

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication"
)

// catchUp tells whether this node may answer "keyspace not found".
//
// A follower of the metadata log applies an entry only once the leader has
// told it the entry is committed, so a node that has just started (or
// restarted with the whole log on disk) knows no keyspace for a moment,
// about two seconds after a longer absence while the leader's replication
// to it backs off. Until it has caught up with the leader once, a request
// for a keyspace it does not know waits, within the request's deadline,
// until it has applied what the leader had applied when the request
// arrived; only then is "not found" the truth.
type catchUp struct {
	done atomic.Bool
	sem  chan struct{} // capacity 1: one catch-up at a time; the others wait for it
}

// catchUpLimit bounds the wait of a request that has no deadline.
const catchUpLimit = 10 * time.Second

// leaderSilence is how long a follower may go without hearing from the
// metadata leader and still trust its own copy enough to deny that a
// keyspace exists. Why not smaller? The leader's heartbeats are a tenth of
// the heartbeat timeout apart, so a few can be late on a busy machine. Why
// not larger? A node cut off from the leader may miss keyspaces created
// meanwhile and would deny them for as long.
const leaderSilence = 3 * time.Second

// knowKeyspace returns nil when the data path may look keyspace up and
// believe its answer: the keyspace is known here, or this node has caught up
// with the metadata leader. Otherwise it catches up first, and fails with
// Unavailable (METADATA_NOT_READY, retryable, nothing done) when it cannot
// within ctx.
func (n *Node) knowKeyspace(ctx context.Context, name string) error {
	if _, ok := n.meta.Def(name); ok {
		return nil
	}
	if n.catchUp.done.Load() {
		if n.raft.State() != raft.Leader {
			if last := n.raft.LastContact(); time.Since(last) > leaderSilence {
				return metadataNotReady(name, fmt.Sprintf("this node has not heard from the metadata leader for %v", time.Since(last).Round(time.Millisecond)))
			}
		}
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, catchUpLimit)
		defer cancel()
	}
	select {
	case n.catchUp.sem <- struct{}{}:
		defer func() { <-n.catchUp.sem }()
	case <-ctx.Done():
		return metadataNotReady(name, "this node is still catching up with the metadata log")
	}
	if n.catchUp.done.Load() {
		return nil
	}
	if err := n.catchUpMetadata(ctx); err != nil {
		return metadataNotReady(name, err.Error())
	}
	n.catchUp.done.Store(true)
	return nil
}

// catchUpMetadata waits until this node has applied every metadata entry the
// leader had applied when it asked.
func (n *Node) catchUpMetadata(ctx context.Context) error {
	var leader string
	for {
		if _, id := n.raft.LeaderWithID(); id != "" {
			leader = string(id)
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no metadata leader known yet: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if leader == n.cfg.ID {
		// A new leader applies its predecessors' entries only after it has
		// committed one of its own; the barrier waits for that.
		timeout := catchUpLimit
		if dl, ok := ctx.Deadline(); ok {
			timeout = time.Until(dl)
		}
		if err := n.raft.Barrier(timeout).Error(); err != nil {
			return fmt.Errorf("metadata barrier: %w", err)
		}
		return nil
	}
	c, err := n.transport.adminClient(leader)
	if err != nil {
		return fmt.Errorf("metadata leader %s: %w", leader, err)
	}
	st, err := c.ClusterStatus(ctx, &kvpb.ClusterStatusRequest{})
	if err != nil {
		return fmt.Errorf("asking metadata leader %s for its index: %w", leader, err)
	}
	if err := n.meta.WaitForIndex(ctx, st.GetMetadataIndex()); err != nil {
		return err
	}
	return nil
}

func metadataNotReady(keyspace, why string) error {
	return withReason(codes.Unavailable, api.ReasonMetadataNotReady,
		fmt.Sprintf("keyspace %q is not known here and %s, so it cannot tell whether it exists; nothing was done, retry", keyspace, why), nil)
}

// dataStatus maps a data-path error to its status. The default keyspace is
// created by the first metadata leader right after it is elected, so until
// then a request for it is told to come back, not that it does not exist.
func dataStatus(keyspace string, err error) error {
	if keyspace == DefaultKeyspace && errors.Is(err, replication.ErrKeyspaceNotFound) {
		return metadataNotReady(keyspace, "the metadata leader has not created it yet")
	}
	return toStatus(err)
}

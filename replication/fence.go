package replication

import (
	"errors"
	"fmt"
	"time"
)

// Configuration fencing.
//
// The metadata leader changes a keyspace's configuration in steps, and some
// steps are safe only once no coordinator acts on the configuration two
// steps back: lowering R after a joint step, say, or a repair pass that must
// see every write acknowledged under a weaker W. Asking the nodes gossip
// calls alive whether they applied the step before is not enough: a node on
// the far side of a partition is "dead" to the leader yet keeps serving
// clients that reach it, at the epoch it last applied.
//
// So a node serves a fenced keyspace (KeyspaceConfig.Fenced) only while it
// holds a lease. It takes one by asking the metadata leader for a read index
// (the leader's last log index, confirmed with a quorum of voters that it is
// still the leader), applying its log up to that index, and then holding the
// lease for a fixed duration counted from the moment it asked. A step
// committed after the leader answered is unknown to the node, but its lease
// ends at most one duration after that commit; so a leader that waits one
// duration (with a margin) after committing a step knows that every node
// either applied it or stopped serving the keyspace at an older epoch.
// Clocks do not need to agree, only to run at about the same rate: both
// sides measure an elapsed time on their own monotonic clock.
//
// The coordinator checks the lease when an operation starts and again just
// before it answers: a read's replies, or a write's acknowledgements, were
// gathered while the lease held, so before any step the leader committed
// after its wait.

// Fence tells the coordinator until when its node holds a configuration
// lease.
type Fence interface {
	// LeaseExpiry returns the end of the lease this node holds; the zero
	// time means none.
	LeaseExpiry() time.Time
}

// ErrConfigUnconfirmed: the node cannot confirm it holds the current
// configuration of a fenced keyspace (its configuration lease has expired,
// typically because it cannot reach the metadata leader), so it does not
// serve the keyspace. Nothing was sent: another node may serve the request.
var ErrConfigUnconfirmed = errors.New("replication: configuration not confirmed")

// LeaseError is a refusal to serve a fenced keyspace without a lease. When
// Lost is set the lease ended while the operation was under way: a write
// may have been applied by some replicas (its outcome is unknown).
type LeaseError struct {
	Keyspace string
	Epoch    uint64
	// Expired is how long ago the lease ended (zero: never held).
	Expired time.Duration
	Lost    bool
	// Moved, when set, is the epoch this node applied while the operation
	// was under way at Epoch (its lease still held).
	Moved uint64
}

func (e *LeaseError) Error() string {
	if e.Lost && e.Moved != 0 {
		return fmt.Sprintf("keyspace %q: the configuration moved from epoch %d to %d while the operation was under way; a write may or may not have been applied", e.Keyspace, e.Epoch, e.Moved)
	}
	if e.Lost {
		return fmt.Sprintf("keyspace %q: this node's configuration lease ended %v ago, while the operation was under way at epoch %d, so the metadata leader may have moved on; a write may or may not have been applied", e.Keyspace, e.Expired.Round(time.Millisecond), e.Epoch)
	}
	held := "holds no configuration lease yet"
	if e.Expired > 0 {
		held = fmt.Sprintf("has held no configuration lease for %v", e.Expired.Round(time.Millisecond))
	}
	return fmt.Sprintf("keyspace %q: this node cannot confirm it holds the current configuration (it %s, so the metadata leader may have moved past epoch %d); nothing was sent, another node may serve the request", e.Keyspace, held, e.Epoch)
}

func (e *LeaseError) Unwrap() error { return ErrConfigUnconfirmed }

// movedOn reports a LeaseError for an operation whose node applied a newer
// epoch while it was under way, lease held: run again under the new epoch.
func movedOn(err error) bool {
	var le *LeaseError
	return errors.As(err, &le) && le.Moved != 0
}

// checkLease refuses to serve a fenced keyspace without a lease; lost says
// whether the operation has already started.
//
// An operation that has started must also still be at the epoch it was
// planned under: a renewal may have applied the next step meanwhile, after
// which this node tells the leader it has applied it, and the leader may
// move on to a step that is safe only from that one, while this operation
// still gathers replies under the step before.
func (c *Coordinator) checkLease(ks KeyspaceConfig, lost bool) error {
	if !ks.Fenced || c.cfg.Fence == nil {
		return nil
	}
	exp := c.cfg.Fence.LeaseExpiry()
	now := time.Now()
	if now.Before(exp) {
		if !lost {
			return nil
		}
		cur, ok := c.cfg.Keyspaces.Keyspace(ks.Name)
		if !ok || cur.Epoch == ks.Epoch {
			return nil
		}
		return &LeaseError{Keyspace: ks.Name, Epoch: ks.Epoch, Lost: true, Moved: cur.Epoch}
	}
	e := &LeaseError{Keyspace: ks.Name, Epoch: ks.Epoch, Lost: lost}
	if !exp.IsZero() {
		e.Expired = now.Sub(exp)
	}
	return e
}

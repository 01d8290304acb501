package replication

import (
	"context"
	"errors"
	"time"
)

// CallObserver receives every replica request's outcome by node, for the
// gray-failure detector (replication/health): where Observer reports by
// rank for the tuner, this names the replica.
type CallObserver interface {
	// ReplicaCall reports one request to replica to: its round trip and
	// whether it succeeded. Requests the coordinator itself abandoned
	// (the client's request ended first) are not reported: they say
	// nothing about the replica.
	ReplicaCall(to string, write bool, rtt time.Duration, ok bool)
}

// observeCall reports a replica request to the CallObserver and, for a read
// that failed, charges the replica the replica timeout in the latency
// ranking: a replica that fails or times out must rank behind a slow one
// that answers, and the ranking otherwise only learns from successes.
func (c *Coordinator) observeCall(to string, write bool, rtt time.Duration, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if o := c.cfg.Calls; o != nil {
		o.ReplicaCall(to, write, rtt, err == nil)
	}
	if err != nil && !write {
		c.latency.observe(to, max(rtt, c.cfg.ReplicaTimeout))
	}
}

// errReplicaWrite stands for a failed replica write that carried no error.
var errReplicaWrite = errors.New("replication: replica write not acknowledged")

// flagged reports whether the health detector has flagged node id.
func (c *Coordinator) flagged(id string) bool {
	return c.cfg.Flagged != nil && c.cfg.Flagged(id)
}

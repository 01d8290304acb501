package node

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/storage"
)

// drainState is what a drain (Drain) changes: whether the node still takes
// client requests, and how many it is serving.
type drainState struct {
	draining atomic.Bool
	// inflight counts the client requests (the KV API) being served; a
	// drain waits for it to reach zero.
	inflight atomic.Int64
}

// Timings of a drain. Why a settle time? Clients learn that the node drains
// from its refusals and from ClusterStatus, and peers from gossip; the node
// keeps serving its peers for that long after its own clients are done, so
// that a coordinator that had not heard yet gets answers rather than a
// closed connection. Why bound hint delivery? A hint for a node that is down
// can never be delivered now; it is on disk and goes out after the restart.
const (
	drainSettle       = time.Second
	drainHintWait     = 2 * time.Second
	drainGossipWait   = time.Second
	drainPollInterval = 10 * time.Millisecond
	// drainStopReserve is kept of the drain's budget for the stop itself
	// (gRPC's graceful stop, closing Raft and storage).
	drainStopReserve = 2 * time.Second
)

// admit lets one client request in, or refuses it with NODE_DRAINING while
// the node drains, or with OVERLOADED past --max-inflight. The caller runs
// release when the request is done.
func (n *Node) admit() (release func(), err error) {
	// Count first, then check the flag: Drain sets the flag and then waits
	// for the count, so a request either sees the flag or is waited for.
	n.drain.inflight.Add(1)
	if n.drain.draining.Load() {
		n.drain.inflight.Add(-1)
		return nil, withReason(codes.Unavailable, api.ReasonNodeDraining,
			fmt.Sprintf("node %s is draining before it stops; nothing was done, send the request to another node", n.cfg.ID), nil)
	}
	rel, err := n.admission.acquire()
	if err != nil {
		n.drain.inflight.Add(-1)
		return nil, err
	}
	return func() { rel(); n.drain.inflight.Add(-1) }, nil
}

// Draining reports whether the node has started to drain.
func (n *Node) Draining() bool { return n.drain.draining.Load() }

// Drain stops the node gracefully, within ctx's deadline: it reports
// not-serving (gRPC health NOT_SERVING, /readyz 503, draining in gossip and
// ClusterStatus) and refuses new client requests with NODE_DRAINING so
// that clients retry them elsewhere; it lets the client requests in flight
// finish; it keeps answering its peers' replica requests for a settle time,
// so coordinators that had not heard yet are answered; it gives the hints
// it holds a moment to be delivered (they are on disk regardless, and go
// out after a restart); then it stops as Stop does, which lets the last
// peer requests finish and closes storage (every write acknowledged was
// synced to its log at commit). Past ctx's deadline it stops anyway and
// logs what was cut short. The node keeps its place on the ring: a restart
// on the same data directory comes back with its data and hints, without
// a repair.
func (n *Node) Drain(ctx context.Context) error {
	start := time.Now()
	if n.drain.draining.Swap(true) {
		return n.Stop(ctx)
	}
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	// SDK Batch streams are told to close: their clients send what comes
	// next to other nodes, and what a stream carries is still answered.
	n.stopBatches()
	deadline, hasDeadline := ctx.Deadline()
	// budget is how long a phase may take and still leave the stop its
	// reserve.
	budget := func(want time.Duration) time.Duration {
		if !hasDeadline {
			return want
		}
		return max(0, min(want, time.Until(deadline)-drainStopReserve))
	}
	if err := n.members.SetDraining(budget(drainGossipWait)); err != nil {
		n.log.Warn("drain: draining state not spread by gossip", "err", err)
	}
	n.log.Info("draining: refusing new client requests", "inflight", n.drain.inflight.Load(), "hints_pending", n.hints.Pending())

	var cut []any
	settled := start.Add(drainSettle)
	wait := budget(time.Until(deadline))
	if !hasDeadline {
		wait = time.Hour
	}
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	n.hints.Wake()
	hintsUntil := time.Now().Add(budget(drainHintWait))
	for {
		clients := n.drain.inflight.Load()
		hints := n.hints.Pending()
		now := time.Now()
		if clients == 0 && !now.Before(settled) && (hints == 0 || !now.Before(hintsUntil)) {
			if hints > 0 {
				n.log.Info("drain: hints left on disk for delivery after the restart", "hints_pending", hints)
			}
			break
		}
		if waitCtx.Err() != nil {
			if clients > 0 {
				cut = append(cut, "client_requests_inflight", clients)
			}
			if hints > 0 {
				cut = append(cut, "hints_pending_on_disk", hints)
			}
			break
		}
		select {
		case <-waitCtx.Done():
		case <-time.After(drainPollInterval):
		}
	}
	if len(cut) > 0 {
		n.log.Warn("drain timeout: stopping anyway", append(cut, "after", time.Since(start).Round(time.Millisecond))...)
	}
	if f, ok := n.engine.(storage.Flusher); ok && ctx.Err() == nil {
		// Not needed for durability (the log is synced): it spares the
		// restart a replay of the write-ahead log.
		t := time.Now()
		if err := f.Flush(); err != nil {
			n.log.Warn("drain: storage flush failed; the restart will replay the log", "err", err)
		} else {
			n.log.Info("drain: storage flushed", "took", time.Since(t).Round(time.Millisecond))
		}
	}
	err := n.Stop(ctx)
	if ctx.Err() != nil {
		n.log.Warn("drain timeout: the stop cut off the requests still running", "after", time.Since(start).Round(time.Millisecond))
	}
	n.log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
	return err
}

// livez answers 200 while the process serves HTTP. It never depends on the
// cluster: a node that cannot reach a majority is not helped by a restart.
func (n *Node) livez(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 when the node should be sent client requests: Ready,
// and not draining.
func (n *Node) readyz(w http.ResponseWriter, r *http.Request) {
	if n.drain.draining.Load() {
		http.Error(w, "draining before it stops", http.StatusServiceUnavailable)
		return
	}
	n.healthz(w, r)
}

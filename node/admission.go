package node

import (
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// admission bounds the client requests a node coordinates at once. A request
// past the bound is refused at once with RESOURCE_EXHAUSTED (reason
// OVERLOADED) and a retry-after hint, before it costs anything but its
// decoding: under more load than the node can serve, queueing would only add
// the wait to every request's latency and hold its memory until the deadline
// passed, while a refusal lets the client back off or go to another replica.
//
// Only the client API is admitted here. Replica requests from other
// coordinators are bounded by those coordinators' own admission (each
// admitted request sends at most one request to each of its replicas), and
// what they queue for disk is bounded by the storage committer's queue.
type admission struct {
	max      int64
	inflight atomic.Int64
	// meanNanos is an exponentially weighted mean of admitted requests'
	// latencies, the basis of the retry-after hint.
	meanNanos atomic.Int64
	shed      atomic.Uint64
}

// Bounds of the retry-after hint. Why not smaller? Below a millisecond a
// retry would be back before a single request finished. Why not larger? A
// node that was briefly saturated is usually free again within one request
// latency; a client that waits longer wastes capacity.
const (
	minRetryAfter = time.Millisecond
	maxRetryAfter = 500 * time.Millisecond
)

func newAdmission(max int) *admission {
	a := &admission{max: int64(max)}
	a.meanNanos.Store(int64(5 * time.Millisecond))
	return a
}

// acquire admits one request and returns its release, or the OVERLOADED
// status when max requests are in flight. A nil admission admits every
// request.
func (a *admission) acquire(op string) (release func(), err error) {
	if a == nil || a.max <= 0 {
		return func() {}, nil
	}
	if a.inflight.Add(1) > a.max {
		a.inflight.Add(-1)
		a.shed.Add(1)
		return nil, a.overloaded(op)
	}
	start := time.Now()
	return func() {
		a.inflight.Add(-1)
		// A racy read-modify-write: a lost update only delays the mean
		// by one sample, not worth a lock on every request.
		d := int64(time.Since(start))
		m := a.meanNanos.Load()
		a.meanNanos.Store(m + (d-m)/16)
	}, nil
}

// retryAfter is the hint sent with a refusal: the mean latency of the
// requests in flight, the time in which, on average, all of them have
// finished and their places are free.
func (a *admission) retryAfter() time.Duration {
	return min(max(time.Duration(a.meanNanos.Load()), minRetryAfter), maxRetryAfter)
}

func (a *admission) overloaded(op string) error {
	hint := a.retryAfter()
	st := status.New(codes.ResourceExhausted, fmt.Sprintf(
		"%s refused: node is overloaded (%d client requests in flight, the limit); nothing was done, retry after %v or on another node", op, a.max, hint))
	if d, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: ReasonOverloaded, Domain: errorDomain, Metadata: map[string]string{"max_inflight": fmt.Sprint(a.max)}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(hint)},
	); err == nil {
		st = d
	}
	return st.Err()
}

package node

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/api/kvpb"
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
	// refusal caches the OVERLOADED status for one hint, so that a node
	// shedding thousands of requests a second does not marshal the same
	// details for each.
	refusal atomic.Pointer[refusal]
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
func (a *admission) acquire() (release func(), err error) {
	if a == nil || a.max <= 0 {
		return func() {}, nil
	}
	if a.inflight.Add(1) > a.max {
		a.inflight.Add(-1)
		a.shed.Add(1)
		return nil, a.overloaded()
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

// kvMethodPrefix is the full method name prefix of the client API, the only
// service admission bounds.
const kvMethodPrefix = "/adaptkv.v1.KV/"

// tap refuses a client request before gRPC creates its stream, decodes its
// message or gives it a goroutine, when the node already has its maximum in
// flight: the cheapest refusal there is, which matters when a node sheds
// two requests for every one it serves. It runs on the connection's reader
// goroutine, so it only reads a counter; acquire still enforces the bound
// exactly for the requests that pass.
func (a *admission) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	// The Batch stream is long-lived and admits each request inside it
	// (batch.go): refusing to open it would refuse requests not yet sent.
	if a.inflight.Load() >= a.max && strings.HasPrefix(info.FullMethodName, kvMethodPrefix) && info.FullMethodName != kvpb.KV_Batch_FullMethodName {
		a.shed.Add(1)
		return ctx, a.overloaded()
	}
	return ctx, nil
}

type refusal struct {
	hint time.Duration
	st   *status.Status
}

func (a *admission) overloaded() error {
	hint := a.retryAfter().Round(time.Millisecond)
	if r := a.refusal.Load(); r != nil && r.hint == hint {
		return r.st.Err()
	}
	st := status.New(codes.ResourceExhausted, fmt.Sprintf(
		"refused: node is overloaded (%d client requests in flight, the limit); nothing was done, retry after %v or on another node", a.max, hint))
	if d, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: api.ReasonOverloaded, Domain: api.ErrorDomain, Metadata: map[string]string{api.MetaMaxInflight: fmt.Sprint(a.max)}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(hint)},
	); err == nil {
		st = d
	}
	a.refusal.Store(&refusal{hint: hint, st: st})
	return st.Err()
}

package client

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// backoff returns the wait before retry attempt (0-based): uniform in
// [d/2, d] with d = min(maxWait, base*2^attempt), where r in [0, 1) picks the
// point. Half the interval is kept as a floor so that a retry never follows
// its failure immediately, and the other half is random so that clients that
// failed together spread out.
func backoff(attempt int, base, maxWait time.Duration, r float64) time.Duration {
	d := base
	for i := 0; i < attempt && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	half := d / 2
	return half + time.Duration(r*float64(d-half))
}

// target chooses the node for one attempt: it returns the address and its
// connection, or a definite Unavailable error when none can be tried.
type target func(tried map[string]bool) (string, *grpc.ClientConn, *Error)

// invoke runs call with retries. Every attempt goes to the node that pick
// chooses given the nodes already tried, so a retry moves to the next node.
// call must pass opts on to the gRPC method: they record whether the request
// left the client, which decides whether a failed write's outcome is unknown.
func (c *Client) invoke(ctx context.Context, kind opKind, op string, pick target, call func(ctx context.Context, cc *grpc.ClientConn, opts ...grpc.CallOption) error) error {
	if c.isClosed() {
		return closedError(op)
	}
	if _, ok := ctx.Deadline(); !ok && c.cfg.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	tried := make(map[string]bool)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return toError(op, kind, status.FromContextError(err).Err(), false, err)
		}
		addr, cc, e := pick(tried)
		if e == nil {
			tried[addr] = true
			var p peer.Peer
			err := call(ctx, cc, grpc.Peer(&p))
			if err == nil {
				return nil
			}
			e = toError(op, kind, err, p.Addr != nil, ownDeadline(ctx))
			e.Addr = addr
		}
		if c.isClosed() {
			e.Cause = ErrClosed
		}
		if isConnectionError(e) {
			c.triggerRefresh()
		}
		if attempt >= c.cfg.MaxRetries || !retryable(kind, e) {
			return e
		}
		wait := backoff(attempt, c.cfg.RetryBackoffBase, c.cfg.RetryBackoffMax, rand.Float64())
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			// The retry could not finish in time; the error in hand says
			// more than the deadline would.
			return e
		}
		c.log.Debug("adaptkv client: retrying", "op", op, "attempt", attempt+1, "wait", wait, "err", e)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return e
		case <-c.bg.Done():
			t.Stop()
			return e
		}
	}
}

// ownDeadline returns the caller's context error, counting a deadline that
// has passed even if the context's timer has not fired yet: the server,
// which received the deadline with the request, may answer DeadlineExceeded
// a moment before the client's own timer fires.
func ownDeadline(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

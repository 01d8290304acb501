package client

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
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

// overloadWait is the wait before retrying a request the node refused as
// overloaded: at least the node's hint, jittered up by half of it so that
// the clients it refused together do not return together, and at least the
// ordinary backoff, so that a node that keeps refusing is asked ever less
// often.
func overloadWait(attempt int, hint, base, maxWait time.Duration, r float64) time.Duration {
	return max(backoff(attempt, base, maxWait, r), hint+time.Duration(r*float64(hint/2)))
}

// retryBudget limits retries after OVERLOADED the way gRPC's retry
// throttling does (gRFC A6): every refusal takes a token, every success
// gives back a tenth of one, and a refused request is retried only while
// more than half the tokens are left. Under a short burst a few refusals are
// retried; under sustained overload the retries stop at about one per ten
// successes, so that the clients do not multiply the load that the node is
// shedding. Tokens are counted in thousandths.
type retryBudget struct{ milli atomic.Int64 }

const (
	budgetMax     = 10_000 // 10 tokens
	budgetSuccess = 100    // 0.1 token
	budgetRefusal = 1_000  // 1 token
)

func (b *retryBudget) init() { b.milli.Store(budgetMax) }

func (b *retryBudget) success() {
	// A load first: on the hot path the budget is full and stays untouched.
	if b.milli.Load() < budgetMax {
		b.add(budgetSuccess)
	}
}

// refused records a refusal and reports whether it may be retried.
func (b *retryBudget) refused() bool { return b.add(-budgetRefusal) > budgetMax/2 }

// add moves the balance by delta within [0, budgetMax] and returns it. The
// floor at zero lets the successes after a long overload bring retries back
// soon.
func (b *retryBudget) add(delta int64) int64 {
	for {
		old := b.milli.Load()
		v := min(max(old+delta, 0), budgetMax)
		if b.milli.CompareAndSwap(old, v) {
			return v
		}
	}
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
	reauthed := false
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return toError(op, kind, status.FromContextError(err).Err(), false, err)
		}
		addr, cc, e := pick(tried)
		if e == nil {
			tried[addr] = true
			if c.throttle.reject(addr) {
				// The node has been refusing most of what it was sent:
				// refuse locally, at no cost to it; nothing was sent.
				e = localError(op, codes.ResourceExhausted, ReasonOverloaded,
					"node %s is overloaded (it refused most recent requests); not sent", addr)
				e.Addr = addr
			} else {
				var sent bool
				var err error
				addr, sent, err = c.send(ctx, kind, op, addr, cc, pick, tried, call)
				if err == nil {
					c.budget.success()
					c.throttle.done(addr, true)
					return nil
				}
				e = toError(op, kind, err, sent, ownDeadline(ctx))
				e.Addr = addr
				c.throttle.done(addr, e.Reason != ReasonOverloaded)
			}
		}
		if c.isClosed() {
			e.Cause = ErrClosed
		}
		if e.Code == codes.Unauthenticated && !reauthed && op != loginOp && c.tokens != nil && c.tokens.invalidate() {
			// The token expired or was refused (a password changed): log
			// in again, once. The refusal was definite, so even a write
			// may be sent again, and it does not count as a retry.
			reauthed = true
			attempt--
			delete(tried, e.Addr)
			continue
		}
		// A node that refused with a stale epoch knows a newer keyspace or
		// topology configuration than one of the replicas it asked: the
		// routing this client keeps may be out of date too.
		if isConnectionError(e) || e.Reason == ReasonStaleEpoch || e.Reason == ReasonNodeDraining {
			c.triggerRefresh()
		}
		if e.Reason == ReasonNodeDraining && attempt == 0 && c.cfg.MaxRetries > 0 && ctx.Err() == nil {
			// Nothing was done and another node can serve it: the first
			// retry goes at once to a node not tried yet; later ones back
			// off as usual, in case every node the client knows drains.
			c.log.Debug("adaptkv client: node draining, retrying on another node", "op", op, "attempt", attempt+1, "node", addr)
			continue
		}
		overloaded := e.Reason == ReasonOverloaded
		if overloaded && !c.budget.refused() {
			c.log.Debug("adaptkv client: not retrying an overloaded node: retry budget spent", "op", op, "err", e)
			return e
		}
		if attempt >= c.cfg.MaxRetries || !retryable(kind, e) {
			return e
		}
		wait := backoff(attempt, c.cfg.RetryBackoffBase, c.cfg.RetryBackoffMax, rand.Float64())
		if overloaded {
			wait = overloadWait(attempt, e.RetryAfter, c.cfg.RetryBackoffBase, c.cfg.RetryBackoffMax, rand.Float64())
		}
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

// timedCall makes one call on the node at addr, scoring the node by it
// (rank.go) when op is a data call. It reports whether the request left the
// client.
func (c *Client) timedCall(ctx context.Context, kind opKind, op, addr string, cc *grpc.ClientConn, call func(ctx context.Context, cc *grpc.ClientConn, opts ...grpc.CallOption) error) (bool, error) {
	if !scoredOps[op] {
		var p peer.Peer
		err := call(ctx, cc, grpc.Peer(&p))
		return p.Addr != nil, err
	}
	n := c.scores.node(addr)
	w := c.windows.node(addr)
	// Outstanding counts the calls waiting for the node's window too, so
	// that the ranking steers away from a node with a queue in the client.
	n.outstanding.Add(1)
	defer n.outstanding.Add(-1)
	for requeues := 0; ; requeues++ {
		var epoch uint64
		if w != nil {
			var err error
			if epoch, err = w.acquire(ctx, c.bg.Done(), requeues > 0); err != nil {
				return false, err // nothing was sent: a definite failure
			}
		}
		// A call that had to connect first measures the handshake, not
		// the node: its success is not scored (its failure is).
		connected := cc.GetState() == connectivity.Ready
		start := time.Now()
		var p peer.Peer
		err := call(ctx, cc, grpc.Peer(&p))
		d := time.Since(start)
		if w != nil {
			if advertised, over := overloadedRefusal(err); over {
				if w.refused(epoch, advertised) && requeues < maxRequeues && ctx.Err() == nil {
					// The window was larger than the node admits: the
					// request waits for the smaller one instead of
					// failing. Nothing was done.
					continue
				}
			} else {
				w.release(err == nil)
			}
		}
		if connected || err != nil {
			c.scores.observe(ctx, n, kind, d, err)
		}
		if err == nil && kind == opRead {
			c.hedge.sample(d)
		}
		return p.Addr != nil, err
	}
}

// send makes one attempt of invoke on the node at addr. A hedgeable read
// (hedgeableOps) whose node has not answered within the hedge delay is sent
// again to the next node pick offers, budget permitting; the first success
// is taken. call must then be safe to run twice at once, keeping only one
// result. send returns the node whose answer it returns and whether that
// request left the client.
//
// The first copy runs on the caller's goroutine and a timer launches the
// hedge on a goroutine of its own, so that a read that needs no hedge (all
// but a few) costs a timer, not a goroutine and a hand-off: at one client,
// that hand-off was most of a read's added latency. When the hedge answers
// first the first copy is cancelled (errHedgeLost), and scored by at least
// failurePenalty: it was slower than the hedge delay plus another node's
// whole round trip, and scoring it by the moment the other copy won would
// make a node slow by far more than the hedge delay look only a little
// slow. When the first copy answers first, the hedge is left up to
// failurePenalty from its sending to answer (its answer dropped), so that
// its node is scored by its real latency.
func (c *Client) send(ctx context.Context, kind opKind, op, addr string, cc *grpc.ClientConn, pick target, tried map[string]bool, call func(ctx context.Context, cc *grpc.ClientConn, opts ...grpc.CallOption) error) (string, bool, error) {
	if kind != opRead || !hedgeableOps[op] {
		sent, err := c.timedCall(ctx, kind, op, addr, cc, call)
		return addr, sent, err
	}
	c.hedge.earn(c.cfg.HedgeBudget)
	if c.cfg.DisableHedging {
		sent, err := c.timedCall(ctx, kind, op, addr, cc, call)
		return addr, sent, err
	}
	type answer struct {
		addr string
		sent bool
		err  error
	}
	first, cancelFirst := context.WithCancelCause(ctx)
	defer cancelFirst(nil)
	var (
		mu       sync.Mutex
		over     bool        // the first copy returned: no hedge any more
		hedged   chan answer // made when the hedge is launched
		hedgeAt  time.Time
		endHedge context.CancelCauseFunc
	)
	timer := time.AfterFunc(c.hedge.delay(&c.cfg), func() {
		mu.Lock()
		defer mu.Unlock()
		if over {
			return
		}
		// tried is the caller's, which is blocked in the first copy's
		// call until over is set under mu.
		haddr, hcc, e := pick(tried)
		tried[addr] = true // pick starts over when every node was tried
		if e != nil || haddr == addr || !c.hedge.spend() {
			return
		}
		tried[haddr] = true
		// The hedge outlives ctx (see above) but keeps its deadline; the
		// caller's cancellation reaches it while the read waits.
		base := context.WithoutCancel(ctx)
		dlCancel := context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			base, dlCancel = context.WithDeadline(base, dl)
		}
		hctx, cancel := context.WithCancelCause(base)
		stop := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
		endHedge = func(cause error) { stop(); cancel(cause); dlCancel() }
		hedged = make(chan answer, 1)
		hedgeAt = time.Now()
		go func() {
			sent, err := c.timedCall(hctx, kind, op, haddr, hcc, call)
			if err == nil {
				cancelFirst(errHedgeLost)
			}
			hedged <- answer{haddr, sent, err}
		}()
	})
	sent, err := c.timedCall(first, kind, op, addr, cc, call)
	timer.Stop()
	mu.Lock()
	over = true
	h := hedged
	mu.Unlock()
	if h == nil {
		return addr, sent, err
	}
	if err == nil {
		// The first copy won: the hedge may still answer, to be scored.
		time.AfterFunc(failurePenalty-time.Since(hedgeAt), func() { endHedge(errHedgeLost) })
		return addr, sent, nil
	}
	// The first copy failed, or lost to the hedge: the hedge's answer
	// decides.
	a := <-h
	endHedge(nil)
	if a.err == nil {
		c.hedge.wins.Add(1)
		return a.addr, a.sent, nil
	}
	return addr, sent, err
}

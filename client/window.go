package client

import (
	"container/list"
	"context"
	"strconv"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api"
)

// Concurrency windows: a node admits a bounded number of client requests at
// once and refuses the rest at once as OVERLOADED (its open-loop
// protection). A closed loop of many callers on one Client would see most of
// its requests refused, although the caller would rather wait, as a gRPC
// client waits for a stream. So the client keeps, per node, a window of
// requests it lets be in flight there, adapted the way TCP adapts its
// congestion window (AIMD): it starts at initialWindow, grows by one request
// per window's worth of successes up to its cap, and halves (at most once per
// window's worth of requests, and not below windowFloor) when the node
// refuses a request as overloaded. The cap is Config.MaxInflightPerNode,
// lowered to the bound the node advertises with its first refusal, so that
// one client alone stays within the node's bound. Callers past the window
// wait in FIFO order in the client, within their context; past
// Config.MaxQueuedPerNode waiting callers a call is refused locally, unsent,
// as OVERLOADED, so that an open loop still sheds and its memory stays
// bounded.

const (
	// initialWindow is a new window's size: the nodes' default bound
	// (node.DefaultMaxInflight), which one client can fill alone without a
	// refusal.
	initialWindow = 32
	// windowFloor is the least a window shrinks to: one request, so that a
	// node refusing everything still gets the probe that sees it recover.
	windowFloor = 1
	// maxRequeues bounds how often one call goes back to the window after
	// a refusal its window caused, before the refusal goes to invoke's
	// retry path (with its budget and backoff).
	maxRequeues = 4
)

// windows holds the Client's window per node address.
type windows struct {
	mu sync.RWMutex
	m  map[string]*window
	// cap and queued are Config.MaxInflightPerNode and MaxQueuedPerNode;
	// cap 0 disables the windows.
	cap, queued int
}

// node returns addr's window, nil when windows are disabled.
func (ws *windows) node(addr string) *window {
	if ws.cap <= 0 {
		return nil
	}
	ws.mu.RLock()
	w := ws.m[addr]
	ws.mu.RUnlock()
	if w != nil {
		return w
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.m == nil {
		ws.m = make(map[string]*window)
	}
	w = ws.m[addr]
	if w == nil {
		w = &window{limit: float64(min(initialWindow, ws.cap)), cap: float64(ws.cap), maxQueued: ws.queued}
		ws.m[addr] = w
	}
	return w
}

// window is one node's concurrency window.
type window struct {
	mu        sync.Mutex
	limit     float64 // requests allowed in flight; the AIMD state
	cap       float64
	maxQueued int
	inflight  int
	waiters   list.List // of *waiter, oldest first
	// epoch counts the decreases: a refusal of a request sent before the
	// latest decrease was caused by the larger window, already halved.
	epoch uint64
	// shed counts the calls refused locally because the queue was full.
	shed uint64
}

type waiter struct {
	ready   chan struct{}
	granted bool   // under window.mu
	epoch   uint64 // the epoch at the grant
}

// errQueueFull is the status of a call refused because its node's window
// queue is full: a local OVERLOADED refusal, definite since nothing was
// sent, which invoke treats as a node's refusal (retry budget, backoff,
// throttle).
var errQueueFull = func() error {
	st := status.New(codes.ResourceExhausted, "refused: too many requests already wait for this node's window in the client (Config.MaxQueuedPerNode); not sent")
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: api.ReasonOverloaded, Domain: api.ErrorDomain}); err == nil {
		st = d
	}
	return st.Err()
}()

// acquire takes a place in the window, waiting in FIFO order while it is
// full, and returns the epoch it was granted in. It fails at once with
// errQueueFull when maxQueued callers already wait, and with ctx's error (or
// Canceled once closed is done) when the caller leaves while waiting:
// nothing was sent either way. front puts a call that was refused back at
// the head of the queue, ahead of newer calls.
func (w *window) acquire(ctx context.Context, closed <-chan struct{}, front bool) (uint64, error) {
	w.mu.Lock()
	if w.inflight < w.size() && w.waiters.Len() == 0 {
		// The fast path: room in the window, no one ahead.
		w.inflight++
		e := w.epoch
		w.mu.Unlock()
		return e, nil
	}
	if !front && w.waiters.Len() >= w.maxQueued {
		w.shed++
		w.mu.Unlock()
		return 0, errQueueFull
	}
	wt := &waiter{ready: make(chan struct{})}
	var el *list.Element
	if front {
		el = w.waiters.PushFront(wt)
	} else {
		el = w.waiters.PushBack(wt)
	}
	w.grant()
	w.mu.Unlock()
	var err error
	select {
	case <-wt.ready:
		return wt.epoch, nil
	case <-ctx.Done():
		err = status.FromContextError(ctx.Err()).Err()
	case <-closed:
		err = status.Error(codes.Canceled, "client is closed")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt.granted {
		// Granted as the caller left: pass the place on.
		w.inflight--
		w.grant()
	} else {
		w.waiters.Remove(el)
	}
	return 0, err
}

// size is the window in whole requests. Under w.mu.
func (w *window) size() int { return max(int(w.limit), windowFloor) }

// grant hands free places to the oldest waiters. Under w.mu.
func (w *window) grant() {
	for w.inflight < w.size() && w.waiters.Len() > 0 {
		wt := w.waiters.Remove(w.waiters.Front()).(*waiter)
		w.inflight++
		wt.granted = true
		wt.epoch = w.epoch
		close(wt.ready)
	}
}

// release gives back a place; ok grows the window additively (by one
// request per window's worth of successes).
func (w *window) release(ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inflight--
	if ok && w.limit < w.cap {
		w.limit = min(w.limit+1/w.limit, w.cap)
	}
	w.grant()
}

// refused records the node's OVERLOADED refusal of a request granted in
// epoch and gives its place back. advertised is the node's bound from the
// refusal (0 when not given): the cap, and the window, come down to it.
// The window also halves, unless it shrank since the request was granted
// or this client alone had more in flight than the node admits (then the
// cap explains the refusal). It reports whether the refusal was the
// window's doing, so that the call may wait for the smaller window instead
// of failing: when the request was granted before the last decrease (by
// the larger window), or when this client alone had more in flight at the
// node than the node admits. A refusal by a node that other clients fill
// goes to invoke's retry path instead, whose budget keeps the client from
// multiplying the load the node sheds.
func (w *window) refused(epoch uint64, advertised int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	over := advertised > 0 && w.inflight > advertised
	w.inflight--
	before := w.limit
	if advertised > 0 && float64(advertised) < w.cap {
		w.cap = float64(advertised)
	}
	stale := epoch != w.epoch
	if !stale && !over {
		// Other clients fill the node too: back off multiplicatively.
		// (A refusal that this client's excess alone explains only
		// brings the window down to the node's bound, below.)
		w.limit = max(w.limit/2, windowFloor)
	}
	w.limit = min(w.limit, w.cap)
	if w.limit < before {
		w.epoch++
	}
	w.grant()
	return stale || over
}

// overloadedRefusal reports whether err is a node's OVERLOADED refusal,
// with the bound on requests in flight it advertises (0 when none).
func overloadedRefusal(err error) (int, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == api.ErrorDomain && info.GetReason() == api.ReasonOverloaded {
			n, _ := strconv.Atoi(info.GetMetadata()[api.MetaMaxInflight])
			return n, true
		}
	}
	return 0, false
}

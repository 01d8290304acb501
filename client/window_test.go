package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// hangPuts makes n's Puts block until their caller gives up, and starts k
// Puts that fill the window, cancelled by the returned func (which waits
// for them).
func hangPuts(t *testing.T, c *Client, n *fakeNode, k int) (stop func()) {
	t.Helper()
	n.mu.Lock()
	n.hang["Put"] = true
	n.mu.Unlock()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i := range k {
		wg.Go(func() { c.Put(ctx, fmt.Appendf(nil, "hang%d", i), []byte("v")) })
	}
	waitUntil(t, func() bool { return n.count("Put") == k })
	return func() { cancel(); wg.Wait() }
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
	}
}

// A caller whose context ends while it waits for a full window gets a
// definite deadline error (not an unknown outcome, although it is a write),
// and its request never reaches the node.
func TestWindowQueuedCallerDeadline(t *testing.T) {
	n := startNode(t, "n1")
	c := newTestClient(t, Config{Endpoints: []string{n.addr}, DisableRouting: true, MaxInflightPerNode: 2, RequestTimeout: time.Minute})
	stop := hangPuts(t, c, n, 2)
	defer stop()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Put(ctx, []byte("queued"), []byte("v"))
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("err = %v; want a definite deadline error", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.DeadlineExceeded || e.Unknown {
		t.Errorf("error %+v; want DeadlineExceeded, definite", e)
	}
	if got := n.count("Put"); got != 2 {
		t.Errorf("node received %d Puts; want only the 2 in the window", got)
	}
	w := c.windows.node(n.addr)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waiters.Len() != 0 || w.inflight != 2 {
		t.Errorf("after the caller left: %d waiting, %d in flight; want 0 and 2", w.waiters.Len(), w.inflight)
	}
}

// An open loop that outruns the node fills the window and the local queue;
// past the queue's bound a call is refused at once as ErrOverloaded,
// definite and unsent, while the queued calls still wait: the client sheds
// instead of holding every call.
func TestWindowQueueBoundSheds(t *testing.T) {
	n := startNode(t, "n1")
	const window, queued = 2, 4
	c := newTestClient(t, Config{Endpoints: []string{n.addr}, DisableRouting: true,
		MaxInflightPerNode: window, MaxQueuedPerNode: queued, MaxRetries: -1, RequestTimeout: time.Minute})
	stop := hangPuts(t, c, n, window)
	defer stop()
	// Fill the queue with callers that wait for as long as the test runs.
	qctx, qcancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { qcancel(); wg.Wait() }()
	w := c.windows.node(n.addr)
	for range queued {
		wg.Go(func() { c.Put(qctx, []byte("q"), []byte("v")) })
	}
	waitUntil(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.waiters.Len() == queued })
	// Each of these returns while the window and the queue are still full
	// (their contexts last 5 s, far longer than a refusal takes): refused at once.
	for i := range 50 {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := c.Put(ctx, []byte("open"), []byte("v"))
		cancel()
		if !errors.Is(err, ErrOverloaded) || errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("call %d past the queue: err = %v; want ErrOverloaded, definite", i, err)
		}
	}
	if got := n.count("Put"); got != window {
		t.Errorf("node received %d Puts; want only the %d in the window", got, window)
	}
}

// The AIMD arithmetic: halve on a refusal (once per window's worth: a
// refusal of a request granted before the last decrease does not halve
// again), never below the floor nor above the node's advertised bound, and
// grow by about one per window's worth of successes.
func TestWindowAIMD(t *testing.T) {
	ws := windows{cap: 256, queued: 10}
	w := ws.node("a")
	ctx := t.Context()
	if w.size() != initialWindow {
		t.Fatalf("initial window %d; want %d", w.size(), initialWindow)
	}
	var epochs []uint64
	for range initialWindow {
		e, err := w.acquire(ctx, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		epochs = append(epochs, e)
	}
	// The node admits 8: the first refusal halves and brings the window
	// down to the advertised bound; the others, from the same epoch, are
	// the old window's and change nothing more.
	if !w.refused(epochs[0], 8) || w.size() != 8 {
		t.Fatalf("after a refusal advertising 8: window %d, want 8", w.size())
	}
	for _, e := range epochs[1:10] {
		if !w.refused(e, 8) {
			t.Error("a refusal of the larger window was not reported as the window's doing")
		}
	}
	if w.size() != 8 {
		t.Errorf("stale refusals shrank the window to %d; want 8", w.size())
	}
	for range initialWindow - 10 {
		w.release(true)
	}
	if w.size() != 8 {
		t.Errorf("successes grew the window past the node's bound: %d", w.size())
	}
	// Refusals in fresh epochs halve, down to the floor.
	for range 10 {
		e, _ := w.acquire(ctx, nil, false)
		w.refused(e, 8)
	}
	if w.size() != windowFloor {
		t.Errorf("window %d after many refusals; want the floor %d", w.size(), windowFloor)
	}
	// A refusal that this client's own excess explains (32 in flight, the
	// node admits 24) brings the window down to the bound, not to half.
	b := ws.node("b")
	var be uint64
	for range initialWindow {
		be, _ = b.acquire(ctx, nil, false)
	}
	if !b.refused(be, 24) || b.size() != 24 {
		t.Errorf("after a refusal advertising 24 with 32 in flight: window %d, want 24", b.size())
	}
	// Additive increase: from 1 to 4 takes about 1+2+3 successes.
	for range 6 {
		e, _ := w.acquire(ctx, nil, false)
		_ = e
		w.release(true)
	}
	if got := w.size(); got < 3 || got > 4 {
		t.Errorf("window %d after 6 successes from 1; want 3-4", got)
	}
}

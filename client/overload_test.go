package client

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// overloadedStatus is what a node past its in-flight bound answers.
func overloadedStatus(t testing.TB, hint time.Duration) error {
	t.Helper()
	st, err := status.New(codes.ResourceExhausted, "put refused: node is overloaded").WithDetails(
		&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: ReasonOverloaded},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(hint)},
	)
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// A refusal as overloaded is definite, so even a write is retried, each time
// after at least the node's hint; when the retries run out the caller gets
// ErrOverloaded with the hint, not an unknown outcome.
func TestOverloadedIsRetriedAfterTheHint(t *testing.T) {
	n1, n2 := startNode(t, "n1"), startNode(t, "n2")
	const hint = 60 * time.Millisecond
	for _, n := range []*fakeNode{n1, n2} {
		n.setFail("Put", overloadedStatus(t, hint))
	}
	c := newTestClient(t, Config{Endpoints: []string{n1.addr, n2.addr}, DisableRouting: true, MaxRetries: 3})
	c.throttle.off = true // every attempt reaches a node (TestThrottle covers the throttle)
	start := time.Now()
	_, err := c.Put(t.Context(), []byte("k"), []byte("v"))
	elapsed := time.Since(start)
	if !errors.Is(err, ErrOverloaded) || errors.Is(err, ErrUnknownOutcome) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v; want ErrOverloaded, definite", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.RetryAfter != hint || e.Code != codes.ResourceExhausted {
		t.Errorf("error details %+v; want RetryAfter %v", e, hint)
	}
	if got := total("Put", n1, n2); got != 4 {
		t.Errorf("sent %d times; want 1 + 3 retries", got)
	}
	if n1.count("Put") == 0 || n2.count("Put") == 0 {
		t.Error("retries did not move to the other node")
	}
	// The configured backoff is 1-5 ms (newTestClient): only the hint can
	// have made the three waits this long.
	if elapsed < 3*hint {
		t.Errorf("three retries took %v; each should have waited at least the %v hint", elapsed, hint)
	}

	// Once the node has room again the retry succeeds.
	n2.setFail("Put", nil)
	if _, err := c.Put(t.Context(), []byte("k"), []byte("v")); err != nil {
		t.Errorf("put once n2 has room: %v", err)
	}
}

// Under sustained overload the retry budget stops the client from
// multiplying the load it is asked to shed: after a few refusals a refused
// call is sent once, and successes bring retries back.
func TestOverloadRetryBudget(t *testing.T) {
	n := startNode(t, "n1")
	n.setFail("Get", overloadedStatus(t, time.Millisecond))
	c := newTestClient(t, Config{Endpoints: []string{n.addr}, DisableRouting: true, MaxRetries: 3})
	c.throttle.off = true
	var sends []int
	for range 4 {
		before := n.count("Get")
		if _, err := c.Get(t.Context(), []byte("k")); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("err = %v; want ErrOverloaded", err)
		}
		sends = append(sends, n.count("Get")-before)
	}
	// 10 tokens, one per refusal, retries while more than 5 are left.
	if want := []int{4, 1, 1, 1}; !equalInts(sends, want) {
		t.Errorf("attempts per call %v; want %v", sends, want)
	}
	n.setFail("Get", nil)
	for range 60 {
		if _, err := c.Get(t.Context(), []byte("k")); err != nil {
			t.Fatal(err)
		}
	}
	n.setFail("Get", overloadedStatus(t, time.Millisecond))
	before := n.count("Get")
	c.Get(t.Context(), []byte("k"))
	if got := n.count("Get") - before; got < 2 {
		t.Errorf("after 60 successes a refused call was sent %d times; want it retried again", got)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRetryBudgetArithmetic(t *testing.T) {
	var b retryBudget
	b.init()
	var allowed []bool
	for range 7 {
		allowed = append(allowed, b.refused())
	}
	want := []bool{true, true, true, true, false, false, false}
	for i := range want {
		if allowed[i] != want[i] {
			t.Fatalf("refusal %d allowed=%v; want %v (all: %v)", i+1, allowed[i], want[i], allowed)
		}
	}
	for range 1000 {
		b.refused()
	}
	if got := b.milli.Load(); got != 0 {
		t.Errorf("balance %d after many refusals; want the floor 0", got)
	}
	for range 1000 {
		b.success()
	}
	if got := b.milli.Load(); got != budgetMax {
		t.Errorf("balance %d after many successes; want the cap %d", got, budgetMax)
	}
}

func TestOverloadWait(t *testing.T) {
	const base, maxWait = 50 * time.Millisecond, time.Second
	for _, tt := range []struct {
		attempt int
		hint    time.Duration
		r       float64
		lo, hi  time.Duration
	}{
		{0, 0, 0.5, 25 * time.Millisecond, 50 * time.Millisecond},                      // no hint: the ordinary backoff
		{0, 200 * time.Millisecond, 0, 200 * time.Millisecond, 200 * time.Millisecond}, // the hint is a floor
		{0, 200 * time.Millisecond, 0.99, 200 * time.Millisecond, 300 * time.Millisecond},
		{5, 10 * time.Millisecond, 0, 500 * time.Millisecond, time.Second}, // backoff grows past a small hint
	} {
		got := overloadWait(tt.attempt, tt.hint, base, maxWait, tt.r)
		if got < tt.lo || got > tt.hi {
			t.Errorf("overloadWait(%d, %v, r=%v) = %v; want in [%v, %v]", tt.attempt, tt.hint, tt.r, got, tt.lo, tt.hi)
		}
	}
}

// Client-side throttling (Google SRE, "Handling Overload"): a node that
// accepts everything is never throttled; once it refuses most of what it
// is sent, most requests to it are refused locally, never sent; the counts
// decay, so that a node that has recovered is sent everything again.
func TestThrottle(t *testing.T) {
	var th throttle
	for range 100 {
		if th.reject("a") {
			t.Fatal("a node that accepts everything was throttled")
		}
		th.done("a", true)
	}
	for range 300 {
		th.done("b", false)
	}
	th.done("b", true)
	rejected := 0
	for range 1000 {
		if th.reject("b") {
			rejected++
		}
	}
	// p = (requests − 2·accepts)/(requests + 1) starts near 1 and grows as
	// local refusals count as requests too.
	if rejected < 900 {
		t.Errorf("%d of 1000 requests to a node that refused 300 of 301 were refused locally; want nearly all", rejected)
	}
	if th.reject("a") {
		t.Error("the throttle of one node spilled onto another")
	}
	// Two minutes later the counts have decayed to nothing: 1300 requests
	// times e^-24 leave a refusal probability of 5e-8. (One minute, e^-12,
	// left 0.8%, and the test failed about once in 120 runs.)
	th.nodes["b"].at = th.nodes["b"].at.Add(-2 * time.Minute)
	for range 100 {
		if th.reject("b") {
			t.Fatal("a node's refusals of two minutes ago still throttle it")
		}
		th.done("b", true)
	}
}

package client

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// throttle is client-side adaptive throttling, as in Google's SRE book
// ("Handling Overload", client-side throttling): for each node the client
// keeps, over the last few seconds, how many requests it sent and how many
// the node accepted (answered with anything but OVERLOADED), and refuses a
// new request locally with probability
//
//	max(0, (requests − K·accepts) / (requests + 1))
//
// so that once a node refuses more than it serves, the client stops sending
// it most of what it would refuse: a refusal that never leaves the client
// costs the node nothing. With K = 2 a node that accepts everything is never
// throttled, and one that accepts a third of what it is offered still gets
// twice what it accepts, so that it is probed and recovers at once.
type throttle struct {
	mu    sync.Mutex
	nodes map[string]*nodeRate
	off   bool // tests of the retry path alone set it
}

// throttleK is the multiplier K. Why not smaller? Close to 1 the client
// would refuse requests the node could have taken when its capacity
// grows. Why not larger? The node pays for every refusal it sends.
const throttleK = 2

// throttleWindow is the time constant of the decaying counts: long enough
// to smooth a burst of refusals, short enough to follow a node whose load
// changes within seconds.
const throttleWindow = 5 * time.Second

// nodeRate holds one node's decaying counts.
type nodeRate struct {
	requests, accepts float64
	at                time.Time
}

func (r *nodeRate) decay(now time.Time) {
	if dt := now.Sub(r.at); dt > 0 {
		f := math.Exp(-float64(dt) / float64(throttleWindow))
		r.requests *= f
		r.accepts *= f
		r.at = now
	}
}

func (t *throttle) node(addr string, now time.Time) *nodeRate {
	if t.nodes == nil {
		t.nodes = make(map[string]*nodeRate)
	}
	r := t.nodes[addr]
	if r == nil {
		r = &nodeRate{at: now}
		t.nodes[addr] = r
	}
	r.decay(now)
	return r
}

// reject reports whether to refuse a request to addr locally, and counts
// such a refusal as a request the node did not accept. Requests in flight
// are not counted until they are answered (done): counted when sent, the
// first burst to a node would look refused.
func (t *throttle) reject(addr string) bool {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.off {
		return false
	}
	r := t.node(addr, now)
	p := (r.requests - throttleK*r.accepts) / (r.requests + 1)
	if p > 0 && rand.Float64() < p {
		r.requests++
		return true
	}
	return false
}

// done counts an answered request to addr: accepted unless the node
// refused it as overloaded.
func (t *throttle) done(addr string, accepted bool) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.node(addr, now)
	r.requests++
	if accepted {
		r.accepts++
	}
}

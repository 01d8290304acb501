package client

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The client ranks the nodes it sends requests to by a latency score, in
// the manner of C3 (Suresh et al., NSDI 2015): an exponentially weighted
// moving average of each node's response times, where a timeout or an
// Unavailable counts as a large sample, multiplied by one plus the requests
// the client has outstanding at the node. A score decays with its age, so a
// node that stopped getting requests because it was slow looks better as
// time passes and gets one again: that request is the probe that finds a
// recovered node. Reads and writes are scored apart (a write's round trip
// includes the replicas' fsyncs).
const (
	// scoreAlpha is the weight of a new sample in the average.
	scoreAlpha = 0.2
	// scoreHalfLife halves a score that gets no new samples.
	scoreHalfLife = 2 * time.Second
	// failurePenalty is the sample a failure that points at the node (a
	// timeout, Unavailable, overload, an internal error) counts as, at least.
	failurePenalty = 250 * time.Millisecond
	// rankBand and rankSlack: nodes whose score is within rankBand times
	// the best plus rankSlack count as equally good (rank). The slack
	// keeps the jitter of sub-millisecond round trips from splitting
	// healthy nodes; a node tens of milliseconds slow is well outside.
	rankBand  = 2.0
	rankSlack = 10 * time.Millisecond
)

// scoredOps are the operations whose latencies score the node: the data
// calls. Admin calls (a keyspace change waits for the metadata log) would
// say nothing about a node's speed at serving keys.
var scoredOps = map[string]bool{"get": true, "scan": true, "put": true, "delete": true, "put_if": true, "delete_if": true}

// hedgeableOps are the reads a client may send twice: idempotent, so a
// second copy changes nothing. Writes, plain or conditional, are never
// hedged (a duplicate could apply twice, or fail a condition that the first
// copy made true).
var hedgeableOps = map[string]bool{"get": true, "scan": true}

// errHedgeLost cancels the copy of a hedged read that did not answer first.
var errHedgeLost = errors.New("adaptkv client: another copy of this read answered first")

// nodeScore is one node's latency record.
type nodeScore struct {
	outstanding atomic.Int64

	mu      sync.Mutex
	ewma    [2]float64 // nanoseconds, by opKind
	at      [2]time.Time
	samples [2]uint64
}

// scoreboard holds the scores of every node the client has sent to.
type scoreboard struct {
	mu    sync.RWMutex
	nodes map[string]*nodeScore
	// now is the clock, replaceable in tests.
	now func() time.Time
}

func (s *scoreboard) node(addr string) *nodeScore {
	s.mu.RLock()
	n := s.nodes[addr]
	s.mu.RUnlock()
	if n != nil {
		return n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodes == nil {
		s.nodes = make(map[string]*nodeScore)
	}
	if n = s.nodes[addr]; n == nil {
		n = &nodeScore{}
		s.nodes[addr] = n
	}
	return n
}

// forget drops every score.
func (s *scoreboard) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes = nil
}

func (s *scoreboard) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// record adds a sample of d for kind.
func (s *scoreboard) record(n *nodeScore, kind opKind, d time.Duration) {
	now := s.clock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.samples[kind] == 0 {
		n.ewma[kind] = float64(d)
	} else {
		n.ewma[kind] = scoreAlpha*float64(d) + (1-scoreAlpha)*decayed(n.ewma[kind], now.Sub(n.at[kind]))
	}
	n.at[kind] = now
	n.samples[kind]++
}

// decayed is v after age without samples.
func decayed(v float64, age time.Duration) float64 {
	if age <= 0 {
		return v
	}
	return v * math.Exp2(-float64(age)/float64(scoreHalfLife))
}

// latency returns the node's decayed average for kind; 0 when it has none,
// so that a node never tried is tried.
func (s *scoreboard) latency(addr string, kind opKind) time.Duration {
	s.mu.RLock()
	n := s.nodes[addr]
	s.mu.RUnlock()
	if n == nil {
		return 0
	}
	now := s.clock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.samples[kind] == 0 {
		return 0
	}
	return time.Duration(decayed(n.ewma[kind], now.Sub(n.at[kind])))
}

// score is the node's rank key for kind: lower is better.
func (s *scoreboard) score(addr string, kind opKind) float64 {
	var q int64
	s.mu.RLock()
	if n := s.nodes[addr]; n != nil {
		q = n.outstanding.Load()
	}
	s.mu.RUnlock()
	return float64(s.latency(addr, kind)) * float64(1+q)
}

// observe scores one finished attempt on n: a success, or a failure that
// says something about the node, by its latency (a failure at least
// failurePenalty); a copy of a hedged read cancelled because the other
// answered first by its time so far (it was at least that slow). A call the
// caller cancelled, or one refused for what it asked (not found, a
// condition, a permission), is scored by its latency too, except the
// caller's cancellation, which says nothing about the node.
func (s *scoreboard) observe(ctx context.Context, n *nodeScore, kind opKind, d time.Duration, err error) {
	if err == nil {
		s.record(n, kind, d)
		return
	}
	if errors.Is(context.Cause(ctx), errHedgeLost) {
		// The other copy answered and this one had failurePenalty more.
		s.record(n, kind, max(d, failurePenalty))
		return
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return // the caller gave up
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		s.record(n, kind, max(d, failurePenalty))
		return
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal, codes.Unknown:
		s.record(n, kind, max(d, failurePenalty))
	case codes.Canceled:
	default:
		s.record(n, kind, d)
	}
}

// rank orders addrs for a request of kind. Flagged nodes (the cluster's
// health decisions) stay last, as demoteFlagged put them. The others are
// split by a tolerance band: those whose score is within rankBand of the
// best (plus rankSlack) are equals and keep their order in addrs, the
// others follow, best first, so that a retry or a hedge goes to the next
// best. Reads start at a rotating place (turn) among the equals, spreading
// load over every healthy node rather than piling every client onto the
// single fastest, which would make it the slowest; writes keep addrs' order
// (a key's preference list: its primary first) among the equals, and are
// ranked by latency without the outstanding count, so that a busy primary
// still coordinates its keys' writes and only a markedly slow one is passed
// over. A node never tried scores 0 and is always among the equals.
func (s *scoreboard) rank(addrs []string, kind opKind, flagged map[string]bool, turn uint64) []string {
	k := 0 // addrs[:k] are unflagged
	for k < len(addrs) && !flagged[addrs[k]] {
		k++
	}
	head := addrs[:k]
	if len(head) < 2 {
		return addrs
	}
	// Scores and the new order live in arrays on the stack for the usual
	// few nodes: rank runs for every request.
	var scoreBuf [8]float64
	var inBuf, outBuf [8]string
	scores := scoreBuf[:0] // append moves to the heap past eight
	best := math.Inf(1)
	for _, a := range head {
		var sc float64
		if kind == opWrite {
			sc = float64(s.latency(a, kind))
		} else {
			sc = s.score(a, kind)
		}
		scores = append(scores, sc)
		best = min(best, sc)
	}
	limit := best*rankBand + float64(rankSlack)
	in, out := inBuf[:0], outBuf[:0]
	var outScores [8]float64
	outSc := outScores[:0]
	for i, a := range head {
		if scores[i] <= limit {
			in = append(in, a)
		} else {
			out = append(out, a)
			outSc = append(outSc, scores[i])
		}
	}
	if kind == opRead {
		in = rotate(in, turn)
	}
	// Insertion sort by score, stable: out holds a node or two.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && outSc[j] < outSc[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
			outSc[j], outSc[j-1] = outSc[j-1], outSc[j]
		}
	}
	n := copy(head, in)
	copy(head[n:], out)
	return addrs
}

// hedging holds the state of read hedging: the recent read latencies whose
// 95th percentile is the hedge delay, and the budget that bounds hedges to
// a fraction of reads.
type hedging struct {
	mu  sync.Mutex
	lat [256]time.Duration
	// scratch is where the p95 is computed, so that it allocates nothing.
	scratch [256]time.Duration
	n       int // samples written, ever
	p95     atomic.Int64
	budget  atomic.Int64 // thousandths of a hedge

	reads, hedges, wins atomic.Uint64
}

const (
	// hedgeBurst is how many hedges the budget can save up.
	hedgeBurst = 5_000
	// hedgeMinSamples is how many reads the delay needs before it follows
	// their p95; until then it is the cap.
	hedgeMinSamples = 64
)

// sample adds a successful read's latency.
func (h *hedging) sample(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lat[h.n%len(h.lat)] = d
	h.n++
	// The p95 is refreshed every 64 reads (milliseconds at the rates that
	// make it matter), in a scratch array: sorting 256 samples on every
	// sixteenth read was a few percent of a busy client's CPU.
	if h.n%64 == 0 && h.n >= hedgeMinSamples {
		n := min(h.n, len(h.lat))
		s := h.scratch[:n]
		copy(s, h.lat[:n])
		slices.Sort(s)
		h.p95.Store(int64(s[n*95/100]))
	}
}

// delay is how long a read waits for its first node before it hedges.
func (h *hedging) delay(cfg *Config) time.Duration {
	if cfg.HedgeDelay > 0 {
		return cfg.HedgeDelay
	}
	p := time.Duration(h.p95.Load())
	if p == 0 {
		return DefaultHedgeDelayMax
	}
	return min(max(p, DefaultHedgeDelayMin), DefaultHedgeDelayMax)
}

// earn credits one read to the budget.
func (h *hedging) earn(fraction float64) {
	h.reads.Add(1)
	for {
		old := h.budget.Load()
		v := min(old+int64(fraction*1000), hedgeBurst)
		if v == old || h.budget.CompareAndSwap(old, v) {
			return
		}
	}
}

// spend takes one hedge from the budget, reporting whether there was one.
func (h *hedging) spend() bool {
	for {
		old := h.budget.Load()
		if old < 1000 {
			return false
		}
		if h.budget.CompareAndSwap(old, old-1000) {
			h.hedges.Add(1)
			return true
		}
	}
}

// NodeScore is the client's view of one node's speed (RoutingStats).
type NodeScore struct {
	Addr string
	// ReadLatency and WriteLatency are the decayed moving averages the
	// ranking uses (failures counted as at least 250 ms); 0 when the node
	// has no samples.
	ReadLatency, WriteLatency time.Duration
	// Outstanding are the client's requests in flight at the node.
	Outstanding int64
	// Flagged is the cluster's gray-failure flag, as last refreshed.
	Flagged bool
}

// RoutingStats shows how the client chooses coordinators: its scores of
// each node and what read hedging has done.
type RoutingStats struct {
	// Reads counts the Gets and Scans sent; Hedges the second copies sent
	// of them; HedgeWins the hedges that answered first.
	Reads, Hedges, HedgeWins uint64
	// HedgeDelay is how long a read now waits before it hedges.
	HedgeDelay time.Duration
	// Nodes are the nodes the client has sent requests to, by address.
	Nodes []NodeScore
}

// RoutingStats returns the client's current node scores and hedging counts.
func (c *Client) RoutingStats() RoutingStats {
	rs := RoutingStats{
		Reads:      c.hedge.reads.Load(),
		Hedges:     c.hedge.hedges.Load(),
		HedgeWins:  c.hedge.wins.Load(),
		HedgeDelay: c.hedge.delay(&c.cfg),
	}
	var flagged map[string]bool
	if t := c.topo.Load(); t != nil {
		flagged = t.flagged
	}
	c.scores.mu.RLock()
	addrs := make([]string, 0, len(c.scores.nodes))
	for a := range c.scores.nodes {
		addrs = append(addrs, a)
	}
	c.scores.mu.RUnlock()
	slices.Sort(addrs)
	for _, a := range addrs {
		rs.Nodes = append(rs.Nodes, NodeScore{
			Addr:         a,
			ReadLatency:  c.scores.latency(a, opRead),
			WriteLatency: c.scores.latency(a, opWrite),
			Outstanding:  c.scores.node(a).outstanding.Load(),
			Flagged:      flagged[a],
		})
	}
	return rs
}

package client

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRank: nodes within the tolerance band are equals (reads rotate over
// them, writes keep the preference order), slower ones follow by score,
// flagged ones stay last whatever their score, and a slow node's score
// decays until it is an equal again.
func TestRank(t *testing.T) {
	now := time.Unix(1000, 0)
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		kind    opKind
		lat     map[string]time.Duration // one sample each; absent: none
		flagged []string
		turn    uint64
		in      []string
		want    []string
	}{
		{"unsampled are equals", opRead, nil, nil, 1, []string{"a", "b", "c"}, []string{"b", "c", "a"}},
		{"slow read node last", opRead, map[string]time.Duration{"a": 100 * ms, "b": ms, "c": 2 * ms}, nil, 0, []string{"a", "b", "c"}, []string{"b", "c", "a"}},
		{"reads rotate among equals", opRead, map[string]time.Duration{"a": 100 * ms, "b": ms, "c": 2 * ms}, nil, 1, []string{"a", "b", "c"}, []string{"c", "b", "a"}},
		{"slower ones by score", opRead, map[string]time.Duration{"a": 100 * ms, "b": ms, "c": 50 * ms}, nil, 0, []string{"a", "b", "c"}, []string{"b", "c", "a"}},
		{"writes keep primary", opWrite, map[string]time.Duration{"a": 3 * ms, "b": ms, "c": 2 * ms}, nil, 5, []string{"a", "b", "c"}, []string{"a", "b", "c"}},
		{"slow primary passed over", opWrite, map[string]time.Duration{"a": 80 * ms, "b": ms, "c": 2 * ms}, nil, 0, []string{"a", "b", "c"}, []string{"b", "c", "a"}},
		{"flagged last though fastest", opRead, map[string]time.Duration{"a": 100 * ms, "b": ms, "c": 0}, []string{"c"}, 0, []string{"a", "b", "c"}, []string{"b", "a", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scoreboard{now: func() time.Time { return now }}
			for a, d := range tc.lat {
				s.record(s.node(a), tc.kind, d)
			}
			var top topology
			for _, a := range tc.flagged {
				top.noteFlagged(Member{GRPCAddr: a, Flagged: true})
			}
			got := s.rank(top.demoteFlagged(slices.Clone(tc.in)), tc.kind, top.flagged, tc.turn)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("rank(%v) = %v; want %v", tc.in, got, tc.want)
			}
		})
	}

	// Decay: a node slow by 100 ms is back among the equals after a few
	// half-lives without samples.
	s := &scoreboard{now: func() time.Time { return now }}
	s.record(s.node("a"), opRead, 100*time.Millisecond)
	s.record(s.node("b"), opRead, time.Millisecond)
	if got := s.rank([]string{"a", "b"}, opRead, nil, 0); got[0] != "b" {
		t.Fatalf("slow node first: %v", got)
	}
	now = now.Add(4 * scoreHalfLife)
	s.record(s.node("b"), opRead, time.Millisecond)
	if got := s.rank([]string{"a", "b"}, opRead, nil, 0); got[0] != "a" {
		t.Fatalf("after 4 half-lives the slow node (%v) is still not an equal of %v: %v", s.latency("a", opRead), s.latency("b", opRead), got)
	}
}

// TestObserve: failures that point at the node count as at least the
// penalty, the caller's cancellation not at all, a refusal of what was
// asked by its latency.
func TestObserve(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	lost, cancelLost := context.WithCancelCause(context.Background())
	cancelLost(errHedgeLost)
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want time.Duration // 0: no sample
	}{
		{"success", context.Background(), nil, time.Millisecond},
		{"unavailable", context.Background(), status.Error(codes.Unavailable, "x"), failurePenalty},
		{"deadline", context.Background(), status.Error(codes.DeadlineExceeded, "x"), failurePenalty},
		{"not found", context.Background(), status.Error(codes.NotFound, "x"), time.Millisecond},
		{"caller canceled", canceled, status.Error(codes.Canceled, "x"), 0},
		{"hedge lost", lost, status.Error(codes.Canceled, "x"), failurePenalty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scoreboard{}
			n := s.node("a")
			s.observe(tc.ctx, n, opRead, time.Millisecond, tc.err)
			if got := s.latency("a", opRead); got.Round(time.Millisecond) != tc.want {
				t.Fatalf("latency after %v = %v; want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestHedgeDelayAndBudget: the delay follows the p95 of recent reads within
// its floor and cap, a fixed Config.HedgeDelay wins, and the budget gives a
// hedge per 1/HedgeBudget reads, saving up at most hedgeBurst.
func TestHedgeDelayAndBudget(t *testing.T) {
	cfg := Config{}
	var h hedging
	if got := h.delay(&cfg); got != DefaultHedgeDelayMax {
		t.Errorf("no samples: delay %v; want the cap %v", got, DefaultHedgeDelayMax)
	}
	for i := range 200 {
		h.sample(time.Duration(i%100+1) * 100 * time.Microsecond) // 0.1-10 ms
	}
	if got := h.delay(&cfg); got < 9*time.Millisecond || got > 10*time.Millisecond {
		t.Errorf("delay %v; want the p95 of 0.1-10 ms", got)
	}
	var fast hedging
	for range 64 {
		fast.sample(100 * time.Microsecond)
	}
	if got := fast.delay(&cfg); got != DefaultHedgeDelayMin {
		t.Errorf("fast reads: delay %v; want the floor %v", got, DefaultHedgeDelayMin)
	}
	var slow hedging
	for range 64 {
		slow.sample(time.Second)
	}
	if got := slow.delay(&cfg); got != DefaultHedgeDelayMax {
		t.Errorf("slow reads: delay %v; want the cap %v", got, DefaultHedgeDelayMax)
	}
	if got := slow.delay(&Config{HedgeDelay: 7 * time.Millisecond}); got != 7*time.Millisecond {
		t.Errorf("fixed delay: %v", got)
	}

	var b hedging
	spent := 0
	for range 1000 {
		b.earn(0.1)
		if b.spend() {
			spent++
		}
	}
	if spent != 100 {
		t.Errorf("%d hedges in 1000 reads at a 10%% budget; want 100", spent)
	}
	var saved hedging
	for range 1000 {
		saved.earn(0.1)
	}
	n := 0
	for saved.spend() {
		n++
	}
	if n != hedgeBurst/1000 {
		t.Errorf("saved up %d hedges; want at most %d", n, hedgeBurst/1000)
	}
}

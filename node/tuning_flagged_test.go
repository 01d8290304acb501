package node

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/replication/health"
)

// The tuner's observations carry the nodes the metadata log has flagged,
// as the log's health decisions flag and reinstate them, so that its model
// routes reads as the coordinators do (issue 16).
func TestTunerSeesFlaggedNodes(t *testing.T) {
	n := &Node{meta: newFSM()}
	tn := newTuning(n, time.Second)
	at := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	for i, step := range []struct {
		node string
		flag bool
		want []string
	}{
		{"n3", true, []string{"n3"}},
		{"n1", true, []string{"n1", "n3"}},
		{"n3", false, []string{"n1"}},
		{"n1", false, nil},
	} {
		b, err := json.Marshal(health.Decision{At: at, Node: step.node, Flag: step.flag, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if r := applyCmd(t, n.meta, uint64(i+1), command{Op: "health", Health: b}); r.err != nil {
			t.Fatal(r.err)
		}
		if got := tn.flagged(); !slices.Equal(got, step.want) {
			t.Errorf("after %s flag=%v: tuner sees %v flagged; want %v", step.node, step.flag, got, step.want)
		}
	}
}

// The share of keys with a flagged replica, by replication factor, on the
// adaptive experiment's ring (n1 n2 in zone a, n3 n4 in b, n5 in c, one
// replica per zone): a key's replicas hold n3 about half the time at N=3,
// always at N=5, and about its ownership at N=1.
func TestFlaggedShare(t *testing.T) {
	r := ring.New([]ring.Member{{ID: "n1", Zone: "a"}, {ID: "n2", Zone: "a"}, {ID: "n3", Zone: "b"}, {ID: "n4", Zone: "b"}, {ID: "n5", Zone: "c"}}, 0)
	if got := flaggedShare(r, nil); got != nil {
		t.Errorf("none flagged: share %v; want nil", got)
	}
	share := flaggedShare(r, []string{"n3"})
	if len(share) != 6 {
		t.Fatalf("share %v; want entries for N 0–5", share)
	}
	own := r.Ownership()["n3"]
	for _, tc := range []struct {
		n      int
		lo, hi float64
	}{
		{1, own - 0.01, own + 0.01},
		{3, 0.35, 0.65},
		{5, 1, 1},
	} {
		if s := share[tc.n]; s < tc.lo || s > tc.hi {
			t.Errorf("N=%d: share %.3f; want in [%.2f, %.2f]", tc.n, s, tc.lo, tc.hi)
		}
	}
	for n := 2; n < len(share); n++ {
		if share[n] < share[n-1] {
			t.Errorf("share falls from N=%d (%.3f) to N=%d (%.3f); more replicas hold a flagged one at least as often", n-1, share[n-1], n, share[n])
		}
	}
}

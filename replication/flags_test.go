package replication

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// TestRankFlaggedLast: the read ranking puts flagged replicas last, even
// this node's own or the fastest, and charges failed reads the replica
// timeout so that a failing replica ranks behind a slow one that answers.
func TestRankFlaggedLast(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flagged []string
		lat     map[string]time.Duration
		fail    []string
		want    []string
	}{
		{"by latency", nil, map[string]time.Duration{"a": 3 * time.Millisecond, "b": time.Millisecond, "c": 2 * time.Millisecond}, nil, []string{"self", "b", "c", "a"}},
		{"fastest flagged", []string{"b"}, map[string]time.Duration{"a": 3 * time.Millisecond, "b": time.Millisecond, "c": 2 * time.Millisecond}, nil, []string{"self", "c", "a", "b"}},
		{"self flagged", []string{"self"}, map[string]time.Duration{"a": 3 * time.Millisecond, "b": time.Millisecond, "c": 2 * time.Millisecond}, nil, []string{"b", "c", "a", "self"}},
		{"failures rank behind slowness", nil, map[string]time.Duration{"a": 50 * time.Millisecond, "b": time.Millisecond, "c": 2 * time.Millisecond}, []string{"b"}, []string{"self", "c", "a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCoordinator(Config{NodeID: "self", Flagged: func(id string) bool { return slices.Contains(tc.flagged, id) }})
			for id, d := range tc.lat {
				c.latency.observe(id, d)
			}
			for _, id := range tc.fail {
				for range 8 {
					c.observeCall(id, false, time.Millisecond, errors.New("unavailable"))
				}
			}
			if got := c.rank([]string{"a", "b", "c", "self"}); !slices.Equal(got, tc.want) {
				t.Fatalf("rank = %v; want %v", got, tc.want)
			}
		})
	}
}

package client

import (
	"slices"
	"testing"
)

// TestDemoteFlagged: flagged coordinators go last, the rest keep their
// order, and a flagged one is still listed as a last resort.
func TestDemoteFlagged(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flagged []string
		in      []string
		want    []string
	}{
		{"none flagged", nil, []string{"a", "b", "c"}, []string{"a", "b", "c"}},
		{"first flagged", []string{"a"}, []string{"a", "b", "c"}, []string{"b", "c", "a"}},
		{"two flagged", []string{"a", "c"}, []string{"c", "b", "a", "d"}, []string{"b", "d", "c", "a"}},
		{"only one left", []string{"a"}, []string{"a"}, []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var top topology
			for _, a := range tc.flagged {
				top.noteFlagged(Member{GRPCAddr: a, Flagged: true})
			}
			if got := top.demoteFlagged(tc.in); !slices.Equal(got, tc.want) {
				t.Fatalf("demoteFlagged(%v) = %v; want %v", tc.in, got, tc.want)
			}
		})
	}
}

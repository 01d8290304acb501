package node

import (
	"errors"
	"fmt"
	"testing"

	"github.com/adaptkv/adaptkv/replication"
)

// The ownership decision: after a join, each key is owned by exactly
// max(N, PendingN) members of the new ring, the joining one among them for
// some keys, and the old owner it displaced no longer owns those.
func TestOwnsKeyAfterJoin(t *testing.T) {
	tm := func(id string, s MemberState) TopologyMember { return TopologyMember{ID: id, State: s} }
	before := newTopoState(Topology{Members: []TopologyMember{
		tm("a", StateNormal), tm("b", StateNormal), tm("c", StateNormal)}}, 16)
	after := newTopoState(Topology{Members: []TopologyMember{
		tm("a", StateNormal), tm("b", StateNormal), tm("c", StateNormal), tm("d", StateNormal)}}, 16)
	tests := []struct {
		name     string
		cfg      replication.KeyspaceConfig
		st       *topoState
		replicas int
	}{
		{"3 members N=3", replication.KeyspaceConfig{Name: "ks", N: 3}, before, 3},
		{"4 members N=3", replication.KeyspaceConfig{Name: "ks", N: 3}, after, 3},
		{"4 members N=2", replication.KeyspaceConfig{Name: "ks", N: 2}, after, 2},
		{"4 members N=2 growing to 3", replication.KeyspaceConfig{Name: "ks", N: 2, PendingN: 3}, after, 3},
		{"N above the ring", replication.KeyspaceConfig{Name: "ks", N: 5}, after, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lost := 0
			for i := range 200 {
				key := []byte(fmt.Sprintf("k-%d", i))
				owners := 0
				for _, id := range []string{"a", "b", "c", "d"} {
					if ownsKey(tt.st.current, tt.cfg, key, id) {
						owners++
					}
				}
				if owners != tt.replicas {
					t.Fatalf("key %s has %d owners, want %d", key, owners, tt.replicas)
				}
				if tt.st == after && tt.cfg.N == 3 && tt.cfg.PendingN == 0 {
					for _, id := range []string{"a", "b", "c"} {
						if ownsKey(before.current, tt.cfg, key, id) && !ownsKey(after.current, tt.cfg, key, id) {
							lost++
						}
					}
				}
			}
			if tt.st == after && tt.cfg.N == 3 && tt.cfg.PendingN == 0 && lost == 0 {
				t.Error("no old owner gave up a key to the joining member: nothing to clean")
			}
		})
	}
}

// Cleanup never runs while the placement changes: a member joining or
// leaving, or N growing.
func TestCleanupAllowed(t *testing.T) {
	tm := func(id string, s MemberState) TopologyMember { return TopologyMember{ID: id, State: s} }
	st := func(ms ...TopologyMember) *topoState { return newTopoState(Topology{Members: ms}, 16) }
	cfg := replication.KeyspaceConfig{Name: "ks", N: 3}
	tests := []struct {
		name string
		st   *topoState
		cfg  replication.KeyspaceConfig
		ok   bool
	}{
		{"stable", st(tm("a", StateNormal), tm("b", StateNormal), tm("c", StateNormal)), cfg, true},
		{"left member", st(tm("a", StateNormal), tm("b", StateNormal), tm("c", StateNormal), tm("d", StateLeft)), cfg, true},
		{"no ring", st(), cfg, false},
		{"joining", st(tm("a", StateNormal), tm("b", StateNormal), tm("c", StateNormal), tm("d", StateJoining)), cfg, false},
		{"leaving", st(tm("a", StateNormal), tm("b", StateNormal), tm("c", StateLeaving)), cfg, false},
		{"N growing", st(tm("a", StateNormal), tm("b", StateNormal), tm("c", StateNormal)), replication.KeyspaceConfig{Name: "ks", N: 2, PendingN: 3}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cleanupAllowed(tt.st, tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("cleanupAllowed = %v, want allowed %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrCleanupRefused) {
				t.Fatalf("error %v is not ErrCleanupRefused", err)
			}
		})
	}
}

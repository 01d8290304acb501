package client

import (
	"log/slog"
	"slices"
	"testing"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// The client's ring is the one the coordinators place keys on: when the
// nodes report ring states from the metadata log, a joining member (alive,
// but without its data yet) is not on it, and a leaving one still is.
func TestRingFollowsRingState(t *testing.T) {
	alive := kvpb.MemberState_MEMBER_ALIVE
	tests := []struct {
		name   string
		states map[string]string // member -> ring state
		want   []string
	}{
		{"older nodes: every member not left", map[string]string{"n1": "", "n2": "", "n3": "", "n4": ""}, []string{"n1", "n2", "n3", "n4"}},
		{"joining member off the ring", map[string]string{"n1": "normal", "n2": "normal", "n3": "normal", "n4": "joining"}, []string{"n1", "n2", "n3"}},
		{"leaving member on it", map[string]string{"n1": "normal", "n2": "normal", "n3": "leaving", "n4": "normal"}, []string{"n1", "n2", "n3", "n4"}},
		{"gossip member not placed yet", map[string]string{"n1": "normal", "n2": "normal", "n3": "normal", "n4": ""}, []string{"n1", "n2", "n3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &kvpb.ClusterStatusResponse{Vnodes: 16}
			for _, id := range []string{"n1", "n2", "n3", "n4"} {
				st.Members = append(st.Members, &kvpb.Member{Id: id, GrpcAddr: "127.0.0.1:1", State: alive, RingState: tt.states[id]})
			}
			c := &Client{log: slog.New(slog.DiscardHandler)}
			c.applyStatus(st, nil)
			var got []string
			for _, m := range c.topo.Load().ring.Members() {
				got = append(got, m.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ring %v, want %v", got, tt.want)
			}
		})
	}
}

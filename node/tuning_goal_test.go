package node

import (
	"testing"

	"github.com/adaptkv/adaptkv/tuner"
)

// goalOf lets the tuner choose N within the keyspace's bounds and the
// ring's size, and holds N when the ring is below the goal's minimum.
func TestGoalOfBoundsN(t *testing.T) {
	tests := []struct {
		min, max, rf, ring int
		wantMin, wantMax   int
	}{
		{3, 3, 3, 5, 3, 3}, // the default: bounds equal to the replication factor
		{3, 5, 3, 5, 3, 5},
		{3, 5, 3, 4, 3, 4}, // a ring of 4 cannot hold 5 copies
		{3, 5, 3, 2, 3, 3}, // a ring below the minimum: N held, not lowered
		{1, 5, 3, 3, 1, 3},
	}
	for _, tt := range tests {
		d := KeyspaceDef{ReplicationFactor: tt.rf, Adaptive: &tuner.Goal{MinRF: tt.min, MaxRF: tt.max}}
		g := goalOf(d, tt.ring)
		if g.MinRF != tt.wantMin || g.MaxRF != tt.wantMax {
			t.Errorf("goalOf(N %d..%d, rf %d, ring %d) = N %d..%d; want %d..%d", tt.min, tt.max, tt.rf, tt.ring, g.MinRF, g.MaxRF, tt.wantMin, tt.wantMax)
		}
		if d.Adaptive.MaxRF != tt.max {
			t.Errorf("goalOf changed the stored goal")
		}
	}
}

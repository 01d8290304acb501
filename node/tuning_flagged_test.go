package node

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

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

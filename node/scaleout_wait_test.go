package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// waitJoined waits until node i is alive to every node and every node has
// applied the topology entry that makes it normal.
func waitJoined(t *testing.T, ctx context.Context, c *clustertest.Cluster, i int) {
	t.Helper()
	id := c.ID(i)
	for {
		if err := c.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		ok := true
		for j := range c.Len() {
			m, in := c.Node(j).Topology().Member(id)
			if !in || m.State != node.StateNormal {
				ok = false
			}
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not join the ring: %v", id, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

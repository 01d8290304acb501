package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// Replace a SIGKILLed node (issue 11): 4 nodes hold keys written at
// quorum; n4 is stopped hard and a new node, n5, is started with Replace
// n4 while a writer keeps writing at quorum. One entry makes n4 removing
// and n5 joining, the survivors stream to the future owners, one entry
// makes n5 normal and n4 left. Afterwards every acknowledged key reads at
// quorum and each of its 3 owners holds it. Without the stream n5 holds
// only the writes made during the change: copies are missing.
func TestReplaceDeadNode(t *testing.T) {
	const dead, newIdx = 3, 4
	c := clustertest.New(t, 4, func(o *clustertest.Options) {
		o.Configure = func(i int, cfg *node.Config) {
			if i == newIdx {
				cfg.Replace = "n4"
			}
		}
	})
	kv := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	admin := adminClient(t, c.Node(0).Addrs().GRPC)
	refusals := []struct {
		name      string
		dead, new string
		want      codes.Code
		msg       string
	}{
		{"no IDs", "", "", codes.InvalidArgument, "required"},
		{"itself", "n9", "n9", codes.InvalidArgument, "itself"},
		{"unknown member", "nope", "n9", codes.NotFound, "not on the ring"},
		{"alive member", c.ID(1), "n9", codes.FailedPrecondition, "is alive"},
		{"new node on the ring", c.ID(1), c.ID(2), codes.FailedPrecondition, "already normal"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			_, err := admin.ReplaceNode(ctx, &kvpb.ReplaceNodeRequest{DeadId: tt.dead, NewId: tt.new})
			if status.Code(err) != tt.want || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tt.want, tt.msg)
			}
		})
	}
	load := startQuorumLoad(t, ctx, kv, 300)
	defer load.stop()
	id := c.ID(dead)
	if err := c.StopNodeNow(dead); err != nil {
		t.Fatal(err)
	}
	// AddNode returns once the cluster has taken the replacement: Start
	// asks until gossip sees n4 dead.
	i, err := c.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i != newIdx {
		t.Fatalf("new node at index %d, want %d", i, newIdx)
	}
	nu := c.ID(newIdx)
	waitState(t, ctx, c, nu, node.StateNormal)
	waitState(t, ctx, c, id, node.StateLeft)
	if m, _ := c.Node(0).Topology().Member(nu); m.State != node.StateNormal {
		t.Fatalf("%s is %q, want normal", nu, m.State)
	}
	load.check("n5 in place of n4")
	load.stop()
	if load.ackedKeys() == 0 {
		t.Error("the writer had no write acknowledged")
	}
	checkCopies(t, ctx, c, kv, load)
}

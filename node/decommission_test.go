package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// Scale out and back in under load (issue 11): 3 nodes grow to 4 by a
// join, then shrink to 3 by decommissioning one of the first three, while
// a writer keeps writing at quorum; after each step every acknowledged key
// reads at quorum with its last acknowledged value, also once the
// decommissioned node is stopped. Taking a member off the ring without
// streaming its ranges loses every key whose W acknowledging replicas
// included it.
func TestDecommissionKeepsAcknowledgedWrites(t *testing.T) {
	c := clustertest.New(t, 3)
	kv := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	load := startQuorumLoad(t, ctx, kv, 300)
	defer load.stop()
	load.check("3 nodes")

	i, err := c.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitJoined(t, ctx, c, i)
	load.check("4 nodes")

	// The first node is the likeliest metadata leader: its decommission
	// also hands the leadership over. The request goes through another
	// node, which forwards it to the leader.
	const victim = 0
	id := c.ID(victim)
	admin := adminClient(t, c.Node(1).Addrs().GRPC)
	resp, err := admin.DecommissionNode(ctx, &kvpb.DecommissionNodeRequest{Id: id})
	if err != nil {
		t.Fatalf("decommission %s: %v", id, err)
	}
	if resp.GetRingState() != string(node.StateLeaving) && resp.GetRingState() != string(node.StateLeft) {
		t.Errorf("decommission answered ring state %q, want leaving", resp.GetRingState())
	}
	select {
	case <-c.Node(victim).Left():
	case <-ctx.Done():
		t.Fatalf("%s did not leave: %v", id, ctx.Err())
	}
	waitState(t, ctx, c, id, node.StateLeft)
	load.check("3 nodes after the decommission")

	// A decommissioned node holds nothing others need: stopped, it is
	// missed by no read, and its data directory refuses a restart.
	if err := c.StopNode(victim); err != nil {
		t.Fatal(err)
	}
	load.check("3 nodes, the decommissioned one stopped")
	if err := c.RestartNode(ctx, victim); !errors.Is(err, node.ErrDecommissioned) {
		t.Errorf("restart of a decommissioned node: %v, want ErrDecommissioned", err)
	}
	load.stop()
	if load.ackedKeys() == 0 {
		t.Error("the writer had no write acknowledged")
	}
}

// The keys only the leaving node and one other replica hold (a third
// replica was down when they were written, and its hints were dropped)
// are streamed to their new owners before the node leaves: without the
// stream, a quorum read of the new replicas misses them.
func TestDecommissionStreamsWhatTheLeavingNodeHolds(t *testing.T) {
	c := clustertest.New(t, 4, func(o *clustertest.Options) {
		o.Configure = func(i int, cfg *node.Config) { cfg.MaxHints = 1 }
	})
	kv := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// n2 misses every write; the writer then stops, so the load below
	// only reads.
	if err := c.StopNode(1); err != nil {
		t.Fatal(err)
	}
	load := startQuorumLoad(t, ctx, kv, 300)
	load.stop()
	if err := c.RestartNode(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	id := c.ID(0)
	if _, err := adminClient(t, c.Node(2).Addrs().GRPC).DecommissionNode(ctx, &kvpb.DecommissionNodeRequest{Id: id}); err != nil {
		t.Fatalf("decommission %s: %v", id, err)
	}
	select {
	case <-c.Node(0).Left():
	case <-ctx.Done():
		t.Fatalf("%s did not leave: %v", id, ctx.Err())
	}
	waitState(t, ctx, c, id, node.StateLeft)
	if err := c.StopNode(0); err != nil {
		t.Fatal(err)
	}
	load.check("3 nodes after the decommission")
}

// A decommission the log cannot take is refused with a status naming why.
func TestDecommissionRefused(t *testing.T) {
	c := clustertest.New(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	admin := adminClient(t, c.Node(0).Addrs().GRPC)
	tests := []struct {
		name string
		id   string
		want codes.Code
	}{
		{"no ID", "", codes.InvalidArgument},
		{"unknown member", "nope", codes.NotFound},
		// The default keyspace has 3 replicas of each key: 2 members
		// could not hold them.
		{"fewer members than replicas", c.ID(2), codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := admin.DecommissionNode(ctx, &kvpb.DecommissionNodeRequest{Id: tt.id})
			if status.Code(err) != tt.want {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if m, _ := c.Node(0).Topology().Member(c.ID(2)); m.State != node.StateNormal {
		t.Errorf("%s is %q after a refused decommission, want normal", c.ID(2), m.State)
	}
}

func adminClient(t *testing.T, addr string) kvpb.AdminClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return kvpb.NewAdminClient(cc)
}

// waitState waits until every running node has applied the topology entry
// that gives member id state.
func waitState(t *testing.T, ctx context.Context, c *clustertest.Cluster, id string, state node.MemberState) {
	t.Helper()
	for {
		ok := true
		for j := range c.Len() {
			n := c.Node(j)
			if n == nil {
				continue
			}
			if m, _ := n.Topology().Member(id); m.State != state {
				ok = false
			}
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not become %s everywhere: %v", id, state, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

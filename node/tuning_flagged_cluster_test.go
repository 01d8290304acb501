package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
	"github.com/adaptkv/adaptkv/tuner"
)

// End to end, over real coordinators: once the detector has flagged a
// slow node, the coordinators' requests to it reach the tuner under its
// own ID, apart from the ranks, and the leader's decisions show its legs
// (the model draws the flagged replica from them; see
// TestTuningRecordsFlaggedApart).
func TestTunerSeesFlaggedNodeApart(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, func(o *clustertest.Options) {
		o.Configure = func(i int, cfg *node.Config) {
			cfg.UnsafeTestHooks = true
			cfg.TunerInterval = 300 * time.Millisecond
			cfg.TunerDwell = time.Second
			cfg.HealthWindow = 300 * time.Millisecond
			cfg.HealthFlagAfter = 2
		}
	})
	ctx := ctxT(t, 60*time.Second)
	cl, err := client.New(ctx, client.Config{Endpoints: c.Endpoints(), TopologyRefresh: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	if _, err := cl.CreateKeyspace(ctx, "legs", client.KeyspaceSpec{ReplicationFactor: 3, Adaptive: &client.AdaptiveGoal{MaxStale: 0.001}}); err != nil {
		t.Fatal(err)
	}
	ks := client.WithKeyspace("legs")
	keyspaceEverywhere(t, ctx, c, "legs")
	defer backgroundLoad(ctx, cl, ks)()

	// Healthy: every replica is recorded by rank.
	eventually(t, 10*time.Second, "a decision with replica legs", func() error {
		d, err := lastDecision(ctx, cl, "legs")
		if err != nil {
			return err
		}
		if len(d.Inputs.Replicas) == 0 {
			return fmt.Errorf("no replicas in the decision's inputs")
		}
		for _, r := range d.Inputs.Replicas {
			if r.Apart {
				t.Fatalf("healthy cluster: %s recorded apart", r.ID)
			}
		}
		return nil
	})

	slow := c.Node(2)
	post(t, "http://"+slow.Addrs().HTTP+"/unsafe/slow?delay=50ms")
	eventually(t, 15*time.Second, slow.ID()+" flagged", func() error {
		h, err := cl.Health(ctx)
		if err != nil {
			return err
		}
		if _, ok := h.Flagged[slow.ID()]; !ok {
			return fmt.Errorf("not flagged")
		}
		return nil
	})
	eventually(t, 10*time.Second, slow.ID()+"'s legs apart in a decision", func() error {
		d, err := lastDecision(ctx, cl, "legs")
		if err != nil {
			return err
		}
		for _, r := range d.Inputs.Replicas {
			if r.ID == slow.ID() && r.Apart && r.Flagged {
				if r.WriteP50 < 40*time.Millisecond {
					t.Fatalf("%s's legs apart: write p50 %v; want its 50 ms delay in them", r.ID, r.WriteP50)
				}
				return nil
			}
		}
		return fmt.Errorf("replicas %+v", d.Inputs.Replicas)
	})
}

// lastDecision is the tuner's latest decision about keyspace.
func lastDecision(ctx context.Context, cl *client.Client, keyspace string) (tuner.Decision, error) {
	ex, err := cl.TunerExplain(ctx, keyspace, 1)
	if err != nil {
		return tuner.Decision{}, err
	}
	if len(ex) == 0 {
		return tuner.Decision{}, fmt.Errorf("no decision yet")
	}
	var d tuner.Decision
	if err := json.Unmarshal([]byte(ex[len(ex)-1].JSON), &d); err != nil {
		return tuner.Decision{}, fmt.Errorf("decode decision: %w", err)
	}
	return d, nil
}

package node_test

import (
	"errors"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/client/clustertest"
)

// A node that has just restarted has the keyspace in its copy of the
// metadata log but has not applied it yet (a follower applies only what the
// leader says is committed). It must not answer "keyspace not found" for a
// keyspace that exists: it waits for the metadata within the request's
// deadline, or refuses with a retryable error.
func TestRestartedNodeNeverSaysKeyspaceNotFound(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3)
	ctx := ctxT(t, 60*time.Second)
	kv := c.Client(t)
	if _, err := kv.CreateKeyspace(ctx, "early", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	victim := 2
	if c.Node(0).MetadataLeader() == c.ID(2) {
		victim = 1
	}
	// The keyspace is applied on the victim before it stops, so that it is
	// in its log when it comes back.
	eventually(t, 10*time.Second, "keyspace reaches every node", func() error {
		_, err := clientFor(t, c.Node(victim).Addrs().GRPC).DescribeKeyspace(ctx, "early")
		return err
	})
	if err := c.StopNode(victim); err != nil {
		t.Fatal(err)
	}
	// While it is down the leader's replication to it backs off, and the
	// log grows by a keyspace it has never seen.
	if _, err := kv.CreateKeyspace(ctx, "late", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := c.RestartNode(ctx, victim); err != nil {
		t.Fatal(err)
	}
	back := clientFor(t, c.Node(victim).Addrs().GRPC)
	for _, ks := range []string{"early", "late"} {
		writeThroughRestarted(t, back, ks)
	}
}

func writeThroughRestarted(t *testing.T, back *client.Client, ks string) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for attempt := 0; ; attempt++ {
		_, err := back.Put(ctx, []byte("k"), []byte("v"), client.WithKeyspace(ks))
		if err == nil {
			t.Logf("keyspace %s: first write through the restarted node succeeded after %d refusals", ks, attempt)
			return
		}
		if errors.Is(err, client.ErrKeyspaceNotFound) {
			t.Fatalf("keyspace %s, attempt %d: the restarted node denied a keyspace of the metadata log: %v", ks, attempt, err)
		}
		if !errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrUnknownOutcome) {
			t.Fatalf("attempt %d: %v; want success or a definite, retryable Unavailable", attempt, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted node still refuses after 20s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

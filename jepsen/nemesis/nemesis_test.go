package nemesis

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/jepsen/cluster"
	"github.com/adaptkv/adaptkv/jepsen/history"
)

// TestHealAllVerifiesAfterAFailedWait: when the cluster does not become
// healthy within the heal's timeout, HealAll says so, and still proves the
// network open. Before the fix it probed with the context the wait had
// used up, and every probe's "i/o timeout" was reported as a rule left
// behind: "network does not match the partition: n1->n2 cut=true want
// false (dial ... i/o timeout)", with no rule in place.
func TestHealAllVerifiesAfterAFailedWait(t *testing.T) {
	if err := cluster.CheckNet(context.Background()); err != nil {
		t.Skipf("partition test skipped: %v", err)
	}
	// Nodes that exit at once (/bin/true) never become healthy.
	c, err := cluster.New(cluster.Config{Bin: "/bin/true", Nodes: 3, Dir: t.TempDir(), FirstIP: "127.0.63.2"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	net, err := cluster.NewNet(ctx, c.Hosts(), c.Ports(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	if err := net.Partition(ctx, cluster.Grudge{"n1": {"n2"}, "n2": {"n1"}}); err != nil {
		t.Fatal(err)
	}
	n := New(c, net, history.NewRecorder(time.Now(), nil), nil)
	const timeout = time.Second
	hctx, cancel := context.WithTimeout(ctx, timeout) // as the runner calls it
	defer cancel()
	err = n.HealAll(hctx, timeout)
	if err == nil || !strings.Contains(err.Error(), "not healthy") {
		t.Fatalf("HealAll of a cluster that cannot serve: %v; want it to say the cluster is not healthy", err)
	}
	if strings.Contains(err.Error(), "network") {
		t.Fatalf("HealAll blamed the network after removing every rule: %v", err)
	}
}

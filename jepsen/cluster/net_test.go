package cluster

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// unstarted returns a cluster of three nodes on FirstIP's /24 whose
// processes are never started: its probes are refused (the network is
// open) unless a rule drops them.
func unstarted(t *testing.T, firstIP string, basePort int) *Cluster {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Bin: exe, Nodes: 3, Dir: t.TempDir(), FirstIP: firstIP, BasePort: basePort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestVerifyOutOfTime: probes that could not be made because the caller's
// context ended prove nothing about the network. Before the fix, every
// probe of a healed network with an expired context was a "dial ... i/o
// timeout", reported as a cut link that should be open: the harness's
// "network does not match the partition" after a heal whose wait for the
// cluster used up the context.
func TestVerifyOutOfTime(t *testing.T) {
	c := unstarted(t, "127.0.61.2", 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	_, err := c.VerifyPartition(ctx, Grudge{})
	if err == nil {
		t.Fatal("verification with an expired context succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "does not match") {
		t.Fatalf("verification with an expired context: %v; want it to say the network was not probed, not that links are cut", err)
	}
	// With time left, the same (open) network verifies.
	if proof, err := c.VerifyPartition(context.Background(), Grudge{}); err != nil {
		t.Fatal(err)
	} else {
		t.Log(proof)
	}
}

// TestPartitionSparesOtherClusters: two clusters on the same loopback
// addresses (two harness runs, or tests of two worktrees, with the default
// first address) on different ports. One run's partition must not cut the
// other's nodes: before the fix, rules matched addresses only, so the other
// run saw its links cut, and after its own heal reported that the network
// did not match (the rules went away when the first run ended).
func TestPartitionSparesOtherClusters(t *testing.T) {
	if err := CheckNet(context.Background()); err != nil {
		t.Skipf("partition test skipped: %v", err)
	}
	ctx := context.Background()
	x := unstarted(t, "127.0.62.2", 0)
	y := unstarted(t, "127.0.62.2", 0)
	if x.cfg.BasePort == y.cfg.BasePort {
		t.Fatal("two clusters on the same ports")
	}
	nx, err := NewNet(ctx, x.Hosts(), x.Ports(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nx.Close()
	g := Grudge{"n1": {"n2", "n3"}, "n2": {"n1"}, "n3": {"n1"}}
	if err := nx.Partition(ctx, g); err != nil {
		t.Fatal(err)
	}
	if _, err := x.VerifyPartition(ctx, g); err != nil {
		t.Fatalf("the partitioned cluster: %v", err)
	}
	if _, err := y.VerifyPartition(ctx, Grudge{}); err != nil {
		t.Fatalf("another cluster on the same addresses: %v", err)
	}
	if err := nx.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := x.VerifyPartition(ctx, Grudge{}); err != nil {
		t.Fatalf("after the heal: %v", err)
	}
}

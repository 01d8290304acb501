package jepsen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/jepsen/cluster"
)

// TestClusterReformsAfterHeal: an idle cluster of five node processes, cut
// by iptables into random 2 | 3 halves until each side has declared the
// other dead, then healed; after every heal every node must see all five
// alive within 5 s. It runs 5 trials; ADAPTKV_REJOIN_TRIALS sets another
// number (the figure is 20) and ADAPTKV_REJOIN_SEED the seed of
// the splits. The log gives the time from each heal to the re-formed
// cluster.
func TestClusterReformsAfterHeal(t *testing.T) {
	needCluster(t)
	needNet(t)
	trials, seed := envInt(t, "ADAPTKV_REJOIN_TRIALS", 5), envInt(t, "ADAPTKV_REJOIN_SEED", 1)
	const (
		hold  = 5 * time.Second // each partition lasts at least this long
		limit = 5 * time.Second // re-formed within this after the heal
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute+time.Duration(trials)*30*time.Second)
	defer cancel()
	c, err := cluster.New(cluster.Config{Bin: nodeBin, Nodes: 5, Dir: t.TempDir(), FirstIP: "127.0.21.2"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	killAtCleanup(t, c.PIDs())
	nw, err := cluster.NewNet(ctx, c.Hosts(), c.Ports(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nw.Close() })

	ids := c.IDs()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	var took []time.Duration
	for trial := 1; trial <= trials; trial++ {
		perm := rng.Perm(len(ids))
		var small, large []string
		for k, i := range perm {
			if k < 2 {
				small = append(small, ids[i])
			} else {
				large = append(large, ids[i])
			}
		}
		slices.Sort(small)
		slices.Sort(large)
		g := cluster.Grudge{}
		for _, a := range small {
			g[a] = large
		}
		for _, b := range large {
			g[b] = small
		}
		start := time.Now()
		if err := nw.Partition(ctx, g); err != nil {
			t.Fatal(err)
		}
		if _, err := c.VerifyPartition(ctx, g); err != nil {
			t.Fatal(err)
		}
		// Each side must declare the other dead, as an idle cluster does,
		// and the news must stop spreading, before the heal.
		if err := waitViews(ctx, c, ids, 20*time.Second, func(id string, alive map[string]bool) bool {
			for _, o := range g[id] {
				if alive[o] {
					return false
				}
			}
			return true
		}); err != nil {
			t.Fatalf("trial %d (%v | %v): the sides did not see each other down: %v", trial, small, large, err)
		}
		detected := time.Since(start)
		time.Sleep(max(hold-time.Since(start), time.Second))
		if err := nw.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		healed := time.Now()
		if _, err := c.VerifyPartition(ctx, cluster.Grudge{}); err != nil {
			t.Fatalf("trial %d: after the heal: %v", trial, err)
		}
		// Observe longer than the limit, to report how long it did take.
		err := waitViews(ctx, c, ids, 30*time.Second, func(id string, alive map[string]bool) bool {
			return len(alive) == len(ids)
		})
		d := time.Since(healed)
		t.Logf("trial %d: %v | %v, cut seen after %.1fs, partition %.1fs, re-formed %.2fs after the heal", trial, small, large,
			detected.Seconds(), healed.Sub(start).Seconds(), d.Seconds())
		if err != nil {
			t.Fatalf("trial %d: cluster not re-formed 30s after the heal: %v", trial, err)
		}
		if d > limit {
			t.Errorf("trial %d: cluster re-formed %.2fs after the heal, want within %v", trial, d.Seconds(), limit)
		}
		took = append(took, d)
		time.Sleep(time.Second)
	}
	slices.Sort(took)
	q := func(p float64) string { return fmt.Sprintf("%.2fs", took[int(p*float64(len(took)-1))].Seconds()) }
	t.Logf("%d trials: heal to re-formed min %s, median %s, p90 %s, max %s", len(took), q(0), q(0.5), q(0.9), q(1))
}

// waitViews polls every node's status until ok holds for each node's set
// of members it sees alive, for at most limit. It returns the problem of
// the last round that ended before the deadline.
func waitViews(ctx context.Context, c *cluster.Cluster, ids []string, limit time.Duration, ok func(id string, alive map[string]bool) bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var prev error
	for {
		var mu sync.Mutex
		var last error
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := c.Status(ctx, id)
				if err == nil {
					alive := map[string]bool{}
					for _, m := range st.Members {
						if m.State == client.StateAlive {
							alive[m.ID] = true
						}
					}
					if !ok(id, alive) {
						err = fmt.Errorf("%s sees %d alive: %v", id, len(alive), alive)
					}
				}
				if err != nil {
					mu.Lock()
					last = err
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if last == nil {
			return nil
		}
		if ctx.Err() == nil || prev == nil {
			prev = last
		}
		select {
		case <-ctx.Done():
			return prev
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

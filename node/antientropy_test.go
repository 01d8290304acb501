package node_test

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// metricSum sums a metric's samples whose labels contain match, over the
// cluster's nodes.
func metricSum(t *testing.T, c *clustertest.Cluster, n int, name, match string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + name + `\{([^}]*)\} (\S+)$`)
	var sum float64
	for i := range n {
		resp, err := http.Get(fmt.Sprintf("http://%s/metrics", c.Node(i).Addrs().HTTP))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(body), -1) {
			if strings.Contains(m[1], match) {
				v, _ := strconv.ParseFloat(m[2], 64)
				sum += v
			}
		}
	}
	return sum
}

// A scheduled pass (the metadata leader's, every --anti-entropy-interval)
// repairs a replica that missed writes, with no one running a repair by
// hand, and its metrics say so.
func TestScheduledPassRepairsMissedWrites(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, func(o *clustertest.Options) {
		o.Configure = func(i int, cfg *node.Config) {
			cfg.UnsafeTestHooks = true
			cfg.AntiEntropyInterval = 300 * time.Millisecond
		}
	})
	ctx := ctxT(t, 60*time.Second)
	kv := c.Client(t)
	if _, err := kv.CreateKeyspace(ctx, "sched", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	keys := map[string]want{}
	dropWrites(t, c, 2, true) // n3 acknowledges writes without storing them
	for i := range 200 {
		k := fmt.Sprintf("s%03d", i)
		w, err := kv.Put(ctx, []byte(k), []byte("v"), client.WithKeyspace("sched"), client.WithConsistency(client.All))
		if err != nil {
			t.Fatal(err)
		}
		keys[k] = want{version: w.Version, value: "v"}
	}
	dropWrites(t, c, 2, false)
	// Scheduled passes may already be repairing n3 (one starts every
	// 300 ms); the keys repaired metric below shows that n3 missed all 200.
	n3 := []string{c.ID(2)}
	for {
		behind := checkReplicas(ctx, kv, n3, "sched", keys)
		if len(behind) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no scheduled pass repaired n3: %d keys still behind", len(behind))
		case <-time.After(200 * time.Millisecond):
		}
	}
	// Only a replica that lacks a record is sent it: at least 200 records
	// repaired means n3 had missed every write.
	if got := metricSum(t, c, 3, "adaptkv_antientropy_keys_repaired_total", `keyspace="sched"`); got < 200 {
		t.Errorf("keys repaired metric %v; want at least 200", got)
	}
	if got := metricSum(t, c, 3, "adaptkv_antientropy_ranges_compared_total", `keyspace="sched"`); got == 0 {
		t.Error("ranges compared metric is 0")
	}
	if got := metricSum(t, c, 3, "adaptkv_antientropy_passes_total", `outcome="completed"`); got == 0 {
		t.Error("no completed pass counted")
	}
	// The metric is set once the pass has returned, just after its writes.
	deadline := time.Now().Add(10 * time.Second)
	for metricSum(t, c, 3, "adaptkv_antientropy_last_completed_pass_timestamp_seconds", `keyspace="sched"`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no last completed pass timestamp for keyspace sched")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

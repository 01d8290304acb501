package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// A node whose replies to its peers are delayed 50 ms (a gray failure:
// gossip still calls it alive) is flagged by the metadata leader's
// detector within 10 s, with the evidence in `Health` and the mark in
// ClusterStatus; a routing client then stops sending it requests to
// coordinate; once the delay is removed it is reinstated.
func TestGrayFailureFlaggedAvoidedReinstated(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, func(o *clustertest.Options) {
		o.Dir = t.TempDir() // on disk: replica writes fsync, reads do not
		o.Configure = func(i int, cfg *node.Config) {
			cfg.UnsafeTestHooks = true
			cfg.HealthWindow = 300 * time.Millisecond
			cfg.HealthFlagAfter = 2
		}
	})
	ctx := ctxT(t, 90*time.Second)
	cl, err := client.New(ctx, client.Config{Endpoints: c.Endpoints(), TopologyRefresh: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	if _, err := cl.CreateKeyspace(ctx, "gray", client.KeyspaceSpec{ReplicationFactor: 3, Consistency: client.Quorum}); err != nil {
		t.Fatal(err)
	}
	ks := client.WithKeyspace("gray")
	keyspaceEverywhere(t, ctx, c, "gray")
	defer backgroundLoad(ctx, cl, ks)()

	slow := c.Node(2)
	slowID := slow.ID()
	// A healthy second: nothing flagged, and the slow-to-be node
	// coordinates its share of the client's requests.
	before := requestsCoordinated(t, slow)
	time.Sleep(time.Second)
	healthyShare := requestsCoordinated(t, slow) - before
	if healthyShare == 0 {
		t.Fatalf("%s coordinated no request while healthy: the check below could not fail", slowID)
	}
	if h, err := cl.Health(ctx); err != nil || len(h.Flagged) != 0 {
		t.Fatalf("healthy cluster: health %+v, %v; want nothing flagged", h, err)
	}

	post(t, "http://"+slow.Addrs().HTTP+"/unsafe/slow?delay=50ms")
	faultAt := time.Now()
	eventually(t, 10*time.Second, slowID+" flagged in ClusterStatus", func() error {
		st, err := cl.ClusterStatus(ctx)
		if err != nil {
			return err
		}
		for _, m := range st.Members {
			if m.ID == slowID && m.Flagged && m.FlagReason != "" {
				return nil
			}
			if m.ID != slowID && m.Flagged {
				t.Fatalf("healthy %s flagged: %s", m.ID, m.FlagReason)
			}
		}
		return fmt.Errorf("not flagged")
	})
	t.Logf("flagged %v after the fault began", time.Since(faultAt))
	h, err := cl.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := h.Flagged[slowID]
	if !ok || !d.Flag || d.Evidence.Latency < 40*time.Millisecond || d.Evidence.Verdict != "bad" {
		t.Fatalf("health report %+v: want %s flagged with its ~50 ms evidence", h, slowID)
	}

	// The client routes around the flagged coordinator: after a refresh,
	// it sends it (almost) nothing over the same second of load.
	time.Sleep(500 * time.Millisecond)
	// (The other coordinators' reads avoid it already by their latency
	// ranking, flag or not: what the flag adds is checked below.)
	before = requestsCoordinated(t, slow)
	time.Sleep(time.Second)
	if flaggedShare := requestsCoordinated(t, slow) - before; flaggedShare > healthyShare/10 {
		t.Fatalf("%s coordinated %v requests in a second while flagged, %v while healthy", slowID, flaggedShare, healthyShare)
	}

	// The flagged node, asked to coordinate anyway, ranks its own replica
	// last: its reads at one go to the others (a healthy coordinator reads
	// its own replica first and asks no other).
	direct := clientFor(t, slow.Addrs().GRPC)
	if n := readsAtOneVia(t, ctx, direct, slow, ks); n < 45 {
		t.Fatalf("flagged %s asked other replicas only %v times for 50 reads at one", slowID, n)
	}

	post(t, "http://"+slow.Addrs().HTTP+"/unsafe/reset")
	// Once it is flagged the client sends it nothing to coordinate, but
	// the other coordinators still write to it: that is the probe that
	// reinstates it.
	recoveredAt := time.Now()
	eventually(t, 15*time.Second, slowID+" reinstated", func() error {
		h, err := cl.Health(ctx)
		if err != nil {
			return err
		}
		if _, ok := h.Flagged[slowID]; ok {
			return fmt.Errorf("still flagged")
		}
		return nil
	})
	t.Logf("reinstated %v after recovery", time.Since(recoveredAt))
	h, err = cl.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.Decisions); n < 2 || h.Decisions[n-1].Flag || h.Decisions[n-1].Node != slowID {
		t.Fatalf("decisions %+v: want the flag and then the reinstatement of %s", h.Decisions, slowID)
	}
}

var requestsRE = regexp.MustCompile(`(?m)^adaptkv_requests_total\{[^}]*\} (\S+)$`)

// requestsCoordinated is the client requests node n has coordinated.
func requestsCoordinated(t *testing.T, n *node.Node) float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.Addrs().HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, m := range requestsRE.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		sum += v
	}
	return sum
}

func post(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
}

// readsAtOneVia makes 50 reads at one through cl (connected to n only) and
// returns how many replica reads n sent to other nodes meanwhile.
func readsAtOneVia(t *testing.T, ctx context.Context, cl *client.Client, n *node.Node, ks client.CallOption) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^adaptkv_replica_calls_total\{op="read",outcome="ok",replica="([^"]+)"\} (\S+)$`)
	remote := func() float64 {
		resp, err := http.Get("http://" + n.Addrs().HTTP + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if m[1] != n.ID() {
				v, _ := strconv.ParseFloat(m[2], 64)
				sum += v
			}
		}
		return sum
	}
	before := remote()
	for i := range 50 {
		if _, err := cl.Get(ctx, []byte(fmt.Sprintf("k%d", i%64)), ks, client.WithConsistency(client.One)); err != nil {
			t.Fatalf("read at one via %s: %v", n.ID(), err)
		}
	}
	return remote() - before
}

// keyspaceEverywhere waits until every node of c knows keyspace name.
func keyspaceEverywhere(t *testing.T, ctx context.Context, c *clustertest.Cluster, name string) {
	t.Helper()
	eventually(t, 10*time.Second, "keyspace everywhere", func() error {
		for i := range c.Len() {
			if _, err := clientFor(t, c.Node(i).Addrs().GRPC).DescribeKeyspace(ctx, name); err != nil {
				return err
			}
		}
		return nil
	})
}

// backgroundLoad starts a bounded load (4 workers writing and reading 64
// keys of ks, at most 200,000 rounds each) and returns what stops it and
// waits for the workers.
func backgroundLoad(ctx context.Context, cl *client.Client, ks client.CallOption) func() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := []byte(fmt.Sprintf("k%d", (i*4+w)%64))
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				cl.Put(rctx, key, []byte("v"), ks)
				cl.Get(rctx, key, ks)
				cancel()
			}
		}()
	}
	return func() { close(stop); wg.Wait() }
}

package node_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
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

// metric reads one unlabelled sample from a node's /metrics.
func metric(t *testing.T, n *node.Node, name string) float64 {
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
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

// A node with its maximum of client requests in flight refuses the next one
// at once with RESOURCE_EXHAUSTED (OVERLOADED) and a retry-after hint,
// definite even for a write; the SDK retries it after the hint and, when
// the node is still full, gives up with ErrOverloaded. Once the slot is free
// the node serves again.
func TestOverloadedNodeShedsAtOnce(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 2, func(o *clustertest.Options) {
		o.Configure = func(i int, cfg *node.Config) {
			cfg.UnsafeTestHooks = true
			if i == 0 {
				cfg.MaxInflight = 1
			}
		}
	})
	ctx := ctxT(t, 60*time.Second)
	if _, err := c.Client(t).CreateKeyspace(ctx, "busy", client.KeyspaceSpec{ReplicationFactor: 2}); err != nil {
		t.Fatal(err)
	}
	n1 := c.Node(0)
	eventually(t, 10*time.Second, "keyspace reaches n1", func() error {
		_, err := clientFor(t, n1.Addrs().GRPC).DescribeKeyspace(ctx, "busy")
		return err
	})
	// Every replica write n1 sends to n2 now takes a second, so a quorum
	// write (W=2) coordinated by n1 holds its only slot that long.
	resp, err := http.Post("http://"+n1.Addrs().HTTP+"/unsafe/link?to=*&delay=1s", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("link hook: %s", resp.Status)
	}
	slowDone := make(chan error, 1)
	go func() {
		_, err := clientFor(t, n1.Addrs().GRPC).Put(ctx, []byte("slow"), []byte("v"), client.WithKeyspace("busy"))
		slowDone <- err
	}()
	eventually(t, 10*time.Second, "the slow write holds n1's slot", func() error {
		if v := metric(t, n1, "adaptkv_requests_inflight"); v != 1 {
			return fmt.Errorf("%v in flight", v)
		}
		return nil
	})

	// Fresh clients without retries: a client that was just refused
	// throttles itself, and these calls must reach the node.
	_, getErr := clientFor(t, n1.Addrs().GRPC).Get(ctx, []byte("k"), client.WithKeyspace("busy"))
	_, putErr := clientFor(t, n1.Addrs().GRPC).Put(ctx, []byte("k"), []byte("v"), client.WithKeyspace("busy"))
	select {
	case err := <-slowDone:
		t.Fatalf("the slow write finished (%v) before the refusals were checked; the test proves nothing", err)
	default:
	}
	for op, err := range map[string]error{"get": getErr, "put": putErr} {
		var e *client.Error
		if !errors.Is(err, client.ErrOverloaded) || errors.Is(err, client.ErrUnknownOutcome) || !errors.As(err, &e) {
			t.Fatalf("%s past the bound: %v; want a definite ErrOverloaded", op, err)
		}
		if e.Code != codes.ResourceExhausted || e.RetryAfter <= 0 {
			t.Errorf("%s: code %v, retry after %v; want RESOURCE_EXHAUSTED with a hint", op, e.Code, e.RetryAfter)
		}
	}

	// The SDK backs off and retries, then gives up with ErrOverloaded.
	retrying, err := client.New(ctx, client.Config{Endpoints: []string{n1.Addrs().GRPC}, DisableRouting: true, MaxRetries: 3,
		RetryBackoffBase: time.Millisecond, RetryBackoffMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer retrying.Close()
	shed := metric(t, n1, "adaptkv_requests_shed_total")
	if _, err := retrying.Get(ctx, []byte("k"), client.WithKeyspace("busy")); !errors.Is(err, client.ErrOverloaded) {
		t.Fatalf("retrying client: %v; want ErrOverloaded once its retries ran out", err)
	}
	// Its client-side throttle may have refused some retries locally,
	// unsent, once n1 had refused the first.
	if got := metric(t, n1, "adaptkv_requests_shed_total") - shed; got < 1 || got > 4 {
		t.Errorf("n1 shed %v attempts of the retrying client; want 1 to 1 + 3 retries", got)
	}

	if err := <-slowDone; err != nil {
		t.Fatalf("the slow write: %v", err)
	}
	if _, err := clientFor(t, n1.Addrs().GRPC).Get(ctx, []byte("slow"), client.WithKeyspace("busy")); err != nil {
		t.Errorf("get once the slot is free: %v", err)
	}
}

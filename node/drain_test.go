package node_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// A draining node finishes the client request it is serving, refuses new
// ones with NODE_DRAINING (definite, so the SDK may send even a write
// elsewhere), is shown draining in the other nodes' ClusterStatus, and
// then stops; a client that routes sends its requests to the others
// meanwhile, and the node comes back on its data after a restart.
func TestDrainFinishesInflightAndRefusesNew(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, func(o *clustertest.Options) {
		o.Configure = func(i int, cfg *node.Config) { cfg.UnsafeTestHooks = i == 0 }
	})
	ctx := ctxT(t, 60*time.Second)
	routed := c.Client(t)
	if _, err := routed.CreateKeyspace(ctx, "drain", client.KeyspaceSpec{ReplicationFactor: 3, Consistency: client.Quorum}); err != nil {
		t.Fatal(err)
	}
	ks := client.WithKeyspace("drain")
	n1 := c.Node(0)
	direct := clientFor(t, n1.Addrs().GRPC)
	eventually(t, 10*time.Second, "keyspace reaches n1", func() error {
		_, err := direct.DescribeKeyspace(ctx, "drain")
		return err
	})
	// Every replica write n1 sends now takes 1.5 s, so a write it
	// coordinates is in flight when the drain starts.
	resp, err := http.Post("http://"+n1.Addrs().HTTP+"/unsafe/link?to=*&delay=1500ms", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	slow := make(chan error, 1)
	go func() {
		_, err := direct.Put(ctx, []byte("inflight"), []byte("v"), ks)
		slow <- err
	}()
	eventually(t, 10*time.Second, "the slow write is in flight on n1", func() error {
		if v := metric(t, n1, "adaptkv_requests_inflight"); v != 1 {
			return fmt.Errorf("%v in flight", v)
		}
		return nil
	})

	drained := make(chan error, 1)
	began := time.Now()
	go func() {
		dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- n1.Drain(dctx)
	}()
	for !n1.Draining() {
		time.Sleep(time.Millisecond)
	}
	_, err = clientFor(t, n1.Addrs().GRPC).Put(ctx, []byte("new"), []byte("v"), ks)
	if !errors.Is(err, client.ErrNodeDraining) || !errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrUnknownOutcome) {
		t.Errorf("a new write on the draining node: %v; want ErrNodeDraining, definite", err)
	}
	// The client that routes goes to the other nodes, with no error.
	if _, err := routed.Put(ctx, []byte("routed"), []byte("v"), ks); err != nil {
		t.Errorf("a write through the routing client while n1 drains: %v", err)
	}
	eventually(t, 5*time.Second, "n2 sees n1 draining", func() error {
		st, err := clientFor(t, c.Node(1).Addrs().GRPC).ClusterStatus(ctx)
		if err != nil {
			return err
		}
		for _, m := range st.Members {
			if m.ID == n1.ID() && m.Draining {
				return nil
			}
		}
		return errors.New("not draining in n2's ClusterStatus")
	})
	if err := <-slow; err != nil {
		t.Errorf("the write in flight when the drain began: %v; want it finished", err)
	}
	if err := <-drained; err != nil {
		t.Errorf("drain: %v", err)
	}
	t.Logf("drain took %v", time.Since(began).Round(time.Millisecond))

	if err := c.StopNode(0); err != nil { // stopped already: only forgets it
		t.Fatal(err)
	}
	if err := c.RestartNode(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// The write finished during the drain is on n1's disk: a read of one
	// replica, n1's own, finds it.
	got, err := routed.LocalGet(ctx, n1.ID(), "drain", []byte("inflight"))
	if err != nil || !got.Found || string(got.Value) != "v" {
		t.Errorf("n1's own copy of the write after the restart: %+v, %v", got, err)
	}
}

// A draining node keeps answering its peers' replica requests until it
// stops, over the peer stream as over unary calls: a write at ALL that a
// peer coordinates while the node drains needs the node's answer.
func TestDrainingNodeAnswersPeerStream(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, func(*clustertest.Options) {})
	ctx := ctxT(t, 60*time.Second)
	routed := c.Client(t)
	if _, err := routed.CreateKeyspace(ctx, "drainpeer", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	n1, n2 := c.Node(0), c.Node(1)
	viaN2 := clientFor(t, n2.Addrs().GRPC)
	ks := client.WithKeyspace("drainpeer")
	eventually(t, 10*time.Second, "keyspace reaches n2", func() error {
		_, err := viaN2.Put(ctx, []byte("before"), []byte("v"), ks, client.WithConsistency(client.All))
		return err
	})
	drained := make(chan error, 1)
	go func() {
		dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- n1.Drain(dctx)
	}()
	for !n1.Draining() {
		time.Sleep(time.Millisecond)
	}
	if _, err := viaN2.Put(ctx, []byte("during"), []byte("v"), ks, client.WithConsistency(client.All)); err != nil {
		t.Errorf("a write at ALL coordinated by n2 while n1 drains: %v", err)
	}
	if err := <-drained; err != nil {
		t.Errorf("drain: %v", err)
	}
}

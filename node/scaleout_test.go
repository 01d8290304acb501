package node_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// Scale out under load (issue 11): a 3-node cluster holding keys written at
// quorum grows to 6, one node at a time, while a writer keeps writing at
// quorum; after each step every acknowledged key reads at quorum with its
// last acknowledged value. With the ring taken from gossip, a new node
// owned ranges the moment it was seen, empty, and quorum reads missed keys.
func TestScaleOutKeepsAcknowledgedWrites(t *testing.T) {
	c := clustertest.New(t, 3)
	kv := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	q := client.WithConsistency(client.Quorum)

	const initial = 300
	for i := range initial {
		if _, err := kv.Put(ctx, []byte(fmt.Sprintf("k-%d", i)), []byte(fmt.Sprintf("v-%d", i)), q); err != nil {
			t.Fatalf("put k-%d: %v", i, err)
		}
	}

	// The writer overwrites a few keys with increasing sequence numbers, so
	// that a stale value shows as a lower number. acked is the last
	// acknowledged sequence per key, tried the last attempted one: a failed
	// write may still have landed, so a read may return anything in
	// between.
	const hot = 50
	var (
		mu     sync.Mutex
		acked  = map[int]int{}
		tried  = map[int]int{}
		paused bool
		cond   = sync.NewCond(&mu)
		stop   = make(chan struct{})
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		for seq := 1; seq <= 100000; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			for paused {
				cond.Wait()
			}
			k := seq % hot
			tried[k] = seq
			mu.Unlock()
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := kv.Put(wctx, []byte(fmt.Sprintf("w-%d", k)), []byte(strconv.Itoa(seq)), q)
			wcancel()
			if err == nil {
				mu.Lock()
				acked[k] = seq
				mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() {
		close(stop)
		mu.Lock()
		paused = false
		cond.Broadcast()
		mu.Unlock()
		<-done
	}()

	check := func(step string) {
		t.Helper()
		mu.Lock()
		paused = true
		mu.Unlock()
		defer func() { mu.Lock(); paused = false; cond.Broadcast(); mu.Unlock() }()
		missing := 0
		for i := range initial {
			g, err := kv.Get(ctx, []byte(fmt.Sprintf("k-%d", i)), q)
			if err != nil {
				t.Fatalf("%s: get k-%d: %v", step, i, err)
			}
			if !g.Found || string(g.Value) != fmt.Sprintf("v-%d", i) {
				missing++
			}
		}
		mu.Lock()
		snapAcked, snapTried := map[int]int{}, map[int]int{}
		for k, v := range acked {
			snapAcked[k] = v
		}
		for k, v := range tried {
			snapTried[k] = v
		}
		mu.Unlock()
		stale := 0
		for k, a := range snapAcked {
			g, err := kv.Get(ctx, []byte(fmt.Sprintf("w-%d", k)), q)
			if err != nil {
				t.Fatalf("%s: get w-%d: %v", step, k, err)
			}
			got, _ := strconv.Atoi(string(g.Value))
			if !g.Found || got < a || got > snapTried[k] {
				stale++
			}
		}
		if missing > 0 || stale > 0 {
			t.Fatalf("%s: %d of %d initial keys missing at quorum, %d of %d overwritten keys stale", step, missing, initial, stale, len(snapAcked))
		}
		t.Logf("%s: %d initial keys and %d overwritten keys read back at quorum", step, initial, len(snapAcked))
	}

	check("3 nodes")
	for range 3 {
		i, err := c.AddNode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		waitJoined(t, ctx, c, i)
		check(fmt.Sprintf("%d nodes", c.Len()))
	}
	mu.Lock()
	if len(acked) == 0 {
		t.Error("the writer had no write acknowledged")
	}
	mu.Unlock()
}

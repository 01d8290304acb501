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
	load := startQuorumLoad(t, ctx, kv, 300)
	defer load.stop()

	load.check("3 nodes")
	for range 3 {
		i, err := c.AddNode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		waitJoined(t, ctx, c, i)
		load.check(fmt.Sprintf("%d nodes", c.Len()))
	}
	load.stop()
	if load.ackedKeys() == 0 {
		t.Error("the writer had no write acknowledged")
	}
}

// quorumLoad is a set of keys written at quorum before a topology change
// and a writer that keeps overwriting a few more at quorum during it.
type quorumLoad struct {
	t       *testing.T
	ctx     context.Context
	kv      *client.Client
	initial int

	mu     sync.Mutex
	acked  map[int]int // the last acknowledged sequence per overwritten key
	tried  map[int]int // the last attempted one: a failed write may still have landed
	paused bool
	cond   *sync.Cond
	halt   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// startQuorumLoad writes initial keys at quorum, then starts the writer:
// it overwrites 50 keys with increasing sequence numbers, so that a stale
// value shows as a lower number.
func startQuorumLoad(t *testing.T, ctx context.Context, kv *client.Client, initial int) *quorumLoad {
	t.Helper()
	q := client.WithConsistency(client.Quorum)
	for i := range initial {
		if _, err := kv.Put(ctx, []byte(fmt.Sprintf("k-%d", i)), []byte(fmt.Sprintf("v-%d", i)), q); err != nil {
			t.Fatalf("put k-%d: %v", i, err)
		}
	}
	l := &quorumLoad{t: t, ctx: ctx, kv: kv, initial: initial, acked: map[int]int{}, tried: map[int]int{},
		halt: make(chan struct{}), done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	const hot = 50
	go func() {
		defer close(l.done)
		for seq := 1; seq <= 100000; seq++ {
			select {
			case <-l.halt:
				return
			default:
			}
			l.mu.Lock()
			for l.paused {
				l.cond.Wait()
			}
			k := seq % hot
			l.tried[k] = seq
			l.mu.Unlock()
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := kv.Put(wctx, []byte(fmt.Sprintf("w-%d", k)), []byte(strconv.Itoa(seq)), q)
			wcancel()
			if err == nil {
				l.mu.Lock()
				l.acked[k] = seq
				l.mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return l
}

// stop ends the writer; it may be called more than once.
func (l *quorumLoad) stop() {
	l.once.Do(func() {
		close(l.halt)
		l.mu.Lock()
		l.paused = false
		l.cond.Broadcast()
		l.mu.Unlock()
		<-l.done
	})
}

func (l *quorumLoad) ackedKeys() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// check pauses the writer and reads every key at quorum: each initial key
// with its value, each overwritten key with a sequence between its last
// acknowledged and its last attempted one.
func (l *quorumLoad) check(step string) {
	t, ctx, kv := l.t, l.ctx, l.kv
	t.Helper()
	q := client.WithConsistency(client.Quorum)
	l.mu.Lock()
	l.paused = true
	l.mu.Unlock()
	defer func() { l.mu.Lock(); l.paused = false; l.cond.Broadcast(); l.mu.Unlock() }()
	missing := 0
	for i := range l.initial {
		g, err := kv.Get(ctx, []byte(fmt.Sprintf("k-%d", i)), q)
		if err != nil {
			t.Fatalf("%s: get k-%d: %v", step, i, err)
		}
		if !g.Found || string(g.Value) != fmt.Sprintf("v-%d", i) {
			missing++
		}
	}
	l.mu.Lock()
	snapAcked, snapTried := map[int]int{}, map[int]int{}
	for k, v := range l.acked {
		snapAcked[k] = v
	}
	for k, v := range l.tried {
		snapTried[k] = v
	}
	l.mu.Unlock()
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
		t.Fatalf("%s: %d of %d initial keys missing at quorum, %d of %d overwritten keys stale", step, missing, l.initial, stale, len(snapAcked))
	}
	t.Logf("%s: %d initial keys and %d overwritten keys read back at quorum", step, l.initial, len(snapAcked))
}

package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/storage"
)

// manualClock is a wall clock the test moves.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// scanLimits is an engine that records the limit of every scan of the hint
// keyspace.
type scanLimits struct {
	storage.Engine
	mu     sync.Mutex
	limits []int
}

func (e *scanLimits) Scan(keyspace string, start, end []byte, limit int) ([]storage.Record, error) {
	if keyspace == hintKeyspace {
		e.mu.Lock()
		e.limits = append(e.limits, limit)
		e.mu.Unlock()
	}
	return e.Engine.Scan(keyspace, start, end, limit)
}

func hintMut(key string, value []byte) *kvpb.Mutation {
	return &kvpb.Mutation{Keyspace: "ks", Epoch: 1, Record: RecordToPB(storage.Record{Key: []byte(key), Value: value, Version: storage.Version{Timestamp: 1 << 16, Node: 1}})}
}

// Hints have a maximum window: a node that left for good loses its hints
// after it instead of keeping them until the store is full (after which
// every other down replica's hints were dropped too), and gets no new ones
// until it has been seen alive again. Reference: Cassandra's
// max_hint_window (3 h by default).
func TestHintWindow(t *testing.T) {
	ctx := context.Background()
	clock := &manualClock{now: time.Unix(1_700_000_000, 0)}
	eng := storage.NewMemory()
	defer eng.Close()
	h, err := NewHintStore(eng, HintOptions{MaxHints: 10, MaxWindow: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := h.Add(ctx, "gone", hintMut(fmt.Sprint("k", i), []byte("v"))); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Add(ctx, "other", hintMut("x", []byte("v"))); !errors.Is(err, ErrHintsFull) {
		t.Fatalf("hint beyond MaxHints: %v; want ErrHintsFull", err)
	}
	clock.advance(30 * time.Minute)
	if n, err := h.Expire(ctx, "gone"); err != nil || n != 0 {
		t.Fatalf("Expire within the window removed %d, %v; want 0", n, err)
	}
	// The delivery loop expires the departed node's hints although it is
	// never alive again.
	clock.advance(31 * time.Minute)
	net := &memNetwork{down: map[string]bool{"gone": true, "other": true}}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); h.Run(rctx, net, net, 5*time.Millisecond) }()
	waitFor(t, "the departed node's hints to expire", func() bool { return h.Pending() == 0 })
	cancel()
	<-done
	if got := h.Expired(); got != 10 {
		t.Errorf("expired = %d; want 10", got)
	}
	if recs, err := eng.Scan(hintKeyspace, nil, nil, 0); err != nil || len(recs) != 0 {
		t.Errorf("hint keyspace holds %d records after expiry, %v", len(recs), err)
	}
	// Other down replicas are hinted again; the departed one, unreachable
	// for longer than the window, is not.
	if err := h.Add(ctx, "other", hintMut("x", []byte("v"))); err != nil {
		t.Errorf("hint for another down replica after the expiry: %v", err)
	}
	dropped := h.Dropped()
	if err := h.Add(ctx, "gone", hintMut("y", []byte("v"))); !errors.Is(err, ErrHintWindowPassed) {
		t.Errorf("hint for a node unreachable for 61 min with a 1 h window: %v; want ErrHintWindowPassed", err)
	}
	if h.Dropped() != dropped+1 {
		t.Errorf("dropped %d -> %d; want the refused hint counted", dropped, h.Dropped())
	}
	// Seen alive with nothing left to deliver, it gets a fresh window.
	h.snapshot(func(id string) bool { return id == "gone" })
	if err := h.Add(ctx, "gone", hintMut("y", []byte("v"))); err != nil {
		t.Errorf("hint for a node seen alive again: %v", err)
	}
}

// The store keeps counters in memory, not hints: opening it counts the
// hints a previous run left a page at a time, and delivery reads a page at
// a time and sends RPCs within the peer's message limit. Hints older than
// the window are removed, not delivered.
func TestHintStoreReadsPages(t *testing.T) {
	ctx := context.Background()
	clock := &manualClock{now: time.Unix(1_700_000_000, 0)}
	mem := storage.NewMemory()
	defer mem.Close()
	eng := &scanLimits{Engine: mem}
	h, err := NewHintStore(eng, HintOptions{MaxWindow: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	// 300 small hints for n1 and n2, 10 large ones for n1, and two that a
	// previous run left two hours ago.
	for i := range 2 {
		val, err := proto.Marshal(hintMut(fmt.Sprint("old", i), []byte("v")))
		if err != nil {
			t.Fatal(err)
		}
		seq := uint64(clock.Now().Add(-2*time.Hour).UnixNano()) + uint64(i)
		rec := storage.Record{Key: hintKey("n1", seq), Value: val, Version: storage.Version{Timestamp: seq}}
		if _, err := mem.Apply(ctx, []storage.Mutation{{Keyspace: hintKeyspace, Record: rec}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		if _, err := h.AddAll(ctx, []string{"n1", "n2"}, hintMut(fmt.Sprintf("k%03d", i), []byte("v"))); err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte("x"), 600<<10)
	for i := range 10 {
		if err := h.Add(ctx, "n1", hintMut(fmt.Sprint("big", i), big)); err != nil {
			t.Fatal(err)
		}
	}

	// A restart counts them without reading them all at once.
	eng.limits = nil
	h, err = NewHintStore(eng, HintOptions{MaxWindow: time.Hour, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if h.PendingFor("n1") != 312 || h.PendingFor("n2") != 300 || h.Pending() != 612 {
		t.Fatalf("after reopening: n1 %d, n2 %d, total %d; want 312, 300, 612", h.PendingFor("n1"), h.PendingFor("n2"), h.Pending())
	}
	for _, l := range eng.limits {
		if l <= 0 || l > hintPage {
			t.Fatalf("opening the store scanned hints with limit %d; want pages of at most %d", l, hintPage)
		}
	}

	f := newFixture(t, 3, 3)
	rt := &hintSizes{memNetwork: f.net}
	eng.limits = nil
	n, err := h.Deliver(ctx, rt, "n1", 256)
	if err != nil || n != 310 {
		t.Fatalf("Deliver = %d, %v; want the 310 hints within the window", n, err)
	}
	for _, l := range eng.limits {
		if l <= 0 || l > 256 {
			t.Errorf("delivery scanned hints with limit %d; want pages of at most 256", l)
		}
	}
	for _, size := range rt.sizes {
		if size > hintChunkBytes+1<<20 {
			t.Errorf("a hint RPC carried %d bytes; want at most about %d", size, hintChunkBytes)
		}
	}
	if h.Expired() != 2 || h.PendingFor("n1") != 0 || h.Delivered() != 310 {
		t.Errorf("expired %d, pending %d, delivered %d; want 2, 0, 310", h.Expired(), h.PendingFor("n1"), h.Delivered())
	}
	if _, ok := f.local(t, "n1", "old0"); ok {
		t.Error("an expired hint was delivered")
	}
	if rec, ok := f.local(t, "n1", "big9"); !ok || len(rec.Value) != len(big) {
		t.Error("a large hint was not delivered")
	}
}

// hintSizes is a transport that records the size of every hint RPC.
type hintSizes struct {
	*memNetwork
	mu    sync.Mutex
	sizes []int
}

func (t *hintSizes) Hint(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	t.mu.Lock()
	t.sizes = append(t.sizes, proto.Size(req))
	t.mu.Unlock()
	return t.memNetwork.Hint(ctx, to, req)
}

// Drop removes every hint of one target, however many pages, and leaves
// the others' hints.
func TestHintStoreDrop(t *testing.T) {
	ctx := context.Background()
	mem := storage.NewMemory()
	defer mem.Close()
	h, err := NewHintStore(mem, HintOptions{MaxWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2*hintPage + 7 {
		if _, err := h.AddAll(ctx, []string{"gone", "stays"}, hintMut(fmt.Sprintf("k%04d", i), []byte("v"))); err != nil {
			t.Fatal(err)
		}
	}
	n, err := h.Drop(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2*hintPage+7 || h.PendingFor("gone") != 0 || h.PendingFor("stays") != 2*hintPage+7 || h.Dropped() != uint64(n) {
		t.Fatalf("dropped %d: gone %d, stays %d, Dropped %d; want %d, 0, %d, %d", n, h.PendingFor("gone"), h.PendingFor("stays"), h.Dropped(), 2*hintPage+7, 2*hintPage+7, 2*hintPage+7)
	}
	// The store agrees after reopening: the hints are gone from the engine.
	h, err = NewHintStore(mem, HintOptions{MaxWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if h.PendingFor("gone") != 0 || h.PendingFor("stays") != 2*hintPage+7 {
		t.Fatalf("after reopening: gone %d, stays %d", h.PendingFor("gone"), h.PendingFor("stays"))
	}
}

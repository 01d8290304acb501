package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// Concurrent writes beyond maxInflight share RPCs, and every caller gets
// the result of its own mutation.
func TestWriteBatcherCoalesces(t *testing.T) {
	var rpcs atomic.Int64
	release := make(chan struct{})
	b := &writeBatcher{
		send: func(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
			rpcs.Add(1)
			<-release
			resp := &kvpb.ReplicaWriteResponse{}
			for _, m := range req.GetMutations() {
				resp.Results = append(resp.Results, &kvpb.MutationResult{Ok: true, Error: string(m.GetRecord().GetKey())})
			}
			return resp, nil
		},
		maxInflight: 2, maxBatch: 100, timeout: time.Second,
	}
	defer b.close() // its senders must not outlive the test (goleak)
	const writers = 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("k%d", i)
			resp, err := b.Write(context.Background(), &kvpb.ReplicaWriteRequest{Mutations: []*kvpb.Mutation{{Record: &kvpb.Record{Key: []byte(key)}}}})
			if err != nil {
				errs <- err
				return
			}
			if r := resp.GetResults(); len(r) != 1 || r[0].GetError() != key {
				errs <- fmt.Errorf("write %s got results %v", key, r)
			}
		}()
	}
	// Let the writers queue behind the two RPCs in flight, then release.
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := rpcs.Load(); got >= writers {
		t.Errorf("%d RPCs for %d concurrent writes; want coalescing", got, writers)
	}
}

// A write to an idle peer goes out at once, alone; close fails the writes
// still queued and refuses new ones, and the senders exit.
func TestWriteBatcherIdleAndClose(t *testing.T) {
	sizes := make(chan int, 10)
	release := make(chan struct{})
	b := &writeBatcher{
		send: func(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
			sizes <- len(req.GetMutations())
			<-release
			resp := &kvpb.ReplicaWriteResponse{}
			for range req.GetMutations() {
				resp.Results = append(resp.Results, &kvpb.MutationResult{Ok: true})
			}
			return resp, nil
		},
		maxInflight: 1, maxBatch: 100, timeout: time.Second,
	}
	write := func() error {
		_, err := b.Write(context.Background(), &kvpb.ReplicaWriteRequest{Mutations: []*kvpb.Mutation{{Record: &kvpb.Record{Key: []byte("k")}}}})
		return err
	}
	first := make(chan error, 1)
	go func() { first <- write() }()
	select {
	case n := <-sizes:
		if n != 1 {
			t.Fatalf("the first write went out with %d mutations; want alone", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first write to an idle peer was not sent")
	}
	// The only sender is busy: this one queues.
	queued := make(chan error, 1)
	go func() { queued <- write() }()
	waitUntil(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 1 })
	b.close()
	if err := <-queued; !errors.Is(err, errBatcherClosed) {
		t.Errorf("queued write after close: %v; want errBatcherClosed", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("the write in flight at close: %v; want it answered", err)
	}
	if err := write(); !errors.Is(err, errBatcherClosed) {
		t.Errorf("write after close: %v; want errBatcherClosed", err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// okSender answers every mutation of a request, recording the keys it was
// asked to write and the RPC's deadline, and blocks until release is closed.
type okSender struct {
	mu        sync.Mutex
	keys      []string
	deadlines []time.Time
	release   chan struct{}
}

func (s *okSender) send(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	dl, _ := ctx.Deadline()
	s.mu.Lock()
	for _, m := range req.GetMutations() {
		s.keys = append(s.keys, string(m.GetRecord().GetKey()))
	}
	s.deadlines = append(s.deadlines, dl)
	s.mu.Unlock()
	<-s.release
	resp := &kvpb.ReplicaWriteResponse{}
	for range req.GetMutations() {
		resp.Results = append(resp.Results, &kvpb.MutationResult{Ok: true})
	}
	return resp, nil
}

func (s *okSender) sent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

func writeKey(ctx context.Context, b *writeBatcher, key string, valueSize int) error {
	_, err := b.Write(ctx, &kvpb.ReplicaWriteRequest{Mutations: []*kvpb.Mutation{{Record: &kvpb.Record{Key: []byte(key), Value: make([]byte, valueSize)}}}})
	return err
}

// A write whose caller's deadline passes while it is queued is never sent:
// nobody waits for its answer, and the peer's time is better spent on
// writes someone still waits for.
func TestWriteBatcherDropsExpiredWrites(t *testing.T) {
	s := &okSender{release: make(chan struct{})}
	b := &writeBatcher{send: s.send, maxInflight: 1, maxBatch: 100, timeout: 10 * time.Second}
	defer b.close() // its senders must not outlive the test (goleak)
	first := make(chan error, 1)
	go func() { first <- writeKey(context.Background(), b, "busy", 1) }()
	waitUntil(t, func() bool { return len(s.sent()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := writeKey(ctx, b, "expired", 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued write past its deadline: %v; want DeadlineExceeded", err)
	}
	live := make(chan error, 1)
	go func() { live <- writeKey(context.Background(), b, "live", 1) }()
	waitUntil(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 2 })
	close(s.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-live; err != nil {
		t.Fatal(err)
	}
	if got := s.sent(); len(got) != 2 || got[0] != "busy" || got[1] != "live" {
		t.Errorf("sent %v; want [busy live]: the expired write must not be sent", got)
	}
}

// The queue to a peer is bounded: a write that finds it full waits for room
// within its deadline and fails when the deadline passes, without joining
// the queue; it gets in as soon as the senders take what was queued.
func TestWriteBatcherQueueIsBounded(t *testing.T) {
	s := &okSender{release: make(chan struct{})}
	const valueSize = 1000
	b := &writeBatcher{send: s.send, maxInflight: 1, maxBatch: 100, timeout: 10 * time.Second,
		maxQueued: 2 * (valueSize + mutationOverhead + 2)}
	defer b.close() // its senders must not outlive the test (goleak)
	errs := make(chan error, 4)
	go func() { errs <- writeKey(context.Background(), b, "k0", valueSize) }()
	waitUntil(t, func() bool { return len(s.sent()) == 1 })
	for _, k := range []string{"k1", "k2"} {
		go func() { errs <- writeKey(context.Background(), b, k, valueSize) }()
	}
	waitUntil(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := writeKey(ctx, b, "k3", valueSize); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write to a full queue: %v; want DeadlineExceeded", err)
	}
	b.mu.Lock()
	queued := len(b.queue)
	b.mu.Unlock()
	if queued != 2 {
		t.Errorf("%d writes queued; want the bound's 2", queued)
	}
	// A write that waits for room gets in once the sender takes the queue.
	go func() { errs <- writeKey(context.Background(), b, "k4", valueSize) }()
	close(s.release)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := s.sent(); len(got) != 4 {
		t.Errorf("sent %v; want k0, k1, k2 and k4", got)
	}
}

// The coalesced RPC carries its writers' deadline, not a fixed timeout
// longer than any of them wait, so that the peer can drop work nobody waits
// for.
func TestWriteBatcherRPCDeadlineFollowsWriters(t *testing.T) {
	s := &okSender{release: make(chan struct{})}
	close(s.release)
	b := &writeBatcher{send: s.send, maxInflight: 1, maxBatch: 100, timeout: time.Minute}
	defer b.close() // its senders must not outlive the test (goleak)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	want, _ := ctx.Deadline()
	if err := writeKey(ctx, b, "k", 1); err != nil {
		t.Fatal(err)
	}
	if err := writeKey(context.Background(), b, "k", 1); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := s.deadlines[0]; !got.Equal(want) {
		t.Errorf("RPC deadline %v; want the writer's %v", got, want)
	}
	if got := time.Until(s.deadlines[1]); got < 50*time.Second {
		t.Errorf("RPC of a writer without a deadline ends in %v; want the batcher's timeout (1m)", got)
	}
}

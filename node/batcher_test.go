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

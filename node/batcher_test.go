package node

import (
	"context"
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

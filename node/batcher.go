package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// writeBatcher coalesces concurrent replica writes to one peer into one
// RPC. While fewer than maxInflight RPCs to the peer are outstanding a write
// goes out at once, alone, so an idle cluster pays no batching delay; once
// that many are in flight, later writes queue and leave together, as one
// ReplicaWriteRequest, when an RPC returns. The replica then applies the
// whole batch with one group commit.
type writeBatcher struct {
	send        func(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error)
	from        string
	maxInflight int
	maxBatch    int
	timeout     time.Duration

	mu       sync.Mutex
	inflight int
	queue    []*pendingWrite
}

type pendingWrite struct {
	muts []*kvpb.Mutation
	done chan writeOutcome // buffered, 1
}

type writeOutcome struct {
	results []*kvpb.MutationResult
	err     error
}

// maxInflightPerPeer bounds the RPCs outstanding to one peer before writes
// are coalesced. Four keeps a 2-core replica busy without queueing behind a
// single RPC's fsync; more would split batches that could share an fsync.
const maxInflightPerPeer = 4

// maxBatchMutations bounds one coalesced RPC, so that a burst does not build
// a message beyond gRPC's limits or one fsync of unbounded size.
const maxBatchMutations = 512

func (b *writeBatcher) Write(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	p := &pendingWrite{muts: req.GetMutations(), done: make(chan writeOutcome, 1)}
	b.mu.Lock()
	if b.inflight < b.maxInflight {
		b.inflight++
		b.mu.Unlock()
		go b.flush([]*pendingWrite{p})
	} else {
		b.queue = append(b.queue, p)
		b.mu.Unlock()
	}
	select {
	case out := <-p.done:
		if out.err != nil {
			return nil, out.err
		}
		return &kvpb.ReplicaWriteResponse{Results: out.results}, nil
	case <-ctx.Done():
		// The write may still be sent; the caller treats it as failed
		// (and stores a hint), which is safe because writes are idempotent.
		return nil, ctx.Err()
	}
}

// flush sends one batch and then, while writes are queued, the next one.
func (b *writeBatcher) flush(batch []*pendingWrite) {
	for len(batch) > 0 {
		req := &kvpb.ReplicaWriteRequest{From: b.from}
		for _, p := range batch {
			req.Mutations = append(req.Mutations, p.muts...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		resp, err := b.send(ctx, req)
		cancel()
		if err == nil && len(resp.GetResults()) != len(req.Mutations) {
			err = fmt.Errorf("peer answered %d results for %d mutations", len(resp.GetResults()), len(req.Mutations))
		}
		i := 0
		for _, p := range batch {
			if err != nil {
				p.done <- writeOutcome{err: err}
				continue
			}
			p.done <- writeOutcome{results: resp.GetResults()[i : i+len(p.muts)]}
			i += len(p.muts)
		}
		b.mu.Lock()
		batch = nil
		n := 0
		for len(b.queue) > 0 && n < b.maxBatch {
			p := b.queue[0]
			b.queue = b.queue[1:]
			batch = append(batch, p)
			n += len(p.muts)
		}
		if len(batch) == 0 {
			b.inflight--
		}
		b.mu.Unlock()
	}
}

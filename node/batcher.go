package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// writeBatcher coalesces concurrent replica writes to one peer into one
// RPC. maxInflight sender goroutines per peer take writes off a queue: while
// one of them is idle a write goes out at once, alone, so an idle cluster
// pays no batching delay; once all are busy, later writes queue and the
// first sender to return takes them together, as one ReplicaWriteRequest.
// The replica then applies the whole batch with one group commit.
//
// The queue is bounded (maxQueued bytes of mutations): a write that finds
// it full waits for room within its context's deadline, so that a peer that
// cannot keep up pushes back on its coordinators instead of letting their
// memory grow. A queued write whose caller gave up (context done) is
// withdrawn, and one whose deadline passed while it waited is dropped before
// it is sent: nobody waits for its answer, and sending it would only spend
// the peer's time on work already counted as failed (the coordinator stores
// a hint for it).
//
// Why long-lived senders rather than a goroutine per flush? A gRPC call
// needs a deep stack, and a fresh goroutine grows its stack by copying on
// every call: with one per flush, stack copying was 5% of a node's CPU under
// YCSB A. A sender keeps its grown stack.
type writeBatcher struct {
	send        func(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error)
	from        string
	maxInflight int
	maxBatch    int
	// maxQueued bounds the approximate bytes of the writes queued (not
	// yet taken by a sender); 0 means defaultMaxQueuedBytes. A single write
	// larger than the bound is queued when the queue is empty.
	maxQueued int
	timeout   time.Duration

	start sync.Once
	wake  chan struct{} // one token per idle sender woken
	stop  chan struct{} // closed by close

	mu          sync.Mutex
	idle        int // senders waiting for work
	queue       []*pendingWrite
	queuedBytes int
	space       chan struct{} // closed (and replaced) when queued bytes are taken; nil when nobody waits
	closed      bool
}

// Pending write states: a write moves from queued to exactly one of the
// others, and whoever wins the compare-and-swap owns it.
const (
	writeQueued int32 = iota
	writeTaken
	writeWithdrawn
)

type pendingWrite struct {
	muts     []*kvpb.Mutation
	size     int
	deadline time.Time // zero: none
	state    atomic.Int32
	done     chan writeOutcome // buffered, 1
}

type writeOutcome struct {
	results []*kvpb.MutationResult
	err     error
}

// errBatcherClosed fails the writes still queued when the transport closes.
var errBatcherClosed = errors.New("peer transport closed")

// maxInflightPerPeer bounds the RPCs outstanding to one peer before writes
// are coalesced. Four keeps a 2-core replica busy without queueing behind a
// single RPC's fsync; more would split batches that could share an fsync.
const maxInflightPerPeer = 4

// defaultMaxQueuedBytes bounds the writes queued for one peer. Why not
// smaller? A burst of writes to a slow peer is absorbed at the cost of its
// queueing time. Why not larger? What is queued beyond what a peer applies
// within a replica timeout (a few MiB at the rates a 2-core node sustains)
// only times out after holding memory.
const defaultMaxQueuedBytes = 16 << 20

// mutationOverhead approximates a mutation's bytes beyond key and value
// (keyspace, version, epoch, framing), for the queue's bound.
const mutationOverhead = 64

// maxBatchMutations bounds one coalesced RPC, so that a burst does not build
// a message beyond gRPC's limits or one fsync of unbounded size.
const maxBatchMutations = 512

func (b *writeBatcher) init() {
	b.wake = make(chan struct{}, b.maxInflight)
	b.stop = make(chan struct{})
	for range b.maxInflight {
		go b.sender()
	}
}

func (b *writeBatcher) Write(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	b.start.Do(b.init)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := &pendingWrite{muts: req.GetMutations(), done: make(chan writeOutcome, 1)}
	for _, m := range p.muts {
		p.size += mutationOverhead + len(m.GetRecord().GetKey()) + len(m.GetRecord().GetValue())
	}
	p.deadline, _ = ctx.Deadline()
	limit := b.maxQueued
	if limit <= 0 {
		limit = defaultMaxQueuedBytes
	}
	b.mu.Lock()
	for !b.closed && len(b.queue) > 0 && b.queuedBytes+p.size > limit {
		if b.space == nil {
			b.space = make(chan struct{})
		}
		space := b.space
		b.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return nil, fmt.Errorf("write queue to peer full (%d bytes queued): %w", limit, ctx.Err())
		}
		b.mu.Lock()
	}
	if b.closed {
		b.mu.Unlock()
		return nil, errBatcherClosed
	}
	b.queue = append(b.queue, p)
	b.queuedBytes += p.size
	if b.idle > 0 {
		b.idle--
		b.wake <- struct{}{} // never blocks: one slot per sender
	}
	b.mu.Unlock()
	select {
	case out := <-p.done:
		if out.err != nil {
			return nil, out.err
		}
		return &kvpb.ReplicaWriteResponse{Results: out.results}, nil
	case <-ctx.Done():
		// Still queued: withdrawn, never sent. Already taken: it may still
		// be applied; the caller treats it as failed (and stores a hint),
		// which is safe because writes are idempotent.
		p.state.CompareAndSwap(writeQueued, writeWithdrawn)
		return nil, ctx.Err()
	}
}

// close stops the senders and fails the writes still queued.
func (b *writeBatcher) close() {
	b.start.Do(b.init)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.closed = true
	close(b.stop)
	for _, p := range b.queue {
		if p.state.CompareAndSwap(writeQueued, writeTaken) {
			p.done <- writeOutcome{err: errBatcherClosed}
		}
	}
	b.queue = nil
	b.queuedBytes = 0
	if b.space != nil {
		close(b.space)
		b.space = nil
	}
}

// sender sends queued writes, up to maxBatch mutations per RPC, until close.
func (b *writeBatcher) sender() {
	for {
		b.mu.Lock()
		for len(b.queue) == 0 {
			if b.closed {
				b.mu.Unlock()
				return
			}
			b.idle++
			b.mu.Unlock()
			select {
			case <-b.wake:
			case <-b.stop:
				return
			}
			b.mu.Lock()
		}
		var batch []*pendingWrite
		n := 0
		now := time.Now()
		for len(b.queue) > 0 && n < b.maxBatch {
			p := b.queue[0]
			b.queue[0] = nil
			b.queue = b.queue[1:]
			b.queuedBytes -= p.size
			if !p.state.CompareAndSwap(writeQueued, writeTaken) {
				continue // withdrawn by its caller
			}
			if !p.deadline.IsZero() && !now.Before(p.deadline) {
				p.done <- writeOutcome{err: fmt.Errorf("write expired in the queue to the peer: %w", context.DeadlineExceeded)}
				continue
			}
			batch = append(batch, p)
			n += len(p.muts)
		}
		if b.space != nil {
			close(b.space)
			b.space = nil
		}
		if len(batch) == 0 {
			b.mu.Unlock()
			continue
		}
		b.mu.Unlock()
		b.flush(batch)
	}
}

// flush sends one batch and hands each write its results. The RPC's
// deadline is the latest of its writers' deadlines, capped by the batcher's
// timeout: no writer waits longer, and the peer learns when nobody waits
// any more (its committer drops what expired in its queue).
func (b *writeBatcher) flush(batch []*pendingWrite) {
	req := &kvpb.ReplicaWriteRequest{From: b.from}
	deadline := time.Now().Add(b.timeout)
	var latest time.Time
	for _, p := range batch {
		req.Mutations = append(req.Mutations, p.muts...)
		if p.deadline.IsZero() || p.deadline.After(deadline) {
			latest = deadline
		} else if p.deadline.After(latest) {
			latest = p.deadline
		}
	}
	deadline = latest
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
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
}

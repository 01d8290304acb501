package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// The replica's side of Peer.Stream (the coordinator's is peerstream.go).
// Each item runs the unary method of its kind on a pool of reused
// goroutines, with a context carrying the item's own deadline, so that a
// message means on the stream what it means unary; the writer sends the
// replies that are ready each time it wakes, out of order. The stream is
// authorized once, when opened, by the Peer service's rule (node
// certificates only), which is the rule of every method it carries.
//
// When the node stops (Stop, not Drain: a draining node keeps answering its
// peers for a settle time), each stream refuses new items (Unavailable), answers
// those running and ends, so that GracefulStop need not wait for the
// coordinators to close their streams.

// Stream serves one coordinator's peer stream.
func (s peerServer) Stream(stream kvpb.Peer_StreamServer) error {
	var delay func() time.Duration
	if h := s.n.hooks; h != nil {
		delay = func() time.Duration {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.replyDelay
		}
	}
	return servePeerStream(stream, s, s.n.peerStreams.done(), delay)
}

// stopSignal is a channel closed once, made on first use.
type stopSignal struct {
	make   sync.Once
	closed sync.Once
	ch     chan struct{}
}

func (s *stopSignal) done() <-chan struct{} {
	s.make.Do(func() { s.ch = make(chan struct{}) })
	return s.ch
}

func (s *stopSignal) close() {
	s.done()
	s.closed.Do(func() { close(s.ch) })
}

// peerHandler serves the unary methods a peer stream carries.
type peerHandler interface {
	Read(context.Context, *kvpb.ReplicaReadRequest) (*kvpb.ReplicaReadResponse, error)
	Write(context.Context, *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error)
	Hint(context.Context, *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error)
	Paxos(context.Context, *kvpb.PaxosRequest) (*kvpb.PaxosResponse, error)
}

// lazyCommitter is a peerHandler that applies many lazy Paxos commits
// (PaxosRequest.lazy, posted with no_reply) at once:
// replication.Replica.LazyCommits.
type lazyCommitter interface {
	LazyCommits(context.Context, []*kvpb.PaxosRequest) error
}

// lazyCommitTimeout bounds the work of one message's lazy commits.
const lazyCommitTimeout = 2 * time.Second

// servePeerStream serves stream with h until the coordinator closes it, it
// breaks, or stopping is closed. replyDelay, when not nil, is the test
// hooks' delay of every answer.
func servePeerStream(stream kvpb.Peer_StreamServer, h peerHandler, stopping <-chan struct{}, replyDelay func() time.Duration) error {
	ps := &peerStreamServer{
		h:          h,
		replyDelay: replyDelay,
		ctx:        stream.Context(),
		running:    make(map[uint64]context.CancelFunc),
		wake:       make(chan struct{}, 1),
		closing:    make(chan struct{}),
		pool:       newWorkerPool(),
	}
	defer ps.pool.stop()
	writer := make(chan error, 1)
	go func() { writer <- ps.write(stream) }()
	reader := make(chan error, 1)
	go func() { reader <- ps.read(stream) }()
	select {
	case err := <-reader:
		if !errors.Is(err, io.EOF) {
			// The stream broke: its context is canceled, so what runs
			// ends soon, and nobody is left to answer.
			<-writer
			return err
		}
	case <-stopping:
		// The reader goroutine stays in Recv until this handler returns.
	}
	ps.mu.Lock()
	ps.stopping = true
	ps.mu.Unlock()
	ps.wg.Wait()
	close(ps.closing)
	return <-writer
}

// peerStreamServer is the state of one Peer.Stream on the replica.
type peerStreamServer struct {
	h          peerHandler
	replyDelay func() time.Duration // nil: none
	ctx        context.Context
	wg         sync.WaitGroup

	mu       sync.Mutex
	running  map[uint64]context.CancelFunc // by ID
	replies  []*kvpb.PeerStreamReply       // queued for the writer
	stopping bool                          // new items are refused

	wake    chan struct{} // a reply was queued (capacity 1)
	closing chan struct{} // the writer flushes and returns

	pool workerPool
}

// read receives messages until the stream ends.
func (ps *peerStreamServer) read(stream kvpb.Peer_StreamServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		for _, id := range req.GetCancel() {
			ps.abandon(id)
		}
		lc, batch := ps.h.(lazyCommitter)
		var lazy []*kvpb.PaxosRequest
		for _, it := range req.GetItems() {
			if p := it.GetPaxos(); batch && it.GetNoReply() && p.GetLazy() && p.GetKind() == kvpb.PaxosRequest_COMMIT {
				lazy = append(lazy, p)
				continue
			}
			ps.start(it)
		}
		if len(lazy) > 0 {
			ps.startLazy(lc, lazy)
		}
	}
}

// startLazy applies the lazy commits of one message together, on one
// worker: nobody waits for them, so nothing is answered, and a failure is
// only logged (a lost commit, which a later round completes).
func (ps *peerStreamServer) startLazy(lc lazyCommitter, reqs []*kvpb.PaxosRequest) {
	ps.mu.Lock()
	if ps.stopping {
		ps.mu.Unlock()
		return
	}
	ps.wg.Add(1)
	ps.mu.Unlock()
	ps.pool.submit(func() {
		defer ps.wg.Done()
		ctx, cancel := context.WithTimeout(ps.ctx, lazyCommitTimeout)
		defer cancel()
		if err := lc.LazyCommits(ctx, reqs); err != nil {
			slog.Debug("lazy paxos commits", "commits", len(reqs), "err", err)
		}
	})
}

// start runs one item.
func (ps *peerStreamServer) start(it *kvpb.PeerStreamItem) {
	id := it.GetId()
	var ctx context.Context
	var cancel context.CancelFunc
	if t := it.GetTimeoutUs(); t > 0 {
		ctx, cancel = context.WithTimeout(ps.ctx, time.Duration(t)*time.Microsecond)
	} else {
		ctx, cancel = context.WithCancel(ps.ctx)
	}
	ps.mu.Lock()
	var refuse error
	if ps.stopping {
		refuse = status.Error(codes.Unavailable, "node is stopping; nothing was done")
	} else if _, dup := ps.running[id]; dup {
		refuse = status.Errorf(codes.InvalidArgument, "peer stream request id %d is already in flight on this stream; ids must be unique among requests in flight", id)
	}
	if refuse != nil {
		ps.mu.Unlock()
		cancel()
		if !it.GetNoReply() {
			ps.reply(&kvpb.PeerStreamReply{Id: id, Status: statusBytes(refuse)})
		}
		return
	}
	ps.running[id] = cancel
	ps.wg.Add(1)
	ps.mu.Unlock()
	ps.pool.submit(func() {
		defer ps.wg.Done()
		r := ps.run(ctx, it)
		cancel()
		ps.mu.Lock()
		_, live := ps.running[id]
		delete(ps.running, id)
		ps.mu.Unlock()
		if live && !it.GetNoReply() { // an abandoned or posted item has no one waiting for it
			ps.reply(r)
		}
	})
}

// abandon cancels an item the coordinator no longer waits for.
func (ps *peerStreamServer) abandon(id uint64) {
	ps.mu.Lock()
	cancel, ok := ps.running[id]
	delete(ps.running, id)
	ps.mu.Unlock()
	if ok {
		cancel()
	}
}

// run serves one item with the unary method of its kind, and delays the
// reply as the test hooks' reply delay delays a unary one.
func (ps *peerStreamServer) run(ctx context.Context, it *kvpb.PeerStreamItem) *kvpb.PeerStreamReply {
	r := &kvpb.PeerStreamReply{Id: it.GetId()}
	var err error
	switch q := it.GetRequest().(type) {
	case *kvpb.PeerStreamItem_Read:
		var resp *kvpb.ReplicaReadResponse
		if resp, err = ps.h.Read(ctx, q.Read); err == nil {
			r.Response = &kvpb.PeerStreamReply_Read{Read: resp}
		}
	case *kvpb.PeerStreamItem_Write:
		var resp *kvpb.ReplicaWriteResponse
		if resp, err = ps.h.Write(ctx, q.Write); err == nil {
			r.Response = &kvpb.PeerStreamReply_Write{Write: resp}
		}
	case *kvpb.PeerStreamItem_Hint:
		var resp *kvpb.ReplicaWriteResponse
		if resp, err = ps.h.Hint(ctx, q.Hint); err == nil {
			r.Response = &kvpb.PeerStreamReply_Hint{Hint: resp}
		}
	case *kvpb.PeerStreamItem_Paxos:
		var resp *kvpb.PaxosResponse
		if resp, err = ps.h.Paxos(ctx, q.Paxos); err == nil {
			r.Response = &kvpb.PeerStreamReply_Paxos{Paxos: resp}
		}
	default:
		err = status.Errorf(codes.InvalidArgument, "peer stream request id %d carries no read, write, hint or paxos request", it.GetId())
	}
	if ps.replyDelay != nil {
		sleepCtx(ctx, ps.replyDelay())
	}
	if err != nil {
		r.Status = statusBytes(err)
	}
	return r
}

// reply queues r for the writer.
func (ps *peerStreamServer) reply(r *kvpb.PeerStreamReply) {
	ps.mu.Lock()
	ps.replies = append(ps.replies, r)
	ps.mu.Unlock()
	select {
	case ps.wake <- struct{}{}:
	default:
	}
}

// write sends the queued replies each time it wakes, until the stream's
// context ends or closing is closed (after a last flush).
func (ps *peerStreamServer) write(stream kvpb.Peer_StreamServer) error {
	var spare []*kvpb.PeerStreamReply
	for {
		final := false
		select {
		case <-ps.wake:
		case <-ps.closing:
			final = true
		case <-ps.ctx.Done():
			return status.FromContextError(ps.ctx.Err()).Err()
		}
		ps.mu.Lock()
		batch := ps.replies
		ps.replies = spare[:0]
		ps.mu.Unlock()
		for rest := batch; len(rest) > 0; {
			n, size := 0, 0
			for n < len(rest) {
				sz := proto.Size(rest[n])
				if n > 0 && size+sz > maxBatchReplyBytes {
					break
				}
				size += sz
				n++
			}
			if err := stream.Send(&kvpb.PeerStreamResponse{Replies: rest[:n]}); err != nil {
				return err
			}
			rest = rest[n:]
		}
		clear(batch)
		spare = batch
		if final {
			return nil
		}
	}
}

// peerReplyStatus decodes a reply's google.rpc.Status into the error the
// unary method would have returned.
func peerReplyStatus(b []byte) error {
	var sp spb.Status
	if err := proto.Unmarshal(b, &sp); err != nil {
		return status.Errorf(codes.Internal, "peer stream reply carries an undecodable status: %v", err)
	}
	if sp.GetCode() == int32(codes.OK) {
		return status.Error(codes.Internal, "peer stream reply carries a status of OK and no response")
	}
	return status.ErrorProto(&sp)
}

// errPeerStreamUnsupported fails the requests of a stream the peer does not
// implement (a node from before Peer.Stream): none of them ran, so they go
// again as unary calls.
var errPeerStreamUnsupported = errors.New("peer does not serve Peer.Stream")

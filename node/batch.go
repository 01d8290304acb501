package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// The Batch stream (KV.Batch) carries the SDK's requests to this node in
// batches and its replies back the same way, so that a busy client pays
// gRPC's per-call cost (a stream, headers, a flow-control window, a
// handler goroutine) once per batch instead of once per request.
//
// Each request inside runs through the unary handler of its kind
// (kvServer.Get, Put, Delete, Scan), so admission, validation, levels,
// sessions and the error statuses are the unary path's, byte for byte. What
// the unary interceptors do for a call, the stream does per request:
// authorization with the method's own rule (auth.go), on the keyspace the
// request names, for the identity the stream was opened with. The stream
// itself is admitted to any authenticated caller and passes the admission
// tap, since it is long-lived: each request inside is admitted on its own.
//
// Batching is natural, never timed: the writer sends whatever replies are
// queued when it wakes, so a lone request's reply leaves as soon as it is
// ready, and replies share a message only when they finish while the
// previous message is being sent.

// maxBatchReplyBytes bounds one BatchResponse, under the 4 MiB that a gRPC
// client accepts by default: a message that filled up goes out and the rest
// follow in the next.
const maxBatchReplyBytes = 3 << 20

// batchWorkers bounds the goroutines a stream keeps for its requests. A
// request runs on an idle one, which keeps its grown stack as gRPC's stream
// workers do (see NumStreamWorkers in node.go); when all are busy it gets a
// new goroutine, as a unary call would.
const batchWorkers = 64

// batchKinds names each request kind's unary method, whose rule
// authorizes it.
var batchKinds = map[string]string{
	"get":    kvpb.KV_Get_FullMethodName,
	"put":    kvpb.KV_Put_FullMethodName,
	"delete": kvpb.KV_Delete_FullMethodName,
	"scan":   kvpb.KV_Scan_FullMethodName,
}

// batchStopping returns the channel stopBatches closes.
func (n *Node) batchStopping() <-chan struct{} {
	n.batchStopOnce.Do(func() { n.batchStop = make(chan struct{}) })
	return n.batchStop
}

// startDrain tells the Batch streams that the node is stopping. A graceful
// stop waits for every stream to end, and a Batch stream ends only when its
// client closes it: so each stream tells its client to (write), which then
// sends its next requests elsewhere, and the node answers what the stream
// carried before it ends.
// Drain and Stop call it; only the first call acts.
func (n *Node) stopBatches() {
	n.batchStopping()
	n.batchStopped.Do(func() { close(n.batchStop) })
}

// Batch serves one client's stream until the client closes it or the
// stream breaks.
func (s kvServer) Batch(stream kvpb.KV_BatchServer) error {
	b := &batchStream{
		s:       s,
		ctx:     stream.Context(),
		running: make(map[uint64]context.CancelFunc),
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		pool:    newWorkerPool(),
	}
	defer b.pool.stop()
	writer := make(chan error, 1)
	go func() { writer <- b.write(stream) }()
	for {
		req, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				// The stream broke: its context is canceled, so the
				// requests running end soon, and there is no one to
				// answer.
				<-writer
				return err
			}
			// The client closed its side: answer what is running, then
			// end the stream.
			b.wg.Wait()
			close(b.closing)
			return <-writer
		}
		for _, id := range req.GetCancel() {
			b.abandon(id)
		}
		for _, it := range req.GetItems() {
			b.start(it)
		}
	}
}

// batchStream is the state of one Batch stream.
type batchStream struct {
	s   kvServer
	ctx context.Context
	wg  sync.WaitGroup

	mu sync.Mutex
	// running holds the cancel function of each request in flight, by ID.
	running map[uint64]context.CancelFunc
	// replies are queued for the writer.
	replies []*kvpb.BatchReply

	wake    chan struct{} // a reply was queued (capacity 1)
	closing chan struct{} // closed when the writer should flush and return

	pool workerPool
}

// start runs one request.
func (b *batchStream) start(it *kvpb.BatchItem) {
	id := it.GetId()
	var ctx context.Context
	var cancel context.CancelFunc
	if t := it.GetTimeoutUs(); t > 0 {
		ctx, cancel = context.WithTimeout(b.ctx, time.Duration(t)*time.Microsecond)
	} else {
		ctx, cancel = context.WithCancel(b.ctx)
	}
	b.mu.Lock()
	if _, dup := b.running[id]; dup {
		b.mu.Unlock()
		cancel()
		b.reply(&kvpb.BatchReply{Id: id, Status: statusBytes(invalidArgument(fmt.Sprintf(
			"batch request id %d is already in flight on this stream; ids must be unique among requests in flight", id)))})
		return
	}
	b.running[id] = cancel
	b.mu.Unlock()
	b.wg.Add(1)
	b.pool.submit(func() {
		defer b.wg.Done()
		r := b.run(ctx, it)
		cancel()
		b.mu.Lock()
		_, live := b.running[id]
		delete(b.running, id)
		b.mu.Unlock()
		if live { // an abandoned request has no one waiting for it
			b.reply(r)
		}
	})
}

// abandon cancels a request the client no longer waits for.
func (b *batchStream) abandon(id uint64) {
	b.mu.Lock()
	cancel, ok := b.running[id]
	delete(b.running, id)
	b.mu.Unlock()
	if ok {
		cancel()
	}
}

// run authorizes and serves one request with its unary handler.
func (b *batchStream) run(ctx context.Context, it *kvpb.BatchItem) *kvpb.BatchReply {
	r := &kvpb.BatchReply{Id: it.GetId()}
	var err error
	switch q := it.GetRequest().(type) {
	case *kvpb.BatchItem_Get:
		if err = b.authorize(batchKinds["get"], q.Get); err == nil {
			var resp *kvpb.GetResponse
			if resp, err = b.s.Get(ctx, q.Get); err == nil {
				r.Response = &kvpb.BatchReply_Get{Get: resp}
			}
		}
	case *kvpb.BatchItem_Put:
		if err = b.authorize(batchKinds["put"], q.Put); err == nil {
			var resp *kvpb.PutResponse
			if resp, err = b.s.Put(ctx, q.Put); err == nil {
				r.Response = &kvpb.BatchReply_Put{Put: resp}
			}
		}
	case *kvpb.BatchItem_Delete:
		if err = b.authorize(batchKinds["delete"], q.Delete); err == nil {
			var resp *kvpb.DeleteResponse
			if resp, err = b.s.Delete(ctx, q.Delete); err == nil {
				r.Response = &kvpb.BatchReply_Delete{Delete: resp}
			}
		}
	case *kvpb.BatchItem_Scan:
		if err = b.authorize(batchKinds["scan"], q.Scan); err == nil {
			var resp *kvpb.ScanResponse
			if resp, err = b.s.Scan(ctx, q.Scan); err == nil {
				r.Response = &kvpb.BatchReply_Scan{Scan: resp}
			}
		}
	default:
		err = invalidArgument(fmt.Sprintf("batch request id %d carries no get, put, delete or scan", it.GetId()))
	}
	if err != nil {
		r.Status = statusBytes(err)
	}
	return r
}

// authorize applies the unary method's rule to one request, for the caller
// who opened the stream. An insecure node authorizes nothing, as for unary
// calls.
func (b *batchStream) authorize(method string, req any) error {
	if b.s.n.auth == nil {
		return nil
	}
	return b.s.n.auth.check(b.ctx, method, req)
}

// statusBytes serializes the status a unary handler's err would have become
// on the wire: a status error as it is, a context error as gRPC converts it
// (status.FromContextError), anything else as Unknown.
func statusBytes(err error) []byte {
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	b, merr := proto.Marshal(st.Proto())
	if merr != nil {
		b, _ = proto.Marshal(status.New(codes.Internal, fmt.Sprintf("encoding a batch reply's status: %v", merr)).Proto())
	}
	return b
}

// reply queues r for the writer.
func (b *batchStream) reply(r *kvpb.BatchReply) {
	b.mu.Lock()
	b.replies = append(b.replies, r)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// write sends the queued replies each time it wakes, until the stream's
// context ends or closing is closed (after a last flush).
func (b *batchStream) write(stream kvpb.KV_BatchServer) error {
	var spare []*kvpb.BatchReply
	drain := b.s.n.batchStopping()
	for {
		final := false
		select {
		case <-b.wake:
		case <-b.closing:
			final = true
		case <-drain:
			drain = nil // told once
			if err := stream.Send(&kvpb.BatchResponse{Draining: true}); err != nil {
				return err
			}
			continue
		case <-b.ctx.Done():
			return status.FromContextError(b.ctx.Err()).Err()
		}
		b.mu.Lock()
		batch := b.replies
		b.replies = spare[:0]
		b.mu.Unlock()
		if err := sendReplies(stream, batch); err != nil {
			return err
		}
		clear(batch)
		spare = batch
		if final {
			return nil
		}
	}
}

// sendReplies sends batch in as few messages as maxBatchReplyBytes allows.
func sendReplies(stream kvpb.KV_BatchServer, batch []*kvpb.BatchReply) error {
	for len(batch) > 0 {
		n, size := 0, 0
		for n < len(batch) {
			sz := proto.Size(batch[n])
			if n > 0 && size+sz > maxBatchReplyBytes {
				break
			}
			size += sz
			n++
		}
		if err := stream.Send(&kvpb.BatchResponse{Replies: batch[:n]}); err != nil {
			return err
		}
		batch = batch[n:]
	}
	return nil
}

package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// Batching: the data calls (Get, Put, Delete, Scan and the conditional
// writes) go to a node over one long-lived KV.Batch stream per connection
// instead of one gRPC call each. A sender goroutine takes whatever requests
// are queued when it wakes and sends them in one message; a receiver
// goroutine hands each reply to the call waiting for its ID. Nothing waits
// on a timer: a lone request is sent the moment the sender wakes, and
// batches grow only when requests arrive while the previous message is
// being sent, that is with load.
//
// The stream changes how a request travels, not what it means: the caller
// still goes through invoke, which picks the node, retries and classifies
// errors. A reply's failure is the status the unary call would have
// returned (the node runs the same handler), and a request counts as sent,
// for ErrUnknownOutcome, from the moment the sender hands it to the
// stream, as a unary request does once gRPC has a stream for it. A stream
// that breaks fails every request in flight on it with the stream's error,
// which is what a unary call cut off the same way reports.

// Bounds of one BatchRequest. A node accepts a message of at least 4 MiB
// (more when its values may be larger); a request bigger than the bound goes
// alone, as it would unary.
const (
	maxBatchBytes = 1 << 20
	maxBatchItems = 1024
	// batchOverhead is an estimate of a request's bytes beyond its key
	// and value.
	batchOverhead = 64
	// batchRecvMax is the largest reply message the SDK accepts on the
	// stream: a node fills messages to 3 MiB, but a single reply (a scan of
	// large values) may be bigger, as a unary reply may.
	batchRecvMax = 64 << 20
)

// batchers holds a Client's batcher per connection.
type batchers struct {
	mu     sync.Mutex
	m      map[*grpc.ClientConn]*batcher
	closed bool           // set by Close, after which no batcher starts
	wg     sync.WaitGroup // the batchers' goroutines, waited for by Close
}

// close stops new batchers and waits for the goroutines of the others,
// which end with the client's context.
func (bs *batchers) close() {
	bs.mu.Lock()
	bs.closed = true
	bs.mu.Unlock()
	bs.wg.Wait()
}

// batcherFor returns the batcher of cc, starting it on first use, or nil
// once the client is closed.
func (c *Client) batcherFor(cc *grpc.ClientConn) *batcher {
	bs := &c.batch
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b, ok := bs.m[cc]; ok {
		return b
	}
	if bs.closed {
		return nil
	}
	if bs.m == nil {
		bs.m = make(map[*grpc.ClientConn]*batcher)
	}
	b := &batcher{c: c, cc: cc, wake: make(chan struct{}, 1)}
	bs.m[cc] = b
	bs.wg.Add(1)
	go b.send()
	return b
}

// batchState is where a batched request stands.
type batchState uint8

const (
	batchQueued    batchState = iota // waiting for the sender
	batchInFlight                    // handed to the stream
	batchDone                        // answered or failed; done is closed
	batchWithdrawn                   // the caller left before it was sent
)

// batchCall is one request on its way.
type batchCall struct {
	item *kvpb.BatchItem
	size int // estimated bytes
	// deadline is the caller's, zero when none.
	deadline time.Time
	done     chan struct{}

	// Set under the batcher's lock.
	state  batchState
	stream *batchStream // the stream it was sent on
	reply  *kvpb.BatchReply
	err    error // the stream's failure, when there is no reply
}

// batcher sends one connection's requests.
type batcher struct {
	c    *Client
	cc   *grpc.ClientConn
	wake chan struct{} // capacity 1
	// unsupported is set once the node answered the stream with
	// Unimplemented (it predates KV.Batch): its requests go unary.
	unsupported atomic.Bool

	mu     sync.Mutex
	queue  []*batchCall
	nextID uint64
	// stream is the open stream, nil before the first request and after
	// one broke or was retired.
	stream *batchStream
	// retired streams get no new requests; the sender closes their send
	// side, after which the node answers what they carry and ends them.
	retired []*batchStream
}

// batchStream is one KV.Batch stream.
type batchStream struct {
	s      kvpb.KV_BatchClient
	cancel context.CancelFunc
	addr   net.Addr
	// Under the batcher's lock:
	inflight map[uint64]*batchCall
	cancels  []uint64 // abandoned IDs to tell the node
	broken   bool
	retired  bool
	answered bool // a reply came on it
	// renewAt is when the login token the stream was opened with is due
	// for renewal; zero without tokens.
	renewAt time.Time
}

// errBatchUnsupported fails the requests of a stream the node does not
// implement. None of them ran, so they are sent again as unary calls.
var errBatchUnsupported = errors.New("client: the node does not serve the Batch stream")

func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// do sends item on the stream and waits for its reply or for ctx. It
// returns the reply on success and the status error otherwise, and fills in
// the grpc.Peer call option of co when the request was sent, as a unary call
// does, since invoke decides from it whether a failed write's outcome is
// unknown.
func (b *batcher) do(ctx context.Context, item *kvpb.BatchItem, size int, co []grpc.CallOption) (*kvpb.BatchReply, error) {
	if b == nil {
		return nil, status.Error(codes.Canceled, "client is closed")
	}
	if b.c.tokens != nil {
		// A unary call logs in (when the token is due) within its
		// caller's deadline; so does a batched one, here, rather than in
		// the sender when it opens a stream, where no caller's deadline
		// applies. With a valid token this is a lock and a comparison.
		if _, err := b.c.tokens.get(ctx); err != nil {
			return nil, err
		}
	}
	call := &batchCall{item: item, size: size, done: make(chan struct{})}
	call.deadline, _ = ctx.Deadline()
	b.mu.Lock()
	b.queue = append(b.queue, call)
	b.mu.Unlock()
	b.signal()
	select {
	case <-call.done:
	case <-ctx.Done():
		if st, left := b.withdraw(call); left {
			if st != nil {
				markSent(co, st.addr)
			}
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		<-call.done // answered as the caller left
	}
	if errors.Is(call.err, errBatchUnsupported) {
		return nil, call.err
	}
	if call.stream != nil {
		markSent(co, call.stream.addr)
	}
	if call.err != nil {
		return nil, call.err
	}
	if len(call.reply.GetStatus()) > 0 {
		err := replyStatus(call.reply.GetStatus())
		if status.Code(err) == codes.Unauthenticated && b.c.tokens != nil {
			// The stream carries the token it was opened with: once the
			// node refuses it, new requests need a new stream, with the
			// token invoke is about to fetch.
			b.retire(call.stream)
		}
		return nil, err
	}
	return call.reply, nil
}

// withdraw takes back a request whose caller left. It reports whether it
// did (false when the request was answered meanwhile), and the stream it
// had been sent on, if any; the node is told to cancel it.
func (b *batcher) withdraw(call *batchCall) (*batchStream, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch call.state {
	case batchQueued:
		call.state = batchWithdrawn
		return nil, true
	case batchInFlight:
		st := call.stream
		delete(st.inflight, call.item.GetId())
		call.state = batchDone
		if !st.broken {
			st.cancels = append(st.cancels, call.item.GetId())
			defer b.signal()
		}
		return st, true
	}
	return nil, false
}

// retire stops sending new requests on st.
func (b *batcher) retire(st *batchStream) {
	b.mu.Lock()
	if b.stream == st && !st.broken {
		b.stream = nil
		st.retired = true
		b.retired = append(b.retired, st)
	}
	b.mu.Unlock()
	b.signal()
}

// markSent fills in the grpc.Peer call options of co with addr.
func markSent(co []grpc.CallOption, addr net.Addr) {
	for _, o := range co {
		if p, ok := o.(grpc.PeerCallOption); ok && p.PeerAddr != nil {
			p.PeerAddr.Addr = addr
		}
	}
}

// replyStatus decodes a reply's google.rpc.Status into the error a unary
// call would have returned.
func replyStatus(b []byte) error {
	var sp spb.Status
	if err := proto.Unmarshal(b, &sp); err != nil {
		return status.Errorf(codes.Internal, "batch reply carries an undecodable status: %v", err)
	}
	if sp.GetCode() == int32(codes.OK) {
		return status.Error(codes.Internal, "batch reply carries a status of OK and no response")
	}
	return status.ErrorProto(&sp)
}

// send is the sender goroutine: each time it wakes it sends what is queued.
func (b *batcher) send() {
	defer b.c.batch.wg.Done()
	var batch []*batchCall
	msg := &kvpb.BatchRequest{}
	for {
		select {
		case <-b.wake:
		case <-b.c.bg.Done():
			b.shutdown()
			return
		}
		b.mu.Lock()
		retired := b.retired
		b.retired = nil
		st := b.stream
		b.mu.Unlock()
		for _, r := range retired {
			b.flushCancels(r, msg)
			if err := r.s.CloseSend(); err != nil {
				r.cancel()
			}
		}
		if st != nil && !st.renewAt.IsZero() && time.Now().After(st.renewAt) {
			// Its token is about to expire: new requests go on a new
			// stream, which logs in again (retire signals the loop).
			b.retire(st)
			continue
		}
		if st == nil {
			var err error
			if st, err = b.open(); err != nil {
				b.failQueued(err)
				continue
			}
		}
		for {
			var live bool
			batch, msg, live = b.take(st, batch[:0], msg)
			if !live {
				// The stream broke since the sender looked: open another
				// for what is queued.
				b.signal()
				break
			}
			if len(msg.Items) == 0 && len(msg.Cancel) == 0 {
				break
			}
			err := st.s.Send(msg)
			clear(msg.Items)
			msg.Items, msg.Cancel = msg.Items[:0], msg.Cancel[:0]
			clear(batch)
			if err != nil {
				// The stream broke: the receiver learns why from Recv and
				// fails what is in flight, these requests included, since
				// part of the message may have left. Nothing more goes on
				// it. The stream is not cancelled here: gRPC has already
				// ended it (a transport failure shows as io.EOF, any other
				// failure ends the stream), and cancelling it would race
				// Recv's real status (Unavailable, which a read retries on
				// another node) with a Canceled that looks like the
				// caller's own and is not retried. The receiver cancels it
				// once Recv returns.
				b.mu.Lock()
				st.broken = true
				if b.stream == st {
					b.stream = nil
				}
				b.mu.Unlock()
				b.signal()
				break
			}
		}
	}
}

// take moves the queued requests that fit in one message from the queue to
// st's in-flight set and into msg, with st's pending cancellations. A
// request whose deadline passed while queued fails without being sent. It
// reports false, taking nothing, when st has broken.
func (b *batcher) take(st *batchStream, batch []*batchCall, msg *kvpb.BatchRequest) ([]*batchCall, *kvpb.BatchRequest, bool) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if st.broken {
		return batch, msg, false
	}
	msg.Cancel = append(msg.Cancel, st.cancels...)
	st.cancels = st.cancels[:0]
	size, n := 0, 0
	for _, call := range b.queue {
		if call.state != batchQueued {
			n++
			continue
		}
		if len(batch) > 0 && (size+call.size > maxBatchBytes || len(batch) >= maxBatchItems) {
			break
		}
		n++
		if !call.deadline.IsZero() {
			left := call.deadline.Sub(now)
			if left <= 0 {
				call.state = batchDone
				call.err = status.Error(codes.DeadlineExceeded, "deadline passed before the request was sent")
				close(call.done)
				continue
			}
			call.item.TimeoutUs = uint64(max(left/time.Microsecond, 1))
		}
		b.nextID++
		call.item.Id = b.nextID
		call.state = batchInFlight
		call.stream = st
		st.inflight[call.item.Id] = call
		size += call.size
		batch = append(batch, call)
		msg.Items = append(msg.Items, call.item)
	}
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	return batch, msg, true
}

// flushCancels sends a retired stream's last cancellations.
func (b *batcher) flushCancels(st *batchStream, msg *kvpb.BatchRequest) {
	b.mu.Lock()
	ids := append([]uint64(nil), st.cancels...)
	st.cancels = nil
	b.mu.Unlock()
	if len(ids) > 0 {
		_ = st.s.Send(&kvpb.BatchRequest{Cancel: ids}) // a failure shows in Recv
	}
}

// open starts a stream and its receiver.
func (b *batcher) open() (*batchStream, error) {
	ctx, cancel := context.WithCancel(b.c.bg)
	s, err := kvpb.NewKVClient(b.cc).Batch(ctx, grpc.MaxCallRecvMsgSize(batchRecvMax))
	if err != nil {
		cancel()
		return nil, err
	}
	st := &batchStream{s: s, cancel: cancel, inflight: make(map[uint64]*batchCall)}
	if b.c.tokens != nil {
		st.renewAt = b.c.tokens.refreshAt()
	}
	if p, ok := peer.FromContext(s.Context()); ok && p.Addr != nil {
		st.addr = p.Addr
	} else {
		st.addr = targetAddr(b.cc.Target())
	}
	b.mu.Lock()
	b.stream = st
	b.mu.Unlock()
	b.c.batch.wg.Add(1)
	go b.receive(st)
	return st, nil
}

// targetAddr stands for a node's address when gRPC does not tell it.
type targetAddr string

func (a targetAddr) Network() string { return "tcp" }
func (a targetAddr) String() string  { return string(a) }

// receive is a stream's receiver goroutine: it hands each reply to its
// call, and fails every call in flight when the stream ends.
func (b *batcher) receive(st *batchStream) {
	defer b.c.batch.wg.Done()
	defer st.cancel()
	for {
		resp, err := st.s.Recv()
		if err != nil {
			b.broken(st, err)
			return
		}
		if resp.GetDraining() {
			// The node is stopping: it answers what this stream carries
			// once the sender closes it; new requests go on a new stream
			// (to this node while it still accepts them, else elsewhere).
			b.retire(st)
		}
		b.mu.Lock()
		st.answered = true
		for _, r := range resp.GetReplies() {
			call, ok := st.inflight[r.GetId()]
			if !ok {
				continue // abandoned by its caller
			}
			delete(st.inflight, r.GetId())
			call.reply = r
			call.state = batchDone
			close(call.done)
		}
		b.mu.Unlock()
	}
}

// broken fails every call in flight on st with the stream's error.
func (b *batcher) broken(st *batchStream, err error) {
	if errors.Is(err, io.EOF) {
		// The node ended the stream as if finished: only a retired stream
		// ends so, once answered; anything still in flight is lost.
		err = status.Error(codes.Unavailable, "batch stream ended by the node with requests in flight")
	}
	b.mu.Lock()
	if status.Code(err) == codes.Unimplemented && !st.answered {
		b.unsupported.Store(true)
		err = errBatchUnsupported
	}
	st.broken = true
	if b.stream == st {
		b.stream = nil
	}
	for id, call := range st.inflight {
		delete(st.inflight, id)
		call.err = err
		call.state = batchDone
		close(call.done)
	}
	b.mu.Unlock()
}

// failQueued fails every queued call, none of which was sent, with the
// error of opening the stream.
func (b *batcher) failQueued(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, call := range b.queue {
		if call.state == batchQueued {
			call.err = err
			call.state = batchDone
			close(call.done)
		}
	}
	clear(b.queue)
	b.queue = b.queue[:0]
}

// shutdown ends the batcher when the client closes: the streams' contexts
// derive from the client's, so they are canceled and their receivers fail
// what is in flight; what is queued fails unsent.
func (b *batcher) shutdown() {
	b.failQueued(status.Error(codes.Canceled, "client is closed"))
}

// unsupportedNode reports whether the node answered the stream with
// Unimplemented; true for a nil batcher too, so that a call after Close
// takes the unary path, which reports the closed client.
func (b *batcher) unsupportedNode() bool { return b == nil || b.unsupported.Load() }

// batchItemSize estimates a request's bytes for the message bound.
func batchItemSize(parts ...[]byte) int {
	n := batchOverhead
	for _, p := range parts {
		n += len(p)
	}
	return n
}

// Each of the calls below sends one request kind, on the stream unless
// Config.DisableBatching, and has the signature of the unary method.

func (c *Client) callGet(ctx context.Context, cc *grpc.ClientConn, req *kvpb.GetRequest, co ...grpc.CallOption) (*kvpb.GetResponse, error) {
	b := c.batcherFor(cc)
	if c.cfg.DisableBatching || b.unsupportedNode() {
		return kvpb.NewKVClient(cc).Get(ctx, req, co...)
	}
	r, err := b.do(ctx, &kvpb.BatchItem{Request: &kvpb.BatchItem_Get{Get: req}}, batchItemSize(req.GetKey()), co)
	if errors.Is(err, errBatchUnsupported) {
		return kvpb.NewKVClient(cc).Get(ctx, req, co...)
	}
	if err != nil {
		return nil, err
	}
	if g := r.GetGet(); g != nil {
		return g, nil
	}
	return nil, mismatched("get", r)
}

func (c *Client) callPut(ctx context.Context, cc *grpc.ClientConn, req *kvpb.PutRequest, co ...grpc.CallOption) (*kvpb.PutResponse, error) {
	b := c.batcherFor(cc)
	if c.cfg.DisableBatching || b.unsupportedNode() {
		return kvpb.NewKVClient(cc).Put(ctx, req, co...)
	}
	r, err := b.do(ctx, &kvpb.BatchItem{Request: &kvpb.BatchItem_Put{Put: req}}, batchItemSize(req.GetKey(), req.GetValue(), req.GetCondition().GetValue()), co)
	if errors.Is(err, errBatchUnsupported) {
		return kvpb.NewKVClient(cc).Put(ctx, req, co...)
	}
	if err != nil {
		return nil, err
	}
	if p := r.GetPut(); p != nil {
		return p, nil
	}
	return nil, mismatched("put", r)
}

func (c *Client) callDelete(ctx context.Context, cc *grpc.ClientConn, req *kvpb.DeleteRequest, co ...grpc.CallOption) (*kvpb.DeleteResponse, error) {
	b := c.batcherFor(cc)
	if c.cfg.DisableBatching || b.unsupportedNode() {
		return kvpb.NewKVClient(cc).Delete(ctx, req, co...)
	}
	r, err := b.do(ctx, &kvpb.BatchItem{Request: &kvpb.BatchItem_Delete{Delete: req}}, batchItemSize(req.GetKey(), req.GetCondition().GetValue()), co)
	if errors.Is(err, errBatchUnsupported) {
		return kvpb.NewKVClient(cc).Delete(ctx, req, co...)
	}
	if err != nil {
		return nil, err
	}
	if d := r.GetDelete(); d != nil {
		return d, nil
	}
	return nil, mismatched("delete", r)
}

func (c *Client) callScan(ctx context.Context, cc *grpc.ClientConn, req *kvpb.ScanRequest, co ...grpc.CallOption) (*kvpb.ScanResponse, error) {
	b := c.batcherFor(cc)
	if c.cfg.DisableBatching || b.unsupportedNode() {
		return kvpb.NewKVClient(cc).Scan(ctx, req, co...)
	}
	r, err := b.do(ctx, &kvpb.BatchItem{Request: &kvpb.BatchItem_Scan{Scan: req}}, batchItemSize(req.GetPrefix(), req.GetStart(), req.GetEnd()), co)
	if errors.Is(err, errBatchUnsupported) {
		return kvpb.NewKVClient(cc).Scan(ctx, req, co...)
	}
	if err != nil {
		return nil, err
	}
	if s := r.GetScan(); s != nil {
		return s, nil
	}
	return nil, mismatched("scan", r)
}

// mismatched is the error of a reply of the wrong kind: a node bug, and the
// request was sent, so a write's outcome is unknown.
func mismatched(kind string, r *kvpb.BatchReply) error {
	return status.Error(codes.Internal, fmt.Sprintf("batch reply %d to a %s carries a %T", r.GetId(), kind, r.GetResponse()))
}

package node

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// A coordinator's messages to one peer (Read, Write, Hint, Paxos) travel
// over one long-lived Peer.Stream per peer connection instead of one gRPC
// call each, the way the SDK's requests travel over KV.Batch (client/batch.go):
// a sender goroutine takes whatever is queued when it wakes and sends it as
// one message; a receiver goroutine hands each reply to the request waiting
// for its ID. Nothing waits on a timer, so a lone request leaves at once and
// batches grow only with load.
//
// Each request carries the time left before its deadline, which the replica
// applies to the request's context. A request whose caller gives up is
// withdrawn: never sent if still queued, else the replica is told to cancel
// it. A stream that breaks fails every request in flight on it with the
// stream's error, at once, as a unary call cut off the same way would fail:
// the coordinator counts it as a replica that did not answer. A peer that
// answers Unimplemented (a node from before the stream) gets its requests
// as unary calls, and the stream is tried again after peerStreamRetry.

// Bounds of one PeerStreamRequest: a request larger than the bound goes
// alone.
const (
	maxPeerStreamBytes = 1 << 20
	maxPeerStreamItems = 1024
)

// postDelay bounds how long a posted request (peerStream.post) waits for
// a request that wakes the sender before it wakes the sender itself.
const postDelay = time.Millisecond

// peerStreamRetry is how long a peer that did not implement Peer.Stream
// gets unary calls before the stream is tried again (it may have been
// upgraded).
const peerStreamRetry = 30 * time.Second

// peerStream sends one peer connection's requests.
type peerStream struct {
	cc   *grpc.ClientConn
	wake chan struct{} // capacity 1
	stop chan struct{} // closed by close
	wg   sync.WaitGroup
	// unsupportedUntil is when to try the stream again after the peer
	// answered Unimplemented (unix nanoseconds; 0: it did not).
	unsupportedUntil atomic.Int64

	mu     sync.Mutex
	queue  []*peerCall
	nextID uint64
	cur    *peerConn // the open stream; nil before the first request and after one broke
	closed bool
	// postTimer, when set, wakes the sender for posted requests postDelay
	// after the first of them was queued.
	postTimer *time.Timer
	postDelay time.Duration
}

// peerConn is one Peer.Stream.
type peerConn struct {
	s      kvpb.Peer_StreamClient
	cancel context.CancelFunc
	// Under the peerStream's lock:
	inflight map[uint64]*peerCall
	cancels  []uint64 // withdrawn IDs to tell the peer
	broken   bool
	answered bool // a reply came on it
}

type peerCallState uint8

const (
	peerQueued    peerCallState = iota // waiting for the sender
	peerInFlight                       // handed to the stream
	peerDone                           // answered or failed; done is closed
	peerWithdrawn                      // the caller left before it was sent
)

// peerCall is one request on its way.
type peerCall struct {
	item     *kvpb.PeerStreamItem
	size     int
	deadline time.Time     // the caller's; zero when none
	done     chan struct{} // nil for a posted request: nobody waits

	// Under the peerStream's lock:
	state peerCallState
	reply *kvpb.PeerStreamReply
	err   error
	conn  *peerConn
}

func newPeerStream(cc *grpc.ClientConn) *peerStream {
	ps := &peerStream{cc: cc, wake: make(chan struct{}, 1), stop: make(chan struct{}), postDelay: postDelay}
	ps.wg.Add(1)
	go ps.send()
	return ps
}

// unsupported reports whether the peer recently answered Unimplemented.
func (ps *peerStream) unsupported() bool {
	u := ps.unsupportedUntil.Load()
	return u != 0 && time.Now().UnixNano() < u
}

func (ps *peerStream) signal() {
	select {
	case ps.wake <- struct{}{}:
	default:
	}
}

// do sends item and waits for its reply or for ctx. It returns the reply on
// success, and otherwise the replica's status error, the stream's error, or
// errPeerStreamUnsupported when the request should go unary.
func (ps *peerStream) do(ctx context.Context, item *kvpb.PeerStreamItem) (*kvpb.PeerStreamReply, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	call := &peerCall{item: item, size: proto.Size(item), done: make(chan struct{})}
	call.deadline, _ = ctx.Deadline()
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return nil, errBatcherClosed
	}
	ps.queue = append(ps.queue, call)
	ps.mu.Unlock()
	ps.signal()
	select {
	case <-call.done:
	case <-ctx.Done():
		if ps.withdraw(call) {
			return nil, ctx.Err()
		}
		<-call.done // answered as the caller left
	}
	if call.err != nil {
		return nil, call.err
	}
	if len(call.reply.GetStatus()) > 0 {
		return nil, peerReplyStatus(call.reply.GetStatus())
	}
	return call.reply, nil
}

// post queues item to go unanswered (NoReply) with the next message the
// sender sends, or within postDelay when no request wakes it before: a
// Paxos commit sent after the client's answer rides with the next
// round's propose instead of making a message, a reply and a goroutine of
// its own. A request still queued when its deadline passes, or when the
// stream breaks or closes, is dropped: its sender asked for no outcome.
func (ps *peerStream) post(deadline time.Time, item *kvpb.PeerStreamItem) error {
	item.NoReply = true
	call := &peerCall{item: item, size: proto.Size(item), deadline: deadline}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return errBatcherClosed
	}
	ps.queue = append(ps.queue, call)
	if ps.postTimer == nil {
		var t *time.Timer
		t = time.AfterFunc(ps.postDelay, func() {
			ps.mu.Lock()
			if ps.postTimer == t {
				ps.postTimer = nil
			}
			ps.mu.Unlock()
			ps.signal()
		})
		ps.postTimer = t
	}
	return nil
}

// finish ends a call with err, waking its caller if it has one.
func (call *peerCall) finish(err error) {
	call.err = err
	call.state = peerDone
	if call.done != nil {
		close(call.done)
	}
}

// withdraw takes back a request whose caller left, and reports whether it
// did (false when it was answered meanwhile).
func (ps *peerStream) withdraw(call *peerCall) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch call.state {
	case peerQueued:
		call.state = peerWithdrawn
		return true
	case peerInFlight:
		c := call.conn
		delete(c.inflight, call.item.GetId())
		call.state = peerDone
		if !c.broken {
			c.cancels = append(c.cancels, call.item.GetId())
			defer ps.signal()
		}
		return true
	}
	return false
}

// send is the sender goroutine: each time it wakes it sends what is queued.
func (ps *peerStream) send() {
	defer ps.wg.Done()
	msg := &kvpb.PeerStreamRequest{}
	for {
		select {
		case <-ps.wake:
		case <-ps.stop:
			return
		}
		ps.mu.Lock()
		c := ps.cur
		empty := len(ps.queue) == 0
		ps.mu.Unlock()
		if c == nil {
			if empty {
				continue
			}
			var err error
			if c, err = ps.open(); err != nil {
				ps.failQueued(err)
				continue
			}
		}
		for {
			if !ps.take(c, msg) {
				// The stream broke since the sender looked: open another
				// for what is queued.
				ps.signal()
				break
			}
			if len(msg.Items) == 0 && len(msg.Cancel) == 0 {
				break
			}
			err := c.s.Send(msg)
			clear(msg.Items)
			msg.Items, msg.Cancel = msg.Items[:0], msg.Cancel[:0]
			if err != nil {
				// The stream broke: the receiver learns why from Recv and
				// fails what is in flight, this message's requests
				// included, since part of it may have left. It is not
				// cancelled here: gRPC has ended it already (a transport
				// failure shows as io.EOF, any other failure ends the
				// stream), and cancelling would race Recv's real status
				// (Unavailable) with a Canceled that reads as the caller
				// giving up (the SDK's batcher had the same race:
				// TestRetryAfterEndpointClosed). The receiver cancels it
				// once Recv returns.
				ps.mu.Lock()
				if ps.cur == c {
					ps.cur = nil
				}
				ps.mu.Unlock()
				ps.signal()
				break
			}
		}
	}
}

// take moves the queued requests that fit in one message into c's in-flight
// set and into msg, with c's pending cancellations. A request whose deadline
// passed while queued fails unsent. It reports false, taking nothing, when
// c has broken.
func (ps *peerStream) take(c *peerConn, msg *kvpb.PeerStreamRequest) bool {
	now := time.Now()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if c.broken || ps.cur != c {
		return false
	}
	msg.Cancel = append(msg.Cancel, c.cancels...)
	c.cancels = c.cancels[:0]
	size, n := 0, 0
	for _, call := range ps.queue {
		if call.state != peerQueued {
			n++
			continue
		}
		if len(msg.Items) > 0 && (size+call.size > maxPeerStreamBytes || len(msg.Items) >= maxPeerStreamItems) {
			break
		}
		n++
		if !call.deadline.IsZero() {
			left := call.deadline.Sub(now)
			if left <= 0 {
				call.finish(status.Error(codes.DeadlineExceeded, "deadline passed before the request was sent to the peer"))
				continue
			}
			call.item.TimeoutUs = uint64(max(left/time.Microsecond, 1))
		}
		ps.nextID++
		call.item.Id = ps.nextID
		if call.done == nil {
			call.state = peerDone // posted: no reply will come
		} else {
			call.state = peerInFlight
			call.conn = c
			c.inflight[call.item.Id] = call
		}
		size += call.size
		msg.Items = append(msg.Items, call.item)
	}
	rest := copy(ps.queue, ps.queue[n:])
	clear(ps.queue[rest:])
	ps.queue = ps.queue[:rest]
	if rest == 0 && ps.postTimer != nil {
		// What was posted left with this message.
		ps.postTimer.Stop()
		ps.postTimer = nil
	}
	return true
}

// open starts a stream and its receiver.
func (ps *peerStream) open() (*peerConn, error) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-ps.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	s, err := kvpb.NewPeerClient(ps.cc).Stream(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	c := &peerConn{s: s, cancel: cancel, inflight: make(map[uint64]*peerCall)}
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		cancel()
		return nil, errBatcherClosed
	}
	ps.cur = c
	ps.wg.Add(1)
	ps.mu.Unlock()
	go ps.receive(c)
	return c, nil
}

// receive is a stream's receiver goroutine: it hands each reply to its
// call, and fails every call in flight when the stream ends.
func (ps *peerStream) receive(c *peerConn) {
	defer ps.wg.Done()
	defer c.cancel()
	for {
		resp, err := c.s.Recv()
		if err != nil {
			ps.broken(c, err)
			return
		}
		ps.mu.Lock()
		c.answered = true
		for _, r := range resp.GetReplies() {
			call, ok := c.inflight[r.GetId()]
			if !ok {
				continue // withdrawn by its caller
			}
			delete(c.inflight, r.GetId())
			call.reply = r
			call.state = peerDone
			close(call.done)
		}
		ps.mu.Unlock()
	}
}

// broken fails every call in flight on c with the stream's error.
func (ps *peerStream) broken(c *peerConn, err error) {
	if errors.Is(err, io.EOF) {
		// The peer ended the stream (it is stopping) with requests in
		// flight: they may or may not have run.
		err = status.Error(codes.Unavailable, "peer stream ended by the peer with requests in flight")
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if status.Code(err) == codes.Unimplemented && !c.answered {
		ps.unsupportedUntil.Store(time.Now().Add(peerStreamRetry).UnixNano())
		err = errPeerStreamUnsupported
	}
	c.broken = true
	if ps.cur == c {
		ps.cur = nil
	}
	for id, call := range c.inflight {
		delete(c.inflight, id)
		call.err = err
		call.state = peerDone
		close(call.done)
	}
}

// failQueued fails every queued call, none of which was sent.
func (ps *peerStream) failQueued(err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, call := range ps.queue {
		if call.state == peerQueued {
			call.finish(err)
		}
	}
	clear(ps.queue)
	ps.queue = ps.queue[:0]
}

// close stops the sender, ends the stream (failing what is in flight) and
// fails what is queued, then waits for the stream's goroutines.
func (ps *peerStream) close() {
	ps.mu.Lock()
	if ps.closed {
		ps.mu.Unlock()
		return
	}
	ps.closed = true
	close(ps.stop)
	ps.mu.Unlock()
	ps.wg.Wait()
	ps.failQueued(errBatcherClosed)
}

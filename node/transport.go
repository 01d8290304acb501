package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/replication"
)

// peerTransport implements replication.Transport over gRPC, with one
// long-lived connection per peer address, and calls the local replica
// directly when the target is this node.
type peerTransport struct {
	self    string
	local   *replication.Replica
	resolve func(id string) (addr string, ok bool)
	dialer  *net.Dialer
	creds   credentials.TransportCredentials // mutual TLS, or insecure
	// dialOpts are added to every peer connection's (tracing).
	dialOpts []grpc.DialOption
	hooks    *testHooks // injected link latency; nil in production

	// timeout bounds one coalesced write RPC.
	timeout time.Duration

	// unaryOnly sends every peer message as a unary call, as nodes did
	// before Peer.Stream (tests and measurements compare the two).
	unaryOnly bool

	mu       sync.Mutex
	conns    map[string]*grpc.ClientConn // by address
	batchers map[string]*writeBatcher    // by address
	streams  map[string]*peerStream      // by address
	// closed refuses new connections once Close has run: a request handler
	// that Stop cut off may still be running, and a connection or batcher
	// it opened then would never be closed.
	closed bool
}

func newPeerTransport(self string, local *replication.Replica, bindHost string, resolve func(string) (string, bool), sec *security.Material) *peerTransport {
	creds := insecure.NewCredentials()
	if sec != nil {
		// The node's own certificate authenticates it to its peers.
		creds = sec.PeerCredentials()
	}
	return &peerTransport{
		creds:   creds,
		self:    self,
		local:   local,
		resolve: resolve,
		// Bind outgoing connections to this node's own address, so that
		// network rules written against node addresses see its traffic.
		dialer:   &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(bindHost)}},
		conns:    map[string]*grpc.ClientConn{},
		batchers: map[string]*writeBatcher{},
		streams:  map[string]*peerStream{},
		timeout:  2 * time.Second,
	}
}

func (t *peerTransport) client(id string) (kvpb.PeerClient, error) {
	addr, ok := t.resolve(id)
	if !ok {
		return nil, fmt.Errorf("peer %s: no known address", id)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errBatcherClosed
	}
	cc, ok := t.conns[addr]
	if !ok {
		var err error
		opts := append([]grpc.DialOption{
			grpc.WithTransportCredentials(t.creds),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
				return t.dialer.DialContext(ctx, "tcp", a)
			}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
		}, t.dialOpts...)
		cc, err = grpc.NewClient(addr, opts...)
		if err != nil {
			return nil, fmt.Errorf("peer %s at %s: %w", id, addr, err)
		}
		t.conns[addr] = cc
	}
	return kvpb.NewPeerClient(cc), nil
}

// call sends one peer request to node to: to the local replica directly
// when to is this node, otherwise over to's connection, after the link
// delay the test hooks inject. Every peer call goes through it, so that the
// local shortcut and the delay are the same for all of them. remote has the
// shape of a kvpb.PeerClient method expression (kvpb.PeerClient.Read), so
// most callers pass one.
func call[Req, Resp any](ctx context.Context, t *peerTransport, to string, req Req,
	local func(context.Context, Req) (Resp, error),
	remote func(kvpb.PeerClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
) (Resp, error) {
	if to == t.self {
		return local(ctx, req)
	}
	var zero Resp
	c, err := t.client(to)
	if err != nil {
		return zero, err
	}
	if err := sleepCtx(ctx, t.hooks.peerDelay(to)); err != nil {
		return zero, err
	}
	return remote(c, ctx, req)
}

// streamed returns a remote function for call that sends a request over
// the peer's Peer.Stream as the item wrap makes of it and takes the
// response out of the reply with unwrap, or sends it with unary when the
// peer does not serve the stream.
func streamed[Req, Resp any](t *peerTransport, to string,
	wrap func(Req) *kvpb.PeerStreamItem,
	unwrap func(*kvpb.PeerStreamReply) (Resp, bool),
	unary func(kvpb.PeerClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
) func(kvpb.PeerClient, context.Context, Req, ...grpc.CallOption) (Resp, error) {
	return func(c kvpb.PeerClient, ctx context.Context, req Req, _ ...grpc.CallOption) (Resp, error) {
		var zero Resp
		ps, err := t.stream(to)
		if err != nil {
			return zero, err
		}
		// A sampled request goes unary, so that its trace shows a span
		// per replica call under the request (otelgrpc traces calls, and
		// the stream is one long call); the unsampled rest is batched.
		if ps == nil || ps.unsupported() || trace.SpanContextFromContext(ctx).IsSampled() {
			return unary(c, ctx, req)
		}
		r, err := ps.do(ctx, wrap(req))
		if errors.Is(err, errPeerStreamUnsupported) {
			return unary(c, ctx, req)
		}
		if err != nil {
			return zero, err
		}
		resp, ok := unwrap(r)
		if !ok {
			return zero, status.Errorf(codes.Internal, "peer stream reply %d carries a %T for a %T", r.GetId(), r.GetResponse(), req)
		}
		return resp, nil
	}
}

// stream returns the Peer.Stream sender of a peer's address, or nil when
// the transport sends unary calls only.
func (t *peerTransport) stream(to string) (*peerStream, error) {
	if t.unaryOnly {
		return nil, nil
	}
	addr, _ := t.resolve(to)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errBatcherClosed
	}
	ps, ok := t.streams[addr]
	if !ok {
		cc, ok := t.conns[addr]
		if !ok {
			return nil, errBatcherClosed
		}
		ps = newPeerStream(cc)
		t.streams[addr] = ps
	}
	return ps, nil
}

// Write implements replication.Transport. Remote writes go through the
// peer's write batcher, which coalesces concurrent writes into one RPC.
func (t *peerTransport) Write(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	return call(ctx, t, to, req, t.local.Write, func(c kvpb.PeerClient, ctx context.Context, req *kvpb.ReplicaWriteRequest, _ ...grpc.CallOption) (*kvpb.ReplicaWriteResponse, error) {
		b, err := t.batcher(to, c)
		if err != nil {
			return nil, err
		}
		return b.Write(ctx, req)
	})
}

// batcher returns the write coalescer of a peer's address.
func (t *peerTransport) batcher(to string, c kvpb.PeerClient) (*writeBatcher, error) {
	addr, _ := t.resolve(to)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errBatcherClosed
	}
	b, ok := t.batchers[addr]
	if !ok {
		b = &writeBatcher{
			send: func(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
				return streamed(t, to, writeItem, writeReply, kvpb.PeerClient.Write)(c, ctx, req)
			},
			from: t.self, maxInflight: maxInflightPerPeer, maxBatch: maxBatchMutations, timeout: t.timeout,
		}
		t.batchers[addr] = b
	}
	return b, nil
}

// Read implements replication.Transport.
func (t *peerTransport) Read(ctx context.Context, to string, req *kvpb.ReplicaReadRequest) (*kvpb.ReplicaReadResponse, error) {
	return call(ctx, t, to, req, t.local.Read, streamed(t, to,
		func(r *kvpb.ReplicaReadRequest) *kvpb.PeerStreamItem {
			return &kvpb.PeerStreamItem{Request: &kvpb.PeerStreamItem_Read{Read: r}}
		},
		func(r *kvpb.PeerStreamReply) (*kvpb.ReplicaReadResponse, bool) {
			return r.GetRead(), r.GetRead() != nil
		},
		kvpb.PeerClient.Read))
}

// Scan implements replication.Transport.
func (t *peerTransport) Scan(ctx context.Context, to string, req *kvpb.ReplicaScanRequest) (*kvpb.ReplicaScanResponse, error) {
	return call(ctx, t, to, req, t.local.Scan, kvpb.PeerClient.Scan)
}

// Hint implements replication.Transport.
func (t *peerTransport) Hint(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	return call(ctx, t, to, req, t.local.Hint, streamed(t, to,
		func(r *kvpb.ReplicaWriteRequest) *kvpb.PeerStreamItem {
			return &kvpb.PeerStreamItem{Request: &kvpb.PeerStreamItem_Hint{Hint: r}}
		},
		func(r *kvpb.PeerStreamReply) (*kvpb.ReplicaWriteResponse, bool) {
			return r.GetHint(), r.GetHint() != nil
		},
		kvpb.PeerClient.Hint))
}

// Paxos implements replication.Transport.
func (t *peerTransport) Paxos(ctx context.Context, to string, req *kvpb.PaxosRequest) (*kvpb.PaxosResponse, error) {
	return call(ctx, t, to, req, t.local.Paxos, streamed(t, to,
		func(r *kvpb.PaxosRequest) *kvpb.PeerStreamItem {
			return &kvpb.PeerStreamItem{Request: &kvpb.PeerStreamItem_Paxos{Paxos: r}}
		},
		func(r *kvpb.PeerStreamReply) (*kvpb.PaxosResponse, bool) { return r.GetPaxos(), r.GetPaxos() != nil },
		kvpb.PeerClient.Paxos))
}

// PostPaxos implements replication.PaxosPoster: req goes over the peer's
// stream, unanswered, with the next message (peerStream.post).
func (t *peerTransport) PostPaxos(ctx context.Context, to string, req *kvpb.PaxosRequest) error {
	if to == t.self || t.hooks.peerDelay(to) > 0 || trace.SpanContextFromContext(ctx).IsSampled() {
		return replication.ErrNotPosted
	}
	if _, err := t.client(to); err != nil {
		return err
	}
	ps, err := t.stream(to)
	if err != nil {
		return err
	}
	if ps == nil || ps.unsupported() {
		return replication.ErrNotPosted
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(t.timeout)
	}
	return ps.post(deadline, &kvpb.PeerStreamItem{Request: &kvpb.PeerStreamItem_Paxos{Paxos: req}})
}

func writeItem(r *kvpb.ReplicaWriteRequest) *kvpb.PeerStreamItem {
	return &kvpb.PeerStreamItem{Request: &kvpb.PeerStreamItem_Write{Write: r}}
}

func writeReply(r *kvpb.PeerStreamReply) (*kvpb.ReplicaWriteResponse, bool) {
	return r.GetWrite(), r.GetWrite() != nil
}

// adminClient returns an Admin client for another node's gRPC address, over
// the same long-lived connections.
func (t *peerTransport) adminClient(id string) (kvpb.AdminClient, error) {
	if _, err := t.client(id); err != nil {
		return nil, err
	}
	addr, _ := t.resolve(id)
	t.mu.Lock()
	defer t.mu.Unlock()
	cc, ok := t.conns[addr]
	if !ok {
		return nil, errBatcherClosed
	}
	return kvpb.NewAdminClient(cc), nil
}

// Close closes every connection and batcher; later calls fail with
// errBatcherClosed.
func (t *peerTransport) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, b := range t.batchers {
		b.close()
	}
	t.batchers = map[string]*writeBatcher{}
	for _, ps := range t.streams {
		ps.close()
	}
	t.streams = map[string]*peerStream{}
	for _, cc := range t.conns {
		cc.Close()
	}
	t.conns = map[string]*grpc.ClientConn{}
}

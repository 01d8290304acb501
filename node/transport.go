package node

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptkv/adaptkv/api/kvpb"
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
	hooks   *testHooks // injected link latency; nil in production

	// timeout bounds one coalesced write RPC.
	timeout time.Duration

	mu       sync.Mutex
	conns    map[string]*grpc.ClientConn // by address
	batchers map[string]*writeBatcher    // by address
	// closed refuses new connections once Close has run: a request handler
	// that Stop cut off may still be running, and a connection or batcher
	// it opened then would never be closed.
	closed bool
}

func newPeerTransport(self string, local *replication.Replica, bindHost string, resolve func(string) (string, bool)) *peerTransport {
	return &peerTransport{
		self:    self,
		local:   local,
		resolve: resolve,
		// Bind outgoing connections to this node's own address, so that
		// network rules written against node addresses see its traffic.
		dialer:   &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(bindHost)}},
		conns:    map[string]*grpc.ClientConn{},
		batchers: map[string]*writeBatcher{},
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
		cc, err = grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
				return t.dialer.DialContext(ctx, "tcp", a)
			}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
		)
		if err != nil {
			return nil, fmt.Errorf("peer %s at %s: %w", id, addr, err)
		}
		t.conns[addr] = cc
	}
	return kvpb.NewPeerClient(cc), nil
}

func (t *peerTransport) Write(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	if to == t.self {
		return t.local.Write(ctx, req)
	}
	c, err := t.client(to)
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, t.hooks.peerDelay(to)); err != nil {
		return nil, err
	}
	b, err := t.batcher(to, c)
	if err != nil {
		return nil, err
	}
	return b.Write(ctx, req)
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
				return c.Write(ctx, req)
			},
			from: t.self, maxInflight: maxInflightPerPeer, maxBatch: maxBatchMutations, timeout: t.timeout,
		}
		t.batchers[addr] = b
	}
	return b, nil
}

func (t *peerTransport) Read(ctx context.Context, to string, req *kvpb.ReplicaReadRequest) (*kvpb.ReplicaReadResponse, error) {
	if to == t.self {
		return t.local.Read(ctx, req)
	}
	c, err := t.client(to)
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, t.hooks.peerDelay(to)); err != nil {
		return nil, err
	}
	return c.Read(ctx, req)
}

func (t *peerTransport) Scan(ctx context.Context, to string, req *kvpb.ReplicaScanRequest) (*kvpb.ReplicaScanResponse, error) {
	if to == t.self {
		return t.local.Scan(ctx, req)
	}
	c, err := t.client(to)
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, t.hooks.peerDelay(to)); err != nil {
		return nil, err
	}
	return c.Scan(ctx, req)
}

func (t *peerTransport) Hint(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	if to == t.self {
		return t.local.Hint(ctx, req)
	}
	c, err := t.client(to)
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, t.hooks.peerDelay(to)); err != nil {
		return nil, err
	}
	return c.Hint(ctx, req)
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
	for _, cc := range t.conns {
		cc.Close()
	}
	t.conns = map[string]*grpc.ClientConn{}
}

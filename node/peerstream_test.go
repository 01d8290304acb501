package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication"
)

// The peer stream is tested over real gRPC on loopback, between a real
// peerTransport and a real gRPC server running servePeerStream; only the
// replica behind the server is a stand-in (scriptedReplica), so that a test
// can hold a request, see its context, and kill the server mid-batch.

// scriptedReplica answers peer requests: a read of a key in hold waits for
// the key's channel to close (or for its context), and every request's
// context is reported on seen.
type scriptedReplica struct {
	kvpb.UnimplementedPeerServer
	hold map[string]chan struct{}
	seen chan seenRequest
	// noStream makes the server a node from before Peer.Stream.
	noStream bool
	// paxos, when set, gets every Paxos request.
	paxos    chan *kvpb.PaxosRequest
	stopping chan struct{}
}

type seenRequest struct {
	key string
	ctx context.Context
}

func (r *scriptedReplica) Read(ctx context.Context, req *kvpb.ReplicaReadRequest) (*kvpb.ReplicaReadResponse, error) {
	k := string(req.GetKey())
	if r.seen != nil {
		r.seen <- seenRequest{key: k, ctx: ctx}
	}
	if ch, ok := r.hold[k]; ok {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if k == "missing" {
		return nil, status.Error(codes.NotFound, "no such key")
	}
	return &kvpb.ReplicaReadResponse{Record: &kvpb.Record{Key: req.GetKey(), Value: []byte("value of " + k)}}, nil
}

func (r *scriptedReplica) Write(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	resp := &kvpb.ReplicaWriteResponse{}
	for range req.GetMutations() {
		resp.Results = append(resp.Results, &kvpb.MutationResult{})
	}
	return resp, nil
}

func (r *scriptedReplica) Hint(ctx context.Context, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	return r.Write(ctx, req)
}

func (r *scriptedReplica) Paxos(ctx context.Context, req *kvpb.PaxosRequest) (*kvpb.PaxosResponse, error) {
	if r.paxos != nil {
		r.paxos <- req
	}
	return &kvpb.PaxosResponse{}, nil
}

func (r *scriptedReplica) Stream(stream kvpb.Peer_StreamServer) error {
	if r.noStream {
		return r.UnimplementedPeerServer.Stream(stream)
	}
	return servePeerStream(stream, r, r.stopping, nil)
}

// servePeer serves r on a loopback port and returns a transport whose peer
// "n2" is that server, and the server.
func servePeer(t *testing.T, r *scriptedReplica) (*peerTransport, *grpc.Server) {
	t.Helper()
	if r.stopping == nil {
		r.stopping = make(chan struct{})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	kvpb.RegisterPeerServer(gs, r)
	go gs.Serve(ln)
	addr := ln.Addr().String()
	tr := newPeerTransport("n1", nil, "127.0.0.1", func(string) (string, bool) { return addr, true }, nil)
	t.Cleanup(func() {
		tr.Close()
		gs.Stop()
	})
	return tr, gs
}

func readReq(key string) *kvpb.ReplicaReadRequest {
	return &kvpb.ReplicaReadRequest{Keyspace: "ks", Key: []byte(key)}
}

// peerStreamOf returns the transport's stream to n2, nil when there is none.
func peerStreamOf(tr *peerTransport) *peerStream {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, ps := range tr.streams {
		return ps
	}
	return nil
}

// A held request does not hold back the requests behind it: each runs on
// its own worker and its reply comes back by ID as soon as it is ready, and
// every reply reaches its own caller.
func TestPeerStreamRepliesOutOfOrder(t *testing.T) {
	release := make(chan struct{})
	tr, _ := servePeer(t, &scriptedReplica{hold: map[string]chan struct{}{"slow": release}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	slow := make(chan error, 1)
	go func() {
		resp, err := tr.Read(ctx, "n2", readReq("slow"))
		if err == nil && string(resp.GetRecord().GetValue()) != "value of slow" {
			err = fmt.Errorf("slow read answered %q", resp.GetRecord().GetValue())
		}
		slow <- err
	}()
	// Many fast reads, concurrently, while the slow one is held.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := fmt.Sprintf("k%d", i)
			resp, err := tr.Read(ctx, "n2", readReq(k))
			switch {
			case err != nil:
				errs <- fmt.Errorf("read %s: %w", k, err)
			case string(resp.GetRecord().GetValue()) != "value of "+k:
				errs <- fmt.Errorf("read %s answered %q: a reply reached the wrong caller", k, resp.GetRecord().GetValue())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	select {
	case err := <-slow:
		t.Fatalf("the held read returned before it was released: %v", err)
	default:
	}
	// An error status travels by ID too.
	if _, err := tr.Read(ctx, "n2", readReq("missing")); status.Code(err) != codes.NotFound {
		t.Errorf("read of a missing key: %v, want NotFound", err)
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	if peerStreamOf(tr) == nil {
		t.Fatal("the reads did not go over a peer stream")
	}
}

// The replica runs each item under the caller's deadline (carried as time
// left), not under the stream's, which has none.
func TestPeerStreamItemDeadline(t *testing.T) {
	seen := make(chan seenRequest, 1)
	tr, _ := servePeer(t, &scriptedReplica{seen: seen})
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
	defer cancel()
	want, _ := ctx.Deadline()
	if _, err := tr.Read(ctx, "n2", readReq("a")); err != nil {
		t.Fatal(err)
	}
	s := <-seen
	got, ok := s.ctx.Deadline()
	if !ok {
		t.Fatal("the replica ran the request without a deadline")
	}
	if d := got.Sub(want); d > time.Second || d < -time.Second {
		t.Fatalf("the replica's deadline is %v off the caller's", d)
	}
}

// A caller that gives up withdraws its request: the replica's context for
// it is canceled, and the stream stays usable.
func TestPeerStreamCancellation(t *testing.T) {
	seen := make(chan seenRequest, 4)
	hold := make(chan struct{})
	defer close(hold)
	tr, _ := servePeer(t, &scriptedReplica{seen: seen, hold: map[string]chan struct{}{"held": hold}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := tr.Read(ctx, "n2", readReq("held")); done <- err }()
	s := <-seen // the replica is running it
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled read: %v, want context.Canceled", err)
	}
	select {
	case <-s.ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the replica's context for a withdrawn request was not canceled")
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if _, err := tr.Read(rctx, "n2", readReq("after")); err != nil {
		t.Fatalf("read after a withdrawal: %v", err)
	}
}

// A request canceled while still queued is withdrawn, and the sender skips
// it. (No sender runs here, so the request stays queued.)
func TestPeerStreamWithdrawsQueued(t *testing.T) {
	ps := &peerStream{wake: make(chan struct{}, 1), stop: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := ps.do(ctx, &kvpb.PeerStreamItem{}); done <- err }()
	for {
		ps.mu.Lock()
		n := len(ps.queue)
		ps.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("withdrawn request: %v, want context.Canceled", err)
	}
	c := &peerConn{inflight: map[uint64]*peerCall{}}
	ps.cur = c
	msg := &kvpb.PeerStreamRequest{}
	if !ps.take(c, msg) || len(msg.Items) != 0 || len(c.inflight) != 0 {
		t.Fatalf("the sender took a withdrawn request: %d items", len(msg.Items))
	}
}

// A peer that dies with a batch in flight fails every request of it at
// once, with an error, rather than leaving them to their deadlines.
func TestPeerStreamPeerDiesMidBatch(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	const n = 40
	seen := make(chan seenRequest, n)
	tr, gs := servePeer(t, &scriptedReplica{seen: seen, hold: map[string]chan struct{}{"held": hold}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make(chan error, n)
	for range n {
		go func() { _, err := tr.Read(ctx, "n2", readReq("held")); errs <- err }()
	}
	for range n {
		<-seen // all are running on the replica
	}
	start := time.Now()
	gs.Stop() // the peer dies: its connections close
	for i := range n {
		select {
		case err := <-errs:
			if err == nil {
				t.Fatalf("request %d succeeded on a dead peer", i)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("request %d waited for its deadline: %v", i, err)
			}
			// A dead peer is unavailable; Canceled would read as the
			// caller giving up.
			if code := status.Code(err); code != codes.Unavailable {
				t.Fatalf("request %d failed with %v (%v), want Unavailable", i, code, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d requests still wait %v after the peer died", n-i, n, time.Since(start))
		}
	}
	// The next request gets an error too (nothing listens), not a hang.
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	if _, err := tr.Read(rctx, "n2", readReq("x")); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read from a dead peer: %v, want a prompt error", err)
	}
}

// A peer from before Peer.Stream answers it Unimplemented: the requests go
// as unary calls, and later ones skip the stream.
func TestPeerStreamFallsBackToUnary(t *testing.T) {
	tr, _ := servePeer(t, &scriptedReplica{noStream: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 3 {
		resp, err := tr.Read(ctx, "n2", readReq("a"))
		if err != nil {
			t.Fatalf("read %d from an old peer: %v", i, err)
		}
		if string(resp.GetRecord().GetValue()) != "value of a" {
			t.Fatalf("read %d answered %q", i, resp.GetRecord().GetValue())
		}
	}
	w := &kvpb.ReplicaWriteRequest{Mutations: []*kvpb.Mutation{{Keyspace: "ks", Record: &kvpb.Record{Key: []byte("k")}}}}
	if resp, err := tr.Write(ctx, "n2", w); err != nil || len(resp.GetResults()) != 1 {
		t.Fatalf("write to an old peer: %v, %v", resp, err)
	}
	if ps := peerStreamOf(tr); ps == nil || !ps.unsupported() {
		t.Fatal("the transport did not note that the peer lacks the stream")
	}
}

// Writes, hints and Paxos messages travel on the stream and come back as
// their kind's response.
func TestPeerStreamCarriesEveryKind(t *testing.T) {
	tr, _ := servePeer(t, &scriptedReplica{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := &kvpb.ReplicaWriteRequest{Mutations: []*kvpb.Mutation{{Keyspace: "ks", Record: &kvpb.Record{Key: []byte("k")}}, {Keyspace: "ks", Record: &kvpb.Record{Key: []byte("l")}}}}
	if resp, err := tr.Write(ctx, "n2", w); err != nil || len(resp.GetResults()) != 2 {
		t.Fatalf("write: %v, %v", resp, err)
	}
	if resp, err := tr.Hint(ctx, "n2", w); err != nil || len(resp.GetResults()) != 2 {
		t.Fatalf("hint: %v, %v", resp, err)
	}
	if _, err := tr.Paxos(ctx, "n2", &kvpb.PaxosRequest{}); err != nil {
		t.Fatalf("paxos: %v", err)
	}
	if ps := peerStreamOf(tr); ps == nil || ps.unsupported() {
		t.Fatal("the requests did not go over the peer stream")
	}
}

// A posted Paxos commit goes with the next request to the peer, or on its
// own once postDelay passes, and gets no reply: nothing is left in flight
// for it.
func TestPeerStreamPostsWithTheNextRequest(t *testing.T) {
	seen := make(chan *kvpb.PaxosRequest, 4)
	tr, _ := servePeer(t, &scriptedReplica{paxos: seen})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := tr.Read(ctx, "n2", readReq("a")); err != nil { // opens the stream
		t.Fatal(err)
	}
	ps := peerStreamOf(tr)
	ps.mu.Lock()
	ps.postDelay = time.Hour // only a request can take it now
	ps.mu.Unlock()

	commit := func(key string) *kvpb.PaxosRequest {
		return &kvpb.PaxosRequest{Kind: kvpb.PaxosRequest_COMMIT, Keyspace: "ks", Key: []byte(key)}
	}
	// arrives waits for the replica to get the commit of key.
	arrives := func(key, missing string) {
		t.Helper()
		select {
		case req := <-seen:
			if string(req.GetKey()) != key {
				t.Fatalf("the replica got a commit of %q, want %q", req.GetKey(), key)
			}
		case <-ctx.Done():
			t.Fatal(missing)
		}
	}
	if err := tr.PostPaxos(ctx, "n2", commit("posted")); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-seen:
		t.Fatalf("the posted commit of %q left before any request woke the sender", req.GetKey())
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := tr.Read(ctx, "n2", readReq("b")); err != nil {
		t.Fatal(err)
	}
	arrives("posted", "the posted commit did not go with the next request")

	ps.mu.Lock()
	ps.postDelay = time.Millisecond
	ps.mu.Unlock()
	if err := tr.PostPaxos(ctx, "n2", commit("alone")); err != nil {
		t.Fatal(err)
	}
	arrives("alone", "a posted commit with no request after it was never sent")
	ps.mu.Lock()
	inflight, queued := len(ps.cur.inflight), len(ps.queue)
	ps.mu.Unlock()
	if inflight != 0 || queued != 0 {
		t.Fatalf("%d requests in flight and %d queued after the posts; want none", inflight, queued)
	}
	if err := tr.PostPaxos(ctx, "n1", commit("self")); !errors.Is(err, replication.ErrNotPosted) {
		t.Fatalf("posting to this node: %v; want ErrNotPosted", err)
	}
}

package client

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// Batch serves the fake node's requests over the stream with its unary
// methods, one goroutine and one message per reply, so that every transport
// test of this package runs over the stream as the SDK sends by default.
// It honours each request's timeout and ignores cancellations.
func (s kvSrv) Batch(stream kvpb.KV_BatchServer) error {
	s.fakeNode.mu.Lock()
	s.calls["Batch"]++
	s.fakeNode.mu.Unlock()
	var mu sync.Mutex // one Send at a time
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, it := range req.GetItems() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := stream.Context(), context.CancelFunc(func() {})
				if t := it.GetTimeoutUs(); t > 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Microsecond)
				}
				defer cancel()
				r := &kvpb.BatchReply{Id: it.GetId()}
				var err error
				switch q := it.GetRequest().(type) {
				case *kvpb.BatchItem_Get:
					var resp *kvpb.GetResponse
					resp, err = s.Get(ctx, q.Get)
					r.Response = &kvpb.BatchReply_Get{Get: resp}
				case *kvpb.BatchItem_Put:
					var resp *kvpb.PutResponse
					resp, err = s.Put(ctx, q.Put)
					r.Response = &kvpb.BatchReply_Put{Put: resp}
				case *kvpb.BatchItem_Delete:
					var resp *kvpb.DeleteResponse
					resp, err = s.Delete(ctx, q.Delete)
					r.Response = &kvpb.BatchReply_Delete{Delete: resp}
				case *kvpb.BatchItem_Scan:
					var resp *kvpb.ScanResponse
					resp, err = s.Scan(ctx, q.Scan)
					r.Response = &kvpb.BatchReply_Scan{Scan: resp}
				}
				if err != nil {
					r.Response = nil
					r.Status, _ = proto.Marshal(status.Convert(err).Proto())
				}
				mu.Lock()
				defer mu.Unlock()
				stream.Send(&kvpb.BatchResponse{Replies: []*kvpb.BatchReply{r}})
			}()
		}
	}
}

// unaryOnlyKV is a node that predates the Batch stream.
type unaryOnlyKV struct {
	kvpb.UnimplementedKVServer
	gets int
}

func (s *unaryOnlyKV) Get(ctx context.Context, req *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	s.gets++
	return &kvpb.GetResponse{Found: true, Value: []byte("unary")}, nil
}

func (s *unaryOnlyKV) Put(ctx context.Context, req *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	return &kvpb.PutResponse{Version: &kvpb.Version{Timestamp: 1 << 16}, Applied: true}, nil
}

// A node without the Batch stream answers it Unimplemented: the requests
// that rode on it never ran, so the SDK sends them, writes included, as
// unary calls, and keeps to unary calls on that connection.
func TestBatchFallsBackToUnaryOnOldNodes(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	old := &unaryOnlyKV{}
	kvpb.RegisterKVServer(srv, old)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	c, err := New(context.Background(), Config{Endpoints: []string{lis.Addr().String()}, DisableRouting: true, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatalf("put to a node without the stream: %v", err)
	}
	for range 3 {
		got, err := c.Get(ctx, []byte("k"))
		if err != nil || string(got.Value) != "unary" {
			t.Fatalf("get: %+v, %v", got, err)
		}
	}
	if old.gets != 3 {
		t.Fatalf("the old node served %d gets, want 3", old.gets)
	}
}

// A request whose caller leaves while it is queued is withdrawn: it fails
// with the caller's context error, is reported as never sent (so a write's
// outcome is known), and the sender skips it. One that is in flight is
// abandoned: reported as sent, and its ID goes to the node as a
// cancellation. The sender is not running here, so the request stays where
// the test puts it.
func TestBatchWithdrawQueuedAndAbandonInFlight(t *testing.T) {
	c := &Client{}
	c.bg, c.stop = context.WithCancel(context.Background())
	defer c.stop()
	b := &batcher{c: c, wake: make(chan struct{}, 1)}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	var p peer.Peer
	_, err := b.do(ctx, &kvpb.BatchItem{Request: &kvpb.BatchItem_Get{Get: &kvpb.GetRequest{}}}, 10, []grpc.CallOption{grpc.Peer(&p)})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("queued request whose deadline passed: %v, want DeadlineExceeded", err)
	}
	if p.Addr != nil {
		t.Fatalf("a withdrawn request is reported sent to %v", p.Addr)
	}
	st := &batchStream{inflight: map[uint64]*batchCall{}, addr: targetAddr("n1:1")}
	batch, msg, live := b.take(st, nil, &kvpb.BatchRequest{})
	if !live || len(batch) != 0 || len(msg.GetItems()) != 0 || len(b.queue) != 0 {
		t.Fatalf("sender took %d requests (%d left queued) after the only one was withdrawn", len(msg.GetItems()), len(b.queue))
	}

	// In flight: the sender takes it, then its caller leaves.
	ctx2, cancel2 := context.WithCancel(context.Background())
	var p2 peer.Peer
	errc := make(chan error, 1)
	go func() {
		_, err := b.do(ctx2, &kvpb.BatchItem{Request: &kvpb.BatchItem_Put{Put: &kvpb.PutRequest{}}}, 10, []grpc.CallOption{grpc.Peer(&p2)})
		errc <- err
	}()
	for {
		b.mu.Lock()
		n := len(b.queue)
		b.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	_, msg, _ = b.take(st, nil, &kvpb.BatchRequest{})
	if len(msg.GetItems()) != 1 {
		t.Fatalf("sender took %d requests, want 1", len(msg.GetItems()))
	}
	id := msg.GetItems()[0].GetId()
	cancel2()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("abandoned request: %v, want Canceled", err)
	}
	if p2.Addr == nil {
		t.Fatal("an abandoned in-flight request is reported unsent: a write's outcome would pass for known")
	}
	_, msg, _ = b.take(st, nil, &kvpb.BatchRequest{})
	if len(msg.GetCancel()) != 1 || msg.GetCancel()[0] != id || len(st.inflight) != 0 {
		t.Fatalf("next message cancels %v (in flight %d), want [%d] and nothing in flight", msg.GetCancel(), len(st.inflight), id)
	}
}

// By default every data call rides on one stream per node.
func TestBatchCarriesDataCalls(t *testing.T) {
	n := startNode(t, "n1")
	c, err := New(context.Background(), Config{Endpoints: []string{n.addr}, DisableRouting: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if _, err := c.Get(ctx, []byte("k")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Delete(ctx, []byte("k")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Scan(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []string{"Get", "Put", "Delete", "Scan"} {
		if got := n.count(m); got != 2 {
			t.Errorf("%s served %d times, want 2", m, got)
		}
	}
	if got := n.count("Batch"); got != 1 {
		t.Errorf("%d Batch streams opened, want 1 for all eight calls", got)
	}
}

package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// slowLinks makes every replica request n sends take d.
func slowLinks(t *testing.T, n *node.Node, d time.Duration) {
	t.Helper()
	resp, err := http.Post("http://"+n.Addrs().HTTP+"/unsafe/link?to=*&delay="+d.String(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("link hook: %s", resp.Status)
	}
}

// hookedPair is a two-node cluster with test hooks and keyspace "b" of
// replication factor 2, so that a write at the default level (quorum) waits
// for the second node.
func hookedPair(t *testing.T, configure func(i int, cfg *node.Config)) *clustertest.Cluster {
	t.Helper()
	c := clustertest.New(t, 2, func(o *clustertest.Options) {
		o.Configure = func(i int, cfg *node.Config) {
			cfg.UnsafeTestHooks = true
			if configure != nil {
				configure(i, cfg)
			}
		}
	})
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.Client(t).CreateKeyspace(ctx, "b", client.KeyspaceSpec{ReplicationFactor: 2}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "keyspace reaches node 0", func() error {
		_, err := clientFor(t, c.Node(0).Addrs().GRPC).DescribeKeyspace(ctx, "b")
		return err
	})
	return c
}

func putItem(id uint64, key string) *kvpb.BatchItem {
	return &kvpb.BatchItem{Id: id, Request: &kvpb.BatchItem_Put{Put: &kvpb.PutRequest{Keyspace: "b", Key: []byte(key), Value: []byte("v")}}}
}

// replyStatus decodes a reply's status; nil on success.
func replyStatus(t *testing.T, r *kvpb.BatchReply) *status.Status {
	t.Helper()
	if len(r.GetStatus()) == 0 {
		return nil
	}
	var sp spb.Status
	if err := proto.Unmarshal(r.GetStatus(), &sp); err != nil {
		t.Fatalf("reply %d: status does not decode: %v", r.GetId(), err)
	}
	return status.FromProto(&sp)
}

// recvUntilEOF reads replies until the node ends the stream.
func recvUntilEOF(t *testing.T, s kvpb.KV_BatchClient) []*kvpb.BatchReply {
	t.Helper()
	var out []*kvpb.BatchReply
	for {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		out = append(out, resp.GetReplies()...)
	}
}

// Replies come back as requests finish, each with its request's ID; each
// request has its own deadline; a request the client cancels is not
// answered; the node answers everything else before ending a stream the
// client closed.
func TestBatchRepliesByIDAsTheyFinish(t *testing.T) {
	t.Parallel()
	c := hookedPair(t, nil)
	n := c.Node(0)
	slowLinks(t, n, 500*time.Millisecond)
	ctx := ctxT(t, 30*time.Second)
	s, err := kvpb.NewKVClient(rawConn(t, n.Addrs().GRPC, insecure.NewCredentials())).Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short := putItem(9, "short")
	short.TimeoutUs = uint64((50 * time.Millisecond) / time.Microsecond)
	err = s.Send(&kvpb.BatchRequest{Items: []*kvpb.BatchItem{
		putItem(7, "slow"), // waits 500ms for the second replica
		{Id: 3, Request: &kvpb.BatchItem_Get{Get: &kvpb.GetRequest{Keyspace: "b"}}}, // empty key: refused at once
		short,               // its deadline passes first
		putItem(11, "gone"), // canceled below
		{Id: 12},            // carries nothing
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&kvpb.BatchRequest{Cancel: []uint64{11}}); err != nil {
		t.Fatal(err)
	}
	first, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	replies := append(first.GetReplies(), recvUntilEOF(t, s)...)
	pos := map[uint64]int{}
	for i, r := range replies {
		if _, dup := pos[r.GetId()]; dup {
			t.Fatalf("two replies for id %d", r.GetId())
		}
		pos[r.GetId()] = i
	}
	if _, ok := pos[11]; ok || len(replies) != 4 {
		t.Fatalf("replies for ids %v; want 3, 7, 9 and 12, none for the canceled 11", pos)
	}
	if pos[3] > pos[7] || pos[9] > pos[7] {
		t.Errorf("reply order %v: the refusal (3) and the short deadline (9) should not wait for the slow write (7)", pos)
	}
	for _, r := range replies {
		st := replyStatus(t, r)
		switch r.GetId() {
		case 3, 12:
			if st.Code() != codes.InvalidArgument || reasonOf(st.Err()) != api.ReasonInvalidArgument {
				t.Errorf("reply %d: %v; want INVALID_ARGUMENT with its reason, as the unary call", r.GetId(), st)
			}
		case 7:
			if st != nil || !r.GetPut().GetApplied() || r.GetPut().GetReceipt().GetAcked() != 2 {
				t.Errorf("slow write: %v, %v; want applied on both replicas", st, r.GetPut())
			}
		case 9:
			if st.Code() != codes.DeadlineExceeded {
				t.Errorf("write past its own deadline: %v; want DEADLINE_EXCEEDED", st)
			}
		}
	}
}

// Inside one stream each request is authorized by its own method's rule
// for the stream's caller: in one batch a read alice may make is served and
// the writes she may not are refused, nothing written. A caller with no
// identity cannot open the stream at all.
func TestBatchAuthorizesEachRequest(t *testing.T) {
	t.Parallel()
	certs := testCerts(t, "alice")
	c := clustertest.New(t, 1, func(o *clustertest.Options) { o.CertsDir = certs })
	ctx := ctxT(t, 60*time.Second)
	ep := c.Endpoints()[0]
	root := userClient(t, ep, certs, security.RootUser, "")
	if _, err := root.CreateKeyspace(ctx, "orders", client.KeyspaceSpec{ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.CreateUser(ctx, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := root.GrantRole(ctx, "alice", "orders", client.RoleRead); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Put(ctx, []byte("k"), []byte("root"), client.WithKeyspace("orders")); err != nil {
		t.Fatal(err)
	}
	m, err := security.LoadClient(certs, "alice")
	if err != nil {
		t.Fatal(err)
	}
	s, err := kvpb.NewKVClient(rawConn(t, ep, credentials.NewTLS(m.ClientConfig()))).Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(&kvpb.BatchRequest{Items: []*kvpb.BatchItem{
		{Id: 1, Request: &kvpb.BatchItem_Get{Get: &kvpb.GetRequest{Keyspace: "orders", Key: []byte("k")}}},
		{Id: 2, Request: &kvpb.BatchItem_Put{Put: &kvpb.PutRequest{Keyspace: "orders", Key: []byte("k"), Value: []byte("alice")}}},
		{Id: 3, Request: &kvpb.BatchItem_Delete{Delete: &kvpb.DeleteRequest{Keyspace: "orders", Key: []byte("k")}}},
		{Id: 4, Request: &kvpb.BatchItem_Get{Get: &kvpb.GetRequest{Keyspace: "default", Key: []byte("k")}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	replies := recvUntilEOF(t, s)
	if len(replies) != 4 {
		t.Fatalf("%d replies, want 4", len(replies))
	}
	for _, r := range replies {
		st := replyStatus(t, r)
		switch r.GetId() {
		case 1:
			if st != nil || string(r.GetGet().GetValue()) != "root" {
				t.Errorf("alice's read: %v, %v; want root's value", st, r.GetGet())
			}
		case 2, 3:
			if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "alice") || !strings.Contains(st.Message(), `write on keyspace "orders"`) {
				t.Errorf("alice's write %d: %v; want PERMISSION_DENIED naming alice, write and orders", r.GetId(), st)
			}
		case 4:
			if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), `"default"`) {
				t.Errorf("alice's read of a keyspace she has no grant on: %v; want PERMISSION_DENIED", st)
			}
		}
	}
	if got, err := root.Get(ctx, []byte("k"), client.WithKeyspace("orders")); err != nil || string(got.Value) != "root" {
		t.Fatalf("root reads %+v, %v; want its own value, the refused writes not applied", got, err)
	}

	// TLS that verifies the node but presents no certificate and no token.
	anon, err := security.CAClientConfig(certs)
	if err != nil {
		t.Fatal(err)
	}
	s, err = kvpb.NewKVClient(rawConn(t, ep, credentials.NewTLS(anon))).Batch(ctx)
	if err == nil {
		err = s.Send(&kvpb.BatchRequest{Items: []*kvpb.BatchItem{{Id: 1, Request: &kvpb.BatchItem_Get{Get: &kvpb.GetRequest{Keyspace: "orders", Key: []byte("k")}}}}})
		if err == nil || errors.Is(err, io.EOF) {
			_, err = s.Recv()
		}
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous stream: %v; want UNAUTHENTICATED", err)
	}
}

// A node at its admission bound refuses the requests of a batch past it one
// by one, with the unary refusal (OVERLOADED and a retry-after hint), and
// serves the others; the stream itself is not refused.
func TestBatchOverloadRefusesRequestsNotTheStream(t *testing.T) {
	t.Parallel()
	c := hookedPair(t, func(i int, cfg *node.Config) {
		if i == 0 {
			cfg.MaxInflight = 1
		}
	})
	n := c.Node(0)
	slowLinks(t, n, time.Second)
	ctx := ctxT(t, 30*time.Second)
	s, err := kvpb.NewKVClient(rawConn(t, n.Addrs().GRPC, insecure.NewCredentials())).Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&kvpb.BatchRequest{Items: []*kvpb.BatchItem{putItem(1, "a"), putItem(2, "b"), putItem(3, "c")}}); err != nil {
		t.Fatal(err)
	}
	// A stream opened while the node is full opens, and its request is
	// refused on its own.
	eventually(t, 10*time.Second, "the slow write holds the slot", func() error {
		if v := metric(t, n, "adaptkv_requests_inflight"); v != 1 {
			return fmt.Errorf("%v in flight", v)
		}
		return nil
	})
	late, err := kvpb.NewKVClient(rawConn(t, n.Addrs().GRPC, insecure.NewCredentials())).Batch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := late.Send(&kvpb.BatchRequest{Items: []*kvpb.BatchItem{putItem(1, "late")}}); err != nil {
		t.Fatal(err)
	}
	resp, err := late.Recv()
	if err != nil {
		t.Fatalf("a stream opened at the bound: %v; want it open and its request refused", err)
	}
	if st := replyStatus(t, resp.GetReplies()[0]); reasonOf(st.Err()) != api.ReasonOverloaded {
		t.Fatalf("request on a stream opened at the bound: %v; want OVERLOADED", st)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	ok, refused := 0, 0
	for _, r := range recvUntilEOF(t, s) {
		st := replyStatus(t, r)
		if st == nil {
			ok++
			continue
		}
		var hint time.Duration
		for _, d := range st.Details() {
			if ri, isRI := d.(*errdetails.RetryInfo); isRI {
				hint = ri.GetRetryDelay().AsDuration()
			}
		}
		if st.Code() != codes.ResourceExhausted || reasonOf(st.Err()) != api.ReasonOverloaded || hint <= 0 {
			t.Errorf("reply %d: %v (hint %v); want RESOURCE_EXHAUSTED, OVERLOADED, a retry-after hint", r.GetId(), st, hint)
		}
		refused++
	}
	if ok != 1 || refused != 2 {
		t.Fatalf("%d served and %d refused; want 1 and 2 with one slot", ok, refused)
	}
}

// inFlightOn starts puts and gets through n's stream (the SDK with one
// endpoint and no retries) and waits until n has them all in flight. wait
// returns once every call has.
func inFlightOn(t *testing.T, ctx context.Context, n *node.Node, writes, reads int) (putErrs, getErrs []error, wait func()) {
	t.Helper()
	cl := clientFor(t, n.Addrs().GRPC)
	putErrs, getErrs = make([]error, writes), make([]error, reads)
	var wg sync.WaitGroup
	for i := range writes {
		wg.Go(func() {
			_, putErrs[i] = cl.Put(ctx, []byte(fmt.Sprint("w", i)), []byte("v"), client.WithKeyspace("b"))
		})
	}
	for i := range reads {
		wg.Go(func() {
			_, getErrs[i] = cl.Get(ctx, []byte(fmt.Sprint("w", i)), client.WithKeyspace("b"), client.WithConsistency(client.All))
		})
	}
	eventually(t, 10*time.Second, "requests in flight", func() error {
		if v := metric(t, n, "adaptkv_requests_inflight"); int(v) != writes+reads {
			return fmt.Errorf("%v in flight", v)
		}
		return nil
	})
	t.Cleanup(wg.Wait)
	return putErrs, getErrs, wg.Wait
}

// A node that dies with a batch in flight: every write in it fails with
// ErrUnknownOutcome and every read with a retryable Unavailable, at once,
// as unary calls cut off the same way do; none waits for its deadline.
func TestBatchNodeDiesMidBatch(t *testing.T) {
	t.Parallel()
	c := hookedPair(t, nil)
	n := c.Node(0)
	slowLinks(t, n, 3*time.Second)
	ctx := ctxT(t, 60*time.Second)
	putErrs, getErrs, wait := inFlightOn(t, ctx, n, 6, 6)
	if err := c.StopNodeNow(0); err != nil {
		t.Fatal(err)
	}
	wait()
	for i, err := range putErrs {
		if !errors.Is(err, client.ErrUnknownOutcome) || errors.Is(err, client.ErrTimeout) {
			t.Errorf("write %d cut off: %v; want ErrUnknownOutcome, not a timeout", i, err)
		}
	}
	for i, err := range getErrs {
		if !errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrUnknownOutcome) {
			t.Errorf("read %d cut off: %v; want a retryable ErrUnavailable", i, err)
		}
	}
}

// A graceful stop tells the Batch streams to drain: the SDK closes its
// stream, the node answers everything it carried, and the stop finishes by
// itself instead of waiting out its deadline and cutting the requests off.
func TestBatchGracefulStopAnswersInFlight(t *testing.T) {
	t.Parallel()
	c := hookedPair(t, nil)
	n := c.Node(0)
	slowLinks(t, n, time.Second)
	ctx := ctxT(t, 60*time.Second)
	putErrs, getErrs, wait := inFlightOn(t, ctx, n, 6, 6)
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := n.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if stopCtx.Err() != nil {
		t.Fatal("the graceful stop waited out its deadline: a Batch stream kept it open")
	}
	wait()
	for _, errs := range [][]error{putErrs, getErrs} {
		for i, err := range errs {
			if err != nil {
				t.Errorf("call %d cut off by a graceful stop: %v", i, err)
			}
		}
	}
}

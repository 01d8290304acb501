package client

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// fakeNode is a real gRPC server that answers with canned results, to test
// the client's transport path: status decoding, retries, routing.
type fakeNode struct {
	id   string
	addr string
	srv  *grpc.Server

	mu        sync.Mutex
	calls     map[string]int
	fail      map[string]error // method → error to return
	hang      map[string]bool  // method → block until the caller gives up
	status    *kvpb.ClusterStatusResponse
	keyspaces []*kvpb.KeyspaceConfig
}

func startNode(t *testing.T, id string) *fakeNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{id: id, addr: lis.Addr().String(), srv: grpc.NewServer(),
		calls: make(map[string]int), fail: make(map[string]error), hang: make(map[string]bool)}
	kvpb.RegisterKVServer(n.srv, kvSrv{fakeNode: n})
	kvpb.RegisterAdminServer(n.srv, adminSrv{fakeNode: n})
	go n.srv.Serve(lis)
	t.Cleanup(n.srv.Stop)
	return n
}

// enter records a call and returns the canned error, if any.
func (n *fakeNode) enter(ctx context.Context, method string) error {
	n.mu.Lock()
	n.calls[method]++
	err, hang := n.fail[method], n.hang[method]
	n.mu.Unlock()
	if hang {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	return err
}

func (n *fakeNode) setFail(method string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fail[method] = err
}

func (n *fakeNode) count(method string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls[method]
}

func (n *fakeNode) receipt() *kvpb.Receipt {
	return &kvpb.Receipt{Level: kvpb.Level_LEVEL_QUORUM, N: 2, Required: 2, Acked: 2, Coordinator: n.id, Epoch: 7}
}

type kvSrv struct {
	*fakeNode
	kvpb.UnimplementedKVServer
}

func (s kvSrv) Get(ctx context.Context, req *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	if err := s.enter(ctx, "Get"); err != nil {
		return nil, err
	}
	return &kvpb.GetResponse{Found: true, Value: []byte("v@" + s.id), Version: &kvpb.Version{Timestamp: 1 << 16, Node: 1}, Receipt: s.receipt()}, nil
}

func (s kvSrv) Put(ctx context.Context, req *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	if err := s.enter(ctx, "Put"); err != nil {
		return nil, err
	}
	return &kvpb.PutResponse{Version: &kvpb.Version{Timestamp: 2 << 16, Node: 1}, Receipt: s.receipt()}, nil
}

func (s kvSrv) Delete(ctx context.Context, req *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	if err := s.enter(ctx, "Delete"); err != nil {
		return nil, err
	}
	return &kvpb.DeleteResponse{Version: &kvpb.Version{Timestamp: 3 << 16}, Receipt: s.receipt()}, nil
}

func (s kvSrv) Scan(ctx context.Context, req *kvpb.ScanRequest) (*kvpb.ScanResponse, error) {
	if err := s.enter(ctx, "Scan"); err != nil {
		return nil, err
	}
	return &kvpb.ScanResponse{
		Items:     []*kvpb.KeyValue{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("2")}},
		More:      true,
		NextStart: []byte("c"),
		Receipt:   s.receipt(),
	}, nil
}

type adminSrv struct {
	*fakeNode
	kvpb.UnimplementedAdminServer
}

func (s adminSrv) CreateKeyspace(ctx context.Context, req *kvpb.CreateKeyspaceRequest) (*kvpb.KeyspaceResponse, error) {
	if err := s.enter(ctx, "CreateKeyspace"); err != nil {
		return nil, err
	}
	return &kvpb.KeyspaceResponse{Keyspace: &kvpb.KeyspaceConfig{Name: req.GetName(), ReplicationFactor: req.GetReplicationFactor(),
		DefaultConsistency: req.GetDefaultConsistency(), Epoch: 9, CreatedUnixMs: 1000}}, nil
}

func (s adminSrv) DescribeKeyspace(ctx context.Context, req *kvpb.DescribeKeyspaceRequest) (*kvpb.KeyspaceResponse, error) {
	if err := s.enter(ctx, "DescribeKeyspace"); err != nil {
		return nil, err
	}
	return nil, reasonStatus(codes.NotFound, ReasonKeyspaceNotFound, "keyspace \""+req.GetName()+"\" not found", nil)
}

func (s adminSrv) ListKeyspaces(ctx context.Context, _ *kvpb.ListKeyspacesRequest) (*kvpb.ListKeyspacesResponse, error) {
	if err := s.enter(ctx, "ListKeyspaces"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &kvpb.ListKeyspacesResponse{Keyspaces: s.keyspaces}, nil
}

func (s adminSrv) ClusterStatus(ctx context.Context, _ *kvpb.ClusterStatusRequest) (*kvpb.ClusterStatusResponse, error) {
	if err := s.enter(ctx, "ClusterStatus"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status == nil {
		return nil, status.Error(codes.Unimplemented, "no status in this test")
	}
	st := proto.Clone(s.status).(*kvpb.ClusterStatusResponse)
	st.NodeId = s.id
	return st, nil
}

func (s adminSrv) LocalGet(ctx context.Context, req *kvpb.LocalGetRequest) (*kvpb.LocalGetResponse, error) {
	if err := s.enter(ctx, "LocalGet"); err != nil {
		return nil, err
	}
	return &kvpb.LocalGetResponse{Found: true, Value: []byte(req.GetKeyspace() + "/" + string(req.GetKey())), NodeId: s.id}, nil
}

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.RetryBackoffBase == 0 {
		cfg.RetryBackoffBase, cfg.RetryBackoffMax = time.Millisecond, 5*time.Millisecond
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 2 * time.Second
	}
	c, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func total(method string, nodes ...*fakeNode) int {
	sum := 0
	for _, n := range nodes {
		sum += n.count(method)
	}
	return sum
}

func TestTransportErrors(t *testing.T) {
	n1, n2 := startNode(t, "n1"), startNode(t, "n2")
	nodes := []*fakeNode{n1, n2}
	// No hedging: the subtests count attempts, and a hedge would add one
	// when a failure is slower than the hedge delay (TestSlowCoordinator
	// covers hedging).
	c := newTestClient(t, Config{Endpoints: []string{n1.addr, n2.addr}, DisableRouting: true, MaxRetries: 3, DisableHedging: true})
	ctx := t.Context()
	setAll := func(method string, err error) {
		for _, n := range nodes {
			n.setFail(method, err)
		}
	}

	// Success path decodes results.
	res, err := c.Put(ctx, []byte("k"), []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Receipt.Required != 2 || res.Receipt.Acked != 2 || res.Receipt.Level != Quorum || res.Receipt.Epoch != 7 || res.Version.Timestamp != 2<<16 {
		t.Errorf("put result %+v", res)
	}
	sres, err := c.Scan(ctx, WithPrefix([]byte("a")), WithLimit(2))
	if err != nil || len(sres.Items) != 2 || !sres.More || string(sres.NextStart) != "c" {
		t.Errorf("scan = %+v, %v", sres, err)
	}

	t.Run("quorum not reached write is unknown and not retried", func(t *testing.T) {
		setAll("Put", statusErr(t, codes.Unavailable, ReasonQuorumNotReached, "quorum not reached: 1 of 2 replicas acknowledged",
			map[string]string{"acked": "1", "required": "2"}))
		defer setAll("Put", nil)
		before := total("Put", nodes...)
		_, err := c.Put(ctx, []byte("k"), []byte("v"))
		if !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want unknown outcome and unavailable", err)
		}
		var e *Error
		if !errors.As(err, &e) || e.Acked != 1 || e.Required != 2 || !strings.Contains(e.Error(), "1 of 2 replicas") {
			t.Errorf("details: %+v", e)
		}
		if got := total("Put", nodes...) - before; got != 1 {
			t.Errorf("sent %d times, want 1 (no retry after an unknown outcome)", got)
		}
	})

	t.Run("not enough replicas write is definite and retried", func(t *testing.T) {
		setAll("Delete", statusErr(t, codes.Unavailable, ReasonNotEnoughReplicas, "not enough replicas alive: 1 alive, 2 required",
			map[string]string{"alive": "1", "required": "2"}))
		defer setAll("Delete", nil)
		before := total("Delete", nodes...)
		_, err := c.Delete(ctx, []byte("k"))
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("err = %v, want definite unavailable", err)
		}
		if got := total("Delete", nodes...) - before; got != 4 {
			t.Errorf("sent %d times, want 1 + 3 retries", got)
		}
		if n1.count("Delete") == 0 || n2.count("Delete") == 0 {
			t.Error("retries did not move to the other endpoint")
		}
	})

	t.Run("read retried then succeeds elsewhere", func(t *testing.T) {
		n1.setFail("Get", statusErr(t, codes.Unavailable, ReasonQuorumNotReached, "quorum not reached", nil))
		defer n1.setFail("Get", nil)
		for range 4 { // whichever node a call starts on, it ends on n2
			res, err := c.Get(ctx, []byte("k"))
			if err != nil || string(res.Value) != "v@n2" {
				t.Fatalf("get = %+v, %v", res, err)
			}
		}
	})

	t.Run("read failure is never unknown", func(t *testing.T) {
		setAll("Get", status.Error(codes.DeadlineExceeded, "replicas too slow"))
		defer setAll("Get", nil)
		before := total("Get", nodes...)
		_, err := c.Get(ctx, []byte("k"))
		if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("err = %v", err)
		}
		if got := total("Get", nodes...) - before; got != 4 {
			t.Errorf("sent %d times, want 4", got)
		}
	})

	t.Run("invalid argument not retried", func(t *testing.T) {
		setAll("Put", statusErr(t, codes.InvalidArgument, ReasonInvalidArgument, "W 3 exceeds N 2", nil))
		defer setAll("Put", nil)
		before := total("Put", nodes...)
		_, err := c.Put(ctx, []byte("k"), []byte("v"), WithRW(1, 3))
		if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrUnknownOutcome) || !strings.Contains(err.Error(), "W 3 exceeds N 2") {
			t.Fatalf("err = %v", err)
		}
		if got := total("Put", nodes...) - before; got != 1 {
			t.Errorf("sent %d times, want 1", got)
		}
	})

	t.Run("no leader retried for admin write", func(t *testing.T) {
		setAll("CreateKeyspace", statusErr(t, codes.FailedPrecondition, ReasonNoMetadataLeader, "no metadata leader", nil))
		before := total("CreateKeyspace", nodes...)
		_, err := c.CreateKeyspace(ctx, "ks", KeyspaceSpec{ReplicationFactor: 2})
		if !errors.Is(err, ErrNoLeader) || errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("err = %v", err)
		}
		if got := total("CreateKeyspace", nodes...) - before; got != 4 {
			t.Errorf("sent %d times, want 4", got)
		}
		setAll("CreateKeyspace", nil)
		ks, err := c.CreateKeyspace(ctx, "ks", KeyspaceSpec{ReplicationFactor: 2, Consistency: Custom, R: 1, W: 2})
		if err != nil || ks.Name != "ks" || ks.ReplicationFactor != 2 || ks.Consistency != Custom || ks.R != 1 || ks.W != 2 || ks.Epoch != 9 {
			t.Fatalf("create = %+v, %v", ks, err)
		}
	})

	t.Run("keyspace not found", func(t *testing.T) {
		before := total("DescribeKeyspace", nodes...)
		_, err := c.DescribeKeyspace(ctx, "nope")
		if !errors.Is(err, ErrKeyspaceNotFound) {
			t.Fatalf("err = %v", err)
		}
		if got := total("DescribeKeyspace", nodes...) - before; got != 1 {
			t.Errorf("sent %d times, want 1", got)
		}
	})

	t.Run("own deadline after sending a write", func(t *testing.T) {
		for _, n := range nodes {
			n.mu.Lock()
			n.hang["Put"] = true
			n.mu.Unlock()
		}
		defer func() {
			for _, n := range nodes {
				n.mu.Lock()
				n.hang["Put"] = false
				n.mu.Unlock()
			}
		}()
		before := total("Put", nodes...)
		tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := c.Put(tctx, []byte("k"), []byte("v"))
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want timeout with unknown outcome", err)
		}
		if got := total("Put", nodes...) - before; got != 1 {
			t.Errorf("sent %d times, want 1", got)
		}
	})

	t.Run("closed", func(t *testing.T) {
		c.Close()
		if _, err := c.Get(ctx, []byte("k")); !errors.Is(err, ErrClosed) {
			t.Errorf("get after close: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
	})
}

// A write to a node that is down is never sent, so it is a definite failure
// and safely retried on the next endpoint.
func TestRetryAfterEndpointClosed(t *testing.T) {
	n1, n2 := startNode(t, "n1"), startNode(t, "n2")
	c := newTestClient(t, Config{Endpoints: []string{n1.addr, n2.addr}, DisableRouting: true})
	ctx := t.Context()
	for range 2 { // reach both nodes
		if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if n1.count("Put") != 1 || n2.count("Put") != 1 {
		t.Fatalf("puts not spread: n1=%d n2=%d", n1.count("Put"), n2.count("Put"))
	}

	n1.srv.Stop()
	// Wait until the client has seen the connection drop: a request sent
	// on a connection in the middle of closing is (rightly) an unknown
	// outcome, which is not what this test is about.
	cc, _ := c.conn(n1.addr)
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for s := cc.GetState(); s == connectivity.Ready; s = cc.GetState() {
		if !cc.WaitForStateChange(tctx, s) {
			t.Fatal("connection to the stopped node still ready")
		}
	}

	for i := range 6 {
		res, err := c.Put(ctx, []byte("k"), []byte("v"))
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		if res.Receipt.Coordinator != "n2" {
			t.Errorf("put %d coordinated by %s", i, res.Receipt.Coordinator)
		}
		if _, err := c.Get(ctx, []byte("k")); err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
	}
	if got := n2.count("Put"); got != 7 {
		t.Errorf("n2 got %d puts, want 7", got)
	}
}

// With nothing listening, New still succeeds and calls fail definitely:
// nothing was sent, so even a write is not an unknown outcome.
func TestUnreachableCluster(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	start := time.Now()
	c := newTestClient(t, Config{Endpoints: []string{addr}, DialTimeout: 500 * time.Millisecond, MaxRetries: 2})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("New took %v", d)
	}
	ctx := t.Context()
	_, err = c.Put(ctx, []byte("k"), []byte("v"))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnknownOutcome) {
		t.Errorf("put: %v, want definite unavailable", err)
	}
	_, err = c.Get(ctx, []byte("k"))
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("get: %v", err)
	}
	if _, err := c.LocalGet(ctx, "n1", "default", []byte("k")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("local get: %v", err)
	}
}

// Routing sends each key to its replicas on the same ring as the servers',
// which includes members that are down.
func TestRouting(t *testing.T) {
	nodes := []*fakeNode{startNode(t, "n1"), startNode(t, "n2"), startNode(t, "n3"), startNode(t, "n4")}
	byID := make(map[string]*fakeNode)
	byAddr := make(map[string]string)
	st := &kvpb.ClusterStatusResponse{Vnodes: 16, MetadataLeader: "n2"}
	for i, n := range nodes {
		byID[n.id] = n
		byAddr[n.addr] = n.id
		state := kvpb.MemberState_MEMBER_ALIVE
		if n.id == "n4" {
			state = kvpb.MemberState_MEMBER_DEAD
		}
		st.Members = append(st.Members, &kvpb.Member{Id: n.id, Number: uint32(i + 1), GrpcAddr: n.addr, Zone: "z" + n.id, State: state})
	}
	// A node that left is not on the ring; one that is dead is.
	st.Members = append(st.Members, &kvpb.Member{Id: "n5", GrpcAddr: "127.0.0.1:1", State: kvpb.MemberState_MEMBER_LEFT})
	ks := []*kvpb.KeyspaceConfig{{Name: "default", ReplicationFactor: 2}, {Name: "wide", ReplicationFactor: 3}}
	for _, n := range nodes {
		n.mu.Lock()
		n.status, n.keyspaces = st, ks
		n.mu.Unlock()
	}
	rg := ring.New([]ring.Member{{ID: "n1", Zone: "zn1"}, {ID: "n2", Zone: "zn2"}, {ID: "n3", Zone: "zn3"}, {ID: "n4", Zone: "zn4"}}, 16)

	// Only one seed: the client learns the others.
	// No hedging: a hedge may go to a node that is not a replica, which is
	// fine (any node coordinates) but not what this test checks.
	c := newTestClient(t, Config{Endpoints: []string{nodes[0].addr}, DisableHedging: true})
	ctx := t.Context()
	if c.topo.Load() == nil {
		t.Fatal("New did not load the topology")
	}

	sawDeadPrimary := false
	for i := range 40 {
		key := []byte{'k', byte(i)}
		for _, keyspace := range []string{"default", "wide"} {
			n := 2
			if keyspace == "wide" {
				n = 3
			}
			prefs := rg.PreferenceList(keyspace, key, n)
			alive := slices.DeleteFunc(slices.Clone(prefs), func(id string) bool { return id == "n4" })
			if prefs[0] == "n4" {
				sawDeadPrimary = true
			}
			// The routing is the subject here, not the ranking by latency
			// (rank_test.go): with equal scores every replica is in the
			// ranking's tolerance band, whatever this busy machine did to
			// the last round trips.
			c.scores.forget()
			res, err := c.Put(ctx, key, []byte("v"), WithKeyspace(keyspace))
			if err != nil {
				t.Fatal(err)
			}
			if res.Receipt.Coordinator != alive[0] {
				t.Errorf("%s/%q: put went to %s, want %s (preference list %v)", keyspace, key, res.Receipt.Coordinator, alive[0], prefs)
			}
			got := make(map[string]bool)
			for range 2 * len(alive) {
				c.scores.forget()
				res, err := c.Get(ctx, key, WithKeyspace(keyspace))
				if err != nil {
					t.Fatal(err)
				}
				got[res.Receipt.Coordinator] = true
			}
			for id := range got {
				if !slices.Contains(alive, id) {
					t.Errorf("%s/%q: get went to %s, not an alive replica of %v", keyspace, key, id, prefs)
				}
			}
			if len(got) != len(alive) {
				t.Errorf("%s/%q: gets used %v, want spread over %v", keyspace, key, got, alive)
			}
		}
	}
	if !sawDeadPrimary {
		t.Error("no key had the dead node as primary; the test does not cover it")
	}

	// An unknown keyspace still works through any node.
	if _, err := c.Put(ctx, []byte("k"), []byte("v"), WithKeyspace("new")); err != nil {
		t.Fatal(err)
	}

	// Keyspace changes go to the metadata leader first.
	before := byID["n2"].count("CreateKeyspace")
	if _, err := c.CreateKeyspace(ctx, "new", KeyspaceSpec{ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	if byID["n2"].count("CreateKeyspace") != before+1 {
		t.Error("create keyspace did not go to the metadata leader")
	}

	// LocalGet reads the named node, whichever node the client knew first.
	for _, id := range []string{"n1", "n3"} {
		rec, err := c.LocalGet(ctx, id, "default", []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if rec.NodeID != id || byID[id].count("LocalGet") != 1 {
			t.Errorf("local get of %s answered by %s", id, rec.NodeID)
		}
	}
	if _, err := c.LocalGet(ctx, "n9", "default", []byte("x")); !errors.Is(err, ErrNodeNotFound) {
		t.Errorf("local get of unknown node: %v", err)
	}

	cs, err := c.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.Members) != 5 || cs.Vnodes != 16 || cs.MetadataLeader != "n2" || cs.Members[3].State != StateDead || cs.Members[4].State != StateLeft {
		t.Errorf("cluster status %+v", cs)
	}
	if _, ok := byAddr["127.0.0.1:1"]; ok {
		t.Fatal("test setup")
	}
	c.mu.Lock()
	_, dialedLeft := c.conns["127.0.0.1:1"]
	c.mu.Unlock()
	if dialedLeft {
		t.Error("the client dialed a member that left")
	}
}

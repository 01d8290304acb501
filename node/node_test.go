package node_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A client that talks to one node only, so a test can choose the coordinator.
func clientFor(t *testing.T, endpoint string) *client.Client {
	t.Helper()
	cl, err := client.New(context.Background(), client.Config{Endpoints: []string{endpoint}, DisableRouting: true, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func TestLevelsOverGRPC(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3)
	kv := c.Client(t)
	ctx := ctxT(t, 30*time.Second)
	if _, err := kv.CreateKeyspace(ctx, "levels", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		opt      client.CallOption
		level    client.Level
		r, w     int
		required int
	}{
		{"one", client.WithConsistency(client.One), client.One, 1, 1, 1},
		{"quorum", client.WithConsistency(client.Quorum), client.Quorum, 2, 2, 2},
		{"all", client.WithConsistency(client.All), client.All, 3, 3, 3},
		{"custom r1 w3", client.WithRW(1, 3), client.Custom, 1, 3, 0},
	}
	for i, tt := range tests {
		key := []byte(fmt.Sprintf("key-%d", i))
		val := []byte(tt.name)
		w, err := kv.Put(ctx, key, val, client.WithKeyspace("levels"), tt.opt)
		if err != nil {
			t.Fatalf("%s: put: %v", tt.name, err)
		}
		if w.Receipt.Level != tt.level || w.Receipt.N != 3 || w.Receipt.Required != tt.w || w.Receipt.Acked < tt.w {
			t.Errorf("%s: put receipt %+v; want level %v N=3 W=%d", tt.name, w.Receipt, tt.level, tt.w)
		}
		g, err := kv.Get(ctx, key, client.WithKeyspace("levels"), tt.opt)
		if err != nil {
			t.Fatalf("%s: get: %v", tt.name, err)
		}
		if tt.r+tt.w <= 3 && !g.Found {
			// R + W <= N promises no overlap: the read may miss the write
			// until the other replicas have it, which is soon.
			eventually(t, 5*time.Second, tt.name+" read converges", func() error {
				g, err = kv.Get(ctx, key, client.WithKeyspace("levels"), tt.opt)
				if err == nil && !g.Found {
					err = errors.New("not found yet")
				}
				return err
			})
		}
		if !g.Found || string(g.Value) != tt.name || g.Version != w.Version {
			t.Errorf("%s: get = %+v; want %q at %v", tt.name, g, val, w.Version)
		}
		if g.Receipt.Required != tt.r || g.Receipt.Acked < tt.r {
			t.Errorf("%s: get receipt %+v; want R=%d", tt.name, g.Receipt, tt.r)
		}
	}
	// The keyspace default applies when a call names no level.
	w, err := kv.Put(ctx, []byte("d"), []byte("d"), client.WithKeyspace("levels"))
	if err != nil || w.Receipt.Level != client.Quorum {
		t.Errorf("default-level put = %+v, %v; want quorum", w, err)
	}
	d, err := kv.Delete(ctx, []byte("d"), client.WithKeyspace("levels"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := kv.Get(ctx, []byte("d"), client.WithKeyspace("levels"))
	if err != nil || g.Found {
		t.Errorf("get after delete = %+v, %v; want not found", g, err)
	}
	_ = d
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3)
	kv := c.Client(t)
	ctx := ctxT(t, 30*time.Second)
	if _, err := kv.CreateKeyspace(ctx, "bad", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1<<20+1)
	tests := []struct {
		name    string
		call    func() error
		want    error
		message string
	}{
		{"empty key", func() error { _, err := kv.Put(ctx, nil, []byte("v")); return err }, client.ErrInvalidArgument, "key is empty"},
		{"key over 4 KiB", func() error { _, err := kv.Put(ctx, make([]byte, 4097), []byte("v")); return err }, client.ErrInvalidArgument, "max key size"},
		{"value over 1 MiB", func() error { _, err := kv.Put(ctx, []byte("k"), big); return err }, client.ErrInvalidArgument, "max value size"},
		{"unknown keyspace", func() error { _, err := kv.Get(ctx, []byte("k"), client.WithKeyspace("nope")); return err }, client.ErrKeyspaceNotFound, "nope"},
		{"R larger than N", func() error {
			_, err := kv.Get(ctx, []byte("k"), client.WithKeyspace("bad"), client.WithRW(4, 1))
			return err
		}, client.ErrInvalidArgument, "R=4"},
		{"RF larger than the cluster", func() error {
			_, err := kv.CreateKeyspace(ctx, "huge", client.KeyspaceSpec{ReplicationFactor: 5})
			return err
		}, client.ErrInvalidArgument, "larger than the cluster"},
		{"existing keyspace", func() error {
			_, err := kv.CreateKeyspace(ctx, "bad", client.KeyspaceSpec{ReplicationFactor: 3})
			return err
		}, client.ErrKeyspaceExists, "bad"},
		{"bad keyspace name", func() error {
			_, err := kv.CreateKeyspace(ctx, "9lives!", client.KeyspaceSpec{ReplicationFactor: 1})
			return err
		}, client.ErrInvalidArgument, "keyspace name"},
	}
	for _, tt := range tests {
		err := tt.call()
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: error %v; want %v", tt.name, err, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.message) {
			t.Errorf("%s: error %q does not name the problem (%q)", tt.name, err, tt.message)
		}
	}
	// Nothing was changed by the refused requests.
	if _, err := kv.DescribeKeyspace(ctx, "huge"); !errors.Is(err, client.ErrKeyspaceNotFound) {
		t.Errorf("refused keyspace exists: %v", err)
	}
	g, err := kv.Get(ctx, []byte("k"))
	if err != nil || g.Found {
		t.Errorf("refused put left a value: %+v, %v", g, err)
	}
}

// Reference: Dynamo (SOSP '07) §4.6 hinted handoff; §5 read repair.
func TestHintsAndReadRepair(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3)
	ctx := ctxT(t, 60*time.Second)
	kv := clientFor(t, c.Node(0).Addrs().GRPC)
	if _, err := kv.CreateKeyspace(ctx, "hh", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	if err := c.StopNode(2); err != nil {
		t.Fatal(err)
	}
	down := c.ID(2)
	// Until gossip marks the node dead, writes to it fail and become hints
	// all the same.
	for i := range 50 {
		if _, err := kv.Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte("v"), client.WithKeyspace("hh")); err != nil {
			t.Fatalf("put %d with one node down: %v", i, err)
		}
	}
	if err := c.RestartNode(ctx, 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "hints delivered to the restarted node", func() error {
		for i := range 50 {
			r, err := kv.LocalGet(ctx, down, "hh", []byte(fmt.Sprintf("k%d", i)))
			if err != nil {
				return err
			}
			if !r.Found {
				return fmt.Errorf("k%d not on %s yet", i, down)
			}
		}
		return nil
	})
}

func TestReplicaRefusesStaleEpoch(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3)
	ctx := ctxT(t, 30*time.Second)
	kv := c.Client(t)
	ks, err := kv.CreateKeyspace(ctx, "ep", client.KeyspaceSpec{ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	alt, err := kv.AlterKeyspace(ctx, "ep", client.KeyspaceSpec{Consistency: client.One})
	if err != nil {
		t.Fatal(err)
	}
	if alt.Epoch <= ks.Epoch {
		t.Fatalf("alter epoch %d not after create epoch %d", alt.Epoch, ks.Epoch)
	}
	// Speak the peer protocol to a replica as a coordinator that missed the
	// alter would.
	addr := c.Node(1).Addrs().GRPC
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	peer := kvpb.NewPeerClient(cc)
	direct := clientFor(t, addr)
	eventually(t, 10*time.Second, "replica applies the alter", func() error {
		ks, err := direct.DescribeKeyspace(ctx, "ep")
		if err == nil && ks.Epoch != alt.Epoch {
			err = fmt.Errorf("epoch %d", ks.Epoch)
		}
		return err
	})
	resp, err := peer.Write(ctx, &kvpb.ReplicaWriteRequest{Mutations: []*kvpb.Mutation{{
		Keyspace: "ep", Epoch: ks.Epoch,
		Record: &kvpb.Record{Key: []byte("k"), Value: []byte("stale"), Version: &kvpb.Version{Timestamp: 1 << 40, Node: 1}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.GetResults()[0]; r.GetOk() || r.GetKnownEpoch() != alt.Epoch {
		t.Fatalf("result %+v; want refusal naming epoch %d", r, alt.Epoch)
	}
	if r, err := kv.LocalGet(ctx, c.ID(1), "ep", []byte("k")); err != nil || r.Found {
		t.Errorf("refused write was stored: %+v, %v", r, err)
	}
}

func TestMetadataReachesRestartedNode(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3)
	ctx := ctxT(t, 60*time.Second)
	// Stop a node that is not the metadata leader, so the log keeps a quorum
	// either way, and create a keyspace while it is down.
	victim := 2
	if c.Node(0).MetadataLeader() == c.ID(2) {
		victim = 1
	}
	if err := c.StopNode(victim); err != nil {
		t.Fatal(err)
	}
	kv := clientFor(t, c.Node(0).Addrs().GRPC)
	if _, err := kv.CreateKeyspace(ctx, "late", client.KeyspaceSpec{ReplicationFactor: 2}); err != nil {
		t.Fatal(err)
	}
	if err := c.RestartNode(ctx, victim); err != nil {
		t.Fatal(err)
	}
	back := clientFor(t, c.Node(victim).Addrs().GRPC)
	eventually(t, 30*time.Second, "keyspace reaches the restarted node", func() error {
		ks, err := back.DescribeKeyspace(ctx, "late")
		if err != nil {
			return err
		}
		if ks.ReplicationFactor != 2 {
			return fmt.Errorf("rf %d", ks.ReplicationFactor)
		}
		return nil
	})
}

func TestMetadataLeaderFailover(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3)
	ctx := ctxT(t, 60*time.Second)
	leader := c.Node(0).MetadataLeader()
	li := -1
	for i := range c.Len() {
		if c.ID(i) == leader {
			li = i
		}
	}
	if li < 0 {
		t.Fatalf("leader %q is not a member", leader)
	}
	if err := c.StopNode(li); err != nil {
		t.Fatal(err)
	}
	other := (li + 1) % c.Len()
	kv := clientFor(t, c.Node(other).Addrs().GRPC)
	eventually(t, 30*time.Second, "a new leader takes keyspace changes", func() error {
		if l := c.Node(other).MetadataLeader(); l == "" || l == leader {
			return fmt.Errorf("leader is %q", l)
		}
		_, err := kv.CreateKeyspace(ctx, "after", client.KeyspaceSpec{ReplicationFactor: 3})
		if errors.Is(err, client.ErrKeyspaceExists) {
			return nil
		}
		return err
	})
	if _, err := kv.Put(ctx, []byte("k"), []byte("v"), client.WithKeyspace("after"), client.WithConsistency(client.Quorum)); err != nil {
		t.Fatalf("quorum write with the old leader down: %v", err)
	}
}

func TestInMemoryCluster(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, func(o *clustertest.Options) { o.InMemory = true })
	kv := c.Client(t)
	ctx := ctxT(t, 30*time.Second)
	for i := range 20 {
		if _, err := kv.Put(ctx, []byte(fmt.Sprintf("s%02d", i)), []byte("v"), client.WithConsistency(client.All)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := kv.Scan(ctx, client.WithPrefix([]byte("s")), client.WithLimit(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 20 || res.More {
		t.Errorf("scan returned %d items (more=%v); want 20", len(res.Items), res.More)
	}
}

var _ = node.DefaultKeyspace

package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// gossipCerts is testCerts with a gossip key.
func gossipCerts(t *testing.T) string {
	t.Helper()
	dir := testCerts(t)
	if err := security.CreateGossipKey(dir, false); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyCerts copies a certificate directory and gives the copy a gossip
// key of its own.
func copyCerts(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := security.CreateGossipKey(dir, true); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startStranger starts a node with the certificate directory certs that
// tries to join c.
func startStranger(t *testing.T, c *clustertest.Cluster, id, certs string) *node.Node {
	t.Helper()
	m, err := security.LoadNode(certs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultLocalConfig()
	cfg.ID, cfg.InMemory, cfg.Security = id, true, m
	cfg.GRPCAddr, cfg.GossipAddr, cfg.RaftAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.Logger = slog.New(slog.DiscardHandler)
	for i := range c.Len() {
		cfg.Seeds = append(cfg.Seeds, c.Node(i).Addrs().Gossip)
	}
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(context.Background()) })
	return n
}

// A node with a certificate of another CA (and that CA's gossip key), or
// with the cluster's certificates but another gossip key, never joins
// gossip, so it is never added to Raft nor the ring; the other CA's node
// cannot be reached over the data path either.
func TestStrangersCannotJoinGossip(t *testing.T) {
	certs := gossipCerts(t)
	c := clustertest.New(t, 3, func(o *clustertest.Options) { o.CertsDir = certs; o.InMemory = true })
	strangers := []*node.Node{
		startStranger(t, c, "other-ca", gossipCerts(t)),
		startStranger(t, c, "other-key", copyCerts(t, certs)),
	}
	time.Sleep(3 * time.Second) // several join attempts and probe rounds
	for i := range c.Len() {
		n := c.Node(i)
		if got := n.AliveMembers(); got != 3 {
			t.Errorf("%s sees %d members alive, want 3", n.ID(), got)
		}
		for id := range n.MetadataServers() {
			if !slices.Contains([]string{"n1", "n2", "n3"}, id) {
				t.Errorf("%s: %s is in the metadata group", n.ID(), id)
			}
		}
	}
	for _, s := range strangers {
		if got := s.AliveMembers(); got != 1 {
			t.Errorf("stranger %s sees %d members alive, want itself only", s.ID(), got)
		}
	}
	// The data path: the cluster's client cannot use the stranger of
	// another CA (its certificate is not the cluster's CA's).
	cl, err := client.New(context.Background(), client.Config{Endpoints: []string{strangers[0].Addrs().GRPC}, CertsDir: certs,
		DisableRouting: true, MaxRetries: -1, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := cl.Put(ctx, []byte("k"), []byte("v")); err == nil {
		t.Error("a put through the node of another CA succeeded")
	}
}

// The gossip key is rotated, install then use then remove, under a running
// workload with no failed request, and a node restarted afterwards rejoins
// with the persisted keyring although its certificate directory still has
// the old key. Refusals are typed.
func TestGossipKeyRotationUnderLoad(t *testing.T) {
	certs := gossipCerts(t)
	old, err := security.LoadGossipKey(certs)
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := security.EncodeGossipKey(old), security.EncodeGossipKey(security.NewGossipKey())
	c := clustertest.New(t, 3, func(o *clustertest.Options) { o.CertsDir = certs })
	cl := c.Client(t)
	ctx := ctxT(t, 60*time.Second)

	var (
		ops, failed atomic.Int64
		firstErr    atomic.Value
		stop        = make(chan struct{})
		wg          sync.WaitGroup
	)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := []byte(fmt.Sprintf("w%d-%d", w, i%100))
				var err error
				if i%2 == 0 {
					_, err = cl.Put(ctx, key, []byte("v"))
				} else {
					_, err = cl.Get(ctx, key)
				}
				ops.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}

	wantKeys := func(t *testing.T, kr *client.Keyring, primary string, keys ...string) {
		t.Helper()
		slices.Sort(keys)
		if len(kr.NotApplied) != 0 || len(kr.Nodes) != 3 {
			t.Fatalf("not applied on %v (%d nodes reported): %+v", kr.NotApplied, len(kr.Nodes), kr.Nodes)
		}
		if kr.Primary != primary || !slices.Equal(kr.Keys, keys) {
			t.Fatalf("keyring %s %v, want %s %v", kr.Primary, kr.Keys, primary, keys)
		}
		for _, n := range kr.Nodes {
			if n.Primary != primary || !slices.Equal(n.Keys, keys) {
				t.Fatalf("%s has %s %v", n.ID, n.Primary, n.Keys)
			}
		}
	}
	kr, err := cl.KeyringList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, kr, k1, k1)
	time.Sleep(300 * time.Millisecond)
	if kr, err = cl.KeyringInstall(ctx, k2); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, kr, k1, k1, k2)
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"remove the primary", func() error { _, err := cl.KeyringRemove(ctx, k1); return err }, codes.FailedPrecondition},
		{"use an unknown key", func() error {
			_, err := cl.KeyringUse(ctx, security.EncodeGossipKey(security.NewGossipKey()))
			return err
		}, codes.NotFound},
		{"a bad key", func() error { _, err := cl.KeyringInstall(ctx, "c2hvcnQ="); return err }, codes.InvalidArgument},
	} {
		if err := tc.call(); status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if kr, err = cl.KeyringUse(ctx, k2); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, kr, k2, k1, k2)
	time.Sleep(300 * time.Millisecond)
	if kr, err = cl.KeyringRemove(ctx, k1); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, kr, k2, k2)
	time.Sleep(time.Second) // gossip runs with the new key alone for a while
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during the rotation; first: %v", failed.Load(), ops.Load(), firstErr.Load())
	}
	t.Logf("%d requests during the rotation, 0 failed", ops.Load())

	// A restarted node reads its persisted keyring, not gossip.key (k1).
	if err := c.StopNode(2); err != nil {
		t.Fatal(err)
	}
	if err := c.RestartNode(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if kr, err = cl.KeyringList(ctx); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, kr, k2, k2)
}

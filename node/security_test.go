package node_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// testCerts makes a certificate directory with a CA, a node certificate for
// the loopback addresses and client certificates for users.
func testCerts(t *testing.T, users ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := security.CreateCA(dir, security.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := security.CreateNode(dir, []string{"127.0.0.1"}, security.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, u := range append([]string{security.RootUser}, users...) {
		if err := security.CreateClient(dir, u, security.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A secure cluster serves clients with a certificate of its CA over mutual
// TLS and refuses plaintext clients, and client and node certificates of
// another CA.
func TestSecureClusterRefusesStrangers(t *testing.T) {
	certs, other := testCerts(t), testCerts(t)
	c := clustertest.New(t, 3, func(o *clustertest.Options) { o.CertsDir = certs })
	ctx := ctxT(t, 30*time.Second)
	root := c.Client(t)
	if _, err := root.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatalf("put over mutual TLS: %v", err)
	}
	for _, tc := range []struct {
		name string
		cfg  client.Config
	}{
		{"plaintext", client.Config{}},
		{"client certificate of another CA", client.Config{CertsDir: other}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Endpoints, cfg.DisableRouting, cfg.MaxRetries, cfg.DialTimeout = c.Endpoints(), true, -1, time.Second
			cl, err := client.New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			if _, err := cl.Put(cctx, []byte("k"), []byte("stranger")); err == nil {
				t.Fatal("a put from a stranger succeeded")
			}
		})
	}
	// A node of another CA cannot reach the data path as a peer either.
	stranger, err := security.LoadNode(other)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(c.Endpoints()[0], grpc.WithTransportCredentials(stranger.PeerCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = kvpb.NewPeerClient(cc).Write(pctx, &kvpb.ReplicaWriteRequest{From: "n9", Mutations: []*kvpb.Mutation{{
		Keyspace: "default", Record: &kvpb.Record{Key: []byte("k"), Value: []byte("forged"), Version: &kvpb.Version{Timestamp: 1 << 62, Node: 9}},
	}}})
	if err == nil {
		t.Fatal("a node of another CA wrote through the peer API")
	}
	got, err := root.Get(ctx, []byte("k"))
	if err != nil || string(got.Value) != "v" {
		t.Fatalf("get after the strangers: %q, %v; want v", got.Value, err)
	}
}

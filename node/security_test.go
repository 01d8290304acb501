package node_test

import (
	"context"
	"testing"
	"time"

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
// TLS and refuses plaintext clients and certificates of another CA.
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
	got, err := root.Get(ctx, []byte("k"))
	if err != nil || string(got.Value) != "v" {
		t.Fatalf("get after the strangers: %q, %v; want v", got.Value, err)
	}
}

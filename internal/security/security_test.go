package security

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func makeDir(t *testing.T, users ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := CreateCA(dir, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := CreateNode(dir, []string{"127.0.0.1"}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if err := CreateClient(dir, u, CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// serve starts a gRPC health server with the node material of dir on a
// loopback port and records the identity of every caller.
func serve(t *testing.T, m *Material) (addr string, seen func() []Identity) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var ids []Identity
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(m.ServerConfig())),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			id, _ := PeerIdentity(ctx)
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String(), func() []Identity { mu.Lock(); defer mu.Unlock(); return append([]Identity(nil), ids...) }
}

func call(addr string, creds credentials.TransportCredentials) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestMutualTLS(t *testing.T) {
	dir := makeDir(t, "alice")
	other := makeDir(t, "alice")
	nodeM, err := LoadNode(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, seen := serve(t, nodeM)

	alice, err := LoadClient(dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	strangerAlice, err := LoadClient(other, "alice")
	if err != nil {
		t.Fatal(err)
	}
	strangerNode, err := LoadNode(other)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		creds credentials.TransportCredentials
		ok    bool
	}{
		{"client certificate of the CA", credentials.NewTLS(alice.ClientConfig()), true},
		{"node certificate of the CA", credentials.NewTLS(nodeM.ClientConfig()), true},
		{"plaintext", insecure.NewCredentials(), false},
		{"client certificate of another CA", credentials.NewTLS(strangerAlice.ClientConfig()), false},
		{"node certificate of another CA", credentials.NewTLS(strangerNode.ClientConfig()), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := call(addr, tc.creds)
			if (err == nil) != tc.ok {
				t.Fatalf("call: err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	ids := seen()
	if len(ids) != 2 || ids[0] != (Identity{User: "alice"}) || ids[1] != (Identity{Node: true}) {
		t.Fatalf("identities seen = %v, want [user alice, node]", ids)
	}
}

func TestClientRefusesServerOfAnotherCA(t *testing.T) {
	dir, other := makeDir(t, "alice"), makeDir(t)
	stranger, err := LoadNode(other)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t, stranger)
	alice, err := LoadClient(dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := call(addr, credentials.NewTLS(alice.ClientConfig())); err == nil {
		t.Fatal("a client trusted a server whose certificate another CA signed")
	}
}

func TestReloadRotatesCertificate(t *testing.T) {
	dir := makeDir(t, "alice")
	m, err := LoadNode(dir)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t, m)
	alice, err := LoadClient(dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	before := m.NotAfter()
	// A shorter-lived node certificate replaces the old one on disk.
	if err := CreateNode(dir, []string{"127.0.0.1"}, CreateOptions{Overwrite: true, Validity: 48 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Watch(ctx, 10*time.Millisecond, nil)
	deadline := time.Now().Add(5 * time.Second)
	for m.NotAfter().Equal(before) {
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not reload the rotated certificate")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := time.Until(m.NotAfter()); got > 49*time.Hour {
		t.Fatalf("expiry after reload is %v away, want about 48h", got)
	}
	if err := call(addr, credentials.NewTLS(alice.ClientConfig())); err != nil {
		t.Fatalf("call after rotation: %v", err)
	}
	// A broken file keeps the material in use.
	if err := os.WriteFile(filepath.Join(dir, NodeCertFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(); err == nil {
		t.Fatal("Reload accepted a broken certificate")
	}
	if err := call(addr, credentials.NewTLS(alice.ClientConfig())); err != nil {
		t.Fatalf("call after a failed reload: %v", err)
	}
}

func TestCreateRefusesOverwriteAndBadUsers(t *testing.T) {
	dir := makeDir(t)
	if err := CreateCA(dir, CreateOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second CreateCA: err = %v, want ErrExists", err)
	}
	for _, u := range []string{"", "node", "Root", "a b", "../x"} {
		if err := CreateClient(dir, u, CreateOptions{}); !errors.Is(err, ErrBadUser) {
			t.Errorf("CreateClient(%q): err = %v, want ErrBadUser", u, err)
		}
	}
	if err := CreateNode(t.TempDir(), []string{"h"}, CreateOptions{}); err == nil {
		t.Fatal("CreateNode without a CA succeeded")
	}
}

func TestGossipKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadGossipKey(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadGossipKey of an empty dir: %v", err)
	}
	if err := CreateGossipKey(dir, false); err != nil {
		t.Fatal(err)
	}
	k, err := LoadGossipKey(dir)
	if err != nil || len(k) != GossipKeySize {
		t.Fatalf("LoadGossipKey = %d bytes, %v", len(k), err)
	}
	for _, bad := range []string{"", "!!", EncodeGossipKey([]byte("short"))} {
		if _, err := DecodeGossipKey(bad); !errors.Is(err, ErrBadGossipKey) {
			t.Errorf("DecodeGossipKey(%q) = %v, want ErrBadGossipKey", bad, err)
		}
	}
}

// Nodes dial each other at addresses learned through gossip, which their
// certificates need not list: PeerConfig accepts any node certificate of
// the CA, ClientConfig (for people's tools) also checks the address.
func TestPeerConfigSkipsOnlyTheNameCheck(t *testing.T) {
	dir, other := makeDir(t, "alice"), makeDir(t)
	m, err := LoadNode(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.2:0") // not in the certificate's SANs
	if err != nil {
		t.Skipf("no 127.0.0.2 on this machine: %v", err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(m.ServerConfig())))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	addr := ln.Addr().String()

	if err := call(addr, credentials.NewTLS(m.PeerConfig())); err != nil {
		t.Fatalf("a node refused a node of its CA at an address its certificate does not name: %v", err)
	}
	if err := call(addr, credentials.NewTLS(m.ClientConfig())); err == nil {
		t.Fatal("ClientConfig accepted a server certificate that does not name the dialed address")
	}
	stranger, err := LoadNode(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := call(addr, credentials.NewTLS(stranger.PeerConfig())); err == nil {
		t.Fatal("a node of another CA was accepted")
	}
	// A server holding a client certificate is no node.
	alice, err := LoadClient(dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	addr2, _ := serveAs(t, alice)
	if err := call(addr2, credentials.NewTLS(m.PeerConfig())); err == nil {
		t.Fatal("PeerConfig accepted a server presenting a client certificate")
	}
}

// serveAs serves with m's certificate whatever it is.
func serveAs(t *testing.T, m *Material) (string, *grpc.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(m.ServerConfig())))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String(), s
}

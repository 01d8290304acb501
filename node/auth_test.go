package node_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// userClient connects to one node as a user: with its client certificate,
// or with a password when one is given.
func userClient(t *testing.T, endpoint, certs, user, password string) *client.Client {
	t.Helper()
	cl, err := client.New(context.Background(), client.Config{
		Endpoints: []string{endpoint}, DisableRouting: true, MaxRetries: -1, DialTimeout: 2 * time.Second,
		CertsDir: certs, User: user, Password: password,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// rawConn dials endpoint over TLS with tc, for calls the SDK would not make.
func rawConn(t *testing.T, endpoint string, tc credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(tc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// Users, grants and tokens over real mutual TLS: every client of a test
// talks to the same node, which has applied each grant change before it
// answered it, so "the next request" is deterministic.
func TestUsersAndPermissions(t *testing.T) {
	certs := testCerts(t, "alice")
	const ttl = 3 * time.Second
	c := clustertest.New(t, 3, func(o *clustertest.Options) {
		o.CertsDir = certs
		o.Configure = func(_ int, cfg *node.Config) { cfg.TokenTTL = ttl }
	})
	ctx := ctxT(t, 60*time.Second)
	ep := c.Endpoints()[0]
	root := userClient(t, ep, certs, security.RootUser, "")
	ks := client.WithKeyspace("orders")
	if _, err := root.CreateKeyspace(ctx, "orders", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.CreateUser(ctx, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := root.GrantRole(ctx, "alice", "orders", client.RoleRead); err != nil {
		t.Fatal(err)
	}
	alice := userClient(t, ep, certs, "alice", "")

	t.Run("read without write", func(t *testing.T) {
		_, err := alice.Put(ctx, []byte("k"), []byte("alice"), ks)
		if !errors.Is(err, client.ErrPermissionDenied) || errors.Is(err, client.ErrUnknownOutcome) {
			t.Fatalf("put without write: %v; want ErrPermissionDenied, a definite failure", err)
		}
		for _, want := range []string{"alice", "write", `"orders"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("refusal %q does not name %s", err, want)
			}
		}
		if got, err := root.Get(ctx, []byte("k"), ks); err != nil || got.Found {
			t.Fatalf("root reads %+v, %v after the refused put; want nothing written", got, err)
		}
		if _, err := root.Put(ctx, []byte("k"), []byte("root"), ks); err != nil {
			t.Fatal(err)
		}
		if got, err := alice.Get(ctx, []byte("k"), ks); err != nil || string(got.Value) != "root" {
			t.Fatalf("alice reads %+v, %v; want root's value", got, err)
		}
		if _, err := alice.Get(ctx, []byte("k")); !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("alice reads the default keyspace: %v; want ErrPermissionDenied", err)
		}
		if _, err := alice.ListUsers(ctx); !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("alice lists users: %v; want ErrPermissionDenied", err)
		}
		if _, err := alice.ListKeyspaces(ctx); err != nil {
			t.Fatalf("alice lists keyspaces (the SDK's routing needs it): %v", err)
		}
	})

	t.Run("grant and revoke take effect on the next request", func(t *testing.T) {
		if _, err := root.GrantRole(ctx, "alice", "orders", client.RoleWrite); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Put(ctx, []byte("k"), []byte("alice"), ks); err != nil {
			t.Fatalf("put after the grant: %v", err)
		}
		if _, err := root.RevokeRole(ctx, "alice", "orders", client.RoleWrite); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Put(ctx, []byte("k"), []byte("again"), ks); !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("put after the revoke: %v; want ErrPermissionDenied", err)
		}
		if got, err := root.Get(ctx, []byte("k"), ks); err != nil || string(got.Value) != "alice" {
			t.Fatalf("root reads %+v, %v; want alice's value, the refused one not written", got, err)
		}
	})

	t.Run("client certificate refused by the peer API", func(t *testing.T) {
		for _, user := range []string{"alice", security.RootUser} {
			m, err := security.LoadClient(certs, user)
			if err != nil {
				t.Fatal(err)
			}
			peer := kvpb.NewPeerClient(rawConn(t, ep, credentials.NewTLS(m.ClientConfig())))
			_, err = peer.Write(ctx, &kvpb.ReplicaWriteRequest{From: "intruder", Mutations: []*kvpb.Mutation{{
				Keyspace: "orders", Record: &kvpb.Record{Key: []byte("k"), Value: []byte("forged"), Version: &kvpb.Version{Timestamp: 1 << 62, Node: 1}},
			}}})
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("peer write with %s's client certificate: %v; want PermissionDenied", user, err)
			}
		}
		nm, err := security.LoadNode(certs)
		if err != nil {
			t.Fatal(err)
		}
		peer := kvpb.NewPeerClient(rawConn(t, ep, credentials.NewTLS(nm.ClientConfig())))
		if _, err := peer.Read(ctx, &kvpb.ReplicaReadRequest{Keyspace: "orders", Key: []byte("k"), From: "n9"}); status.Code(err) == codes.PermissionDenied || status.Code(err) == codes.Unauthenticated {
			t.Fatalf("peer read with a node certificate: %v", err)
		}
		if got, err := root.Get(ctx, []byte("k"), ks); err != nil || string(got.Value) != "alice" {
			t.Fatalf("root reads %+v, %v after the forged peer writes", got, err)
		}
	})

	t.Run("password login", func(t *testing.T) {
		if _, err := root.CreateUser(ctx, "bob", "s3cret-pw"); err != nil {
			t.Fatal(err)
		}
		if _, err := root.GrantRole(ctx, "bob", "orders", client.RoleRead); err != nil {
			t.Fatal(err)
		}
		bob := userClient(t, ep, certs, "bob", "s3cret-pw")
		if got, err := bob.Get(ctx, []byte("k"), ks); err != nil || string(got.Value) != "alice" {
			t.Fatalf("bob reads %+v, %v", got, err)
		}
		if _, err := bob.Put(ctx, []byte("k"), []byte("bob"), ks); !errors.Is(err, client.ErrPermissionDenied) || !strings.Contains(err.Error(), "bob") {
			t.Fatalf("bob writes: %v; want ErrPermissionDenied naming bob", err)
		}
		wrong := userClient(t, ep, certs, "bob", "guess")
		if _, err := wrong.Get(ctx, []byte("k"), ks); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("wrong password: %v; want ErrUnauthenticated", err)
		}
		nobody := userClient(t, ep, certs, "mallory", "guess")
		if _, err := nobody.Get(ctx, []byte("k"), ks); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("unknown user: %v; want ErrUnauthenticated", err)
		}

		// The token itself, without the SDK: it works, then expires.
		ca, err := security.CAClientConfig(certs)
		if err != nil {
			t.Fatal(err)
		}
		cc := rawConn(t, ep, credentials.NewTLS(ca))
		get := func(token string) error {
			cctx := ctx
			if token != "" {
				cctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
			}
			_, err := kvpb.NewKVClient(cc).Get(cctx, &kvpb.GetRequest{Keyspace: "orders", Key: []byte("k")})
			return err
		}
		if err := get(""); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("no certificate and no token: %v; want Unauthenticated", err)
		}
		login, err := kvpb.NewAdminClient(cc).Login(ctx, &kvpb.LoginRequest{User: "bob", Password: "s3cret-pw"})
		if err != nil {
			t.Fatal(err)
		}
		if err := get(login.GetToken()); err != nil {
			t.Fatalf("get with a fresh token: %v", err)
		}
		if err := get(login.GetToken()[:len(login.GetToken())-2] + "AA"); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("get with a forged token: %v; want Unauthenticated", err)
		}
		time.Sleep(time.Until(time.UnixMilli(login.GetExpiresUnixMs())) + 100*time.Millisecond)
		if err := get(login.GetToken()); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("get with an expired token: %v; want Unauthenticated, expired", err)
		}
		// The SDK logged in again on its own.
		if _, err := bob.Get(ctx, []byte("k"), ks); err != nil {
			t.Fatalf("bob reads after his first token expired: %v", err)
		}

		// A new password logs every token out; the SDK's one retry with
		// the old password fails.
		if err := root.SetPassword(ctx, "bob", "n3w-password"); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Get(ctx, []byte("k"), ks); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("bob with the old password: %v; want ErrUnauthenticated", err)
		}
		if _, err := userClient(t, ep, certs, "bob", "n3w-password").Get(ctx, []byte("k"), ks); err != nil {
			t.Fatalf("bob with the new password: %v", err)
		}
	})

	t.Run("root stays", func(t *testing.T) {
		if err := root.DropUser(ctx, security.RootUser); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("drop root: %v; want FailedPrecondition", err)
		}
		if _, err := root.SetClusterAdmin(ctx, security.RootUser, false); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("revoke root's cluster admin: %v; want FailedPrecondition", err)
		}
		users, err := root.ListUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, u := range users {
			names = append(names, u.Name)
		}
		if strings.Join(names, ",") != "alice,bob,root" {
			t.Fatalf("users %v; want alice, bob, root", names)
		}
		if err := root.DropUser(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Get(ctx, []byte("k"), ks); !errors.Is(err, client.ErrPermissionDenied) || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("dropped alice reads: %v; want ErrPermissionDenied, does not exist", err)
		}
	})
}

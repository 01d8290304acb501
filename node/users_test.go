package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/internal/security"
)

func TestDecide(t *testing.T) {
	reader := &UserRecord{Name: "r", Grants: map[string]Perm{"orders": PermRead}}
	writer := &UserRecord{Name: "w", Grants: map[string]Perm{"orders": PermWrite}}
	ksAdmin := &UserRecord{Name: "a", Grants: map[string]Perm{"orders": PermAdmin}}
	everywhere := &UserRecord{Name: "e", Grants: map[string]Perm{AllKeyspaces: PermRead, "orders": PermWrite}}
	admin := &UserRecord{Name: "root", ClusterAdmin: true}
	get := rules["/adaptkv.v1.KV/Get"]
	put := rules["/adaptkv.v1.KV/Put"]
	alter := rules["/adaptkv.v1.Admin/AlterKeyspace"]
	status_ := rules["/adaptkv.v1.Admin/ClusterStatus"]
	create := rules["/adaptkv.v1.Admin/CreateKeyspace"]
	peer := rules["/adaptkv.v1.Peer/Write"]
	login := rules["/adaptkv.v1.Admin/Login"]
	passwd := rules["/adaptkv.v1.Admin/SetPassword"]
	user := func(u *UserRecord) caller { return caller{user: u.Name} }
	for _, tc := range []struct {
		name string
		c    caller
		u    *UserRecord
		r    rule
		ks   string
		want codes.Code
	}{
		{"reader gets", user(reader), reader, get, "orders", codes.OK},
		{"reader puts", user(reader), reader, put, "orders", codes.PermissionDenied},
		{"reader gets another keyspace", user(reader), reader, get, "other", codes.PermissionDenied},
		{"writer puts", user(writer), writer, put, "orders", codes.OK},
		{"writer cannot read", user(writer), writer, get, "orders", codes.PermissionDenied},
		{"keyspace admin reads, writes, alters", user(ksAdmin), ksAdmin, get, "orders", codes.OK},
		{"keyspace admin puts", user(ksAdmin), ksAdmin, put, "orders", codes.OK},
		{"keyspace admin alters", user(ksAdmin), ksAdmin, alter, "orders", codes.OK},
		{"keyspace admin alters another", user(ksAdmin), ksAdmin, alter, "other", codes.PermissionDenied},
		{"keyspace admin creates keyspaces", user(ksAdmin), ksAdmin, create, "", codes.PermissionDenied},
		{"star grant reads any keyspace", user(everywhere), everywhere, get, "other", codes.OK},
		{"star and keyspace grants add up", user(everywhere), everywhere, put, "orders", codes.OK},
		{"star read does not write", user(everywhere), everywhere, put, "other", codes.PermissionDenied},
		{"cluster admin does anything", user(admin), admin, create, "", codes.OK},
		{"cluster admin puts anywhere", user(admin), admin, put, "x", codes.OK},
		{"cluster admin is no node", user(admin), admin, peer, "", codes.PermissionDenied},
		{"node calls the peer API", caller{node: true}, nil, peer, "", codes.OK},
		{"node puts", caller{node: true}, nil, put, "orders", codes.OK},
		{"anonymous logs in", caller{}, nil, login, "", codes.OK},
		{"anonymous gets", caller{}, nil, get, "orders", codes.Unauthenticated},
		{"anonymous status", caller{}, nil, status_, "", codes.Unauthenticated},
		{"unknown user reads status", caller{user: "ghost"}, nil, status_, "", codes.OK},
		{"unknown user gets", caller{user: "ghost"}, nil, get, "orders", codes.PermissionDenied},
		{"own password", user(reader), reader, passwd, "r", codes.OK},
		{"another's password", user(reader), reader, passwd, "w", codes.PermissionDenied},
		{"admin sets any password", user(admin), admin, passwd, "w", codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(decide(tc.c, tc.u, tc.r, tc.ks)); got != tc.want {
				t.Fatalf("decide = %v; want %v", got, tc.want)
			}
		})
	}
}

// A method without an explicit rule falls to defaultRule (cluster admins
// only): correct, but the choice of who may call a new method should be
// made on purpose, here.
func TestEveryMethodHasARule(t *testing.T) {
	gs := grpc.NewServer()
	registerServices(gs, &Node{})
	for svc, info := range gs.GetServiceInfo() {
		for _, m := range info.Methods {
			if _, ok := rules["/"+svc+"/"+m.Name]; !ok {
				t.Errorf("/%s/%s has no authorization rule in auth.go", svc, m.Name)
			}
		}
	}
}

func TestApplyUserOp(t *testing.T) {
	type step struct {
		op      string
		c       userCmd
		wantErr error
	}
	for _, tc := range []struct {
		name  string
		steps []step
		check func(t *testing.T, s *authState)
	}{
		{"root cannot be dropped or demoted", []step{
			{"user-drop", userCmd{Name: security.RootUser}, ErrRootUser},
			{"user-revoke", userCmd{Name: security.RootUser, ClusterAdmin: true}, ErrRootUser},
		}, func(t *testing.T, s *authState) {
			if !s.user(security.RootUser).ClusterAdmin {
				t.Fatal("root lost cluster admin")
			}
		}},
		{"create twice", []step{
			{"user-create", userCmd{Name: "a"}, nil},
			{"user-create", userCmd{Name: "a"}, ErrUserExists},
		}, nil},
		{"grant to a missing user", []step{
			{"user-grant", userCmd{Name: "a", Keyspace: "k", Perm: PermRead}, ErrUserNotFound},
		}, nil},
		{"grants add up and revokes take one role", []step{
			{"user-create", userCmd{Name: "a"}, nil},
			{"user-grant", userCmd{Name: "a", Keyspace: "k", Perm: PermRead}, nil},
			{"user-grant", userCmd{Name: "a", Keyspace: "k", Perm: PermWrite}, nil},
			{"user-revoke", userCmd{Name: "a", Keyspace: "k", Perm: PermRead}, nil},
		}, func(t *testing.T, s *authState) {
			if got := s.user("a").Grants["k"]; got != PermWrite {
				t.Fatalf("grants %v; want write", got)
			}
		}},
		{"revoking the last role removes the grant", []step{
			{"user-create", userCmd{Name: "a"}, nil},
			{"user-grant", userCmd{Name: "a", Keyspace: "k", Perm: PermRead}, nil},
			{"user-revoke", userCmd{Name: "a", Keyspace: "k", Perm: PermRead}, nil},
		}, func(t *testing.T, s *authState) {
			if _, ok := s.user("a").Grants["k"]; ok {
				t.Fatal("an empty grant stayed")
			}
		}},
		{"a grant needs a role", []step{
			{"user-create", userCmd{Name: "a"}, nil},
			{"user-grant", userCmd{Name: "a", Keyspace: "k"}, ErrBadGrant},
		}, nil},
		{"the first secret stays", []step{
			{"auth-secret", userCmd{Secret: []byte("one")}, nil},
			{"auth-secret", userCmd{Secret: []byte("two")}, nil},
		}, func(t *testing.T, s *authState) {
			if string(s.Secret) != "one" {
				t.Fatalf("secret %q; want the first", s.Secret)
			}
		}},
		{"a password change moves the password index", []step{
			{"user-create", userCmd{Name: "a", Hash: []byte("h1")}, nil},
			{"user-passwd", userCmd{Name: "a", Hash: []byte("h2")}, nil},
		}, func(t *testing.T, s *authState) {
			if u := s.user("a"); u.PasswordIndex != 2 || string(u.Hash) != "h2" {
				t.Fatalf("user %+v; want the second hash at index 2", u)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newAuthState()
			for i, st := range tc.steps {
				before := s
				next, _, err := applyUserOp(s, st.op, st.c, uint64(i+1), 0)
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("step %d %s: %v; want %v", i, st.op, err, st.wantErr)
				}
				if err != nil && next != before {
					t.Fatalf("step %d %s failed but changed the state", i, st.op)
				}
				s = next
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

// The check a request pays on a secure node, from the verified
// certificate in the call's context to the grant: no allocation.
func BenchmarkAuthorizeCertificateUser(b *testing.B) {
	dir := b.TempDir()
	if err := security.CreateCA(dir, security.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := security.CreateClient(dir, "alice", security.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, security.ClientCertFile("alice")), filepath.Join(dir, security.ClientKeyFile("alice")))
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		b.Fatal(err)
	}
	n := &Node{meta: newFSM()}
	n.meta.auth.Store(&authState{Users: map[string]*UserRecord{"alice": {Name: "alice", Grants: map[string]Perm{"orders": PermRead | PermWrite}}}})
	a := newAuthorizer(n)
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}}})
	req := &kvpb.PutRequest{Keyspace: "orders"}
	b.ReportAllocs()
	for b.Loop() {
		if err := a.check(ctx, kvpb.KV_Put_FullMethodName, req); err != nil {
			b.Fatal(err)
		}
	}
}

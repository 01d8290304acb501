package node

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/internal/security"
)

// Authentication and authorization of the gRPC API.
//
// They run only on a secure node (Config.Security set). An --insecure node
// serves every call from anyone, as CockroachDB's --insecure does: it has no
// way to tell callers apart, so permissions there would be theatre.
//
// The caller is the identity of its verified client certificate (a node,
// or a user by the certificate's name), or else the user of a bearer token
// that Admin.Login issued for a password. Each method has one rule (rules
// below); a node certificate passes every rule, since nodes forward their
// clients' requests after checking them.

// access is what a method asks of its caller.
type access uint8

const (
	// accessAnyone: no identity needed (Login, health checks).
	accessAnyone access = iota
	// accessAuthenticated: any user; the reads the SDK routes with.
	accessAuthenticated
	// accessNode: node certificates only (the peer API, node-to-node
	// admin calls).
	accessNode
	// accessClusterAdmin: users with cluster administration.
	accessClusterAdmin
	// accessKeyspace: perm on the request's keyspace.
	accessKeyspace
	// accessSelf: cluster admin, or the user the request names (changing
	// one's own password).
	accessSelf
)

// rule is a method's authorization.
type rule struct {
	access access
	perm   Perm
	// keyspace reads the keyspace (accessKeyspace) or the user
	// (accessSelf) from a unary request.
	keyspace func(req any) string
}

func ksRule(p Perm, f func(req any) string) rule {
	return rule{access: accessKeyspace, perm: p, keyspace: f}
}

// defaultRule applies to a method rules does not name: cluster admins
// only, so that a new RPC is closed until someone decides who may call it
// (TestEveryMethodHasARule lists them).
var defaultRule = rule{access: accessClusterAdmin}

// rules are the authorization of every method, by full gRPC name.
var rules = map[string]rule{
	kvpb.KV_Get_FullMethodName:    ksRule(PermRead, func(r any) string { return r.(*kvpb.GetRequest).GetKeyspace() }),
	kvpb.KV_Scan_FullMethodName:   ksRule(PermRead, func(r any) string { return r.(*kvpb.ScanRequest).GetKeyspace() }),
	kvpb.KV_Put_FullMethodName:    ksRule(PermWrite, func(r any) string { return r.(*kvpb.PutRequest).GetKeyspace() }),
	kvpb.KV_Delete_FullMethodName: ksRule(PermWrite, func(r any) string { return r.(*kvpb.DeleteRequest).GetKeyspace() }),
	// Opening the stream needs only an identity: each request inside is
	// authorized by its own method's rule above (batch.go).
	kvpb.KV_Batch_FullMethodName: {access: accessAuthenticated},

	kvpb.Admin_DescribeKeyspace_FullMethodName: {access: accessAuthenticated},
	kvpb.Admin_ListKeyspaces_FullMethodName:    {access: accessAuthenticated},
	kvpb.Admin_ClusterStatus_FullMethodName:    {access: accessAuthenticated},
	kvpb.Admin_Health_FullMethodName:           {access: accessAuthenticated},
	// A snapshot resets the node's counters: only the leader's detector
	// may take it.
	kvpb.Admin_HealthSnapshot_FullMethodName:   {access: accessNode},
	kvpb.Admin_AlterKeyspace_FullMethodName:    ksRule(PermAdmin, func(r any) string { return r.(*kvpb.AlterKeyspaceRequest).GetName() }),
	kvpb.Admin_LocalGet_FullMethodName:         ksRule(PermAdmin, func(r any) string { return r.(*kvpb.LocalGetRequest).GetKeyspace() }),
	kvpb.Admin_TunerExplain_FullMethodName:     ksRule(PermAdmin, func(r any) string { return r.(*kvpb.TunerExplainRequest).GetKeyspace() }),
	kvpb.Admin_TunerWhatIf_FullMethodName:      ksRule(PermAdmin, func(r any) string { return r.(*kvpb.TunerWhatIfRequest).GetKeyspace() }),
	kvpb.Admin_TunerSnapshot_FullMethodName:    ksRule(PermAdmin, func(r any) string { return r.(*kvpb.TunerSnapshotRequest).GetKeyspace() }),
	kvpb.Admin_CreateKeyspace_FullMethodName:   {access: accessClusterAdmin},
	kvpb.Admin_RepairKeyspace_FullMethodName:   {access: accessClusterAdmin},
	kvpb.Admin_CleanupKeyspace_FullMethodName:  {access: accessClusterAdmin},
	kvpb.Admin_DecommissionNode_FullMethodName: {access: accessClusterAdmin},
	kvpb.Admin_RemoveNode_FullMethodName:       {access: accessClusterAdmin},
	kvpb.Admin_ReplaceNode_FullMethodName:      {access: accessClusterAdmin},
	// The keyring answer holds the gossip keys themselves.
	kvpb.Admin_Keyring_FullMethodName:           {access: accessClusterAdmin},
	kvpb.Admin_MetadataReadIndex_FullMethodName: {access: accessNode},
	kvpb.Admin_Login_FullMethodName:             {access: accessAnyone},
	kvpb.Admin_CreateUser_FullMethodName:        {access: accessClusterAdmin},
	kvpb.Admin_DropUser_FullMethodName:          {access: accessClusterAdmin},
	kvpb.Admin_GrantRole_FullMethodName:         {access: accessClusterAdmin},
	kvpb.Admin_RevokeRole_FullMethodName:        {access: accessClusterAdmin},
	kvpb.Admin_ListUsers_FullMethodName:         {access: accessClusterAdmin},
	kvpb.Admin_SetPassword_FullMethodName: {access: accessSelf, keyspace: func(r any) string {
		return r.(*kvpb.SetPasswordRequest).GetName()
	}},

	kvpb.Peer_Write_FullMethodName:        {access: accessNode},
	kvpb.Peer_Read_FullMethodName:         {access: accessNode},
	kvpb.Peer_Scan_FullMethodName:         {access: accessNode},
	kvpb.Peer_Hint_FullMethodName:         {access: accessNode},
	kvpb.Peer_Digest_FullMethodName:       {access: accessNode},
	kvpb.Peer_Repair_FullMethodName:       {access: accessNode},
	kvpb.Peer_CompareTrees_FullMethodName: {access: accessNode},
	kvpb.Peer_Paxos_FullMethodName:        {access: accessNode},
	kvpb.Peer_Stream_FullMethodName:       {access: accessNode},

	"/grpc.health.v1.Health/Check": {access: accessAnyone},
	"/grpc.health.v1.Health/Watch": {access: accessAnyone},
	"/grpc.health.v1.Health/List":  {access: accessAnyone},
}

// caller is who made a call.
type caller struct {
	node bool
	user string
	// token is set when the user came from a bearer token, for messages.
	token bool
}

func (c caller) String() string {
	if c.node {
		return "node"
	}
	return "user " + c.user
}

// decide is the permission check, pure: may c, whose record is u (nil if
// the user does not exist), call a method of rule r on keyspace ks? It
// returns nil or the refusal's status.
func decide(c caller, u *UserRecord, r rule, ks string) error {
	if r.access == accessAnyone || c.node {
		return nil
	}
	if c.user == "" {
		return status.Error(codes.Unauthenticated, "no client certificate and no token: present a client certificate signed by the cluster's CA, or log in with a password (Admin.Login) and send the token")
	}
	if r.access == accessNode {
		return status.Errorf(codes.PermissionDenied, "%v: only nodes may call this (peer API); nothing was done", c)
	}
	if u == nil && r.access != accessAuthenticated {
		return status.Errorf(codes.PermissionDenied, "%v does not exist (create it with `adaptkv user create %s`); nothing was done", c, c.user)
	}
	switch r.access {
	case accessAuthenticated:
		return nil
	case accessSelf:
		if u.ClusterAdmin || ks == c.user {
			return nil
		}
		return status.Errorf(codes.PermissionDenied, "%v lacks cluster admin, needed to change another user's password; nothing was done", c)
	case accessKeyspace:
		if u.Allowed(ks, r.perm) {
			return nil
		}
		return status.Errorf(codes.PermissionDenied, "%v lacks %v on keyspace %q; nothing was done", c, r.perm, ks)
	}
	if u.ClusterAdmin {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "%v lacks cluster admin; nothing was done", c)
}

// authorizer holds the interceptors' state.
type authorizer struct {
	n   *Node
	ttl time.Duration
	now func() time.Time
	// ids caches the identity of each verified leaf certificate: a
	// connection keeps its certificate, so each call costs a map lookup,
	// not a parse of the subject.
	ids    sync.Map // *x509.Certificate -> security.Identity
	idsLen atomic.Int64
	// bcrypt costs tens of milliseconds of CPU by design; logins wait for
	// a slot rather than let a flood of them starve the data path.
	loginSlots chan struct{}
}

// maxCachedIDs bounds the identity cache; past it the cache starts over.
const maxCachedIDs = 4096

// DefaultTokenTTL is how long a login token lasts: short, so that a
// leaked token is worth little, and long enough that a client logs in a
// few times a day.
const DefaultTokenTTL = time.Hour

func newAuthorizer(n *Node) *authorizer {
	ttl := n.cfg.TokenTTL
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	return &authorizer{n: n, ttl: ttl, now: time.Now, loginSlots: make(chan struct{}, 2)}
}

// identify finds the caller of ctx: its certificate, else its token.
func (a *authorizer) identify(ctx context.Context) (caller, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 && len(info.State.VerifiedChains[0]) > 0 {
			id := a.certIdentity(info.State.VerifiedChains[0][0])
			if id.Node || id.User != "" {
				return caller{node: id.Node, user: id.User}, nil
			}
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md["authorization"]
	if len(vals) == 0 {
		return caller{}, nil
	}
	tok, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok {
		return caller{}, status.Error(codes.Unauthenticated, `authorization metadata: want "Bearer TOKEN"`)
	}
	user, err := a.verifyToken(tok)
	if err != nil {
		return caller{}, status.Errorf(codes.Unauthenticated, "token refused: %v; log in again", err)
	}
	return caller{user: user, token: true}, nil
}

func (a *authorizer) certIdentity(c *x509.Certificate) security.Identity {
	if v, ok := a.ids.Load(c); ok {
		return v.(security.Identity)
	}
	id := security.IdentityOf(c)
	if a.idsLen.Add(1) > maxCachedIDs {
		a.ids.Clear()
		a.idsLen.Store(1)
	}
	a.ids.Store(c, id)
	return id
}

// check authorizes a call of method; req is nil for a stream.
func (a *authorizer) check(ctx context.Context, method string, req any) error {
	r, ok := rules[method]
	if !ok {
		r = defaultRule
	}
	if r.access == accessAnyone {
		return nil
	}
	c, err := a.identify(ctx)
	if err != nil {
		return err
	}
	var ks string
	if r.keyspace != nil {
		if req == nil {
			// A stream whose rule needs its request: no such method
			// today; refuse rather than guess.
			return status.Errorf(codes.PermissionDenied, "%s: no authorization rule for a stream; nothing was done", method)
		}
		ks = r.keyspace(req)
	}
	var u *UserRecord
	if !c.node && c.user != "" {
		u = a.n.meta.auth.Load().user(c.user)
	}
	return decide(c, u, r, ks)
}

func (a *authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod, nil); err != nil {
		return err
	}
	return handler(srv, ss)
}

// Tokens are base64url(user "|" expiry-unix-ms "|" password-index) "."
// base64url(HMAC-SHA256 of that payload under the log's secret). The
// password index ties a token to the password it was issued for.

// issueToken signs a token for u lasting the authorizer's ttl.
func (a *authorizer) issueToken(secret []byte, u *UserRecord) (string, time.Time) {
	exp := a.now().Add(a.ttl)
	payload := u.Name + "|" + strconv.FormatInt(exp.UnixMilli(), 10) + "|" + strconv.FormatUint(u.PasswordIndex, 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(payload))
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(mac.Sum(nil)), exp
}

// verifyToken returns the user of a valid token.
func (a *authorizer) verifyToken(tok string) (string, error) {
	st := a.n.meta.auth.Load()
	if len(st.Secret) == 0 {
		return "", fmt.Errorf("this node has no token secret yet")
	}
	p64, m64, ok := strings.Cut(tok, ".")
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p64)
	sum, err2 := enc.DecodeString(m64)
	if !ok || err1 != nil || err2 != nil {
		return "", fmt.Errorf("malformed token")
	}
	mac := hmac.New(sha256.New, st.Secret)
	mac.Write(payload)
	if !hmac.Equal(mac.Sum(nil), sum) {
		return "", fmt.Errorf("bad signature")
	}
	parts := strings.Split(string(payload), "|")
	if len(parts) != 3 {
		return "", fmt.Errorf("malformed token")
	}
	exp, err1 := strconv.ParseInt(parts[1], 10, 64)
	pw, err2 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("malformed token")
	}
	if a.now().UnixMilli() >= exp {
		return "", fmt.Errorf("token of user %s expired at %s", parts[0], time.UnixMilli(exp).UTC().Format(time.RFC3339))
	}
	u := st.user(parts[0])
	if u == nil || u.PasswordIndex != pw || len(u.Hash) == 0 {
		return "", fmt.Errorf("the password of user %s changed (or the user was dropped) since the token was issued", parts[0])
	}
	return parts[0], nil
}

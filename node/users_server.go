package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/internal/security"
	"github.com/adaptkv/adaptkv/replication"
)

// bcryptCost is the work factor of password hashes: bcrypt's default (10),
// about 50-100 ms of one core per check, which makes guessing slow and
// still lets a client log in without a noticeable wait.
const bcryptCost = bcrypt.DefaultCost

// maxPasswordLen is bcrypt's limit: it ignores bytes past 72, so a longer
// password would be weaker than it looks.
const maxPasswordLen = 72

// dummyHash is compared against when a login names an unknown user, so
// that the answer takes as long as for a wrong password and does not tell
// which users exist.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("adaptkv-no-such-user"), bcryptCost)
	return h
})

// authSecretLoop has the metadata leader write the token-signing secret
// into the log once, on a secure cluster.
func (n *Node) authSecretLoop(ctx context.Context) {
	if n.cfg.Security == nil {
		return
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if len(n.meta.auth.Load().Secret) > 0 {
			return
		}
		if _, id := n.raft.LeaderWithID(); string(id) == n.cfg.ID {
			secret := make([]byte, 32)
			rand.Read(secret)
			if _, _, err := proposeEntry(ctx, n.raft, command{Op: "auth-secret", User: &userCmd{Secret: secret}, AtUnixMs: time.Now().UnixMilli()}); err != nil {
				n.log.Debug("write the token secret", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// userStatus maps user-management errors to statuses.
func userStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUserExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, ErrUserNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrRootUser):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrBadGrant), errors.Is(err, security.ErrBadUser):
		return invalidArgument(err.Error())
	}
	return toStatus(err)
}

func hashPassword(pw string) ([]byte, error) {
	if pw == "" {
		return nil, nil
	}
	if len(pw) > maxPasswordLen {
		return nil, invalidArgument(fmt.Sprintf("password is %d bytes, over bcrypt's limit of %d", len(pw), maxPasswordLen))
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcryptCost)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "hash password: %v", err)
	}
	return h, nil
}

func userToPB(u *UserRecord) *kvpb.User {
	if u == nil {
		return nil
	}
	out := &kvpb.User{Name: u.Name, ClusterAdmin: u.ClusterAdmin, HasPassword: len(u.Hash) > 0, CreatedUnixMs: u.CreatedUnixMs}
	keyspaces := make([]string, 0, len(u.Grants))
	for ks := range u.Grants {
		keyspaces = append(keyspaces, ks)
	}
	slices.Sort(keyspaces)
	for _, ks := range keyspaces {
		p := u.Grants[ks]
		for _, r := range []struct {
			p    Perm
			role kvpb.Role
		}{{PermRead, kvpb.Role_ROLE_READ}, {PermWrite, kvpb.Role_ROLE_WRITE}, {PermAdmin, kvpb.Role_ROLE_ADMIN}} {
			if p&r.p != 0 {
				out.Grants = append(out.Grants, &kvpb.Grant{Keyspace: ks, Role: r.role})
			}
		}
	}
	return out
}

func permFromPB(r kvpb.Role) (Perm, error) {
	switch r {
	case kvpb.Role_ROLE_READ:
		return PermRead, nil
	case kvpb.Role_ROLE_WRITE:
		return PermWrite, nil
	case kvpb.Role_ROLE_ADMIN:
		return PermAdmin, nil
	}
	return 0, invalidArgument(fmt.Sprintf("role %v: want read, write or admin", r))
}

// proposeUser runs a user change on the metadata leader: a node that is
// not the leader forwards the request (as itself, after the interceptor
// authorized its caller) and waits until it has applied the change.
func (s adminServer) proposeUser(ctx context.Context, forward func(kvpb.AdminClient, context.Context) (*kvpb.UserResponse, error), build func() (command, error)) (*kvpb.UserResponse, error) {
	_, leaderID := s.n.raft.LeaderWithID()
	if string(leaderID) != s.n.cfg.ID {
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedHeader)) > 0 {
			return nil, toStatus(fmt.Errorf("%w: this node was told it leads, and it does not", ErrNoLeader))
		}
		if leaderID == "" {
			return nil, toStatus(fmt.Errorf("%w: try again once the metadata voters have elected one", ErrNoLeader))
		}
		c, err := s.n.transport.adminClient(string(leaderID))
		if err != nil {
			return nil, toStatus(fmt.Errorf("%w: leader %s unreachable: %w", ErrNoLeader, leaderID, err))
		}
		resp, err := forward(c, metadata.AppendToOutgoingContext(ctx, forwardedHeader, s.n.cfg.ID))
		if err != nil {
			return nil, err
		}
		if err := s.n.meta.WaitForIndex(ctx, resp.GetIndex()); err != nil {
			return nil, toStatus(err)
		}
		return resp, nil
	}
	cmd, err := build()
	if err != nil {
		return nil, err
	}
	cmd.AtUnixMs = time.Now().UnixMilli()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, index, err := proposeEntry(pctx, s.n.raft, cmd)
	if err != nil {
		return nil, toStatus(err)
	}
	if res.err != nil {
		return nil, userStatus(res.err)
	}
	return &kvpb.UserResponse{User: userToPB(res.user), Index: index}, nil
}

func validUserName(name string) error {
	if err := security.ValidUser(name); err != nil {
		return invalidArgument(fmt.Sprintf("user %q: %v", name, err))
	}
	return nil
}

// CreateUser implements Admin.CreateUser.
func (s adminServer) CreateUser(ctx context.Context, req *kvpb.CreateUserRequest) (*kvpb.UserResponse, error) {
	if err := validUserName(req.GetName()); err != nil {
		return nil, err
	}
	return s.proposeUser(ctx, func(c kvpb.AdminClient, fctx context.Context) (*kvpb.UserResponse, error) {
		return c.CreateUser(fctx, req)
	}, func() (command, error) {
		h, err := hashPassword(req.GetPassword())
		return command{Op: "user-create", User: &userCmd{Name: req.GetName(), Hash: h}}, err
	})
}

// DropUser implements Admin.DropUser.
func (s adminServer) DropUser(ctx context.Context, req *kvpb.DropUserRequest) (*kvpb.UserResponse, error) {
	if err := validUserName(req.GetName()); err != nil {
		return nil, err
	}
	return s.proposeUser(ctx, func(c kvpb.AdminClient, fctx context.Context) (*kvpb.UserResponse, error) {
		return c.DropUser(fctx, req)
	}, func() (command, error) {
		return command{Op: "user-drop", User: &userCmd{Name: req.GetName()}}, nil
	})
}

// SetPassword implements Admin.SetPassword.
func (s adminServer) SetPassword(ctx context.Context, req *kvpb.SetPasswordRequest) (*kvpb.UserResponse, error) {
	if err := validUserName(req.GetName()); err != nil {
		return nil, err
	}
	return s.proposeUser(ctx, func(c kvpb.AdminClient, fctx context.Context) (*kvpb.UserResponse, error) {
		return c.SetPassword(fctx, req)
	}, func() (command, error) {
		h, err := hashPassword(req.GetPassword())
		return command{Op: "user-passwd", User: &userCmd{Name: req.GetName(), Hash: h}}, err
	})
}

// grantCmd validates a grant or revoke.
func (s adminServer) grantCmd(op string, req *kvpb.GrantRoleRequest) (command, error) {
	uc := &userCmd{Name: req.GetName(), ClusterAdmin: req.GetClusterAdmin()}
	switch {
	case req.GetClusterAdmin() && (req.GetKeyspace() != "" || req.GetRole() != kvpb.Role_ROLE_UNSPECIFIED):
		return command{}, invalidArgument("give either cluster admin or a keyspace and a role, not both")
	case !req.GetClusterAdmin():
		p, err := permFromPB(req.GetRole())
		if err != nil {
			return command{}, err
		}
		ks := req.GetKeyspace()
		if ks != AllKeyspaces {
			if err := validKeyspaceName(ks); err != nil {
				return command{}, err
			}
			if _, ok := s.n.meta.Def(ks); !ok && op == "user-grant" {
				return command{}, toStatus(fmt.Errorf("grant on keyspace %q: %w (use %q for every keyspace)", ks, replication.ErrKeyspaceNotFound, AllKeyspaces))
			}
		}
		uc.Keyspace, uc.Perm = ks, p
	}
	return command{Op: op, User: uc}, nil
}

// GrantRole implements Admin.GrantRole.
func (s adminServer) GrantRole(ctx context.Context, req *kvpb.GrantRoleRequest) (*kvpb.UserResponse, error) {
	if err := validUserName(req.GetName()); err != nil {
		return nil, err
	}
	return s.proposeUser(ctx, func(c kvpb.AdminClient, fctx context.Context) (*kvpb.UserResponse, error) {
		return c.GrantRole(fctx, req)
	}, func() (command, error) { return s.grantCmd("user-grant", req) })
}

// RevokeRole implements Admin.RevokeRole.
func (s adminServer) RevokeRole(ctx context.Context, req *kvpb.GrantRoleRequest) (*kvpb.UserResponse, error) {
	if err := validUserName(req.GetName()); err != nil {
		return nil, err
	}
	return s.proposeUser(ctx, func(c kvpb.AdminClient, fctx context.Context) (*kvpb.UserResponse, error) {
		return c.RevokeRole(fctx, req)
	}, func() (command, error) { return s.grantCmd("user-revoke", req) })
}

// ListUsers implements Admin.ListUsers from this node's applied log.
func (s adminServer) ListUsers(ctx context.Context, req *kvpb.ListUsersRequest) (*kvpb.ListUsersResponse, error) {
	resp := &kvpb.ListUsersResponse{}
	for _, u := range s.n.meta.auth.Load().sortedUsers() {
		resp.Users = append(resp.Users, userToPB(u))
	}
	return resp, nil
}

// Login implements Admin.Login.
func (s adminServer) Login(ctx context.Context, req *kvpb.LoginRequest) (*kvpb.LoginResponse, error) {
	if s.n.auth == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node runs --insecure: it authenticates no one and needs no login")
	}
	select {
	case s.n.auth.loginSlots <- struct{}{}:
		defer func() { <-s.n.auth.loginSlots }()
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	st := s.n.meta.auth.Load()
	u := st.user(req.GetUser())
	hash := dummyHash()
	if u != nil && len(u.Hash) > 0 {
		hash = u.Hash
	}
	pw := req.GetPassword()
	if len(pw) > maxPasswordLen {
		pw = pw[:0]
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(pw))
	if err != nil || u == nil || len(u.Hash) == 0 || pw == "" {
		s.n.log.Info("login refused", "user", req.GetUser())
		return nil, status.Errorf(codes.Unauthenticated, "login as %q: unknown user or wrong password", strings.TrimSpace(req.GetUser()))
	}
	if len(st.Secret) == 0 {
		return nil, status.Error(codes.Unavailable, "the token secret is not in the metadata log yet (the cluster is starting); try again")
	}
	tok, exp := s.n.auth.issueToken(st.Secret, u)
	return &kvpb.LoginResponse{Token: tok, ExpiresUnixMs: exp.UnixMilli()}, nil
}

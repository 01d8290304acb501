package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// Role is a permission on a keyspace. RoleAdmin includes read and write.
type Role int

// Roles a user can be granted on a keyspace.
const (
	RoleRead  Role = Role(kvpb.Role_ROLE_READ)  // Get, Scan
	RoleWrite Role = Role(kvpb.Role_ROLE_WRITE) // Put, Delete, conditional writes
	RoleAdmin Role = Role(kvpb.Role_ROLE_ADMIN) // AlterKeyspace, the tuner's reports, LocalGet; read and write
)

// AllKeyspaces is the keyspace name of a grant on every keyspace.
const AllKeyspaces = "*"

// String returns read, write or admin.
func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleWrite:
		return "write"
	case RoleAdmin:
		return "admin"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole reads read, write or admin.
func ParseRole(s string) (Role, error) {
	for _, r := range []Role{RoleRead, RoleWrite, RoleAdmin} {
		if r.String() == s {
			return r, nil
		}
	}
	return 0, fmt.Errorf("%w: role %q: want read, write or admin", ErrInvalidArgument, s)
}

// Grant is one role on one keyspace (AllKeyspaces for every keyspace).
type Grant struct {
	Keyspace string `json:"keyspace"`
	Role     Role   `json:"-"`
	RoleName string `json:"role"`
}

// User is a user as the cluster's metadata log holds it.
type User struct {
	Name         string    `json:"name"`
	ClusterAdmin bool      `json:"cluster_admin"`
	Grants       []Grant   `json:"grants"`
	HasPassword  bool      `json:"has_password"`
	Created      time.Time `json:"created"`
}

func userFromPB(u *kvpb.User) *User {
	if u == nil {
		return nil
	}
	out := &User{Name: u.GetName(), ClusterAdmin: u.GetClusterAdmin(), HasPassword: u.GetHasPassword(), Grants: []Grant{}}
	if ms := u.GetCreatedUnixMs(); ms != 0 {
		out.Created = time.UnixMilli(ms)
	}
	for _, g := range u.GetGrants() {
		r := Role(g.GetRole())
		out.Grants = append(out.Grants, Grant{Keyspace: g.GetKeyspace(), Role: r, RoleName: r.String()})
	}
	return out
}

// userCall runs a user-management change; it is not retried once sent,
// like any write whose outcome could be unknown.
func (c *Client) userCall(ctx context.Context, op string, call func(context.Context, kvpb.AdminClient, ...grpc.CallOption) (*kvpb.UserResponse, error)) (*User, error) {
	var resp *kvpb.UserResponse
	err := c.invoke(ctx, opWrite, op, c.pickFrom(op, c.adminWriteNodes), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = call(ctx, kvpb.NewAdminClient(cc), co...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return userFromPB(resp.GetUser()), nil
}

// CreateUser creates a user with no permissions. An empty password makes a
// user that can authenticate only with a client certificate. Needs cluster
// admin; ErrUserExists if the name is taken.
func (c *Client) CreateUser(ctx context.Context, name, password string) (*User, error) {
	return c.userCall(ctx, "user_create", func(ctx context.Context, a kvpb.AdminClient, co ...grpc.CallOption) (*kvpb.UserResponse, error) {
		return a.CreateUser(ctx, &kvpb.CreateUserRequest{Name: name, Password: password}, co...)
	})
}

// DropUser removes a user and its grants; its tokens stop working at
// once. root cannot be dropped. Needs cluster admin.
func (c *Client) DropUser(ctx context.Context, name string) error {
	_, err := c.userCall(ctx, "user_drop", func(ctx context.Context, a kvpb.AdminClient, co ...grpc.CallOption) (*kvpb.UserResponse, error) {
		return a.DropUser(ctx, &kvpb.DropUserRequest{Name: name}, co...)
	})
	return err
}

// SetPassword sets (empty: removes) a user's password; tokens issued under
// the old one stop working. Needs cluster admin, or to be that user.
func (c *Client) SetPassword(ctx context.Context, name, password string) error {
	_, err := c.userCall(ctx, "user_passwd", func(ctx context.Context, a kvpb.AdminClient, co ...grpc.CallOption) (*kvpb.UserResponse, error) {
		return a.SetPassword(ctx, &kvpb.SetPasswordRequest{Name: name, Password: password}, co...)
	})
	return err
}

// GrantRole grants a role on a keyspace (AllKeyspaces for every one);
// it takes effect on the user's next request. Needs cluster admin.
func (c *Client) GrantRole(ctx context.Context, name, keyspace string, role Role) (*User, error) {
	return c.userCall(ctx, "user_grant", func(ctx context.Context, a kvpb.AdminClient, co ...grpc.CallOption) (*kvpb.UserResponse, error) {
		return a.GrantRole(ctx, &kvpb.GrantRoleRequest{Name: name, Keyspace: keyspace, Role: kvpb.Role(role)}, co...)
	})
}

// RevokeRole takes a role on a keyspace back. Needs cluster admin.
func (c *Client) RevokeRole(ctx context.Context, name, keyspace string, role Role) (*User, error) {
	return c.userCall(ctx, "user_revoke", func(ctx context.Context, a kvpb.AdminClient, co ...grpc.CallOption) (*kvpb.UserResponse, error) {
		return a.RevokeRole(ctx, &kvpb.GrantRoleRequest{Name: name, Keyspace: keyspace, Role: kvpb.Role(role)}, co...)
	})
}

// SetClusterAdmin grants (on) or revokes (off) cluster administration:
// every keyspace, user management and the cluster operations. root keeps
// it always. Needs cluster admin.
func (c *Client) SetClusterAdmin(ctx context.Context, name string, on bool) (*User, error) {
	req := &kvpb.GrantRoleRequest{Name: name, ClusterAdmin: true}
	if on {
		return c.userCall(ctx, "user_grant", func(ctx context.Context, a kvpb.AdminClient, co ...grpc.CallOption) (*kvpb.UserResponse, error) {
			return a.GrantRole(ctx, req, co...)
		})
	}
	return c.userCall(ctx, "user_revoke", func(ctx context.Context, a kvpb.AdminClient, co ...grpc.CallOption) (*kvpb.UserResponse, error) {
		return a.RevokeRole(ctx, req, co...)
	})
}

// ListUsers returns every user, sorted by name. Needs cluster admin.
func (c *Client) ListUsers(ctx context.Context) ([]*User, error) {
	const op = "user_list"
	var resp *kvpb.ListUsersResponse
	err := c.invoke(ctx, opRead, op, c.pickFrom(op, c.anyNode), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = kvpb.NewAdminClient(cc).ListUsers(ctx, &kvpb.ListUsersRequest{}, co...)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]*User, 0, len(resp.GetUsers()))
	for _, u := range resp.GetUsers() {
		out = append(out, userFromPB(u))
	}
	return out, nil
}

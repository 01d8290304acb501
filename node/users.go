package node

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/adaptkv/adaptkv/internal/security"
)

// Perm is a set of permissions on a keyspace. Admin includes read and
// write: whoever may reconfigure a keyspace may also use it.
type Perm uint8

// Permissions on a keyspace.
const (
	PermRead  Perm = 1 << iota // Get, Scan
	PermWrite                  // Put, Delete, conditional writes
	PermAdmin                  // AlterKeyspace, tuner reports, LocalGet
)

// AllKeyspaces is the keyspace name a grant uses to apply to every
// keyspace, present and future.
const AllKeyspaces = "*"

// effective expands admin into what it includes.
func (p Perm) effective() Perm {
	if p&PermAdmin != 0 {
		return PermRead | PermWrite | PermAdmin
	}
	return p
}

// String names the permissions, "read,write" for example.
func (p Perm) String() string {
	var parts []string
	for _, r := range []struct {
		p    Perm
		name string
	}{{PermRead, "read"}, {PermWrite, "write"}, {PermAdmin, "admin"}} {
		if p&r.p != 0 {
			parts = append(parts, r.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// ParsePerm reads a role name: read, write or admin.
func ParsePerm(s string) (Perm, error) {
	switch s {
	case "read":
		return PermRead, nil
	case "write":
		return PermWrite, nil
	case "admin":
		return PermAdmin, nil
	}
	return 0, fmt.Errorf("%w: role %q: want read, write or admin", ErrBadGrant, s)
}

// Errors of user management in the metadata log.
var (
	ErrUserExists   = errors.New("node: user already exists")
	ErrUserNotFound = errors.New("node: user not found")
	// ErrRootUser refuses a change that would take root's powers away:
	// without it a cluster could lock out every administrator.
	ErrRootUser = errors.New("node: root always exists with every permission")
	ErrBadGrant = errors.New("node: invalid grant")
)

// UserRecord is a user as the metadata log stores it.
type UserRecord struct {
	Name string `json:"name"`
	// Hash is the bcrypt hash of the password; empty when the user can
	// authenticate with a client certificate only.
	Hash []byte `json:"hash,omitempty"`
	// PasswordIndex is the log index of the entry that last set the
	// password: tokens issued under an older one are refused, so changing a
	// password logs every holder of a token out.
	PasswordIndex uint64 `json:"pw_index,omitempty"`
	ClusterAdmin  bool   `json:"cluster_admin,omitempty"`
	// Grants are the permissions per keyspace (AllKeyspaces for every one).
	Grants        map[string]Perm `json:"grants,omitempty"`
	CreatedUnixMs int64           `json:"created,omitempty"`
}

// Allowed reports whether the user holds need on keyspace. It is the whole
// permission check of the request path: two map lookups, no allocation.
func (u *UserRecord) Allowed(keyspace string, need Perm) bool {
	if u == nil {
		return false
	}
	if u.ClusterAdmin {
		return true
	}
	have := (u.Grants[keyspace] | u.Grants[AllKeyspaces]).effective()
	return have&need == need
}

// userCmd is the user part of a metadata log entry.
type userCmd struct {
	Name         string `json:"name,omitempty"`
	Hash         []byte `json:"hash,omitempty"`
	Keyspace     string `json:"keyspace,omitempty"`
	Perm         Perm   `json:"perm,omitempty"`
	ClusterAdmin bool   `json:"cluster_admin,omitempty"`
	// Secret is the token-signing key of an "auth-secret" entry.
	Secret []byte `json:"secret,omitempty"`
}

// authState is the users and the token secret as of one log index. It is
// immutable: Apply builds a new one, readers load it through an atomic
// pointer.
type authState struct {
	Users  map[string]*UserRecord `json:"users"`
	Secret []byte                 `json:"secret,omitempty"`
}

// newAuthState is a new cluster's: root alone, with every permission.
func newAuthState() *authState {
	return &authState{Users: map[string]*UserRecord{security.RootUser: {Name: security.RootUser, ClusterAdmin: true}}}
}

// withRoot returns s with root present and a cluster admin, whatever a
// snapshot said.
func (s *authState) withRoot() *authState {
	if s == nil || s.Users == nil {
		return newAuthState()
	}
	if r := s.Users[security.RootUser]; r != nil && r.ClusterAdmin {
		return s
	}
	next := &authState{Users: maps.Clone(s.Users), Secret: s.Secret}
	r := &UserRecord{Name: security.RootUser}
	if old := s.Users[security.RootUser]; old != nil {
		*r = *old
	}
	r.ClusterAdmin = true
	next.Users[security.RootUser] = r
	return next
}

// user looks a user up; nil when there is none.
func (s *authState) user(name string) *UserRecord { return s.Users[name] }

// applyUserOp is the state machine of users: it returns the state after
// one entry and the user it changed. It is pure, so that every node
// computes the same state from the same log.
func applyUserOp(s *authState, op string, c userCmd, index uint64, atUnixMs int64) (*authState, *UserRecord, error) {
	if op == "auth-secret" {
		if len(s.Secret) > 0 || len(c.Secret) == 0 {
			// The first secret stays: a second leader's entry would
			// invalidate the tokens issued under the first.
			return s, nil, nil
		}
		return &authState{Users: s.Users, Secret: c.Secret}, nil, nil
	}
	if err := security.ValidUser(c.Name); err != nil {
		return s, nil, fmt.Errorf("user %q: %w", c.Name, err)
	}
	old := s.Users[c.Name]
	var u *UserRecord
	switch op {
	case "user-create":
		if old != nil {
			return s, old, fmt.Errorf("user %q: %w", c.Name, ErrUserExists)
		}
		u = &UserRecord{Name: c.Name, Hash: c.Hash, CreatedUnixMs: atUnixMs}
		if len(c.Hash) > 0 {
			u.PasswordIndex = index
		}
	case "user-drop":
		if c.Name == security.RootUser {
			return s, old, fmt.Errorf("drop user root: %w", ErrRootUser)
		}
		if old == nil {
			return s, nil, fmt.Errorf("user %q: %w", c.Name, ErrUserNotFound)
		}
		next := &authState{Users: maps.Clone(s.Users), Secret: s.Secret}
		delete(next.Users, c.Name)
		return next, old, nil
	case "user-passwd", "user-grant", "user-revoke":
		if old == nil {
			return s, nil, fmt.Errorf("user %q: %w", c.Name, ErrUserNotFound)
		}
		cp := *old
		cp.Grants = maps.Clone(old.Grants)
		u = &cp
		switch op {
		case "user-passwd":
			u.Hash, u.PasswordIndex = c.Hash, index
		case "user-grant":
			if c.ClusterAdmin {
				u.ClusterAdmin = true
				break
			}
			if c.Keyspace == "" || c.Perm == 0 {
				return s, old, fmt.Errorf("%w: a grant needs a keyspace and a role, or cluster admin", ErrBadGrant)
			}
			if u.Grants == nil {
				u.Grants = map[string]Perm{}
			}
			u.Grants[c.Keyspace] |= c.Perm
		case "user-revoke":
			if c.ClusterAdmin {
				if c.Name == security.RootUser {
					return s, old, fmt.Errorf("revoke cluster admin from root: %w", ErrRootUser)
				}
				u.ClusterAdmin = false
				break
			}
			if c.Keyspace == "" || c.Perm == 0 {
				return s, old, fmt.Errorf("%w: a revoke needs a keyspace and a role, or cluster admin", ErrBadGrant)
			}
			// Revoking admin takes only admin: read and write granted on
			// their own stay.
			if p := u.Grants[c.Keyspace] &^ c.Perm; p != 0 {
				u.Grants[c.Keyspace] = p
			} else {
				delete(u.Grants, c.Keyspace)
			}
		}
	default:
		return s, nil, fmt.Errorf("unknown user op %q", op)
	}
	next := &authState{Users: maps.Clone(s.Users), Secret: s.Secret}
	next.Users[c.Name] = u
	return next, u, nil
}

// sortedUsers lists the users by name.
func (s *authState) sortedUsers() []*UserRecord {
	out := slices.Collect(maps.Values(s.Users))
	slices.SortFunc(out, func(a, b *UserRecord) int { return strings.Compare(a.Name, b.Name) })
	return out
}

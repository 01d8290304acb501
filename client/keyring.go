package client

import (
	"context"

	"google.golang.org/grpc"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// Keyring is the cluster's gossip encryption keyring and where each alive
// member stands.
type Keyring struct {
	// Primary and Keys are the cluster's keyring as the metadata log has
	// it (standard base64); Keys include Primary. Before the first change
	// they are the answering node's own.
	Primary string
	Keys    []string
	// Index is the metadata index the answer reflects.
	Index uint64
	// Nodes are the alive members' keyrings as they reported them.
	Nodes []KeyringNode
	// NotApplied names the alive members whose keyring does not match Keys
	// and Primary: after a change, take the next step of a rotation only
	// when it is empty.
	NotApplied []string
}

// KeyringNode is one member's keyring.
type KeyringNode struct {
	ID      string
	Primary string
	Keys    []string
	// Applied is the member's applied metadata index.
	Applied uint64
	// Error says why the member did not report, if it did not.
	Error string
}

// KeyringList returns the cluster's gossip keyring and every alive
// member's.
func (c *Client) KeyringList(ctx context.Context) (*Keyring, error) {
	return c.keyring(ctx, opRead, "keyring_list", kvpb.KeyringOp_KEYRING_OP_LIST, "")
}

// KeyringInstall adds key (32 bytes, standard base64) to every member's
// gossip keyring: members decrypt with it, and still encrypt with the
// primary. It returns once every alive member has it, or names those that
// do not in NotApplied.
func (c *Client) KeyringInstall(ctx context.Context, key string) (*Keyring, error) {
	return c.keyring(ctx, opWrite, "keyring_install", kvpb.KeyringOp_KEYRING_OP_INSTALL, key)
}

// KeyringUse makes an installed key the primary: members encrypt with it.
func (c *Client) KeyringUse(ctx context.Context, key string) (*Keyring, error) {
	return c.keyring(ctx, opWrite, "keyring_use", kvpb.KeyringOp_KEYRING_OP_USE, key)
}

// KeyringRemove removes a key that is not the primary from every member's
// keyring.
func (c *Client) KeyringRemove(ctx context.Context, key string) (*Keyring, error) {
	return c.keyring(ctx, opWrite, "keyring_remove", kvpb.KeyringOp_KEYRING_OP_REMOVE, key)
}

func (c *Client) keyring(ctx context.Context, kind opKind, op string, kop kvpb.KeyringOp, key string) (*Keyring, error) {
	nodes := c.anyNode
	if kind == opWrite {
		nodes = c.adminWriteNodes
	}
	var resp *kvpb.KeyringResponse
	err := c.invoke(ctx, kind, op, c.pickFrom(op, nodes), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = kvpb.NewAdminClient(cc).Keyring(ctx, &kvpb.KeyringRequest{Op: kop, Key: key}, co...)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := &Keyring{Primary: resp.GetPrimary(), Keys: resp.GetKeys(), Index: resp.GetIndex(), NotApplied: resp.GetNotApplied()}
	for _, n := range resp.GetNodes() {
		out.Nodes = append(out.Nodes, KeyringNode{ID: n.GetId(), Primary: n.GetPrimary(), Keys: n.GetKeys(), Applied: n.GetApplied(), Error: n.GetError()})
	}
	return out, nil
}

package client

import (
	"context"

	"google.golang.org/grpc"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// CleanupResult is one ring member's part of a cleanup.
type CleanupResult struct {
	// NodeID is the member.
	NodeID string
	// KeysScanned is how many records of the keyspace it looked at;
	// KeysRemoved how many of them it deleted as not its own.
	KeysScanned, KeysRemoved uint64
	// Err is why the member could not clean, empty when it did.
	Err string
}

// CleanupKeyspace has every ring member delete its records of keyspace's
// keys it is no longer a replica of (what `adaptkv keyspace cleanup` does),
// once the ring is in force on every member. It fails with
// FailedPrecondition while a topology change or a growth of N is in
// progress. Cleanup is safe to repeat, so it is retried like a read.
func (c *Client) CleanupKeyspace(ctx context.Context, keyspace string) ([]CleanupResult, error) {
	const op = "cleanup_keyspace"
	var resp *kvpb.CleanupKeyspaceResponse
	err := c.invoke(ctx, opRead, op, c.pickFrom(op, c.anyNode), func(ctx context.Context, cc *grpc.ClientConn, co ...grpc.CallOption) error {
		var err error
		resp, err = kvpb.NewAdminClient(cc).CleanupKeyspace(ctx, &kvpb.CleanupKeyspaceRequest{Keyspace: keyspace}, co...)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]CleanupResult, 0, len(resp.GetNodes()))
	for _, n := range resp.GetNodes() {
		out = append(out, CleanupResult{NodeID: n.GetId(), KeysScanned: n.GetKeysScanned(), KeysRemoved: n.GetKeysRemoved(), Err: n.GetError()})
	}
	return out, nil
}

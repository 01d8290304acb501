package node

import (
	"context"
	"errors"
	"testing"

	"github.com/adaptkv/adaptkv/api/kvpb"
)

// A request handler that Stop cut off can still be running when the peer
// transport closes. What it sends afterwards must fail at once rather than
// open a connection and a write batcher that nothing closes (goleak in
// TestMain catches those; the power-cut tests found them).
func TestPeerTransportRefusesAfterClose(t *testing.T) {
	tr := newPeerTransport("n1", nil, "127.0.0.1", func(string) (string, bool) { return "127.0.0.1:1", true }, nil)
	tr.Close()
	ctx := context.Background()
	calls := map[string]func() error{
		"write": func() error {
			_, err := tr.Write(ctx, "n2", &kvpb.ReplicaWriteRequest{Mutations: []*kvpb.Mutation{{Keyspace: "ks"}}})
			return err
		},
		"read":  func() error { _, err := tr.Read(ctx, "n2", &kvpb.ReplicaReadRequest{}); return err },
		"scan":  func() error { _, err := tr.Scan(ctx, "n2", &kvpb.ReplicaScanRequest{}); return err },
		"hint":  func() error { _, err := tr.Hint(ctx, "n2", &kvpb.ReplicaWriteRequest{}); return err },
		"admin": func() error { _, err := tr.adminClient("n2"); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, errBatcherClosed) {
			t.Errorf("%s after Close: %v, want %v", name, err, errBatcherClosed)
		}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.conns) != 0 || len(tr.batchers) != 0 {
		t.Errorf("after Close the transport opened %d connections and %d batchers", len(tr.conns), len(tr.batchers))
	}
}

package node_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// cleanupLog records, per node, how many Paxos states the node's cleanup
// reported forgotten.
type cleanupLog struct {
	mu        sync.Mutex
	forgotten map[string]int64
}

type cleanupHandler struct {
	slog.Handler
	id  string
	log *cleanupLog
}

// Enabled lets Info through even when the wrapped handler discards it.
func (h cleanupHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h cleanupHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "paxos state cleaned" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "forgotten" {
				h.log.mu.Lock()
				h.log.forgotten[h.id] += a.Value.Int64()
				h.log.mu.Unlock()
			}
			return true
		})
	}
	return h.Handler.Handle(ctx, r)
}

func (h cleanupHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return cleanupHandler{h.Handler.WithAttrs(as), h.id, h.log}
}

func (h cleanupHandler) WithGroup(g string) slog.Handler {
	return cleanupHandler{h.Handler.WithGroup(g), h.id, h.log}
}

// TestPaxosStateCleanedByTheNode checks that a node forgets the acceptor
// state of a completed conditional write once it is older than half the
// tombstone grace (the node's collection loop calls the replica's cleanup),
// and that the key's conditional writes and linearizable reads go on as
// before afterwards.
func TestPaxosStateCleanedByTheNode(t *testing.T) {
	logs := &cleanupLog{forgotten: map[string]int64{}}
	c := clustertest.New(t, 3, func(o *clustertest.Options) {
		o.Configure = func(i int, cfg *node.Config) {
			// Collected every second; states older than 1 s are forgotten.
			cfg.TombstoneGrace = 2 * time.Second
			cfg.Logger = slog.New(cleanupHandler{slog.DiscardHandler, cfg.ID, logs})
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.Client(t)
	key := []byte("cleaned")
	res, err := cl.PutIf(ctx, key, []byte("v1"), client.IfAbsent())
	if err != nil || !res.Applied {
		t.Fatalf("PutIf(IfAbsent) = %+v, %v; want applied", res, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		logs.mu.Lock()
		cleaned := 0
		for _, f := range logs.forgotten {
			if f > 0 {
				cleaned++
			}
		}
		logs.mu.Unlock()
		if cleaned >= 2 { // a write quorum of the key's replicas held state
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s, states forgotten by node: %v; want a quorum of the replicas to forget the key's state", logs.forgotten)
		}
		time.Sleep(200 * time.Millisecond)
	}
	res, err = cl.PutIf(ctx, key, []byte("v2"), client.IfVersion(res.Version))
	if err != nil || !res.Applied {
		t.Fatalf("PutIf(IfVersion) after the cleanup = %+v, %v; want applied", res, err)
	}
	got, err := cl.Get(ctx, key, client.WithConsistency(client.Linearizable))
	if err != nil || string(got.Value) != "v2" {
		t.Fatalf("linearizable Get after the cleanup = %q, %v; want v2", got.Value, err)
	}
}

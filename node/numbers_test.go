package node_test

import (
	"fmt"
	"hash/fnv"
	"path/filepath"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// collidingIDs returns two node IDs whose 32-bit FNV-1a hashes, the node
// numbers before the metadata log assigned them, are equal.
func collidingIDs(t *testing.T) (string, string) {
	seen := map[uint32]string{}
	for i := 0; i < 1<<22; i++ {
		id := fmt.Sprintf("node-%d", i)
		h := fnv.New32a()
		h.Write([]byte(id))
		if other, ok := seen[h.Sum32()]; ok {
			return other, id
		}
		seen[h.Sum32()] = id
	}
	t.Fatal("no colliding IDs found")
	return "", ""
}

// Two nodes whose IDs hash alike still stamp versions with different node
// numbers: with equal numbers, two writes of a key in one clock tick get
// equal versions with different values, and the replicas that hold one or
// the other never converge. A restarted node keeps its number.
func TestNodeNumbersUniqueAcrossCollidingIDs(t *testing.T) {
	t.Parallel()
	a, b := collidingIDs(t)
	dir := t.TempDir()
	c := clustertest.New(t, 2, func(o *clustertest.Options) {
		o.Configure = func(i int, cfg *node.Config) {
			cfg.ID = []string{a, b}[i]
			cfg.DataDir = filepath.Join(dir, cfg.ID)
		}
	})
	ctx := ctxT(t, 30*time.Second)
	stamped := func(i int, key string) uint32 {
		t.Helper()
		kv := clientFor(t, c.Endpoints()[i])
		w, err := kv.Put(ctx, []byte(key), []byte(key), client.WithConsistency(client.All))
		if err != nil {
			t.Fatalf("put through %s: %v", c.ID(i), err)
		}
		if w.Receipt.Coordinator != c.ID(i) {
			t.Fatalf("put coordinated by %s; want %s", w.Receipt.Coordinator, c.ID(i))
		}
		return w.Version.Node
	}
	na, nb := stamped(0, "a"), stamped(1, "b")
	if na == 0 || nb == 0 || na == nb {
		t.Fatalf("%s stamped node number %d and %s %d (their IDs hash alike); want two different non-zero numbers", a, na, b, nb)
	}
	if err := c.StopNode(1); err != nil {
		t.Fatal(err)
	}
	if err := c.RestartNode(ctx, 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "restarted node writes", func() error {
		kv := clientFor(t, c.Endpoints()[1])
		w, err := kv.Put(ctx, []byte("b2"), []byte("b2"), client.WithConsistency(client.All))
		if err == nil && w.Version.Node != nb {
			t.Fatalf("after a restart %s stamps number %d; want %d", b, w.Version.Node, nb)
		}
		return err
	})
}

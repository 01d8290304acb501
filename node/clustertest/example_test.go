package clustertest_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// A real three-node cluster in the test process, written to at quorum and
// read back, with the receipt saying what was achieved.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "adaptkv-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	c, err := clustertest.Start(ctx, clustertest.Options{Nodes: 3, Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	kv, err := client.New(ctx, client.Config{Endpoints: c.Endpoints()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer kv.Close()
	w, err := kv.Put(ctx, []byte("greeting"), []byte("hello"), client.WithConsistency(client.Quorum))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("put: level=%v acked>=%d of N=%d\n", w.Receipt.Level, w.Receipt.Required, w.Receipt.N)
	g, err := kv.Get(ctx, []byte("greeting"), client.WithConsistency(client.Quorum))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("get: %s (same version: %v)\n", g.Value, g.Version == w.Version)
	// Output:
	// put: level=quorum acked>=2 of N=3
	// get: hello (same version: true)
}

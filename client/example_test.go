package client_test

// These examples need a running cluster, so they have no "Output:" comment:
// they are compiled by go test but not run.

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

func ExampleNew() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{
		// One reachable node is enough; more let the client start while
		// some are down.
		Endpoints:      []string{"127.0.0.1:7400", "127.0.0.1:7401"},
		RequestTimeout: 2 * time.Second,
		Logger:         slog.Default(),
	})
	if err != nil {
		log.Fatal(err) // only an invalid Config gets here
	}
	defer c.Close()

	st, err := c.ClusterStatus(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range st.Members {
		fmt.Println(m.ID, m.State, m.GRPCAddr)
	}
}

func ExampleClient_Put() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Endpoints: []string{"127.0.0.1:7400"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	res, err := c.Put(ctx, []byte("user:42"), []byte(`{"name":"Ada"}`),
		client.WithKeyspace("users"), client.WithConsistency(client.Quorum))
	switch {
	case errors.Is(err, client.ErrUnknownOutcome):
		// Sent, but not known to be stored: it may be on some replicas
		// and appear later. Read at Quorum to find out, or write again.
		log.Printf("put outcome unknown: %v", err)
	case err != nil:
		// Definite failure: nothing was written.
		log.Printf("put failed: %v", err)
	default:
		fmt.Printf("stored version %d on %d of %d replicas (required %d)\n",
			res.Version.Timestamp, res.Receipt.Acked, res.Receipt.N, res.Receipt.Required)
	}
}

func ExampleClient_Get() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Endpoints: []string{"127.0.0.1:7400"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// R = 2 explicitly; W is ignored by a read.
	res, err := c.Get(ctx, []byte("user:42"), client.WithKeyspace("users"), client.WithRW(2, 2))
	if err != nil {
		log.Fatal(err)
	}
	if !res.Found {
		fmt.Println("not found")
		return
	}
	fmt.Printf("%s (written %v, %d replicas answered, %d repaired)\n",
		res.Value, res.Version.Time(), res.Receipt.Acked, res.Receipt.Repaired)
}

func ExampleClient_Delete() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Endpoints: []string{"127.0.0.1:7400"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if _, err := c.Delete(ctx, []byte("user:42"), client.WithKeyspace("users"), client.WithConsistency(client.All)); err != nil {
		log.Fatal(err)
	}
}

func ExampleClient_Scan() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Endpoints: []string{"127.0.0.1:7400"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Page through every key with the prefix "user:", 100 at a time.
	prefix := []byte("user:")
	opts := []client.CallOption{client.WithKeyspace("users"), client.WithLimit(100)}
	res, err := c.Scan(ctx, append(opts, client.WithPrefix(prefix))...)
	for {
		if err != nil {
			log.Fatal(err)
		}
		for _, kv := range res.Items {
			fmt.Printf("%s = %s\n", kv.Key, kv.Value)
		}
		if !res.More {
			break
		}
		res, err = c.Scan(ctx, append(opts, client.WithRange(res.NextStart, client.PrefixEnd(prefix)))...)
	}
}

func ExampleClient_CreateKeyspace() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Endpoints: []string{"127.0.0.1:7400"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ks, err := c.CreateKeyspace(ctx, "users", client.KeyspaceSpec{
		ReplicationFactor: 3,
		Consistency:       client.Quorum,
	})
	switch {
	case errors.Is(err, client.ErrKeyspaceExists):
		fmt.Println("already there")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("created %s with N=%d at epoch %d\n", ks.Name, ks.ReplicationFactor, ks.Epoch)
	}
}

func ExampleClient_LocalGet() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Endpoints: []string{"127.0.0.1:7400"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Compare what each replica holds, for example after a node was down.
	st, err := c.ClusterStatus(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range st.Members {
		rec, err := c.LocalGet(ctx, m.ID, "users", []byte("user:42"))
		if err != nil {
			fmt.Println(m.ID, err)
			continue
		}
		fmt.Println(m.ID, rec.Found, rec.Tombstone, rec.Version)
	}
}

// Handling each kind of error of a write.
func Example_errors() {
	ctx := context.Background()
	c, err := client.New(ctx, client.Config{Endpoints: []string{"127.0.0.1:7400"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.Put(ctx, []byte("k"), []byte("v"), client.WithConsistency(client.All))
	var e *client.Error
	switch {
	case err == nil:
		fmt.Println("stored on all replicas")
	case errors.Is(err, client.ErrUnknownOutcome):
		// Maybe stored. Never assume it was not.
		fmt.Println("unknown:", err)
	case errors.Is(err, client.ErrUnavailable) && errors.As(err, &e):
		// Definite: e.g. NOT_ENOUGH_REPLICAS, nothing was sent.
		fmt.Printf("not written: %s (%d alive, %d required)\n", e.Reason, e.Alive, e.Required)
	case errors.Is(err, client.ErrKeyspaceNotFound), errors.Is(err, client.ErrInvalidArgument):
		fmt.Println("fix the request:", err)
	default:
		fmt.Println("failed:", err)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// TestKeyspaceCleanup drives `adaptkv keyspace cleanup`: a repair with
// --rf 3 on a keyspace of N=2 leaves a third copy of each key on a member
// that does not own it; cleanup removes exactly those, one per key, and a
// second cleanup has nothing left to remove.
func TestKeyspaceCleanup(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, func(o *clustertest.Options) { o.InMemory = true })
	// The in-process cluster is plaintext.
	env := []string{envName("dir") + "=" + t.TempDir(), envName("endpoints") + "=" + strings.Join(c.Endpoints(), ","), envName("insecure") + "=true"}
	run := func(args ...string) result { return runBin(t, env, nil, args...) }

	expectFail(t, run("keyspace", "cleanup", ""), exitUsage, "keyspace name is empty")
	expectFail(t, run("keyspace", "cleanup"), exitUsage, "accepts 1 arg")
	expectFail(t, run("keyspace", "cleanup", "nope"), exitFailure, `keyspace "nope"`)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv := c.Client(t)
	if _, err := kv.CreateKeyspace(ctx, "cli", client.KeyspaceSpec{ReplicationFactor: 2}); err != nil {
		t.Fatal(err)
	}
	const keys = 30
	for i := range keys {
		if _, err := kv.Put(ctx, []byte(fmt.Sprintf("k%02d", i)), []byte("v"), client.WithKeyspace("cli"), client.WithConsistency(client.All)); err != nil {
			t.Fatal(err)
		}
	}
	if r := run("keyspace", "repair", "cli", "--rf", "3"); r.code != 0 {
		t.Fatalf("keyspace repair: %v", r)
	}

	cleanup := func() (scanned, removed uint64) {
		t.Helper()
		r := run("keyspace", "cleanup", "cli")
		if r.code != 0 {
			t.Fatalf("keyspace cleanup: %v", r)
		}
		var out []cleanupJSON
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("cleanup output is not JSON: %v\n%v", err, r)
		}
		if len(out) != 3 {
			t.Fatalf("cleanup reported %d nodes, want 3: %+v", len(out), out)
		}
		for _, n := range out {
			scanned += n.KeysScanned
			removed += n.KeysRemoved
		}
		return scanned, removed
	}
	if s, r := cleanup(); s != 3*keys || r != keys {
		t.Errorf("first cleanup scanned %d and removed %d, want %d and %d (the third copy of each key)", s, r, 3*keys, keys)
	}
	if s, r := cleanup(); s != 2*keys || r != 0 {
		t.Errorf("second cleanup scanned %d and removed %d, want %d and 0", s, r, 2*keys)
	}
	for i := range keys {
		g, err := kv.Get(ctx, []byte(fmt.Sprintf("k%02d", i)), client.WithKeyspace("cli"), client.WithConsistency(client.All))
		if err != nil || !g.Found {
			t.Fatalf("get k%02d at all after cleanup: found %v, %v", i, g != nil && g.Found, err)
		}
	}
	r := run("keyspace", "cleanup", "cli", "-o", "table")
	if r.code != 0 || !strings.Contains(r.stdout, "KEYS REMOVED") {
		t.Errorf("table output: %v", r)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// TestKeyspaceRepair drives `adaptkv keyspace repair` against an in-process
// cluster: bad input, then a pass with JSON and table output.
func TestKeyspaceRepair(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, func(o *clustertest.Options) { o.InMemory = true })
	// The in-process cluster is plaintext.
	env := []string{envName("dir") + "=" + t.TempDir(), envName("endpoints") + "=" + strings.Join(c.Endpoints(), ","), envName("insecure") + "=true"}
	run := func(args ...string) result { return runBin(t, env, nil, args...) }

	expectFail(t, run("keyspace", "repair", ""), exitUsage, "keyspace name is empty")
	expectFail(t, run("keyspace", "repair"), exitUsage, "accepts 1 arg")
	expectFail(t, run("keyspace", "repair", "nope"), exitFailure, `keyspace "nope"`)
	expectFail(t, run("keyspace", "repair", "9lives!"), exitFailure, "keyspace name")
	expectFail(t, run("keyspace", "repair", "default", "--page-size", "-1"), exitUsage, "--page-size")
	expectFail(t, run("keyspace", "repair", "default", "--rf", "9"), exitFailure, "larger than the cluster")
	expectFail(t, runBin(t, append(env, envName("concurrency")+"=1000"), nil, "keyspace", "repair", "default"), exitUsage, "--concurrency 1000")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv := c.Client(t)
	if _, err := kv.CreateKeyspace(ctx, "cli", client.KeyspaceSpec{ReplicationFactor: 2}); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := kv.Put(ctx, []byte(fmt.Sprintf("k%02d", i)), []byte("v"), client.WithKeyspace("cli"), client.WithConsistency(client.All)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Delete(ctx, []byte("k00"), client.WithKeyspace("cli"), client.WithConsistency(client.All)); err != nil {
		t.Fatal(err)
	}

	// Streaming to N=3 through the CLI: each key gains one replica.
	r := run("keyspace", "repair", "cli", "--rf", "3", "--page-size", "8")
	if r.code != 0 {
		t.Fatalf("keyspace repair: %v", r)
	}
	var out repairJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("repair output is not JSON: %v\n%v", err, r)
	}
	all := []string{c.ID(0), c.ID(1), c.ID(2)}
	if out.Keyspace != "cli" || out.ReplicationFactor != 3 || !slices.Equal(out.Nodes, all) || len(out.Down) != 0 ||
		out.KeysScanned < 60 || out.TombstonesScanned < 2 || out.DigestsSent == 0 || out.RecordsPushed < 30 || out.RecordsPushed > 60 ||
		len(out.ReplicasRepaired) == 0 || out.Duration == "" {
		t.Errorf("repair summary %+v; want N=3 on %v, 60+ keys scanned, 30 to 60 records pushed", out, all)
	}
	if !strings.Contains(r.stderr, "repairing keyspace cli on n1, n2, n3") {
		t.Errorf("no start line on stderr: %v", r)
	}
	for _, id := range all {
		got, err := kv.LocalGet(ctx, id, "cli", []byte("k00"))
		if err != nil || !got.Found || !got.Tombstone {
			t.Errorf("%s after streaming to N=3: %+v, %v; want the tombstone", id, got, err)
		}
	}

	// Table output for people; a converged keyspace needs nothing pushed.
	r = run("keyspace", "repair", "cli", "--rf", "3", "-o", "table")
	if r.code != 0 || !strings.Contains(r.stdout, "records pushed:") || !strings.Contains(r.stdout, "replicas repaired:  none") {
		t.Errorf("keyspace repair -o table: %v", r)
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

// TestHintedHandoff is the project's hinted handoff check with real
// processes: writes made while a replica is SIGKILLed reach it through hints
// once it is back, without any read repairing them first.
func TestHintedHandoff(t *testing.T) {
	t.Parallel()
	tc := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tc.mustRun("keyspace", "create", "hh", "--rf", "3")
	c := tc.client(client.Config{})
	quorum := []client.CallOption{client.WithKeyspace("hh"), client.WithConsistency(client.Quorum)}
	key := func(prefix string, i int) []byte { return fmt.Appendf(nil, "%s-%04d", prefix, i) }
	val := func(prefix string, i int) []byte { return fmt.Appendf(nil, "value-%s-%d", prefix, i) }

	// writeAll writes n keys at quorum. A write with an unknown outcome is
	// repeated (same value, so harmless); any error left fails the test.
	writeAll := func(prefix string, n int) {
		t.Helper()
		start := time.Now()
		var failed atomic.Int64
		parallel(n, 16, func(i int) {
			var err error
			for attempt := 0; attempt < 5; attempt++ {
				if _, err = c.Put(ctx, key(prefix, i), val(prefix, i), quorum...); err == nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			if failed.Add(1) <= 5 {
				t.Errorf("put %s: %v", key(prefix, i), err)
			}
		})
		if failed.Load() > 0 {
			t.Fatalf("%d of %d writes failed", failed.Load(), n)
		}
		t.Logf("%d writes at quorum in %v", n, time.Since(start).Round(time.Millisecond))
	}

	writeAll("a", 1000)
	tc.mustRun("cluster", "kill", "n3")

	// Everything reads back at quorum with n3 down.
	var missing atomic.Int64
	parallel(1000, 16, func(i int) {
		res, err := c.Get(ctx, key("a", i), quorum...)
		if err != nil || !res.Found || string(res.Value) != string(val("a", i)) {
			if missing.Add(1) <= 5 {
				t.Errorf("get %s with n3 down: %v %+v", key("a", i), err, res)
			}
		}
	})
	if missing.Load() > 0 {
		t.Fatalf("%d of 1000 keys did not read back at quorum with n3 down", missing.Load())
	}

	writeAll("b", 500)
	restarted := time.Now()
	tc.mustRun("cluster", "start", "n3")

	// Within 30 s every key written while n3 was down is in n3's own
	// storage. Only LocalGet looks at them, which never repairs, so only
	// hints can have put them there.
	var mu sync.Mutex
	pending := map[int]bool{}
	for i := range 500 {
		pending[i] = true
	}
	deadline := restarted.Add(30 * time.Second)
	for {
		var todo []int
		mu.Lock()
		for i := range pending {
			todo = append(todo, i)
		}
		mu.Unlock()
		parallel(len(todo), 16, func(j int) {
			i := todo[j]
			rec, err := c.LocalGet(ctx, "n3", "hh", key("b", i))
			if err == nil && rec.Found && !rec.Tombstone && string(rec.Value) == string(val("b", i)) {
				mu.Lock()
				delete(pending, i)
				mu.Unlock()
			}
		})
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			tc.dumpLogs()
			t.Fatalf("%d of 500 keys written while n3 was down are not in n3's storage 30s after its restart", len(pending))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("all 500 hinted writes in n3's storage %v after `cluster start n3` returned", time.Since(restarted).Round(time.Millisecond))

	// Spot checks through the CLI.
	for _, i := range []int{0, 249, 499} {
		r := tc.mustRun("get", string(key("b", i)), "--keyspace", "hh", "--node", "n3", "--local", "-o", "json")
		var lg localGetJSON
		if err := json.Unmarshal([]byte(r.stdout), &lg); err != nil || !lg.Found || lg.Value == nil || *lg.Value != string(val("b", i)) || lg.Node != "n3" {
			t.Errorf("adaptkv get %s --node n3 --local: %v %+v", key("b", i), err, lg)
		}
	}
}

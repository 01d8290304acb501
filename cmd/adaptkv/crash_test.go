package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
)

// TestCrashAcknowledgedWrites SIGKILLs a coordinator in the middle of a
// stream of writes at level one and checks that every write it acknowledged
// survives: an acknowledgement is a promise, whatever happens to the node
// afterwards.
func TestCrashAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	tc := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tc.mustRun("keyspace", "create", "crash", "--rf", "3", "--consistency", "one")
	n2, err := tc.layout().node("n2")
	if err != nil {
		t.Fatal(err)
	}
	// Every write goes to n2 and is coordinated there.
	w := tc.client(client.Config{Endpoints: []string{n2.GRPCAddr}, DisableRouting: true, MaxRetries: -1, RequestTimeout: 2 * time.Second})
	one := []client.CallOption{client.WithKeyspace("crash"), client.WithConsistency(client.One)}

	const writers = 4
	var (
		mu      sync.Mutex
		acked   = map[string]string{}
		killing atomic.Bool
		wg      sync.WaitGroup
	)
	begin := time.Now()
	killed := make(chan result, 1)
	go func() {
		time.Sleep(time.Second)
		killing.Store(true)
		killed <- tc.run(nil, "cluster", "kill", "n2")
	}()
	for wid := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Since(begin) < 5*time.Second; i++ {
				k, v := fmt.Sprintf("w%d-%06d", wid, i), fmt.Sprintf("value-%d-%d", wid, i)
				wasKilling := killing.Load()
				res, err := w.Put(ctx, []byte(k), []byte(v), one...)
				if err != nil {
					if wasKilling || killing.Load() {
						return // the writer goes on until the crash shows
					}
					t.Errorf("put %s before the kill: %v", k, err)
					continue
				}
				if res.Receipt.Coordinator != "n2" || res.Receipt.Acked < 1 {
					t.Errorf("put %s: receipt %+v, want coordinator n2", k, res.Receipt)
				}
				mu.Lock()
				acked[k] = v
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if r := <-killed; r.code != 0 {
		t.Fatalf("cluster kill n2: %v", r)
	}
	t.Logf("%d writes acknowledged by n2 before it was killed", len(acked))
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}

	tc.mustRun("cluster", "start", "n2")
	c := tc.client(client.Config{})

	// First look at the replicas' own storage, which changes nothing: each
	// acknowledged write must be on at least one of them. (Reads repair, so
	// they come after.)
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	var lost, onN2, onlyN2 atomic.Int64
	parallel(len(keys), 16, func(i int) {
		k := keys[i]
		var holders []string
		for _, id := range []string{"n1", "n2", "n3"} {
			rec, err := c.LocalGet(ctx, id, "crash", []byte(k))
			if err != nil {
				t.Errorf("local get %s on %s: %v", k, id, err)
				return
			}
			if rec.Found && !rec.Tombstone && string(rec.Value) == acked[k] {
				holders = append(holders, id)
			}
		}
		switch {
		case len(holders) == 0:
			if lost.Add(1) <= 5 {
				t.Errorf("acknowledged write %s is on no replica", k)
			}
		case len(holders) == 1 && holders[0] == "n2":
			onlyN2.Add(1)
		}
		if slices.Contains(holders, "n2") {
			onN2.Add(1)
		}
	})
	// Writes whose copies to n1 and n3 were in flight when n2 died exist
	// on n2 alone. At level one W=1, so R+W = N for quorum reads: such a
	// key is invisible to a quorum read that asks n1 and n3, until a read
	// at all (or a quorum read that reaches n2) repairs it. Hence all
	// first, then quorum.
	t.Logf("after n2's restart: %d of %d acknowledged writes in n2's own storage, %d on n2 only", onN2.Load(), len(keys), onlyN2.Load())

	// Every acknowledged write reads back at all (which reads every
	// replica and repairs the stale ones) and then at quorum.
	for _, level := range []client.Level{client.All, client.Quorum} {
		var bad atomic.Int64
		parallel(len(keys), 16, func(i int) {
			k := keys[i]
			res, err := c.Get(ctx, []byte(k), client.WithKeyspace("crash"), client.WithConsistency(level))
			if err != nil || !res.Found || string(res.Value) != acked[k] {
				if bad.Add(1) <= 5 {
					t.Errorf("get %s at %v: %v %+v, want %q", k, level, err, res, acked[k])
				}
			}
		})
		if bad.Load() > 0 {
			t.Errorf("%d of %d acknowledged writes do not read back at %v", bad.Load(), len(keys), level)
		}
	}
	if t.Failed() {
		tc.dumpLogs()
	}
}

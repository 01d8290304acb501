package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node/launch"
)

// TestRollingRestart restarts every node of a secure 5-node cluster, one
// after another (SIGTERM, wait for the exit, start, wait until the cluster
// is ready), under a quorum workload through the SDK with its ordinary
// retries: no request may fail and every acknowledged write must read back
// at quorum at the end. The node drains on SIGTERM (it turns not-ready,
// refuses new client requests as NODE_DRAINING, finishes those in flight,
// then stops) and the SDK routes around it, which is what makes the
// restarts invisible. It logs the p99 latency during the restarts beside
// the steady one; timings are not asserted.
func TestRollingRestart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts five node processes")
	}
	dir := t.TempDir()
	cfg := launch.Config{
		Binary: binPath, Nodes: 5, Dir: dir, Host: "127.0.0.31", HostPerNode: true,
		Name: "rolling-restart", Args: []string{"--drain-timeout", "15s"},
	}
	if err := cfg.Secure(filepath.Join(dir, "certs")); err != nil {
		t.Fatal(err)
	}
	c, err := launch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	kv, err := client.New(ctx, c.ClientConfig(client.Config{Endpoints: c.Endpoints(), TopologyRefresh: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	if _, err := kv.CreateKeyspace(ctx, "roll", client.KeyspaceSpec{ReplicationFactor: 3, Consistency: client.Quorum}); err != nil {
		t.Fatal(err)
	}
	opts := []client.CallOption{client.WithKeyspace("roll"), client.WithConsistency(client.Quorum)}
	// The keyspace must be known everywhere before the clock starts.
	if err := retryUntil(ctx, func() error {
		_, err := kv.Put(ctx, []byte("warmup"), []byte("x"), opts...)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	const (
		workers = 4
		// pace bounds the load: a few thousand writes and reads over the
		// run, on two cores shared with other tests.
		pace     = 4 * time.Millisecond
		maxOps   = 6000 // per worker, a bound should the restarts hang
		steadyOf = 3 * time.Second
	)
	var (
		mu         sync.Mutex
		acked      = map[string]string{}
		keys       []string
		steady     []time.Duration
		restart    []time.Duration
		failures   []string
		failed     atomic.Int64
		ops        atomic.Int64
		restarting atomic.Bool
		done       = make(chan struct{})
		wg         sync.WaitGroup
	)
	record := func(d time.Duration, during bool, err error, what string) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed.Add(1)
			if len(failures) < 10 {
				failures = append(failures, fmt.Sprintf("%s: %v", what, err))
			}
			return
		}
		if during {
			restart = append(restart, d)
		} else {
			steady = append(steady, d)
		}
	}
	// keys is never empty for a reader: the warm-up key is acknowledged.
	acked["warmup"], keys = "x", append(keys, "warmup")
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < maxOps; i++ {
				select {
				case <-done:
					return
				case <-time.After(pace):
				}
				k, v := fmt.Sprintf("w%d-%06d", w, i), fmt.Sprintf("v%d-%d", w, i)
				during := restarting.Load()
				start := time.Now()
				_, err := kv.Put(ctx, []byte(k), []byte(v), opts...)
				record(time.Since(start), during, err, "put "+k)
				ops.Add(1)
				if err == nil {
					mu.Lock()
					acked[k] = v
					keys = append(keys, k)
					mu.Unlock()
				}
				mu.Lock()
				rk := keys[rng.IntN(len(keys))]
				want := acked[rk]
				mu.Unlock()
				during = restarting.Load()
				start = time.Now()
				res, err := kv.Get(ctx, []byte(rk), opts...)
				if err == nil && (!res.Found || string(res.Value) != want) {
					err = fmt.Errorf("read %q (found %v), want %q", res.Value, res.Found, want)
				}
				record(time.Since(start), during, err, "get "+rk)
				ops.Add(1)
			}
		}()
	}
	time.Sleep(steadyOf)
	restarting.Store(true)
	began := time.Now()
	for _, id := range c.IDs() {
		t0 := time.Now()
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		err := c.Stop(sctx, id)
		scancel()
		if err != nil {
			t.Fatalf("stop %s: %v", id, err)
		}
		stopped := time.Since(t0)
		if err := c.StartNode(id); err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		if err := c.WaitReady(ctx, c.IDs(), nil); err != nil {
			t.Fatalf("%s not ready after its restart: %v", id, err)
		}
		t.Logf("%s: drained and stopped in %v, back and ready after %v", id, stopped.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	}
	restarting.Store(false)
	took := time.Since(began)
	close(done)
	wg.Wait()

	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed during the rolling restart; first: %v", n, ops.Load(), failures)
	}
	// Every acknowledged write reads back at quorum.
	lost := 0
	for k, v := range acked {
		res, err := kv.Get(ctx, []byte(k), opts...)
		if err != nil || !res.Found || string(res.Value) != v {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged write %s=%s: read %+v, %v", k, v, res, err)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, len(acked))
	}
	if crashes := c.Crashes(); len(crashes) > 0 {
		t.Errorf("nodes crashed: %v", crashes)
	}
	t.Logf("rolling restart of 5 nodes took %v; %d requests (%d workers, quorum, RF 3), %d writes acknowledged, %d failed, %d lost",
		took.Round(time.Millisecond), ops.Load(), workers, len(acked), failed.Load(), lost)
	t.Logf("p99 steady %v (%d requests), p99 during the restarts %v (%d requests); p50 %v vs %v",
		quantile(steady, 0.99), len(steady), quantile(restart, 0.99), len(restart), quantile(steady, 0.5), quantile(restart, 0.5))
}

// quantile returns the q-quantile of ds (sorted in place).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(q*float64(len(ds))))].Round(10 * time.Microsecond)
}

// retryUntil calls f until it succeeds or ctx ends.
func retryUntil(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

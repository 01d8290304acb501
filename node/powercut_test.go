package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/internal/testseed"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
	"github.com/adaptkv/adaptkv/storage"
)

// powerCutSeeds is how many rounds each power-cut test runs, one seed per
// round: ADAPTKV_POWERCUT_SEEDS, default 3 (CI); ADAPTKV_POWERCUT_SEED runs
// one.
func powerCutSeeds(t *testing.T) []uint64 {
	return testseed.FromEnv(t, "ADAPTKV_POWERCUT", 3)
}

// ack is one write the coordinator acknowledged: w replicas stored it.
type ack struct {
	version client.Version
	value   []byte
	w       int
}

// writeLog is what the writers did, per key.
type writeLog struct {
	mu    sync.Mutex
	acks  map[string][]ack
	tried map[string]map[string]bool // every value ever sent
}

// A write acknowledged at quorum survives one node losing power, and one
// acknowledged at all survives every node losing it: after the restart,
// at least W replicas hold it or a later version (Dynamo's durability
// promise; Reference: Dynamo (SOSP '07) §4.5), and every value is one
// that was written.
func TestPowerCutOneNode(t *testing.T) { powerCut(t, false) }

// TestPowerCutAllNodes cuts every node at once.
func TestPowerCutAllNodes(t *testing.T) { powerCut(t, true) }

func powerCut(t *testing.T, all bool) {
	t.Parallel()
	fss := make([]*storage.PowerCutFS, 3)
	for i := range fss {
		fss[i] = storage.NewPowerCutFS()
	}
	c := clustertest.New(t, 3, func(o *clustertest.Options) {
		// An address of its own, so that other tests' sockets on the machine
		// cannot take the ports its nodes come back on.
		o.Host = fmt.Sprintf("127.0.%d.%d", 100+rand.IntN(100), 2+rand.IntN(250))
		o.Configure = func(i int, cfg *node.Config) { cfg.StorageFS = fss[i] }
	})
	kv := c.Client(t)
	ctx := ctxT(t, 5*time.Minute)
	if _, err := kv.CreateKeyspace(ctx, "pc", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	for _, seed := range powerCutSeeds(t) {
		if err := powerCutRound(ctx, t, c, kv, fss, seed, all); err != nil {
			t.Fatalf("===== SEED %d =====\n%v", seed, err)
		}
	}
}

func powerCutRound(ctx context.Context, t *testing.T, c *clustertest.Cluster, kv *client.Client, fss []*storage.PowerCutFS, seed uint64, all bool) error {
	rng := rand.New(rand.NewPCG(seed, 7))
	victims := []int{rng.IntN(3)}
	if all {
		victims = []int{0, 1, 2}
	}
	log := &writeLog{acks: map[string][]ack{}, tried: map[string]map[string]bool{}}
	var stop atomic.Bool
	var wg sync.WaitGroup
	writers := 2 + rng.IntN(4)
	for w := range writers {
		wrng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; !stop.Load(); seq++ {
				key := fmt.Sprintf("s%d-w%d-k%d", seed, w, wrng.IntN(6))
				value := fmt.Appendf(nil, "s%d-w%d-%d", seed, w, seq)
				level, need := client.Quorum, 2
				if wrng.IntN(2) == 0 {
					level, need = client.All, 3
				}
				log.mu.Lock()
				if log.tried[key] == nil {
					log.tried[key] = map[string]bool{}
				}
				log.tried[key][string(value)] = true
				log.mu.Unlock()
				wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				res, err := kv.Put(wctx, []byte(key), value, client.WithKeyspace("pc"), client.WithConsistency(level))
				cancel()
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				log.mu.Lock()
				log.acks[key] = append(log.acks[key], ack{version: res.Version, value: value, w: need})
				log.mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)

	// Each victim's health stream breaks only when its gRPC server closes
	// every connection: after that, nothing it does can reach anyone.
	probes := make([]grpc.ServerStreamingClient[healthpb.HealthCheckResponse], len(victims))
	for j, v := range victims {
		cc, err := grpc.NewClient(c.Node(v).Addrs().GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		if probes[j], err = healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{}); err == nil {
			_, err = probes[j].Recv()
		}
		if err != nil {
			return fmt.Errorf("probe %s: %w", c.ID(v), err)
		}
	}
	for _, v := range victims {
		fss[v].CutPower()
	}
	stopped := make(chan error, len(victims))
	for _, v := range victims {
		go func() { stopped <- c.StopNodeNow(v) }()
	}
	for j, v := range victims {
		for {
			if _, err := probes[j].Recv(); err != nil {
				break
			}
		}
		// The server closes its connections in one sweep; leave it that
		// sweep before syncs return (as no-ops) and replies could flow.
		time.Sleep(50 * time.Millisecond)
		fss[v].ReleaseSyncs()
	}
	for range victims {
		if err := <-stopped; err != nil {
			t.Logf("stop after the power cut: %v", err)
		}
	}
	stop.Store(true)
	wg.Wait()
	for _, v := range victims {
		fss[v].Restart()
		// The node comes back on the ports it had; while it was down another
		// socket may have been given one as its ephemeral port.
		for deadline := time.Now().Add(20 * time.Second); ; {
			err := c.RestartNode(ctx, v)
			if err == nil {
				break
			}
			if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
				return err
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.WaitReady(rctx); err != nil {
		return err
	}

	// Each replica's own record first, before any read can repair it.
	log.mu.Lock()
	defer log.mu.Unlock()
	nacks := 0
	for key, acks := range log.acks {
		var recs []*client.LocalRecord
		for i := range c.Len() {
			var rec *client.LocalRecord
			err := retry(rctx, func() error {
				var err error
				rec, err = kv.LocalGet(rctx, c.ID(i), "pc", []byte(key))
				return err
			})
			if err != nil {
				return fmt.Errorf("local get %s on %s: %w", key, c.ID(i), err)
			}
			if rec.Found && !log.tried[key][string(rec.Value)] {
				return fmt.Errorf("key %s on %s holds %q at %v, which no writer sent", key, c.ID(i), rec.Value, rec.Version)
			}
			for _, a := range acks {
				if rec.Found && rec.Version == a.version && !bytes.Equal(rec.Value, a.value) {
					return fmt.Errorf("key %s on %s holds %q at %v, acknowledged as %q", key, c.ID(i), rec.Value, rec.Version, a.value)
				}
			}
			recs = append(recs, rec)
		}
		for _, a := range acks {
			nacks++
			holding := 0
			for _, rec := range recs {
				if rec.Found && !rec.Version.Less(a.version) {
					holding++
				}
			}
			if holding < a.w {
				var held []string
				for i, rec := range recs {
					held = append(held, fmt.Sprintf("%s: found=%v %q at %v", c.ID(i), rec.Found, rec.Value, rec.Version))
				}
				return fmt.Errorf("key %s: %q acknowledged at W=%d (version %v) is held by %d replicas after %s lost power; replicas hold %q",
					key, a.value, a.w, a.version, holding, victimNames(c, victims), held)
			}
		}
	}
	t.Logf("seed %d: %d writers, %d acknowledged writes of %d keys survived %s losing power", seed, writers, nacks, len(log.acks), victimNames(c, victims))
	return nil
}

func victimNames(c *clustertest.Cluster, victims []int) []string {
	var out []string
	for _, v := range victims {
		out = append(out, c.ID(v))
	}
	return out
}

// retry runs f until it succeeds or ctx ends: right after a restart a node
// may still be finding its peers.
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

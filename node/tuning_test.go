package node_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

func fastTuner(o *clustertest.Options) {
	o.Configure = func(i int, cfg *node.Config) {
		cfg.TunerInterval = 300 * time.Millisecond
		cfg.TunerDwell = time.Second
		cfg.UnsafeTestHooks = true
	}
}

// An adaptive keyspace gets decisions recorded in the metadata log, with
// explanations, and a what-if table, from real traffic.
func TestAdaptiveKeyspaceDecides(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, fastTuner)
	kv := c.Client(t)
	ctx := ctxT(t, 60*time.Second)
	ks, err := kv.CreateKeyspace(ctx, "adapt", client.KeyspaceSpec{ReplicationFactor: 3, Adaptive: &client.AdaptiveGoal{MaxStale: 0.001}})
	if err != nil {
		t.Fatal(err)
	}
	if ks.Adaptive == nil || ks.Adaptive.MaxStale != 0.001 || ks.R != 2 || ks.W != 2 {
		t.Fatalf("created %+v; want adaptive, starting at R=2 W=2", ks)
	}
	deadline := time.Now().Add(20 * time.Second)
	var explained []client.TunerExplanation
	for i := 0; time.Now().Before(deadline); i++ {
		key := []byte(fmt.Sprintf("k%d", i%50))
		if i%10 == 0 {
			if _, err := kv.Put(ctx, key, []byte("v"), client.WithKeyspace("adapt")); err != nil {
				t.Fatal(err)
			}
		} else if _, err := kv.Get(ctx, key, client.WithKeyspace("adapt")); err != nil {
			t.Fatal(err)
		}
		if i%200 == 199 {
			if explained, err = kv.TunerExplain(ctx, "adapt", 5); err != nil {
				t.Fatal(err)
			}
			if len(explained) >= 2 && !strings.Contains(explained[len(explained)-1].Text, "no_data") {
				break
			}
		}
	}
	if len(explained) < 2 {
		t.Fatalf("%d decisions recorded; want the tuner deciding every interval", len(explained))
	}
	last := explained[len(explained)-1]
	if !strings.Contains(last.JSON, `"keyspace":"adapt"`) || last.Text == "" {
		t.Errorf("last decision = %q / %q", last.Text, last.JSON)
	}
	text, js, err := kv.TunerWhatIf(ctx, "adapt")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "R=1") || !strings.Contains(js, `"stale_prob"`) {
		t.Errorf("whatif = %s\n%s", text, js)
	}
	// Explain on a keyspace with a fixed level names the problem.
	if _, err := kv.TunerExplain(ctx, "default", 5); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("explain of a fixed keyspace: %v; want invalid argument", err)
	}
}

// With a quorum floor and the force hook moving the configuration every few
// hundred milliseconds, no read at the keyspace's level misses a write that
// completed before it began.
func TestForcedTransitionsKeepQuorumOverlap(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, fastTuner)
	kv := c.Client(t)
	ctx := ctxT(t, 60*time.Second)
	if _, err := kv.CreateKeyspace(ctx, "safe", client.KeyspaceSpec{ReplicationFactor: 3, Adaptive: &client.AdaptiveGoal{MaxStale: 0.001, Floor: client.Quorum}}); err != nil {
		t.Fatal(err)
	}
	tunerForce(t, c, "400ms")
	seen := map[string]bool{}
	deadline := time.Now().Add(8 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		key := []byte(fmt.Sprintf("k%d", i%20))
		val := []byte(fmt.Sprint(i))
		if _, err := kv.Put(ctx, key, val, client.WithKeyspace("safe")); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		g, err := kv.Get(ctx, key, client.WithKeyspace("safe"))
		if err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		if string(g.Value) != string(val) {
			t.Fatalf("read %d of %s returned %q after %q was acknowledged (receipt %+v)", i, key, g.Value, val, g.Receipt)
		}
		if g.Receipt.Required+1 > 0 {
			seen[fmt.Sprintf("R=%d", g.Receipt.Required)] = true
		}
	}
	if len(seen) < 2 {
		t.Errorf("reads ran under %v only; want the forced changes to have moved R", seen)
	}
}

// Under a quorum floor, writes acknowledged under R=3 W=1 may sit on one
// replica. The force hook then moves the keyspace to R=3 W=3 and on to
// R=2 W=3; before R drops to 2 the tuner must run a repair pass, or reads
// from the two other replicas miss those writes (the first CI failure of
// the forced-change Jepsen test). The drop-writes hook makes two replicas
// acknowledge the W=1 writes without storing them.
func TestTunerRepairsBeforeLoweringR(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, fastTuner)
	kv := c.Client(t)
	ctx := ctxT(t, 90*time.Second)
	if _, err := kv.CreateKeyspace(ctx, "heal", client.KeyspaceSpec{ReplicationFactor: 3, Adaptive: &client.AdaptiveGoal{MaxStale: 0.001, Floor: client.Quorum}}); err != nil {
		t.Fatal(err)
	}
	waitFor := func(r, w int) {
		t.Helper()
		for {
			ks, err := kv.DescribeKeyspace(ctx, "heal")
			if err != nil {
				t.Fatal(err)
			}
			if ks.R == r && ks.W == w {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("keyspace at R=%d W=%d; gave up waiting for R=%d W=%d", ks.R, ks.W, r, w)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	tunerForce(t, c, "1500ms")
	waitFor(3, 1)
	dropWrites(t, c, 1, true)
	dropWrites(t, c, 2, true)
	var weak []string
	for i := range 50 {
		key := fmt.Sprintf("w%d", i)
		res, err := kv.Put(ctx, []byte(key), []byte(key), client.WithKeyspace("heal"))
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		if res.Receipt.Required != 1 {
			break // the force hook moved on; later writes are not W=1 ones
		}
		weak = append(weak, key)
	}
	dropWrites(t, c, 1, false)
	dropWrites(t, c, 2, false)
	if len(weak) == 0 {
		t.Fatal("no write was acknowledged under W=1")
	}
	if r, err := kv.LocalGet(ctx, c.ID(1), "heal", []byte(weak[0])); err != nil || r.Found {
		t.Fatalf("before the pass %s holds %s (found %v, err %v); want the drop-writes hook to have kept it off", c.ID(1), weak[0], r != nil && r.Found, err)
	}
	waitFor(2, 3)
	tunerForce(t, c, "0s")
	for _, key := range weak {
		for i := range c.Len() {
			r, err := kv.LocalGet(ctx, c.ID(i), "heal", []byte(key))
			if err != nil {
				t.Fatal(err)
			}
			if !r.Found || string(r.Value) != key {
				t.Errorf("after the move to R=2, %s lacks %s, written under W=1: no repair pass before R was lowered", c.ID(i), key)
			}
		}
	}
	t.Logf("%d writes under W=1 on one replica; every replica held them once R was lowered to 2", len(weak))
}

// tunerForce sets every node's force hook to move adaptive keyspaces at
// this interval ("0s" stops it).
func tunerForce(t *testing.T, c *clustertest.Cluster, every string) {
	t.Helper()
	for i := range c.Len() {
		resp, err := http.Post("http://"+c.Node(i).Addrs().HTTP+"/unsafe/tuner-force?every="+every, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
}

// An adaptive keyspace with the floor session (issue 12 item 4): the tuner
// may take partial quorums (R + W ≤ N; here moved to R=1 W=1 by the test
// hook), and a client reading and writing through an SDK session
// still reads its own writes every time (a read may be refused with
// SESSION_BEHIND, never answered with older data); tuner explain says why
// partial quorums are allowed.
func TestSessionFloorKeepsSessionGuarantees(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, fastTuner)
	kv := c.Client(t)
	ctx := ctxT(t, 60*time.Second)
	ks, err := kv.CreateKeyspace(ctx, "sess", client.KeyspaceSpec{ReplicationFactor: 3,
		Adaptive: &client.AdaptiveGoal{MaxStale: 0.001, SessionFloor: true}})
	if err != nil {
		t.Fatal(err)
	}
	if ks.Adaptive == nil || !ks.Adaptive.SessionFloor {
		t.Fatalf("created keyspace %+v; want the session floor", ks.Adaptive)
	}
	if _, err := kv.CreateKeyspace(ctx, "bad", client.KeyspaceSpec{ReplicationFactor: 3,
		Adaptive: &client.AdaptiveGoal{MaxStale: 0.001, Floor: client.Quorum, SessionFloor: true}}); !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("floor quorum with the session floor: %v; want an invalid argument", err)
	}
	// Move the keyspace to R=1 W=1, which only a floor below quorum allows.
	for i := range c.Len() {
		resp, err := http.Post("http://"+c.Node(i).Addrs().HTTP+"/unsafe/tuner-target?keyspace=sess&n=3&r=1&w=1", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	eventually(t, 30*time.Second, "the keyspace at R=1 W=1", func() error {
		k, err := kv.DescribeKeyspace(ctx, "sess")
		if err == nil && (k.R != 1 || k.W != 1) {
			err = fmt.Errorf("R=%d W=%d", k.R, k.W)
		}
		return err
	})
	s := kv.Session()
	partial, behind, reads := 0, 0, 0
	lastW := 0
	for i := range 300 {
		key := []byte(fmt.Sprintf("k%d", i%10))
		val := []byte(fmt.Sprint(i))
		w, err := s.Put(ctx, key, val, client.WithKeyspace("sess"))
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		lastW = w.Receipt.Required
		g, err := s.Get(ctx, key, client.WithKeyspace("sess"))
		if errors.Is(err, client.ErrSessionBehind) {
			behind++
			continue
		}
		if err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		reads++
		if string(g.Value) != string(val) {
			t.Fatalf("session read %d of %s returned %q after it wrote %q (receipt %+v)", i, key, g.Value, val, g.Receipt)
		}
		if g.Receipt.Required+lastW <= 3 {
			if partial++; partial >= 100 {
				break
			}
		}
	}
	t.Logf("%d session reads, %d under a partial quorum (R+W<=N), %d refused as behind", reads, partial, behind)
	if partial == 0 {
		t.Fatal("no read ran under a partial quorum: the floor did not let the tuner go below quorum")
	}
	eventually(t, 20*time.Second, "tuner explain naming the session floor", func() error {
		ex, err := kv.TunerExplain(ctx, "sess", 5)
		if err != nil {
			return err
		}
		for _, e := range ex {
			if strings.Contains(e.Text, "floor session: partial quorums allowed") {
				return nil
			}
		}
		return fmt.Errorf("%d explanations, none naming the session floor", len(ex))
	})
}

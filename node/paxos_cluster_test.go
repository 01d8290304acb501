package node_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// TestCondWritesCluster runs conditional writes and the linearizable level
// on a 3-node cluster over real gRPC, the subtests in order on one cluster
// (the last stops a node).
func TestCondWritesCluster(t *testing.T) {
	c := clustertest.New(t, 3, withHooks)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.Client(t)
	lin := client.WithConsistency(client.Linearizable)

	t.Run("Uncontended", func(t *testing.T) {
		key := []byte("cond-uncontended")
		res, err := cl.PutIf(ctx, key, []byte("v1"), client.IfAbsent())
		if err != nil || !res.Applied || res.Version.IsZero() {
			t.Fatalf("PutIf(IfAbsent) on a new key = %+v, %v; want applied with a version", res, err)
		}
		if r := res.Receipt; r.Level != client.Linearizable || r.N != 3 || r.Required != 2 || r.Acked < 2 {
			t.Errorf("receipt = %+v; want linearizable, N=3, required 2, acked >= 2", r)
		}
		v1 := res.Version
		res, err = cl.PutIf(ctx, key, []byte("v2"), client.IfAbsent())
		if err != nil || res.Applied || !res.Found || string(res.Value) != "v1" || res.Current != v1 {
			t.Fatalf("PutIf(IfAbsent) on an existing key = %+v, %v; want not applied, current v1 at %v", res, err, v1)
		}
		res, err = cl.PutIf(ctx, key, []byte("v2"), client.IfVersion(client.Version{Timestamp: v1.Timestamp - 1, Node: v1.Node}))
		if err != nil || res.Applied || res.Current != v1 {
			t.Fatalf("PutIf(IfVersion(stale)) = %+v, %v; want not applied, current %v", res, err, v1)
		}
		res, err = cl.PutIf(ctx, key, []byte("v2"), client.IfVersion(v1))
		if err != nil || !res.Applied || !v1.Less(res.Version) {
			t.Fatalf("PutIf(IfVersion(v1)) = %+v, %v; want applied above %v", res, err, v1)
		}
		res, err = cl.PutIf(ctx, key, []byte("v3"), client.IfValue([]byte("v2")))
		if err != nil || !res.Applied {
			t.Fatalf("PutIf(IfValue(v2)) = %+v, %v; want applied", res, err)
		}
		res, err = cl.DeleteIf(ctx, key, client.IfValue([]byte("nope")))
		if err != nil || res.Applied || string(res.Value) != "v3" {
			t.Fatalf("DeleteIf(IfValue(nope)) = %+v, %v; want not applied, current v3", res, err)
		}
		res, err = cl.DeleteIf(ctx, key, client.IfValue([]byte("v3")))
		if err != nil || !res.Applied {
			t.Fatalf("DeleteIf(IfValue(v3)) = %+v, %v; want applied", res, err)
		}
		g, err := cl.Get(ctx, key, lin)
		if err != nil || g.Found {
			t.Fatalf("linearizable Get after DeleteIf = %+v, %v; want not found", g, err)
		}
		res, err = cl.PutIf(ctx, key, []byte("again"), client.IfAbsent())
		if err != nil || !res.Applied {
			t.Fatalf("PutIf(IfAbsent) after a delete = %+v, %v; want applied", res, err)
		}
	})

	t.Run("Leased", func(t *testing.T) {
		// A key's conditional writes through the SDK meet on one
		// coordinator, and each proposes under the lease the one before
		// left: no prepare after the first.
		key := []byte("cond-leased")
		leasedBefore := 0.0
		for i := range c.Len() {
			leasedBefore += metric(t, c.Node(i), "adaptkv_paxos_leased_total")
		}
		res, err := cl.PutIf(ctx, key, []byte("0"), client.IfAbsent())
		if err != nil || !res.Applied {
			t.Fatalf("PutIf(IfAbsent) = %+v, %v", res, err)
		}
		const writes = 20
		last := res.Version
		for i := 1; i <= writes; i++ {
			res, err := cl.PutIf(ctx, key, []byte(strconv.Itoa(i)), client.IfVersion(last))
			if err != nil || !res.Applied || !last.Less(res.Version) {
				t.Fatalf("PutIf %d (IfVersion %v) = %+v, %v; want applied above it", i, last, res, err)
			}
			last = res.Version
		}
		leased := -leasedBefore
		for i := range c.Len() {
			leased += metric(t, c.Node(i), "adaptkv_paxos_leased_total")
		}
		// All but the first (and any whose lease a background commit's
		// timing spoiled, which prepares instead) propose under a lease.
		if leased < writes-2 {
			t.Errorf("%v of %d conditional writes proposed under a lease; want at least %d", leased, writes, writes-2)
		}
		// A stale lease: another coordinator writes the key in between,
		// so the lease holder's next proposal is refused and it prepares;
		// every answer stays right.
		for i := range c.Len() {
			other := via(t, c, i)
			res, err := other.PutIf(ctx, key, []byte("other"), client.IfVersion(last))
			if err != nil || !res.Applied {
				t.Fatalf("PutIf via %s (IfVersion %v) = %+v, %v; want applied", c.ID(i), last, res, err)
			}
			last = res.Version
			res, err = cl.PutIf(ctx, key, []byte("stale"), client.IfVersion(res.Version))
			if err != nil || !res.Applied || !last.Less(res.Version) {
				t.Fatalf("PutIf after a write via %s = %+v, %v; want applied above %v", c.ID(i), res, err, last)
			}
			last = res.Version
			res, err = cl.PutIf(ctx, key, []byte("late"), client.IfValue([]byte("other")))
			if err != nil || res.Applied || string(res.Value) != "stale" || res.Current != last {
				t.Fatalf("PutIf(IfValue(other)) after it = %+v, %v; want not applied, current stale at %v", res, err, last)
			}
		}
		g, err := via(t, c, 1).Get(ctx, key, lin)
		if err != nil || string(g.Value) != "stale" || g.Version != last {
			t.Fatalf("linearizable Get = %+v, %v; want stale at %v", g, err, last)
		}
		t.Logf("%v of %d sequential conditional writes proposed under a lease", leased, writes)
	})

	t.Run("BadConditions", func(t *testing.T) {
		_, err := cl.PutIf(ctx, []byte("k"), []byte("v"), client.IfAbsent(), client.WithConsistency(client.One))
		if !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("PutIf at level one: %v; want ErrInvalidArgument", err)
		}
		_, err = cl.PutIf(ctx, []byte("k"), []byte("v"), client.IfVersion(client.Version{}))
		if !errors.Is(err, client.ErrInvalidArgument) {
			t.Errorf("PutIf(IfVersion(zero)): %v; want ErrInvalidArgument", err)
		}
		cc, err := grpc.NewClient(c.Node(0).Addrs().GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		kv := kvpb.NewKVClient(cc)
		for name, cond := range map[string]*kvpb.Condition{
			"unspecified kind":       {},
			"unknown kind":           {Kind: 42},
			"IF_VERSION, no version": {Kind: kvpb.Condition_IF_VERSION},
			"IF_ABSENT with a value": {Kind: kvpb.Condition_IF_ABSENT, Value: []byte("x")},
		} {
			_, err := kv.Put(ctx, &kvpb.PutRequest{Keyspace: "default", Key: []byte("k"), Value: []byte("v"), Condition: cond})
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s: %v; want InvalidArgument", name, err)
			}
		}
	})

	t.Run("IfAbsentRace", func(t *testing.T) {
		// Exactly one of 8 racing PutIf(IfAbsent) wins: the value read
		// afterwards is its, and no other was told it applied. A racer
		// may hear ErrUnknownOutcome (its proposal was accepted by one
		// replica, refused by the others), never a second "applied".
		key := []byte("cond-race")
		var mu sync.Mutex
		applied, unknown := map[string]bool{}, map[string]bool{}
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := strconv.Itoa(i)
				res, err := cl.PutIf(ctx, key, []byte(v), client.IfAbsent())
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, client.ErrUnknownOutcome):
					unknown[v] = true
				case err != nil:
					t.Errorf("client %d: %v", i, err)
				case res.Applied:
					applied[v] = true
				}
			}()
		}
		wg.Wait()
		g, err := cl.Get(ctx, key, lin)
		if err != nil || !g.Found {
			t.Fatalf("linearizable Get after the race = %+v, %v", g, err)
		}
		winner := string(g.Value)
		if len(applied) > 1 || (len(applied) == 1 && !applied[winner]) || (len(applied) == 0 && !unknown[winner]) {
			t.Fatalf("value %q after the race; applied %v, unknown %v: want exactly one winner", winner, applied, unknown)
		}
		t.Logf("winner %s; applied %v, unknown %v", winner, applied, unknown)
	})

	t.Run("CASCounter", func(t *testing.T) {
		key := []byte("cond-counter")
		const clients, increments = 8, 25
		if _, err := cl.PutIf(ctx, key, newCounter(clients), client.IfAbsent()); err != nil {
			t.Fatal(err)
		}
		backoffsBefore := 0.0
		for i := range c.Len() {
			backoffsBefore += metric(t, c.Node(i), "adaptkv_paxos_backoffs_total")
		}
		var wg sync.WaitGroup
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cli := via(t, c, i%c.Len())
				for j := range increments {
					if err := casIncrement(ctx, cli, key, clients, i, j+1); err != nil {
						t.Errorf("client %d: %v", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		g, err := cl.Get(ctx, key, lin)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := counterValue(t, g.Value, clients), clients*increments; got != want {
			t.Fatalf("counter = %d after %d×%d CAS increments; want %d", got, clients, increments, want)
		}
		backoffs := -backoffsBefore
		for i := range c.Len() {
			backoffs += metric(t, c.Node(i), "adaptkv_paxos_backoffs_total")
		}
		// 8 clients on one key through three coordinators collide: the
		// shell's backoff (with jitter) is what got them through.
		if backoffs == 0 {
			t.Errorf("no Paxos backoffs under contention of %d clients on one key", clients)
		}
		t.Logf("%d increments, %v backoffs", clients*increments, backoffs)
	})

	t.Run("LinearizableReadsSeeLastCAS", func(t *testing.T) {
		key := []byte("cond-read")
		var last client.Version
		for i := range 5 {
			res, err := cl.PutIf(ctx, key, []byte(strconv.Itoa(i)), client.IfVersion(last))
			if i == 0 {
				res, err = cl.PutIf(ctx, key, []byte("0"), client.IfAbsent())
			}
			if err != nil || !res.Applied {
				t.Fatalf("step %d: %+v, %v", i, res, err)
			}
			last = res.Version
			for n := range c.Len() {
				g, err := via(t, c, n).Get(ctx, key, lin)
				if err != nil || string(g.Value) != strconv.Itoa(i) || g.Version != last {
					t.Fatalf("linearizable Get via %s after CAS %d = %+v, %v; want %d at %v", c.ID(n), i, g, err, i, last)
				}
				if g.Receipt.Level != client.Linearizable || g.Receipt.Required != 2 {
					t.Errorf("read receipt = %+v; want linearizable, required 2", g.Receipt)
				}
			}
		}
		// A plain write at linearizable goes through Paxos too.
		w, err := cl.Put(ctx, key, []byte("plain"), lin)
		if err != nil || !last.Less(w.Version) {
			t.Fatalf("Put at linearizable = %+v, %v; want a version above %v", w, err, last)
		}
		res, err := cl.PutIf(ctx, key, []byte("after"), client.IfVersion(w.Version))
		if err != nil || !res.Applied {
			t.Fatalf("PutIf(IfVersion of the linearizable Put) = %+v, %v; want applied", res, err)
		}
	})

	t.Run("WriteBackOfPlainWrite", func(t *testing.T) {
		// n3 misses a plain write at `one`: the replicas disagree on a
		// record no Paxos round ever committed (no committed ballot), so
		// the round must write it back before deciding on it.
		// n3, which coordinates, answers itself first, so its rounds'
		// quorums usually hold one replica with the record and one
		// without; several keys make that all but certain.
		for i := range 5 {
			key := []byte(fmt.Sprintf("cond-writeback-%d", i))
			dropWrites(t, c, 2, true)
			w, err := cl.Put(ctx, key, []byte("plain"), client.WithConsistency(client.All))
			dropWrites(t, c, 2, false)
			if err != nil {
				t.Fatal(err)
			}
			g, err := via(t, c, 2).Get(ctx, key, lin)
			if err != nil || string(g.Value) != "plain" {
				t.Fatalf("linearizable Get of a plain write n3 missed = %+v, %v; want plain", g, err)
			}
			key = []byte(fmt.Sprintf("cond-writeback-cas-%d", i))
			dropWrites(t, c, 2, true)
			w, err = cl.Put(ctx, key, []byte("plain"), client.WithConsistency(client.All))
			dropWrites(t, c, 2, false)
			if err != nil {
				t.Fatal(err)
			}
			res, err := via(t, c, 2).PutIf(ctx, key, []byte("cas"), client.IfVersion(w.Version))
			if err != nil || !res.Applied {
				t.Fatalf("PutIf(IfVersion) of a plain write n3 missed = %+v, %v; want applied", res, err)
			}
		}
	})

	t.Run("ReplicaDown", func(t *testing.T) {
		key := []byte("cond-down")
		if _, err := cl.PutIf(ctx, key, newCounter(1), client.IfAbsent()); err != nil {
			t.Fatal(err)
		}
		if err := c.StopNode(2); err != nil {
			t.Fatal(err)
		}
		cli := via(t, c, 0)
		for i := range 5 {
			if err := casIncrement(ctx, cli, key, 1, 0, i+1); err != nil {
				t.Fatalf("increment %d with a replica down: %v", i, err)
			}
		}
		g, err := cli.Get(ctx, key, lin)
		if err != nil || counterValue(t, g.Value, 1) != 5 {
			t.Fatalf("linearizable Get with a replica down = %+v, %v; want 5", g, err)
		}
	})
}

// counter is the value of a CAS counter: its count, and for each client
// the number of its increments applied. The per-client numbers are what
// make an increment whose outcome was unknown safe to retry: only client i
// writes slot i, so a read that shows slot i at seq says the increment
// applied, and one that shows less says it did not yet; a write chosen
// after that read leaves the unknown proposal dead (paxos/doc.go).
type counter struct {
	n     int
	seqs  []int
	clean bool
}

func parseCounter(v []byte, clients int) (counter, error) {
	c := counter{seqs: make([]int, clients)}
	fields := strings.Fields(string(v))
	if len(fields) != clients+1 {
		return c, fmt.Errorf("counter %q: want %d fields", v, clients+1)
	}
	var err error
	if c.n, err = strconv.Atoi(fields[0]); err != nil {
		return c, fmt.Errorf("counter %q: %w", v, err)
	}
	for i := range clients {
		if c.seqs[i], err = strconv.Atoi(fields[i+1]); err != nil {
			return c, fmt.Errorf("counter %q: %w", v, err)
		}
	}
	return c, nil
}

func (c counter) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(c.n))
	for _, s := range c.seqs {
		b.WriteString(" " + strconv.Itoa(s))
	}
	return b.String()
}

// casIncrement makes client's increment number seq (from 1) of the counter
// under key, with a linearizable read and PutIf(IfVersion), retrying when
// another writer got there first or the outcome was unknown.
func casIncrement(ctx context.Context, cl *client.Client, key []byte, clients, id, seq int) error {
	for attempt := 0; attempt < 1000; attempt++ {
		g, err := cl.Get(ctx, key, client.WithConsistency(client.Linearizable))
		if errors.Is(err, client.ErrContended) {
			continue // a Paxos read lost its rounds: nothing was written
		}
		if err != nil {
			return err
		}
		c, err := parseCounter(g.Value, clients)
		if err != nil {
			return err
		}
		if c.seqs[id] >= seq {
			return nil // an earlier attempt's unknown outcome was applied
		}
		c.n++
		c.seqs[id] = seq
		res, err := cl.PutIf(ctx, key, []byte(c.String()), client.IfVersion(g.Version))
		switch {
		case errors.Is(err, client.ErrContended), errors.Is(err, client.ErrUnknownOutcome):
			continue
		case err != nil:
			return err
		case res.Applied:
			return nil
		}
	}
	return errors.New("counter: 1000 attempts without applying")
}

// newCounter is a counter of clients at zero.
func newCounter(clients int) []byte {
	return []byte(counter{seqs: make([]int, clients)}.String())
}

// counterValue is the count of a casIncrement counter.
func counterValue(t *testing.T, v []byte, clients int) int {
	t.Helper()
	c, err := parseCounter(v, clients)
	if err != nil {
		t.Fatal(err)
	}
	return c.n
}

package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// memNetwork wires coordinators to replicas in memory, in the manner of
// memberlist's MockNetwork: every node has a real Replica over a real
// in-memory engine; the network only decides who is reachable.
type memNetwork struct {
	mu       sync.Mutex
	replicas map[string]*Replica
	engines  map[string]storage.Engine
	down     map[string]bool // unreachable and reported dead
	broken   map[string]bool // unreachable but still reported alive
	slow     map[string]time.Duration
	ring     *ring.Ring
	// readCtxs, when set, receives the context of every read sent to a
	// replica, by replica ID.
	readCtxs func(to string, ctx context.Context)
	// onRead, when set, sees every read request sent to a replica.
	onRead func(to string, req *kvpb.ReplicaReadRequest)
	// onWrite, when set, sees every write request sent to a replica
	// before the replica does (it may block).
	onWrite func(to string)
}

func newMemNetwork(t testing.TB, ids []string, meta *memKeyspaces) *memNetwork {
	n := &memNetwork{replicas: map[string]*Replica{}, engines: map[string]storage.Engine{}, down: map[string]bool{}, broken: map[string]bool{}, slow: map[string]time.Duration{}}
	var ms []ring.Member
	for _, id := range ids {
		e := storage.NewMemory()
		t.Cleanup(func() { e.Close() })
		n.engines[id] = e
		n.replicas[id] = NewReplica(e, meta, NewClock(nil))
		ms = append(ms, ring.Member{ID: id})
	}
	n.ring = ring.New(ms, 0)
	return n
}

func (n *memNetwork) setDown(id string, down bool) {
	n.mu.Lock()
	n.down[id] = down
	n.mu.Unlock()
}

func (n *memNetwork) replica(id string) (*Replica, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down[id] || n.broken[id] {
		return nil, fmt.Errorf("%s: connection refused", id)
	}
	return n.replicas[id], nil
}

func (n *memNetwork) Ring() *ring.Ring { return n.ring }
func (n *memNetwork) Alive(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.down[id]
}

func (n *memNetwork) Write(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	r, err := n.replica(to)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	onWrite := n.onWrite
	n.mu.Unlock()
	if onWrite != nil {
		onWrite(to)
	}
	return r.Write(ctx, req)
}

func (n *memNetwork) Read(ctx context.Context, to string, req *kvpb.ReplicaReadRequest) (*kvpb.ReplicaReadResponse, error) {
	r, err := n.replica(to)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	delay, seen, onRead := n.slow[to], n.readCtxs, n.onRead
	n.mu.Unlock()
	if seen != nil {
		seen(to, ctx)
	}
	if onRead != nil {
		onRead(to, req)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return r.Read(ctx, req)
}

func (n *memNetwork) Scan(ctx context.Context, to string, req *kvpb.ReplicaScanRequest) (*kvpb.ReplicaScanResponse, error) {
	r, err := n.replica(to)
	if err != nil {
		return nil, err
	}
	return r.Scan(ctx, req)
}

func (n *memNetwork) Paxos(ctx context.Context, to string, req *kvpb.PaxosRequest) (*kvpb.PaxosResponse, error) {
	r, err := n.replica(to)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	delay := n.slow[to]
	n.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return r.Paxos(ctx, req)
}

func (n *memNetwork) Hint(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	r, err := n.replica(to)
	if err != nil {
		return nil, err
	}
	return r.Hint(ctx, req)
}

// memKeyspaces is a metadata view whose epoch the test moves.
type memKeyspaces struct {
	mu  sync.Mutex
	cfg map[string]KeyspaceConfig
	// onWait, when set, runs when a caller waits for an index it lacks:
	// the test's stand-in for the metadata log catching up.
	onWait func(index uint64)
}

func (m *memKeyspaces) Keyspace(name string) (KeyspaceConfig, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cfg[name]
	return c, ok
}

func (m *memKeyspaces) set(c KeyspaceConfig) {
	m.mu.Lock()
	m.cfg[c.Name] = c
	m.mu.Unlock()
}

func (m *memKeyspaces) Applied() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var have uint64
	for _, c := range m.cfg {
		have = max(have, c.Epoch)
	}
	return have
}

func (m *memKeyspaces) WaitForIndex(ctx context.Context, index uint64) error {
	m.mu.Lock()
	var have uint64
	for _, c := range m.cfg {
		have = max(have, c.Epoch)
	}
	f := m.onWait
	m.mu.Unlock()
	if have >= index {
		return nil
	}
	if f != nil {
		f(index)
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

type fixture struct {
	net   *memNetwork
	meta  *memKeyspaces // the replicas' view
	coord *Coordinator
	cmeta *memKeyspaces // the coordinator's view
	hints *HintStore
}

func newFixture(t testing.TB, n, rf int) *fixture {
	t.Helper()
	meta := &memKeyspaces{cfg: map[string]KeyspaceConfig{"ks": {Name: "ks", N: rf, Default: quorum.Quorum, Epoch: 1}}}
	cmeta := &memKeyspaces{cfg: map[string]KeyspaceConfig{"ks": {Name: "ks", N: rf, Default: quorum.Quorum, Epoch: 1}}}
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("n%d", i+1))
	}
	net := newMemNetwork(t, ids, meta)
	hintEngine := storage.NewMemory()
	t.Cleanup(func() { hintEngine.Close() })
	hints, err := NewHintStore(hintEngine, HintOptions{MaxHints: 1000})
	if err != nil {
		t.Fatal(err)
	}
	coord := NewCoordinator(Config{
		NodeID: "coordinator", NodeNumber: 9, Transport: net, Topology: net,
		Keyspaces: cmeta, Hints: hints, Clock: NewClock(nil), ReplicaTimeout: time.Second,
		ReadRepairChance: 1,
	})
	return &fixture{net: net, meta: meta, coord: coord, cmeta: cmeta, hints: hints}
}

func (f *fixture) local(t *testing.T, id string, key string) (storage.Record, bool) {
	t.Helper()
	rec, ok, err := f.net.engines[id].Get("ks", []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return rec, ok
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Reference: Dynamo (SOSP '07) §4.5 (put waits for W acks) and §4.6 (hinted
// handoff).
func TestWriteLevels(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		cons      Consistency
		down      int // replicas of the key made unreachable
		wantErr   error
		wantAcked int
		wantHints int
	}{
		{"one, all up", Consistency{Level: quorum.One}, 0, nil, 1, 0},
		{"quorum, all up", Consistency{Level: quorum.Quorum}, 0, nil, 2, 0},
		{"all, all up", Consistency{Level: quorum.All}, 0, nil, 3, 0},
		{"quorum, one down: hint", Consistency{Level: quorum.Quorum}, 1, nil, 2, 1},
		{"one, two down: hints", Consistency{Level: quorum.One}, 2, nil, 1, 2},
		{"quorum, two down: refused", Consistency{Level: quorum.Quorum}, 2, ErrNotEnoughReplicas, 0, 0},
		{"all, one down: refused", Consistency{Level: quorum.All}, 1, ErrNotEnoughReplicas, 0, 0},
		{"custom w=3 r=1, all up", Consistency{Level: quorum.Custom, R: 1, W: 3}, 0, nil, 3, 0},
		{"custom w=4 on N=3: invalid", Consistency{Level: quorum.Custom, R: 1, W: 4}, 0, ErrInvalidRequest, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 5, 3)
			key := []byte("k")
			replicas := f.net.Ring().PreferenceList("ks", key, 3)
			for _, id := range replicas[:tt.down] {
				f.net.setDown(id, true)
			}
			_, rcpt, err := f.coord.Put(ctx, "ks", key, []byte("v"), tt.cons)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Put error = %v; want %v", err, tt.wantErr)
			}
			if err != nil {
				for _, id := range replicas {
					if _, ok := f.local(t, id, "k"); ok {
						t.Errorf("refused write reached replica %s", id)
					}
				}
				return
			}
			if rcpt.Acked < tt.wantAcked || rcpt.Policy.N != 3 {
				t.Errorf("receipt %+v; want acked >= %d of N=3", rcpt, tt.wantAcked)
			}
			waitFor(t, "background replica writes", func() bool {
				stored := 0
				for _, id := range replicas[tt.down:] {
					if _, ok := f.local(t, id, "k"); ok {
						stored++
					}
				}
				return stored == 3-tt.down
			})
			if got := f.hints.Pending(); got != tt.wantHints {
				t.Errorf("hints pending = %d; want %d", got, tt.wantHints)
			}
			// The down replicas come back and get their hints.
			for _, id := range replicas[:tt.down] {
				f.net.setDown(id, false)
				if _, err := f.hints.Deliver(ctx, f.net, id, 10); err != nil {
					t.Fatal(err)
				}
				if rec, ok := f.local(t, id, "k"); !ok || string(rec.Value) != "v" {
					t.Errorf("after hint delivery %s holds %+v, %v; want v", id, rec, ok)
				}
			}
			if got := f.hints.Pending(); got != 0 {
				t.Errorf("hints pending after delivery = %d; want 0", got)
			}
		})
	}
}

func TestWriteQuorumNotReached(t *testing.T) {
	f := newFixture(t, 3, 3)
	// Replicas refuse every write: they know a newer epoch that the
	// coordinator can never reach.
	f.meta.set(KeyspaceConfig{Name: "ks", N: 3, Default: quorum.Quorum, Epoch: 9})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, rcpt, err := f.coord.Put(ctx, "ks", []byte("k"), []byte("v"), Consistency{})
	if err == nil {
		t.Fatalf("Put succeeded with receipt %+v; want failure", rcpt)
	}
	if !errors.Is(err, ErrStaleEpoch) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put error = %v; want a stale-epoch failure", err)
	}
}

// A replica that knows a newer epoch refuses; the coordinator catches up and
// retries with the same version, and the write lands.
func TestEpochRefusalAndRetry(t *testing.T) {
	f := newFixture(t, 3, 3)
	newer := KeyspaceConfig{Name: "ks", N: 3, Default: quorum.Quorum, Epoch: 7}
	f.meta.set(newer)
	f.cmeta.onWait = func(index uint64) { f.cmeta.set(newer) }
	v, rcpt, err := f.coord.Put(context.Background(), "ks", []byte("k"), []byte("v"), Consistency{})
	if err != nil {
		t.Fatal(err)
	}
	if rcpt.Epoch != 7 {
		t.Errorf("receipt epoch = %d; want 7 after the refresh", rcpt.Epoch)
	}
	if got := f.coord.Metrics().EpochRetries.Load(); got != 1 {
		t.Errorf("epoch retries = %d; want 1", got)
	}
	res, err := f.coord.Get(context.Background(), "ks", []byte("k"), Consistency{Level: quorum.All})
	if err != nil || !res.Found || res.Record.Version != v {
		t.Fatalf("Get = %+v, %v; want version %v", res, err, v)
	}
	// The replica's refusal itself, as the peer API reports it.
	resp, err := f.net.replicas["n1"].Read(context.Background(), &kvpb.ReplicaReadRequest{Keyspace: "ks", Epoch: 3, Key: []byte("k")})
	if err != nil || resp.GetKnownEpoch() != 7 || resp.GetFound() {
		t.Errorf("stale read = %+v, %v; want a refusal naming epoch 7", resp, err)
	}
}

// Reference: Cassandra read repair: a quorum read that sees different
// versions writes the newest to the stale replicas before answering.
func TestReadRepairForeground(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3, 3)
	key := []byte("k")
	old := storage.Record{Key: key, Value: []byte("old"), Version: storage.Version{Timestamp: 100 << 16, Node: 1}}
	newer := storage.Record{Key: key, Value: []byte("new"), Version: storage.Version{Timestamp: 200 << 16, Node: 1}}
	put := func(id string, r storage.Record) {
		if _, err := f.net.engines[id].Apply(ctx, []storage.Mutation{{Keyspace: "ks", Record: r}}); err != nil {
			t.Fatal(err)
		}
	}
	put("n1", newer)
	put("n2", old)
	// n3 has nothing.
	res, err := f.coord.Get(ctx, "ks", key, Consistency{Level: quorum.All})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Record.Value) != "new" || res.Repaired != 2 {
		t.Fatalf("Get = %q repaired %d; want new repaired 2", res.Record.Value, res.Repaired)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if rec, ok := f.local(t, id, "k"); !ok || string(rec.Value) != "new" {
			t.Errorf("%s holds %q after repair; want new", id, rec.Value)
		}
	}
	if got := f.coord.Metrics().ReadRepairsForeground.Load(); got != 2 {
		t.Errorf("foreground repairs = %d; want 2", got)
	}
}

// A read at one answers from the first replica; the others' answers are
// compared after it and stale replicas are repaired in the background.
func TestReadRepairBackground(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3, 3)
	key := []byte("k")
	rec := storage.Record{Key: key, Value: []byte("v"), Version: storage.Version{Timestamp: 100 << 16, Node: 1}}
	if _, err := f.net.engines["n2"].Apply(ctx, []storage.Mutation{{Keyspace: "ks", Record: rec}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := f.coord.Get(ctx, "ks", key, Consistency{Level: quorum.One}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "background repair of n1 and n3", func() bool {
		_, ok1 := f.local(t, "n1", "k")
		_, ok3 := f.local(t, "n3", "k")
		return ok1 && ok3
	})
	// The metric is counted once every repair of the read has answered,
	// which is after the data landed: wait for it too.
	waitFor(t, "background repairs counted", func() bool {
		return f.coord.Metrics().ReadRepairsBackground.Load() >= 2
	})
}

func TestDeleteHidesValue(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3, 3)
	if _, _, err := f.coord.Put(ctx, "ks", []byte("k"), []byte("v"), Consistency{}); err != nil {
		t.Fatal(err)
	}
	dv, _, err := f.coord.Delete(ctx, "ks", []byte("k"), Consistency{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.coord.Get(ctx, "ks", []byte("k"), Consistency{})
	if err != nil || res.Found || res.Record.Version != dv {
		t.Fatalf("Get after delete = %+v, %v; want not found at the tombstone's version", res, err)
	}
}

func TestScan(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 5, 3)
	for i := range 50 {
		k := fmt.Sprintf("key%03d", i)
		if _, _, err := f.coord.Put(ctx, "ks", []byte(k), []byte(k), Consistency{Level: quorum.All}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.coord.Delete(ctx, "ks", []byte("key010"), Consistency{Level: quorum.All}); err != nil {
		t.Fatal(err)
	}
	var got []string
	var start []byte = []byte("key")
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("scan did not finish")
		}
		res, err := f.coord.Scan(ctx, "ks", start, []byte("key040"), 7, Consistency{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) > 7 {
			t.Fatalf("page of %d records over limit 7", len(res.Records))
		}
		for _, r := range res.Records {
			got = append(got, string(r.Key))
		}
		if !res.More {
			break
		}
		start = res.NextStart
	}
	var want []string
	for i := range 40 {
		if i != 10 {
			want = append(want, fmt.Sprintf("key%03d", i))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("scan = %v;\nwant %v", got, want)
	}
	// With three nodes down some token ranges have fewer than R=2 replicas
	// alive: nothing is sent.
	for _, id := range []string{"n1", "n2", "n3"} {
		f.net.setDown(id, true)
	}
	if _, err := f.coord.Scan(ctx, "ks", nil, nil, 100, Consistency{}); !errors.Is(err, ErrNotEnoughReplicas) {
		t.Errorf("scan with 3 of 5 down: error %v; want ErrNotEnoughReplicas", err)
	}
}

func TestClockMonotonic(t *testing.T) {
	now := time.UnixMilli(1000)
	c := NewClock(func() time.Time { return now })
	a := c.Now()
	b := c.Now()
	if b <= a {
		t.Fatalf("clock went %d then %d", a, b)
	}
	c.Observe(a + 1000)
	if got := c.Now(); got <= a+1000 {
		t.Fatalf("after observing %d, Now = %d", a+1000, got)
	}
	now = time.UnixMilli(999) // the physical clock steps back
	if got := c.Now(); got <= a+1000 {
		t.Fatalf("after a step back, Now = %d", got)
	}
}

func TestHintKeyRoundTrip(t *testing.T) {
	k := hintKey("node-7", 42)
	target, seq, ok := splitHintKey(k)
	if !ok || target != "node-7" || seq != 42 {
		t.Fatalf("splitHintKey(%q) = %q, %d, %v", k, target, seq, ok)
	}
	if _, _, ok := splitHintKey([]byte("garbage")); ok {
		t.Fatal("garbage parsed as a hint key")
	}
	if !bytes.HasPrefix(k, []byte("node-7\x00")) {
		t.Fatal("hint keys must group by target")
	}
}

// A read asks only R replicas, and the next one when one of them fails,
// which gossip has not noticed yet.
func TestReadAsksNextReplicaOnFailure(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3, 3)
	f.coord.cfg.ReadRepairChance = -1
	if _, _, err := f.coord.Put(ctx, "ks", []byte("k"), []byte("v"), Consistency{Level: quorum.All}); err != nil {
		t.Fatal(err)
	}
	f.net.mu.Lock()
	f.net.broken["n1"], f.net.broken["n2"] = true, true
	f.net.mu.Unlock()
	res, err := f.coord.Get(ctx, "ks", []byte("k"), Consistency{Level: quorum.One})
	if err != nil || !res.Found || res.Acked != 1 {
		t.Fatalf("Get with two broken replicas = %+v, %v; want the value from the third", res, err)
	}
	if got := f.coord.Metrics().ReplicaErrors.Load(); got < 1 {
		t.Errorf("replica errors = %d; want the failed attempts counted", got)
	}
	f.net.mu.Lock()
	f.net.broken["n3"] = true
	f.net.mu.Unlock()
	if _, err := f.coord.Get(ctx, "ks", []byte("k"), Consistency{Level: quorum.One}); !errors.Is(err, ErrQuorumNotReached) {
		t.Fatalf("Get with every replica broken: error %v; want ErrQuorumNotReached", err)
	}
}

// The coordinator reads its own replica on the request's goroutine, with the
// request's context (no per-replica timeout), and remote replicas on their
// own goroutines with one.
func TestLocalReplicaReadInline(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3, 3)
	f.coord.cfg.ReadRepairChance = -1
	key := []byte("k")
	if _, _, err := f.coord.Put(ctx, "ks", key, []byte("v"), Consistency{Level: quorum.All}); err != nil {
		t.Fatal(err)
	}
	f.coord.cfg.NodeID = f.net.ring.PreferenceList("ks", key, 3)[0]
	var mu sync.Mutex
	deadlines := map[string]bool{}
	f.net.readCtxs = func(to string, ctx context.Context) {
		_, has := ctx.Deadline()
		mu.Lock()
		deadlines[to] = has
		mu.Unlock()
	}
	for _, tc := range []struct {
		level quorum.Level
		asked int
	}{{quorum.One, 1}, {quorum.Quorum, 2}} {
		clear(deadlines)
		res, err := f.coord.Get(ctx, "ks", key, Consistency{Level: tc.level})
		if err != nil || !res.Found || string(res.Record.Value) != "v" {
			t.Fatalf("Get at %v = %+v, %v", tc.level, res, err)
		}
		mu.Lock()
		if len(deadlines) != tc.asked {
			t.Errorf("at %v asked %v; want %d replicas", tc.level, deadlines, tc.asked)
		}
		for id, has := range deadlines {
			if local := id == f.coord.cfg.NodeID; has == local {
				t.Errorf("at %v: replica %s (local %v) read with a per-replica deadline %v", tc.level, id, local, has)
			}
		}
		mu.Unlock()
	}
}

// A hedged read must not wait on a slow local replica: the local read goes
// out on its own goroutine like the others, so the hedge can fire.
func TestHedgedReadDoesNotWaitOnSlowLocalReplica(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3, 3)
	f.coord.cfg.ReadRepairChance = -1
	key := []byte("k")
	if _, _, err := f.coord.Put(ctx, "ks", key, []byte("v"), Consistency{Level: quorum.All}); err != nil {
		t.Fatal(err)
	}
	self := f.net.ring.PreferenceList("ks", key, 3)[0]
	f.coord.cfg.NodeID = self
	f.cmeta.set(KeyspaceConfig{Name: "ks", N: 3, Default: quorum.Quorum, Epoch: 1, HedgeAfter: time.Millisecond})
	f.net.mu.Lock()
	f.net.slow[self] = 500 * time.Millisecond
	f.net.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	res, err := f.coord.Get(rctx, "ks", key, Consistency{Level: quorum.One})
	if err != nil || !res.Found {
		t.Fatalf("hedged Get with a slow local replica = %+v, %v; want another replica's answer", res, err)
	}
	if f.coord.Metrics().Hedges.Load() == 0 {
		t.Error("no hedge sent")
	}
}

// probeRecorder is an Observer that keeps only the probes.
type probeRecorder struct {
	mu     sync.Mutex
	probes []bool // stale
}

func (p *probeRecorder) ClientRead(string, []byte, time.Duration, time.Duration, bool) {}
func (p *probeRecorder) ClientWrite(string, []byte, time.Duration)                     {}
func (p *probeRecorder) Replica(string, int, bool, time.Duration, bool)                {}
func (p *probeRecorder) Probe(_ string, stale, _ bool) {
	p.mu.Lock()
	p.probes = append(p.probes, stale)
	p.mu.Unlock()
}

// A probe counts a read stale only when a replica held a newer version
// written before the read began; a newer version stamped after it is a
// concurrent write (PBS measures staleness against committed writes).
func TestProbeIgnoresWritesConcurrentWithTheRead(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		newerAt   time.Duration // the newer version's write time, relative to the read
		w         int           // the keyspace's W
		wantStale bool
	}{
		{"newer version written before the read", -time.Second, 1, true},
		{"newer version written after the read began", time.Hour, 1, false},
		// At W=3 a write is acknowledged after the slowest replica's round
		// trip (500 ms here): one stamped 100 ms before the read was still
		// in flight, one stamped a second before was long acknowledged.
		{"W=3, stamped within the slowest round trip before the read", -100 * time.Millisecond, 3, false},
		{"W=3, stamped long before the read", -time.Second, 3, true},
		{"W=1, stamped 100 ms before the read", -100 * time.Millisecond, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 3, 3)
			obs := &probeRecorder{}
			f.coord.cfg.Observer = obs
			f.coord.latency.observe("n1", time.Millisecond)
			f.coord.latency.observe("n2", time.Millisecond)
			f.coord.latency.observe("n3", 500*time.Millisecond)
			key := []byte("k")
			old := storage.Record{Key: key, Value: []byte("old"), Version: storage.Version{Timestamp: uint64(time.Now().Add(-time.Minute).UnixMilli()) << 16, Node: 1}}
			newer := storage.Record{Key: key, Value: []byte("new"), Version: storage.Version{Timestamp: uint64(time.Now().Add(tc.newerAt).UnixMilli()) << 16, Node: 1}}
			for _, id := range []string{"n1", "n2", "n3"} {
				rec := old
				if id == "n3" {
					rec = newer
				}
				if _, err := f.net.engines[id].Apply(ctx, []storage.Mutation{{Keyspace: "ks", Record: rec}}); err != nil {
					t.Fatal(err)
				}
			}
			// n3 answers last, so the read returns the old version and n3's
			// newer one is compared in the background.
			f.net.mu.Lock()
			f.net.slow["n3"] = 50 * time.Millisecond
			f.net.mu.Unlock()
			res, err := f.coord.Get(ctx, "ks", key, Consistency{Level: quorum.Custom, R: 1, W: tc.w})
			if err != nil || string(res.Record.Value) != "old" {
				t.Fatalf("Get = %+v, %v; want the old value from a fast replica", res, err)
			}
			waitFor(t, "the probe", func() bool {
				obs.mu.Lock()
				defer obs.mu.Unlock()
				return len(obs.probes) == 1
			})
			if got := obs.probes[0]; got != tc.wantStale {
				t.Errorf("probe stale = %v; want %v", got, tc.wantStale)
			}
		})
	}
}

// A keyspace's own read-repair chance replaces the coordinator's.
func TestKeyspaceReadRepairChance(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3, 3)
	f.coord.cfg.ReadRepairChance = -1
	key := []byte("k")
	if _, _, err := f.coord.Put(ctx, "ks", key, []byte("v"), Consistency{Level: quorum.All}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	reads := 0
	f.net.readCtxs = func(string, context.Context) { mu.Lock(); reads++; mu.Unlock() }
	for _, tc := range []struct {
		chance float64
		want   int // replica reads for 10 reads at one
	}{{0, 10}, {-1, 10}, {1, 30}} {
		f.cmeta.set(KeyspaceConfig{Name: "ks", N: 3, Default: quorum.Quorum, Epoch: 1, ReadRepairChance: tc.chance})
		mu.Lock()
		reads = 0
		mu.Unlock()
		for range 10 {
			if _, err := f.coord.Get(ctx, "ks", key, Consistency{Level: quorum.One}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "every replica read", func() bool { mu.Lock(); defer mu.Unlock(); return reads >= tc.want })
		time.Sleep(20 * time.Millisecond) // let any extra read show
		mu.Lock()
		if reads != tc.want {
			t.Errorf("keyspace chance %v: %d replica reads for 10 reads; want %d", tc.chance, reads, tc.want)
		}
		mu.Unlock()
	}
}

// A read at quorum asks its first replica for the value and the others for
// digests; the value takes a second round only when a digest showed a newer
// version than the full reply, and a tombstone never needs one.
func TestQuorumReadDigests(t *testing.T) {
	key := []byte("k")
	rec := func(v string, ts uint64, tomb bool) *storage.Record {
		return &storage.Record{Key: key, Value: []byte(v), Version: storage.Version{Timestamp: ts << 16, Node: 1}, Tombstone: tomb}
	}
	tests := []struct {
		name        string
		level       quorum.Level
		held        []*storage.Record // by preference rank; nil: nothing
		wantValue   string
		wantFound   bool
		wantFull    int // full read requests sent
		wantDigests int
		wantFetches uint64
		wantRepairs int
	}{
		{"replicas agree: one value, one digest", quorum.Quorum, []*storage.Record{rec("v", 100, false), rec("v", 100, false), rec("v", 100, false)}, "v", true, 1, 1, 0, 0},
		{"the digest is newer: a second round", quorum.Quorum, []*storage.Record{rec("old", 100, false), rec("new", 200, false), nil}, "new", true, 2, 1, 1, 1},
		{"the full reply is newer", quorum.Quorum, []*storage.Record{rec("new", 200, false), rec("old", 100, false), nil}, "new", true, 1, 1, 0, 1},
		{"a newer tombstone needs no value", quorum.Quorum, []*storage.Record{rec("old", 100, false), rec("", 200, true), nil}, "", false, 1, 1, 0, 1},
		{"one replica: the value", quorum.One, []*storage.Record{rec("v", 100, false), rec("v", 100, false), nil}, "v", true, 1, 0, 0, 0},
		{"all: one value, two digests", quorum.All, []*storage.Record{rec("old", 100, false), rec("old", 100, false), rec("new", 200, false)}, "new", true, 2, 2, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t, 3, 3)
			ks, _ := f.cmeta.Keyspace("ks")
			ks.ReadRepairChance = 1e-300 // never ask the replicas a read does not need
			f.cmeta.set(ks)
			order := f.net.ring.PreferenceList("ks", key, 3)
			for i, r := range tt.held {
				if r == nil {
					continue
				}
				if _, err := f.net.engines[order[i]].Apply(ctx, []storage.Mutation{{Keyspace: "ks", Record: *r}}); err != nil {
					t.Fatal(err)
				}
			}
			sent := countReads(f.net)
			res, err := f.coord.Get(ctx, "ks", key, Consistency{Level: tt.level})
			if err != nil {
				t.Fatal(err)
			}
			full, digests := sent()
			if res.Found != tt.wantFound || string(res.Record.Value) != tt.wantValue {
				t.Errorf("Get = found %v %q; want found %v %q", res.Found, res.Record.Value, tt.wantFound, tt.wantValue)
			}
			if full != tt.wantFull || digests != tt.wantDigests {
				t.Errorf("sent %d full reads and %d digests; want %d and %d", full, digests, tt.wantFull, tt.wantDigests)
			}
			if got := f.coord.Metrics().DigestFetches.Load(); got != tt.wantFetches {
				t.Errorf("digest fetches = %d; want %d", got, tt.wantFetches)
			}
			if res.Repaired != tt.wantRepairs {
				t.Errorf("repaired %d replicas; want %d", res.Repaired, tt.wantRepairs)
			}
			if tt.wantRepairs > 0 && tt.wantFound {
				for _, id := range order[:len(tt.held)] {
					if r, ok := f.local(t, id, "k"); ok && string(r.Value) != tt.wantValue && tt.level == quorum.All {
						t.Errorf("%s holds %q after the read; want %q", id, r.Value, tt.wantValue)
					}
				}
			}
		})
	}
}

// A digest that arrives after a quorum read answered, and shows a newer
// version than the answer, is fetched in the background and spread to the
// replicas that lack it.
func TestLateDigestNewerIsFetchedAndSpread(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3, 3) // read-repair chance 1: every read asks all three
	key := []byte("k")
	order := f.net.ring.PreferenceList("ks", key, 3)
	old := storage.Record{Key: key, Value: []byte("old"), Version: storage.Version{Timestamp: 100 << 16, Node: 1}}
	newer := storage.Record{Key: key, Value: []byte("new"), Version: storage.Version{Timestamp: 200 << 16, Node: 1}}
	for i, r := range []storage.Record{old, old, newer} {
		if _, err := f.net.engines[order[i]].Apply(ctx, []storage.Mutation{{Keyspace: "ks", Record: r}}); err != nil {
			t.Fatal(err)
		}
	}
	f.net.mu.Lock()
	f.net.slow[order[2]] = 50 * time.Millisecond // its digest comes after the quorum
	f.net.mu.Unlock()
	if _, err := f.coord.Get(ctx, "ks", key, Consistency{Level: quorum.Quorum}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the newer version on every replica", func() bool {
		for _, id := range order {
			if r, ok := f.local(t, id, "k"); !ok || string(r.Value) != "new" {
				return false
			}
		}
		return true
	})
}

// While a keyspace grows (PendingN > N), a write goes to the replicas N+1
// to PendingN of the key's preference list as well; it counts W among the
// first N only, but is acknowledged only once every added replica has it. A
// read asks only the first N. Reference: tuner.Step.RequiresStreaming.
func TestWritePendingReplicas(t *testing.T) {
	ctx := context.Background()
	key := []byte("k")
	for _, tt := range []struct {
		name      string
		down      []int // ranks of the preference list reported dead
		broken    []int // ranks alive to the coordinator whose writes fail
		wantErr   error
		wantHints int
	}{
		{"all up", nil, nil, nil, 0},
		{"counted replica down: hint, acknowledged", []int{0}, nil, nil, 1},
		// An acknowledged write must be on every added replica, so that the
		// grown configuration's reads meet it without waiting for hints.
		{"pending replica down: refused before anything is sent", []int{4}, nil, ErrNotEnoughReplicas, 0},
		{"pending replica failing: not acknowledged, hinted", nil, []int{3}, ErrQuorumNotReached, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 5, 3)
			growing := KeyspaceConfig{Name: "ks", N: 3, PendingN: 5, Default: quorum.Quorum, Epoch: 2}
			f.meta.set(growing)
			f.cmeta.set(growing)
			list := f.net.Ring().PreferenceList("ks", key, 5)
			for _, i := range tt.down {
				f.net.setDown(list[i], true)
			}
			f.net.mu.Lock()
			for _, i := range tt.broken {
				f.net.broken[list[i]] = true
			}
			f.net.mu.Unlock()
			_, rcpt, err := f.coord.Put(ctx, "ks", key, []byte("v"), Consistency{})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), "growing to N=5") {
					t.Fatalf("Put = %v; want %v naming the growth", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if rcpt.Policy.N != 3 || rcpt.Policy.W != 2 || rcpt.Acked < 2 || rcpt.Acked > 3 {
				t.Errorf("receipt %+v; want W=2 of N=3, at most 3 acked", rcpt)
			}
			if tt.wantErr == nil {
				// Acknowledged: every reachable replica, pending ones
				// included, holds it already.
				for _, id := range list[3:] {
					if _, ok := f.local(t, id, "k"); !ok {
						t.Errorf("the write was acknowledged before added replica %s had it", id)
					}
				}
			}
			waitFor(t, "the hints", func() bool { return f.hints.Pending() == tt.wantHints })
			for _, i := range append(slices.Clone(tt.down), tt.broken...) {
				if want := min(tt.wantHints, 1); f.hints.PendingFor(list[i]) != want {
					t.Errorf("hints for %s (rank %d) = %d; want %d", list[i], i, f.hints.PendingFor(list[i]), want)
				}
			}
		})
	}
}

// A pending replica never counts towards W: with two of the first N down, a
// quorum write is refused even though both pending replicas are up.
func TestWritePendingReplicasDoNotCount(t *testing.T) {
	f := newFixture(t, 5, 3)
	growing := KeyspaceConfig{Name: "ks", N: 3, PendingN: 5, Default: quorum.Quorum, Epoch: 2}
	f.meta.set(growing)
	f.cmeta.set(growing)
	key := []byte("k")
	list := f.net.Ring().PreferenceList("ks", key, 5)
	// Unreachable but still reported alive: the coordinator sends to them
	// and their writes fail.
	f.net.mu.Lock()
	f.net.broken[list[0]], f.net.broken[list[1]] = true, true
	f.net.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, rcpt, err := f.coord.Put(ctx, "ks", key, []byte("v"), Consistency{})
	if !errors.Is(err, ErrQuorumNotReached) {
		t.Fatalf("Put = %+v, %v; want ErrQuorumNotReached", rcpt, err)
	}
	if rcpt.Acked > 1 {
		t.Errorf("acked = %d; want at most 1 (the third counted replica only)", rcpt.Acked)
	}
}

// Reads under PendingN ask only the first N: a value only the pending
// replicas hold is not found.
func TestReadIgnoresPendingReplicas(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 5, 3)
	growing := KeyspaceConfig{Name: "ks", N: 3, PendingN: 5, Default: quorum.Quorum, Epoch: 2, ReadRepairChance: -1}
	f.meta.set(growing)
	f.cmeta.set(growing)
	key := []byte("k")
	list := f.net.Ring().PreferenceList("ks", key, 5)
	rec := storage.Record{Key: key, Value: []byte("only-pending"), Version: storage.Version{Timestamp: 1, Node: 1}}
	for _, id := range list[3:] {
		if _, err := f.net.engines[id].Apply(ctx, []storage.Mutation{{Keyspace: "ks", Record: rec}}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := f.coord.Get(ctx, "ks", key, Consistency{Level: quorum.All})
	if err != nil {
		t.Fatal(err)
	}
	if res.Found || res.Acked != 3 {
		t.Errorf("Get = %+v; want not found from the 3 counted replicas", res)
	}
}

// At R=1 the replicas asked only to be compared (read repair, the tuner's
// probes) send digests too, and the first replica failing makes the value
// take a second round from the next.
func TestOneReadDigests(t *testing.T) {
	ctx := context.Background()
	key := []byte("k")
	f := newFixture(t, 3, 3) // read-repair chance 1: every read asks all three
	order := f.net.ring.PreferenceList("ks", key, 3)
	rec := storage.Record{Key: key, Value: []byte("v"), Version: storage.Version{Timestamp: 100 << 16, Node: 1}}
	for _, id := range order {
		if _, err := f.net.engines[id].Apply(ctx, []storage.Mutation{{Keyspace: "ks", Record: rec}}); err != nil {
			t.Fatal(err)
		}
	}
	sent := countReads(f.net)
	res, err := f.coord.Get(ctx, "ks", key, Consistency{Level: quorum.One})
	if err != nil || string(res.Record.Value) != "v" {
		t.Fatalf("Get = %+v, %v", res, err)
	}
	waitFor(t, "the compared replicas' replies", func() bool { full, digests := sent(); return full+digests == 3 })
	if full, digests := sent(); full != 1 || digests != 2 {
		t.Errorf("read at one with read repair: %d full reads, %d digests; want 1 and 2", full, digests)
	}

	// The first replica fails: the next one's digest is the answer's
	// version, and its value takes a second round.
	ks, _ := f.cmeta.Keyspace("ks")
	ks.ReadRepairChance = 1e-300
	f.cmeta.set(ks)
	f.net.mu.Lock()
	f.net.broken[f.coord.rank(order)[0]] = true // the replica asked first
	f.net.mu.Unlock()
	res, err = f.coord.Get(ctx, "ks", key, Consistency{Level: quorum.One})
	if err != nil || string(res.Record.Value) != "v" {
		t.Fatalf("Get with the first replica failing = %+v, %v", res, err)
	}
	if got := f.coord.Metrics().DigestFetches.Load(); got != 1 {
		t.Errorf("digest fetches = %d; want 1", got)
	}
}

// countReads makes n count the read requests it is sent and returns a
// function reporting the value reads and the digest reads so far.
func countReads(n *memNetwork) func() (full, digests int) {
	var mu sync.Mutex
	var f, d int
	n.mu.Lock()
	n.onRead = func(_ string, req *kvpb.ReplicaReadRequest) {
		mu.Lock()
		defer mu.Unlock()
		if req.GetDigest() {
			d++
		} else {
			f++
		}
	}
	n.mu.Unlock()
	return func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return f, d
	}
}

// TestAnswerDoesNotWaitForSlowReplicas: once its quorum is met an operation
// answers, whatever its context; the slower replicas finish in the
// background (once, a context without a Done channel made the shell wait
// for every replica).
func TestAnswerDoesNotWaitForSlowReplicas(t *testing.T) {
	f := newFixture(t, 3, 3)
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	// The first replica of the key's list answers (a read at one waits for
	// the value from the first replica it asks, the nearest); the others
	// hang until released.
	fast := f.net.ring.PreferenceList("ks", []byte("k"), 3)[0]
	slow := func(to string) {
		if to != fast {
			<-release
		}
	}
	f.net.mu.Lock()
	f.net.onWrite = slow
	f.net.onRead = func(to string, _ *kvpb.ReplicaReadRequest) { slow(to) }
	f.net.mu.Unlock()
	for _, op := range []string{"put", "get"} {
		done := make(chan error, 1)
		go func() {
			var err error
			if op == "put" {
				_, _, err = f.coord.Put(context.Background(), "ks", []byte("k"), []byte("v"), Consistency{Level: quorum.One})
			} else {
				_, err = f.coord.Get(context.Background(), "ks", []byte("k"), Consistency{Level: quorum.One})
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s at one: %v", op, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s at one with a context.Background() waited for the two blocked replicas", op)
		}
	}
	releaseOnce.Do(func() { close(release) })
	waitFor(t, "the slow replicas to get the write", func() bool {
		for _, id := range []string{"n1", "n2", "n3"} {
			if _, ok := f.local(t, id, "k"); !ok {
				return false
			}
		}
		return true
	})
}

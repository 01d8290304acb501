package antientropy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/replication/antientropy"
	"github.com/adaptkv/adaptkv/storage"
)

// These tests run real passes over real engines (storage's in-memory
// btree) and real replicas (replication.Replica, which answers digests and
// applies writes under the epoch check). Only the network is replaced: a
// peer call is a direct call into the other node's Replica or Runner, which
// is what the node's gRPC transport does for its own node.

const ks = "ks"

// meta is one node's applied metadata log: a keyspace's configuration, and
// a configuration it learns when it waits for a later index (catching up
// with the log).
type meta struct {
	mu   sync.Mutex
	cur  replication.KeyspaceConfig
	next *replication.KeyspaceConfig
}

func (m *meta) Keyspace(name string) (replication.KeyspaceConfig, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur, name == m.cur.Name
}

func (m *meta) Applied() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur.Epoch
}

func (m *meta) WaitForIndex(ctx context.Context, index uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.next != nil && m.next.Epoch >= index {
		m.cur, m.next = *m.next, nil
	}
	if m.cur.Epoch >= index {
		return nil
	}
	return fmt.Errorf("index %d not reached: %w", index, context.DeadlineExceeded)
}

func (m *meta) WaitForKeyspace(ctx context.Context, name string) (replication.KeyspaceConfig, error) {
	if c, ok := m.Keyspace(name); ok {
		return c, nil
	}
	return replication.KeyspaceConfig{}, fmt.Errorf("keyspace %q: %w", name, replication.ErrKeyspaceNotFound)
}

// cluster is a set of nodes, each with its engine, metadata, replica and
// runner, wired to each other in process.
type cluster struct {
	ids     []string
	ring    *ring.Ring
	engines map[string]*storage.Memory
	metas   map[string]*meta
	replica map[string]*replication.Replica
	runners map[string]*antientropy.Runner
	down    map[string]bool // read only once a pass runs

	// fail, when set, may fail a peer call from one node to another before
	// it reaches the replica ("compare", "digest" or "write").
	fail  func(op, from, to string) error
	calls atomic.Int64 // peer calls that reached fail
}

func newCluster(t *testing.T, n, rf int) *cluster {
	t.Helper()
	c := &cluster{engines: map[string]*storage.Memory{}, metas: map[string]*meta{}, replica: map[string]*replication.Replica{},
		runners: map[string]*antientropy.Runner{}, down: map[string]bool{}}
	var members []ring.Member
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		c.ids = append(c.ids, id)
		members = append(members, ring.Member{ID: id})
	}
	c.ring = ring.New(members, 0)
	for _, id := range c.ids {
		e := storage.NewMemory()
		t.Cleanup(func() { e.Close() })
		m := &meta{cur: replication.KeyspaceConfig{Name: ks, N: rf, Epoch: 1}}
		c.engines[id], c.metas[id] = e, m
		c.replica[id] = replication.NewReplica(e, m, replication.NewClock(nil))
		c.runners[id] = &antientropy.Runner{
			Self: id, Engine: e, Keyspaces: m, Topology: c,
			Replicas: peers{c, id}, Nodes: c, Trees: &antientropy.TreeCache{},
		}
	}
	return c
}

// View implements antientropy.Topology.
func (c *cluster) View() antientropy.View {
	return antientropy.View{Ring: c.ring, Alive: func(id string) bool { return !c.down[id] }}
}

// RunPart implements antientropy.Nodes: node id's part, run there.
func (c *cluster) RunPart(ctx context.Context, id, keyspace string, epoch uint64, opts antientropy.Options, progress func(antientropy.Stats)) (antientropy.Stats, error) {
	if c.down[id] {
		return antientropy.Stats{}, status.Errorf(codes.Unavailable, "node %s is down", id)
	}
	return c.runners[id].RunPart(ctx, keyspace, epoch, opts, progress)
}

// peers is one node's antientropy.Replicas.
type peers struct {
	c    *cluster
	from string
}

func (p peers) check(op, to string) error {
	if p.c.down[to] {
		return status.Errorf(codes.Unavailable, "node %s is down", to)
	}
	if p.c.fail != nil {
		p.c.calls.Add(1)
		return p.c.fail(op, p.from, to)
	}
	return nil
}

func (p peers) Digest(ctx context.Context, to string, req *kvpb.ReplicaDigestRequest) (*kvpb.ReplicaDigestResponse, error) {
	if err := p.check("digest", to); err != nil {
		return nil, err
	}
	return p.c.replica[to].Digest(ctx, req)
}

func (p peers) CompareTrees(ctx context.Context, to string, req *kvpb.CompareTreesRequest) (*kvpb.CompareTreesResponse, error) {
	if err := p.check("compare", to); err != nil {
		return nil, err
	}
	return p.c.runners[to].CompareTrees(ctx, req)
}

func (p peers) Write(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	if err := p.check("write", to); err != nil {
		return nil, err
	}
	return p.c.replica[to].Write(ctx, req)
}

// put stores a record on the named nodes only, as if the others missed it.
func (c *cluster) put(t *testing.T, key string, ts uint64, value string, tombstone bool, on ...string) storage.Record {
	t.Helper()
	rec := storage.Record{Key: []byte(key), Version: storage.Version{Timestamp: ts << 16, Node: 1}, Tombstone: tombstone}
	if !tombstone {
		rec.Value = []byte(value)
	}
	for _, id := range on {
		if _, err := c.engines[id].Apply(context.Background(), []storage.Mutation{{Keyspace: ks, Record: rec}}); err != nil {
			t.Fatal(err)
		}
	}
	return rec
}

// behind lists the (replica, key) pairs whose replica does not hold the
// wanted record; replicas are the first rf members of the key's list.
func (c *cluster) behind(t *testing.T, want map[string]storage.Record, rf int) []string {
	t.Helper()
	var bad []string
	for k, w := range want {
		for _, id := range c.ring.PreferenceList(ks, []byte(k), rf) {
			if c.down[id] {
				continue
			}
			got, ok, err := c.engines[id].Get(ks, []byte(k))
			if err != nil {
				t.Fatal(err)
			}
			if !ok || got.Version != w.Version || got.Tombstone != w.Tombstone || string(got.Value) != string(w.Value) {
				bad = append(bad, fmt.Sprintf("%s/%s", id, k))
			}
		}
	}
	slices.Sort(bad)
	return bad
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Reference: Dynamo (SOSP '07) §4.7, replica synchronization. Replicas that
// missed writes, overwrites and deletes converge to the newest version in
// one pass; a record held by a node outside the key's list (a replica
// dropped when N shrank) reaches the key's replicas too; a second pass
// finds nothing to push and compares every record with every other
// replica (the digest method) or only the records of the leaves where a
// node outside the list holds some (the merkle method).
func TestPassConverges(t *testing.T) {
	for _, method := range []string{antientropy.MethodDigest, antientropy.MethodMerkle} {
		t.Run(method, func(t *testing.T) { testPassConverges(t, method) })
	}
}

func testPassConverges(t *testing.T, method string) {
	c := newCluster(t, 4, 2)
	want := map[string]storage.Record{}
	all := c.ids
	for i := range 60 {
		k := fmt.Sprintf("k%02d", i)
		list := c.ring.PreferenceList(ks, []byte(k), 2)
		switch i % 5 {
		case 0: // on every node
			want[k] = c.put(t, k, 10, "v", false, all...)
		case 1: // first replica only
			want[k] = c.put(t, k, 10, "v", false, list[0])
		case 2: // overwritten on the second replica only
			c.put(t, k, 10, "old", false, list...)
			want[k] = c.put(t, k, 20, "new", false, list[1])
		case 3: // deleted on the first replica only
			c.put(t, k, 10, "v", false, list...)
			want[k] = c.put(t, k, 20, "", true, list[0])
		case 4: // only on a node outside the list
			other := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return slices.Contains(list, id) })
			want[k] = c.put(t, k, 10, "v", false, other[0])
		}
	}
	const missing = 12 + 12 + 12 + 2*12 // (replica, key) pairs behind
	if before := c.behind(t, want, 2); len(before) != missing {
		t.Fatalf("before the pass %d pairs behind; want %d: %v", len(before), missing, before)
	}
	var reports []antientropy.Report
	rep, err := c.runners["n2"].Run(ctxT(t), ks, antientropy.Options{PageSize: 7, Concurrency: 2, Method: method}, func(r antientropy.Report) { reports = append(reports, r) })
	if err != nil {
		t.Fatal(err)
	}
	if after := c.behind(t, want, 2); len(after) > 0 {
		t.Fatalf("after the pass %d pairs behind: %v", len(after), after)
	}
	if !rep.Done || !slices.Equal(rep.NodesDone, all) || !slices.Equal(rep.Nodes, all) || rep.ReplicationFactor != 2 || rep.Epoch != 1 {
		t.Errorf("report %+v; want done on %v at N=2, epoch 1", rep, all)
	}
	// Each pair behind gets the record from at least one node, at most from
	// the two others holding it (a pass compares before anyone has written).
	if p := rep.Stats.RecordsPushed; p < missing || p > 2*missing {
		t.Errorf("records pushed %d; want %d to %d", p, missing, 2*missing)
	}
	if rep.Stats.TombstonesScanned == 0 || rep.Stats.BytesPushed == 0 {
		t.Errorf("stats %+v: want tombstones and bytes counted", rep.Stats)
	}
	if len(reports) < 2 || len(reports[0].NodesDone) != 0 || reports[0].Done || !slices.Equal(reports[len(reports)-1].NodesDone, all) {
		t.Errorf("progress: %d reports, first %+v, last %+v; want a start and every node done", len(reports), reports[0], reports[len(reports)-1])
	}
	for i := 1; i < len(reports); i++ {
		if reports[i].Stats.KeysScanned < reports[i-1].Stats.KeysScanned {
			t.Errorf("progress went backwards: %d then %d keys", reports[i-1].Stats.KeysScanned, reports[i].Stats.KeysScanned)
		}
	}

	rep, err = c.runners["n1"].Run(ctxT(t), ks, antientropy.Options{Method: method}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stats.RecordsPushed != 0 || len(rep.Stats.RepairedNodes) != 0 {
		t.Errorf("second pass pushed %d records to %v; want none", rep.Stats.RecordsPushed, rep.Stats.RepairedNodes)
	}
	// Now cases 1 to 3 are on their 2 replicas, case 0 on all 4 nodes,
	// case 4 on its 2 replicas and the node outside: 156 records. A
	// replica compares a record with the one other replica, a node outside
	// the list with both, which adds one digest for each of the 36 records
	// held outside.
	if method == antientropy.MethodMerkle {
		// Replicas agree, so digests go only for leaves where a node
		// outside holds records and a replica holds others too: at most
		// its 36 records (to each of 2 replicas) and those others.
		if rep.Stats.KeysScanned != 156 || rep.Stats.DigestsSent > 2*(36+36) || rep.Stats.RangesCompared == 0 || rep.Stats.HashesSent == 0 {
			t.Errorf("second merkle pass: %+v; want 156 keys scanned, ranges compared, and at most 144 digests", rep.Stats)
		}
		return
	}
	if rep.Stats.KeysScanned != 156 || rep.Stats.DigestsSent != 156+36 {
		t.Errorf("second pass compared %d digests for %d keys scanned; want 192 for 156", rep.Stats.DigestsSent, rep.Stats.KeysScanned)
	}
}

// PushAll skips the digests and writes every record to every other
// replica; a larger ReplicationFactor fills the replicas a larger N adds.
func TestPassPushAllAndLargerN(t *testing.T) {
	c := newCluster(t, 3, 1)
	want := map[string]storage.Record{}
	for i := range 30 {
		k := fmt.Sprintf("g%02d", i)
		want[k] = c.put(t, k, 10, k, false, c.ring.PreferenceList(ks, []byte(k), 1)...)
	}
	rep, err := c.runners["n3"].Run(ctxT(t), ks, antientropy.Options{ReplicationFactor: 3, PushAll: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if after := c.behind(t, want, 3); len(after) > 0 {
		t.Fatalf("after streaming to N=3, behind: %v", after)
	}
	// A node's walk may meet records another node pushed to it before it
	// got there, and pushes those too.
	if st := rep.Stats; rep.ReplicationFactor != 3 || st.DigestsSent != 0 || st.RecordsPushed != 2*st.KeysScanned || st.KeysScanned < 30 || st.KeysScanned > 90 {
		t.Errorf("push-all stream %+v; want N=3, no digests, every record scanned (30 to 90) pushed to both others", rep)
	}
}

// Bad requests are refused, before anything runs, with errors that name
// the problem and that callers can classify.
func TestPassRefusesBadRequests(t *testing.T) {
	c := newCluster(t, 3, 2)
	tests := []struct {
		name     string
		keyspace string
		opts     antientropy.Options
		is       error
		message  string
	}{
		{"page too large", ks, antientropy.Options{PageSize: antientropy.MaxPageSize + 1}, replication.ErrInvalidRequest, "page size"},
		{"negative concurrency", ks, antientropy.Options{Concurrency: -1}, replication.ErrInvalidRequest, "concurrency"},
		{"N below the keyspace's", ks, antientropy.Options{ReplicationFactor: 1}, replication.ErrInvalidRequest, "below"},
		{"N larger than the cluster", ks, antientropy.Options{ReplicationFactor: 4}, replication.ErrInvalidRequest, "larger than the cluster"},
		{"unknown keyspace", "nope", antientropy.Options{}, replication.ErrKeyspaceNotFound, `"nope"`},
	}
	for _, tt := range tests {
		_, err := c.runners["n1"].Run(ctxT(t), tt.keyspace, tt.opts, nil)
		if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.message) {
			t.Errorf("%s: %v; want %v naming %q", tt.name, err, tt.is, tt.message)
		}
	}
	// A node that is not ready refuses its part.
	n1 := c.runners["n1"]
	r := &antientropy.Runner{Self: "n1", Engine: n1.Engine, Keyspaces: n1.Keyspaces, Topology: n1.Topology, Replicas: n1.Replicas, Nodes: n1.Nodes,
		Ready: func() error { return errors.New("node n1 has not joined the cluster yet") }}
	if _, err := r.RunPart(ctxT(t), ks, 1, antientropy.Options{}, nil); err == nil || !strings.Contains(err.Error(), "not joined") {
		t.Errorf("part on a node not ready: %v; want its refusal", err)
	}
}

// A ring member that is down stops the pass before it starts, naming it;
// with AllowDown the alive replicas are repaired and the down one is
// reported.
func TestPassWithNodeDown(t *testing.T) {
	c := newCluster(t, 3, 3)
	want := map[string]storage.Record{}
	for i := range 20 {
		k := fmt.Sprintf("d%02d", i)
		want[k] = c.put(t, k, 10, "v", false, "n1")
	}
	c.down["n3"] = true
	_, err := c.runners["n1"].Run(ctxT(t), ks, antientropy.Options{}, nil)
	var ie *antientropy.IncompleteError
	if !errors.As(err, &ie) || !errors.Is(err, antientropy.ErrIncomplete) || !slices.Equal(ie.Down, []string{"n3"}) || len(ie.Failed) != 0 || !strings.Contains(err.Error(), "n3 down") {
		t.Fatalf("pass with n3 down: %v (%+v); want an IncompleteError naming n3 down", err, ie)
	}
	if got := c.behind(t, want, 3); len(got) != 20 {
		t.Errorf("a refused pass changed replicas: %d pairs behind; want 20", len(got))
	}
	rep, err := c.runners["n1"].Run(ctxT(t), ks, antientropy.Options{AllowDown: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Done || !slices.Equal(rep.Down, []string{"n3"}) || !slices.Equal(rep.Nodes, []string{"n1", "n2"}) || !slices.Equal(rep.Stats.RepairedNodes, []string{"n2"}) {
		t.Errorf("pass allowing n3 down: %+v; want n2 repaired, n3 reported down", rep)
	}
	if got := c.behind(t, want, 3); len(got) > 0 {
		t.Errorf("alive replicas behind: %v", got)
	}
}

// A replica that cannot be written fails the pass, blaming the nodes whose
// parts could not finish, not those stopped after them. Errors another
// attempt may cure are tried three times; those it cannot are not retried.
func TestPassFailsWhenReplicaRefuses(t *testing.T) {
	tests := []struct {
		code  codes.Code
		tries int64
	}{
		{codes.Unavailable, 3},
		{codes.FailedPrecondition, 1},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			c := newCluster(t, 3, 2)
			// Only n1 holds the keys, and only keys whose replicas are n1
			// and n3: only n1's part pushes, only to n3, which refuses.
			for i, held := 0, 0; held < 5; i++ {
				k := fmt.Sprintf("f%d", i)
				if list := c.ring.PreferenceList(ks, []byte(k), 2); slices.Contains(list, "n1") && slices.Contains(list, "n3") {
					c.put(t, k, 10, "v", false, "n1")
					held++
				}
			}
			var tries atomic.Int64
			c.fail = func(op, from, to string) error {
				if op == "write" && to == "n3" {
					tries.Add(1)
					return status.Errorf(tt.code, "disk of %s is full", to)
				}
				return nil
			}
			_, err := c.runners["n2"].Run(ctxT(t), ks, antientropy.Options{Concurrency: 1}, nil)
			var ie *antientropy.IncompleteError
			if !errors.As(err, &ie) || !slices.Equal(ie.Failed, []string{"n1"}) ||
				!strings.Contains(err.Error(), "node n1 could not complete its part: write to replica n3: disk of n3 is full") {
				t.Fatalf("pass: %v; want an IncompleteError blaming n1's write to n3", err)
			}
			if got := tries.Load(); got != tt.tries {
				t.Errorf("write to n3 tried %d times; want %d", got, tt.tries)
			}
		})
	}
}

// A replica that knows a newer configuration refuses the page; the node
// catches up with the metadata log and redoes the page under the new
// configuration, here one with a larger N.
func TestPassRedoesPageAfterEpochMoved(t *testing.T) {
	c := newCluster(t, 3, 1)
	want := map[string]storage.Record{}
	for i := range 10 {
		k := fmt.Sprintf("e%d", i)
		want[k] = c.put(t, k, 10, "v", false, "n1", "n2", "n3")
	}
	for _, id := range []string{"n2", "n3"} {
		c.engines[id].Purge(context.Background(), ks, [][]byte{[]byte("e0"), []byte("e1"), []byte("e2")})
	}
	// n2 and n3 have applied epoch 2 (N=3); n1 learns it when it catches up.
	for _, id := range []string{"n2", "n3"} {
		c.metas[id].cur = replication.KeyspaceConfig{Name: ks, N: 3, Epoch: 2}
	}
	c.metas["n1"].next = &replication.KeyspaceConfig{Name: ks, N: 3, Epoch: 2}
	st, err := c.runners["n1"].RunPart(ctxT(t), ks, 1, antientropy.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.behind(t, want, 3); len(got) > 0 {
		t.Errorf("after the part under epoch 2, behind: %v", got)
	}
	if st.KeysScanned != 10 || !slices.Equal(st.RepairedNodes, []string{"n2", "n3"}) {
		t.Errorf("part %+v; want 10 keys scanned once, n2 and n3 repaired", st)
	}
	if e := c.metas["n1"].Applied(); e != 2 {
		t.Errorf("n1 at epoch %d after the part; want 2", e)
	}
}

// A pass stops when its caller gives up, and says so.
func TestPassCancelled(t *testing.T) {
	c := newCluster(t, 3, 3)
	for i := range 5 {
		c.put(t, fmt.Sprintf("c%d", i), 10, "v", false, "n1")
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.fail = func(op, from, to string) error {
		cancel() // the caller gives up during the first call
		return nil
	}
	_, err := c.runners["n1"].Run(ctx, ks, antientropy.Options{}, nil)
	if !errors.Is(err, context.Canceled) || errors.Is(err, antientropy.ErrIncomplete) || !strings.Contains(err.Error(), "stopped before it completed") {
		t.Fatalf("cancelled pass: %v; want it stopped with context.Canceled", err)
	}
}

// opsCounter counts the peer calls of a pass by operation.
func opsCounter(c *cluster) *sync.Map {
	var m sync.Map
	c.fail = func(op, from, to string) error {
		n, _ := m.LoadOrStore(op, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		return nil
	}
	return &m
}

func opCount(m *sync.Map, op string) int64 {
	if n, ok := m.Load(op); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// Replicas that agree exchange only tree hashes with the merkle method:
// no digest, no write, and far fewer bytes than the digest method's
// digest per record.
func TestMerklePassInSync(t *testing.T) {
	c := newCluster(t, 3, 3)
	for i := range 3000 {
		c.put(t, fmt.Sprintf("s%05d", i), 10, "v", i%10 == 0, c.ids...)
	}
	ops := opsCounter(c)
	rep, err := c.runners["n1"].Run(ctxT(t), ks, antientropy.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := rep.Stats
	if d, w := opCount(ops, "digest"), opCount(ops, "write"); d != 0 || w != 0 || st.DigestsSent != 0 || st.RecordsPushed != 0 {
		t.Errorf("in-sync merkle pass sent %d digest and %d write calls (stats %+v); want only comparisons", d, w, st)
	}
	// Three nodes replicating every key: one range, compared by each node
	// with the two others, equal at the root.
	if opCount(ops, "compare") != 6 || st.RangesCompared != 6 || st.RangesDiffering != 0 || st.HashesSent != 6 || st.KeysScanned != 9000 || st.TombstonesScanned != 900 {
		t.Errorf("in-sync merkle pass: %d compare calls, stats %+v; want 6 root comparisons over 9000 keys", opCount(ops, "compare"), st)
	}
	dig, err := c.runners["n1"].Run(ctxT(t), ks, antientropy.Options{Method: antientropy.MethodDigest}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dig.Stats.DigestsSent != 18000 || st.BytesSent == 0 || st.BytesSent*100 >= dig.Stats.BytesSent {
		t.Errorf("merkle pass sent %d bytes, digest pass %d bytes in %d digests; want under 1%%", st.BytesSent, dig.Stats.BytesSent, dig.Stats.DigestsSent)
	}
}

// Reference: the issue's "after a node misses 1,000 writes, a pass repairs
// those". The merkle method finds them through the differing leaves and
// pushes exactly the missing records; a second pass finds nothing.
func TestMerklePassRepairsMissedWrites(t *testing.T) {
	c := newCluster(t, 3, 3)
	want := map[string]storage.Record{}
	for i := range 5000 {
		k := fmt.Sprintf("m%05d", i)
		on := c.ids
		if i%5 == 0 {
			on = []string{"n1", "n2"} // n3 missed it
		}
		want[k] = c.put(t, k, 10, "v"+k, false, on...)
	}
	if got := c.behind(t, want, 3); len(got) != 1000 {
		t.Fatalf("before the pass %d pairs behind; want 1000", len(got))
	}
	rep, err := c.runners["n2"].Run(ctxT(t), ks, antientropy.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.behind(t, want, 3); len(got) != 0 {
		t.Fatalf("after the pass %d pairs behind: %v", len(got), got[:min(len(got), 10)])
	}
	st := rep.Stats
	// n1 and n2 both find n3's differing leaves and both may push a missed
	// record before the other's push lands: 1000 to 2000 pushes, all to n3.
	if st.RecordsPushed < 1000 || st.RecordsPushed > 2000 || !slices.Equal(st.RepairedNodes, []string{"n3"}) || st.LeavesDiffering < 1000 {
		t.Errorf("pass %+v; want 1000 to 2000 records pushed to n3 from at least 1000 differing leaves", st)
	}
	// Digests only for the differing leaves' records, not for all 15,000
	// (record, replica) pairs.
	if st.DigestsSent >= 15000/2 {
		t.Errorf("pass sent %d digests; want far fewer than the digest method's 15000", st.DigestsSent)
	}
	again, err := c.runners["n3"].Run(ctxT(t), ks, antientropy.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Stats.RecordsPushed != 0 || again.Stats.RangesDiffering != 0 || again.Stats.DigestsSent != 0 {
		t.Errorf("second pass %+v; want replicas in sync", again.Stats)
	}
}

// A malformed comparison is refused, naming the problem.
func TestCompareTreesRefusesBadRequests(t *testing.T) {
	c := newCluster(t, 3, 3)
	tests := []struct {
		name string
		req  *kvpb.CompareTreesRequest
		want string
	}{
		{"no keyspace", &kvpb.CompareTreesRequest{Epoch: 1, Depth: 4}, "no keyspace"},
		{"depth 0", &kvpb.CompareTreesRequest{Keyspace: ks, Epoch: 1}, "depth 0"},
		{"depth too large", &kvpb.CompareTreesRequest{Keyspace: ks, Epoch: 1, Depth: antientropy.MaxMerkleDepth + 1}, "depth"},
		{"level below the depth", &kvpb.CompareTreesRequest{Keyspace: ks, Epoch: 1, Depth: 4, Queries: []*kvpb.TreeQuery{{Level: 5}}}, "level 5"},
		{"hashes missing", &kvpb.CompareTreesRequest{Keyspace: ks, Epoch: 1, Depth: 4, Queries: []*kvpb.TreeQuery{{Level: 1, Nodes: []uint32{0, 1}, Hashes: []uint64{0}}}}, "2 nodes but 1 hashes"},
		{"shared root without sender", &kvpb.CompareTreesRequest{Keyspace: ks, Epoch: 1, Depth: 4, ReplicationFactor: 3, Shared: &kvpb.SharedRoot{}}, "without its sender"},
		{"shared root, N too large", &kvpb.CompareTreesRequest{Keyspace: ks, Epoch: 1, Depth: 4, From: "n2", ReplicationFactor: 4, Shared: &kvpb.SharedRoot{}}, "replication factor 4"},
		{"no such node", &kvpb.CompareTreesRequest{Keyspace: ks, Epoch: 1, Depth: 4, Queries: []*kvpb.TreeQuery{{Level: 1, Nodes: []uint32{2}, Hashes: []uint64{0}}}}, "node 2 does not exist at level 1"},
	}
	for _, tt := range tests {
		_, err := c.runners["n1"].CompareTrees(ctxT(t), tt.req)
		if !errors.Is(err, replication.ErrInvalidRequest) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want an invalid request naming %q", tt.name, err, tt.want)
		}
	}
	if _, err := c.runners["n1"].CompareTrees(ctxT(t), &kvpb.CompareTreesRequest{Keyspace: "nope", Epoch: 1, Depth: 4}); !errors.Is(err, replication.ErrKeyspaceNotFound) {
		t.Errorf("unknown keyspace: %v; want ErrKeyspaceNotFound", err)
	}
	c.metas["n1"].cur.Epoch = 3
	if resp, err := c.runners["n1"].CompareTrees(ctxT(t), &kvpb.CompareTreesRequest{Keyspace: ks, Epoch: 1, Depth: 4}); err != nil || resp.GetKnownEpoch() != 3 {
		t.Errorf("stale epoch: %v, %v; want known epoch 3", resp, err)
	}
}

// With more nodes than replicas the ring has many ranges; replicas that
// agree still exchange one hash per pair of replicas, not one per range.
func TestMerklePassInSyncManyRanges(t *testing.T) {
	c := newCluster(t, 6, 3)
	for i := range 2000 {
		k := fmt.Sprintf("r%05d", i)
		c.put(t, k, 10, "v", false, c.ring.PreferenceList(ks, []byte(k), 3)...)
	}
	ops := opsCounter(c)
	rep, err := c.runners["n4"].Run(ctxT(t), ks, antientropy.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := rep.Stats
	// Every node shares ranges with every other at N=3 of 6 (256 vnodes
	// each): 30 ordered pairs, one comparison each.
	if n := opCount(ops, "compare"); n != 30 || st.HashesSent != 30 || st.RangesDiffering != 0 || st.DigestsSent != 0 || opCount(ops, "digest")+opCount(ops, "write") != 0 {
		t.Errorf("in-sync pass over 6 nodes: %d compare calls, stats %+v; want 30 comparisons and nothing else", n, st)
	}
	if st.RangesCompared < 30*10 {
		t.Errorf("ranges compared %d; want the many ranges of a 6-node ring", st.RangesCompared)
	}
	// A node that missed writes is found range by range and repaired.
	want := map[string]storage.Record{}
	for i := range 200 {
		k := fmt.Sprintf("x%05d", i)
		list := c.ring.PreferenceList(ks, []byte(k), 3)
		want[k] = c.put(t, k, 10, "v", false, list[:2]...)
	}
	rep, err = c.runners["n1"].Run(ctxT(t), ks, antientropy.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.behind(t, want, 3); len(got) != 0 {
		t.Errorf("after the pass %d behind: %v", len(got), got)
	}
	if rep.Stats.RecordsPushed < 200 || rep.Stats.RangesDiffering == 0 {
		t.Errorf("pass %+v; want at least 200 pushed from differing ranges", rep.Stats)
	}
}

// An exclusive pass is refused while another pass of the keyspace runs on
// a node it reaches; passes without Exclusive are not.
func TestExclusivePassRefusedWhileAnotherRuns(t *testing.T) {
	c := newCluster(t, 3, 3)
	for i := range 20 {
		c.put(t, fmt.Sprintf("x%02d", i), 10, "v", false, "n1")
	}
	blocked, release := make(chan struct{}), make(chan struct{})
	// The first peer call holds the first pass; every other call goes
	// through at once (a sync.Once here made them wait for the first too,
	// and the exclusive pass could hang behind it).
	var held atomic.Bool
	c.fail = func(op, from, to string) error {
		if held.CompareAndSwap(false, true) {
			close(blocked)
			<-release
		}
		return nil
	}
	first := make(chan error, 1)
	go func() {
		_, err := c.runners["n1"].Run(ctxT(t), ks, antientropy.Options{}, nil)
		first <- err
	}()
	<-blocked // the first pass is running on every node
	_, err := c.runners["n2"].Run(ctxT(t), ks, antientropy.Options{Exclusive: true}, nil)
	if !errors.Is(err, antientropy.ErrIncomplete) || !strings.Contains(err.Error(), antientropy.ErrPassRunning.Error()) {
		t.Errorf("exclusive pass during another: %v; want it refused with ErrPassRunning", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first pass: %v", err)
	}
	if _, err := c.runners["n2"].Run(ctxT(t), ks, antientropy.Options{Exclusive: true}, nil); err != nil {
		t.Errorf("exclusive pass alone: %v", err)
	}
}

// RateLimit paces what each node's part sends: a pass whose requests add
// up to about two seconds' worth at the limit cannot finish in less than
// one (a lower bound only: the machine may be slower, never faster).
func TestPassRateLimit(t *testing.T) {
	c := newCluster(t, 3, 3)
	for i := range 300 {
		c.put(t, fmt.Sprintf("l%03d", i), 10, "v", false, c.ids...)
	}
	opts := antientropy.Options{Method: antientropy.MethodDigest, PageSize: 20}
	free, err := c.runners["n1"].Run(ctxT(t), ks, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Requests are most of BytesSent (responses to in-sync digests are
	// nearly empty); each of the 3 parts sends a third.
	opts.RateLimit = int64(free.Stats.BytesSent / 3 / 2)
	start := time.Now()
	if _, err := c.runners["n1"].Run(ctxT(t), ks, opts, nil); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < time.Second {
		t.Errorf("pass limited to %d bytes/s per part took %v; want at least 1s", opts.RateLimit, el)
	}
	if _, err := c.runners["n1"].Run(ctxT(t), ks, antientropy.Options{RateLimit: -1}, nil); !errors.Is(err, replication.ErrInvalidRequest) {
		t.Errorf("negative rate limit: %v; want ErrInvalidRequest", err)
	}
}

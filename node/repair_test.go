package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

func withHooks(o *clustertest.Options) {
	o.Configure = func(i int, cfg *node.Config) { cfg.UnsafeTestHooks = true }
}

// dropWrites turns node i's drop-writes hook on or off: the replica then
// acknowledges writes without storing them, which is how these tests make
// one replica miss writes that the others hold.
func dropWrites(t testing.TB, c *clustertest.Cluster, i int, on bool) {
	t.Helper()
	url := fmt.Sprintf("http://%s/unsafe/drop-writes?on=%t", c.Node(i).Addrs().HTTP, on)
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("drop-writes on %s: %s %s", c.ID(i), resp.Status, body)
	}
}

// adminFor is a raw Admin client of one node, for the streamed repair RPC.
func adminFor(t testing.TB, addr string) kvpb.AdminClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return kvpb.NewAdminClient(cc)
}

// repairOverGRPC runs a pass through the Admin API and returns every
// message of the stream.
func repairOverGRPC(ctx context.Context, a kvpb.AdminClient, keyspace string, opts *kvpb.RepairOptions) ([]*kvpb.RepairKeyspaceResponse, error) {
	stream, err := a.RepairKeyspace(ctx, &kvpb.RepairKeyspaceRequest{Keyspace: keyspace, Options: opts})
	if err != nil {
		return nil, err
	}
	var msgs []*kvpb.RepairKeyspaceResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return msgs, nil
		}
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, m)
	}
}

func reasonOf(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// want is what every replica of a key must hold after a pass.
type want struct {
	version   client.Version
	value     string
	tombstone bool
}

// checkReplicas reads every key on every listed node's own storage and
// reports the replicas that do not hold the wanted version.
func checkReplicas(ctx context.Context, kv *client.Client, nodes []string, keyspace string, keys map[string]want) []string {
	var bad []string
	for _, id := range nodes {
		for k, w := range keys {
			r, err := kv.LocalGet(ctx, id, keyspace, []byte(k))
			switch {
			case err != nil:
				bad = append(bad, fmt.Sprintf("%s/%s: %v", id, k, err))
			case !r.Found || r.Version != w.version || r.Tombstone != w.tombstone || string(r.Value) != w.value:
				bad = append(bad, fmt.Sprintf("%s/%s: found=%v tombstone=%v value=%q version=%v; want tombstone=%v value=%q version=%v",
					id, k, r.Found, r.Tombstone, r.Value, r.Version, w.tombstone, w.value, w.version))
			}
		}
	}
	slices.Sort(bad)
	return bad
}

// Reference: Dynamo (SOSP '07) §4.7, replica synchronization (anti-entropy):
// replicas that missed writes, overwrites and deletes converge to the
// newest version after one pass, and a second pass finds nothing to do.
func TestRepairKeyspace(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, withHooks)
	ctx := ctxT(t, 90*time.Second)
	kv := c.Client(t)
	if _, err := kv.CreateKeyspace(ctx, "rep", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	keys := map[string]want{}
	put := func(k, v string) {
		t.Helper()
		// At all: every replica acknowledges, so the ones not dropping
		// writes hold it when Put returns.
		w, err := kv.Put(ctx, []byte(k), []byte(v), client.WithKeyspace("rep"), client.WithConsistency(client.All))
		if err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		keys[k] = want{version: w.Version, value: v}
	}
	del := func(k string) {
		t.Helper()
		w, err := kv.Delete(ctx, []byte(k), client.WithKeyspace("rep"), client.WithConsistency(client.All))
		if err != nil {
			t.Fatalf("delete %s: %v", k, err)
		}
		keys[k] = want{version: w.Version, tombstone: true}
	}
	for i := range 100 {
		put(fmt.Sprintf("k%03d", i), "v1")
	}
	// n3 misses overwrites, deletes and new keys.
	dropWrites(t, c, 2, true)
	for i := range 30 {
		put(fmt.Sprintf("k%03d", i), "v2")
	}
	for i := 30; i < 50; i++ {
		del(fmt.Sprintf("k%03d", i))
	}
	for i := range 20 {
		put(fmt.Sprintf("new%02d", i), "fresh")
	}
	dropWrites(t, c, 2, false)
	// n1 misses other keys, which n3 must then help repair.
	dropWrites(t, c, 0, true)
	for i := range 10 {
		put(fmt.Sprintf("m%02d", i), "m")
	}
	del("k099")
	dropWrites(t, c, 0, false)
	const missing = 30 + 20 + 20 + 10 + 1 // (key, replica) pairs behind

	all := []string{c.ID(0), c.ID(1), c.ID(2)}
	before := checkReplicas(ctx, kv, all, "rep", keys)
	if len(before) != missing {
		t.Fatalf("before the pass %d replicas are behind; want %d (the drop-writes hook did not work?):\n%s", len(before), missing, strings.Join(before, "\n"))
	}

	// The pass, through the Admin API of n2, with small pages so that
	// paging is exercised.
	msgs, err := repairOverGRPC(ctx, adminFor(t, c.Node(1).Addrs().GRPC), "rep", &kvpb.RepairOptions{PageSize: 16, Concurrency: 2})
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	if len(msgs) < 2 {
		t.Fatalf("repair stream: %d messages; want a start and a summary", len(msgs))
	}
	if first := msgs[0]; first.GetDone() || !slices.Equal(first.GetNodes(), all) {
		t.Errorf("first message %v; want the pass starting on %v", first, all)
	}
	sum := msgs[len(msgs)-1]
	st := sum.GetStats()
	if !sum.GetDone() || !slices.Equal(sum.GetNodesDone(), all) || len(sum.GetDown()) != 0 || sum.GetReplicationFactor() != 3 {
		t.Errorf("summary %v; want done on %v, nothing down, N=3", sum, all)
	}
	if got, wantNodes := st.GetRepairedNodes(), []string{c.ID(0), c.ID(2)}; !slices.Equal(got, wantNodes) {
		t.Errorf("repaired nodes %v; want %v", got, wantNodes)
	}
	// Each behind replica gets the record from one or both of the others
	// (both when they compare with it before either has written it).
	if p := st.GetRecordsPushed(); p < missing || p > 2*missing {
		t.Errorf("records pushed %d; want between %d and %d", p, missing, 2*missing)
	}
	// Every node walks every key it holds: 130 keys on n2; n1 lacks 10
	// keys and n3 lacks 20 (its dropped deletes left it the values), unless
	// another node wrote them to it before its walk got there.
	if got := st.GetKeysScanned(); got < 3*130-10-20 || got > 3*130 {
		t.Errorf("keys scanned %d; want %d to %d", got, 3*130-10-20, 3*130)
	}
	if st.GetTombstonesScanned() == 0 || st.GetDigestsSent() == 0 || st.GetBytesPushed() == 0 {
		t.Errorf("stats %v: want tombstones, digests and bytes counted", st)
	}
	if after := checkReplicas(ctx, kv, all, "rep", keys); len(after) > 0 {
		t.Fatalf("after the pass %d replicas are still behind:\n%s", len(after), strings.Join(after, "\n"))
	}

	// A second pass, through the Go API, finds everything in place. Its
	// progress arrives in order and ends with every node done.
	var reports []node.RepairReport
	rep, err := c.Node(2).RepairKeyspace(ctx, "rep", node.RepairOptions{PageSize: 7}, func(r node.RepairReport) { reports = append(reports, r) })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stats.RecordsPushed != 0 || len(rep.Stats.RepairedNodes) != 0 || !rep.Done {
		t.Errorf("second pass %+v; want nothing pushed", rep)
	}
	// The replicas agree: the merkle method (the default) exchanges only
	// tree hashes, each node comparing its one range with both others.
	if rep.Stats.DigestsSent != 0 || rep.Stats.RangesCompared != 6 || rep.Stats.RangesDiffering != 0 || rep.Stats.BytesSent == 0 {
		t.Errorf("second pass %+v; want 6 ranges compared, none differing, no digests", rep.Stats)
	}
	dig, err := c.Node(2).RepairKeyspace(ctx, "rep", node.RepairOptions{Method: "digest"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dig.Stats.DigestsSent != 2*dig.Stats.KeysScanned || dig.Stats.RecordsPushed != 0 || dig.Stats.BytesSent <= rep.Stats.BytesSent {
		t.Errorf("digest pass compared %d digests for %d keys in %d bytes (merkle: %d); want every key with both other replicas", dig.Stats.DigestsSent, dig.Stats.KeysScanned, dig.Stats.BytesSent, rep.Stats.BytesSent)
	}
	if len(reports) < 2 || len(reports[0].NodesDone) != 0 || !slices.Equal(reports[len(reports)-1].NodesDone, all) {
		t.Errorf("progress: %d reports, first %+v, last %+v; want a start and every node done", len(reports), reports[0], reports[len(reports)-1])
	}
	for i := 1; i < len(reports); i++ {
		if reports[i].Stats.KeysScanned < reports[i-1].Stats.KeysScanned {
			t.Errorf("progress went backwards: %d then %d keys", reports[i-1].Stats.KeysScanned, reports[i].Stats.KeysScanned)
		}
	}

	// Push-all sends every record to both other replicas, whatever they
	// hold: the traffic the digests save.
	rep, err = c.Node(0).RepairKeyspace(ctx, "rep", node.RepairOptions{PushAll: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stats.RecordsPushed != 2*rep.Stats.KeysScanned || rep.Stats.DigestsSent != 0 {
		t.Errorf("push-all pass: %d pushed and %d digests for %d keys; want 2 pushes a key and no digests", rep.Stats.RecordsPushed, rep.Stats.DigestsSent, rep.Stats.KeysScanned)
	}
	if after := checkReplicas(ctx, kv, all, "rep", keys); len(after) > 0 {
		t.Fatalf("after push-all %d replicas differ:\n%s", len(after), strings.Join(after, "\n"))
	}
}

// A pass with a larger replication factor streams every key to the
// replicas a larger N adds: the step before N grows.
func TestRepairStreamsToLargerN(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3)
	ctx := ctxT(t, 60*time.Second)
	kv := c.Client(t)
	if _, err := kv.CreateKeyspace(ctx, "grow", client.KeyspaceSpec{ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	keys := map[string]want{}
	for i := range 60 {
		k := fmt.Sprintf("g%02d", i)
		w, err := kv.Put(ctx, []byte(k), []byte(k), client.WithKeyspace("grow"))
		if err != nil {
			t.Fatal(err)
		}
		keys[k] = want{version: w.Version, value: k}
	}
	w, err := kv.Delete(ctx, []byte("g00"), client.WithKeyspace("grow"))
	if err != nil {
		t.Fatal(err)
	}
	keys["g00"] = want{version: w.Version, tombstone: true}
	all := []string{c.ID(0), c.ID(1), c.ID(2)}
	if before := checkReplicas(ctx, kv, all, "grow", keys); len(before) != 2*len(keys) {
		t.Fatalf("with N=1, %d (node, key) pairs lack the key; want %d", len(before), 2*len(keys))
	}
	a := adminFor(t, c.Node(0).Addrs().GRPC)
	msgs, err := repairOverGRPC(ctx, a, "grow", &kvpb.RepairOptions{ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	sum := msgs[len(msgs)-1]
	if !sum.GetDone() || sum.GetReplicationFactor() != 3 || sum.GetStats().GetRecordsPushed() != uint64(2*len(keys)) {
		t.Errorf("summary %v; want done at N=3 with %d records pushed", sum, 2*len(keys))
	}
	if after := checkReplicas(ctx, kv, all, "grow", keys); len(after) > 0 {
		t.Fatalf("after streaming to N=3, %d replicas lack keys:\n%s", len(after), strings.Join(after, "\n"))
	}

	// Bad input is refused with a status that names the problem.
	if _, err := kv.CreateKeyspace(ctx, "three", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		keyspace string
		opts     *kvpb.RepairOptions
		code     codes.Code
		message  string
	}{
		{"empty name", "", nil, codes.InvalidArgument, "keyspace name"},
		{"unknown keyspace", "nope", nil, codes.NotFound, `"nope"`},
		{"N larger than the cluster", "grow", &kvpb.RepairOptions{ReplicationFactor: 4}, codes.InvalidArgument, "larger than the cluster"},
		{"N below the keyspace's", "three", &kvpb.RepairOptions{ReplicationFactor: 1}, codes.InvalidArgument, "below"},
		{"page too large", "grow", &kvpb.RepairOptions{PageSize: node.MaxRepairPageSize + 1}, codes.InvalidArgument, "page size"},
	}
	for _, tt := range tests {
		_, err := repairOverGRPC(ctx, a, tt.keyspace, tt.opts)
		if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.message) {
			t.Errorf("%s: error %v; want %v naming %q", tt.name, err, tt.code, tt.message)
		}
	}
}

// A pass never reports success when a node could not take part: with a
// node stopped it fails, naming the node, whether or not gossip has
// noticed yet; with AllowDown it repairs the others and says who was
// skipped.
func TestRepairFailsWhenNodeUnreachable(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, withHooks)
	ctx := ctxT(t, 90*time.Second)
	kv := clientFor(t, c.Node(0).Addrs().GRPC)
	if _, err := kv.CreateKeyspace(ctx, "gone", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	keys := map[string]want{}
	dropWrites(t, c, 1, true)
	for i := range 40 {
		k := fmt.Sprintf("x%02d", i)
		w, err := kv.Put(ctx, []byte(k), []byte("v"), client.WithKeyspace("gone"), client.WithConsistency(client.All))
		if err != nil {
			t.Fatal(err)
		}
		keys[k] = want{version: w.Version, value: "v"}
	}
	dropWrites(t, c, 1, false)
	if err := c.StopNode(2); err != nil {
		t.Fatal(err)
	}
	down := c.ID(2)

	_, err := c.Node(0).RepairKeyspace(ctx, "gone", node.RepairOptions{}, nil)
	if status.Code(err) != codes.Unavailable || reasonOf(err) != api.ReasonRepairIncomplete || !strings.Contains(status.Convert(err).Message(), down) {
		t.Fatalf("repair with %s stopped: %v; want Unavailable, %s, naming %s", down, err, api.ReasonRepairIncomplete, down)
	}
	t.Logf("with %s just stopped: %v", down, err)
	// Over gRPC the caller sees the same refusal.
	_, err = repairOverGRPC(ctx, adminFor(t, c.Node(1).Addrs().GRPC), "gone", nil)
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), down) {
		t.Fatalf("repair over gRPC with %s stopped: %v; want Unavailable naming %s", down, err, down)
	}

	// Once gossip reports the node down, a pass that allows it repairs the
	// alive replicas and names the one it skipped.
	eventually(t, 30*time.Second, "gossip marks the stopped node down", func() error {
		for _, i := range []int{0, 1} {
			if n := c.Node(i).AliveMembers(); n != 2 {
				return fmt.Errorf("%s sees %d members alive", c.ID(i), n)
			}
		}
		return nil
	})
	// The failed passes may have repaired some keys before they stopped
	// (which is harmless); n2 misses some more now.
	dropWrites(t, c, 1, true)
	for i := range 20 {
		k := fmt.Sprintf("y%02d", i)
		w, err := kv.Put(ctx, []byte(k), []byte("y"), client.WithKeyspace("gone"), client.WithConsistency(client.Quorum))
		if err != nil {
			t.Fatal(err)
		}
		keys[k] = want{version: w.Version, value: "y"}
	}
	dropWrites(t, c, 1, false)
	rep, err := c.Node(0).RepairKeyspace(ctx, "gone", node.RepairOptions{AllowDown: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Done || !slices.Equal(rep.Down, []string{down}) || !slices.Equal(rep.Stats.RepairedNodes, []string{c.ID(1)}) ||
		rep.Stats.RecordsPushed < 20 || rep.Stats.RecordsPushed > uint64(len(keys)) {
		t.Errorf("pass allowing down nodes: %+v; want %s skipped, 20 to %d records pushed to %s", rep, down, len(keys), c.ID(1))
	}
	if after := checkReplicas(ctx, kv, []string{c.ID(0), c.ID(1)}, "gone", keys); len(after) > 0 {
		t.Fatalf("alive replicas still behind:\n%s", strings.Join(after, "\n"))
	}
}

// A pass stops when its caller gives up.
func TestRepairCancelled(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, func(o *clustertest.Options) { o.InMemory = true })
	ctx := ctxT(t, 60*time.Second)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := c.Node(0).RepairKeyspace(cctx, node.DefaultKeyspace, node.RepairOptions{}, nil)
	if code := status.Code(err); code != codes.Canceled {
		t.Fatalf("cancelled pass: %v (%v); want Canceled", err, code)
	}
}

// BenchmarkRepair measures one pass over 3 nodes (N=3, in memory or on
// pebble) holding 10,000 keys of 100-byte values, after one replica missed
// 1,000 overwrites: with Merkle trees (the default), digests per record,
// and pushing every record.
//
//	go test -run XXX -bench Repair -benchtime 5x ./node/
func BenchmarkRepair(b *testing.B) {
	const keys, behind = 10000, 1000
	for _, engine := range []string{"memory", "pebble"} {
		for _, mode := range []struct {
			name string
			opts node.RepairOptions
		}{{"merkle", node.RepairOptions{}}, {"digest", node.RepairOptions{Method: "digest"}}, {"push-all", node.RepairOptions{PushAll: true}}} {
			b.Run(engine+"/"+mode.name, func(b *testing.B) { benchmarkRepair(b, engine == "memory", mode.opts, keys, behind) })
		}
	}
}

func benchmarkRepair(b *testing.B, inMemory bool, opts node.RepairOptions, keys, behind int) {
	c := clustertest.New(b, 3, func(o *clustertest.Options) {
		o.InMemory = inMemory
		o.Configure = func(i int, cfg *node.Config) { cfg.UnsafeTestHooks = true }
	})
	ctx := context.Background()
	kv := c.Client(b)
	val := make([]byte, 100)
	write := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := kv.Put(ctx, []byte(fmt.Sprintf("key%05d", i)), val, client.WithConsistency(client.All)); err != nil {
				b.Fatal(err)
			}
		}
	}
	write(0, keys)
	var pushed, digests, sent uint64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dropWrites(b, c, 2, true)
		write(0, behind)
		dropWrites(b, c, 2, false)
		b.StartTimer()
		rep, err := c.Node(0).RepairKeyspace(ctx, node.DefaultKeyspace, opts, nil)
		if err != nil {
			b.Fatal(err)
		}
		pushed += rep.Stats.RecordsPushed
		digests += rep.Stats.DigestsSent
		sent += rep.Stats.BytesSent
	}
	b.ReportMetric(float64(pushed)/float64(b.N), "pushed/op")
	b.ReportMetric(float64(digests)/float64(b.N), "digests/op")
	b.ReportMetric(float64(sent)/float64(b.N), "bytes_sent/op")
}

// BenchmarkRepairInSync measures what a pass over replicas that agree
// costs the network: 3 and 6 nodes (in memory, real gRPC on loopback),
// N=3, 100,000 keys of 100-byte values on all their replicas, one pass with
// each method; then, with each method, a pass after the last node missed
// 1,000 overwrites (repaired/op counts the records it was sent; a second
// pass checks that nothing is left). bytes_sent/op is the encoded size of
// the pass's peer requests and responses (tree comparisons, digests,
// writes).
//
//	go test -run XXX -bench RepairInSync -benchtime 3x ./node/
func BenchmarkRepairInSync(b *testing.B) {
	for _, nodes := range []int{3, 6} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) { benchmarkRepairInSync(b, nodes) })
	}
}

func benchmarkRepairInSync(b *testing.B, nodes int) {
	const keys, writers = 100000, 32
	c := clustertest.New(b, nodes, func(o *clustertest.Options) {
		o.InMemory = true
		o.Configure = func(i int, cfg *node.Config) { cfg.UnsafeTestHooks = true }
	})
	ctx := context.Background()
	kv := c.Client(b)
	val := make([]byte, 100)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < keys; i = next.Add(1) - 1 {
				if _, err := kv.Put(ctx, []byte(fmt.Sprintf("key%06d", i)), val, client.WithConsistency(client.All)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	for _, method := range []string{"digest", "merkle"} {
		b.Run(method, func(b *testing.B) {
			var st node.RepairStats
			for range b.N {
				rep, err := c.Node(0).RepairKeyspace(ctx, node.DefaultKeyspace, node.RepairOptions{Method: method}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if rep.Stats.RecordsPushed != 0 || rep.Stats.KeysScanned != 3*keys { // N=3 copies of each key
					b.Fatalf("pass %+v: want %d keys scanned, nothing pushed", rep.Stats, 3*keys)
				}
				st = rep.Stats
			}
			b.ReportMetric(float64(st.BytesSent), "bytes_sent/op")
			b.ReportMetric(float64(st.DigestsSent), "digests/op")
			b.ReportMetric(float64(st.HashesSent), "hashes/op")
			b.ReportMetric(float64(st.RangesCompared), "ranges/op")
		})
	}
	for _, method := range []string{"digest", "merkle"} {
		b.Run(method+"-missed-1000", func(b *testing.B) {
			var st node.RepairStats
			for range b.N {
				b.StopTimer()
				dropWrites(b, c, nodes-1, true)
				for i := range 1000 {
					if _, err := kv.Put(ctx, []byte(fmt.Sprintf("key%06d", i*(keys/1000))), val, client.WithConsistency(client.All)); err != nil {
						b.Fatal(err)
					}
				}
				dropWrites(b, c, nodes-1, false)
				b.StartTimer()
				rep, err := c.Node(0).RepairKeyspace(ctx, node.DefaultKeyspace, node.RepairOptions{Method: method}, nil)
				if err != nil {
					b.Fatal(err)
				}
				st = rep.Stats
				b.StopTimer()
				again, err := c.Node(0).RepairKeyspace(ctx, node.DefaultKeyspace, node.RepairOptions{Method: method}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if again.Stats.RecordsPushed != 0 {
					b.Fatalf("second pass pushed %d records; want the first to have repaired everything", again.Stats.RecordsPushed)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(st.BytesSent), "bytes_sent/op")
			b.ReportMetric(float64(st.DigestsSent), "digests/op")
			b.ReportMetric(float64(st.RecordsPushed), "repaired/op")
			b.ReportMetric(float64(st.RangesDiffering), "ranges_differing/op")
		})
	}
}

// The SDK's RepairKeyspace runs the same pass: progress reports, a final
// report, every replica repaired; bad options and unknown keyspaces are
// refused with errors naming them.
func TestRepairKeyspaceSDK(t *testing.T) {
	t.Parallel()
	c := clustertest.New(t, 3, withHooks)
	ctx := ctxT(t, 60*time.Second)
	kv := c.Client(t)
	if _, err := kv.CreateKeyspace(ctx, "sdk", client.KeyspaceSpec{ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	keys := map[string]want{}
	dropWrites(t, c, 1, true)
	for i := range 40 {
		k := fmt.Sprintf("k%02d", i)
		w, err := kv.Put(ctx, []byte(k), []byte("v"), client.WithKeyspace("sdk"), client.WithConsistency(client.All))
		if err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		keys[k] = want{version: w.Version, value: "v"}
	}
	dropWrites(t, c, 1, false)
	all := []string{c.ID(0), c.ID(1), c.ID(2)}
	if before := checkReplicas(ctx, kv, all, "sdk", keys); len(before) != 40 {
		t.Fatalf("before the pass %d replicas are behind; want 40", len(before))
	}
	var reports int
	rep, err := kv.RepairKeyspace(ctx, "sdk", client.RepairOptions{PageSize: 8}, func(*client.RepairReport) { reports++ })
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Done || !slices.Equal(rep.NodesDone, all) || rep.RecordsPushed < 40 || reports < 2 {
		t.Errorf("report %+v after %d progress reports; want done on %v with at least 40 records pushed", rep, reports, all)
	}
	if after := checkReplicas(ctx, kv, all, "sdk", keys); len(after) != 0 {
		t.Errorf("after the pass:\n%s", strings.Join(after, "\n"))
	}
	if _, err := kv.RepairKeyspace(ctx, "sdk", client.RepairOptions{PageSize: -1}, nil); !errors.Is(err, client.ErrInvalidArgument) || !strings.Contains(err.Error(), "page size") {
		t.Errorf("negative page size: %v; want invalid argument naming it", err)
	}
	if _, err := kv.RepairKeyspace(ctx, "sdk", client.RepairOptions{Method: "gossip"}, nil); !errors.Is(err, client.ErrInvalidArgument) || !strings.Contains(err.Error(), `method "gossip"`) {
		t.Errorf("unknown method: %v; want invalid argument naming it", err)
	}
	again, err := kv.RepairKeyspace(ctx, "sdk", client.RepairOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.RecordsPushed != 0 || again.RangesCompared == 0 || again.RangesDiffering != 0 || again.BytesSent == 0 {
		t.Errorf("second pass %+v; want ranges compared, none differing, nothing pushed", again)
	}
	if _, err := kv.RepairKeyspace(ctx, "nope", client.RepairOptions{}, nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown keyspace: %v; want an error naming it", err)
	}
}

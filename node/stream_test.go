package node_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node"
	"github.com/adaptkv/adaptkv/node/clustertest"
)

// A join's stream is paced by the driver's --stream-rate, checkpointed in
// the metadata log, shown in ClusterStatus, and, when its driver (the
// metadata leader) restarts mid-stream, continued by the next driver from
// the checkpoint instead of from the start; the joined node then holds
// every key it owns. Before checkpoints, a new driver started over and
// pushed every record again.
func TestJoinStreamResumesAfterDriverRestart(t *testing.T) {
	const (
		keys = 1500
		rate = 512 << 10 // about 2.5 MB to scan: some seconds
	)
	c := clustertest.New(t, 3, func(o *clustertest.Options) {
		o.Configure = func(i int, cfg *node.Config) {
			cfg.StreamRate = rate
			cfg.StreamCheckpoint = 150 * time.Millisecond
		}
	})
	kv := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	q := client.WithConsistency(client.Quorum)
	val := bytes.Repeat([]byte("v"), 512)
	for i := range keys {
		if _, err := kv.Put(ctx, streamKey(i), val, q); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	j, err := c.AddNode(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Wait until the leader has checkpointed some progress, then check
	// what status shows, and restart it.
	leader := -1
	var before *client.StreamStatus
	for before == nil {
		if ctx.Err() != nil {
			t.Fatal("no stream checkpoint seen")
		}
		time.Sleep(20 * time.Millisecond)
		leader = leaderIndex(c)
		if leader < 0 {
			continue
		}
		if st := c.Node(leader).StreamCounters(); st.Checkpoints < 3 {
			continue
		}
		st, err := kv.ClusterStatus(ctx)
		if err != nil || st.Stream == nil || st.Stream.Driver == "" || st.Stream.RecordsPushed == 0 {
			continue
		}
		before = st.Stream
	}
	if m, _ := c.Node(j).Topology().Member(c.ID(j)); m.State != node.StateJoining {
		t.Fatalf("%s is %s before the restart: the stream finished too fast to interrupt", c.ID(j), m.State)
	}
	if before.Change != "join of "+c.ID(j) || before.KeyspacesTotal == 0 || before.SourcesTotal == 0 {
		t.Errorf("status shows stream %+v", before)
	}
	cnt := c.Node(leader).StreamCounters()
	if cnt.Waits == 0 || cnt.BytesPaced < before.BytesScanned {
		t.Errorf("the driver's limiter: %d waits, %d bytes paced; %d bytes scanned by the checkpoint", cnt.Waits, cnt.BytesPaced, before.BytesScanned)
	}
	leaderID := c.ID(leader)
	if err := c.StopNodeNow(leader); err != nil {
		t.Fatal(err)
	}
	if err := c.RestartNode(ctx, leader); err != nil {
		t.Fatal(err)
	}
	waitJoined(t, ctx, c, j)

	var after, resumed uint64
	for i := range c.Len() {
		s := c.Node(i).StreamCounters()
		after += s.RecordsPushed
		resumed += s.Resumed
	}
	// A full stream pushes each key whose preference list gains the new
	// node once from each of its three current replicas.
	st, err := kv.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stream != nil {
		t.Errorf("status still shows a stream after the join: %+v", st.Stream)
	}
	var ms []ring.Member
	for _, m := range st.Members {
		ms = append(ms, ring.Member{ID: m.ID, Zone: m.Zone})
	}
	rg := ring.New(ms, st.Vnodes)
	newID := c.ID(j)
	var owned [][]byte
	for i := range keys {
		if slices.Contains(rg.PreferenceList("default", streamKey(i), 3), newID) {
			owned = append(owned, streamKey(i))
		}
	}
	full := uint64(3 * len(owned))
	t.Logf("driver %s restarted after %d records pushed (checkpoint); %d pushed after; a full stream pushes %d",
		leaderID, before.RecordsPushed, after, full)
	if resumed == 0 {
		t.Error("no driver resumed from the checkpoint")
	}
	// The next driver starts at a checkpoint no older than the one status
	// showed, so it skips at least what that one counted.
	if after == 0 || after+before.RecordsPushed > full {
		t.Errorf("after the restart %d records were pushed, the checkpoint had %d, a full stream is %d: the stream started over",
			after, before.RecordsPushed, full)
	}

	// The new node holds every key it owns, and nothing is missing at
	// quorum.
	for _, k := range owned {
		rec, err := kv.LocalGet(ctx, newID, "default", k)
		if err != nil || !rec.Found {
			t.Fatalf("%s lacks %s it owns: %v", newID, k, err)
		}
	}
	for i := range keys {
		got, err := kv.Get(ctx, streamKey(i), q)
		if err != nil || !bytes.Equal(got.Value, val) {
			t.Fatalf("get %s at quorum after the join: %v", streamKey(i), err)
		}
	}
}

func streamKey(i int) []byte { return []byte(fmt.Sprintf("s-%05d", i)) }

// leaderIndex is the index of the node that leads the metadata log, or -1.
func leaderIndex(c *clustertest.Cluster) int {
	for i := range c.Len() {
		if n := c.Node(i); n != nil && n.MetadataLeader() == c.ID(i) {
			return i
		}
	}
	return -1
}

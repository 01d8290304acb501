package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/node/launch"
)

// TestClusterAddRemove scales a local cluster out and back in with the
// one-command forms, as a user would: cluster up 3, 100 keys at quorum,
// cluster add (a fourth node joins and is streamed to), cluster remove n1
// (a decommission), and after each step every key reads back at quorum
// and cluster status shows the ring the step promised. Bad input and the
// server's refusal to go below the replication factor end in clear errors.
func TestClusterAddRemove(t *testing.T) {
	t.Parallel()
	tc := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	quorum := []client.CallOption{client.WithConsistency(client.Quorum)}
	key := func(i int) []byte { return fmt.Appendf(nil, "shape-%03d", i) }
	val := func(i int) []byte { return fmt.Appendf(nil, "value-%d", i) }

	c := tc.client(client.Config{})
	parallel(100, 8, func(i int) {
		if _, err := c.Put(ctx, key(i), val(i), quorum...); err != nil {
			t.Errorf("put %s: %v", key(i), err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	readAll := func(step string, c *client.Client) {
		t.Helper()
		var missing atomic.Int64
		parallel(100, 8, func(i int) {
			res, err := c.Get(ctx, key(i), quorum...)
			if err != nil || !res.Found || string(res.Value) != string(val(i)) {
				if missing.Add(1) <= 3 {
					t.Errorf("%s: get %s: %v %+v", step, key(i), err, res)
				}
			}
		})
		if n := missing.Load(); n > 0 {
			tc.dumpLogs()
			t.Fatalf("%s: %d of 100 keys did not read back at quorum", step, n)
		}
	}
	status := func() upJSON {
		t.Helper()
		var st upJSON
		r := tc.mustRun("cluster", "status", "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("cluster status: %v\n%s", err, r.stdout)
		}
		return st
	}
	rings := func(st upJSON) string {
		var s string
		for _, n := range st.Nodes {
			s += fmt.Sprintf("%s:%s:%v ", n.ID, n.RingState, n.Running)
		}
		return s
	}

	// Bad input, before anything changes.
	for _, bad := range [][]string{{"cluster", "add", "--nodes", "0"}, {"cluster", "add", "--nodes", "-2"}} {
		expectFail(t, tc.run(nil, bad...), exitUsage, "--nodes")
	}
	expectFail(t, tc.run(nil, "cluster", "remove", "n9"), exitUsage, `no node "n9"`)

	begin := time.Now()
	r := tc.mustRun("cluster", "add")
	t.Logf("cluster add took %v:\n%s%s", time.Since(begin).Round(time.Millisecond), r.stderr, r.stdout)
	readAll("after cluster add", c)
	st := status()
	if got, want := rings(st), "n1:normal:true n2:normal:true n3:normal:true n4:normal:true "; got != want {
		t.Fatalf("status after add: %s, want %s", got, want)
	}
	if l := tc.layout(); len(l.Nodes) != 4 || !l.Nodes[3].Added || l.Nodes[3].Removed {
		t.Fatalf("cluster.json after add: %+v", l.Nodes)
	}

	n1 := tc.layout().Nodes[0]
	begin = time.Now()
	r = tc.mustRun("cluster", "remove", "n1")
	t.Logf("cluster remove n1 took %v:\n%s%s", time.Since(begin).Round(time.Millisecond), r.stderr, r.stdout)
	if launch.NodeRunning(n1.PID, "n1") {
		t.Fatalf("n1's process %d still runs after cluster remove", n1.PID)
	}
	// The default endpoints now leave n1 out; a fresh client uses them.
	readAll("after cluster remove n1", tc.client(client.Config{}))
	st = status()
	if got, want := rings(st), "n1:left:false n2:normal:true n3:normal:true n4:normal:true "; got != want {
		t.Fatalf("status after remove: %s, want %s", got, want)
	}
	if !st.Nodes[0].Removed {
		t.Fatalf("n1 not marked removed: %+v", st.Nodes[0])
	}

	// Removing it again, killing or starting it, and going below the
	// default keyspace's 3 replicas are refused, with the reason.
	expectFail(t, tc.run(nil, "cluster", "remove", "n1"), exitUsage, "n1 was removed")
	expectFail(t, tc.run(nil, "cluster", "start", "n1"), exitUsage, "n1 was removed")
	expectFail(t, tc.run(nil, "cluster", "remove", "n2"), 1, "the cluster refused to remove n2")
	// cluster up restarts nothing (n1 stays removed) and counts 3 nodes.
	r = tc.mustRun("cluster", "up", "-o", "json")
	var up upJSON
	if err := json.Unmarshal([]byte(r.stdout), &up); err != nil || len(up.Started) != 0 {
		t.Fatalf("cluster up after remove: %v %s", err, r.stdout)
	}

	// A restart brings back n2, n3 and the added n4 (laid out again from
	// cluster.json), not n1, and the keys are all there.
	tc.mustRun("cluster", "down")
	r = tc.mustRun("cluster", "up", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &up); err != nil || fmt.Sprint(up.Started) != "[n2 n3 n4]" {
		t.Fatalf("cluster up after down: %v %s", err, r.stdout)
	}
	readAll("after down and up", tc.client(client.Config{}))

	tc.mustRun("cluster", "down")
	var procs []launch.Proc
	for _, n := range tc.layout().Nodes {
		procs = append(procs, launch.Proc{ID: n.ID, PID: n.PID})
	}
	if left := launch.WaitGone(procs, 5*time.Second); len(left) > 0 {
		t.Fatalf("processes left after cluster down: %v", left)
	}
	for _, n := range st.Nodes {
		if n.PID != 0 && launch.NodeRunning(n.PID, n.ID) {
			t.Fatalf("%s (pid %d) runs after cluster down", n.ID, n.PID)
		}
	}
}

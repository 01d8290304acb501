package node

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/replication/health"
	"github.com/adaptkv/adaptkv/tuner"
)

// The tuner's observations carry the nodes the metadata log has flagged,
// as the log's health decisions flag and reinstate them, so that its model
// routes reads as the coordinators do (issue 16).
func TestTunerSeesFlaggedNodes(t *testing.T) {
	n := &Node{meta: newFSM()}
	tn := newTuning(n, time.Second)
	at := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	for i, step := range []struct {
		node string
		flag bool
		want []string
	}{
		{"n3", true, []string{"n3"}},
		{"n1", true, []string{"n1", "n3"}},
		{"n3", false, []string{"n1"}},
		{"n1", false, nil},
	} {
		b, err := json.Marshal(health.Decision{At: at, Node: step.node, Flag: step.flag, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if r := applyCmd(t, n.meta, uint64(i+1), command{Op: "health", Health: b}); r.err != nil {
			t.Fatal(r.err)
		}
		if got := tn.flagged(); !slices.Equal(got, step.want) {
			t.Errorf("after %s flag=%v: tuner sees %v flagged; want %v", step.node, step.flag, got, step.want)
		}
	}
}

// The share of keys with a flagged replica, by replication factor, on the
// adaptive experiment's ring (n1 n2 in zone a, n3 n4 in b, n5 in c, one
// replica per zone): a key's replicas hold n3 about half the time at N=3,
// always at N=5, and about its ownership at N=1.
func TestFlaggedShare(t *testing.T) {
	r := ring.New([]ring.Member{{ID: "n1", Zone: "a"}, {ID: "n2", Zone: "a"}, {ID: "n3", Zone: "b"}, {ID: "n4", Zone: "b"}, {ID: "n5", Zone: "c"}}, 0)
	if got := flaggedShare(r, nil); got != nil {
		t.Errorf("none flagged: share %v; want nil", got)
	}
	share := flaggedShare(r, []string{"n3"})
	if len(share) != 6 {
		t.Fatalf("share %v; want entries for N 0–5", share)
	}
	own := r.Ownership()["n3"]
	for _, tc := range []struct {
		n      int
		lo, hi float64
	}{
		{1, own - 0.01, own + 0.01},
		{3, 0.35, 0.65},
		{5, 1, 1},
	} {
		if s := share[tc.n]; s < tc.lo || s > tc.hi {
			t.Errorf("N=%d: share %.3f; want in [%.2f, %.2f]", tc.n, s, tc.lo, tc.hi)
		}
	}
	for n := 2; n < len(share); n++ {
		if share[n] < share[n-1] {
			t.Errorf("share falls from N=%d (%.3f) to N=%d (%.3f); more replicas hold a flagged one at least as often", n-1, share[n-1], n, share[n])
		}
	}
}

// Coordinators rank a flagged node last; the tuner's recorder must keep
// the requests to it apart from the ranks, under its own ID, so that the
// 3rd-nearest rank holds only the healthy replica ranked last for the keys
// it does not hold. Recorded by rank instead, that rank mixed the slow n3's
// round trips with the healthy ones' and the model predicted R=1 W=2
// stale above the goal for the keys n3 does not hold, where the probes of
// the adaptive experiment measured none (BENCHMARKS.md, 2026-12-05).
//
// The requests are those the coordinators of the adaptive experiment's
// 5-node ring send, one write and one read per key, each coordinated by
// one of the key's healthy replicas as the SDK does, n3 50 ms slow.
func TestTuningRecordsFlaggedApart(t *testing.T) {
	r := ring.New([]ring.Member{{ID: "n1", Zone: "a"}, {ID: "n2", Zone: "a"}, {ID: "n3", Zone: "b"}, {ID: "n4", Zone: "b"}, {ID: "n5", Zone: "c"}}, 0)
	n := &Node{meta: newFSM()}
	tn := newTuning(n, time.Second)
	applyCmd(t, n.meta, 1, command{Op: "create", Keyspace: KeyspaceDef{Name: "ks", ReplicationFactor: 3, Level: "custom", R: 1, W: 2,
		Adaptive: &tuner.Goal{MaxStale: 0.001, Floor: tuner.FloorOne, MinRF: 3, MaxRF: 3}}})
	b, err := json.Marshal(health.Decision{At: time.Now(), Node: "n3", Flag: true, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res := applyCmd(t, n.meta, 2, command{Op: "health", Health: b}); res.err != nil {
		t.Fatal(res.err)
	}
	tn.syncRecorders()

	const keys = 3000
	var withN3 uint64
	for i := range keys {
		key := []byte(fmt.Sprintf("key%d", i))
		reps := r.PreferenceList("ks", key, 3)
		// The coordinator: one of the healthy replicas, in turn; then the
		// others by round trip (all a zone away here), n3 last.
		ranked := slices.DeleteFunc(slices.Clone(reps), func(id string) bool { return id == "n3" })
		coord := ranked[i%len(ranked)]
		ranked = append([]string{coord}, slices.DeleteFunc(ranked, func(id string) bool { return id == coord })...)
		if len(ranked) < len(reps) {
			ranked = append(ranked, "n3")
			withN3++
		}
		jitter := time.Duration(i%10) * 200 * time.Microsecond
		for rank, id := range ranked {
			rtt := 22*time.Millisecond + jitter
			switch id {
			case coord:
				rtt = 300*time.Microsecond + jitter/10
			case "n3":
				rtt += 50 * time.Millisecond
			}
			tn.ReplicaAt("ks", rank, id, true, rtt, true)
			if rank == 0 {
				tn.ReplicaAt("ks", rank, id, false, rtt, true)
			}
		}
		tn.ClientWrite("ks", key, 23*time.Millisecond)
		tn.ClientRead("ks", key, time.Millisecond, 0, false)
	}

	obs := tn.recorder("ks").rec.Snapshot(time.Now(), tuner.Policy{N: 3, R: 1, W: 2, Read: tuner.ReadNearest}, 5)
	// What TunerSnapshot sends the leader, and what the leader adds.
	raw, err := json.Marshal(obs)
	if err != nil {
		t.Fatal(err)
	}
	obs = tuner.Observation{}
	if err := json.Unmarshal(raw, &obs); err != nil {
		t.Fatal(err)
	}
	obs.Flagged = tn.flagged()
	obs.FlaggedShare = flaggedShare(r, obs.Flagged)

	byID := map[string]tuner.ReplicaObservation{}
	for _, ro := range obs.Replicas {
		byID[ro.ID] = ro
	}
	apart, ok := byID["n3"]
	if !ok || !apart.Apart {
		t.Errorf("no entry for n3 recorded apart: replicas %v", slices.Sorted(maps.Keys(byID)))
	} else if apart.WritesSent != withN3 || apart.WriteRTT.Quantile(0.01) < 70*time.Millisecond {
		t.Errorf("n3 apart: %d writes sent, write p1 %v; want %d (the keys it holds), all at least 72 ms", apart.WritesSent, apart.WriteRTT.Quantile(0.01), withN3)
	}
	third := byID["3rd-nearest"]
	if third.WritesSent != keys-withN3 {
		t.Errorf("3rd-nearest: %d writes sent; want %d, the keys n3 does not hold", third.WritesSent, keys-withN3)
	}
	if p := third.WriteRTT.Quantile(1); p > 30*time.Millisecond {
		t.Errorf("3rd-nearest: write max %v; want the healthy replicas' 22–24 ms only, none of n3's", p)
	}
	if third.Apart || byID["nearest"].Apart {
		t.Error("ranks marked apart")
	}

	// The model, as the leader runs it: R=1 W=2 never waits for n3 and,
	// every replica's legs being its own, is not stale (every read is
	// taken to follow a write at once: no gap was recorded).
	ps, err := tn.model.Predict(obs, []tuner.Policy{{N: 3, R: 1, W: 2, Read: tuner.ReadNearest}}, tuner.Calibration{})
	if err != nil {
		t.Fatal(err)
	}
	if p := ps[0]; p.StaleProb > 0.001 || p.WriteP99 > 30*time.Millisecond {
		t.Errorf("R=1 W=2 predicted stale %.3f%%, write p99 %v; want at most the 0.1%% goal and under 30 ms", 100*p.StaleProb, p.WriteP99)
	}
}

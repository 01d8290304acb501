package replication

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication/paxos"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// The linearizable shell on the in-memory fixture (real replicas and
// engines): epoch refusals, too few replicas, and the jitter.

// Every replica knows epoch 7 and refuses the coordinator's epoch 1: the
// rounds fail without writing anything, the coordinator catches up and runs
// the conditional write again, at epoch 7.
func TestLinEpochCatchUp(t *testing.T) {
	f := newFixture(t, 3, 3)
	newer := KeyspaceConfig{Name: "ks", N: 3, Default: quorum.Quorum, Epoch: 7}
	f.meta.set(newer)
	f.cmeta.onWait = func(uint64) { f.cmeta.set(newer) }
	ctx := context.Background()
	res, err := f.coord.CondPut(ctx, "ks", []byte("k"), []byte("v"), paxos.Condition{Kind: paxos.IfAbsent}, Consistency{})
	if err != nil || !res.Applied || res.Epoch != 7 {
		t.Fatalf("CondPut = %+v, %v; want applied at epoch 7 after the catch-up", res, err)
	}
	if got := f.coord.Metrics().EpochRetries.Load(); got < 1 {
		t.Errorf("epoch retries = %d; want at least 1", got)
	}
	g, err := f.coord.Get(ctx, "ks", []byte("k"), Consistency{Level: quorum.Linearizable})
	if err != nil || !g.Found || g.Record.Version != res.Record.Version || g.Policy.Level != quorum.Linearizable || g.Acked < 2 {
		t.Fatalf("linearizable Get = %+v, %v; want the CondPut's record, receipt linearizable with 2 acks", g, err)
	}
}

// With a majority of the key's replicas down, a linearizable operation
// fails at once, definitely (nothing sent), instead of backing off through
// its attempts.
func TestLinNotEnoughReplicas(t *testing.T) {
	f := newFixture(t, 3, 3)
	f.net.setDown("n2", true)
	f.net.setDown("n3", true)
	ctx := context.Background()
	for name, op := range map[string]func() error{
		"CondPut": func() error {
			_, err := f.coord.CondPut(ctx, "ks", []byte("k"), []byte("v"), paxos.Condition{Kind: paxos.Always}, Consistency{})
			return err
		},
		"Get": func() error {
			_, err := f.coord.Get(ctx, "ks", []byte("k"), Consistency{Level: quorum.Linearizable})
			return err
		},
	} {
		var qe *QuorumError
		if err := op(); !errors.Is(err, ErrNotEnoughReplicas) || !errors.As(err, &qe) || qe.Answered != 1 || qe.Required != 2 {
			t.Errorf("%s with 1 of 3 replicas alive: %v; want ErrNotEnoughReplicas, 1 alive of 2 required", name, err)
		}
	}
}

// A keyspace whose default is linearizable runs plain Put, Delete and Get
// through Paxos, and a ReadOnly condition is refused as a write's.
func TestLinKeyspaceDefault(t *testing.T) {
	f := newFixture(t, 3, 3)
	lin := KeyspaceConfig{Name: "ks", N: 3, Default: quorum.Linearizable, Epoch: 1}
	f.meta.set(lin)
	f.cmeta.set(lin)
	ctx := context.Background()
	v, rcpt, err := f.coord.Put(ctx, "ks", []byte("k"), []byte("v"), Consistency{})
	if err != nil || rcpt.Policy.Level != quorum.Linearizable || v.IsZero() {
		t.Fatalf("Put = %v, %+v, %v; want a linearizable write", v, rcpt, err)
	}
	if _, rcpt, err = f.coord.Delete(ctx, "ks", []byte("k"), Consistency{}); err != nil || rcpt.Policy.Level != quorum.Linearizable {
		t.Fatalf("Delete = %+v, %v; want a linearizable delete", rcpt, err)
	}
	if g, err := f.coord.Get(ctx, "ks", []byte("k"), Consistency{}); err != nil || g.Found || g.Policy.Level != quorum.Linearizable {
		t.Fatalf("Get = %+v, %v; want not found, linearizable", g, err)
	}
	if _, err := f.coord.CondPut(ctx, "ks", []byte("k"), nil, paxos.Condition{Kind: paxos.ReadOnly}, Consistency{}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("CondPut(ReadOnly) = %v; want ErrInvalidRequest", err)
	}
}

func TestJitter(t *testing.T) {
	for _, b := range []time.Duration{1, 2, 3 * time.Millisecond, 128 * time.Millisecond} {
		lo, hi := b, time.Duration(0)
		for range 1000 {
			w := jitter(b)
			lo, hi = min(lo, w), max(hi, w)
		}
		if lo < b/2 || hi > b {
			t.Errorf("jitter(%v) drew from [%v, %v]; want within [%v, %v]", b, lo, hi, b/2, b)
		}
		if b >= time.Millisecond && lo == hi {
			t.Errorf("jitter(%v) always drew %v", b, lo)
		}
	}
}

// A conditional write whose client gives up while its replies are in
// flight answers (outcome unknown) and its driver finishes in the
// background; the caller reads only what the foreground saw. Under -race
// this failed: the receipt read the driver's reply count while the
// background goroutine updated it.
func TestLinDeadlineHandsOverToBackground(t *testing.T) {
	f := newFixture(t, 3, 3)
	for _, id := range []string{"n1", "n2", "n3"} {
		f.net.slow[id] = 30 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	_, err := f.coord.CondPut(ctx, "ks", []byte("k"), []byte("v"), paxos.Condition{Kind: paxos.IfAbsent}, Consistency{})
	if !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("CondPut past its deadline: %v; want an unknown outcome", err)
	}
	// The background round goes on and completes the write.
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, err := f.coord.Get(context.Background(), "ks", []byte("k"), Consistency{Level: quorum.Linearizable})
		if err == nil && g.Found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the write handed to the background never became visible: %+v, %v", g, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A session read at linearizable never goes back in time either: the
// session wrote at a weaker level to a replica now down, so the majority
// that answers holds an older record; the read fails with ErrSessionBehind
// instead of returning it.
func TestLinSessionReadRespectsToken(t *testing.T) {
	f := newFixture(t, 3, 3)
	ctx := context.Background()
	old, err := f.coord.CondPut(ctx, "ks", []byte("k"), []byte("old"), paxos.Condition{Kind: paxos.Always}, Consistency{})
	if err != nil {
		t.Fatal(err)
	}
	newer := storage.Record{Key: []byte("k"), Value: []byte("new"), Version: storage.Version{Timestamp: old.Record.Version.Timestamp + 1000, Node: 1}}
	if _, err := f.net.engines["n1"].Apply(ctx, []storage.Mutation{{Keyspace: "ks", Record: newer}}); err != nil {
		t.Fatal(err)
	}
	f.net.setDown("n1", true)
	_, err = f.coord.Get(ctx, "ks", []byte("k"), Consistency{Level: quorum.Linearizable, MinVersion: newer.Version})
	if !errors.Is(err, ErrSessionBehind) {
		t.Fatalf("linearizable session read below the token: %v; want ErrSessionBehind", err)
	}
	if g, err := f.coord.Get(ctx, "ks", []byte("k"), Consistency{Level: quorum.Linearizable, MinVersion: old.Record.Version}); err != nil || string(g.Record.Value) != "old" {
		t.Fatalf("linearizable session read at the token: %+v, %v; want old", g, err)
	}
}

// The cleanup cycle on a cluster: old committed states are forgotten on
// every replica, a proposal left in progress is reported, completed by
// RepairPaxos (its write becomes visible), and forgotten by the next
// cleanup; conditional writes on the forgotten keys then work as before
// (their first ballots are refused by the low bound and drawn above it).
func TestLinCleanupRepairsThenForgets(t *testing.T) {
	f := newFixture(t, 3, 3)
	ctx := context.Background()
	res, err := f.coord.CondPut(ctx, "ks", []byte("k"), []byte("v1"), paxos.Condition{Kind: paxos.IfAbsent}, Consistency{})
	if err != nil || !res.Applied {
		t.Fatalf("put-if-absent: %+v %v", res, err)
	}
	f.coord.Wait() // its commits reach every replica
	// A proposal of k2 accepted by n1 and n2 whose commit was lost.
	b := paxos.Ballot{Counter: 5, Node: 7}
	prop := paxos.Proposal{Ballot: b, Record: storage.Record{Key: []byte("k2"), Value: []byte("lost"), Version: storage.Version{Timestamp: 100, Node: 7}}}
	for _, id := range []string{"n1", "n2"} {
		r := f.net.replicas[id]
		for _, req := range []*kvpb.PaxosRequest{
			{Kind: kvpb.PaxosRequest_PREPARE, Keyspace: "ks", Epoch: 1, Key: []byte("k2"), Ballot: BallotToPB(b)},
			{Kind: kvpb.PaxosRequest_PROPOSE, Keyspace: "ks", Epoch: 1, Key: []byte("k2"), Proposal: ProposalToPB(prop)},
		} {
			if resp, err := r.Paxos(ctx, req); err != nil || !resp.GetOk() {
				t.Fatalf("%s %v: %v %v", id, req.GetKind(), resp, err)
			}
		}
	}
	horizon := PaxosHorizon(time.Now().Add(time.Hour), 0)
	for _, id := range []string{"n1", "n2", "n3"} {
		c, err := f.net.replicas[id].CleanPaxos(ctx, "ks", horizon)
		if err != nil {
			t.Fatal(err)
		}
		wantInProgress := 0
		if id != "n3" {
			wantInProgress = 1
		}
		if c.Forgotten != 1 || len(c.InProgress) != wantInProgress {
			t.Fatalf("%s: cleanup %+v; want k forgotten and %d key in progress", id, c, wantInProgress)
		}
	}
	if err := f.coord.RepairPaxos(ctx, "ks", [][]byte{[]byte("k2")}); err != nil {
		t.Fatal(err)
	}
	f.coord.Wait()
	got, err := f.coord.Get(ctx, "ks", []byte("k2"), Consistency{Level: quorum.Linearizable})
	if err != nil || !got.Found || string(got.Record.Value) != "lost" {
		t.Fatalf("k2 after the repair: %+v %v; want the completed proposal", got, err)
	}
	f.coord.Wait()
	for _, id := range []string{"n1", "n2"} {
		c, err := f.net.replicas[id].CleanPaxos(ctx, "ks", horizon)
		if err != nil || c.Forgotten != 1 || len(c.InProgress) != 0 {
			t.Fatalf("%s: cleanup after the repair: %+v %v; want k2 forgotten", id, c, err)
		}
	}
	res, err = f.coord.CondPut(ctx, "ks", []byte("k"), []byte("v2"), paxos.Condition{Kind: paxos.IfVersion, Version: res.Record.Version}, Consistency{})
	if err != nil || !res.Applied {
		t.Fatalf("conditional write on a forgotten key: %+v %v", res, err)
	}
}

// A proposal left accepted on a replica that missed the commit superseding
// it, while read repair or anti-entropy brought that replica's record up
// to date, is cleared by RepairPaxos (the Paxos read writes the commit
// back to it), so the next cleanup forgets it. Left there, it would be
// completed by a later round whose quorum had forgotten the commit, after
// the tombstone superseding it was collected.
func TestLinRepairClearsDeadProposal(t *testing.T) {
	f := newFixture(t, 3, 3)
	ctx := context.Background()
	b := paxos.Ballot{Counter: 5, Node: 7}
	dead := paxos.Proposal{Ballot: b, Record: storage.Record{Key: []byte("k"), Value: []byte("old"), Version: storage.Version{Timestamp: 100, Node: 7}}}
	for _, req := range []*kvpb.PaxosRequest{
		{Kind: kvpb.PaxosRequest_PREPARE, Keyspace: "ks", Epoch: 1, Key: []byte("k"), Ballot: BallotToPB(b)},
		{Kind: kvpb.PaxosRequest_PROPOSE, Keyspace: "ks", Epoch: 1, Key: []byte("k"), Proposal: ProposalToPB(dead)},
	} {
		if resp, err := f.net.replicas["n1"].Paxos(ctx, req); err != nil || !resp.GetOk() {
			t.Fatalf("n1 %v: %v %v", req.GetKind(), resp, err)
		}
	}
	f.net.setDown("n1", true) // it misses the next write and its commit
	res, err := f.coord.CondPut(ctx, "ks", []byte("k"), []byte("new"), paxos.Condition{Kind: paxos.IfAbsent}, Consistency{})
	if err != nil || !res.Applied {
		t.Fatalf("put-if-absent without n1: %+v %v", res, err)
	}
	f.coord.Wait()
	f.net.setDown("n1", false)
	// Anti-entropy brings n1's record, not its Paxos state.
	if _, err := f.net.engines["n1"].Apply(ctx, []storage.Mutation{{Keyspace: "ks", Record: res.Record}}); err != nil {
		t.Fatal(err)
	}
	horizon := PaxosHorizon(time.Now().Add(time.Hour), 0)
	c, err := f.net.replicas["n1"].CleanPaxos(ctx, "ks", horizon)
	if err != nil || len(c.InProgress) != 1 {
		t.Fatalf("n1 cleanup: %+v %v; want k reported in progress", c, err)
	}
	f.net.setDown("n3", true) // the repair's quorum is n1 and n2
	if err := f.coord.RepairPaxos(ctx, "ks", c.InProgress); err != nil {
		t.Fatal(err)
	}
	f.coord.Wait()
	c, err = f.net.replicas["n1"].CleanPaxos(ctx, "ks", horizon)
	if err != nil || c.Forgotten != 1 || len(c.InProgress) != 0 {
		t.Fatalf("n1 cleanup after the repair: %+v %v; want the dead proposal cleared and forgotten", c, err)
	}
	got, err := f.coord.Get(ctx, "ks", []byte("k"), Consistency{Level: quorum.Linearizable})
	if err != nil || string(got.Record.Value) != "new" {
		t.Fatalf("k after the repair: %+v %v", got, err)
	}
}

package replication

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication/paxos"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// acceptorOn returns a replica over a pebble engine in dir.
func acceptorOn(t *testing.T, dir string) (*Replica, *storage.Pebble) {
	t.Helper()
	eng, err := storage.OpenPebble(dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	meta := &memKeyspaces{cfg: map[string]KeyspaceConfig{"ks": {Name: "ks", N: 3, Default: quorum.Quorum, Epoch: 4}}}
	return NewReplica(eng, meta, NewClock(nil)), eng
}

func paxosMsg(kind kvpb.PaxosRequest_Kind, key string, b paxos.Ballot, p *paxos.Proposal) *kvpb.PaxosRequest {
	req := &kvpb.PaxosRequest{Kind: kind, Keyspace: "ks", Epoch: 4, Key: []byte(key), From: "n1", Ballot: BallotToPB(b)}
	if p != nil {
		req.Proposal = ProposalToPB(*p)
	}
	return req
}

// The acceptor keeps its promises and acceptances across a restart (its
// state is synced before it answers), refuses what the protocol says it
// must, stores a commit's record, and answers a prepare with the record.
func TestReplicaPaxosDurableAcceptor(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, eng := acceptorOn(t, dir)
	b1, b2 := paxos.Ballot{Counter: 10, Node: 1}, paxos.Ballot{Counter: 11, Node: 2}
	rec := storage.Record{Key: []byte("k"), Value: []byte("v1"), Version: storage.Version{Timestamp: 500, Node: 1}}
	prop := paxos.Proposal{Ballot: b2, Record: rec}

	step := func(req *kvpb.PaxosRequest) *kvpb.PaxosResponse {
		t.Helper()
		resp, err := r.Paxos(ctx, req)
		if err != nil {
			t.Fatalf("%v: %v", req.GetKind(), err)
		}
		return resp
	}
	if resp := step(paxosMsg(kvpb.PaxosRequest_PREPARE, "k", b2, nil)); !resp.GetOk() || resp.GetFound() {
		t.Fatalf("first prepare: %v", resp)
	}
	if resp := step(paxosMsg(kvpb.PaxosRequest_PROPOSE, "k", paxos.Ballot{}, &prop)); !resp.GetOk() {
		t.Fatalf("propose at the promised ballot: %v", resp)
	}

	// Restart: the promise of b2 and the accepted proposal survive.
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	r, eng = acceptorOn(t, dir)
	defer eng.Close()
	if resp := step(paxosMsg(kvpb.PaxosRequest_PREPARE, "k", b1, nil)); resp.GetOk() || BallotFromPB(resp.GetPromised()) != b2 {
		t.Fatalf("prepare below the promise after a restart: %v; want a refusal naming %v", resp, b2)
	}
	peek := step(paxosMsg(kvpb.PaxosRequest_PEEK, "k", paxos.Ballot{}, nil))
	p, _, found := PromiseFromPB(peek)
	if found || p.Accepted.Ballot != b2 || string(p.Accepted.Record.Value) != "v1" {
		t.Fatalf("peek after a restart: %+v found %v; want the accepted proposal at %v and no record yet", p, found, b2)
	}

	// Commit stores the record, atomically with the state.
	if resp := step(paxosMsg(kvpb.PaxosRequest_COMMIT, "k", paxos.Ballot{}, &prop)); !resp.GetOk() {
		t.Fatalf("commit: %v", resp)
	}
	got, ok, err := eng.Get("ks", []byte("k"))
	if err != nil || !ok || string(got.Value) != "v1" || got.Version != rec.Version {
		t.Fatalf("record after commit = %+v %v %v", got, ok, err)
	}
	b3 := paxos.Ballot{Counter: 12, Node: 1}
	resp := step(paxosMsg(kvpb.PaxosRequest_PREPARE, "k", b3, nil))
	p, prec, found := PromiseFromPB(resp)
	if !p.OK || p.Committed != b2 || !p.Accepted.IsZero() || !found || string(prec.Value) != "v1" {
		t.Fatalf("prepare after commit: %+v %+v %v; want committed %v, nothing in progress, the record", p, prec, found, b2)
	}
	// A proposal at the committed ballot is stale.
	if resp := step(paxosMsg(kvpb.PaxosRequest_PROPOSE, "k", paxos.Ballot{}, &prop)); resp.GetOk() {
		t.Fatalf("a stale proposal was accepted: %v", resp)
	}
}

// Requests that cannot be right are refused with a reason, and a
// coordinator at an older epoch learns the current one.
func TestReplicaPaxosRefusals(t *testing.T) {
	ctx := context.Background()
	r, eng := acceptorOn(t, t.TempDir())
	defer eng.Close()
	b := paxos.Ballot{Counter: 1, Node: 1}
	other := paxos.Proposal{Ballot: b, Record: storage.Record{Key: []byte("other"), Value: []byte("x"), Version: storage.Version{Timestamp: 1}}}
	for _, tc := range []struct {
		name string
		req  *kvpb.PaxosRequest
	}{
		{"no key", &kvpb.PaxosRequest{Kind: kvpb.PaxosRequest_PREPARE, Keyspace: "ks", Epoch: 4, Ballot: BallotToPB(b)}},
		{"no kind", &kvpb.PaxosRequest{Keyspace: "ks", Epoch: 4, Key: []byte("k")}},
		{"record of another key", paxosMsg(kvpb.PaxosRequest_PROPOSE, "k", b, &other)},
		{"proposal without ballot", &kvpb.PaxosRequest{Kind: kvpb.PaxosRequest_COMMIT, Keyspace: "ks", Epoch: 4, Key: []byte("k"), Proposal: &kvpb.PaxosProposal{Noop: true}}},
	} {
		if _, err := r.Paxos(ctx, tc.req); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	stale := paxosMsg(kvpb.PaxosRequest_PREPARE, "k", b, nil)
	stale.Epoch = 3
	resp, err := r.Paxos(ctx, stale)
	if err != nil || resp.GetKnownEpoch() != 4 || resp.GetOk() {
		t.Fatalf("prepare at an old epoch: %v, %v; want a refusal naming epoch 4", resp, err)
	}
}

// Concurrent prepares of one key are serialized: each ballot is promised
// only if it is above every ballot promised before it, so of 32 racing
// prepares with distinct ballots, the highest is promised last and every
// refusal names a ballot above its own.
func TestReplicaPaxosSerializesAKey(t *testing.T) {
	ctx := context.Background()
	r, eng := acceptorOn(t, t.TempDir())
	defer eng.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := paxos.Ballot{Counter: uint64(100 + i), Node: 1}
			resp, err := r.Paxos(ctx, paxosMsg(kvpb.PaxosRequest_PREPARE, "k", b, nil))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				bad = append(bad, err.Error())
			case resp.GetOk() && !BallotFromPB(resp.GetPromised()).Less(b):
				bad = append(bad, fmt.Sprintf("%v promised over %v", b, BallotFromPB(resp.GetPromised())))
			case !resp.GetOk() && !b.Less(BallotFromPB(resp.GetPromised())):
				bad = append(bad, fmt.Sprintf("%v refused for %v", b, BallotFromPB(resp.GetPromised())))
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	s, _, err := r.paxosState("ks", []byte("k"))
	if err != nil || s.Promised != (paxos.Ballot{Counter: 131, Node: 1}) {
		t.Fatalf("state after the race: %+v, %v; want 131.1 promised", s, err)
	}
}

// powerCutAcceptors are replicas whose pebble engines live on filesystems
// that lose what was not synced.
type powerCutAcceptors struct {
	t    *testing.T
	fss  []*storage.PowerCutFS
	engs []*storage.Pebble
	reps map[string]*Replica
	ids  []string
	// commitSyncs counts the fsyncs that commit messages caused.
	commitSyncs uint64
}

func newPowerCutAcceptors(t *testing.T, n int) *powerCutAcceptors {
	a := &powerCutAcceptors{t: t, reps: map[string]*Replica{}}
	for i := range n {
		a.fss = append(a.fss, storage.NewPowerCutFS())
		a.engs = append(a.engs, nil)
		a.ids = append(a.ids, fmt.Sprintf("r%d", i))
		a.open(i)
	}
	t.Cleanup(func() {
		for _, e := range a.engs {
			e.Close()
		}
	})
	return a
}

func (a *powerCutAcceptors) open(i int) {
	a.t.Helper()
	eng, err := storage.OpenPebble("/db", storage.Options{FS: a.fss[i], Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		a.t.Fatal(err)
	}
	meta := &memKeyspaces{cfg: map[string]KeyspaceConfig{"ks": {Name: "ks", N: 3, Default: quorum.Quorum, Epoch: 4}}}
	a.engs[i], a.reps[a.ids[i]] = eng, NewReplica(eng, meta, NewClock(nil))
}

// cut cuts the power of every acceptor and restarts it.
func (a *powerCutAcceptors) cut() {
	a.t.Helper()
	for i, fs := range a.fss {
		fs.CutPower()
		fs.ReleaseSyncs()
		if err := a.engs[i].Close(); err != nil {
			a.t.Fatal(err)
		}
		fs.Restart()
		a.open(i)
	}
}

// run drives a pure op over the acceptors, every message delivered in
// order, through the same request and event conversions as the
// coordinator's.
func (a *powerCutAcceptors) run(first paxos.Effects, step func(paxos.Event) paxos.Effects) (out *paxos.Outcome, escalated bool) {
	a.t.Helper()
	queue := first.Send
	out, escalated = first.Done, first.Escalate
	for len(queue) > 0 && !escalated {
		m := queue[0]
		queue = queue[1:]
		eng := a.engs[slices.Index(a.ids, m.To)]
		before := eng.Metrics().Syncs
		resp, err := a.reps[m.To].Paxos(context.Background(), paxosRequest("ks", 4, []byte("k"), "n1", m))
		if m.Kind == paxos.MsgCommit {
			a.commitSyncs += eng.Metrics().Syncs - before
		}
		if err != nil {
			a.t.Fatalf("%v to %s: %v", m.Kind, m.To, err)
		}
		eff := step(paxosEvent("ks", 4, m, resp, nil).ev)
		queue = append(queue, eff.Send...)
		if eff.Done != nil && out == nil {
			out = eff.Done
		}
		escalated = eff.Escalate
	}
	return out, escalated
}

// linRead is a linearizable read: a Reader, escalated to a Paxos read.
func (a *powerCutAcceptors) linRead(clock uint64) paxos.Outcome {
	a.t.Helper()
	rd := paxos.NewReader(a.ids)
	out, escalated := a.run(rd.Start(), rd.Step)
	if escalated {
		p := paxos.NewProposer(paxos.Request{Key: []byte("k"), Cond: paxos.Condition{Kind: paxos.ReadOnly}, Node: 2, Replicas: a.ids})
		out, _ = a.run(p.Start(clock), p.Step)
	}
	if out == nil || out.Err != nil {
		a.t.Fatalf("linearizable read: %+v", out)
	}
	return *out
}

// A commit of the proposal an acceptor holds accepted is answered without
// an fsync (paxos.CommitMayDefer). A power cut right after it loses the
// commit and its record on every replica, but not the acceptance: the
// next linearizable read finds the proposal in progress, completes it and
// answers the value the client was told was written, and conditional
// writes go on from it.
func TestReplicaPaxosUnsyncedCommitSurvivesPowerCut(t *testing.T) {
	a := newPowerCutAcceptors(t, 3)
	p := paxos.NewProposer(paxos.Request{Key: []byte("k"), Value: []byte("v1"), Cond: paxos.Condition{Kind: paxos.IfAbsent}, Node: 1, Replicas: a.ids})
	out, _ := a.run(p.Start(100), p.Step)
	if out == nil || out.Err != nil || !out.Applied {
		t.Fatalf("put-if-absent: %+v", out)
	}
	written := out.Record
	if a.commitSyncs != 0 {
		t.Errorf("the commits made %d fsyncs; want none", a.commitSyncs)
	}
	for i, e := range a.engs {
		if rec, ok, _ := e.Get("ks", []byte("k")); !ok || string(rec.Value) != "v1" {
			t.Fatalf("replica %d before the cut: %+v %v", i, rec, ok)
		}
	}

	a.cut()
	for i, e := range a.engs {
		if rec, ok, _ := e.Get("ks", []byte("k")); ok {
			t.Fatalf("replica %d kept the unsynced commit's record %+v: the test does not cover a lost commit", i, rec)
		}
		st, _, err := a.reps[a.ids[i]].paxosState("ks", []byte("k"))
		if ip, ok := st.InProgress(); err != nil || !ok || !recordsEqualPB(ip.Record, written) {
			t.Fatalf("replica %d after the cut: state %+v %v; want the accepted proposal in progress", i, st, err)
		}
	}
	if got := a.linRead(200); !got.Found || !recordsEqualPB(got.Record, written) {
		t.Fatalf("read after the cut = %+v; want %+v", got, written)
	}
	// The completion was synced: another cut keeps it.
	a.cut()
	if got := a.linRead(300); !got.Found || !recordsEqualPB(got.Record, written) {
		t.Fatalf("read after the second cut = %+v; want %+v", got, written)
	}
	p = paxos.NewProposer(paxos.Request{Key: []byte("k"), Value: []byte("v2"), Cond: paxos.Condition{Kind: paxos.IfVersion, Version: written.Version}, Node: 1, Replicas: a.ids})
	if out, _ := a.run(p.Start(400), p.Step); out == nil || out.Err != nil || !out.Applied {
		t.Fatalf("cas from the completed value: %+v", out)
	}
}

func recordsEqualPB(a, b storage.Record) bool {
	return a.Version == b.Version && a.Tombstone == b.Tombstone && string(a.Key) == string(b.Key) && string(a.Value) == string(b.Value)
}

package replication

import (
	"context"
	"errors"
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
	s, _, err := r.paxosState(PaxosStateKeyspace("ks"), []byte("k"))
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
		st, _, err := a.reps[a.ids[i]].paxosState(PaxosStateKeyspace("ks"), []byte("k"))
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

// paxosFilterTotal is the sum of the negative cache's counters.
func paxosFilterTotal(r *Replica) uint64 {
	var n uint64
	for i := range r.paxos.filter {
		n += uint64(r.paxos.filter[i].Load())
	}
	return n
}

// CleanPaxos forgets old states that hold nothing in progress, reports
// the ones that do, and raises a durable low bound in their place: a
// proposal at a ballot the forgotten state had promised is refused (it
// would be accepted by an acceptor with no state), before and after a
// restart, and the negative cache, rebuilt from the engine on restart,
// still knows every key that has state.
func TestReplicaPaxosCleanup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, eng := acceptorOn(t, dir)
	step := func(r *Replica, req *kvpb.PaxosRequest) *kvpb.PaxosResponse {
		t.Helper()
		resp, err := r.Paxos(ctx, req)
		if err != nil {
			t.Fatalf("%v %s: %v", req.GetKind(), req.GetKey(), err)
		}
		return resp
	}
	rec := func(key, v string, ts uint64) storage.Record {
		return storage.Record{Key: []byte(key), Value: []byte(v), Version: storage.Version{Timestamp: ts, Node: 1}}
	}
	bA, bB, bC := paxos.Ballot{Counter: 100, Node: 1}, paxos.Ballot{Counter: 110, Node: 2}, paxos.Ballot{Counter: 120, Node: 3}
	// "a": committed. "b": accepted, not committed (in progress).
	// "c": promised only (cleanable: nothing accepted).
	propA := paxos.Proposal{Ballot: bA, Record: rec("a", "va", 1000)}
	step(r, paxosMsg(kvpb.PaxosRequest_PREPARE, "a", bA, nil))
	step(r, paxosMsg(kvpb.PaxosRequest_PROPOSE, "a", paxos.Ballot{}, &propA))
	step(r, paxosMsg(kvpb.PaxosRequest_COMMIT, "a", paxos.Ballot{}, &propA))
	propB := paxos.Proposal{Ballot: bB, Record: rec("b", "vb", 1100)}
	step(r, paxosMsg(kvpb.PaxosRequest_PREPARE, "b", bB, nil))
	step(r, paxosMsg(kvpb.PaxosRequest_PROPOSE, "b", paxos.Ballot{}, &propB))
	step(r, paxosMsg(kvpb.PaxosRequest_PREPARE, "c", bC, nil))
	if got := paxosFilterTotal(r); got != 3 {
		t.Fatalf("negative cache counts %d keys with state, want 3", got)
	}

	// A horizon below every ballot forgets nothing.
	res, err := r.CleanPaxos(ctx, "ks", paxos.Ballot{Counter: 100})
	if err != nil || res.Forgotten != 0 || len(res.InProgress) != 0 || !res.Low.IsZero() {
		t.Fatalf("cleanup below every ballot: %+v, %v", res, err)
	}
	res, err = r.CleanPaxos(ctx, "ks", paxos.Ballot{Counter: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Forgotten != 2 || res.Low != bC || len(res.InProgress) != 1 || string(res.InProgress[0]) != "b" {
		t.Fatalf("cleanup: %+v; want a and c forgotten, low bound %v, b in progress", res, bC)
	}
	for _, k := range []string{"a", "c"} {
		if _, ok, _ := eng.Get(PaxosStateKeyspace("ks"), []byte(k)); ok {
			t.Errorf("state of %q kept", k)
		}
	}
	if got, ok, _ := eng.Get("ks", []byte("a")); !ok || string(got.Value) != "va" {
		t.Fatalf("record of a after cleanup: %v %v", got, ok)
	}
	if got := paxosFilterTotal(r); got != 1 {
		t.Fatalf("negative cache counts %d keys with state after cleanup, want 1", got)
	}

	checkLow := func(r *Replica) {
		t.Helper()
		// c's proposer holds a promise of bC: with the state forgotten
		// only the low bound refuses its proposal.
		propC := paxos.Proposal{Ballot: bC, Record: rec("c", "vc", 1200)}
		if resp := step(r, paxosMsg(kvpb.PaxosRequest_PROPOSE, "c", paxos.Ballot{}, &propC)); resp.GetOk() || BallotFromPB(resp.GetPromised()) != bC {
			t.Fatalf("proposal at a forgotten promise: %v; want refused naming %v", resp, bC)
		}
		if resp := step(r, paxosMsg(kvpb.PaxosRequest_PREPARE, "new", paxos.Ballot{Counter: 50, Node: 9}, nil)); resp.GetOk() {
			t.Fatalf("prepare below the low bound promised: %v", resp)
		}
		// b keeps its proposal in progress, and a linearizable read sees it.
		if resp := step(r, paxosMsg(kvpb.PaxosRequest_PEEK, "b", paxos.Ballot{}, nil)); resp.GetAccepted() == nil {
			t.Fatalf("peek of b: %v; want its proposal in progress", resp)
		}
		if resp := step(r, paxosMsg(kvpb.PaxosRequest_PEEK, "a", paxos.Ballot{}, nil)); resp.GetAccepted() != nil || !resp.GetFound() {
			t.Fatalf("peek of a: %v; want its record and nothing accepted", resp)
		}
	}
	checkLow(r)
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	r, eng = acceptorOn(t, dir)
	defer eng.Close()
	checkLow(r)
	if got := paxosFilterTotal(r); got != 1 {
		t.Fatalf("negative cache counts %d keys with state after a restart, want 1 (b)", got)
	}
	// Above the low bound a forgotten key takes part in rounds again.
	bD := paxos.Ballot{Counter: 130, Node: 1}
	if resp := step(r, paxosMsg(kvpb.PaxosRequest_PREPARE, "c", bD, nil)); !resp.GetOk() {
		t.Fatalf("prepare above the low bound: %v", resp)
	}
	if got := paxosFilterTotal(r); got != 2 {
		t.Fatalf("negative cache counts %d keys with state, want 2 (b, c)", got)
	}
}

// The negative cache never hides state: while other keys' states are made
// and forgotten concurrently, every prepare answered is seen by the next
// linearizable read of its key, and the counters end exact.
func TestReplicaPaxosNegativeCacheConcurrent(t *testing.T) {
	ctx := context.Background()
	r, eng := acceptorOn(t, t.TempDir())
	defer eng.Close()
	const workers, keys = 4, 40
	errs := make(chan error, workers+2)
	var work, churn sync.WaitGroup
	for w := range workers {
		work.Add(1)
		go func() {
			defer work.Done()
			for i := range keys {
				key := fmt.Sprintf("kept-%d-%d", w, i)
				b := paxos.Ballot{Counter: uint64(100 + i), Node: uint32(w + 1)}
				if resp, err := r.Paxos(ctx, paxosMsg(kvpb.PaxosRequest_PREPARE, key, b, nil)); err != nil || !resp.GetOk() {
					errs <- fmt.Errorf("prepare %s: %v %v", key, resp, err)
					return
				}
				resp, err := r.Paxos(ctx, paxosMsg(kvpb.PaxosRequest_PEEK, key, paxos.Ballot{}, nil))
				if err != nil || BallotFromPB(resp.GetPromised()) != b {
					errs <- fmt.Errorf("peek %s after its prepare at %v: %v %v", key, b, resp, err)
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	churn.Add(2)
	go func() { // states below the horizon, made and forgotten meanwhile
		defer churn.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b := paxos.Ballot{Counter: uint64(1 + i%40), Node: 9}
			if _, err := r.Paxos(ctx, paxosMsg(kvpb.PaxosRequest_PREPARE, fmt.Sprintf("gone-%d", i), b, nil)); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer churn.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := r.CleanPaxos(ctx, "ks", paxos.Ballot{Counter: 50}); err != nil {
				errs <- err
				return
			}
		}
	}()
	work.Wait()
	close(stop)
	churn.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := r.CleanPaxos(ctx, "ks", paxos.Ballot{Counter: 50}); err != nil {
		t.Fatal(err)
	}
	if got := paxosFilterTotal(r); got != workers*keys {
		t.Fatalf("negative cache counts %d keys with state, want %d", got, workers*keys)
	}
}

// A stream message's lazy commits are applied together: the acceptor's
// own accepted proposal is committed, a replica left out of the round
// gets the state and the record, a second commit of a key in the batch is
// applied after the first, and a malformed or stale commit is reported
// while the others still land. None survives a crash by itself (they are
// unsynced), which TestModelExhaustive covers; here they survive a clean
// close.
func TestReplicaLazyCommits(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, eng := acceptorOn(t, dir)
	prop := func(key, value string, counter uint64) paxos.Proposal {
		return paxos.Proposal{Ballot: paxos.Ballot{Counter: counter, Node: 1},
			Record: storage.Record{Key: []byte(key), Value: []byte(value), Version: storage.Version{Timestamp: counter * 10, Node: 1}}}
	}
	accepted := prop("acc", "a1", 5)
	if resp, err := r.Paxos(ctx, paxosMsg(kvpb.PaxosRequest_PROPOSE, "acc", paxos.Ballot{}, &accepted)); err != nil || !resp.GetOk() {
		t.Fatalf("propose: %v %v", resp, err)
	}
	lazy := func(p paxos.Proposal) *kvpb.PaxosRequest {
		req := paxosMsg(kvpb.PaxosRequest_COMMIT, string(p.Record.Key), paxos.Ballot{}, &p)
		req.Lazy = true
		return req
	}
	leftOut, first, second := prop("out", "o1", 6), prop("dup", "d1", 7), prop("dup", "d2", 8)
	stale := lazy(prop("stale", "s1", 9))
	stale.Epoch = 3
	notLazy := lazy(prop("eager", "e1", 9))
	notLazy.Lazy = false
	err := r.LazyCommits(ctx, []*kvpb.PaxosRequest{lazy(accepted), lazy(leftOut), lazy(first), stale, lazy(second), notLazy})
	if !errors.Is(err, ErrInvalidRequest) && !errors.As(err, new(*EpochError)) {
		t.Fatalf("LazyCommits = %v; want the stale or the eager commit reported", err)
	}
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	r, eng = acceptorOn(t, dir)
	defer eng.Close()
	for _, want := range []paxos.Proposal{accepted, leftOut, second} {
		key := string(want.Record.Key)
		got, ok, err := eng.Get("ks", want.Record.Key)
		if err != nil || !ok || got.Version != want.Record.Version || string(got.Value) != string(want.Record.Value) {
			t.Fatalf("record of %q = %+v %v %v; want %s", key, got, ok, err, want.Record.Value)
		}
		resp, err := r.Paxos(ctx, paxosMsg(kvpb.PaxosRequest_PEEK, key, paxos.Ballot{}, nil))
		if err != nil {
			t.Fatal(err)
		}
		if p, _, _ := PromiseFromPB(resp); p.Committed != want.Ballot || !p.Accepted.IsZero() {
			t.Fatalf("state of %q = %+v; want committed at %v, nothing in progress", key, p, want.Ballot)
		}
	}
	for _, key := range []string{"stale", "eager"} {
		if _, ok, _ := eng.Get("ks", []byte(key)); ok {
			t.Fatalf("the refused commit of %q was applied", key)
		}
	}
}

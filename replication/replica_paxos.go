package replication

// The acceptor side of per-key Paxos (conditional writes and the
// linearizable level): Replica.Paxos.
//
// The protocol is in package paxos, pure; this file meets the obligations
// its doc.go puts on the replica:
//
//  1. One key's messages are serialized: a striped lock, chosen by a hash
//     of keyspace and key, is held from reading the state and the record to
//     the end of the write that persists the new ones.
//  2. The new state is durable before the answer, except a lazy commit
//     (the coordinator's own, sent with its answer; nobody counts its
//     reply) or a commit of the proposal the acceptor itself holds
//     accepted (paxos.CommitMayDefer): its batch is not synced, and a crash
//     that loses it is a lost commit message, or leaves the acceptor with
//     that proposal in progress, which the next round or linearizable read
//     completes. An uncontended conditional write then syncs once on each
//     of a quorum of replicas (its thrifty proposal) and nowhere else. The state is stored as a record of an
//     internal keyspace ("#paxos:" + the keyspace; '#' is not allowed in
//     keyspace names, so no user keyspace can collide), in the same atomic
//     storage batch as a commit's record. The engine keeps
//     the record with the greater version (last writer wins), so the state
//     record's version is a counter raised on every change: a change that
//     keeps the same top ballot (a write-back commit, say) still replaces
//     the stored state.
//  3. A prepare and a read are answered with the key's record read under
//     the same lock as the state.
//
// A request from a coordinator at an older configuration epoch is refused
// with known_epoch, as reads are: the coordinator catches up and retries
// with the current replicas.
//
// # The negative cache
//
// Most keys a linearizable read asks about were never touched by a Paxos
// round, and reading their (absent) state was a pebble lookup per read.
// The replica keeps a counting filter of the keys that have state: an
// array of counters indexed by a hash of (keyspace, key). Under a key's
// lock, a zero counter means the key has no state, so the lookup is
// skipped. That is exact in the direction that matters:
//
//   - A counter is raised before the write that creates a key's state
//     (under the key's lock, which every reader of that state also holds),
//     and lowered only after a cleanup removed the state (same lock).
//     Other keys sharing the counter only add to it, so "zero" implies
//     "absent"; "non-zero" may be a false positive, which costs the lookup.
//   - The counters are built, per keyspace, before the first message of
//     the keyspace is handled (and before its first cleanup), by scanning
//     the keyspace's state records: after a restart they count exactly
//     what the engine kept, unsynced commits that a crash lost included.
//     Only this replica writes its engine's state keyspaces.
//
// # Cleanup
//
// Without it the state grows by a record per key ever written through
// Paxos, and a proposal left in progress on a replica that missed its
// round's end could be completed long after, when the tombstone that
// superseded it was collected (see paxos.Cleanable). CleanPaxos forgets the
// states whose ballots are all below a horizon and that hold nothing in
// progress (paxos.Cleanable), and reports the ones that do hold an old
// proposal in progress, for the caller to settle with
// Coordinator.RepairPaxos (a Paxos read that completes it, or writes the
// later commit back over it). Before it deletes any state it raises,
// durably, the keyspace's low bound to the greatest ballot of the states it
// deletes; every prepare and proposal at or below the low bound is refused
// from then on (paxos.PrepareAbove, paxos.ProposeAbove), which is all the
// forgotten states still said to later rounds.
//
// Safety, in short (in full: paxos.Cleanable and docs/design-notes.md,
// "Forgetting Paxos state"): refusals at or below the low bound are what
// the forgotten states would have answered, or stricter; a forgotten
// commit only ever kept another replica's older, dead proposal from being
// completed again, and completing it rewrites a record that loses, under
// last writer wins, to the one that superseded it, as long as that record
// exists. So the caller must forget only states older than half the
// tombstone grace (PaxosHorizon(now, tombstoneGrace/2)) and settle every
// old proposal a cleanup reports, well before the tombstones that could
// supersede them are collected. TestModelExhaustive checks the protocol
// with acceptors that forget at any moment.

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication/paxos"
	"github.com/adaptkv/adaptkv/storage"
)

// paxosStripes is how many locks serialize Paxos messages by key: enough
// that unrelated keys rarely wait for each other's fsync.
const paxosStripes = 256

// paxosFilterSlots is the size of the negative cache's counting filter
// (4 bytes each): with fewer keys holding state than this, most reads of
// keys without state skip the lookup.
const paxosFilterSlots = 1 << 18

// PaxosStateKeyspace is the internal storage keyspace holding the Paxos
// state of keyspace's keys.
func PaxosStateKeyspace(keyspace string) string { return "#paxos:" + keyspace }

// paxosLowKeyspace is the internal storage keyspace holding each
// keyspace's low bound (key: the keyspace's name; the bound is the
// record's version, so last writer wins keeps the greatest).
const paxosLowKeyspace = "#paxos-low"

// paxosLocks is the striped lock of the acceptor, with the negative cache
// and the per-keyspace bookkeeping.
type paxosLocks struct {
	seed  maphash.Seed
	locks [paxosStripes]sync.Mutex
	// filter counts, per slot, the keys hashing there that have state
	// (at least: see "The negative cache").
	filter [paxosFilterSlots]atomic.Uint32
	// spaces maps a keyspace to its *paxosSpace.
	spaces sync.Map
}

// paxosSpace is the acceptor's bookkeeping for one keyspace.
type paxosSpace struct {
	// stateKS is PaxosStateKeyspace of the keyspace, built once.
	stateKS string
	// mu serializes loading and cleanups.
	mu     sync.Mutex
	loaded atomic.Bool
	// low is the low bound (zero: none).
	low atomic.Pointer[paxos.Ballot]
}

func (sp *paxosSpace) lowBound() paxos.Ballot {
	if b := sp.low.Load(); b != nil {
		return *b
	}
	return paxos.Ballot{}
}

func (l *paxosLocks) hash(keyspace string, key []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(keyspace)
	h.WriteByte(0)
	h.Write(key)
	return h.Sum64()
}

func (l *paxosLocks) stripe(h uint64) *sync.Mutex { return &l.locks[h%paxosStripes] }

func (l *paxosLocks) slot(h uint64) *atomic.Uint32 {
	return &l.filter[(h/paxosStripes)%paxosFilterSlots]
}

// space returns keyspace's bookkeeping, loading the filter's counts and
// the low bound from the engine on first use.
func (r *Replica) paxosSpace(keyspace string) (*paxosSpace, error) {
	v, ok := r.paxos.spaces.Load(keyspace)
	if !ok {
		v, _ = r.paxos.spaces.LoadOrStore(keyspace, &paxosSpace{stateKS: PaxosStateKeyspace(keyspace)})
	}
	sp := v.(*paxosSpace)
	if sp.loaded.Load() {
		return sp, nil
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.loaded.Load() {
		return sp, nil
	}
	rec, ok, err := r.engine.Get(paxosLowKeyspace, []byte(keyspace))
	if err != nil {
		return nil, fmt.Errorf("paxos: low bound of %q: %w", keyspace, err)
	}
	if ok {
		sp.low.Store(&paxos.Ballot{Counter: rec.Version.Timestamp, Node: rec.Version.Node})
	}
	err = r.scanStates(sp.stateKS, func(key []byte, _ paxos.State) error {
		r.paxos.slot(r.paxos.hash(keyspace, key)).Add(1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sp.loaded.Store(true)
	return sp, nil
}

// scanPage is how many state records a scan reads at once.
const scanPage = 1024

// scanStates calls fn with every state of the state keyspace stateKS, in
// key order.
func (r *Replica) scanStates(stateKS string, fn func(key []byte, s paxos.State) error) error {
	var start []byte
	for {
		recs, err := r.engine.Scan(stateKS, start, nil, scanPage)
		if err != nil {
			return fmt.Errorf("paxos: scan %q: %w", stateKS, err)
		}
		for _, rec := range recs {
			s, err := paxos.DecodeState(rec.Value)
			if err != nil {
				return fmt.Errorf("paxos state of %q in %q: %w", rec.Key, stateKS, err)
			}
			if err := fn(rec.Key, s); err != nil {
				return err
			}
		}
		if len(recs) < scanPage {
			return nil
		}
		start = append(slices.Clone(recs[len(recs)-1].Key), 0)
	}
}

// Paxos answers one acceptor message for one key.
func (r *Replica) Paxos(ctx context.Context, req *kvpb.PaxosRequest) (*kvpb.PaxosResponse, error) {
	ks, key := req.GetKeyspace(), req.GetKey()
	if ks == "" || len(key) == 0 {
		return nil, fmt.Errorf("%w: paxos message without keyspace or key", ErrInvalidRequest)
	}
	if err := r.checkEpoch(ctx, ks, req.GetEpoch()); err != nil {
		if ee, ok := err.(*EpochError); ok {
			return &kvpb.PaxosResponse{KnownEpoch: ee.Known}, nil
		}
		return nil, err
	}
	sp, err := r.paxosSpace(ks)
	if err != nil {
		return nil, err
	}
	h := r.paxos.hash(ks, key)
	mu := r.paxos.stripe(h)
	mu.Lock()
	defer mu.Unlock()
	slot := r.paxos.slot(h)
	state, stateVersion, err := r.lockedState(sp, slot, key)
	if err != nil {
		return nil, err
	}
	resp := &kvpb.PaxosResponse{}
	next := state
	var apply *storage.Record
	deferSync := false
	switch req.GetKind() {
	case kvpb.PaxosRequest_PREPARE:
		var p paxos.Promise
		next, p = paxos.PrepareAbove(sp.lowBound(), state, BallotFromPB(req.GetBallot()))
		fillPromise(resp, p)
	case kvpb.PaxosRequest_PEEK:
		fillPromise(resp, paxos.Peek(state))
	case kvpb.PaxosRequest_PROPOSE:
		prop, err := ProposalFromPB(req.GetProposal(), key)
		if err != nil {
			return nil, err
		}
		var prior paxos.Proposal
		if req.GetPrior() != nil {
			if prior, err = ProposalFromPB(req.GetPrior(), key); err != nil {
				return nil, err
			}
			if !prior.Noop && state.Committed.Less(prior.Ballot) {
				// Not committed here yet (its lazy commit was lost or
				// is behind this message): its record lands with it.
				rec := prior.Record
				apply = &rec
			}
		}
		var ok bool
		var promised paxos.Ballot
		next, ok, promised, resp.Leased = paxos.ProposeNext(sp.lowBound(), state, prior, prop, BallotFromPB(req.GetNext()))
		resp.Ok, resp.Promised = ok, BallotToPB(promised)
	case kvpb.PaxosRequest_COMMIT:
		prop, err := ProposalFromPB(req.GetProposal(), key)
		if err != nil {
			return nil, err
		}
		deferSync = paxos.CommitMayDefer(state, prop, req.GetLazy())
		next = paxos.Commit(state, prop.Ballot)
		if !prop.Noop {
			rec := prop.Record
			apply = &rec
		}
		resp.Ok = true
	default:
		return nil, fmt.Errorf("%w: paxos message kind %v", ErrInvalidRequest, req.GetKind())
	}
	var buf [2]storage.Mutation
	muts := r.appendChange(buf[:0], sp, slot, ks, key, state, stateVersion, next, apply)
	if len(muts) > 0 {
		apply := r.engine.Apply
		if ua, ok := r.engine.(storage.UnsyncedApplier); ok && deferSync {
			apply = ua.ApplyUnsynced
		}
		if _, err := apply(ctx, muts); err != nil {
			return nil, fmt.Errorf("paxos: persist %q: %w", key, err)
		}
	}
	if req.GetKind() == kvpb.PaxosRequest_PREPARE || req.GetKind() == kvpb.PaxosRequest_PEEK {
		// Read under the key's lock, after the state's write: the round's
		// read (obligation 3).
		rec, found, err := r.engine.Get(ks, key)
		if err != nil {
			return nil, fmt.Errorf("paxos: read %q: %w", key, err)
		}
		resp.Found = found
		if found {
			resp.Record = RecordToPB(rec)
		}
	}
	return resp, nil
}

// LazyCommits applies lazy commits (PaxosRequest.lazy: the commits of
// chosen proposals their coordinators sent with their answers, which
// nobody waits for) of many keys in one unsynced storage batch, under the
// keys' locks, taken in stripe order. A peer stream hands it the lazy
// commits of one message: one batch and one hand-off to storage instead
// of one each. It applies the commits it can and returns the first error:
// a commit it skipped (malformed, from another configuration epoch, or a
// second commit of a key in the batch, which Paxos handles alone) is a
// lost message, which nobody waits for.
func (r *Replica) LazyCommits(ctx context.Context, reqs []*kvpb.PaxosRequest) error {
	type commit struct {
		sp   *paxosSpace
		ks   string
		prop paxos.Proposal
		h    uint64
	}
	var firstErr error
	fail := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	commits := make([]commit, 0, len(reqs))
	var alone []*kvpb.PaxosRequest
	seen := make(map[string]struct{}, len(reqs))
	for _, req := range reqs {
		ks, key := req.GetKeyspace(), req.GetKey()
		if ks == "" || len(key) == 0 || req.GetKind() != kvpb.PaxosRequest_COMMIT || !req.GetLazy() {
			fail(fmt.Errorf("%w: a lazy commit needs a keyspace, a key, kind COMMIT and lazy set", ErrInvalidRequest))
			continue
		}
		if err := r.checkEpoch(ctx, ks, req.GetEpoch()); err != nil {
			fail(err)
			continue
		}
		prop, err := ProposalFromPB(req.GetProposal(), key)
		if err != nil {
			fail(err)
			continue
		}
		id := ks + "\x00" + string(key)
		if _, dup := seen[id]; dup {
			alone = append(alone, req)
			continue
		}
		seen[id] = struct{}{}
		sp, err := r.paxosSpace(ks)
		if err != nil {
			fail(err)
			continue
		}
		commits = append(commits, commit{sp: sp, ks: ks, prop: prop, h: r.paxos.hash(ks, key)})
	}
	stripes := make([]int, 0, len(commits))
	for _, c := range commits {
		stripes = append(stripes, int(c.h%paxosStripes))
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	for _, i := range stripes {
		r.paxos.locks[i].Lock()
	}
	muts := make([]storage.Mutation, 0, 2*len(commits))
	for _, c := range commits {
		key := c.prop.Record.Key
		slot := r.paxos.slot(c.h)
		state, stateVersion, err := r.lockedState(c.sp, slot, key)
		if err != nil {
			fail(err)
			continue
		}
		var rec *storage.Record
		if !c.prop.Noop {
			rec = &c.prop.Record
		}
		muts = r.appendChange(muts, c.sp, slot, c.ks, key, state, stateVersion, paxos.Commit(state, c.prop.Ballot), rec)
	}
	if len(muts) > 0 {
		apply := r.engine.Apply
		if ua, ok := r.engine.(storage.UnsyncedApplier); ok {
			apply = ua.ApplyUnsynced
		}
		if _, err := apply(ctx, muts); err != nil {
			fail(fmt.Errorf("paxos: persist %d lazy commits: %w", len(commits), err))
		}
	}
	for _, i := range slices.Backward(stripes) {
		r.paxos.locks[i].Unlock()
	}
	for _, req := range alone {
		if _, err := r.Paxos(ctx, req); err != nil {
			fail(err)
		}
	}
	return firstErr
}

// lockedState reads key's acceptor state and the version of the record
// holding it, under the key's lock, skipping the lookup when the
// negative cache (slot) says the key has none.
func (r *Replica) lockedState(sp *paxosSpace, slot *atomic.Uint32, key []byte) (paxos.State, uint64, error) {
	if slot.Load() == 0 {
		return paxos.State{}, 0, nil
	}
	return r.paxosState(sp.stateKS, key)
}

// appendChange appends to muts the writes that take key from state
// (stored at stateVersion) to next, and that store rec in keyspace ks
// (nil: none), under the key's lock: the new state when it changed,
// counted in the negative cache (slot) first, and the record.
func (r *Replica) appendChange(muts []storage.Mutation, sp *paxosSpace, slot *atomic.Uint32, ks string, key []byte, state paxos.State, stateVersion uint64, next paxos.State, rec *storage.Record) []storage.Mutation {
	if !next.Equal(state) {
		if stateVersion == 0 {
			// The key may have no state yet: count it before it has
			// (a false "present" after a failed write only costs lookups).
			slot.Add(1)
		}
		muts = append(muts, storage.Mutation{Keyspace: sp.stateKS, Record: storage.Record{
			Key: key, Value: paxos.AppendState(nil, next), Version: storage.Version{Timestamp: stateVersion + 1},
		}})
	}
	if rec != nil {
		r.clock.Observe(rec.Version.Timestamp)
		// The drop-writes test hook loses the record, not the state: the
		// Jepsen harness must see a replica that forgets data.
		if !r.dropWrites.Load() {
			muts = append(muts, storage.Mutation{Keyspace: ks, Record: *rec})
		}
	}
	return muts
}

// paxosState loads key's acceptor state from the state keyspace stateKS
// and the version of the record that holds it (0: none yet).
func (r *Replica) paxosState(stateKS string, key []byte) (paxos.State, uint64, error) {
	rec, ok, err := r.engine.Get(stateKS, key)
	if err != nil || !ok {
		return paxos.State{}, 0, err
	}
	s, err := paxos.DecodeState(rec.Value)
	if err != nil {
		return paxos.State{}, 0, fmt.Errorf("paxos state of %q in %q: %w", key, stateKS, err)
	}
	return s, rec.Version.Timestamp, nil
}

// PaxosHorizon is the ballot a cleanup at now with the given grace forgets
// states below: ballots are drawn from the proposers' hybrid logical
// clocks (paxos.NextBallot), whose readings are Unix milliseconds shifted
// left 16 bits, like record versions; so a state below the horizon was
// last touched by rounds whose clocks read more than grace before now, the
// same test tombstone collection applies to versions.
func PaxosHorizon(now time.Time, grace time.Duration) paxos.Ballot {
	ms := now.Add(-grace).UnixMilli()
	if ms <= 0 {
		return paxos.Ballot{}
	}
	return paxos.Ballot{Counter: uint64(ms) << 16}
}

// PaxosCleanup is what CleanPaxos did.
type PaxosCleanup struct {
	// Forgotten is how many states it deleted.
	Forgotten int
	// Low is the keyspace's low bound afterwards.
	Low paxos.Ballot
	// InProgress are the keys whose state is below the horizon but holds
	// a proposal in progress: the caller completes each with a Paxos read
	// (Coordinator.Get at the linearizable level escalates to one), after
	// which a later cleanup forgets it.
	InProgress [][]byte
}

// CleanPaxos forgets the acceptor states of keyspace whose ballots are all
// below horizon and hold nothing in progress (see "Cleanup" at the top of
// this file). It takes each key's lock while it checks and deletes that
// key's state, so it may run while the replica serves.
func (r *Replica) CleanPaxos(ctx context.Context, keyspace string, horizon paxos.Ballot) (PaxosCleanup, error) {
	sp, err := r.paxosSpace(keyspace)
	if err != nil {
		return PaxosCleanup{}, err
	}
	sp.mu.Lock() // one cleanup of a keyspace at a time
	defer sp.mu.Unlock()
	var res PaxosCleanup
	byStripe := map[uint64][][]byte{}
	low := sp.lowBound()
	err = r.scanStates(sp.stateKS, func(key []byte, s paxos.State) error {
		if !s.Top().Less(horizon) {
			return nil
		}
		if !paxos.Cleanable(s) {
			if _, ok := s.InProgress(); ok {
				res.InProgress = append(res.InProgress, key)
			}
			return nil
		}
		h := r.paxos.hash(keyspace, key)
		byStripe[h%paxosStripes] = append(byStripe[h%paxosStripes], key)
		if low.Less(s.Top()) {
			low = s.Top()
		}
		return ctx.Err()
	})
	if err != nil {
		return PaxosCleanup{}, err
	}
	res.Low = sp.lowBound()
	if len(byStripe) == 0 {
		return res, nil
	}
	if res.Low.Less(low) {
		// The low bound is durable, and in force, before any state it
		// stands for is deleted.
		if _, err := r.engine.Apply(ctx, []storage.Mutation{{Keyspace: paxosLowKeyspace, Record: storage.Record{
			Key: []byte(keyspace), Version: storage.Version{Timestamp: low.Counter, Node: low.Node},
		}}}); err != nil {
			return res, fmt.Errorf("paxos: raise the low bound of %q: %w", keyspace, err)
		}
		sp.low.Store(&low)
		res.Low = low
	}
	stripes := make([]uint64, 0, len(byStripe))
	for st := range byStripe {
		stripes = append(stripes, st)
	}
	slices.Sort(stripes)
	for _, st := range stripes {
		n, err := r.forget(ctx, keyspace, sp, st, byStripe[st], horizon, low)
		res.Forgotten += n
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// forget deletes, under lock stripe st, the states of keys that are still
// cleanable, below horizon and at or below low: a round may have touched
// them since the scan.
func (r *Replica) forget(ctx context.Context, keyspace string, sp *paxosSpace, st uint64, keys [][]byte, horizon, low paxos.Ballot) (int, error) {
	mu := &r.paxos.locks[st]
	mu.Lock()
	defer mu.Unlock()
	var gone [][]byte
	for _, key := range keys {
		s, v, err := r.paxosState(sp.stateKS, key)
		if err != nil {
			return 0, err
		}
		if v > 0 && paxos.Cleanable(s) && s.Top().Less(horizon) && !low.Less(s.Top()) {
			gone = append(gone, key)
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	if err := r.engine.Purge(ctx, sp.stateKS, gone); err != nil {
		return 0, fmt.Errorf("paxos: forget states of %q: %w", keyspace, err)
	}
	for _, key := range gone {
		r.paxos.slot(r.paxos.hash(keyspace, key)).Add(^uint32(0))
	}
	return len(gone), nil
}

func fillPromise(resp *kvpb.PaxosResponse, p paxos.Promise) {
	resp.Ok = p.OK
	// A zero ballot is left out: nil reads back as zero (BallotFromPB),
	// and most keys a read asks about have none.
	if !p.Promised.IsZero() {
		resp.Promised = BallotToPB(p.Promised)
	}
	if !p.Committed.IsZero() {
		resp.Committed = BallotToPB(p.Committed)
	}
	if !p.Accepted.IsZero() {
		resp.Accepted = ProposalToPB(p.Accepted)
	}
}

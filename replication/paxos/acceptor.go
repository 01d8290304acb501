package paxos

import (
	"bytes"

	"github.com/adaptkv/adaptkv/storage"
)

// Proposal is a value proposed in a round: the record it writes when
// committed, or nothing (Noop).
type Proposal struct {
	// Ballot is the round that proposed it.
	Ballot Ballot
	// Noop marks a proposal that writes nothing: a failed condition or a
	// Paxos read ordering itself after every proposal it might otherwise
	// miss. A noop is never completed by a later round and never committed.
	Noop bool
	// Record is the record the proposal writes, its version assigned (see
	// Proposer, "# Versions"). Empty when Noop.
	Record storage.Record
}

// IsZero reports whether p is the zero proposal (none).
func (p Proposal) IsZero() bool { return p.Ballot.IsZero() }

func (p Proposal) equal(o Proposal) bool {
	return p.Ballot == o.Ballot && p.Noop == o.Noop && recordsEqual(p.Record, o.Record)
}

func recordsEqual(a, b storage.Record) bool {
	return a.Version == b.Version && a.Tombstone == b.Tombstone && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value)
}

// State is an acceptor's Paxos state for one key: what a replica persists,
// durably, before it answers a prepare, a propose or a commit (EncodeState
// gives its bytes). The zero State is a key no round has touched.
type State struct {
	// Promised is the highest ballot the acceptor has promised: it refuses
	// prepares and proposals below it.
	Promised Ballot
	// Accepted is the last proposal it accepted (zero: none, or cleared by
	// a commit at or above its ballot).
	Accepted Proposal
	// Committed is the highest ballot whose proposal it has committed (its
	// record applied to storage).
	Committed Ballot
}

// top is the highest ballot the acceptor knows of.
func (s State) top() Ballot {
	return maxBallot(maxBallot(s.Promised, s.Accepted.Ballot), s.Committed)
}

// InProgress returns the proposal the acceptor accepted and has not seen
// committed, if any: the one a later round may have to complete. Noops are
// never in progress.
func (s State) InProgress() (Proposal, bool) {
	if s.Accepted.IsZero() || s.Accepted.Noop || !s.Committed.Less(s.Accepted.Ballot) {
		return Proposal{}, false
	}
	return s.Accepted, true
}

// Promise is an acceptor's answer to a prepare, and (with OK set, from
// Peek) to a linearizable read. The replica attaches its stored record of
// the key, read atomically with the state (under the same per-key lock), so
// that a prepare is also the round's read.
type Promise struct {
	// OK says the acceptor promised the ballot.
	OK bool
	// Promised is, when OK, the ballot promised before this prepare, which
	// tells the proposer whether another round began since the last
	// accepted one (see Proposer, "# Failed conditions"); when refused, the
	// ballot that outranks the prepare's.
	Promised Ballot
	// Accepted is the acceptor's last accepted proposal (zero: none or
	// cleared), committed or not.
	Accepted Proposal
	// Committed is the highest ballot it has committed.
	Committed Ballot
}

// Prepare is phase 1 at an acceptor: it promises b, refusing every later
// prepare or proposal below b, unless it knows a higher ballot, or b
// itself is committed (a stale duplicate). A repeated prepare of the ballot
// it promised last is promised again; only its own proposer uses a ballot.
// The replica must persist the returned state before it sends the promise.
func Prepare(s State, b Ballot) (State, Promise) {
	if b.Less(s.top()) || (!b.IsZero() && b == s.Committed) || b.IsZero() {
		return s, Promise{Promised: s.top()}
	}
	p := Promise{OK: true, Promised: s.Promised, Accepted: s.Accepted, Committed: s.Committed}
	s.Promised = b
	return s, p
}

// Peek is the acceptor's state as a linearizable read sees it: a promise
// of nothing, changing nothing.
func Peek(s State) Promise {
	return Promise{OK: true, Promised: s.Promised, Accepted: s.Accepted, Committed: s.Committed}
}

// Propose is phase 2 at an acceptor: it accepts p unless it promised a
// higher ballot, accepted a higher one, or has committed p's ballot or a
// higher one. When refused, promised is the ballot that outranks p's. The
// replica must persist the returned state before it answers.
func Propose(s State, p Proposal) (next State, accepted bool, promised Ballot) {
	if p.Ballot.IsZero() || p.Ballot.Less(s.Promised) || p.Ballot.Less(s.Accepted.Ballot) || !s.Committed.Less(p.Ballot) {
		return s, false, s.top()
	}
	s.Promised = p.Ballot
	s.Accepted = p
	return s, true, p.Ballot
}

// ProposeNext is phase 2 with the next round's phase 1 folded in: the
// acceptor first commits prior (when not zero: a proposal its coordinator
// knows was chosen; the replica applies prior's record in the same batch),
// then considers p as ProposeAbove does, and, if it accepts p, promises next
// at once, reporting (as a promise would) p as its accepted proposal. next
// must be above p's ballot. The replica persists the returned state, synced,
// before it answers.
//
// A coordinator whose proposal a quorum accepted this way holds a quorum of
// promises for next, each made when the acceptor's highest accepted
// proposal was p, which is chosen: the Lease its next operation on the key
// proposes under without a prepare (see Proposer, "# Leases" in doc.go).
func ProposeNext(low Ballot, s State, prior, p Proposal, next Ballot) (nextState State, accepted bool, promised Ballot, leased bool) {
	if !prior.IsZero() {
		s = Commit(s, prior.Ballot)
	}
	s, accepted, promised = ProposeAbove(low, s, p)
	if !accepted || next.IsZero() || !p.Ballot.Less(next) {
		return s, accepted, promised, false
	}
	s.Promised = next
	return s, true, promised, true
}

// Commit records at an acceptor that the proposal of ballot b was chosen
// (or, from a write-back, that a round at b or later chose a value the
// attached record reflects). It is unconditional: the caller applies the
// commit's record to storage (last writer wins, so an old or repeated one is
// a no-op) in the same atomic batch as the returned state. An accepted
// proposal at or below b is cleared: it is decided, committed or superseded.
func Commit(s State, b Ballot) State {
	if s.Committed.Less(b) {
		s.Committed = b
	}
	if !s.Accepted.IsZero() && !b.Less(s.Accepted.Ballot) {
		s.Accepted = Proposal{}
	}
	s.Promised = maxBallot(s.Promised, b)
	return s
}

// CommitMayDefer reports whether an acceptor in state s may answer the
// commit of p before the commit is durable (the replica persists it
// without waiting for an fsync). It may when the commit is lazy
// (Message.Lazy: nobody counts its acknowledgement, see below), and when
// s holds p itself as its
// accepted proposal in progress: that acceptance was persisted before the
// acceptor answered the propose, and a storage engine loses only a suffix
// of its unsynced writes (a later synced write makes every earlier one
// durable), so a crash that loses the commit leaves the acceptor in s, a
// state it was really in, still showing p in progress.
//
// Why that is safe: p was accepted here, so a commit lost this way is, to
// every later round, the same as a commit message lost in the network,
// which Paxos already survives, save for one thing: its sender saw the
// acknowledgement. The senders that count acknowledgements (a completion's
// commit quorum, a write-back's) rely on "a quorum holds the record" only
// to keep later rounds from missing it; an acceptor that reverted to "p in
// progress, above my committed ballot" still makes every later quorum that
// contains it either complete p (a Proposer's step 1, a Reader's
// escalation) or see a committed ballot at or above p's elsewhere in the
// quorum, whose record is p's or newer (a commit stores its record in the
// same atomic batch as its ballot, and a write-back commits at the highest
// committed ballot it saw with the newest record it saw). Either way the
// later op orders itself after p. A commit of anything else (a write-back
// to an acceptor that did not accept p, a noop) carries news the
// acceptor's durable state lacks and must be synced. TestModelExhaustive
// checks this with acceptors that crash and lose their deferred commits.
//
// A lazy commit is the commit of a chosen proposal that its proposer sends
// with its answer and never counts: lost in a crash, at any acceptor, it
// is exactly a commit message lost in the network. What the acceptor said
// meanwhile on the strength of it (a committed ballot, a record) was true
// of a chosen proposal, which a quorum holds accepted durably whatever
// happens to the commit, and a later synced write makes it durable with
// everything before. So an acceptor that did not accept p (left out of a
// thrifty round, or behind) may defer a lazy commit too, where a counted
// one to it carries news its durable state lacks.
func CommitMayDefer(s State, p Proposal, lazy bool) bool {
	if lazy {
		return true
	}
	ip, ok := s.InProgress()
	return ok && !p.Noop && ip.equal(p)
}

// PrepareAbove is Prepare at an acceptor whose low bound is low: a ballot
// at or below low is refused, with low as the ballot that outranks it, so
// that its proposer draws above it (NextBallot). The low bound stands for
// the states the acceptor has forgotten (Cleanable): each of them refused
// every ballot at or below its top, and low is at least the greatest of
// those tops.
func PrepareAbove(low Ballot, s State, b Ballot) (State, Promise) {
	if !low.IsZero() && !low.Less(b) {
		return s, Promise{Promised: maxBallot(s.top(), low)}
	}
	return Prepare(s, b)
}

// ProposeAbove is Propose at an acceptor whose low bound is low (see
// PrepareAbove): a proposal at or below low is refused.
func ProposeAbove(low Ballot, s State, p Proposal) (next State, accepted bool, promised Ballot) {
	if !low.IsZero() && !low.Less(p.Ballot) {
		return s, false, maxBallot(s.top(), low)
	}
	return Propose(s, p)
}

// Top is the highest ballot s knows of: what a low bound must cover
// before s is forgotten.
func (s State) Top() Ballot { return s.top() }

// Cleanable reports whether an acceptor may forget its state s for a key
// (delete it, as if no round had touched the key), provided it first
// raises its low bound to at least s.Top() and refuses every ballot at or
// below it from then on (PrepareAbove, ProposeAbove). It may when s holds
// no proposal in progress (an accepted noop is none: noops are never
// completed). Then all that s says to a later round is "refuse ballots up
// to s.Top()", which the low bound keeps saying, and what it promised,
// accepted and committed up to there, which no later round needs:
//
//   - A round that prepares after the state is forgotten is refused at or
//     below the low bound, as s would have refused it; above it, s would
//     have promised too. Its promise reports nothing accepted and nothing
//     committed, where s reported a committed ballot and no accepted
//     proposal above it. The proposer uses the committed ballots of its
//     quorum only to tell whether an accepted proposal of another acceptor
//     is in progress (above them all). Such a proposal p, below s's
//     committed ballot c, seen now as in progress, is completed: proposed
//     again at a new ballot and committed, which writes p's record again.
//     That record's version is below that of the record committed at c
//     (chosen records' versions increase in the order chosen, "#
//     Versions"), which the acceptors that committed c keep, so last
//     writer wins keeps the newer one and the round then decides against
//     it. The round answers nothing from p: it starts over.
//   - A proposal at a ballot promised before the state was forgotten is
//     refused by the low bound, where s might have accepted it (a promise
//     above its committed ballot): refusing is always safe.
//   - A Reader's peek reports nothing in progress, as s did.
//   - A failed condition (or Paxos read) answers at once when no promise
//     in its quorum is above the quorum's last accepted or committed
//     ballot; the forgotten state reports neither. A round at a ballot β
//     hidden that way was promised here before the state was forgotten,
//     so β is at or below the low bound and refused here from now on; and
//     the quorum's other members promised the failed condition's ballot,
//     above β, before promising β, if ever. No quorum can accept β: it
//     cannot be chosen before the answer nor after it. An accepted noop
//     only raises the last accepted ballot, which forgetting it lowers,
//     making the fast answer rarer, never wrong.
//
// The one thing forgetting can lose is the record that makes p's record
// lose under last writer wins: a tombstone collected after its grace. The
// shell must therefore forget a state only after the state's ballots are
// older than the keyspace's tombstone grace, and complete (by a Paxos
// read) any proposal it still holds in progress when that old; see
// replication/replica_paxos.go and docs/design-notes.md.
func Cleanable(s State) bool {
	_, inProgress := s.InProgress()
	return !inProgress
}

// Equal reports whether s and o are the same state: whether a transition
// from s to o changed nothing the acceptor must persist.
func (s State) Equal(o State) bool {
	return s.Promised == o.Promised && s.Committed == o.Committed && s.Accepted.equal(o.Accepted)
}

package paxos

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/adaptkv/adaptkv/storage"
)

// Sentinel errors of a Proposer's Outcome. Callers branch on them with
// errors.Is.
var (
	// ErrUnknownOutcome: the operation's own proposal went out and was
	// neither chosen by a quorum nor refused by every replica, so a later
	// round may still complete it. The write may or may not take effect;
	// retrying the condition blindly could apply it twice.
	ErrUnknownOutcome = errors.New("paxos: outcome unknown")
	// ErrContended: rounds kept being refused by higher ballots until the
	// attempts ran out. Nothing of the operation's was written.
	ErrContended = errors.New("paxos: too much contention")
	// ErrUnavailable: too few replicas answered until the attempts ran out.
	// Nothing of the operation's was written.
	ErrUnavailable = errors.New("paxos: too few replicas answered")
)

// DefaultMaxAttempts bounds the rounds (prepares) of one operation when
// Request.MaxAttempts is 0. Why not fewer? A round that completes another's
// proposal restarts, and two dueling proposers each lose a few rounds
// before backoff separates them. Why not more? With backoff capped at
// 64 × Backoff, eight rounds already wait about a second.
const DefaultMaxAttempts = 8

// DefaultBackoff is the first backoff when Request.Backoff is 0: about a
// round trip on a LAN, doubling per attempt up to 64 ×.
const DefaultBackoff = 2 * time.Millisecond

// Request is one conditional write (or Paxos read) for a Proposer.
type Request struct {
	// Key is the key, which every replica of the request holds.
	Key []byte
	// Cond is the condition; ReadOnly makes the operation a Paxos read.
	Cond Condition
	// Value is written when the condition holds, unless Delete.
	Value []byte
	// Delete writes a tombstone when the condition holds (DeleteIf).
	Delete bool
	// Node is this coordinator's node id, non-zero: the tiebreak of its
	// ballots and of the versions it writes.
	Node uint32
	// Replicas are the key's N replicas; a quorum is N/2+1 of them.
	Replicas []string
	// MaxAttempts bounds the rounds; 0 means DefaultMaxAttempts.
	MaxAttempts int
	// Backoff is the first wait after a refused or failed round, doubled
	// per attempt up to 64 ×; 0 means DefaultBackoff.
	Backoff time.Duration
	// Lease, when set, is what the previous operation on the key at this
	// coordinator left (Proposer.Lease): the op proposes at its ballot
	// without a prepare when the condition holds on its record (see "#
	// Leases" in doc.go). The shell must give a lease only to the op it
	// was issued for: same key, same Replicas, same Node, and to one op
	// only, since a ballot carries one proposal.
	Lease *Lease
	// Above is the highest ballot an earlier op of this coordinator on the
	// key drew (Proposer.Drawn): this op draws above it. Clocks alone do
	// not keep a coordinator's ballots for a key apart (a refusal makes
	// the next ballot one above the refusal's, whatever the clock), and a
	// ballot must carry one proposal; zero when the shell keeps none.
	Above Ballot
	// Renew asks, with the op's own proposal, for the next ballot's
	// promise, so that the op leaves a Lease (Proposer.Lease) when its
	// proposal is chosen. Only a shell that will hand the lease on to a
	// later op on the key sets it: an unused promise makes other
	// coordinators' failed conditions and Paxos reads propose a noop.
	Renew bool
	// Thrifty sends the op's own proposal to the first quorum of Replicas
	// only (the shell orders them nearest first), and to the rest when one
	// of those refuses or fails, or when the round's hedge timer fires
	// (Effects.Hedge): an uncontended write then makes N/2+1 acceptors
	// sync instead of N. Any quorum's acceptance chooses a proposal, so
	// which acceptors are asked first is the shell's choice alone; the
	// commit still goes to every replica. See "# Thrifty proposals" in
	// doc.go.
	Thrifty bool
}

// Lease is a quorum of promises a coordinator holds for its next round on
// a key: the acceptors that accepted Prior promised Ballot in the same step
// (ProposeNext), when Prior was their highest accepted proposal. Prior was
// chosen, so a proposal at Ballot decided against Prior's record is what a
// full round at Ballot would propose had those acceptors answered its
// prepare then; the promises stay good until a higher ballot reaches them,
// which then refuses the proposal.
type Lease struct {
	// Ballot is the promised ballot.
	Ballot Ballot
	// Prior is the chosen proposal the promises were made on; its record
	// is the key's current record as far as Paxos knows.
	Prior Proposal
	// Promisers are the replicas that promised Ballot, in Replicas order:
	// a thrifty op under the lease asks them first, so that a lease a
	// higher ballot overtook is refused by every replica asked (and the op
	// prepares at once) rather than accepted by one that never promised.
	Promisers []string
}

// MessageKind says what a Message asks of an acceptor.
type MessageKind uint8

const (
	// MsgPrepare: Prepare(state, Ballot), answered by EvPromise with the
	// replica's record of the key.
	MsgPrepare MessageKind = iota
	// MsgPropose: Propose(state, Proposal), answered by EvAccepted.
	MsgPropose
	// MsgCommit: Commit(state, Proposal.Ballot) and, unless Proposal.Noop,
	// apply Proposal.Record to storage (last writer wins) in the same
	// atomic batch; answered by EvCommitted.
	MsgCommit
	// MsgRead: Peek(state) and the record, atomically; answered by
	// EvRead. Only a Reader sends it.
	MsgRead
)

// String names the kind, as the tests print it.
func (k MessageKind) String() string {
	return [...]string{"prepare", "propose", "commit", "read"}[k]
}

// Message is a request an op asks the shell to send to one replica.
type Message struct {
	To string
	// Round numbers the op's rounds; the reply's Event carries it back, and
	// a reply of an earlier round is ignored.
	Round int
	Kind  MessageKind
	// Ballot is MsgPrepare's ballot.
	Ballot Ballot
	// Proposal is MsgPropose's proposal and MsgCommit's commit (its
	// Ballot the commit ballot, its Record what to apply).
	Proposal Proposal
	// Prior, on a MsgPropose, is a chosen proposal for the acceptor to
	// commit first (zero: none); Next asks it to promise Next if it
	// accepts (zero: no). Both go to ProposeNext, and the reply says
	// whether it promised (Event.Leased).
	Prior Proposal
	Next  Ballot
	// Lazy marks a MsgCommit nobody counts the reply of: the commit of
	// the op's own chosen proposal, sent with the answer. The acceptor may
	// apply it without a sync (CommitMayDefer).
	Lazy bool
}

// EventKind says what happened to an op.
type EventKind uint8

const (
	// EvPromise: a replica answered MsgPrepare (Promise, Record, Found),
	// or failed to (Err).
	EvPromise EventKind = iota
	// EvAccepted: a replica answered MsgPropose: OK, or refused with
	// Promise.Promised the ballot that outranks the proposal; or Err.
	EvAccepted
	// EvCommitted: a replica applied a MsgCommit, or failed to (Err).
	EvCommitted
	// EvRead: a replica answered MsgRead (Promise from Peek, Record,
	// Found), or failed to (Err).
	EvRead
	// EvTimeout: the timer armed by Effects.Timer for Round fired.
	EvTimeout
	// EvRetry: the backoff asked for by Effects.Backoff is over. Clock is a
	// fresh reading of the node's hybrid logical clock.
	EvRetry
)

// Event is one input to an op.
type Event struct {
	Kind  EventKind
	From  string
	Round int
	// Err is the transport's or the replica's error: the request failed.
	Err error
	// OK is EvAccepted's answer.
	OK bool
	// Leased is EvAccepted's: the acceptor also promised Message.Next.
	Leased bool
	// Promise is EvPromise's and EvRead's acceptor state; for a refused
	// proposal (EvAccepted, !OK) its Promised is the outranking ballot.
	Promise Promise
	// Record and Found are the replica's stored record of the key
	// (tombstones included; Found false: none), read atomically with the
	// acceptor's state.
	Record storage.Record
	Found  bool
	// Clock is EvRetry's clock reading.
	Clock uint64
}

// Effects is what an op asks of the shell after an event, in the manner of
// raft's Ready: send the messages, arm the timer, start the backoff, and
// hand Done to the client. Everything is to be done; none of it waits for
// the client to be answered.
type Effects struct {
	// Send are requests to make, each answered by one Event (a reply or
	// its failure).
	Send []Message
	// Timer, when non-zero, arms the replica timeout for that round: an
	// EvTimeout with Round=Timer when it fires. An earlier round's timer
	// may be cancelled or left to fire (it is ignored).
	Timer int
	// Backoff, when positive, asks for EvRetry after a wait the shell
	// draws uniformly from [Backoff/2, Backoff] (the jitter is the shell's:
	// the op has no random source).
	Backoff time.Duration
	// Escalate (Reader only) says the read found a proposal in progress:
	// run a Proposer with Cond ReadOnly for the key and answer with its
	// Outcome.
	Escalate bool
	// Done, when set, is the answer for the client; it comes once.
	Done *Outcome
	// Hedge says Timer is a hedge: arm it for the shell's hedge delay (a
	// few round trips to the replicas asked) rather than the replica
	// timeout. When it fires the op asks the replicas it left out, and
	// arms the replica timeout.
	Hedge bool
	// Finished says the op wants no more events. Messages in Send still go
	// out (a commit after the answer); their replies may be dropped.
	Finished bool
}

// Outcome is an op's answer.
type Outcome struct {
	// Applied says the write took effect (never for ReadOnly or a Reader).
	Applied bool
	// Record is, when applied, the record written (with its version);
	// otherwise the current record the condition was checked against,
	// valid when Found.
	Record storage.Record
	// Found says the key had a live record (not absent, not a tombstone)
	// when the write was not applied, or for a read.
	Found bool
	// Err, when set, says the operation failed: see ErrUnknownOutcome,
	// ErrContended, ErrUnavailable.
	Err error
}

type proposerPhase uint8

const (
	phaseIdle proposerPhase = iota
	phasePreparing
	phaseCompleting // proposing another's in-progress proposal at our ballot
	phaseCommitting // committing the completed proposal to a quorum
	phaseWritingBack
	phaseProposing // our own proposal (under a lease or after a prepare)
	phaseNoop      // a noop ordering a failed condition or a read
	phaseBackingOff
	phaseDone
)

func (ph proposerPhase) String() string {
	return [...]string{"idle", "preparing", "completing", "committing", "writing-back", "proposing", "noop", "backing-off", "done"}[ph]
}

// replyState is one replica's answer in the current round.
type replyState struct {
	got    bool
	leased bool // an EvAccepted that also promised the next ballot
	ok     bool
	prom   Promise
	rec    storage.Record
	found  bool
}

// Proposer is one conditional write, or Paxos read, as a state machine
// (see doc.go): Start it, feed it Events, carry out its Effects.
type Proposer struct {
	req    Request
	quorum int

	clock   uint64
	ballot  Ballot // this attempt's
	seen    Ballot // the highest ballot seen: ours or a refusal's
	attempt int
	round   int
	phase   proposerPhase

	replies                   []replyState
	acks, refused, failed     int
	need                      int // acks the current round needs
	lastRefused               bool
	cur                       storage.Record
	found                     bool
	latest, maxCommitted, was Ballot
	prop                      Proposal // the proposal of the current propose or commit round
	// ownOut says our own proposal went out and was not refused by every
	// replica: a later round may complete it, so failing now is
	// ErrUnknownOutcome, and retrying is not allowed.
	ownOut bool
	// sentExtra is how many more replicas a write-back asked than it
	// needs answers from.
	sentExtra int
	// asked is how many of Replicas, from the first, the current round
	// asked: all of them but in a thrifty proposal round (Request.Thrifty)
	// not yet widened.
	asked int
	// widened says a thrifty round of the op went on to ask every
	// replica (Widened, for the shell's metric).
	widened bool
	// fast says the current proposal went out under req.Lease, with no
	// prepare: refused by every replica, the op prepares at once.
	fast bool
	// next is the ballot the current proposal asked its acceptors to
	// promise, and leased how many did; lease is what the op leaves for
	// the coordinator's next one.
	next   Ballot
	prior  Proposal // the commit the current proposal carries (a lease's)
	leased int
	lease  *Lease
	out    Outcome
}

// NewProposer returns the op for req. The request is not validated here:
// the shell checks the key, the replicas (non-empty, distinct) and Node
// (non-zero) before.
func NewProposer(req Request) *Proposer {
	if req.MaxAttempts <= 0 {
		req.MaxAttempts = DefaultMaxAttempts
	}
	if req.Backoff <= 0 {
		req.Backoff = DefaultBackoff
	}
	return &Proposer{req: req, quorum: len(req.Replicas)/2 + 1, replies: make([]replyState, len(req.Replicas))}
}

// Start begins the operation; clock is a reading of the node's hybrid
// logical clock (see Ballot and "# Versions" in doc.go).
func (p *Proposer) Start(clock uint64) Effects {
	p.clock = clock
	p.seen = maxBallot(p.seen, p.req.Above)
	if l := p.req.Lease; l != nil {
		// Ballots of this op must be above the lease's whatever happens:
		// the lease's ballot carries only the proposal made under it.
		p.seen = maxBallot(p.seen, l.Ballot)
		if p.req.Thrifty && len(l.Promisers) > 0 {
			p.req.Replicas = promisersFirst(p.req.Replicas, l.Promisers)
		}
		if p.req.Cond.Kind != ReadOnly && p.req.Cond.Holds(l.Prior.Record, !l.Prior.Noop) {
			return p.proposeLeased(l)
		}
	}
	return p.prepare()
}

// Drawn is the highest ballot the op drew, saw, or asked acceptors to
// promise for the next op (its lease's): a later op of this coordinator on
// the key must draw above it (Request.Above), lease or not.
func (p *Proposer) Drawn() Ballot { return maxBallot(p.seen, p.next) }

// Lease returns what the op leaves for the coordinator's next operation on
// the key: set once its own proposal was chosen by a quorum that also
// promised the next ballot. The shell hands it to one later op at most.
func (p *Proposer) Lease() *Lease { return p.lease }

// proposeLeased proposes at the lease's ballot, decided against the lease's
// record, skipping the prepare: the acceptors commit the lease's prior
// proposal and consider ours in one step (ProposeNext).
func (p *Proposer) proposeLeased(l *Lease) Effects {
	p.ballot = l.Ballot
	p.cur, p.found = l.Prior.Record, true
	p.fast = true
	return p.propose(l.Prior)
}

// Step takes an event and returns what to do about it. Events of finished
// or earlier rounds are ignored.
func (p *Proposer) Step(ev Event) Effects {
	switch ev.Kind {
	case EvRetry:
		if p.phase == phaseBackingOff {
			p.clock = max(p.clock, ev.Clock)
			return p.prepare()
		}
		return Effects{}
	case EvTimeout:
		if ev.Round != p.round || p.phase == phaseDone || p.phase == phaseBackingOff {
			return Effects{}
		}
		if p.phase == phaseProposing && p.asked < len(p.req.Replicas) {
			// The hedge: a replica asked is slow to answer.
			return p.widen()
		}
		if p.phase == phaseProposing {
			return p.fail(fmt.Errorf("%w: our proposal at ballot %v timed out with %d of %d acceptances", ErrUnknownOutcome, p.ballot, p.acks, p.quorum))
		}
		p.lastRefused = p.refused > 0
		return p.retry()
	}
	if ev.Round != p.round || p.phase == phaseDone || p.phase == phaseBackingOff {
		return Effects{}
	}
	i := indexOf(p.req.Replicas, ev.From)
	if i < 0 || p.replies[i].got {
		return Effects{}
	}
	r := &p.replies[i]
	r.got = true
	switch {
	case ev.Err != nil:
		p.failed++
	case ev.Kind == EvPromise && p.phase == phasePreparing:
		if ev.Promise.OK {
			r.ok, r.prom, r.rec, r.found = true, ev.Promise, ev.Record, ev.Found
			p.acks++
		} else {
			p.seen = maxBallot(p.seen, ev.Promise.Promised)
			p.refused++
		}
	case ev.Kind == EvAccepted && (p.phase == phaseCompleting || p.phase == phaseProposing || p.phase == phaseNoop):
		if ev.OK {
			p.acks++
			if ev.Leased && p.phase == phaseProposing {
				p.leased++
				r.leased = true
			}
		} else {
			p.seen = maxBallot(p.seen, ev.Promise.Promised)
			p.refused++
		}
	case ev.Kind == EvCommitted && (p.phase == phaseCommitting || p.phase == phaseWritingBack):
		p.acks++
	default:
		r.got = false // not this round's kind of reply
		return Effects{}
	}
	return p.tally()
}

// tallyThrifty acts on a reply to a thrifty proposal round that has not
// asked every replica yet, and has not won: ok false means the round has
// no decision yet (wait for the others asked).
func (p *Proposer) tallyThrifty() (Effects, bool) {
	switch {
	case p.refused == p.asked:
		// Every replica asked refused, and the others were never asked:
		// nothing of ours was accepted anywhere. Asking them now could
		// only get it accepted by a minority (an outcome unknown); with a
		// lease, the others never promised its ballot and may well accept.
		p.lastRefused = true
		p.ownOut = false
		if p.fast {
			p.fast = false
			return p.prepare(), true
		}
		return p.retry(), true
	case p.failed > 0 || (p.refused > 0 && p.acks > 0):
		// An asked replica cannot answer, or refused while ours is out
		// elsewhere: the others may make up the quorum.
		return p.widen(), true
	}
	return Effects{}, false
}

// Widened reports whether a thrifty proposal round of the op went on to
// ask every replica.
func (p *Proposer) Widened() bool { return p.widened }

// widen asks the replicas a thrifty proposal round left out, and arms the
// replica timeout for the round.
func (p *Proposer) widen() Effects {
	eff := p.sendTo(p.req.Replicas[p.asked:], Message{Kind: MsgPropose, Proposal: p.prop, Prior: p.prior, Next: p.next})
	p.asked = len(p.req.Replicas)
	p.widened = true
	return eff
}

// tally acts on the current round once its outcome is known.
func (p *Proposer) tally() Effects {
	n := len(p.req.Replicas)
	pending := 0
	for _, r := range p.replies {
		if !r.got {
			pending++
		}
	}
	if p.phase == phaseWritingBack {
		pending -= n - p.sentThisRound()
	}
	if p.acks >= p.need {
		return p.won()
	}
	if p.phase == phaseProposing && p.asked < n {
		if eff, ok := p.tallyThrifty(); ok {
			return eff
		}
		return Effects{}
	}
	if p.acks+pending >= p.need {
		return Effects{}
	}
	// The round is lost.
	p.lastRefused = p.refused > 0
	if p.phase == phaseProposing {
		if p.refused < n && p.failed == 0 && pending > 0 {
			// Every replica may yet refuse it, which would make a retry
			// safe; wait for the others (or the timeout).
			return Effects{}
		}
		if p.refused < n {
			return p.fail(fmt.Errorf("%w: our proposal at ballot %v was accepted by %d replicas, refused by %d, and %d failed", ErrUnknownOutcome, p.ballot, p.acks, p.refused, p.failed))
		}
		p.ownOut = false
		if p.fast {
			// The lease was stale (a higher ballot reached every
			// replica): nothing of ours was accepted, so a round with a
			// prepare may follow at once. It is not contention of ours.
			p.fast = false
			return p.prepare()
		}
	}
	return p.retry()
}

// sentThisRound counts the replicas the current round asked (a write-back
// asks only those behind).
func (p *Proposer) sentThisRound() int {
	return p.need + p.sentExtra
}

func (p *Proposer) newRound(ph proposerPhase, need int) {
	p.round++
	p.phase = ph
	p.need = need
	p.acks, p.refused, p.failed = 0, 0, 0
	p.sentExtra = 0
	p.asked = len(p.req.Replicas)
	p.leased = 0
	for i := range p.replies {
		p.replies[i] = replyState{}
	}
}

// sendAll asks every replica.
func (p *Proposer) sendAll(m Message) Effects { return p.sendTo(p.req.Replicas, m) }

// sendTo sends m to each of replicas in this round, with the round's timer.
func (p *Proposer) sendTo(replicas []string, m Message) Effects {
	eff := Effects{Timer: p.round, Send: make([]Message, 0, len(replicas))}
	for _, to := range replicas {
		m.To, m.Round = to, p.round
		eff.Send = append(eff.Send, m)
	}
	return eff
}

func (p *Proposer) prepare() Effects {
	if p.attempt >= p.req.MaxAttempts {
		return p.giveUp()
	}
	p.attempt++
	p.ballot = NextBallot(p.req.Node, p.clock, p.seen)
	p.seen = p.ballot
	p.newRound(phasePreparing, p.quorum)
	return p.sendAll(Message{Kind: MsgPrepare, Ballot: p.ballot})
}

func (p *Proposer) giveUp() Effects {
	if p.lastRefused {
		return p.fail(fmt.Errorf("%w: %d rounds refused or failed", ErrContended, p.attempt))
	}
	return p.fail(fmt.Errorf("%w: %d rounds without a quorum", ErrUnavailable, p.attempt))
}

func (p *Proposer) retry() Effects {
	if p.attempt >= p.req.MaxAttempts {
		return p.giveUp()
	}
	p.phase = phaseBackingOff
	return Effects{Backoff: p.req.Backoff << min(p.attempt-1, 6)}
}

func (p *Proposer) fail(err error) Effects {
	if p.ownOut && !errors.Is(err, ErrUnknownOutcome) {
		err = fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
	}
	return p.answer(Outcome{Err: err}, Effects{})
}

func (p *Proposer) answer(out Outcome, eff Effects) Effects {
	p.phase = phaseDone
	p.out = out
	eff.Done = &p.out
	eff.Finished = true
	eff.Timer = 0
	return eff
}

// won moves on from a round that reached what it needed.
func (p *Proposer) won() Effects {
	switch p.phase {
	case phasePreparing:
		return p.prepared()
	case phaseCompleting:
		// The proposal in progress is chosen at our ballot. It is committed
		// to a quorum before we start over: otherwise the next prepare
		// would find it in progress again.
		p.newRound(phaseCommitting, p.quorum)
		return p.sendAll(Message{Kind: MsgCommit, Proposal: p.prop})
	case phaseCommitting:
		return p.prepare()
	case phaseWritingBack:
		return p.decide()
	case phaseProposing:
		// Chosen. The commit goes out with the answer: a later round
		// completes the proposal if the commit is lost.
		if p.leased >= p.quorum {
			p.lease = &Lease{Ballot: p.next, Prior: p.prop}
			for i, r := range p.replies {
				if r.leased {
					p.lease.Promisers = append(p.lease.Promisers, p.req.Replicas[i])
				}
			}
		}
		eff := p.sendAll(Message{Kind: MsgCommit, Proposal: p.prop, Lazy: true})
		return p.answer(Outcome{Applied: true, Record: p.prop.Record}, eff)
	case phaseNoop:
		return p.answer(p.current(), Effects{})
	}
	return Effects{}
}

func (p *Proposer) current() Outcome {
	if !p.found || p.cur.Tombstone {
		return Outcome{}
	}
	return Outcome{Record: p.cur, Found: true}
}

// prepared acts on a quorum of promises: complete a proposal in progress,
// or bring the quorum up to the newest record, then decide.
func (p *Proposer) prepared() Effects {
	var inProgress Proposal
	p.maxCommitted, p.latest, p.was = Ballot{}, Ballot{}, Ballot{}
	p.cur, p.found = storage.Record{}, false
	for _, r := range p.replies {
		if !r.ok {
			continue
		}
		p.maxCommitted = maxBallot(p.maxCommitted, r.prom.Committed)
		p.latest = maxBallot(p.latest, r.prom.Accepted.Ballot)
		was := r.prom.Promised
		if l := p.req.Lease; l != nil && was == l.Ballot {
			// The promise of this op's own lease, unused (only this op
			// may propose at its ballot, and it has not): no round began
			// there.
			was = l.Prior.Ballot
		}
		p.was = maxBallot(p.was, was)
		if r.found && (!p.found || p.cur.Version.Less(r.rec.Version)) {
			p.cur, p.found = r.rec, true
		}
	}
	p.latest = maxBallot(p.latest, p.maxCommitted)
	for _, r := range p.replies {
		a := r.prom.Accepted
		if r.ok && !a.IsZero() && !a.Noop && p.maxCommitted.Less(a.Ballot) && inProgress.Ballot.Less(a.Ballot) {
			inProgress = a
		}
	}
	if !inProgress.IsZero() {
		// Some round proposed this and may have had it chosen: propose it
		// again at our ballot (Paxos phase 2 with the highest accepted
		// value), commit it, and start over.
		inProgress.Ballot = p.ballot
		p.prop = inProgress
		p.newRound(phaseCompleting, p.quorum)
		return p.sendAll(Message{Kind: MsgPropose, Proposal: p.prop})
	}
	if !p.found {
		return p.decide()
	}
	// Write the newest record back to the promisers behind it, so that a
	// quorum holds it before anything is decided or answered on it (ABD's
	// write-back; Cassandra commits the most recent commit to the quorum).
	// The commit ballot clears their accepted proposals at or below the
	// highest committed ballot, which are decided or dead.
	upToDate := 0
	var behind []string
	for i, r := range p.replies {
		if !r.ok {
			continue
		}
		// A dead accepted proposal (at or below the highest committed
		// ballot: its replica missed a commit) gets the commit too, even
		// on a replica whose record is current (read repair or
		// anti-entropy may have brought it): left there, it could be
		// completed by a later round whose quorum has forgotten that
		// commit (Cleanable), after the record that supersedes it is gone.
		if a := r.prom.Accepted; r.found && !r.rec.Version.Less(p.cur.Version) && (a.IsZero() || a.Noop || p.maxCommitted.Less(a.Ballot)) {
			upToDate++
		} else {
			behind = append(behind, p.req.Replicas[i])
		}
	}
	if upToDate >= p.quorum {
		return p.decide()
	}
	p.newRound(phaseWritingBack, p.quorum-upToDate)
	p.sentExtra = len(behind) - p.need
	p.prop = Proposal{Ballot: p.maxCommitted, Record: p.cur}
	eff := Effects{Timer: p.round}
	for _, to := range behind {
		eff.Send = append(eff.Send, Message{To: to, Round: p.round, Kind: MsgCommit, Proposal: p.prop})
	}
	return eff
}

// decide evaluates the condition on the current record, which a quorum
// now holds, with no proposal in progress in the quorum.
func (p *Proposer) decide() Effects {
	if p.req.Cond.Kind != ReadOnly && p.req.Cond.Holds(p.cur, p.found) {
		return p.propose(Proposal{})
	}
	if !p.latest.Less(p.was) {
		// No round began since the last accepted or committed one, so no
		// write can be decided before ours that this answer misses (see
		// "# Failed conditions and reads" in doc.go).
		return p.answer(p.current(), Effects{})
	}
	p.prop = Proposal{Ballot: p.ballot, Noop: true}
	p.newRound(phaseNoop, p.quorum)
	return p.sendAll(Message{Kind: MsgPropose, Proposal: p.prop})
}

// propose sends the op's own proposal at its ballot, decided against the
// current record, asking each acceptor to commit prior first (under a
// lease) and, when it accepts, to promise the next ballot: the lease for
// the coordinator's next op on the key.
func (p *Proposer) propose(prior Proposal) Effects {
	v := storage.Version{Timestamp: max(p.clock, 1), Node: p.req.Node}
	if p.found {
		v.Timestamp = max(v.Timestamp, p.cur.Version.Timestamp+1)
	}
	rec := storage.Record{Key: p.req.Key, Version: v, Tombstone: p.req.Delete}
	if !p.req.Delete {
		rec.Value = p.req.Value
	}
	p.prop = Proposal{Ballot: p.ballot, Record: rec}
	p.ownOut = true
	p.next = Ballot{}
	if p.req.Renew {
		p.next = NextBallot(p.req.Node, p.clock, p.ballot)
	}
	p.prior = prior
	p.newRound(phaseProposing, p.quorum)
	m := Message{Kind: MsgPropose, Proposal: p.prop, Prior: prior, Next: p.next}
	if !p.req.Thrifty || p.quorum >= len(p.req.Replicas) {
		return p.sendAll(m)
	}
	p.asked = p.quorum
	eff := p.sendTo(p.req.Replicas[:p.asked], m)
	eff.Hedge = true
	return eff
}

// promisersFirst orders replicas with the lease's promisers first, each
// part in its given order.
func promisersFirst(replicas, promisers []string) []string {
	out := make([]string, 0, len(replicas))
	for _, id := range replicas {
		if slices.Contains(promisers, id) {
			out = append(out, id)
		}
	}
	for _, id := range replicas {
		if !slices.Contains(promisers, id) {
			out = append(out, id)
		}
	}
	return out
}

func indexOf(ids []string, id string) int {
	for i, x := range ids {
		if x == id {
			return i
		}
	}
	return -1
}

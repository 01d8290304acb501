package paxos

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/adaptkv/adaptkv/storage"
)

// The exhaustive model check: three acceptors, a few clients each running
// one operation on the same key, and a network that delivers the messages
// in flight in every order, drops some, and fires timers early. Every
// reachable state is visited once (breadth first, memoized on a canonical
// encoding of the whole world), and every state is checked:
//
//   - at most one proposal per ballot, and the proposals chosen (accepted
//     by a majority) form one chain: each distinct record chosen later has
//     a greater version than every record chosen before (a value is decided
//     against its predecessor, so LWW storage agrees with the Paxos order);
//   - in every final state, the history (each client's invocation,
//     answer, and which answers preceded which invocations) is
//     linearizable against a sequential register with compare-and-set, and
//     a final Paxos read and a final Reader, run with every message
//     delivered, both see the register's last value.
//
// Reference: Lamport, "Paxos Made Simple" §2.2 (safety); Cassandra's
// doc/Paxos.md, propositions 1 and 2; Herlihy & Wing, linearizability.

type mAcceptor struct {
	st    State
	rec   storage.Record
	found bool
	// lazy says the acceptor answered a commit it did not sync
	// (CommitMayDefer); durable is then what a crash leaves of it: its
	// state and record after its last synced message.
	lazy    bool
	durable *mAcceptor
	// low is the acceptor's low bound: the greatest top of the states it
	// forgot (Cleanable); it is synced before the state is dropped.
	low Ballot
}

// mNet is a message in flight: a request to acceptor to, or a reply to
// client.
type mNet struct {
	client int
	req    bool
	to     int
	msg    Message
	ev     Event
	key    string
}

type mClient struct {
	p       *Proposer
	r       *Reader
	started bool
	done    bool
	out     Outcome
	// after is the set of clients answered before this one was invoked.
	after    uint8
	timer    int  // armed round, 0: none
	backoff  bool // waiting for EvRetry
	finished bool
	// attempts overrides modelMaxAttempts for an escalated read (the final
	// reads, which must not give up).
	attempts int
}

type mChosen struct {
	prop Proposal
	acc  uint8
}

type world struct {
	acc     [3]mAcceptor
	clients []mClient
	net     []mNet
	faults  int
	// cleanups counts the states acceptors forgot (modelConfig.cleanups).
	cleanups int
	// ballots maps a ballot to its proposal and the acceptors that
	// accepted it.
	ballots map[Ballot]mChosen
}

var modelReplicas = []string{"r0", "r1", "r2"}

func (w *world) clone() *world {
	c := &world{acc: w.acc, faults: w.faults, cleanups: w.cleanups}
	c.clients = slices.Clone(w.clients)
	for i := range c.clients {
		if p := c.clients[i].p; p != nil {
			cp := *p
			cp.replies = slices.Clone(p.replies)
			c.clients[i].p = &cp
		}
		if r := c.clients[i].r; r != nil {
			cr := *r
			cr.replies = slices.Clone(r.replies)
			c.clients[i].r = &cr
		}
	}
	c.net = slices.Clone(w.net)
	c.ballots = make(map[Ballot]mChosen, len(w.ballots))
	for b, x := range w.ballots {
		c.ballots[b] = x
	}
	return c
}

func recString(r storage.Record, found bool) string {
	if !found {
		return "-"
	}
	if r.Tombstone {
		return fmt.Sprintf("del@%d.%d", r.Version.Timestamp, r.Version.Node)
	}
	return fmt.Sprintf("%s@%d.%d", r.Value, r.Version.Timestamp, r.Version.Node)
}

func propString(p Proposal) string {
	if p.IsZero() && !p.Noop && p.Record.Version.IsZero() {
		return "none"
	}
	if p.Noop {
		return "noop@" + p.Ballot.String()
	}
	return recString(p.Record, true) + "@b" + p.Ballot.String()
}

func stateString(s State) string {
	return fmt.Sprintf("p=%v a=%s c=%v", s.Promised, propString(s.Accepted), s.Committed)
}

func msgKey(client int, m Message) string {
	b := make([]byte, 0, 64)
	b = strconv.AppendInt(b, int64(client), 10)
	b = append(b, '>')
	b = append(b, m.To...)
	b = kInts(b, int64(m.Round), int64(m.Kind))
	b = kBallot(b, m.Ballot)
	b = kProp(b, m.Proposal)
	b = kProp(b, m.Prior)
	return string(kBallot(b, m.Next))
}

// key is the world's canonical encoding: equal worlds, equal keys. It is
// the search's hot spot, hence appends rather than fmt.
func (w *world) key() string {
	b := make([]byte, 0, 1024)
	for _, a := range w.acc {
		b = append(b, '[')
		b = kState(b, a.st)
		b = kRec(b, a.rec, a.found)
		b = kBallot(b, a.low)
		if a.lazy {
			b = append(b, '~')
			b = kState(b, a.durable.st)
			b = kRec(b, a.durable.rec, a.durable.found)
		}
		b = append(b, ']')
	}
	for _, c := range w.clients {
		b = append(b, '{')
		b = kBools(b, c.started, c.done, c.finished, c.backoff)
		b = strconv.AppendUint(b, uint64(c.after), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(c.timer), 10)
		b = append(b, ' ')
		b = append(b, outString(c.out)...)
		if c.p != nil && c.started && !c.finished {
			p := c.p
			b = append(b, 'P')
			b = kInts(b, int64(p.clock), int64(p.attempt), int64(p.round), int64(p.phase), int64(p.acks), int64(p.refused),
				int64(p.failed), int64(p.need), int64(p.sentExtra))
			b = kBools(b, p.lastRefused, p.ownOut, p.fast, p.lease != nil)
			b = kInts(b, int64(p.leased), int64(p.asked))
			b = kBallots(b, p.ballot, p.seen, p.latest, p.maxCommitted, p.was, p.next)
			b = kRec(b, p.cur, p.found)
			b = kProp(b, p.prop)
			b = kProp(b, p.prior)
			// A thrifty op under a lease asks its promisers first.
			b = append(b, strings.Join(p.req.Replicas, ",")...)
			b = kReplies(b, p.replies)
		}
		if c.p != nil && c.p.lease != nil {
			// What a later op of the coordinator will start from.
			b = append(b, 'L')
			b = kBallot(b, c.p.lease.Ballot)
			b = kProp(b, c.p.lease.Prior)
			b = append(b, strings.Join(c.p.lease.Promisers, ",")...)
		}
		if c.r != nil && c.started && !c.finished {
			r := c.r
			b = append(b, 'R')
			b = kInts(b, int64(r.round), int64(r.phase), int64(r.acks), int64(r.failed), int64(r.need), int64(r.asked))
			b = kBools(b, r.widened)
			b = kRec(b, r.cur, r.found)
			b = kReplies(b, r.replies)
		}
		b = append(b, '}')
	}
	keys := make([]string, len(w.net))
	for i, m := range w.net {
		keys[i] = m.key
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = append(b, k...)
		b = append(b, ';')
	}
	b = strconv.AppendInt(b, int64(w.faults), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(w.cleanups), 10)
	// The chosen-value bookkeeping is part of the state: the same
	// acceptors reached by different accept histories are different worlds
	// for the checks.
	bs := make([]Ballot, 0, len(w.ballots))
	for bl := range w.ballots {
		bs = append(bs, bl)
	}
	slices.SortFunc(bs, func(x, y Ballot) int {
		if x.Less(y) {
			return -1
		}
		return 1
	})
	for _, bl := range bs {
		x := w.ballots[bl]
		b = kProp(b, x.prop)
		b = strconv.AppendUint(b, uint64(x.acc), 10)
	}
	return string(b)
}

func kBools(b []byte, vs ...bool) []byte {
	for _, v := range vs {
		if v {
			b = append(b, '1')
		} else {
			b = append(b, '0')
		}
	}
	return append(b, ' ')
}

func kInts(b []byte, vs ...int64) []byte {
	for _, v := range vs {
		b = strconv.AppendInt(b, v, 10)
		b = append(b, ',')
	}
	return b
}

func kBallots(b []byte, vs ...Ballot) []byte {
	for _, v := range vs {
		b = kBallot(b, v)
	}
	return b
}

func kBallot(b []byte, x Ballot) []byte {
	b = strconv.AppendUint(b, x.Counter, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(x.Node), 10)
	return append(b, ' ')
}

func kRec(b []byte, r storage.Record, found bool) []byte {
	if !found {
		return append(b, "- "...)
	}
	if r.Tombstone {
		b = append(b, "del"...)
	} else {
		b = append(b, r.Value...)
	}
	b = append(b, '@')
	return kBallot(b, Ballot{Counter: r.Version.Timestamp, Node: r.Version.Node})
}

func kProp(b []byte, p Proposal) []byte {
	b = kBallot(b, p.Ballot)
	if p.Noop {
		return append(b, "noop "...)
	}
	return kRec(b, p.Record, true)
}

func kState(b []byte, s State) []byte {
	b = kBallots(b, s.Promised, s.Committed)
	return kProp(b, s.Accepted)
}

func kReplies(b []byte, rs []replyState) []byte {
	for _, r := range rs {
		b = append(b, '(')
		b = kBools(b, r.got, r.ok, r.prom.OK, r.leased)
		b = kBallots(b, r.prom.Promised, r.prom.Committed)
		b = kProp(b, r.prom.Accepted)
		b = kRec(b, r.rec, r.found)
		b = append(b, ')')
	}
	return b
}

func outString(o Outcome) string {
	if o.Err != nil {
		if errors.Is(o.Err, ErrUnknownOutcome) {
			return "unknown"
		}
		return "failed"
	}
	return fmt.Sprintf("%v %s", o.Applied, recString(o.Record, o.Found))
}

// apply carries out a client's effects.
func (w *world) apply(ci int, eff Effects) {
	c := &w.clients[ci]
	for _, m := range eff.Send {
		to := indexOf(modelReplicas, m.To)
		w.net = append(w.net, mNet{client: ci, req: true, to: to, msg: m, key: msgKey(ci, m)})
	}
	if eff.Timer != 0 {
		c.timer = eff.Timer
	}
	if eff.Backoff > 0 {
		c.backoff = true
		c.timer = 0
	}
	if eff.Escalate {
		// The read found a proposal in progress: a Paxos read answers it.
		c.r = nil
		c.p = NewProposer(Request{Key: []byte("k"), Cond: Condition{Kind: ReadOnly}, Node: uint32(ci + 1), Replicas: modelReplicas, MaxAttempts: c.maxAttempts()})
		w.apply(ci, c.p.Start(0))
		return
	}
	if eff.Done != nil {
		c.done = true
		c.out = *eff.Done
	}
	if eff.Finished {
		c.finished = true
		c.timer = 0
		c.backoff = false
		// Replies to a finished client are dropped at once: it ignores them.
		w.net = slices.DeleteFunc(w.net, func(m mNet) bool { return !m.req && m.client == ci })
	}
}

func (c *mClient) maxAttempts() int {
	if c.attempts > 0 {
		return c.attempts
	}
	return modelMaxAttempts
}

var modelMaxAttempts = 2

// deliver hands message i to its acceptor or client.
func (w *world) deliver(i int, dropReply bool) error {
	m := w.net[i]
	w.net = slices.Delete(w.net, i, i+1)
	if !m.req {
		c := &w.clients[m.client]
		if c.finished {
			return nil
		}
		var eff Effects
		if c.p != nil {
			eff = c.p.Step(m.ev)
		} else {
			eff = c.r.Step(m.ev)
		}
		w.apply(m.client, eff)
		return nil
	}
	a := &w.acc[m.to]
	ev := Event{From: modelReplicas[m.to], Round: m.msg.Round}
	switch m.msg.Kind {
	case MsgPrepare:
		ev.Kind = EvPromise
		a.st, ev.Promise = PrepareAbove(a.low, a.st, m.msg.Ballot)
		ev.Record, ev.Found = a.rec, a.found
	case MsgRead:
		ev.Kind = EvRead
		ev.Promise = Peek(a.st)
		ev.Record, ev.Found = a.rec, a.found
	case MsgPropose:
		ev.Kind = EvAccepted
		if pr := m.msg.Prior; !pr.IsZero() && !pr.Noop && (!a.found || a.rec.Version.Less(pr.Record.Version)) {
			a.rec, a.found = pr.Record, true
		}
		a.st, ev.OK, ev.Promise.Promised, ev.Leased = ProposeNext(a.low, a.st, m.msg.Prior, m.msg.Proposal, m.msg.Next)
		a.lazy, a.durable = false, nil // synced
		if ev.OK {
			x, seen := w.ballots[m.msg.Proposal.Ballot]
			if seen && !x.prop.equal(m.msg.Proposal) {
				return fmt.Errorf("two proposals at ballot %v: %s and %s", m.msg.Proposal.Ballot, propString(x.prop), propString(m.msg.Proposal))
			}
			x.prop = m.msg.Proposal
			x.acc |= 1 << m.to
			w.ballots[m.msg.Proposal.Ballot] = x
		}
	case MsgCommit:
		ev.Kind = EvCommitted
		deferred := CommitMayDefer(a.st, m.msg.Proposal, m.msg.Lazy)
		if deferred && !a.lazy {
			// The first unsynced write: what a crash goes back to.
			a.durable = &mAcceptor{st: a.st, rec: a.rec, found: a.found}
		}
		a.st = Commit(a.st, m.msg.Proposal.Ballot)
		if p := m.msg.Proposal; !p.Noop && (!a.found || a.rec.Version.Less(p.Record.Version)) {
			a.rec, a.found = p.Record, true
		}
		if deferred {
			a.lazy = true
			break
		}
		a.lazy, a.durable = false, nil // synced: everything before is on disk
	default:
		// Prepares, proposes and reads: a read writes nothing, the others
		// sync, and a sync makes every earlier write durable.
		if m.msg.Kind != MsgRead {
			a.lazy, a.durable = false, nil
		}
	}
	// The reply reaches the client at once, unless it is lost: a reply
	// delayed past other events is no different, to the client, from one
	// that arrives at once, its effects then delayed in the network, or
	// from a lost one once its round is over. This halves the messages the
	// search interleaves.
	if c := &w.clients[m.client]; !c.finished && !dropReply {
		var eff Effects
		if c.p != nil {
			eff = c.p.Step(ev)
		} else {
			eff = c.r.Step(ev)
		}
		w.apply(m.client, eff)
	}
	return nil
}

// checkChosen checks the chosen proposals form one chain. With cleanup
// (stale), a proposal accepted once and left behind an acceptor that missed
// its round's end may be chosen again, completed by a round whose quorum
// forgot the later commits (see Cleanable): allowed if its record was
// proposed at a lower ballot before, and then only below the chain's
// newest record, which it loses to under last writer wins; the chain of
// newer records must still rise.
func (w *world) checkChosen(stale bool) error {
	type ch struct {
		b Ballot
		p Proposal
	}
	var chosen []ch
	for b, x := range w.ballots {
		if bits.OnesCount8(x.acc) >= 2 && !x.prop.Noop {
			chosen = append(chosen, ch{b, x.prop})
		}
	}
	slices.SortFunc(chosen, func(a, b ch) int {
		if a.b.Less(b.b) {
			return -1
		}
		return 1
	})
	top := 0 // the newest record chosen so far
	for i := 1; i < len(chosen); i++ {
		a, b := chosen[top].p.Record, chosen[i].p.Record
		if recordsEqual(a, b) {
			continue // the same value, completed by a later round
		}
		if a.Version.Less(b.Version) {
			top = i
			continue
		}
		if stale && w.proposedBelow(b, chosen[i].b) {
			continue
		}
		return fmt.Errorf("chosen at %v: %s, then at %v: %s, not above it", chosen[top].b, recString(a, true), chosen[i].b, recString(b, true))
	}
	return nil
}

// proposedBelow reports whether rec was accepted at a ballot below b.
func (w *world) proposedBelow(rec storage.Record, b Ballot) bool {
	for bl, x := range w.ballots {
		if bl.Less(b) && !x.prop.Noop && recordsEqual(x.prop.Record, rec) {
			return true
		}
	}
	return false
}

// settle runs op against a copy of the acceptors with every message
// delivered, in order, until it answers.
func (w *world) settle(ci int) (Outcome, error) {
	x := w.clone()
	x.net = nil
	c := &x.clients[ci]
	c.started = true
	if c.p != nil {
		x.apply(ci, c.p.Start(0))
	} else {
		x.apply(ci, c.r.Start())
	}
	for steps := 0; !c.done; steps++ {
		if steps > 1000 {
			return Outcome{}, errors.New("final read does not finish")
		}
		if len(x.net) == 0 {
			if c.backoff {
				c.backoff = false
				x.apply(ci, c.p.Step(Event{Kind: EvRetry}))
				continue
			}
			return Outcome{}, errors.New("final read stuck")
		}
		if err := x.deliver(0, false); err != nil {
			return Outcome{}, err
		}
	}
	return c.out, nil
}

// mOp is one operation of the history for the linearizability check.
type mOp struct {
	cond  Condition
	value []byte
	del   bool
	read  bool
	out   Outcome
	after uint8
}

// linearizable reports whether some order of ops, respecting after, is a
// legal sequential history of a compare-and-set register starting at
// (init, found), ending with final. Unknown outcomes may or may not have
// taken effect.
func linearizable(ops []mOp, init storage.Record, found bool, final Outcome) bool {
	n := len(ops)
	var try func(done uint8, cur storage.Record, found bool) bool
	try = func(done uint8, cur storage.Record, found bool) bool {
		if done == 1<<n-1 {
			live := found && !cur.Tombstone
			return final.Found == live && (!live || recordsEqual(final.Record, cur))
		}
		for i, op := range ops {
			if done&(1<<i) != 0 || op.after&^done != 0 {
				continue
			}
			next := done | 1<<i
			live := found && !cur.Tombstone
			switch {
			case op.read && op.out.Err != nil:
				// A failed read took no effect.
				if try(next, cur, found) {
					return true
				}
			case op.read || (op.out.Err == nil && !op.out.Applied):
				if op.out.Err == nil && op.out.Found == live && (!live || recordsEqual(op.out.Record, cur)) &&
					(op.read || !op.cond.Holds(cur, found)) {
					if try(next, cur, found) {
						return true
					}
				}
			case op.out.Err == nil && op.out.Applied:
				w := op.out.Record
				if op.cond.Holds(cur, found) && (!found || cur.Version.Less(w.Version)) && w.Tombstone == op.del &&
					(op.del || bytes.Equal(w.Value, op.value)) {
					if try(next, w, true) {
						return true
					}
				}
			default:
				// Failed: definitely not applied (ErrContended,
				// ErrUnavailable) or maybe applied (ErrUnknownOutcome),
				// with a version we do not know: any above cur.
				if try(next, cur, found) {
					return true
				}
				if errors.Is(op.out.Err, ErrUnknownOutcome) && op.cond.Holds(cur, found) {
					for _, v := range []storage.Version{} {
						_ = v
					}
					w := storage.Record{Key: cur.Key, Value: op.value, Tombstone: op.del}
					// The unknown write's version is whatever the final
					// state shows if it is the last write; any value above
					// cur otherwise. Matching the final read needs the
					// exact record, so try the final one's version too.
					w.Version = storage.Version{Timestamp: cur.Version.Timestamp + 1, Node: 0}
					if final.Found && bytes.Equal(final.Record.Value, op.value) && cur.Version.Less(final.Record.Version) {
						w.Version = final.Record.Version
					}
					if try(next, w, true) {
						return true
					}
				}
			}
		}
		return false
	}
	return try(0, init, found)
}

// modelConfig is one model: the clients' operations and the fault budget.
type modelConfig struct {
	name      string
	init      storage.Record
	initFound bool
	// clients: a CAS request (Node set from the position) or a reader.
	clients []mSpec
	faults  int
	// cleanups is how many times, in all, an acceptor may forget its
	// state when Cleanable (at any moment: a grace of zero).
	cleanups int
	// attempts, when positive, bounds each CAS's rounds instead of
	// modelMaxAttempts: the three-proposer models need 1 to fit in memory.
	attempts int
	// renew makes every CAS ask for a lease (Request.Renew), as the
	// coordinator's do; the models with leaseFrom need it.
	renew bool
	// fifo delivers the requests of one client to one acceptor in the
	// order sent (lost ones aside), as one connection does; without it any
	// order is explored, which multiplies the states.
	fifo bool
	// thrifty makes every CAS propose to a quorum first (Request.Thrifty),
	// as the coordinator's do: the model fires the hedge timer at any
	// moment, as it does every timer.
	thrifty bool
}

type mSpec struct {
	cond  Condition
	value string
	del   bool
	read  bool // a Reader
	// leaseFrom, when positive, is 1 + the index of an earlier client
	// (CAS) at the same coordinator: this op starts only once that one has
	// answered, with the same node id, and with the lease it left, if any.
	leaseFrom int
}

func (cfg modelConfig) initial() *world {
	w := &world{ballots: map[Ballot]mChosen{}}
	for i := range w.acc {
		w.acc[i] = mAcceptor{rec: cfg.init, found: cfg.initFound}
	}
	for i, s := range cfg.clients {
		var c mClient
		if s.read {
			c.r = NewReader(modelReplicas)
		} else {
			c.p = NewProposer(cfg.request(i, nil))
		}
		w.clients = append(w.clients, c)
	}
	return w
}

// request is client i's request, with lease.
func (cfg modelConfig) request(i int, lease *Lease) Request {
	s := cfg.clients[i]
	node := i
	if s.leaseFrom > 0 {
		node = s.leaseFrom - 1
	}
	attempts := modelMaxAttempts
	if cfg.attempts > 0 {
		attempts = cfg.attempts
	}
	return Request{Key: []byte("k"), Cond: s.cond, Value: []byte(s.value), Delete: s.del,
		Node: uint32(node + 1), Replicas: modelReplicas, MaxAttempts: attempts, Lease: lease, Renew: cfg.renew, Thrifty: cfg.thrifty}
}

type modelStats struct {
	states, transitions, finals, crashes, cleanups, leased int
	applied, notApplied, unknown, failed, escalated        int
}

// explore visits every state reachable from cfg's initial world.
func explore(t *testing.T, cfg modelConfig, limit int) modelStats {
	var st modelStats
	start := cfg.initial()
	seen := map[string]bool{start.key(): true}
	queue := []*world{start}
	for len(queue) > 0 {
		w := queue[0]
		queue = queue[1:]
		st.states++
		if st.states > limit {
			t.Fatalf("%s: more than %d states", cfg.name, limit)
		}
		if err := w.checkChosen(cfg.cleanups > 0); err != nil {
			t.Fatalf("%s: %v\nstate: %s", cfg.name, err, w.key())
		}
		var next []*world
		for ci := range w.clients {
			c := w.clients[ci]
			if from := cfg.clients[ci].leaseFrom; !c.started && from > 0 && !w.clients[from-1].done {
				// Waits for the op before it at its coordinator.
			} else if !c.started {
				x := w.clone()
				xc := &x.clients[ci]
				if from := cfg.clients[ci].leaseFrom; from > 0 {
					prev := x.clients[from-1].p
					req := cfg.request(ci, prev.Lease())
					req.Above = prev.Drawn()
					xc.p = NewProposer(req)
					if xc.p.req.Lease != nil {
						st.leased++
					}
				}
				xc.started = true
				for cj, o := range x.clients {
					if o.done {
						xc.after |= 1 << cj
					}
				}
				if xc.p != nil {
					x.apply(ci, xc.p.Start(0))
				} else {
					x.apply(ci, xc.r.Start())
				}
				next = append(next, x)
			}
			if c.backoff {
				x := w.clone()
				x.clients[ci].backoff = false
				x.apply(ci, x.clients[ci].p.Step(Event{Kind: EvRetry}))
				next = append(next, x)
			}
			if c.timer != 0 {
				// A timer fires; early (a message of the client still in
				// flight) costs a fault.
				inFlight := slices.ContainsFunc(w.net, func(m mNet) bool { return m.client == ci })
				if !inFlight || w.faults < cfg.faults {
					x := w.clone()
					if inFlight {
						x.faults++
					}
					xc := &x.clients[ci]
					ev := Event{Kind: EvTimeout, Round: xc.timer}
					xc.timer = 0
					if xc.p != nil {
						x.apply(ci, xc.p.Step(ev))
					} else {
						x.apply(ci, xc.r.Step(ev))
					}
					next = append(next, x)
				}
			}
		}
		for i := range w.net {
			if cfg.fifo && slices.ContainsFunc(w.net[:i], func(m mNet) bool {
				return m.req && m.client == w.net[i].client && m.to == w.net[i].to
			}) {
				continue // an earlier message on the same channel goes first
			}
			x := w.clone()
			if err := x.deliver(i, false); err != nil {
				t.Fatalf("%s: %v\nstate: %s", cfg.name, err, w.key())
			}
			next = append(next, x)
			if w.faults < cfg.faults {
				// The request is lost, or its reply is.
				x := w.clone()
				x.faults++
				x.net = slices.Delete(x.net, i, i+1)
				next = append(next, x)
				if w.net[i].req && !w.clients[w.net[i].client].finished {
					x := w.clone()
					x.faults++
					if err := x.deliver(i, true); err != nil {
						t.Fatalf("%s: %v\nstate: %s", cfg.name, err, w.key())
					}
					next = append(next, x)
				}
			}
		}
		for ai, a := range w.acc {
			if a.lazy && w.faults < cfg.faults {
				// The acceptor crashes and restarts, losing the commits it
				// answered without a sync.
				x := w.clone()
				x.faults++
				x.acc[ai] = mAcceptor{st: a.durable.st, rec: a.durable.rec, found: a.durable.found, low: a.low}
				next = append(next, x)
				st.crashes++
			}
			if w.cleanups < cfg.cleanups && !a.st.Top().IsZero() && Cleanable(a.st) {
				// The acceptor forgets its state: it syncs its raised low
				// bound first (which makes every earlier write durable).
				x := w.clone()
				x.cleanups++
				x.acc[ai] = mAcceptor{rec: a.rec, found: a.found, low: maxBallot(a.low, a.st.Top())}
				next = append(next, x)
				st.cleanups++
			}
		}
		if len(next) == 0 {
			st.finals++
			checkFinal(t, cfg, w, &st)
		}
		for _, x := range next {
			st.transitions++
			k := x.key()
			if !seen[k] {
				seen[k] = true
				queue = append(queue, x)
			}
		}
	}
	return st
}

func checkFinal(t *testing.T, cfg modelConfig, w *world, st *modelStats) {
	t.Helper()
	var ops []mOp
	for i, c := range w.clients {
		if !c.done {
			t.Fatalf("%s: client %d never answered\nstate: %s", cfg.name, i, w.key())
		}
		s := cfg.clients[i]
		// An operation whose outcome is unknown may take effect at any
		// time after it began, even after its answer (Jepsen's "info"):
		// nothing is ordered after it.
		for j, o := range w.clients {
			if errors.Is(o.out.Err, ErrUnknownOutcome) {
				c.after &^= 1 << j
			}
		}
		ops = append(ops, mOp{cond: s.cond, value: []byte(s.value), del: s.del, read: s.read || s.cond.Kind == ReadOnly, out: c.out, after: c.after})
		switch {
		case c.out.Err == nil && c.out.Applied:
			st.applied++
		case c.out.Err == nil:
			st.notApplied++
		case errors.Is(c.out.Err, ErrUnknownOutcome):
			st.unknown++
		default:
			st.failed++
		}
	}
	// Two final reads, every message delivered: a Paxos read and a Reader.
	x := w.clone()
	x.clients = append(x.clients, mClient{p: NewProposer(Request{Key: []byte("k"), Cond: Condition{Kind: ReadOnly}, Node: 9, Replicas: modelReplicas, MaxAttempts: 10})})
	final, err := x.settle(len(x.clients) - 1)
	if err != nil || final.Err != nil {
		t.Fatalf("%s: final Paxos read: %v %v\nstate: %s", cfg.name, err, final.Err, w.key())
	}
	y := w.clone()
	y.clients = append(y.clients, mClient{r: NewReader(modelReplicas), attempts: 10})
	read, err := y.settle(len(y.clients) - 1)
	if err != nil || read.Err != nil {
		t.Fatalf("%s: final read: %v %v\nstate: %s", cfg.name, err, read.Err, w.key())
	}
	if read.Found != final.Found || (final.Found && !recordsEqual(read.Record, final.Record)) {
		t.Fatalf("%s: final Reader saw %s, final Paxos read %s\nstate: %s", cfg.name, recString(read.Record, read.Found), recString(final.Record, final.Found), w.key())
	}
	if !linearizable(ops, cfg.init, cfg.initFound, final) {
		var b strings.Builder
		for i, op := range ops {
			fmt.Fprintf(&b, "  client %d: %v %q → %s (after %b)\n", i, op.cond, op.value, outString(op.out), op.after)
		}
		t.Fatalf("%s: not linearizable; final %s\n%sstate: %s", cfg.name, recString(final.Record, final.Found), b.String(), w.key())
	}
}

func modelConfigs(big bool) []modelConfig {
	a := storage.Record{Key: []byte("k"), Value: []byte("a"), Version: storage.Version{Timestamp: 10, Node: 9}}
	cas := func(from, to string) mSpec {
		return mSpec{cond: Condition{Kind: IfValue, Value: []byte(from)}, value: to}
	}
	leased := func(s mSpec, from int) mSpec {
		s.leaseFrom = from + 1
		return s
	}
	cfgs := []modelConfig{
		{name: "one CAS, one fault", init: a, initFound: true, clients: []mSpec{cas("a", "b")}, faults: 1, fifo: true},
		{name: "CAS then CAS under its lease, one fault", init: a, initFound: true, clients: []mSpec{cas("a", "b"), leased(cas("b", "c"), 0)}, faults: 1, fifo: true, renew: true},
		{name: "two CAS from a, no faults", init: a, initFound: true, clients: []mSpec{cas("a", "b"), cas("a", "c")}, fifo: true},
		{name: "one CAS, one fault, cleanups", init: a, initFound: true, clients: []mSpec{cas("a", "b")}, faults: 1, cleanups: 3, fifo: true},
		{name: "thrifty: CAS then CAS under its lease, one fault", init: a, initFound: true, clients: []mSpec{cas("a", "b"), leased(cas("b", "c"), 0)}, faults: 1, fifo: true, renew: true, thrifty: true},
		{name: "thrifty: two CAS from a, no faults", init: a, initFound: true, clients: []mSpec{cas("a", "b"), cas("a", "c")}, fifo: true, thrifty: true},
		{name: "thrifty: CAS then CAS under its lease, no faults, two cleanups", init: a, initFound: true, clients: []mSpec{cas("a", "b"), leased(cas("b", "c"), 0)}, cleanups: 2, fifo: true, renew: true, thrifty: true},
	}
	if big {
		cfgs = append(cfgs,
			modelConfig{name: "CAS and a linearizable read, one fault", init: a, initFound: true, clients: []mSpec{cas("a", "b"), {read: true}}, faults: 1, fifo: true},
			modelConfig{name: "put-if-absent and delete-if-version, one fault", init: a, initFound: true, clients: []mSpec{
				{cond: Condition{Kind: IfAbsent}, value: "b"},
				{cond: Condition{Kind: IfVersion, Version: a.Version}, del: true}}, faults: 1, fifo: true},
			modelConfig{name: "CAS a→b and b→c, one fault", init: a, initFound: true, clients: []mSpec{cas("a", "b"), cas("b", "c")}, faults: 1, fifo: true},
			modelConfig{name: "two CAS from a, one fault", init: a, initFound: true, clients: []mSpec{cas("a", "b"), cas("a", "c")}, faults: 1, fifo: true},
			modelConfig{name: "two CAS from a and a read, no faults", init: a, initFound: true, clients: []mSpec{cas("a", "b"), cas("a", "c"), {read: true}}, fifo: true},
			modelConfig{name: "CAS a→b and b→c, no faults, one cleanup", init: a, initFound: true, clients: []mSpec{cas("a", "b"), cas("b", "c")}, cleanups: 1, fifo: true},
			modelConfig{name: "two CAS from a, no faults, two cleanups", init: a, initFound: true, clients: []mSpec{cas("a", "b"), cas("a", "c")}, cleanups: 2, fifo: true},
			modelConfig{name: "CAS a→b and b→c, one fault, two cleanups", init: a, initFound: true, clients: []mSpec{cas("a", "b"), cas("b", "c")}, faults: 1, cleanups: 2, fifo: true},
			modelConfig{name: "CAS and a linearizable read, one fault, two cleanups", init: a, initFound: true, clients: []mSpec{cas("a", "b"), {read: true}}, faults: 1, cleanups: 2, fifo: true},
			modelConfig{name: "two CAS from a, no faults, any order", init: a, initFound: true, clients: []mSpec{cas("a", "b"), cas("a", "c")}},
			modelConfig{name: "leased CAS and a CAS from another coordinator, no faults", init: a, initFound: true, clients: []mSpec{
				cas("a", "b"), leased(cas("b", "c"), 0), cas("a", "d")}, fifo: true, renew: true, attempts: 1},
			modelConfig{name: "leased CAS and a CAS from another coordinator, one fault", init: a, initFound: true, clients: []mSpec{
				cas("a", "b"), leased(cas("b", "c"), 0), cas("a", "d")}, faults: 1, fifo: true, renew: true, attempts: 1},
			modelConfig{name: "CAS asking for a lease and a linearizable read, one fault", init: a, initFound: true, clients: []mSpec{
				cas("a", "b"), {read: true}}, faults: 1, fifo: true, renew: true},
			modelConfig{name: "three CAS each under the last one's lease, no faults", init: a, initFound: true, clients: []mSpec{
				cas("a", "b"), leased(cas("b", "c"), 0), leased(cas("c", "d"), 1)}, fifo: true, renew: true},
			modelConfig{name: "CAS then CAS under its lease, no faults, any order", init: a, initFound: true, clients: []mSpec{
				cas("a", "b"), leased(cas("b", "c"), 0)}, renew: true},
			modelConfig{name: "leased op whose condition fails, and a CAS from another coordinator, no faults", init: a, initFound: true, clients: []mSpec{
				cas("a", "b"), leased(cas("a", "x"), 0), cas("b", "d")}, fifo: true, renew: true, attempts: 1},
			modelConfig{name: "two CAS from a asking for leases, one fault", init: a, initFound: true, clients: []mSpec{cas("a", "b"), cas("a", "c")}, faults: 1, fifo: true, renew: true},
			modelConfig{name: "thrifty: two CAS from a asking for leases, one fault", init: a, initFound: true, clients: []mSpec{cas("a", "b"), cas("a", "c")}, faults: 1, fifo: true, renew: true, thrifty: true},
			modelConfig{name: "thrifty: CAS asking for a lease and a linearizable read, one fault", init: a, initFound: true, clients: []mSpec{
				cas("a", "b"), {read: true}}, faults: 1, fifo: true, renew: true, thrifty: true},
			modelConfig{name: "thrifty: leased CAS and a CAS from another coordinator, one fault", init: a, initFound: true, clients: []mSpec{
				cas("a", "b"), leased(cas("b", "c"), 0), cas("a", "d")}, faults: 1, fifo: true, renew: true, attempts: 1, thrifty: true},
			modelConfig{name: "thrifty: CAS a→b and b→c, no faults, one cleanup", init: a, initFound: true, clients: []mSpec{cas("a", "b"), cas("b", "c")}, cleanups: 1, fifo: true, thrifty: true},
		)
	}
	return cfgs
}

// TestModelExhaustive explores every interleaving of small models; see
// the comment at the top of this file. PAXOS_MODEL_BIG=1 adds models with
// more faults and clients (minutes); PAXOS_MODEL_ONLY=substring picks models
// by name, PAXOS_MODEL_ATTEMPTS sets the rounds per operation (default 2).
func TestModelExhaustive(t *testing.T) {
	big := os.Getenv("PAXOS_MODEL_BIG") != ""
	if big {
		if n, err := strconv.Atoi(os.Getenv("PAXOS_MODEL_ATTEMPTS")); err == nil {
			modelMaxAttempts = n
		}
	}
	total := 0
	only := os.Getenv("PAXOS_MODEL_ONLY") // a substring of the models' names
	for _, cfg := range modelConfigs(big) {
		if !strings.Contains(cfg.name, only) {
			continue
		}
		st := explore(t, cfg, modelLimit)
		total += st.states
		t.Logf("%s: %d states, %d transitions, %d final states, %d crashes losing unsynced commits, %d states forgotten, %d ops started under a lease (outcomes: %d applied, %d not applied, %d unknown, %d failed)",
			cfg.name, st.states, st.transitions, st.finals, st.crashes, st.cleanups, st.leased, st.applied, st.notApplied, st.unknown, st.failed)
	}
	t.Logf("total: %d states", total)
}

var modelLimit = func() int {
	if n, err := strconv.Atoi(os.Getenv("PAXOS_MODEL_LIMIT")); err == nil {
		return n
	}
	return 300_000
}()

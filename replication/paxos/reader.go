package paxos

import (
	"fmt"

	"github.com/adaptkv/adaptkv/storage"
)

// Reader is one linearizable read as a state machine, in the manner of ABD
// (see "# Linearizable reads" in doc.go): it asks a quorum of the replicas
// (the first ones of its list, which the shell orders nearest first) for
// their record and acceptor state (MsgRead), asks the others only when one
// of those fails or the round's timer fires first, and once a quorum has
// answered
//
//   - answers at once when they agree on the record and none holds a
//     proposal in progress: one round;
//   - escalates to a Paxos read (Effects.Escalate) when one holds a proposal
//     in progress, which may have been chosen and answered to its client;
//   - otherwise writes the newest record back to those behind (MsgCommit at
//     the highest committed ballot seen) and answers once a quorum holds it.
type Reader struct {
	replicas []string
	quorum   int
	round    int
	phase    readerPhase
	replies  []replyState
	acks     int
	failed   int
	need     int
	asked    int
	cur      storage.Record
	found    bool
	out      Outcome
	// widened says the read asked every replica after its timer fired:
	// the next timeout ends it.
	widened bool
}

type readerPhase uint8

const (
	readerIdle readerPhase = iota
	readerReading
	readerWritingBack
	readerDone
)

// NewReader returns the op reading a key from its replicas.
func NewReader(replicas []string) *Reader {
	return &Reader{replicas: replicas, quorum: len(replicas)/2 + 1, replies: make([]replyState, len(replicas))}
}

// Start asks the first quorum of the replicas.
func (r *Reader) Start() Effects {
	r.round, r.phase, r.need, r.asked = 1, readerReading, r.quorum, 0
	eff := Effects{Timer: r.round}
	r.askMore(&eff, r.quorum)
	return eff
}

// askMore sends MsgRead to up to n replicas not asked yet.
func (r *Reader) askMore(eff *Effects, n int) {
	if eff.Send == nil {
		eff.Send = make([]Message, 0, n)
	}
	for ; n > 0 && r.asked < len(r.replicas); n-- {
		eff.Send = append(eff.Send, Message{To: r.replicas[r.asked], Round: r.round, Kind: MsgRead})
		r.asked++
	}
}

// total is how many replicas the current phase may still hear from, asked
// or not: every replica while reading, those written back to after.
func (r *Reader) total() int {
	if r.phase == readerReading {
		return len(r.replicas)
	}
	return r.asked
}

// Step takes an EvRead, EvCommitted or EvTimeout and returns what to do.
// A read that fails (too few answers before the timeout) changed nothing
// the client can see, and ends with ErrUnavailable.
func (r *Reader) Step(ev Event) Effects {
	if ev.Round != r.round || r.phase == readerDone || r.phase == readerIdle {
		return Effects{}
	}
	if ev.Kind == EvTimeout {
		if r.phase == readerReading && !r.widened && r.asked < len(r.replicas) {
			// Slow or lost answers: ask the rest too, once, and wait
			// another timeout for any quorum of them.
			r.widened = true
			eff := Effects{Timer: r.round}
			r.askMore(&eff, len(r.replicas))
			return eff
		}
		return r.answer(Outcome{Err: fmt.Errorf("%w: %d of %d answers before the timeout", ErrUnavailable, r.acks, r.need)})
	}
	i := indexOf(r.replicas, ev.From)
	if i < 0 || r.replies[i].got {
		return Effects{}
	}
	want := EvRead
	if r.phase == readerWritingBack {
		want = EvCommitted
	}
	if ev.Kind != want {
		return Effects{}
	}
	rs := &r.replies[i]
	rs.got = true
	if ev.Err != nil {
		r.failed++
	} else {
		r.acks++
		rs.ok, rs.prom, rs.rec, rs.found = true, ev.Promise, ev.Record, ev.Found
	}
	if r.acks >= r.need {
		if r.phase == readerReading {
			return r.gathered()
		}
		return r.answer(r.current())
	}
	if r.total()-r.failed < r.need {
		return r.answer(Outcome{Err: fmt.Errorf("%w: %d of %d replicas failed", ErrUnavailable, r.failed, r.total())})
	}
	if ev.Err != nil && r.phase == readerReading {
		// One of the quorum asked failed: ask one more in its place.
		var eff Effects
		r.askMore(&eff, 1)
		return eff
	}
	return Effects{}
}

func (r *Reader) current() Outcome {
	if !r.found || r.cur.Tombstone {
		return Outcome{}
	}
	return Outcome{Record: r.cur, Found: true}
}

func (r *Reader) answer(out Outcome) Effects {
	r.phase = readerDone
	r.out = out
	return Effects{Done: &r.out, Finished: true}
}

// gathered decides on a quorum of answers.
func (r *Reader) gathered() Effects {
	var maxCommitted Ballot
	for _, rs := range r.replies {
		if rs.ok {
			maxCommitted = maxBallot(maxCommitted, rs.prom.Committed)
			if rs.found && (!r.found || r.cur.Version.Less(rs.rec.Version)) {
				r.cur, r.found = rs.rec, true
			}
		}
	}
	for _, rs := range r.replies {
		a := rs.prom.Accepted
		if rs.ok && !a.IsZero() && !a.Noop && maxCommitted.Less(a.Ballot) {
			// A proposal above every commit the quorum saw: it may be
			// chosen, and its client told so, with no replica's record
			// showing it yet. Only a Paxos round can settle it.
			r.phase = readerDone
			return Effects{Escalate: true, Finished: true}
		}
	}
	if !r.found {
		return r.answer(Outcome{})
	}
	var behind []string
	upToDate := 0
	for i, rs := range r.replies {
		if !rs.ok {
			continue
		}
		if rs.found && !rs.rec.Version.Less(r.cur.Version) {
			upToDate++
		} else {
			behind = append(behind, r.replicas[i])
		}
	}
	if upToDate >= r.quorum {
		return r.answer(r.current())
	}
	r.round++
	r.phase = readerWritingBack
	r.need, r.asked, r.acks, r.failed = r.quorum-upToDate, len(behind), 0, 0
	for i := range r.replies {
		r.replies[i] = replyState{}
	}
	eff := Effects{Timer: r.round}
	for _, to := range behind {
		eff.Send = append(eff.Send, Message{To: to, Round: r.round, Kind: MsgCommit, Proposal: Proposal{Ballot: maxCommitted, Record: r.cur}})
	}
	return eff
}

package replication

import (
	"errors"
	"fmt"
	"slices"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// writeOp is one write (a put or a delete, already versioned) as a state
// machine; see core.go.
//
// An attempt sends the record to every alive replica of the key and to the
// added replicas of a growing keyspace, and is acknowledged once W of the
// counted replicas and every added one have it, the hints of the replicas
// that lack it are stored, and the lease (fenced keyspaces) still holds at
// the attempt's epoch. A replica's refusal of a stale epoch, when it costs
// the quorum, runs the write again, with the same version, once this node
// has caught up; so does an epoch that moved under way.
//
// Hints are stored only once some replica has acknowledged the attempt,
// and then at once, concurrently with the replica writes still in flight.
// The guarantee: a write acknowledged to the client has the hints of every
// replica that was dead, or had failed before the quorum was reached, on
// the coordinator's disk; failures after that are hinted in the background.
// Why not before the fan-out? That made every write with a dead replica pay
// a hint fsync before anything was sent, and left hints for writes no
// replica then accepted: when every replica refused an attempt (a newer
// epoch) the write took effect nowhere, and if its retry failed definitely
// the hints would still have delivered a write the client was told had
// failed. Why wait for them before acknowledging? At W=1 with the other
// replicas down the hint is the only record that they lack the write; a
// coordinator crash just after the acknowledgement would otherwise leave
// that to anti-entropy. A write no replica acknowledged leaves no hint:
// refused, it took effect nowhere (a retry resends it); failed or timed
// out, its outcome is unknown, and read repair and anti-entropy settle
// whatever part of it landed.
type writeOp struct {
	self     string
	keyspace string
	rec      storage.Record
	metrics  *Metrics

	attempt int
	cur     *writeAttempt
	// sent is every replica write of the op, by id-1, with its attempt:
	// the replies of an attempt given up on still become hints. inFlight
	// counts those not answered yet.
	sent     []writeSend
	inFlight int
	// hintsOut says, by id-1, which hint batches are being stored;
	// hintWait is the last batch an acknowledgement waits for.
	hintsOut []bool
	hintWait int
	phase    writePhase
	first    writeAttempt
	ans      answer
}

// writeSend is a replica write: its attempt, its target, and whether it
// was answered.
type writeSend struct {
	a       *writeAttempt
	to      string
	replied bool
}

type writePhase uint8

const (
	writePlanning writePhase = iota
	writeGathering
	writeHinting  // won: waiting for the hints started so far
	writeChecking // waiting for the lease check
	writeCatchingUp
	writeAnswered
)

// writeAttempt is one attempt's state.
type writeAttempt struct {
	plan    *opPlan
	mut     *kvpb.Mutation
	tally   quorum.Tally
	verdict quorum.Verdict
	newest  uint64
	// pendingLeft counts the added replicas yet to answer; pendingErr is
	// the first of them that did not acknowledge.
	pendingLeft int
	pendingErr  error
	// acked is set at the attempt's first acknowledgement; held are the
	// hint targets waiting for it.
	acked bool
	held  []string
}

// newWriteOp returns the op for writing rec (its version assigned).
func newWriteOp(self, keyspace string, rec storage.Record, m *Metrics) *writeOp {
	return &writeOp{self: self, keyspace: keyspace, rec: rec, metrics: m}
}

func (o *writeOp) begin() effects {
	o.attempt = 1
	return effects{plan: true}
}

func (o *writeOp) step(ev event) effects {
	switch ev.kind {
	case evPlanned:
		if o.phase == writePlanning {
			return o.planned(ev.plan, ev.err)
		}
	case evReply:
		return o.replied(ev.reply)
	case evHintsStored:
		if ev.hint >= 1 && ev.hint <= len(o.hintsOut) {
			o.hintsOut[ev.hint-1] = false
		}
		if o.phase == writeHinting {
			return o.hinted()
		}
		return o.maybeFinish(effects{})
	case evDeadline:
		if o.phase == writeGathering {
			a := o.cur
			return o.answer(a.receipt(), fmt.Errorf("write: %d of %d required replicas acknowledged before %w", a.tally.Acks(), a.plan.pol.W, ev.err), false)
		}
		// A write that has its quorum waits for its hints, bounded by the
		// replica timeout, rather than answer an unknown outcome.
	case evLeaseChecked:
		if o.phase == writeChecking {
			return o.leaseChecked(ev.err)
		}
	case evCaughtUp:
		if o.phase == writeCatchingUp {
			if ev.err != nil {
				return o.answer(o.cur.receipt(), ev.err, false)
			}
			return o.retry()
		}
	}
	return effects{}
}

func (a *writeAttempt) receipt() Receipt {
	return Receipt{Policy: a.plan.pol, Acked: a.tally.Acks(), Epoch: a.plan.ks.Epoch}
}

func (o *writeOp) retry() effects {
	o.attempt++
	o.phase = writePlanning
	return effects{plan: true}
}

func (o *writeOp) planned(p *opPlan, err error) effects {
	if err != nil {
		var le *LeaseError
		if o.attempt > 1 && errors.As(err, &le) {
			// An earlier attempt was sent: some replicas may hold it.
			le.Lost = true
		}
		return o.answer(Receipt{}, err, false)
	}
	rcpt := Receipt{Policy: p.pol, Epoch: p.ks.Epoch}
	if len(p.alive) < p.pol.W {
		if o.attempt > 1 {
			// Not a definite failure: the first attempt was sent.
			return o.answer(rcpt, &QuorumError{Op: "write", Answered: len(p.alive), Required: p.pol.W, Err: ErrQuorumNotReached,
				Detail: "too few replicas alive for a retry after a newer configuration epoch; an earlier attempt may have been applied"}, false)
		}
		return o.answer(rcpt, &QuorumError{Op: "write", Answered: len(p.alive), Required: p.pol.W, Err: ErrNotEnoughReplicas}, false)
	}
	if len(p.pendingDead) > 0 {
		// While the keyspace grows, an acknowledged write must be on every
		// added replica; one is down, so nothing is sent and the failure is
		// definite. The tuner abandons a grow whose streaming cannot reach
		// every node, which ends this.
		return o.answer(rcpt, &QuorumError{Op: "write", Answered: len(p.alive), Required: p.pol.W, Err: ErrNotEnoughReplicas,
			Detail: fmt.Sprintf("keyspace %q is growing to N=%d and added replica %s is down; a write must reach every added replica", o.keyspace, p.ks.PendingN, p.pendingDead[0])}, false)
	}
	mut := &kvpb.Mutation{Keyspace: o.keyspace, Epoch: p.ks.Epoch, Record: RecordToPB(o.rec)}
	req := &kvpb.ReplicaWriteRequest{Mutations: []*kvpb.Mutation{mut}, From: o.self}
	a := &o.first
	if o.attempt > 1 {
		a = &writeAttempt{}
	}
	*a = writeAttempt{plan: p, mut: mut, tally: quorum.NewTally(p.pol.W, len(p.alive)),
		verdict: quorum.Pending, pendingLeft: len(p.pendingAlive)}
	o.cur, o.phase = a, writeGathering
	eff := effects{sends: make([]send, 0, len(p.ranked)+len(p.pendingAlive))}
	// The dead replicas' hints wait for the first acknowledgement.
	a.held = append(a.held, p.dead...)
	for rank, id := range p.ranked {
		eff.sends = append(eff.sends, o.newSend(a, id, rank, true, req))
	}
	// Added replicas get the write too. They do not count towards W, nor
	// feed the tuner's per-rank latencies (which describe the counted
	// ones), but the write is acknowledged only once every one of them has
	// it: the grown configuration counts them in read quorums as soon as
	// streaming ends, and a write that reached an added replica only as a
	// hint could be missed by such a read.
	for _, id := range p.pendingAlive {
		eff.sends = append(eff.sends, o.newSend(a, id, -1, false, req))
	}
	return eff
}

func (o *writeOp) newSend(a *writeAttempt, to string, rank int, observe bool, req *kvpb.ReplicaWriteRequest) send {
	o.sent = append(o.sent, writeSend{a: a, to: to})
	o.inFlight++
	return send{id: len(o.sent), to: to, kind: sendWrite, rank: rank, observe: observe, detached: true, write: req}
}

// writeResult reads a replica's answer to a one-mutation write.
func writeResult(to string, r reply) (ok bool, known uint64, err error) {
	if r.err != nil {
		return false, 0, r.err
	}
	res := r.write.GetResults()
	if len(res) != 1 {
		return false, 0, fmt.Errorf("replica %s answered %d results for 1 mutation", to, len(res))
	}
	if !res[0].GetOk() {
		return false, res[0].GetKnownEpoch(), errors.New(res[0].GetError())
	}
	return true, 0, nil
}

func (o *writeOp) replied(r reply) effects {
	if r.id < 1 || r.id > len(o.sent) || o.sent[r.id-1].replied {
		return effects{}
	}
	ws := &o.sent[r.id-1]
	ws.replied = true
	o.inFlight--
	a, to := ws.a, ws.to
	acked, known, err := writeResult(to, r)
	var eff effects
	// Every reply, of any attempt and after the answer too, acknowledges
	// the attempt's hints or becomes one.
	if acked {
		eff.merge(o.ack(a))
	} else {
		o.metrics.ReplicaErrors.Add(1)
		if known > a.plan.ks.Epoch {
			eff.noteEpoch = known
		}
		eff.merge(o.hint(a, to))
	}
	if a != o.cur || o.phase != writeGathering {
		return o.maybeFinish(eff)
	}
	if i := indexOf(a.plan.alive, to); i >= 0 {
		a.verdict = a.tally.Record(i, acked)
	} else {
		a.pendingLeft--
		if !acked && a.pendingErr == nil {
			a.pendingErr = fmt.Errorf("added replica %s did not acknowledge (keyspace growing to N=%d; a write must reach every added replica): %w", to, a.plan.ks.PendingN, err)
		}
	}
	a.newest = max(a.newest, known)
	if a.verdict == quorum.Pending || (a.verdict == quorum.Won && a.pendingLeft > 0 && a.pendingErr == nil) {
		return eff
	}
	eff.merge(o.gathered())
	return eff
}

// gathered decides an attempt whose quorum is decided.
func (o *writeOp) gathered() effects {
	a := o.cur
	if a.verdict == quorum.Won && a.pendingErr == nil {
		o.phase = writeHinting
		o.hintWait = len(o.hintsOut)
		return o.hinted()
	}
	if a.newest > a.plan.ks.Epoch && o.attempt < maxEpochAttempts {
		o.phase = writeCatchingUp
		o.metrics.EpochRetries.Add(1)
		return effects{catchUp: a.newest}
	}
	if a.verdict == quorum.Won {
		return o.answer(a.receipt(), &QuorumError{Op: "write", Answered: a.tally.Acks(), Required: a.plan.pol.W, Err: ErrQuorumNotReached, Detail: a.pendingErr.Error()}, false)
	}
	return o.answer(a.receipt(), &QuorumError{Op: "write", Answered: a.tally.Acks(), Required: a.plan.pol.W, Err: ErrQuorumNotReached}, false)
}

// hinted goes on to the lease check once the hints an acknowledgement waits
// for are stored; hints started after the quorum are not waited for.
func (o *writeOp) hinted() effects {
	for _, out := range o.hintsOut[:o.hintWait] {
		if out {
			return effects{}
		}
	}
	o.phase = writeChecking
	return effects{checkLease: &o.cur.plan.ks}
}

func (o *writeOp) leaseChecked(err error) effects {
	if err == nil {
		return o.answer(o.cur.receipt(), nil, true)
	}
	if movedOn(err) && o.attempt < maxEpochAttempts {
		// Acknowledged under the epoch before: send it again, with the
		// same version, under the one in force.
		o.metrics.EpochRetries.Add(1)
		return o.retry()
	}
	return o.answer(o.cur.receipt(), err, false)
}

// ack records an acknowledgement of a's write; the first one stores the
// hints held until then.
func (o *writeOp) ack(a *writeAttempt) effects {
	if a.acked {
		return effects{}
	}
	a.acked = true
	targets := a.held
	a.held = nil
	return o.storeHints(a, targets)
}

// hint records that target lacks a's write: a hint now if a replica has
// acknowledged, else at the first acknowledgement.
func (o *writeOp) hint(a *writeAttempt, target string) effects {
	if !a.acked {
		a.held = append(a.held, target)
		return effects{}
	}
	return o.storeHints(a, []string{target})
}

func (o *writeOp) storeHints(a *writeAttempt, targets []string) effects {
	// A coordinator does not hint itself: its own write failed locally,
	// and a hint in the same engine would fail the same way.
	targets = slices.DeleteFunc(slices.Clone(targets), func(id string) bool { return id == o.self })
	if len(targets) == 0 {
		return effects{}
	}
	o.hintsOut = append(o.hintsOut, true)
	return effects{hints: []hintBatch{{id: len(o.hintsOut), targets: targets, mut: a.mut}}}
}

func (o *writeOp) answer(rcpt Receipt, err error, observe bool) effects {
	o.phase = writeAnswered
	o.ans = answer{err: err, receipt: rcpt, observe: observe}
	return o.maybeFinish(effects{done: &o.ans})
}

// maybeFinish marks eff finished once the op has answered and every
// replica request has replied: nothing is left to turn into a hint. Hint
// batches still being stored are not waited for.
func (o *writeOp) maybeFinish(eff effects) effects {
	if o.phase == writeAnswered && o.inFlight == 0 {
		eff.finished = true
	}
	return eff
}

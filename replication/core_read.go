package replication

import (
	"fmt"
	"slices"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// readOp is one read as a state machine; see core.go.
//
// An attempt asks the R first replicas of the ranked order (every alive one
// when the plan says readAll), the next one when one fails, and one more
// when the hedge timer fires first. Only the first replica asked returns the
// value; the others, there to be compared (a quorum's other members, or the
// extra replicas of read repair and the tuner's probes), return digests
// (key, version, tombstone). When every reply agrees, or the first holds the
// newest version, that is the whole read; otherwise the value is fetched
// from a replica that holds the newest (the fetch phase), as it is when the
// first replica fails at R=1 and the next one answered with a digest. A
// hedged read, where any reply may be the answer, asks for values
// everywhere.
//
// A session read (min set) is satisfied only when the newest version among
// the replies is at least min: replicas behind the session count towards R
// but cannot be the answer, so once R have answered and none is new enough,
// the op waits for the replicas still asked, then asks the next one in rank
// order, until one is (the read goes on from there as usual, repairing the
// ones behind) or none is left: then it fails with ErrSessionBehind rather
// than answer older data.
//
// Once R have answered, the op writes the winner to the stale ones among
// them (foreground read repair), checks the lease, and answers. Replies that
// arrive after the answer are compared in the background: the tuner hears
// whether the answer was stale (a probe), and stale replicas are repaired.
type readOp struct {
	self     string
	keyspace string
	key      []byte
	metrics  *Metrics
	// start is when the read began, for the probe: a newer version stamped
	// later than start − the plan's ackDelay belongs to a write most likely
	// still in flight when the read began, not evidence of a stale answer.
	start time.Time
	// min is a session's floor for the key (Consistency.MinVersion): the
	// read answers only with this version or a newer one. Zero: no session.
	min storage.Version

	attempt int
	phase   readPhase
	a       *readAttempt
	// sent is every request of the op, by id-1; a reply to one of an
	// earlier attempt, or answered already, is ignored.
	sent []readSend
	// first is the first attempt, kept inline: one allocation less on
	// every read.
	first readAttempt
	ans   answer
}

type readPhase uint8

const (
	readPlanning readPhase = iota
	readGathering
	readFetching // the newest version came from digests only: fetch its value
	readRepairing
	readChecking
	readCatchingUp
	readBackground // answered; comparing (and repairing) the late replies
	readFinished
)

// readPurpose says why a read-op request was sent.
type readPurpose uint8

const (
	forGather readPurpose = iota
	forFetch
	forRepair
)

// readSend is a request of the op: what it was for, to whom, in which
// attempt, and whether its reply came.
type readSend struct {
	purpose readPurpose
	to      string
	kind    sendKind
	attempt int
	replied bool
}

// readReply is a replica's answer to a gather or fetch read.
type readReply struct {
	id    string
	found bool
	rec   storage.Record // without its value when digest
	// digest: the reply to a digest read, whose record has no value.
	digest bool
	known  uint64
	err    error
}

// readAttempt is one attempt's state.
type readAttempt struct {
	plan    *opPlan
	order   []string
	asked   int
	digests bool
	fullOut int // value reads sent and not answered yet
	tally   quorum.Tally
	verdict quorum.Verdict
	got     []readReply
	newest  uint64
	rcpt    Receipt

	winner storage.Record
	found  bool
	// fetchFrom are the replies still to try for the winner's value;
	// fetchLast is the last failure.
	fetchFrom []readReply
	fetchLast error
	fetchLate bool // the fetch is the background one, after the answer
	// repairsOut counts repair writes in flight; repaired those that
	// succeeded.
	repairsOut int
	repaired   int
	// late are the gather replies that came after the answer.
	late        []readReply
	outstanding int
}

// newReadOp returns the op for reading key; start is when the read began.
func newReadOp(self, keyspace string, key []byte, start time.Time, m *Metrics) *readOp {
	return &readOp{self: self, keyspace: keyspace, key: key, start: start, metrics: m}
}

func (o *readOp) begin() effects {
	o.attempt = 1
	return effects{plan: true}
}

func (o *readOp) step(ev event) effects {
	switch ev.kind {
	case evPlanned:
		if o.phase == readPlanning {
			return o.planned(ev.plan, ev.err)
		}
	case evReply:
		return o.replied(ev.reply)
	case evHedge:
		a := o.a
		if o.phase == readGathering && a.verdict == quorum.Pending && a.asked < len(a.order) {
			o.metrics.Hedges.Add(1)
			return effects{sends: []send{o.sendGather(a.asked, false)}}
		}
	case evDeadline:
		switch o.phase {
		case readGathering:
			if o.a.verdict == quorum.Won {
				// A session read still looking for a replica new enough.
				return o.sessionBehind(ev.err)
			}
			return o.answer(fmt.Errorf("read: %d of %d required replicas answered before %w", o.a.tally.Acks(), o.a.plan.pol.R, ev.err), Receipt{Policy: o.a.rcpt.Policy, Epoch: o.a.rcpt.Epoch})
		case readFetching, readRepairing:
			return o.answer(fmt.Errorf("read: %w", ev.err), o.a.rcpt)
		}
	case evLeaseChecked:
		if o.phase == readChecking {
			return o.leaseChecked(ev.err)
		}
	case evCaughtUp:
		if o.phase == readCatchingUp {
			if ev.err != nil {
				return o.answer(ev.err, o.a.rcpt)
			}
			return o.retry()
		}
	}
	return effects{}
}

func (o *readOp) retry() effects {
	o.attempt++
	o.phase = readPlanning
	return effects{plan: true}
}

func (o *readOp) planned(p *opPlan, err error) effects {
	if err != nil {
		return o.answer(err, Receipt{})
	}
	a := &o.first
	if o.attempt > 1 {
		a = &readAttempt{}
	}
	*a = readAttempt{plan: p, order: p.ranked, rcpt: Receipt{Policy: p.pol, Epoch: p.ks.Epoch}}
	o.a, o.phase = a, readGathering
	if len(p.alive) < p.pol.R {
		return o.answer(&QuorumError{Op: "read", Answered: len(p.alive), Required: p.pol.R, Err: ErrNotEnoughReplicas}, a.rcpt)
	}
	hedgeAfter := p.ks.HedgeAfter
	n := p.pol.R
	if p.readAll {
		n = len(a.order)
	}
	a.digests = hedgeAfter == 0
	a.tally = quorum.NewTally(p.pol.R, len(a.order))
	a.verdict = quorum.Pending
	// The local replica, when it is first, is read inline (a hedged read
	// must not wait on a local read).
	local := a.order[0] == o.self && hedgeAfter == 0
	eff := effects{sends: make([]send, 0, n)}
	for rank := range n {
		eff.sends = append(eff.sends, o.sendGather(rank, rank == 0 && local))
	}
	if hedgeAfter > 0 && a.asked < len(a.order) {
		eff.hedge = hedgeAfter
	}
	return eff
}

// sendGather asks the replica of the given rank, the next one.
func (o *readOp) sendGather(rank int, inline bool) send {
	a := o.a
	a.asked++
	kind := sendRead
	if a.digests && rank > 0 {
		kind = sendDigest
	} else {
		a.fullOut++
	}
	to := a.order[rank]
	id := o.track(readSend{purpose: forGather, to: to, kind: kind})
	return send{id: id, to: to, kind: kind, rank: rank, observe: true, inline: inline, detached: true,
		read: &kvpb.ReplicaReadRequest{Keyspace: o.keyspace, Epoch: a.plan.ks.Epoch, Key: o.key, From: o.self, Digest: kind == sendDigest}}
}

// sendFetch reads one replica's full record of the key.
func (o *readOp) sendFetch(to string) send {
	a := o.a
	id := o.track(readSend{purpose: forFetch, to: to, kind: sendRead})
	return send{id: id, to: to, kind: sendRead, detached: true,
		read: &kvpb.ReplicaReadRequest{Keyspace: o.keyspace, Epoch: a.plan.ks.Epoch, Key: o.key, From: o.self}}
}

// sendRepair writes rec to one replica.
func (o *readOp) sendRepair(to string, rec storage.Record) send {
	a := o.a
	id := o.track(readSend{purpose: forRepair, to: to, kind: sendWrite})
	a.repairsOut++
	return send{id: id, to: to, kind: sendWrite, detached: true,
		write: &kvpb.ReplicaWriteRequest{
			Mutations: []*kvpb.Mutation{{Keyspace: o.keyspace, Epoch: a.plan.ks.Epoch, Record: RecordToPB(rec)}},
			From:      o.self,
		}}
}

// track records a request of the current attempt and returns its id.
func (o *readOp) track(s readSend) int {
	s.attempt = o.attempt
	o.sent = append(o.sent, s)
	return len(o.sent)
}

// toReadReply reads a replica's answer to a read.
func toReadReply(s readSend, r reply) readReply {
	rr := readReply{id: s.to, err: r.err, digest: s.kind == sendDigest}
	if r.err != nil {
		return rr
	}
	switch {
	case r.read.GetKnownEpoch() > 0:
		rr.known, rr.err = r.read.GetKnownEpoch(), ErrStaleEpoch
	case r.read.GetFound():
		rr.found, rr.rec = true, RecordFromPB(r.read.GetRecord())
	}
	return rr
}

func (o *readOp) replied(r reply) effects {
	if r.id < 1 || r.id > len(o.sent) {
		return effects{}
	}
	s := &o.sent[r.id-1]
	if s.replied || s.attempt != o.attempt || o.phase == readFinished {
		// An earlier attempt's, or after the op finished: nothing to do.
		return effects{}
	}
	s.replied = true
	a := o.a
	switch s.purpose {
	case forGather:
		rr := toReadReply(*s, r)
		if o.phase == readBackground {
			return o.lateReply(rr)
		}
		if o.phase != readGathering {
			// Gathered already, being fetched or repaired: the reply is a
			// late one, compared in the background after the answer.
			a.late = append(a.late, rr)
			return effects{}
		}
		return o.gatherReply(rr)
	case forFetch:
		return o.fetchReply(*s, r)
	default:
		ok, known, err := writeResult(s.to, r)
		return o.repairReply(ok, known, err)
	}
}

func (o *readOp) gatherReply(rr readReply) effects {
	a := o.a
	var eff effects
	if !rr.digest {
		a.fullOut--
	}
	if rr.err != nil {
		o.metrics.ReplicaErrors.Add(1)
		a.newest = max(a.newest, rr.known)
		if a.verdict == quorum.Pending && a.asked < len(a.order) {
			eff.sends = append(eff.sends, o.sendGather(a.asked, false))
		}
	} else {
		a.got = append(a.got, rr)
	}
	a.verdict = a.tally.Record(indexOf(a.order, rr.id), rr.err == nil)
	if a.verdict == quorum.Won && !o.sessionMet() {
		eff.merge(o.askBeyondQuorum())
		return eff
	}
	if a.verdict == quorum.Pending || o.awaitValue() {
		return eff
	}
	eff.merge(o.gathered())
	return eff
}

// sessionMet reports whether the replies so far hold the session's version
// of the key or a newer one.
func (o *readOp) sessionMet() bool {
	if o.min.IsZero() {
		return true
	}
	w, found := newestOf(o.a.got)
	return found && !w.Version.Less(o.min)
}

// askBeyondQuorum goes on with a session read whose quorum answered behind
// the session: it waits for the replicas asked already, then asks the next
// alive one in rank order, and fails when none is left.
func (o *readOp) askBeyondQuorum() effects {
	a := o.a
	if a.asked > a.tally.Answered() {
		return effects{}
	}
	if a.asked < len(a.order) {
		o.metrics.SessionSkips.Add(1)
		return effects{sends: []send{o.sendGather(a.asked, false)}}
	}
	return o.sessionBehind(nil)
}

// sessionBehind fails a session read that found no replica new enough;
// cause is the deadline's error when it ended the search.
func (o *readOp) sessionBehind(cause error) effects {
	a := o.a
	o.metrics.SessionBehind.Add(1)
	have := "none of them holds the key"
	if w, found := newestOf(a.got); found {
		have = fmt.Sprintf("the newest they hold is %d.%d", w.Version.Timestamp, w.Version.Node)
	}
	err := fmt.Errorf("read: %d of %d alive replicas answered and %s, older than the session's %d.%d: %w",
		len(a.got), len(a.order), have, o.min.Timestamp, o.min.Node, ErrSessionBehind)
	if cause != nil {
		err = fmt.Errorf("%w (the rest did not answer before %w)", err, cause)
	}
	rcpt := a.rcpt
	rcpt.Acked = a.tally.Acks()
	return o.answer(err, rcpt)
}

// awaitValue: a quorum of digests that the value read has not caught up
// with yet waits for it (it is on its way) rather than fetching the value
// again: at R=1 with the compared replicas asked too, a digest often
// arrives first.
func (o *readOp) awaitValue() bool {
	a := o.a
	w, found := newestOf(a.got)
	return a.verdict == quorum.Won && a.fullOut > 0 && found && needsValue(w, a.got)
}

// gathered decides an attempt whose quorum is decided.
func (o *readOp) gathered() effects {
	a := o.a
	a.rcpt.Acked = a.tally.Acks()
	if a.verdict == quorum.Lost {
		if a.newest > a.plan.ks.Epoch && o.attempt < maxEpochAttempts {
			o.phase = readCatchingUp
			o.metrics.EpochRetries.Add(1)
			return effects{catchUp: a.newest}
		}
		return o.answer(&QuorumError{Op: "read", Answered: a.tally.Acks(), Required: a.plan.pol.R, Err: ErrQuorumNotReached}, a.rcpt)
	}
	var eff effects
	if a.newest > a.plan.ks.Epoch {
		eff.noteEpoch = a.newest
	}
	a.outstanding = a.asked - a.tally.Answered()
	a.winner, a.found = newestOf(a.got)
	if a.found && needsValue(a.winner, a.got) {
		o.metrics.DigestFetches.Add(1)
		o.phase = readFetching
		eff.merge(o.startFetch(a.got, false))
		return eff
	}
	eff.merge(o.repairForeground())
	return eff
}

// startFetch reads the full record from the replicas among from whose
// digest showed the winner's version, one after the other in reply order,
// until one answers it: the second round of a read whose digests disagreed
// with its full reply.
func (o *readOp) startFetch(from []readReply, background bool) effects {
	a := o.a
	a.fetchFrom, a.fetchLast, a.fetchLate = nil, nil, background
	for _, r := range from {
		if r.found && r.rec.Version == a.winner.Version {
			a.fetchFrom = append(a.fetchFrom, r)
		}
	}
	return o.fetchNext()
}

func (o *readOp) fetchNext() effects {
	a := o.a
	if len(a.fetchFrom) == 0 {
		if a.fetchLate {
			// The background fetch failed: no repair.
			return o.finish()
		}
		return o.answer(&QuorumError{Op: "read", Answered: len(a.got), Required: len(a.got),
			Err: fmt.Errorf("%w: no replica holding the newest version answered the read of its value: %w", ErrQuorumNotReached, a.fetchLast)}, a.rcpt)
	}
	to := a.fetchFrom[0].id
	a.fetchFrom = a.fetchFrom[1:]
	return effects{sends: []send{o.sendFetch(to)}}
}

func (o *readOp) fetchReply(s readSend, r reply) effects {
	a := o.a
	if o.phase != readFetching && !(o.phase == readBackground && a.fetchLate) {
		return effects{}
	}
	var eff effects
	err := r.err
	if err == nil {
		switch {
		case r.read.GetKnownEpoch() > 0:
			if k := r.read.GetKnownEpoch(); k > a.plan.ks.Epoch {
				eff.noteEpoch = k
			}
			err = ErrStaleEpoch
		case !r.read.GetFound():
			err = fmt.Errorf("replica %s no longer holds the key", s.to)
		default:
			rec := RecordFromPB(r.read.GetRecord())
			if !rec.Version.Less(a.winner.Version) {
				a.winner = rec
				if a.fetchLate {
					eff.merge(o.repairBackground())
				} else {
					eff.merge(o.repairForeground())
				}
				return eff
			}
			err = fmt.Errorf("replica %s answered version %v after its digest showed %v", s.to, rec.Version, a.winner.Version)
		}
	}
	o.metrics.ReplicaErrors.Add(1)
	a.fetchLast = err
	eff.merge(o.fetchNext())
	return eff
}

func stale(r readReply, winner storage.Record) bool {
	return !r.found || r.rec.Version.Less(winner.Version)
}

// repairForeground writes the winner to the replicas among those that
// answered that hold an older version, and waits for them, so that the
// version a quorum read returns is on a quorum before the client sees it.
func (o *readOp) repairForeground() effects {
	a := o.a
	o.phase = readRepairing
	var eff effects
	if a.found {
		eff.sends = o.repairStale(a.got)
	}
	if a.repairsOut == 0 {
		eff.merge(o.repaired())
	}
	return eff
}

// repairStale writes the winner to the replicas among rs that hold an older
// version or none.
func (o *readOp) repairStale(rs []readReply) []send {
	var sends []send
	for _, r := range rs {
		if stale(r, o.a.winner) {
			sends = append(sends, o.sendRepair(r.id, o.a.winner))
		}
	}
	return sends
}

func (o *readOp) repairReply(ok bool, known uint64, _ error) effects {
	a := o.a
	a.repairsOut--
	var eff effects
	if ok {
		a.repaired++
	} else if known > a.plan.ks.Epoch {
		eff.noteEpoch = known
	}
	if a.repairsOut > 0 {
		return eff
	}
	switch o.phase {
	case readRepairing:
		eff.merge(o.repaired())
	case readBackground:
		o.metrics.ReadRepairsBackground.Add(uint64(a.repaired))
		eff.merge(o.finish())
	}
	return eff
}

// repaired checks the lease once the foreground repairs are done.
func (o *readOp) repaired() effects {
	a := o.a
	a.rcpt.Repaired = a.repaired
	o.metrics.ReadRepairsForeground.Add(uint64(a.repaired))
	a.repaired = 0
	o.phase = readChecking
	return effects{checkLease: &a.plan.ks}
}

func (o *readOp) leaseChecked(err error) effects {
	a := o.a
	if err != nil {
		if movedOn(err) && o.attempt < maxEpochAttempts {
			// Read again under the epoch in force.
			o.metrics.EpochRetries.Add(1)
			return o.retry()
		}
		return o.answer(err, a.rcpt)
	}
	o.ans = answer{receipt: a.rcpt, observe: true, record: a.winner, found: a.found}
	eff := effects{done: &o.ans}
	// The replies still to come are compared with the answer.
	o.phase = readBackground
	if a.outstanding <= len(a.late) {
		eff.merge(o.compare())
	}
	return eff
}

// lateReply takes a gather reply that came after the answer.
func (o *readOp) lateReply(rr readReply) effects {
	a := o.a
	a.late = append(a.late, rr)
	if len(a.late) < a.outstanding {
		return effects{}
	}
	return o.compare()
}

// compare runs once every gather reply is in, after the answer: it tells
// the tuner whether the answer was stale, and repairs the replicas that
// turn out stale.
func (o *readOp) compare() effects {
	a := o.a
	var late []readReply
	var eff effects
	for _, r := range a.late {
		if r.err == nil {
			late = append(late, r)
			continue
		}
		o.metrics.ReplicaErrors.Add(1)
		if r.known > a.plan.ks.Epoch {
			eff.noteEpoch = max(eff.noteEpoch, r.known)
		}
	}
	a.late = late
	if a.outstanding > 0 {
		// Compare the answer with every replica: the tuner's measured
		// staleness (a newer version, acknowledged before the read began,
		// existed) and lag (some replica behind). Writes still in flight
		// when the read began are concurrent with it, and a read may order
		// them either way; counting them made the probes report hot keys
		// stale under write-heavy load, first those stamped after the read
		// began and then, under R=1 W=3 across zones, those stamped less
		// than a cross-zone round trip before it (1–5% of probes "stale"
		// where the clients measured none).
		p := &probe{}
		for _, r := range slices.Concat(late, a.got) {
			switch {
			case r.found && (!a.found || a.winner.Version.Less(r.rec.Version)):
				if r.rec.Version.WallTime().Add(a.plan.ackDelay).Before(o.start) {
					p.stale = true
				}
			case a.found && (!r.found || r.rec.Version.Less(a.winner.Version)):
				p.behind = true
			}
		}
		eff.probe = p
	}
	w, ok := newestOf(late)
	if ok && (!a.found || a.winner.Version.Less(w.Version)) {
		// A late replica holds something newer than what the client got (a
		// write that completed meanwhile, or a replica the answer missed):
		// spread that instead, to the early replicas too, once its value is
		// in hand (late replies are digests).
		a.winner, a.found = w, true
		a.late = append(late, a.got...)
		if needsValue(w, late) {
			eff.merge(o.startFetch(late, true))
			return eff
		}
	}
	eff.merge(o.repairBackground())
	return eff
}

// repairBackground writes the winner to the stale late replicas (and the
// early ones too when the winner came late).
func (o *readOp) repairBackground() effects {
	a := o.a
	if !a.found {
		return o.finish()
	}
	a.repaired = 0
	eff := effects{sends: o.repairStale(a.late)}
	if a.repairsOut == 0 {
		eff.merge(o.finish())
	}
	return eff
}

func (o *readOp) answer(err error, rcpt Receipt) effects {
	o.ans = answer{err: err, receipt: rcpt}
	eff := effects{done: &o.ans}
	eff.merge(o.finish())
	return eff
}

func (o *readOp) finish() effects {
	o.phase = readFinished
	return effects{finished: true}
}

// newestOf returns the newest record among the replies, preferring a full
// reply to a digest of the same version.
func newestOf(replies []readReply) (storage.Record, bool) {
	var best storage.Record
	found, bestDigest := false, false
	for _, r := range replies {
		if !r.found {
			continue
		}
		if !found || best.Version.Less(r.rec.Version) || (bestDigest && !r.digest && r.rec.Version == best.Version) {
			best, found, bestDigest = r.rec, true, r.digest
		}
	}
	return best, found
}

// needsValue reports whether winner, the newest version among the replies,
// came only from digests and is not a tombstone (a tombstone has no value
// to fetch).
func needsValue(winner storage.Record, replies []readReply) bool {
	if winner.Tombstone {
		return false
	}
	for _, r := range replies {
		if r.found && !r.digest && r.rec.Version == winner.Version {
			return false
		}
	}
	return true
}

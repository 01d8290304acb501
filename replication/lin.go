package replication

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication/paxos"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// The linearizable shell: it drives the pure ops of replication/paxos (a
// Proposer for each conditional or linearizable write, a Reader for each
// linearizable read) on real goroutines, timers and transports. Every
// decision is the op's; this file only sends, waits and feeds back.

// CondResult is the answer to a conditional (or linearizable) write.
type CondResult struct {
	// Applied says the write took effect.
	Applied bool
	// Record is, when Applied, the record written (its Version the new
	// version); otherwise the current record the condition was checked
	// against, valid when Found.
	Record storage.Record
	// Found says, when not Applied, that the key had a live record.
	Found bool
	Receipt
}

// linPlan is what a linearizable op needs of the keyspace: its replicas at
// the keyspace's epoch, and the policy its receipt reports.
type linPlan struct {
	ks       KeyspaceConfig
	pol      quorum.Policy
	replicas []string
}

// planLin plans a linearizable op on key: the first N of the key's
// preference list at the keyspace's epoch, as every other op counts them.
// It fails at once, definitely, when fewer than a majority are alive:
// a Paxos round could not succeed, and would only back off until its
// attempts ran out.
func (c *Coordinator) planLin(ctx context.Context, keyspace string, key []byte) (linPlan, error) {
	ks, _, r, err := c.planKeyspace(ctx, keyspace, Consistency{Level: quorum.Quorum})
	if err != nil {
		return linPlan{}, err
	}
	pol, err := quorum.Resolve(quorum.Linearizable, ks.N, 0, 0)
	if err != nil {
		return linPlan{}, fmt.Errorf("keyspace %q: %w: %w", keyspace, ErrInvalidRequest, err)
	}
	p := linPlan{ks: ks, pol: pol, replicas: r.PreferenceList(keyspace, key, ks.N)}
	alive := 0
	for _, id := range p.replicas {
		if c.cfg.Topology.Alive(id) {
			alive++
		}
	}
	if alive < pol.W {
		return linPlan{}, &QuorumError{Op: "linearizable", Answered: alive, Required: pol.W, Err: ErrNotEnoughReplicas}
	}
	return p, nil
}

// isLinearizable reports whether cons asks for the linearizable level,
// itself or through the keyspace's default.
func (c *Coordinator) isLinearizable(keyspace string, cons Consistency) bool {
	if cons.Level == quorum.Linearizable {
		return true
	}
	if cons.Level != quorum.Default {
		return false
	}
	ks, ok := c.cfg.Keyspaces.Keyspace(keyspace)
	return ok && ks.Default == quorum.Linearizable
}

// CondPut writes value under key if cond holds on the key's current record,
// through single-decree Paxos on the key's replicas (paxos.Condition Always
// makes it a linearizable Put). Not applied, the result carries the current
// record. Errors: ErrContended and ErrNotEnoughReplicas (or a QuorumError
// wrapping ErrQuorumNotReached with nothing written) are definite;
// ErrUnknownOutcome is not, and must not be retried blindly.
func (c *Coordinator) CondPut(ctx context.Context, keyspace string, key, value []byte, cond paxos.Condition, cons Consistency) (CondResult, error) {
	return c.condWrite(ctx, keyspace, paxos.Request{Key: key, Value: value, Cond: cond}, cons)
}

// CondDelete writes a tombstone for key if cond holds; see CondPut.
func (c *Coordinator) CondDelete(ctx context.Context, keyspace string, key []byte, cond paxos.Condition, cons Consistency) (CondResult, error) {
	return c.condWrite(ctx, keyspace, paxos.Request{Key: key, Delete: true, Cond: cond}, cons)
}

func (c *Coordinator) condWrite(ctx context.Context, keyspace string, req paxos.Request, cons Consistency) (CondResult, error) {
	if req.Cond.Kind == paxos.ReadOnly {
		return CondResult{}, fmt.Errorf("%w: a write's condition cannot be ReadOnly", ErrInvalidRequest)
	}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		p, err := c.planLin(ctx, keyspace, req.Key)
		if err != nil {
			return CondResult{}, err
		}
		// newVersion observes the session's timestamp and reads the
		// clock; the proposer raises the version above the current
		// record's itself ("# Versions" in paxos/doc.go).
		v, err := c.newVersion(cons.After)
		if err != nil {
			return CondResult{}, err
		}
		req.Node, req.Replicas, req.Backoff = v.Node, p.replicas, c.paxosBackoff(p.replicas)
		out, d, err := c.runProposer(ctx, keyspace, p, req, v.Timestamp)
		if err != nil {
			return CondResult{}, err
		}
		rcpt := Receipt{Policy: p.pol, Acked: d.res.acked, Epoch: p.ks.Epoch}
		if err := c.linError("write", out, d, p); err != nil {
			if d.res.known > p.ks.Epoch && definiteLin(err) && attempt < maxEpochAttempts {
				c.metrics.EpochRetries.Add(1)
				if cerr := c.catchUp(ctx, d.res.known); cerr != nil {
					return CondResult{Receipt: rcpt}, cerr
				}
				continue
			}
			return CondResult{Receipt: rcpt}, err
		}
		if out.Applied && c.cfg.Observer != nil {
			c.cfg.Observer.ClientWrite(keyspace, req.Key, time.Since(start))
		}
		return CondResult{Applied: out.Applied, Record: out.Record, Found: out.Found, Receipt: rcpt}, nil
	}
}

// linGet is Get at the linearizable level: a Reader, escalated to a Paxos
// read (a Proposer with Cond ReadOnly) when it finds a proposal in
// progress.
func (c *Coordinator) linGet(ctx context.Context, keyspace string, key []byte) (ReadResult, error) {
	for attempt := 1; ; attempt++ {
		p, err := c.planLin(ctx, keyspace, key)
		if err != nil {
			return ReadResult{}, err
		}
		rd := paxos.NewReader(c.readOrder(p.replicas))
		d := c.newLinDriver(ctx, keyspace, key, p)
		out := d.run(rd.Start(), rd.Step)
		if out == nil && d.res.escalate {
			if out, d, err = c.paxosRead(ctx, keyspace, key, p); err != nil {
				return ReadResult{}, err
			}
		}
		rcpt := Receipt{Policy: p.pol, Acked: d.res.acked, Epoch: p.ks.Epoch}
		if err := c.linError("read", out, d, p); err != nil {
			// A read wrote nothing of its own (its write-backs and
			// completions are other writes'), so it may always run again.
			if d.res.known > p.ks.Epoch && attempt < maxEpochAttempts && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				c.metrics.EpochRetries.Add(1)
				if cerr := c.catchUp(ctx, d.res.known); cerr != nil {
					return ReadResult{Receipt: rcpt}, cerr
				}
				continue
			}
			return ReadResult{Receipt: rcpt}, err
		}
		return ReadResult{Record: out.Record, Found: out.Found && !out.Record.Tombstone, Receipt: rcpt}, nil
	}
}

// paxosRead runs a Paxos read of key: a Proposer with Cond ReadOnly.
func (c *Coordinator) paxosRead(ctx context.Context, keyspace string, key []byte, p linPlan) (*paxos.Outcome, *linDriver, error) {
	v, err := c.newVersion(0)
	if err != nil {
		return nil, nil, err
	}
	req := paxos.Request{Key: key, Cond: paxos.Condition{Kind: paxos.ReadOnly}, Node: v.Node, Replicas: p.replicas, Backoff: c.paxosBackoff(p.replicas)}
	return c.runProposer(ctx, keyspace, p, req, v.Timestamp)
}

// runProposer runs req as a Proposer on key's turn at this coordinator
// (paxoskeys.go): it waits for the turn, draws above the key's earlier
// ballots here, proposes under the lease the last op left when it may, and
// passes the turn on once the op answers. The error is the wait's (the
// client's context ended first; nothing was sent).
func (c *Coordinator) runProposer(ctx context.Context, keyspace string, p linPlan, req paxos.Request, clock uint64) (*paxos.Outcome, *linDriver, error) {
	k, err := c.paxosKeys.acquire(ctx, keyspace, req.Key)
	if err != nil {
		return nil, nil, err
	}
	// A lease serves one op, so it is taken either way; a Paxos read
	// prepares above it, so it neither gets one nor asks for the next.
	lease := k.take(p.ks.Epoch, p.replicas)
	if req.Cond.Kind != paxos.ReadOnly {
		req.Lease, req.Renew = lease, true
		if lease != nil {
			c.metrics.PaxosLeased.Add(1)
		}
	}
	req.Above = k.above
	if req.Cond.Kind != paxos.ReadOnly {
		// The op's own proposal goes to this node's replica and the
		// nearest other first (paxos.Request.Thrifty); the lease is
		// still kept for p.replicas, the order the ring gives.
		req.Thrifty, req.Replicas = true, c.readOrder(req.Replicas)
	}
	prop := paxos.NewProposer(req)
	d := c.newLinDriver(ctx, keyspace, req.Key, p)
	d.onAnswer = func() {
		c.paxosKeys.release(k, prop.Lease(), prop.Drawn(), p.ks.Epoch, p.replicas)
		if prop.Widened() {
			c.metrics.PaxosWidened.Add(1)
		}
	}
	return d.run(prop.Start(clock), prop.Step), d, nil
}

// readOrder is the order a Reader asks replicas in: it asks the first
// quorum, and the others only when one of those fails or is slow, so this
// node's own replica (no network) comes first, then the live ones by the
// round trips this coordinator measured, the ones it believes down last.
func (c *Coordinator) readOrder(replicas []string) []string {
	out := slices.Clone(replicas)
	rank := func(id string) (int, int64) {
		switch {
		case id == c.cfg.NodeID:
			return 0, 0
		case c.cfg.Topology.Alive(id):
			return 1, c.paxosRTT.get(id)
		}
		return 2, 0
	}
	slices.SortStableFunc(out, func(a, b string) int {
		ra, ta := rank(a)
		rb, tb := rank(b)
		if ra != rb {
			return cmp.Compare(ra, rb)
		}
		return cmp.Compare(ta, tb)
	})
	return out
}

// paxosBackoff is the first backoff of an op on replicas: a round of two
// round trips to the slowest of them, as this coordinator measured them,
// and at least paxos.DefaultBackoff. A backoff shorter than a round makes
// proposers that collided collide again: with the fixed default, 8
// clients incrementing one counter through 3 coordinators under the race
// detector (rounds of ~10 ms) took 2,022 backoffs for 200 increments.
func (c *Coordinator) paxosBackoff(replicas []string) time.Duration {
	var slowest int64
	for _, id := range replicas {
		slowest = max(slowest, c.paxosRTT.get(id))
	}
	return max(paxos.DefaultBackoff, 2*time.Duration(slowest))
}

// paxosHedge is how long a thrifty proposal waits for the quorum it asked
// (sent) before it asks the other replicas too: four smoothed round trips
// to the slowest of them, as this coordinator measured them, and at least
// minPaxosHedge, so that the ordinary spread of fsyncs under load does not
// widen rounds; at most the replica timeout.
func (c *Coordinator) paxosHedge(sent []paxos.Message) time.Duration {
	var slowest int64
	for _, m := range sent {
		slowest = max(slowest, c.paxosRTT.get(m.To))
	}
	return min(max(minPaxosHedge, 4*time.Duration(slowest)), c.cfg.ReplicaTimeout)
}

// minPaxosHedge is the least hedge of a thrifty proposal (paxosHedge).
const minPaxosHedge = 10 * time.Millisecond

// definiteLin reports whether a failed linearizable write certainly wrote
// nothing of its own, so that it may run again after an epoch catch-up.
func definiteLin(err error) bool {
	return errors.Is(err, ErrContended) || errors.Is(err, ErrQuorumNotReached) && !errors.Is(err, ErrUnknownOutcome)
}

// linError maps an op's outcome (nil: the client's context ended first) to
// the coordinator's errors.
func (c *Coordinator) linError(op string, out *paxos.Outcome, d *linDriver, p linPlan) error {
	if out == nil {
		err := d.ctx.Err()
		if err == nil {
			err = context.Canceled
		}
		if op == "write" {
			return fmt.Errorf("%w: the client's deadline passed before the Paxos rounds ended: %w", ErrUnknownOutcome, err)
		}
		return fmt.Errorf("linearizable read: %w", err)
	}
	switch {
	case out.Err == nil:
		return nil
	case errors.Is(out.Err, paxos.ErrUnknownOutcome):
		return fmt.Errorf("%w: %w", ErrUnknownOutcome, out.Err)
	case errors.Is(out.Err, paxos.ErrContended):
		return fmt.Errorf("%w: %w", ErrContended, out.Err)
	case errors.Is(out.Err, paxos.ErrUnavailable):
		if d.res.known > p.ks.Epoch {
			// Refusals of a stale epoch cost the quorum: say so, as the
			// other ops do when they cannot catch up.
			return &QuorumError{Op: "linearizable " + op, Answered: d.res.acked, Required: p.pol.W, Err: ErrQuorumNotReached,
				Detail: fmt.Sprintf("replicas know epoch %d, this node %d; nothing was written: %v", d.res.known, p.ks.Epoch, out.Err)}
		}
		return &QuorumError{Op: "linearizable " + op, Answered: d.res.acked, Required: p.pol.W, Err: ErrQuorumNotReached,
			Detail: fmt.Sprintf("nothing was written: %v", out.Err)}
	}
	return out.Err
}

// linEvent is a reply for a linDriver, with the round trip's epoch news.
type linEvent struct {
	ev    paxos.Event
	known uint64
}

// linDriver runs one paxos op: it sends, arms the round timer, waits the
// backoffs (with jitter), and feeds what happened back, in the foreground
// until the op answers or the client's context ends, then in the
// background until the op finishes (commits after the answer).
type linDriver struct {
	c        *Coordinator
	ctx      context.Context
	keyspace string
	key      []byte
	plan     linPlan

	events   chan linEvent
	finished chan struct{}
	timer    *time.Timer
	timerFor int
	backoff  *time.Timer
	inflight int

	answer   *paxos.Outcome
	escalate bool
	done     bool
	// onAnswer, when set, runs once, on the driver's goroutine, when the
	// op answers or stops (whichever comes first): the op draws no ballot
	// after that.
	onAnswer func()
	// acked is the most replicas that answered one round before the
	// answer (the receipt's Acked); round and roundAcked count the
	// current one.
	acked, round, roundAcked int
	// known is the newest keyspace epoch a replica reported refusing ours.
	known uint64
	// res is what the foreground saw, copied before run returns: the
	// background goroutine goes on writing the fields above, so the
	// caller reads only this.
	res linResult
}

// linResult is an op's foreground as run left it.
type linResult struct {
	acked    int
	known    uint64
	escalate bool
}

func (c *Coordinator) newLinDriver(ctx context.Context, keyspace string, key []byte, p linPlan) *linDriver {
	return &linDriver{c: c, ctx: ctx, keyspace: keyspace, key: key, plan: p,
		events: make(chan linEvent, 2*len(p.replicas)), finished: make(chan struct{})}
}

// run drives an op from its first effects until it answers (or escalates,
// for a Reader), and returns the answer: nil when the client's context
// ended first or the op escalated. The op is driven on in the background
// while it wants more.
func (d *linDriver) run(first paxos.Effects, step func(paxos.Event) paxos.Effects) *paxos.Outcome {
	d.apply(first)
	deadline := d.ctx.Done()
	for !d.done && d.answer == nil && !d.escalate {
		if !d.next(step, deadline) {
			// The op goes on without its client; the answer is lost.
			d.res = linResult{acked: d.acked, known: d.known, escalate: d.escalate}
			d.c.goBackground(func() { d.background(step) })
			return nil
		}
	}
	d.res = linResult{acked: d.acked, known: d.known, escalate: d.escalate}
	answer := d.answer
	if !d.done {
		d.c.goBackground(func() { d.background(step) })
	}
	return answer
}

// background drives the op until it finishes or nothing can happen to it
// any more (no reply in flight, no timer, no backoff).
func (d *linDriver) background(step func(paxos.Event) paxos.Effects) {
	defer d.stop()
	for !d.done && (d.inflight > 0 || d.timer != nil || d.backoff != nil) {
		d.next(step, nil)
	}
}

// next waits for the next thing to happen to the op (a reply, its timer,
// the end of its backoff) and steps it; it returns false, having done
// nothing, when until is closed first (nil never is).
func (d *linDriver) next(step func(paxos.Event) paxos.Effects, until <-chan struct{}) bool {
	select {
	case le := <-d.events:
		d.inflight--
		d.apply(step(d.note(le)))
	case <-d.timerC():
		d.timer = nil
		d.apply(step(paxos.Event{Kind: paxos.EvTimeout, Round: d.timerFor}))
	case <-d.backoffC():
		d.backoff = nil
		d.apply(step(paxos.Event{Kind: paxos.EvRetry, Clock: d.c.cfg.Clock.Now()}))
	case <-until:
		return false
	}
	return true
}

func (d *linDriver) timerC() <-chan time.Time {
	if d.timer == nil {
		return nil
	}
	return d.timer.C
}

func (d *linDriver) backoffC() <-chan time.Time {
	if d.backoff == nil {
		return nil
	}
	return d.backoff.C
}

// note counts a reply for the receipt and the epoch catch-up.
func (d *linDriver) note(le linEvent) paxos.Event {
	if le.known > 0 {
		d.known = max(d.known, le.known)
		d.c.noteEpoch(d.keyspace, le.known)
	}
	if le.ev.Err == nil && d.answer == nil && le.ev.Round >= d.round {
		if le.ev.Round > d.round {
			d.round, d.roundAcked = le.ev.Round, 0
		}
		d.roundAcked++
		d.acked = max(d.acked, d.roundAcked)
	}
	return le.ev
}

// apply does what eff asks.
func (d *linDriver) apply(eff paxos.Effects) {
	if eff.Done != nil && d.answer == nil {
		d.answer = eff.Done
		d.answered()
	}
	if eff.Escalate {
		d.escalate = true
	}
	var local, localCommit *paxos.Message
	for i := range eff.Send {
		m := &eff.Send[i]
		if eff.Finished && m.Kind == paxos.MsgCommit {
			if m.To == d.c.cfg.NodeID {
				localCommit = m // applied last, on this goroutine
				continue
			}
			if d.post(*m) {
				continue
			}
		}
		d.inflight++
		if local == nil && m.Kind == paxos.MsgRead && m.To == d.c.cfg.NodeID {
			local = m // asked last, on this goroutine
			continue
		}
		d.c.goBackground(func() { d.send(*m) })
	}
	if eff.Timer > 0 {
		if d.timer != nil {
			d.timer.Stop()
		}
		d.timerFor = eff.Timer
		wait := d.c.cfg.ReplicaTimeout
		if eff.Hedge {
			wait = d.c.paxosHedge(eff.Send)
		}
		d.timer = time.NewTimer(wait)
	}
	if eff.Backoff > 0 {
		// Uniform in [Backoff/2, Backoff]: proposers that collided draw
		// apart, and the wait never exceeds what the op asked for.
		d.backoff = time.NewTimer(jitter(eff.Backoff))
		d.c.metrics.PaxosBackoffs.Add(1)
	}
	if eff.Finished {
		d.stop()
	}
	if local != nil {
		d.readLocal(*local)
	}
	if localCommit != nil {
		d.commitLocal(*localCommit)
	}
}

// commitLocal applies the commit of the op's chosen proposal to this
// node's replica before the client is answered (the other replicas' go
// out first, posted): an applied conditional write is then in the storage
// of at least one replica when its client hears of it, so that a session
// read right after it finds a replica as new as its token. The commit is
// lazy (unsynced), so it waits for no fsync of its own.
func (d *linDriver) commitLocal(m paxos.Message) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), d.c.cfg.ReplicaTimeout)
	defer cancel()
	if le := d.c.paxosCall(ctx, d.keyspace, d.plan.ks.Epoch, d.key, m); le.ev.Err != nil {
		d.c.metrics.ReplicaErrors.Add(1)
		d.c.log.Debug("paxos request failed", "replica", m.To, "keyspace", d.keyspace, "kind", m.Kind, "err", le.ev.Err)
	}
}

// readLocal asks this node's own replica for its record and state on the
// driver's goroutine, after the requests to the other replicas are on
// their way: a read of the local replica waits for no disk and no network,
// and a goroutine of its own (and the stack it grows) cost a linearizable
// read more CPU than the read itself. Writes still go through send: a
// local fsync must not hold up the replies of the others.
func (d *linDriver) readLocal(m paxos.Message) {
	le := d.c.paxosCall(d.ctx, d.keyspace, d.plan.ks.Epoch, d.key, m)
	if le.ev.Err != nil {
		d.c.metrics.ReplicaErrors.Add(1)
		d.c.log.Debug("paxos request failed", "replica", m.To, "keyspace", d.keyspace, "kind", m.Kind, "err", le.ev.Err)
	}
	select {
	case d.events <- le:
	default:
		// The buffer is full of replies this goroutine has yet to take:
		// deliver it from another one rather than wait for ourselves.
		d.c.goBackground(func() {
			select {
			case d.events <- le:
			case <-d.finished:
			}
		})
	}
}

// post hands the transport a commit sent after the answer, which nobody
// waits for, to go with the next message to its replica (PaxosPoster): no
// goroutine, no reply. It reports false when the commit must be sent
// (this node's replica, a transport that does not post, or one that
// declined).
func (d *linDriver) post(m paxos.Message) bool {
	pp, ok := d.c.cfg.Transport.(PaxosPoster)
	if !ok || m.To == d.c.cfg.NodeID {
		return false
	}
	req := paxosRequest(d.keyspace, d.plan.ks.Epoch, d.key, d.c.cfg.NodeID, m)
	err := pp.PostPaxos(context.WithoutCancel(d.ctx), m.To, req)
	if errors.Is(err, ErrNotPosted) {
		return false
	}
	if err != nil {
		// A send would fail the same way; the commit is lost, as it may be.
		d.c.metrics.ReplicaErrors.Add(1)
		d.c.log.Debug("paxos commit not posted", "replica", m.To, "keyspace", d.keyspace, "err", err)
	}
	return true
}

// answered runs onAnswer the first time it is called.
func (d *linDriver) answered() {
	if f := d.onAnswer; f != nil {
		d.onAnswer = nil
		f()
	}
}

// jitter draws a wait uniformly from [b/2, b].
func jitter(b time.Duration) time.Duration {
	half := b / 2
	return half + rand.N(b-half+1)
}

// stop ends the op: no more events are wanted.
func (d *linDriver) stop() {
	if d.done {
		return
	}
	d.done = true
	d.answered()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.backoff != nil {
		d.backoff.Stop()
		d.backoff = nil
	}
	close(d.finished)
}

// send makes one acceptor request and reports its reply. Requests outlive
// the client's: a commit sent after the answer must still land, so each is
// bounded by the replica timeout only.
func (d *linDriver) send(m paxos.Message) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), d.c.cfg.ReplicaTimeout)
	defer cancel()
	le := d.c.paxosCall(ctx, d.keyspace, d.plan.ks.Epoch, d.key, m)
	if le.ev.Err != nil {
		d.c.metrics.ReplicaErrors.Add(1)
		d.c.log.Debug("paxos request failed", "replica", m.To, "keyspace", d.keyspace, "kind", m.Kind, "err", le.ev.Err)
	}
	select {
	case d.events <- le:
	case <-d.finished:
	}
}

// paxosCall sends m to its replica and returns the reply as an event.
func (c *Coordinator) paxosCall(ctx context.Context, keyspace string, epoch uint64, key []byte, m paxos.Message) linEvent {
	req := paxosRequest(keyspace, epoch, key, c.cfg.NodeID, m)
	start := time.Now()
	resp, err := c.cfg.Transport.Paxos(ctx, m.To, req)
	if err == nil {
		c.paxosRTT.observe(m.To, time.Since(start))
	}
	le := paxosEvent(keyspace, epoch, m, resp, err)
	if le.ev.Err == nil && le.ev.Found {
		// Every version a round sees moves the clock, as reads do.
		c.cfg.Clock.Observe(le.ev.Record.Version.Timestamp)
	}
	return le
}

// paxosRequest is the acceptor request carrying m.
func paxosRequest(keyspace string, epoch uint64, key []byte, from string, m paxos.Message) *kvpb.PaxosRequest {
	req := &kvpb.PaxosRequest{Keyspace: keyspace, Epoch: epoch, Key: key, From: from}
	switch m.Kind {
	case paxos.MsgPrepare:
		req.Kind, req.Ballot = kvpb.PaxosRequest_PREPARE, BallotToPB(m.Ballot)
	case paxos.MsgPropose:
		req.Kind, req.Proposal = kvpb.PaxosRequest_PROPOSE, ProposalToPB(m.Proposal)
		if !m.Prior.IsZero() {
			req.Prior = ProposalToPB(m.Prior)
		}
		if !m.Next.IsZero() {
			req.Next = BallotToPB(m.Next)
		}
	case paxos.MsgCommit:
		req.Kind, req.Proposal, req.Lazy = kvpb.PaxosRequest_COMMIT, ProposalToPB(m.Proposal), m.Lazy
	case paxos.MsgRead:
		req.Kind = kvpb.PaxosRequest_PEEK
	}
	return req
}

// paxosEvent is the event an op sees for m's reply (resp, or err).
func paxosEvent(keyspace string, epoch uint64, m paxos.Message, resp *kvpb.PaxosResponse, err error) linEvent {
	ev := paxos.Event{From: m.To, Round: m.Round}
	switch m.Kind {
	case paxos.MsgPrepare:
		ev.Kind = paxos.EvPromise
	case paxos.MsgPropose:
		ev.Kind = paxos.EvAccepted
	case paxos.MsgCommit:
		ev.Kind = paxos.EvCommitted
	case paxos.MsgRead:
		ev.Kind = paxos.EvRead
	}
	if err != nil {
		ev.Err = err
		return linEvent{ev: ev}
	}
	if k := resp.GetKnownEpoch(); k > 0 {
		ev.Err = &EpochError{Keyspace: keyspace, Requested: epoch, Known: k}
		return linEvent{ev: ev, known: k}
	}
	ev.OK = resp.GetOk()
	ev.Promise, ev.Record, ev.Found = PromiseFromPB(resp)
	if m.Kind == paxos.MsgRead {
		ev.Promise.OK = true // a peek promises nothing and is never refused
	}
	if m.Kind == paxos.MsgPropose && !ev.OK {
		ev.Promise.Promised = BallotFromPB(resp.GetPromised())
	}
	ev.Leased = m.Kind == paxos.MsgPropose && ev.OK && resp.GetLeased()
	return linEvent{ev: ev}
}

// RepairPaxos settles the proposals Replica.CleanPaxos reported in
// progress on keyspace's keys, so that a later cleanup can forget their
// states: each key gets a Paxos read, which prepares on every replica and
// either completes the proposal (a quorum shows it in progress: it is
// proposed again and committed to every replica) or, when the quorum shows
// a later commit, writes that commit back to the replica holding the dead
// proposal, which clears it. It must run well within the tombstone grace
// (docs/design-notes.md, "Forgetting Paxos state"). It stops at the first
// error.
func (c *Coordinator) RepairPaxos(ctx context.Context, keyspace string, keys [][]byte) error {
	for _, key := range keys {
		p, err := c.planLin(ctx, keyspace, key)
		if err != nil {
			return err
		}
		out, d, err := c.paxosRead(ctx, keyspace, key, p)
		if err == nil {
			err = c.linError("read", out, d, p)
		}
		if err != nil {
			return fmt.Errorf("repair paxos state of %q in %q: %w", key, keyspace, err)
		}
	}
	return nil
}

package replication

import (
	"cmp"
	"context"
	"sync/atomic"
	"time"
)

// The shell: it drives an op (core.go) by doing what its effects ask, on
// real goroutines, timers and transports, and feeding back what happened.

// driver runs one op.
type driver struct {
	c        *Coordinator
	ctx      context.Context
	keyspace string
	op       op
	plan     func() event

	// queue holds events produced synchronously (plans, lease checks,
	// catch-ups, inline replies), fed to the op before waiting for more;
	// head is the next one. qbuf keeps the usual few in the driver.
	queue []event
	head  int
	qbuf  [2]event
	// events carries what goroutines report: replies and stored hints.
	// Made at the first asynchronous effect, with room for that effect's
	// replies so that the first replies never wait for the loop (a sender
	// parked on a full channel costs a wake-up); finished is closed when
	// the op wants no more, so that no goroutine is left blocked on events.
	events   chan event
	finished chan struct{}
	hedge    *time.Timer
	answer   *answer
	done     bool
}

// run drives o until it answers, and returns the answer; when o still
// wants events then (late replies, hints, background read repair), a
// goroutine drives it on until it finishes. plan computes an attempt's
// plan when o asks for one.
func (c *Coordinator) run(ctx context.Context, keyspace string, o op, plan func() event) *answer {
	d := &driver{c: c, ctx: ctx, keyspace: keyspace, op: o, plan: plan}
	d.queue = d.qbuf[:0]
	d.apply(o.begin())
	d.loop(true)
	if !d.done {
		c.goBackground(func() { d.loop(false) })
	}
	return d.answer
}

// loop feeds the op its events: in the foreground until it answers (with
// the client's deadline, delivered once: an op may wait on past it), in
// the background until it finishes.
func (d *driver) loop(foreground bool) {
	var deadline <-chan struct{}
	if foreground {
		deadline = d.ctx.Done()
	}
	for !d.done && (!foreground || d.answer == nil) {
		if d.head < len(d.queue) {
			ev := d.queue[d.head]
			d.head++
			if d.head == len(d.queue) {
				d.queue, d.head = d.queue[:0], 0
			}
			d.apply(d.op.step(ev))
			continue
		}
		var hedge <-chan time.Time
		if d.hedge != nil {
			hedge = d.hedge.C
		}
		select {
		case ev := <-d.events:
			d.apply(d.op.step(ev))
		case <-hedge:
			d.hedge = nil
			d.apply(d.op.step(event{kind: evHedge}))
		case <-deadline:
			deadline = nil
			d.apply(d.op.step(event{kind: evDeadline, err: d.ctx.Err()}))
		}
	}
}

// apply does what eff asks.
func (d *driver) apply(eff effects) {
	c := d.c
	if eff.done != nil && d.answer == nil {
		d.answer = eff.done
	}
	if eff.noteEpoch > 0 {
		c.noteEpoch(d.keyspace, eff.noteEpoch)
	}
	if eff.probe != nil && c.cfg.Observer != nil {
		c.cfg.Observer.Probe(d.keyspace, eff.probe.stale, eff.probe.behind)
	}
	if eff.plan && !eff.finished {
		d.queue = append(d.queue, d.plan())
	}
	d.send(eff.sends)
	for _, h := range eff.hints {
		d.async(len(eff.hints))
		c.goBackground(func() {
			c.hint(d.ctx, h.targets, h.mut)
			d.post(event{kind: evHintsStored, hint: h.id})
		})
	}
	if eff.hedge > 0 {
		if d.hedge != nil {
			d.hedge.Stop()
		}
		d.hedge = time.NewTimer(eff.hedge)
	}
	if eff.checkLease != nil {
		d.queue = append(d.queue, event{kind: evLeaseChecked, err: c.checkLease(*eff.checkLease, true)})
	}
	if eff.catchUp > 0 {
		d.queue = append(d.queue, event{kind: evCaughtUp, err: c.catchUp(d.ctx, eff.catchUp)})
	}
	if eff.finished {
		d.finish()
	}
}

func (d *driver) finish() {
	d.done = true
	d.queue = nil
	if d.hedge != nil {
		d.hedge.Stop()
		d.hedge = nil
	}
	if d.finished != nil {
		close(d.finished)
	}
}

// async makes the channels goroutines report on.
func (d *driver) async(n int) {
	if d.events == nil {
		d.events = make(chan event, n)
		d.finished = make(chan struct{})
	}
}

// post reports ev to the op unless it has finished.
func (d *driver) post(ev event) {
	select {
	case d.events <- ev:
	case <-d.finished:
	}
}

// send makes the requests: the others on goroutines of their own, then
// the inline ones on this one. The detached requests of one batch share one
// context, bounded by the replica timeout only (they outlive the client's
// request), released by the last of them: one timer per batch instead of
// one per replica.
func (d *driver) send(sends []send) {
	if len(sends) == 0 {
		return
	}
	var fan *fanout
	for i := range sends {
		s := &sends[i] // the goroutines share the effects' slice: small frames
		if s.inline {
			continue
		}
		d.async(len(sends))
		if s.detached {
			if fan == nil {
				fan = d.c.newFanout(d.ctx)
			}
			fan.acquire()
			d.c.goBackground(func() {
				defer fan.release()
				d.post(d.c.call(fan.ctx, d.keyspace, s))
			})
			continue
		}
		d.c.goBackground(func() {
			ctx, cancel := context.WithTimeout(d.ctx, d.c.cfg.ReplicaTimeout)
			defer cancel()
			d.post(d.c.call(ctx, d.keyspace, s))
		})
	}
	if fan != nil {
		fan.release() // the batch is out
	}
	for i := range sends {
		if s := &sends[i]; s.inline {
			d.queue = append(d.queue, d.c.call(d.ctx, d.keyspace, s))
		}
	}
}

// call makes one replica request, observes its round trip and the versions
// it saw, and returns the reply as an event.
func (c *Coordinator) call(ctx context.Context, keyspace string, s *send) event {
	start := time.Now()
	r := reply{id: s.id}
	switch s.kind {
	case sendWrite:
		r.write, r.err = c.cfg.Transport.Write(ctx, s.to, s.write)
		ok, known, err := writeResult(s.to, r)
		if !ok {
			c.log.Debug("replica write failed", "replica", s.to, "keyspace", keyspace, "err", err)
		}
		if o := c.cfg.Observer; o != nil && s.observe {
			// A replica that refused a stale epoch answered in time: it is
			// not a failed or slow replica to the tuner.
			observeReplica(o, keyspace, s, time.Since(start), ok || known > 0)
		}
		if ok || known > 0 {
			c.observeCall(s.to, true, time.Since(start), nil)
		} else {
			c.observeCall(s.to, true, time.Since(start), cmp.Or(err, errReplicaWrite))
		}
	case sendRead, sendDigest:
		r.read, r.err = c.cfg.Transport.Read(ctx, s.to, s.read)
		rtt := time.Since(start)
		c.observeCall(s.to, false, rtt, r.err)
		if s.observe {
			if o := c.cfg.Observer; o != nil {
				observeReplica(o, keyspace, s, rtt, r.err == nil)
			}
			if r.err == nil {
				c.latency.observe(s.to, rtt)
			}
		}
		if r.err == nil && r.read.GetKnownEpoch() == 0 && r.read.GetFound() {
			// Every version a read sees moves the clock, digests and late
			// replies included, so that a write this node coordinates
			// after the read orders after what it returned (the promise
			// Clock makes).
			c.cfg.Clock.Observe(r.read.GetRecord().GetVersion().GetTimestamp())
		}
	case sendScan:
		r.scan, r.err = c.cfg.Transport.Scan(ctx, s.to, s.scan)
		if r.err == nil && r.scan.GetKnownEpoch() == 0 {
			var seen uint64
			for _, pr := range r.scan.GetRecords() {
				seen = max(seen, pr.GetVersion().GetTimestamp())
			}
			c.cfg.Clock.Observe(seen)
		}
	}
	return event{kind: evReply, reply: r}
}

// observeReplica reports one replica request to the Observer, naming its
// node to a NodeObserver.
func observeReplica(o Observer, keyspace string, s *send, rtt time.Duration, ok bool) {
	write := s.kind == sendWrite
	if no, isNode := o.(NodeObserver); isNode {
		no.ReplicaAt(keyspace, s.rank, s.to, write, rtt, ok)
		return
	}
	o.Replica(keyspace, s.rank, write, rtt, ok)
}

// fanout is one replica context shared by the detached requests of one
// batch, released when the last of them and the driver are done with it.
type fanout struct {
	ctx    context.Context
	cancel context.CancelFunc
	refs   atomic.Int32
}

// newFanout returns a fanout holding the driver's reference. Replica
// requests outlive the client's request: after W acks the rest finish in
// the background, and their failures become hints.
func (c *Coordinator) newFanout(ctx context.Context) *fanout {
	f := &fanout{}
	f.ctx, f.cancel = context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ReplicaTimeout)
	f.refs.Store(1)
	return f
}

// acquire takes a reference for one more replica request; the caller must
// still hold one, so the count cannot have reached zero.
func (f *fanout) acquire() { f.refs.Add(1) }

// release drops a reference; the last one cancels the context.
func (f *fanout) release() {
	if f.refs.Add(-1) == 0 {
		f.cancel()
	}
}

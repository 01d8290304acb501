package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/node/membership"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/tuner"
)

// tuning is the node's shell around the pure tuner package.
//
// On every node it keeps a tuner.Recorder per adaptive keyspace and feeds it
// from the coordinator (it implements replication.Observer): a few atomic
// adds per request. On the metadata leader it also runs the decision loop:
// every interval it gathers every node's recorder snapshot, merges them,
// asks tuner.Decide, records the decision in the metadata log, and applies
// the decision's plan one step per log entry, waiting between steps until
// every node has applied the previous one or its configuration lease has
// run out (waitApplied; the joint step of
// DESIGN.md). Because decisions and steps go through the log, a node that
// is not the leader (or a minority side of a partition) changes nothing.
type tuning struct {
	n        *Node
	model    tuner.Model
	interval time.Duration
	seed     maphash.Seed

	recs atomic.Pointer[map[string]*ksRecorder]
	// syncMu serializes syncRecorders, which the loop, what-if's gather and
	// the TunerSnapshot RPC all call: two at once could each install a new
	// recorder, and the observations recorded into the one replaced would
	// be lost.
	syncMu sync.Mutex

	// forceEvery, when positive, makes the leader move each adaptive
	// keyspace to another safe configuration at that interval, whatever the
	// model says: the unsafe hook that tests transitions under faults.
	forceEvery atomic.Int64

	// syncedTerm is the Raft term in which this node, as leader, last
	// caught up with the metadata log (loop only).
	syncedTerm uint64

	mu     sync.Mutex // guards leader and targets: the loop, whatif and the hooks
	leader map[string]*leaderTuning
	// targets are configurations the unsafe tuner-target hook asks the
	// leader to move keyspaces to at its next decision, once each: the way
	// tests drive a change of N, which the force cycle does not make.
	targets map[string]tuner.Policy

	predicted, observed *prometheus.GaugeVec
}

// ksRecorder is one keyspace's recorder and the names of its replica ranks.
type ksRecorder struct {
	rec *tuner.Recorder
	ids []string
	// writeP50 is the median latency, in ns, of the client writes this node
	// coordinated in the last interval that had any: readGap's estimate of
	// how long after its version was stamped a write committed.
	writeP50 atomic.Int64
}

// leaderTuning is the decision loop's memory of one keyspace.
type leaderTuning struct {
	window    *tuner.Window
	last      *tuner.Decision
	forced    int
	lastForce time.Time
}

func newTuning(n *Node, interval time.Duration) *tuning {
	t := &tuning{n: n, model: tuner.DefaultModel(), interval: interval, seed: maphash.MakeSeed(), leader: map[string]*leaderTuning{}, targets: map[string]tuner.Policy{}}
	t.model.CoordinatorSpread = true // the SDK spreads reads over the replicas
	if n.cfg.TunerDwell > 0 {
		t.model.Dwell = n.cfg.TunerDwell
	}
	if n.cfg.UnsafeTestHooks {
		t.forceEvery.Store(int64(n.cfg.UnsafeTunerForce))
	}
	empty := map[string]*ksRecorder{}
	t.recs.Store(&empty)
	t.predicted = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "adaptkv", Name: "tuner_predicted",
		Help: "The tuner's prediction for the configuration in force, per adaptive keyspace: stale-read probability, read and write p99 in seconds.",
	}, []string{"keyspace", "figure"})
	t.observed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "adaptkv", Name: "tuner_observed",
		Help: "What was measured over the tuner's last interval, per adaptive keyspace: stale-read rate of probed reads, read and write p99 in seconds.",
	}, []string{"keyspace", "figure"})
	return t
}

func (t *tuning) recorder(keyspace string) *ksRecorder {
	return (*t.recs.Load())[keyspace]
}

// ClientRead implements replication.Observer.
func (t *tuning) ClientRead(keyspace string, key []byte, latency, age time.Duration, found bool) {
	if r := t.recorder(keyspace); r != nil {
		r.rec.Read(latency)
		r.rec.Key(maphash.Bytes(t.seed, key))
		if found {
			r.rec.Gap(readGap(age, latency, time.Duration(r.writeP50.Load())))
		}
	}
}

// readGap estimates the tuner's write→read gap, the time from a write's
// commit to the start of a read (tuner.Observation.Gap), from what the
// coordinator reports: age, the time from the returned version's stamp (the
// start of its write) to the end of the read, the read's latency, and
// writeLatency, the typical time from a write's stamp to its commit.
//
// Why subtract both? age counts the write's latency and the read's on top
// of the gap. With W=3 across zones that is 22 ms of write latency on every
// gap, and in the experiment's write-heavy phase, whose reads come 0–10 ms
// after the acknowledgement, the tuner saw a median gap of 28 ms, outside
// the ~20 ms in which a read at another replica is stale; it predicted 1.4%
// stale reads at R=1 W=1 where 66.7% were measured. The median rather than
// each write's own latency, which the reading coordinator does not know:
// write latencies under one policy vary little beside the gap.
//
// What remains wrong: a stale read returns an older version than the latest
// write, so its age, and the gap estimated from it, is too long exactly for
// the reads that matter (a partial quorum in force under-counts short gaps);
// and a read that began before the write committed but saw it counts as
// gap 0. Calibration absorbs the first; the second errs towards staleness.
func readGap(age, latency, writeLatency time.Duration) time.Duration {
	return max(age-latency-writeLatency, 0)
}

// ClientWrite implements replication.Observer.
func (t *tuning) ClientWrite(keyspace string, key []byte, latency time.Duration) {
	if r := t.recorder(keyspace); r != nil {
		r.rec.Write(latency)
		r.rec.Key(maphash.Bytes(t.seed, key))
	}
}

// Replica implements replication.Observer. Latencies are kept by rank from
// the coordinator (nearest first), not by node: the SDK spreads requests
// over a key's replicas, so "the replica next to the coordinator" is what
// the model must reason about (see tuner.Model.CoordinatorSpread).
func (t *tuning) Replica(keyspace string, rank int, write bool, rtt time.Duration, ok bool) {
	r := t.recorder(keyspace)
	if r == nil {
		return
	}
	r.rec.Sent(rank, write)
	switch {
	case !ok:
		r.rec.Timeout(rank, write)
	case write:
		r.rec.Leg(rank, tuner.LegWriteRTT, rtt)
	default:
		r.rec.Leg(rank, tuner.LegReadRTT, rtt)
	}
}

// rankNames name the replicas of a key by their place in a coordinator's
// order, for the tuner's explanations.
func rankNames(n int) []string {
	names := []string{"nearest", "2nd-nearest", "3rd-nearest"}
	for i := len(names); i < n; i++ {
		names = append(names, fmt.Sprintf("%dth-nearest", i+1))
	}
	return names[:n]
}

// Probe implements replication.Observer.
func (t *tuning) Probe(keyspace string, stale, behind bool) {
	if r := t.recorder(keyspace); r != nil {
		r.rec.Probe(stale, behind)
	}
}

// policyOf is the tuner's view of a keyspace's configuration in force.
func policyOf(d KeyspaceDef) tuner.Policy {
	level, _ := parseLevel(d.Level)
	p, err := quorum.Resolve(level, d.ReplicationFactor, d.R, d.W)
	if err != nil {
		p = quorum.Policy{N: d.ReplicationFactor, R: quorum.Majority(d.ReplicationFactor), W: quorum.Majority(d.ReplicationFactor)}
	}
	path := tuner.ReadNearest
	switch {
	case d.ReadAll:
		path = tuner.ReadAll
	case d.HedgeAfterNs > 0:
		path = tuner.ReadHedged
	}
	return tuner.Policy{N: p.N, R: p.R, W: p.W, Read: path}
}

// goalOf is the goal the tuner decides against: the keyspace's, with N
// bounded by the ring's ringSize members too, since a key cannot have more
// replicas than there are nodes. When the ring is smaller than the goal's
// minimum, N is held where it is rather than lowered below the minimum
// the user asked for: durability is theirs to give up, not the tuner's.
//
// A keyspace created without bounds has MinRF = MaxRF = its replication
// factor (goalFromPB in server.go), so its N never moves; only a
// keyspace created with --rf-min/--rf-max apart lets the tuner weigh N,
// whose cost (tuner.CostWeights.Replica per copy, plus the messages of
// every write) pulls towards the minimum unless latency or staleness pays
// for more copies.
func goalOf(d KeyspaceDef, ringSize int) tuner.Goal {
	g := *d.Adaptive
	if ringSize < g.MinRF {
		g.MinRF, g.MaxRF = d.ReplicationFactor, d.ReplicationFactor
		return g
	}
	g.MaxRF = min(g.MaxRF, ringSize)
	return g
}

// ringSize is the number of members of this node's ring.
func (t *tuning) ringSize() int { return t.n.members.View().Ring.Len() }

// syncRecorders keeps one recorder per adaptive keyspace, its replicas
// numbered by rank (see Replica); a change of replication factor starts a
// fresh recorder.
func (t *tuning) syncRecorders() {
	t.syncMu.Lock()
	defer t.syncMu.Unlock()
	cur := *t.recs.Load()
	next := map[string]*ksRecorder{}
	changed := false
	for _, d := range t.n.meta.Defs() {
		if d.Adaptive == nil {
			continue
		}
		ids := rankNames(d.ReplicationFactor)
		if r, ok := cur[d.Name]; ok && slices.Equal(r.ids, ids) {
			next[d.Name] = r
			continue
		}
		next[d.Name] = &ksRecorder{rec: tuner.NewRecorder(d.Name, ids, time.Now()), ids: ids}
		changed = true
	}
	if changed || len(next) != len(cur) {
		t.recs.Store(&next)
	}
}

// snapshot returns this node's observations of a keyspace since the last
// snapshot.
func (t *tuning) snapshot(keyspace string) (tuner.Observation, bool) {
	t.syncRecorders()
	r := t.recorder(keyspace)
	d, ok := t.n.meta.Def(keyspace)
	if r == nil || !ok {
		return tuner.Observation{}, false
	}
	obs := r.rec.Snapshot(time.Now(), policyOf(d), t.n.members.View().Ring.Len())
	r.noteWrites(&obs)
	return obs, true
}

// noteWrites keeps the median write latency of an interval for readGap;
// an interval without writes keeps the last one known.
func (r *ksRecorder) noteWrites(obs *tuner.Observation) {
	if obs.WriteLatency.Count() > 0 {
		r.writeP50.Store(int64(obs.WriteLatency.Quantile(0.5)))
	}
}

// gather merges every live node's snapshot of a keyspace.
func (t *tuning) gather(ctx context.Context, keyspace string) (tuner.Observation, error) {
	obs, ok := t.snapshot(keyspace)
	if !ok {
		return tuner.Observation{}, fmt.Errorf("keyspace %q is not adaptive here", keyspace)
	}
	v := t.n.members.View()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range v.Members {
		if m.ID == t.n.cfg.ID || !v.Alive(m.ID) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := t.n.transport.adminClient(m.ID)
			if err != nil {
				return
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			resp, err := c.TunerSnapshot(cctx, &kvpb.TunerSnapshotRequest{Keyspace: keyspace})
			if err != nil {
				t.n.log.Debug("tuner snapshot failed", "member", m.ID, "keyspace", keyspace, "err", err)
				return
			}
			var o tuner.Observation
			if err := json.Unmarshal(resp.GetObservationJson(), &o); err != nil {
				t.n.log.Warn("tuner snapshot undecodable", "member", m.ID, "err", err)
				return
			}
			mu.Lock()
			obs = tuner.Merge(obs, o)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return obs, nil
}

// loop runs on every node: it keeps the recorders in step with the
// keyspaces, and decides while this node leads the metadata log.
func (t *tuning) loop(ctx context.Context) {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t.syncRecorders()
		if t.n.MetadataLeader() != t.n.cfg.ID {
			t.mu.Lock()
			t.leader = map[string]*leaderTuning{} // a new term starts afresh
			t.mu.Unlock()
			continue
		}
		// A new leader applies the entries its predecessor committed only
		// once an entry of its own term commits: until then its view of a
		// keyspace may lack a step the old leader committed and did not
		// wait for, and a plan computed from that view could skip the wait
		// the step needs. A barrier per term brings the view up to date.
		if term := t.n.raft.CurrentTerm(); term != t.syncedTerm {
			if err := t.n.raft.Barrier(5 * time.Second).Error(); err != nil {
				t.n.log.Warn("tuner waits for the metadata log", "err", err)
				continue
			}
			t.syncedTerm = term
		}
		for _, d := range t.n.meta.Defs() {
			if d.Adaptive == nil {
				continue
			}
			if err := t.decide(ctx, d); err != nil {
				t.n.log.Warn("tuner", "keyspace", d.Name, "err", err)
			}
		}
	}
}

// forcedCycle is the sequence of configurations the force hook walks for
// N=3, every one of which keeps R+W > N. Lowering R after R=3 W=1 needs a
// repair pass (writes of that step may sit on one replica), so the walk
// also exercises the tuner's repair before a lowering step.
var forcedCycle = []tuner.Policy{
	{N: 3, R: 2, W: 2, Read: tuner.ReadNearest},
	{N: 3, R: 3, W: 1, Read: tuner.ReadNearest},
	{N: 3, R: 3, W: 3, Read: tuner.ReadAll},
	{N: 3, R: 2, W: 3, Read: tuner.ReadNearest},
}

// forcedCycleRF is the walk for keyspaces whose goal lets N reach 5: it
// grows N (streaming first), changes quorums at N=5, and shrinks N back, from
// and to configurations whose writes the next step's reads must meet.
var forcedCycleRF = []tuner.Policy{
	{N: 3, R: 2, W: 2, Read: tuner.ReadNearest},
	{N: 5, R: 3, W: 3, Read: tuner.ReadNearest},
	{N: 5, R: 2, W: 4, Read: tuner.ReadNearest},
	{N: 3, R: 3, W: 1, Read: tuner.ReadNearest},
	{N: 3, R: 3, W: 3, Read: tuner.ReadAll},
	{N: 5, R: 4, W: 2, Read: tuner.ReadNearest},
	{N: 3, R: 2, W: 3, Read: tuner.ReadNearest},
}

func (t *tuning) decide(ctx context.Context, d KeyspaceDef) error {
	if d.PendingN > 0 {
		// Only apply sets PendingN, and it clears it before returning unless
		// the metadata log failed it: a leader that stopped mid-grow left
		// it. Writes to the extra replicas are harmless but wasted, and a
		// later grow sets it afresh before streaming.
		if err := t.setPending(ctx, d.Name, 0, d.Tuner); err != nil {
			return fmt.Errorf("clear pending N %d left by an interrupted grow: %w", d.PendingN, err)
		}
		var ok bool
		if d, ok = t.n.meta.Def(d.Name); !ok {
			return nil
		}
	}
	obs, err := t.gather(ctx, d.Name)
	if err != nil {
		return err
	}
	t.mu.Lock()
	lt, ok := t.leader[d.Name]
	if !ok {
		lt = &leaderTuning{window: tuner.NewWindow(30, time.Minute)}
		t.leader[d.Name] = lt
	}
	var prevObserved json.RawMessage
	if lt.last != nil {
		lt.last.Observe(obs)
		prevObserved, _ = json.Marshal(lt.last.Observed)
	}
	lt.window.Push(obs)
	inForce := policyOf(d)
	state := tuner.NewState(inForce)
	if d.Tuner != nil {
		state = *d.Tuner
		state.Policy = inForce // what is applied, whatever was planned
	}
	now := time.Now()
	goal := goalOf(d, t.ringSize())
	if t.growAllowed(state, now) != nil {
		goal.MaxRF = max(goal.MinRF, min(goal.MaxRF, d.ReplicationFactor)) // see growAllowed
	}
	next, dec := tuner.Decide(t.model, state, lt.window, goal, now)
	cycle := forcedCycle
	if g := goalOf(d, t.ringSize()); g.MinRF <= 3 && g.MaxRF >= 5 {
		cycle = forcedCycleRF
	}
	if every := time.Duration(t.forceEvery.Load()); every > 0 && now.Sub(lt.lastForce) >= every && slices.ContainsFunc(cycle, func(p tuner.Policy) bool { return p.N == d.ReplicationFactor }) {
		lt.forced = (lt.forced + 1) % len(cycle)
		to := cycle[lt.forced]
		dec.To, dec.Changed, dec.Reason = to, to != inForce, "forced"
		dec.Explanation = fmt.Sprintf("Forced move of %s from %v to %v by the unsafe test hook (every %v).", d.Name, inForce, to, every)
		dec.Plan = tuner.PlanAfter(state.Unrepaired, inForce, to)
		next.Policy, next.LastChange = to, now
		lt.lastForce = now
	}
	if to, ok := t.targets[d.Name]; ok {
		delete(t.targets, d.Name)
		dec.To, dec.Changed, dec.Reason = to, to != inForce, "forced"
		dec.Explanation = fmt.Sprintf("Forced move of %s from %v to %v by the unsafe tuner-target hook.", d.Name, inForce, to)
		dec.Plan = tuner.PlanAfter(state.Unrepaired, inForce, to)
		next.Policy, next.LastChange = to, now
	}
	t.mu.Unlock()

	t.export(d.Name, dec, obs)
	if dec.Changed {
		t.n.log.Info("tuner decision", "keyspace", d.Name, "reason", dec.Reason, "from", dec.From.String(), "to", dec.To.String(), "why", dec.Explanation)
	}
	var planErr error
	if dec.Changed {
		next, planErr = t.apply(ctx, d, dec, state, next)
		if planErr != nil {
			dec.Explanation += " Not applied in full: " + planErr.Error()
			dec.To = next.Policy
		}
	}
	compact := dec.Compact(6)
	b, err := json.Marshal(compact)
	if err != nil {
		return fmt.Errorf("encode decision: %w", err)
	}
	t.mu.Lock()
	lt.last = &dec
	t.mu.Unlock()
	_, err = propose(ctx, t.n.raft, command{Op: "decision", Keyspace: KeyspaceDef{Name: d.Name, Tuner: &next}, Decision: b, PrevObserved: prevObserved, AtUnixMs: now.UnixMilli()})
	if err != nil {
		return fmt.Errorf("record decision: %w", err)
	}
	return planErr
}

// tunerRepairTimeout bounds the repair pass the tuner runs before lowering
// a quorum under a quorum floor, or to stream data to the replicas a
// growing N adds; the tuner loop waits for it.
const tunerRepairTimeout = 5 * time.Minute

// apply carries out a decision's plan, one metadata log entry per step, and
// returns the state left in force: prev is the state before the decision
// (its Policy the configuration in force), next the decision's state, whose
// other fields are kept. Under a quorum floor a step that requires a repair
// pass gets one (RepairKeyspace over every node, none allowed down): before
// it is committed when it lowers a quorum, right after it is applied
// everywhere when it only raises one. A step that grows N streams first
// (see grow). A pass that cannot finish stops the plan where it is, which
// is safe: every step committed so far is.
//
// A step that shrinks N is the plan's last, and needs no streaming: the
// replicas that leave a key's preference list keep its data, which nothing
// deletes (a later grow finds it there, and repair brings it up to date).
// While they are out of the list no delete reaches them, so once their
// tombstones are collected elsewhere (Config.TombstoneGrace) a later grow
// would stream their old values back: a resurrection risk that the repair
// pass of a grow cannot see, as a collected tombstone is nothing to
// compare with. So a grow is refused once half the grace has passed since
// the shrink (growAllowed).
func (t *tuning) apply(ctx context.Context, d KeyspaceDef, dec tuner.Decision, prev, next tuner.State) (tuner.State, error) {
	cur := next
	cur.Policy, cur.Unrepaired = prev.Policy, prev.Unrepaired
	floor := d.Adaptive.Floor == tuner.FloorQuorum
	// The plan's first step is safe only from the configuration in force,
	// not from the one before it, which some node may still serve: the last
	// step of the previous plan was not waited for. When it was committed
	// is not known here, so now bounds it.
	if err := t.waitApplied(ctx, d.Epoch, time.Now()); err != nil {
		return cur, fmt.Errorf("before step 1: the configuration in force (epoch %d): %w", d.Epoch, err)
	}
	for i, st := range dec.Plan {
		if size := t.ringSize(); st.Policy.N > size {
			return cur, fmt.Errorf("step %d (%v): the ring has %d members", i+1, st.Policy, size)
		}
		if floor && st.RepairFirst(cur.Policy) {
			// The step before is applied everywhere: the first step's
			// from is in force, and every later one waited below.
			if err := t.repair(ctx, d.Name, fmt.Sprintf("before step %d (%v)", i+1, st.Policy), RepairOptions{}); err != nil {
				return cur, err
			}
			cur.Repaired()
		}
		if st.RequiresStreaming {
			if err := t.growAllowed(cur, time.Now()); err != nil {
				return cur, err
			}
			if err := t.grow(ctx, d.Name, cur, st.Policy.N, fmt.Sprintf("before step %d (%v)", i+1, st.Policy)); err != nil {
				return cur, err
			}
		}
		if st.Policy.N != cur.Policy.N {
			cur.Resized(st.Policy.N, time.Now())
		}
		cur.Moved(st.Policy)
		def := KeyspaceDef{Name: d.Name, ReplicationFactor: st.Policy.N, R: st.Policy.R, W: st.Policy.W, ReadAll: st.Policy.Read == tuner.ReadAll}
		if st.Policy.Read == tuner.ReadHedged && dec.Chosen != nil {
			def.HedgeAfterNs = int64(max(dec.Chosen.HedgeAfter, time.Millisecond))
		}
		// A step repaired after it is recorded unrepaired until the pass
		// has run: a leader that fails over in between must not forget the
		// weak writes.
		repairAfter := floor && st.RequiresRepair && !st.RepairFirst(cur.Policy)
		def.Tuner = cloneState(cur)
		out, err := propose(ctx, t.n.raft, command{Op: "tune", Keyspace: def, AtUnixMs: time.Now().UnixMilli()})
		committedAt := time.Now()
		if err != nil {
			if st.RequiresStreaming {
				t.abandonGrow(ctx, d.Name, &cur)
			}
			return cur, fmt.Errorf("step %d (%v): %w", i+1, st.Policy, err)
		}
		if i < len(dec.Plan)-1 || st.RequiresAllApplied || repairAfter {
			if err := t.waitApplied(ctx, out.Epoch, committedAt); err != nil {
				return cur, fmt.Errorf("after step %d (%v): %w", i+1, st.Policy, err)
			}
		}
		if repairAfter {
			if err := t.repair(ctx, d.Name, fmt.Sprintf("after step %d (%v)", i+1, st.Policy), RepairOptions{}); err != nil {
				return cur, err
			}
			cur.Repaired()
		}
	}
	return cur, nil
}

// errGrowAfterShrink refuses to grow N again long after it shrank.
var errGrowAfterShrink = errors.New("N may not grow again this long after it shrank")

// growAllowed refuses a grow once half the tombstone grace has passed since
// N shrank: the replicas dropped then keep their data but missed every
// delete since, and the others collect tombstones after the grace, so
// streaming could bring deleted values back. Half leaves the grow, which
// must finish within the grace, time to run. Cleaning the dropped replicas'
// data after a shrink would lift this; it is not built.
func (t *tuning) growAllowed(cur tuner.State, now time.Time) error {
	if cur.ShrunkAt.IsZero() || now.Sub(cur.ShrunkAt) <= t.n.cfg.TombstoneGrace/2 {
		return nil
	}
	return fmt.Errorf("%w: it shrank from %d at %s, more than half the tombstone grace (%v) ago, so the replicas it dropped may hold values deleted since whose tombstones are being collected, and growing would stream them back (cleaning dropped replicas is not built)",
		errGrowAfterShrink, cur.ShrunkFrom, cur.ShrunkAt.UTC().Format(time.RFC3339), t.n.cfg.TombstoneGrace)
}

// grow readies the replicas a step that raises N to newN adds
// (tuner.Step.RequiresStreaming), with cur, the state in force, unchanged:
//
//  1. a "tune" entry sets PendingN to newN, and every node applies it (or
//     its configuration lease runs out: waitApplied),
//     so that from then on every write also goes to the added replicas (a
//     hint when one is down or fails), and a write still carrying the
//     epoch before is refused by every replica and retried under it;
//  2. a repair pass with ReplicationFactor newN copies to them what the
//     replicas held when it started, which covers every write acknowledged
//     under the epoch before.
//
// Only then may the caller commit the step, which counts them. When the
// pass fails, PendingN is cleared again, leaving the keyspace as it was,
// and the error says so.
func (t *tuning) grow(ctx context.Context, name string, cur tuner.State, newN int, when string) error {
	epoch, err := t.setPendingApplied(ctx, name, newN, cloneState(cur))
	if err != nil {
		t.abandonGrow(ctx, name, &cur)
		return fmt.Errorf("announce N=%d %s: %w", newN, when, err)
	}
	t.n.log.Info("tuner streaming to added replicas", "keyspace", name, "pending_n", newN, "epoch", epoch)
	if err := t.repair(ctx, name, fmt.Sprintf("streaming to N=%d %s", newN, when), RepairOptions{ReplicationFactor: newN}); err != nil {
		t.abandonGrow(ctx, name, &cur)
		return fmt.Errorf("N stays at %d, writes no longer sent to the added replicas: %w", cur.Policy.N, err)
	}
	return nil
}

// setPendingApplied proposes PendingN n for keyspace name and waits until
// every node has applied it (waitApplied); it returns the entry's epoch.
func (t *tuning) setPendingApplied(ctx context.Context, name string, n int, state *tuner.State) (uint64, error) {
	if err := t.setPending(ctx, name, n, state); err != nil {
		return 0, err
	}
	committedAt := time.Now()
	d, _ := t.n.meta.Def(name)
	if err := t.waitApplied(ctx, d.Epoch, committedAt); err != nil {
		return 0, err
	}
	return d.Epoch, nil
}

// setPending proposes a "tune" entry that keeps keyspace name's
// configuration in force (as this node, the leader, has applied it) and
// sets its PendingN to n (0: none) and its tuner state to state.
func (t *tuning) setPending(ctx context.Context, name string, n int, state *tuner.State) error {
	d, ok := t.n.meta.Def(name)
	if !ok {
		return fmt.Errorf("keyspace %q: %w", name, replication.ErrKeyspaceNotFound)
	}
	def := KeyspaceDef{Name: name, ReplicationFactor: d.ReplicationFactor, R: d.R, W: d.W, ReadAll: d.ReadAll, HedgeAfterNs: d.HedgeAfterNs, PendingN: n, Tuner: state}
	if def.R == 0 || def.W == 0 {
		// A keyspace created at a named level: spell its R and W out.
		p := policyOf(d)
		def.R, def.W = p.R, p.W
	}
	if _, err := propose(ctx, t.n.raft, command{Op: "tune", Keyspace: def, AtUnixMs: time.Now().UnixMilli()}); err != nil {
		return fmt.Errorf("set pending N to %d: %w", n, err)
	}
	return nil
}

// abandonGrow clears PendingN after a grow that did not complete, so that
// writes stop going to replicas that will not count. Its failure is logged
// only: the next decision clears a PendingN left behind (see decide).
func (t *tuning) abandonGrow(ctx context.Context, name string, cur *tuner.State) {
	// Clear it even when the plan's context has ended: writes would
	// otherwise keep going to replicas that will not count.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.setPending(cctx, name, 0, cloneState(*cur)); err != nil {
		t.n.log.Warn("tuner could not clear pending N after a failed grow; the next decision will", "keyspace", name, "err", err)
	}
}

// cloneState copies s so that the metadata command does not share its
// Unrepaired slice with the tuner's working state.
func cloneState(s tuner.State) *tuner.State {
	s.Unrepaired = slices.Clone(s.Unrepaired)
	return &s
}

// repair runs the tuner's repair pass over keyspace name on every node.
func (t *tuning) repair(ctx context.Context, name, when string, opts RepairOptions) error {
	rctx, cancel := context.WithTimeout(ctx, tunerRepairTimeout)
	defer cancel()
	start := time.Now()
	rep, err := t.n.RepairKeyspace(rctx, name, opts, nil)
	if err != nil {
		return fmt.Errorf("repair pass %s: %w", when, err)
	}
	t.n.log.Info("tuner repair pass", "keyspace", name, "when", when, "rf", rep.ReplicationFactor, "took", time.Since(start).Round(time.Millisecond),
		"nodes", len(rep.NodesDone), "scanned", rep.Stats.KeysScanned, "pushed", rep.Stats.RecordsPushed)
	return nil
}

// waitApplied waits until no node can still serve a fenced keyspace at a
// configuration before index, the entry committed at committedAt (or, when
// the leader does not know when, any time before committedAt): each ring
// member (gossip's dead ones too: a node cut off by a partition is dead to
// this side but may still serve clients on its own) must say it has applied
// index, or one lease wait must have passed since committedAt, after which
// a member that did not apply it holds no lease from before it
// (replication/fence.go). Only members that left the cluster are skipped.
func (t *tuning) waitApplied(ctx context.Context, index uint64, committedAt time.Time) error {
	leaseOver := committedAt.Add(t.n.leaseWait())
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second+time.Until(leaseOver))
	defer cancel()
	confirmed := map[string]bool{}
	for {
		lagging := ""
		v := t.n.members.View()
		for _, m := range v.Members {
			if confirmed[m.ID] {
				continue
			}
			if m.State == membership.Left && time.Now().After(leaseOver) {
				// It said it was leaving; a lease it took before cannot
				// outlast leaseOver either.
				continue
			}
			if t.memberApplied(wctx, m.ID, index) {
				confirmed[m.ID] = true
				continue
			}
			if lagging == "" {
				lagging = m.ID
			}
		}
		if lagging == "" || time.Now().After(leaseOver) {
			if lagging != "" {
				t.n.log.Info("configuration step relies on lease expiry", "index", index, "unconfirmed", lagging, "waited", time.Since(committedAt).Round(time.Millisecond))
			}
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("node %s has not applied metadata index %d: %w", lagging, index, wctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// memberApplied reports whether member id says it has applied the metadata
// log up to index.
func (t *tuning) memberApplied(ctx context.Context, id string, index uint64) bool {
	if id == t.n.cfg.ID {
		return t.n.meta.Applied() >= index
	}
	c, err := t.n.transport.adminClient(id)
	if err != nil {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := c.ClusterStatus(cctx, &kvpb.ClusterStatusRequest{})
	return err == nil && st.GetMetadataIndex() >= index
}

// export sets the predicted-against-observed gauges.
func (t *tuning) export(keyspace string, dec tuner.Decision, obs tuner.Observation) {
	if c := dec.Current; c != nil {
		t.predicted.WithLabelValues(keyspace, "stale").Set(c.StaleProb)
		t.predicted.WithLabelValues(keyspace, "read_p99_seconds").Set(c.ReadP99.Seconds())
		t.predicted.WithLabelValues(keyspace, "write_p99_seconds").Set(c.WriteP99.Seconds())
	}
	t.observed.WithLabelValues(keyspace, "stale").Set(obs.StaleRate())
	t.observed.WithLabelValues(keyspace, "read_p99_seconds").Set(obs.ReadLatency.Quantile(0.99).Seconds())
	t.observed.WithLabelValues(keyspace, "write_p99_seconds").Set(obs.WriteLatency.Quantile(0.99).Seconds())
}

// whatIf predicts every candidate for a keyspace from the leader's window
// (or a fresh gather when the window is empty).
func (t *tuning) whatIf(ctx context.Context, d KeyspaceDef) ([]tuner.CandidateReport, error) {
	t.mu.Lock()
	var obs tuner.Observation
	have := false
	if lt, ok := t.leader[d.Name]; ok && lt.window.Len() > 0 {
		obs, have = lt.window.Merged(), true
	}
	t.mu.Unlock()
	if !have {
		var err error
		if obs, err = t.gather(ctx, d.Name); err != nil {
			return nil, err
		}
	}
	return tuner.WhatIf(t.model, obs, goalOf(d, t.ringSize()))
}

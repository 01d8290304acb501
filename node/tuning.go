package node

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/node/membership"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/tuner"
	"github.com/adaptkv/adaptkv/tuner/rollout"
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
// run out (the plan executor, tuner/rollout; the joint step of
// DESIGN.md). Because decisions and steps go through the log, a node that
// is not the leader (or a minority side of a partition) changes nothing.
type tuning struct {
	n        *Node
	exec     *rollout.Executor
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
	t := &tuning{n: n, exec: newExecutor(n), model: tuner.DefaultModel(), interval: interval, seed: maphash.MakeSeed(), leader: map[string]*leaderTuning{}, targets: map[string]tuner.Policy{}}
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
	if r := t.recorder(keyspace); r != nil {
		recordCall(rank, write, rtt, ok, r.rec.Sent, r.rec.Timeout, r.rec.Leg)
	}
}

// recordCall records one replica call under k (a rank, or a node recorded
// apart): sent, then a timeout or its round trip.
func recordCall[K int | string](k K, write bool, rtt time.Duration, ok bool, sent, timeout func(K, bool), leg func(K, tuner.Leg, time.Duration)) {
	sent(k, write)
	switch {
	case !ok:
		timeout(k, write)
	case write:
		leg(k, tuner.LegWriteRTT, rtt)
	default:
		leg(k, tuner.LegReadRTT, rtt)
	}
}

var _ replication.NodeObserver = (*tuning)(nil)

// ReplicaAt implements replication.NodeObserver: Replica, except that a
// request to a node the health detector has flagged is recorded under the
// node's ID, apart from the ranks (tuner.ReplicaObservation.Apart).
//
// Why? Coordinators rank a flagged node last, so by rank the last rank
// held the flagged node's legs for the keys it holds and a healthy
// replica's for the others, one histogram. The model, which knows the
// share of keys the flagged node holds (Observation.FlaggedShare), then
// drew the third replica of the other keys from that mixture too: in the
// adaptive experiment's slow-replica phase it predicted R=1 W=2 stale at
// 0.12% (goal 0.1%) where the probes measured none, and the tuner went
// back to waiting for the slow node on every write (BENCHMARKS.md).
func (t *tuning) ReplicaAt(keyspace string, rank int, node string, write bool, rtt time.Duration, ok bool) {
	if !t.isFlagged(node) {
		t.Replica(keyspace, rank, write, rtt, ok)
		return
	}
	if node == t.n.cfg.ID {
		// A flagged node coordinating (a client that has not yet heard
		// of the flag) calls its own replica with no network and none of
		// the slowness that flagged it: the model's flagged replica is
		// one other coordinators reach, so this call says nothing of it.
		return
	}
	if r := t.recorder(keyspace); r != nil {
		recordCall(node, write, rtt, ok, r.rec.SentApart, r.rec.TimeoutApart, r.rec.LegApart)
	}
}

// isFlagged reports whether the metadata log has flagged node, as the
// coordinators' ranking sees it (nodeHealth.flagged): an atomic load and a
// map lookup, on the request path.
func (t *tuning) isFlagged(node string) bool {
	hs := t.n.meta.health.Load()
	if hs == nil {
		return false
	}
	_, ok := hs.Flagged[node]
	return ok
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
func (t *tuning) ringSize() int { return t.n.ringSize() }

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
	obs := r.rec.Snapshot(time.Now(), policyOf(d), t.n.ringSize())
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
	var mu sync.Mutex
	t.n.eachAlivePeer(ctx, 2*time.Second, func(ctx context.Context, id string, c kvpb.AdminClient) {
		resp, err := c.TunerSnapshot(ctx, &kvpb.TunerSnapshotRequest{Keyspace: keyspace})
		if err != nil {
			t.n.log.Debug("tuner snapshot failed", "member", id, "keyspace", keyspace, "err", err)
			return
		}
		var o tuner.Observation
		if err := json.Unmarshal(resp.GetObservationJson(), &o); err != nil {
			t.n.log.Warn("tuner snapshot undecodable", "member", id, "err", err)
			return
		}
		mu.Lock()
		obs = tuner.Merge(obs, o)
		mu.Unlock()
	})
	obs.Flagged = t.flagged()
	obs.FlaggedShare = flaggedShare(topology{t.n}.Ring(), obs.Flagged)
	return obs, nil
}

// flaggedShare is, for each replication factor n up to tuner.MaxRF, the
// share of the token space whose n replicas include a flagged node: the
// tuner's observations name replicas by rank, and a coordinator ranks a
// flagged replica last, so this is how often "the last-ranked replica" is
// a flagged one (tuner.Observation.FlaggedShare), whose legs ReplicaAt
// records apart. Nil when none is flagged.
func flaggedShare(r *ring.Ring, flagged []string) []float64 {
	if len(flagged) == 0 || r == nil || r.Len() == 0 {
		return nil
	}
	share := make([]float64, min(tuner.MaxRF, r.Len())+1)
	for n := 1; n < len(share); n++ {
		for _, g := range r.Ranges(n) {
			if !slices.ContainsFunc(g.Replicas, func(id string) bool { return slices.Contains(flagged, id) }) {
				continue
			}
			// The arc (After, Through], wrapping; one range covering the
			// whole ring has After == Through.
			arc := g.Through - g.After
			if arc == 0 {
				share[n] = 1
				break
			}
			share[n] += float64(arc) / math.Exp2(64)
		}
		share[n] = min(share[n], 1)
	}
	return share
}

// flagged returns the nodes the metadata log has flagged as gray failures,
// sorted. The tuner must know them: coordinators read from them last and
// the SDK does not coordinate through them, so a write quorum that leaves
// out a slow flagged replica bounds staleness without waiting for it.
func (t *tuning) flagged() []string {
	hs := t.n.meta.health.Load()
	if hs == nil || len(hs.Flagged) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(hs.Flagged))
}

// eachAlivePeer calls f for every other member gossip sees alive, at once,
// each with its admin client and a context bounded by timeout, and returns
// when every call has; a member without a connection is skipped.
func (n *Node) eachAlivePeer(ctx context.Context, timeout time.Duration, f func(ctx context.Context, id string, c kvpb.AdminClient)) {
	v := n.members.View()
	var wg sync.WaitGroup
	for _, m := range v.Members {
		if m.ID == n.cfg.ID || !v.Alive(m.ID) {
			continue
		}
		c, err := n.transport.adminClient(m.ID)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			f(cctx, m.ID, c)
		}()
	}
	wg.Wait()
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
		if err := t.exec.SetPending(ctx, d.Name, 0, d.Tuner); err != nil {
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
	// A cleanup a shrink of N left owed is retried before deciding, so that
	// N may grow again as soon as it completes (rollout.Executor.Cleanup).
	var cleanupNote string
	if d.Tuner != nil && !d.Tuner.ShrunkAt.IsZero() && d.PendingN == 0 {
		st := *d.Tuner
		cleanupNote, _ = t.exec.Cleanup(ctx, d.Name, &st)
		d.Tuner = &st
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
	if t.exec.GrowAllowed(state) != nil {
		goal.MaxRF = max(goal.MinRF, min(goal.MaxRF, d.ReplicationFactor)) // see rollout.Executor.GrowAllowed
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

	if cleanupNote != "" {
		dec.Explanation += " " + cleanupNote
	}
	t.export(d.Name, dec, obs)
	if dec.Changed {
		t.n.log.Info("tuner decision", "keyspace", d.Name, "reason", dec.Reason, "from", dec.From.String(), "to", dec.To.String(), "why", dec.Explanation)
	}
	var planErr error
	if dec.Changed {
		var note string
		next, note, planErr = t.exec.Apply(ctx, rollout.Keyspace{Name: d.Name, Epoch: d.Epoch, Floor: d.Adaptive.Floor}, dec, state, next)
		if note != "" {
			dec.Explanation += " " + note
		}
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
const tunerRepairTimeout = rollout.DefaultRepairTimeout

// newExecutor builds the executor of the tuner's plans over this node's
// metadata log, membership and repair passes.
func newExecutor(n *Node) *rollout.Executor {
	return &rollout.Executor{
		Log: tunerLog{n}, Cluster: tunerCluster{n}, Repairer: tunerRepairer{n}, Cleaner: tunerCleaner{n},
		LeaseWait: n.leaseWait(), RepairTimeout: tunerRepairTimeout,
		Logger: n.log,
	}
}

// tunerLog is the metadata log as the plan executor sees it: "tune"
// entries.
type tunerLog struct{ n *Node }

// Propose implements rollout.Log.
func (l tunerLog) Propose(ctx context.Context, c rollout.Config) (uint64, error) {
	def := KeyspaceDef{Name: c.Keyspace, ReplicationFactor: c.Policy.N, R: c.Policy.R, W: c.Policy.W,
		ReadAll: c.Policy.Read == tuner.ReadAll, HedgeAfterNs: int64(c.HedgeAfter), PendingN: c.PendingN, Tuner: c.State}
	out, err := propose(ctx, l.n.raft, command{Op: "tune", Keyspace: def, AtUnixMs: time.Now().UnixMilli()})
	return out.Epoch, err
}

// InForce implements rollout.Log: the configuration this node has applied,
// R and W spelled out for a keyspace created at a named level.
func (l tunerLog) InForce(name string) (rollout.Config, error) {
	d, ok := l.n.meta.Def(name)
	if !ok {
		return rollout.Config{}, fmt.Errorf("keyspace %q: %w", name, replication.ErrKeyspaceNotFound)
	}
	p := policyOf(d)
	p.N = d.ReplicationFactor
	if d.R != 0 && d.W != 0 {
		p.R, p.W = d.R, d.W
	}
	return rollout.Config{Keyspace: name, Policy: p, HedgeAfter: time.Duration(d.HedgeAfterNs), PendingN: d.PendingN, State: d.Tuner}, nil
}

// tunerCluster is the membership as the plan executor sees it.
type tunerCluster struct{ n *Node }

// RingSize implements rollout.Cluster.
func (c tunerCluster) RingSize() int { return c.n.ringSize() }

// Members implements rollout.Cluster.
func (c tunerCluster) Members() []rollout.Member {
	v := c.n.members.View()
	out := make([]rollout.Member, len(v.Members))
	for i, m := range v.Members {
		out[i] = rollout.Member{ID: m.ID, Left: m.State == membership.Left}
	}
	return out
}

// Applied implements rollout.Cluster.
func (c tunerCluster) Applied(ctx context.Context, id string, index uint64) bool {
	return c.n.tuning.memberApplied(ctx, id, index)
}

// tunerRepairer runs the plan executor's repair passes from this node.
type tunerRepairer struct{ n *Node }

// Repair implements rollout.Repairer.
func (r tunerRepairer) Repair(ctx context.Context, name string, rf int) (rollout.RepairResult, error) {
	rep, err := r.n.RepairKeyspace(ctx, name, RepairOptions{ReplicationFactor: rf}, nil)
	if err != nil {
		return rollout.RepairResult{}, err
	}
	return rollout.RepairResult{ReplicationFactor: rep.ReplicationFactor, Nodes: len(rep.NodesDone),
		KeysScanned: rep.Stats.KeysScanned, RecordsPushed: rep.Stats.RecordsPushed}, nil
}

// tunerCleaner runs the plan executor's cleanups from this node.
type tunerCleaner struct{ n *Node }

// Cleanup implements rollout.Cleaner over CleanupKeyspace. A member gossip
// says is down fails it at once, naming the member, rather than after the
// wait for it to apply the metadata and a refused call: the tuner loop
// retries an owed cleanup at every decision.
func (c tunerCleaner) Cleanup(ctx context.Context, name string) (rollout.CleanupResult, error) {
	view := c.n.members.View()
	if st := c.n.meta.topo.Load(); st != nil {
		for _, m := range st.Members {
			if m.State == StateNormal && !view.Alive(m.ID) {
				return rollout.CleanupResult{}, fmt.Errorf("node %s is down", m.ID)
			}
		}
	}
	resp, err := c.n.CleanupKeyspace(ctx, name)
	if err != nil {
		return rollout.CleanupResult{}, err
	}
	var res rollout.CleanupResult
	for _, r := range resp.GetNodes() {
		if r.GetError() != "" {
			return rollout.CleanupResult{}, fmt.Errorf("node %s: %s", r.GetId(), r.GetError())
		}
		res.Nodes++
		res.KeysScanned += r.GetKeysScanned()
		res.KeysRemoved += r.GetKeysRemoved()
	}
	return res, nil
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
		obs.Flagged = t.flagged() // as they are now, not at the last interval
		obs.FlaggedShare = flaggedShare(topology{t.n}.Ring(), obs.Flagged)
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

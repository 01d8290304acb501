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
// every live node has applied the previous one (the joint step of
// DESIGN.md). Because decisions and steps go through the log, a node that
// is not the leader (or a minority side of a partition) changes nothing.
type tuning struct {
	n        *Node
	model    tuner.Model
	interval time.Duration
	seed     maphash.Seed

	recs atomic.Pointer[map[string]*ksRecorder]

	// forceEvery, when positive, makes the leader move each adaptive
	// keyspace to another safe configuration at that interval, whatever the
	// model says: the unsafe hook that tests transitions under faults.
	forceEvery atomic.Int64

	mu     sync.Mutex // guards leader: the loop and whatif
	leader map[string]*leaderTuning

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
	t := &tuning{n: n, model: tuner.DefaultModel(), interval: interval, seed: maphash.MakeSeed(), leader: map[string]*leaderTuning{}}
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

// goalOf is the goal the tuner decides against: the keyspace's, with N held
// at the replication factor, since changing N needs data streamed to new
// replicas, which is not built yet.
func goalOf(d KeyspaceDef) tuner.Goal {
	g := *d.Adaptive
	g.MinRF, g.MaxRF = d.ReplicationFactor, d.ReplicationFactor
	return g
}

// syncRecorders keeps one recorder per adaptive keyspace, its replicas
// numbered by rank (see Replica); a change of replication factor starts a
// fresh recorder.
func (t *tuning) syncRecorders() {
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

func (t *tuning) decide(ctx context.Context, d KeyspaceDef) error {
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
	next, dec := tuner.Decide(t.model, state, lt.window, goalOf(d), now)
	if every := time.Duration(t.forceEvery.Load()); every > 0 && now.Sub(lt.lastForce) >= every && d.ReplicationFactor == 3 {
		lt.forced = (lt.forced + 1) % len(forcedCycle)
		to := forcedCycle[lt.forced]
		dec.To, dec.Changed, dec.Reason = to, to != inForce, "forced"
		dec.Explanation = fmt.Sprintf("Forced move of %s from %v to %v by the unsafe test hook (every %v).", d.Name, inForce, to, every)
		dec.Plan = tuner.PlanAfter(state.Unrepaired, inForce, to)
		next.Policy, next.LastChange = to, now
		lt.lastForce = now
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
	_, err = propose(t.n.raft, command{Op: "decision", Keyspace: KeyspaceDef{Name: d.Name, Tuner: &next}, Decision: b, PrevObserved: prevObserved, AtUnixMs: now.UnixMilli()}, 5*time.Second)
	if err != nil {
		return fmt.Errorf("record decision: %w", err)
	}
	return planErr
}

// errNeedsStreaming names the plan steps the shell cannot carry out yet:
// coordinators do not send writes to replicas that are not counted yet, so
// N cannot grow safely.
var errNeedsStreaming = errors.New("the plan changes N, which needs data streamed to new replicas (not built yet)")

// tunerRepairTimeout bounds the repair pass the tuner runs before lowering
// a quorum under a quorum floor; the tuner loop waits for it.
const tunerRepairTimeout = 5 * time.Minute

// apply carries out a decision's plan, one metadata log entry per step, and
// returns the state left in force: prev is the state before the decision
// (its Policy the configuration in force), next the decision's state, whose
// other fields are kept. Under a quorum floor a step that requires a repair
// pass gets one (RepairKeyspace over every node, none allowed down): before
// it is committed when it lowers a quorum, right after it is applied
// everywhere when it only raises one. A pass that cannot finish stops the
// plan where it is, which is safe: every step committed so far is.
func (t *tuning) apply(ctx context.Context, d KeyspaceDef, dec tuner.Decision, prev, next tuner.State) (tuner.State, error) {
	cur := next
	cur.Policy, cur.Unrepaired = prev.Policy, prev.Unrepaired
	for _, st := range dec.Plan {
		if st.RequiresStreaming || st.Policy.N != d.ReplicationFactor {
			return cur, errNeedsStreaming
		}
	}
	floor := d.Adaptive.Floor == tuner.FloorQuorum
	for i, st := range dec.Plan {
		if floor && st.RepairFirst(cur.Policy) {
			// The step before is applied everywhere: the first step's
			// from is in force, and every later one waited below.
			if err := t.repair(ctx, d.Name, fmt.Sprintf("before step %d (%v)", i+1, st.Policy)); err != nil {
				return cur, err
			}
			cur.Repaired()
		}
		cur.Moved(st.Policy)
		def := KeyspaceDef{Name: d.Name, R: st.Policy.R, W: st.Policy.W, ReadAll: st.Policy.Read == tuner.ReadAll}
		if st.Policy.Read == tuner.ReadHedged && dec.Chosen != nil {
			def.HedgeAfterNs = int64(max(dec.Chosen.HedgeAfter, time.Millisecond))
		}
		// A step repaired after it is recorded unrepaired until the pass
		// has run: a leader that fails over in between must not forget the
		// weak writes.
		repairAfter := floor && st.RequiresRepair && !st.RepairFirst(cur.Policy)
		def.Tuner = cloneState(cur)
		out, err := propose(t.n.raft, command{Op: "tune", Keyspace: def, AtUnixMs: time.Now().UnixMilli()}, 5*time.Second)
		if err != nil {
			return cur, fmt.Errorf("step %d (%v): %w", i+1, st.Policy, err)
		}
		if i < len(dec.Plan)-1 || st.RequiresAllApplied || repairAfter {
			if err := t.waitApplied(ctx, out.Epoch); err != nil {
				return cur, fmt.Errorf("after step %d (%v): %w", i+1, st.Policy, err)
			}
		}
		if repairAfter {
			if err := t.repair(ctx, d.Name, fmt.Sprintf("after step %d (%v)", i+1, st.Policy)); err != nil {
				return cur, err
			}
			cur.Repaired()
		}
	}
	return cur, nil
}

// cloneState copies s so that the metadata command does not share its
// Unrepaired slice with the tuner's working state.
func cloneState(s tuner.State) *tuner.State {
	s.Unrepaired = slices.Clone(s.Unrepaired)
	return &s
}

// repair runs the tuner's repair pass over keyspace name on every node.
func (t *tuning) repair(ctx context.Context, name, when string) error {
	rctx, cancel := context.WithTimeout(ctx, tunerRepairTimeout)
	defer cancel()
	start := time.Now()
	rep, err := t.n.RepairKeyspace(rctx, name, RepairOptions{}, nil)
	if err != nil {
		return fmt.Errorf("repair pass %s: %w", when, err)
	}
	t.n.log.Info("tuner repair pass", "keyspace", name, "when", when, "took", time.Since(start).Round(time.Millisecond),
		"nodes", len(rep.NodesDone), "scanned", rep.Stats.KeysScanned, "pushed", rep.Stats.RecordsPushed)
	return nil
}

// waitApplied waits until every live node has applied the metadata log up
// to index, so that no coordinator still acts on the configuration before.
func (t *tuning) waitApplied(ctx context.Context, index uint64) error {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		lagging := ""
		v := t.n.members.View()
		for _, m := range v.Members {
			if !v.Alive(m.ID) {
				continue
			}
			if m.ID == t.n.cfg.ID {
				if t.n.meta.Applied() < index {
					lagging = m.ID
				}
				continue
			}
			c, err := t.n.transport.adminClient(m.ID)
			if err != nil {
				lagging = m.ID
				break
			}
			cctx, ccancel := context.WithTimeout(wctx, time.Second)
			st, err := c.ClusterStatus(cctx, &kvpb.ClusterStatusRequest{})
			ccancel()
			if err != nil || st.GetMetadataIndex() < index {
				lagging = m.ID
				break
			}
		}
		if lagging == "" {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("node %s has not applied metadata index %d: %w", lagging, index, wctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
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
	return tuner.WhatIf(t.model, obs, goalOf(d))
}

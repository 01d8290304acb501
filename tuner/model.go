package tuner

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// ErrNoData is returned by Predict when the observation holds no replica
// latencies for one of the paths, so the model has nothing to sample.
var ErrNoData = errors.New("tuner: no latency samples to model")

// Model is how the tuner predicts and chooses: the Monte Carlo's settings,
// the calibration's, the cost weights and the anti-flapping rules. It is a
// plain value; Decide and Predict never modify it. Use DefaultModel and
// override fields.
type Model struct {
	// Trials is the number of Monte Carlo trials per replication factor.
	// All candidates with the same N are evaluated on the same trials
	// (common random numbers), so their differences carry less noise than
	// their absolute values. The standard error of a predicted probability
	// p is √(p(1−p)/Trials); at 4000 trials a p99 rests on 40 samples.
	// Why not fewer? Tail percentiles become noise and Decide flaps more.
	// Why not more? Cost grows linearly (see BenchmarkDecide), and the
	// stale-read goal is enforced by measurement (step back) as well.
	Trials int `json:"trials"`
	// Seed seeds the PCG generator (math/rand/v2); with the same seed and
	// the same inputs every prediction is bit-for-bit the same.
	Seed uint64 `json:"seed"`
	// HedgeQuantile sets the hedging delay of ReadHedged candidates: the
	// quantile of the unhedged read latency after which the extra request
	// goes out. 0.95 sends about 5% more requests, Tail-at-Scale style.
	HedgeQuantile float64 `json:"hedge_quantile"`
	// Timeout is the coordinator's request timeout: an operation that
	// cannot gather its quorum because replicas timed out fails after it,
	// and counts at this latency.
	Timeout time.Duration `json:"timeout_ns"`
	// HintDelay is how long after its timeout a write that a replica
	// missed is assumed to reach it anyway (hinted handoff, or the next
	// repair); reads that replica answers until then are stale. Why not
	// infinite? Hints are delivered, and a flapping replica would otherwise
	// look stale forever. Why not shorter? Hints wait for gossip to see the
	// replica alive again, which takes seconds.
	HintDelay time.Duration `json:"hint_delay_ns"`
	// WriteLegShare and ReadLegShare split a replica's measured round trip
	// when its one-way legs are unknown: a write reaches (and is applied
	// by) the replica WriteLegShare of the way through its round trip, and
	// a read is served ReadLegShare of the way through its own; the rest is
	// the way back. Both are in (0, 1]; both default to ½.
	//
	// The split cannot be learnt from round trips, and either way it is
	// wrong somewhere. 1 (the latest a replica can hold a write it
	// acknowledged) is right when the delay is on the request path, as the
	// experiment's injected link latency is, and badly wrong when it is on
	// the way back: a replica that is slow to answer (the experiment's slow
	// replica delays its replies by 50 ms) looks as if it got every write
	// 50 ms late. Measured in the experiment (bench/scenario/
	// EXPERIMENT.md), with the write→read gap taken from the commit: at ½
	// the what-if stale rate of R=1 W=1 was 1.05×, 1.65× and 0.92× what
	// static one measured in the three phases, and R=1 W=2 was predicted at
	// most 0.1% where it returned no stale read; at 1 the first was 1.6×,
	// 2.5× and 1.02×, and R=1 W=2 in the slow-replica phase 0.375%, over
	// 18× too high. Calibration corrects what remains once a partial
	// quorum has been observed.
	WriteLegShare float64 `json:"write_leg_share"`
	ReadLegShare  float64 `json:"read_leg_share"`
	// CoordinatorSpread models clients that spread a key's reads over its
	// replicas while its writes go to one of them (adaptkv's SDK does), with
	// replica latencies recorded by rank from each coordinator (nearest
	// first) rather than by node: the replica a read reaches first is then
	// the one the write reached first only 1/N of the time, so partial
	// quorums are stale more often than a single coordinator would see.
	CoordinatorSpread bool `json:"coordinator_spread,omitempty"`

	// Calibration tunes the online correction of predicted stale rates.
	Calibration CalibrationConfig `json:"calibration"`
	// Cost weighs the candidates; see CostWeights.
	Cost CostWeights `json:"cost"`

	// Dwell is the least time between two changes of a keyspace's policy,
	// except for moves to a safer configuration (step back), which are
	// immediate. Why not shorter? A change is a metadata-log commit plus,
	// for R or W going down, a joint step every node must apply; the window
	// must also refill with evidence about the new policy before it is
	// judged. Why not longer? A changed workload goes unserved for that long.
	Dwell time.Duration `json:"dwell_ns"`
	// BackoffBase and BackoffMax bound the wait after a step back before a
	// partial quorum as weak as the one stepped back from is eligible again
	// (see Backoff): the first wait is BackoffBase (at least Dwell), each
	// further step back in a row doubles it, up to BackoffMax. BackoffBase
	// 0 turns the backoff off. Why not shorter? Every retry of a partial
	// quorum the model under-predicts returns stale reads for at least an
	// interval before the probes see them; the waits must be long beside
	// the phases of good behaviour for the long-run stale rate to stay
	// under the goal. Why not longer? A workload that changed for the
	// better (fewer reads right after writes) is served by the overlapping
	// quorum, at its cost, for that long; BackoffMax bounds the loss.
	BackoffBase time.Duration `json:"backoff_base_ns"`
	BackoffMax  time.Duration `json:"backoff_max_ns"`
	// MinGain is the least relative cost improvement worth a change: the
	// best candidate must cost at most (1−MinGain) times the current one.
	MinGain float64 `json:"min_gain"`
	// MinStaleEvents is how many stale reads the window must hold, besides
	// a measured rate above the goal, before the tuner steps back. It keeps
	// one unlucky read in a small sample from forcing a change.
	MinStaleEvents uint64 `json:"min_stale_events"`
}

// CalibrationConfig tunes how the measured stale-read rate corrects the
// model (see Calibration).
type CalibrationConfig struct {
	// Alpha is the weight of the newest interval in the exponentially
	// weighted mean of log(measured/predicted), in (0, 1].
	Alpha float64 `json:"alpha"`
	// MaxFactor clamps the correction to [1/MaxFactor, MaxFactor], so no run
	// of bad luck can make the model claim a partial quorum is almost never
	// stale, or forbid partial quorums forever.
	MaxFactor float64 `json:"max_factor"`
	// Prior is a pseudo-count of stale reads added to both the measured and
	// the predicted count before taking their ratio; with little evidence
	// the ratio stays near 1.
	Prior float64 `json:"prior"`
	// MinProbes is the number of probed reads, summed over the intervals
	// under one policy, that the calibration folds in at once (see
	// Calibration). Why not fewer? At a stale rate near a 0.1% goal, 100
	// probes expect 0.1 stale reads, and the prior keeps such a fold small;
	// fewer would fold mostly noise, more often. Why not more? Evidence
	// accumulates across intervals, so more only delays the first fold.
	MinProbes uint64 `json:"min_probes"`
	// MinStale is the number of stale reads that makes pending evidence
	// worth folding in when its policy leaves force before MinProbes were
	// probed (typically a step back); 0 drops such evidence. Default 3, as
	// Model.MinStaleEvents: the evidence that justifies a step back also
	// corrects the model that allowed the move.
	MinStale uint64 `json:"min_stale"`
	// MinLatencySamples is the number of reads (writes) an interval needs
	// to move the read (write) latency offset (see LatencyCalibration).
	// Default 100: the p99 of fewer samples is about their maximum.
	MinLatencySamples uint64 `json:"min_latency_samples"`
}

// CostWeights turn a prediction into one number to minimise, in
// milliseconds of p99 latency:
//
//	cost = readShare·readP99 + writeShare·writeP99          (latency)
//	     + Load · (readShare·readMsgs + writeShare·writeMsgs) (replica load)
//	     + Replica · N                                       (copies kept)
//	     + Hot · hotUtilisation                              (read-hot keys)
//	     + Fail · (readShare·readFail + writeShare·writeFail) (unavailability)
//
// where readMsgs is the replica requests per read (N for ReadAll, R for
// ReadNearest, R plus the hedge rate for ReadHedged), writeMsgs = N, and
// hotUtilisation = readRate · topShare · readMsgs / N / Capacity: the share
// of one replica's capacity the hottest keys take, assuming coordinators
// spread a key's reads over its replicas (token-aware clients do). The
// replica and write-message terms make a cold, write-heavy keyspace prefer
// fewer replicas; the hot term makes a read-hot one prefer more; timeouts
// raise the fail term and the p99 of configurations that need a flapping
// replica, so those prefer more replicas or hedged reads.
type CostWeights struct {
	// Load is the cost of one replica request per operation, in ms.
	Load float64 `json:"load_ms"`
	// Replica is the cost of keeping one more copy of every key, in ms.
	Replica float64 `json:"replica_ms"`
	// Hot is the cost of the hottest keys taking a whole replica's
	// capacity, in ms.
	Hot float64 `json:"hot_ms"`
	// Capacity is the reads per second one replica serves.
	Capacity float64 `json:"capacity_ops"`
	// Fail is the cost of an operation failing for sure, in ms.
	Fail float64 `json:"fail_ms"`
}

// DefaultModel returns the settings the node uses. Each default is
// justified where its field is documented.
func DefaultModel() Model {
	return Model{
		Trials:        4000,
		Seed:          0x5eed,
		HedgeQuantile: 0.95,
		Timeout:       time.Second,
		HintDelay:     10 * time.Second,
		WriteLegShare: 0.5,
		ReadLegShare:  0.5,
		Calibration: CalibrationConfig{
			Alpha:     0.3, // about three intervals of memory
			MaxFactor: 20,
			Prior:     1,
			MinProbes: 100,
			MinStale:  3,

			MinLatencySamples: 100,
		},
		Cost: CostWeights{
			Load:     0.5, // a replica request costs half a LAN millisecond of p99
			Replica:  0.5,
			Hot:      20,
			Capacity: 20000,
			Fail:     1000, // a failed operation is as bad as a 1 s wait
		},
		Dwell:          2 * time.Minute,
		BackoffBase:    time.Minute,
		BackoffMax:     30 * time.Minute,
		MinGain:        0.1,
		MinStaleEvents: 3,
	}
}

// Validate reports every problem with the model's settings in one error.
func (m Model) Validate() error {
	var probs []string
	if m.Trials < 1 {
		probs = append(probs, fmt.Sprintf("trials %d is below 1", m.Trials))
	}
	if !(m.HedgeQuantile > 0 && m.HedgeQuantile < 1) {
		probs = append(probs, fmt.Sprintf("hedge quantile %v is outside (0, 1)", m.HedgeQuantile))
	}
	if m.Timeout <= 0 {
		probs = append(probs, fmt.Sprintf("timeout %v is not positive", m.Timeout))
	}
	if m.HintDelay < 0 {
		probs = append(probs, fmt.Sprintf("hint delay %v is negative", m.HintDelay))
	}
	if !(m.WriteLegShare > 0 && m.WriteLegShare <= 1) || !(m.ReadLegShare > 0 && m.ReadLegShare <= 1) {
		probs = append(probs, fmt.Sprintf("round-trip leg shares %v (write), %v (read) are outside (0, 1]", m.WriteLegShare, m.ReadLegShare))
	}
	if !(m.Calibration.Alpha > 0 && m.Calibration.Alpha <= 1) {
		probs = append(probs, fmt.Sprintf("calibration alpha %v is outside (0, 1]", m.Calibration.Alpha))
	}
	if !(m.Calibration.MaxFactor >= 1) {
		probs = append(probs, fmt.Sprintf("calibration max factor %v is below 1", m.Calibration.MaxFactor))
	}
	if !(m.Calibration.Prior > 0) {
		probs = append(probs, fmt.Sprintf("calibration prior %v is not positive", m.Calibration.Prior))
	}
	c := m.Cost
	if c.Load < 0 || c.Replica < 0 || c.Hot < 0 || c.Fail < 0 {
		probs = append(probs, fmt.Sprintf("cost weights %+v include a negative one", c))
	}
	if c.Hot > 0 && !(c.Capacity > 0) {
		probs = append(probs, fmt.Sprintf("replica capacity %v is not positive", c.Capacity))
	}
	if m.Dwell < 0 {
		probs = append(probs, fmt.Sprintf("dwell %v is negative", m.Dwell))
	}
	if m.BackoffBase < 0 || (m.BackoffBase > 0 && m.BackoffMax < m.BackoffBase) {
		probs = append(probs, fmt.Sprintf("backoff %v–%v is negative or its maximum below its base", m.BackoffBase, m.BackoffMax))
	}
	if !(m.MinGain >= 0 && m.MinGain < 1) {
		probs = append(probs, fmt.Sprintf("minimum gain %v is outside [0, 1)", m.MinGain))
	}
	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("tuner: invalid model: %s", strings.Join(probs, "; "))
}

// Prediction is what the model expects of one candidate policy on the
// observed workload.
type Prediction struct {
	Policy Policy `json:"policy"`
	// StaleProb is the calibrated probability that a read of the workload
	// is stale: RawStaleProb times the calibration factor, at most 1.
	StaleProb float64 `json:"stale_prob"`
	// RawStaleProb is the Monte Carlo's estimate before calibration: the
	// share of reads at risk times the probability that a read issued a
	// sampled gap after a write's commit misses it.
	RawStaleProb float64 `json:"raw_stale_prob"`
	// Read and write latency: median, 99th percentile and mean. In
	// Decide's reports the p99s include the keyspace's latency calibration
	// (LatencyCalibration), and RawReadP99 and RawWriteP99 are the model's
	// own (0 when no calibration was applied).
	RawReadP99  time.Duration `json:"raw_read_p99_ns,omitempty"`
	RawWriteP99 time.Duration `json:"raw_write_p99_ns,omitempty"`
	ReadP50     time.Duration `json:"read_p50_ns"`
	ReadP99     time.Duration `json:"read_p99_ns"`
	ReadMean    time.Duration `json:"read_mean_ns"`
	WriteP50    time.Duration `json:"write_p50_ns"`
	WriteP99    time.Duration `json:"write_p99_ns"`
	WriteMean   time.Duration `json:"write_mean_ns"`
	// HedgeAfter is the hedging delay of a ReadHedged policy (else 0), and
	// HedgeRate the share of reads that send the extra request.
	HedgeAfter time.Duration `json:"hedge_after_ns,omitempty"`
	HedgeRate  float64       `json:"hedge_rate,omitempty"`
	// ReadFail and WriteFail are the probabilities that an operation cannot
	// gather R (W) answers before the timeout.
	ReadFail  float64 `json:"read_fail"`
	WriteFail float64 `json:"write_fail"`
	// ReadMsgs and WriteMsgs are the replica requests per operation.
	ReadMsgs  float64 `json:"read_msgs"`
	WriteMsgs float64 `json:"write_msgs"`
}

// Predict runs the WARS Monte Carlo for each candidate on the observed
// workload, applying the calibration to the stale-read probabilities. The
// result is in the order of cands. It returns ErrNoData when no replica has
// write or read latency samples.
func (m Model) Predict(obs Observation, cands []Policy, cal Calibration) ([]Prediction, error) {
	sc, err := scenarioOf(&obs)
	if err != nil {
		return nil, err
	}
	return m.predict(sc, cands, cal), nil
}

// sampler draws one value, in nanoseconds, from a latency distribution.
type sampler interface {
	sample(r *rand.Rand) float64
}

// legs is the model of one replica: its WARS leg distributions and how
// often it times out.
type legs struct {
	w, a, r, s sampler // one-way legs; w or r nil: split the round trip
	wrtt, rrtt sampler // round trips
	wTimeout   float64 // probability that a write gets no answer
	rTimeout   float64 // probability that a read gets no answer
	rank       float64 // median read round trip, for nearest-first routing
	// flagged: the health detector flagged the node, so coordinators read
	// from it last and the SDK does not coordinate through it
	// (Observation.Flagged). It still gets every write and acknowledges.
	flagged bool
}

// before reports whether a replica is read before b: unflagged first, then
// by median read round trip, as the coordinators rank replicas.
func (l *legs) before(b *legs) bool {
	if l.flagged != b.flagged {
		return !l.flagged
	}
	return l.rank < b.rank
}

// write samples the write legs: when the replica has the write (w) and when
// its acknowledgement reaches the coordinator (ack), both from the moment
// the write was sent; a round trip is split at share (Model.WriteLegShare).
// A timed-out write is never acknowledged and reaches the replica at
// missed: Timeout + HintDelay.
func (l *legs) write(r *rand.Rand, missed, share float64) (w, ack float64) {
	if l.wTimeout > 0 && r.Float64() < l.wTimeout {
		return missed, math.Inf(1)
	}
	if l.w != nil {
		w = l.w.sample(r)
		return w, w + l.a.sample(r)
	}
	rtt := l.wrtt.sample(r)
	return rtt * share, rtt
}

// read samples the read legs: when the request reaches the replica (rv) and
// when its response reaches the coordinator (rs), from the moment it was
// sent; a round trip is split at share (Model.ReadLegShare).
func (l *legs) read(r *rand.Rand, share float64) (rv, rs float64) {
	if l.rTimeout > 0 && r.Float64() < l.rTimeout {
		return math.Inf(1), math.Inf(1)
	}
	if l.r != nil {
		rv = l.r.sample(r)
		return rv, rv + l.s.sample(r)
	}
	rtt := l.rrtt.sample(r)
	return rtt * share, rtt
}

// scenario is an observation turned into what the Monte Carlo samples.
type scenario struct {
	nodes  []legs // observed replicas
	ids    []string
	pool   legs    // all replicas pooled: for N beyond the observed nodes
	gap    sampler // write→read gap; nil: every read at risk reads at once
	atRisk float64 // share of reads that follow a write of their key
	// lastFlagged[n] is the probability that a key of n replicas has a
	// flagged one, which is then its last-ranked (Observation.FlaggedShare);
	// used only when no node is flagged by name.
	lastFlagged []float64
	// flagged, when not nil, is the flagged nodes' own legs, recorded apart
	// from the ranks (ReplicaObservation.Apart): the last-ranked replica of
	// the lastFlagged share of keys is drawn from them, and that of the
	// other keys from the last rank, which then holds only healthy
	// replicas. Nil: the last rank stands for both.
	flagged *legs
}

// scenarioOf builds the scenario of an observation. A replica with no
// samples on a path borrows the pooled distribution of that path. Entries
// recorded apart (ReplicaObservation.Apart) are not replicas of their own
// in the scenario nor in the pool: see apartLegs.
func scenarioOf(o *Observation) (*scenario, error) {
	var p ReplicaObservation // the replicas' observations summed
	for i := range o.Replicas {
		if r := &o.Replicas[i]; !r.Apart {
			p.merge(r)
		}
	}
	pool := legs{wTimeout: ratio(p.WriteTimeouts, p.WritesSent), rTimeout: ratio(p.ReadTimeouts, p.ReadsSent)}
	if !setWrite(&pool, &p.W, &p.A, &p.WriteRTT) || !setRead(&pool, &p.R, &p.S, &p.ReadRTT) {
		return nil, fmt.Errorf("%w: keyspace %q has %d replicas observed and none with both write and read samples", ErrNoData, o.Keyspace, len(o.Replicas))
	}
	pool.rank = poolRank(&p.R, &p.S, &p.ReadRTT)
	sc := &scenario{pool: pool}
	for i := range o.Replicas {
		r := &o.Replicas[i]
		if r.Apart {
			continue
		}
		l := legs{wTimeout: ratio(r.WriteTimeouts, r.WritesSent), rTimeout: ratio(r.ReadTimeouts, r.ReadsSent)}
		if !setWrite(&l, &r.W, &r.A, &r.WriteRTT) {
			l.w, l.a, l.wrtt = pool.w, pool.a, pool.wrtt
		}
		if !setRead(&l, &r.R, &r.S, &r.ReadRTT) {
			l.r, l.s, l.rrtt = pool.r, pool.s, pool.rrtt
		}
		if med, ok := r.readMedian(); ok {
			l.rank = med
		} else {
			l.rank = pool.rank
		}
		l.flagged = slices.Contains(o.Flagged, r.ID)
		sc.nodes = append(sc.nodes, l)
		sc.ids = append(sc.ids, r.ID)
	}
	if !slices.ContainsFunc(sc.nodes, func(l legs) bool { return l.flagged }) {
		for _, v := range o.FlaggedShare {
			if v > 0 {
				sc.lastFlagged = o.FlaggedShare
				sc.flagged = apartLegs(o)
				break
			}
		}
	}
	switch {
	case o.Gap.Count() > 0:
		sc.gap, sc.atRisk = o.Gap.Sampler(), o.AtRisk()
	case o.Writes > 0 && o.Reads > 0:
		// No gap measured but both reads and writes happened: assume the
		// worst, every read right after a write of its key.
		sc.atRisk = 1
	}
	return sc, nil
}

// apartLegs returns the legs of the nodes o.Flagged names, from their
// entries recorded apart from the ranks (ReplicaObservation.Apart), pooled
// when several nodes are flagged; nil when none has write samples.
// Entries of nodes no longer flagged are left out: a reinstated node is
// ranked, and recorded, like the others again.
//
// A flagged node is read last, so it may have answered no read in the
// window: its write round trips then stand for its reads too. Why not
// the healthy replicas' pooled reads, as for other replicas without
// samples? A node is flagged for being slow, and a read that waits for it
// (R=N) would be predicted as fast as a healthy one's.
func apartLegs(o *Observation) *legs {
	var p ReplicaObservation // the replicas' observations summed
	for i := range o.Replicas {
		if r := &o.Replicas[i]; r.Apart && slices.Contains(o.Flagged, r.ID) {
			p.merge(r)
		}
	}
	l := &legs{wTimeout: ratio(p.WriteTimeouts, p.WritesSent), rTimeout: ratio(p.ReadTimeouts, p.ReadsSent), flagged: true}
	if !setWrite(l, &p.W, &p.A, &p.WriteRTT) {
		return nil
	}
	if !setRead(l, &p.R, &p.S, &p.ReadRTT) {
		setRead(l, &p.W, &p.A, &p.WriteRTT)
		l.rTimeout = l.wTimeout
	}
	return l
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return min(1, float64(a)/float64(b))
}

// setWrite sets l's write legs from one-way histograms when both are
// measured, else from the round trip; it reports whether either was.
func setWrite(l *legs, w, a, rtt *Hist) bool {
	if w.Count() > 0 && a.Count() > 0 {
		l.w, l.a = w.Sampler(), a.Sampler()
		return true
	}
	if rtt.Count() > 0 {
		l.wrtt = rtt.Sampler()
		return true
	}
	return false
}

// setRead is setWrite for the read legs.
func setRead(l *legs, r, s, rtt *Hist) bool {
	if r.Count() > 0 && s.Count() > 0 {
		l.r, l.s = r.Sampler(), s.Sampler()
		return true
	}
	if rtt.Count() > 0 {
		l.rrtt = rtt.Sampler()
		return true
	}
	return false
}

func poolRank(r, s, rtt *Hist) float64 {
	if rtt.Count() > 0 {
		return rtt.quantile(0.5)
	}
	return r.quantile(0.5) + s.quantile(0.5)
}

// predict evaluates the candidates, one Monte Carlo per distinct N.
func (m Model) predict(sc *scenario, cands []Policy, cal Calibration) []Prediction {
	out := make([]Prediction, len(cands))
	done := make([]bool, len(cands))
	for i, c := range cands {
		if done[i] {
			continue
		}
		if !c.Valid() || c.N > MaxRF {
			out[i] = Prediction{Policy: c, StaleProb: 1, RawStaleProb: 1, ReadFail: 1, WriteFail: 1}
			done[i] = true
			continue
		}
		res := m.simulate(sc, c.N)
		for j := i; j < len(cands); j++ {
			if !done[j] && cands[j].N == c.N && cands[j].Valid() {
				out[j] = res.prediction(cands[j], cal)
				done[j] = true
			}
		}
	}
	return out
}

// mcResult holds the Monte Carlo outcome for every (R, W, path) of one N.
type mcResult struct {
	n, trials int
	atRisk    float64
	timeout   float64
	// writeLat[w-1] are the trials' write latencies (ns) with W = w.
	writeLat [][]float64
	// readLat[path][r-1] are the trials' read latencies with R = r.
	readLat [3][][]float64
	// stale[path][r-1][w-1] and valid[path][r-1][w-1] count stale reads and
	// reads that could be judged (the write committed, the read answered).
	stale, valid [3][][]int
	hedgeAfter   []float64 // per R
	hedged       []int     // per R: trials that sent the hedge
}

// simulate runs the PBS WARS Monte Carlo for replication factor n.
//
// Each trial picks the key's n replicas (a uniformly random n-subset of the
// observed nodes, as ring placement does for a random key; replicas beyond
// the observed nodes are drawn from the pooled distributions), orders them
// for nearest-first routing as coordinators do (replicas the health
// detector flagged last, the rest by median read round trip; with replicas
// observed by rank, the last-ranked replica of the keys that hold a flagged
// node, drawn at scenario.lastFlagged, is that node, with its own legs when
// they were recorded apart), samples every leg,
// and samples the gap t between the write's commit and the read. Then, for
// every W, the write commits when the W-th acknowledgement arrives; for
// every R and read path the read is sent at commit + t and is stale if none
// of the replies it answers with came from a replica that had the write when
// the read request reached it — a replica j is fresh iff w_j ≤ commit + t +
// r_j (Bailis et al., VLDB 2012, §4).
func (m Model) simulate(sc *scenario, n int) *mcResult {
	T := m.Trials
	rng := rand.New(rand.NewPCG(m.Seed, uint64(n)))
	res := &mcResult{n: n, trials: T, atRisk: sc.atRisk, timeout: float64(m.Timeout)}
	res.writeLat = make2(n, T)
	for p := range res.readLat {
		res.readLat[p] = make2(n, T)
		res.stale[p] = make2i(n, n)
		res.valid[p] = make2i(n, n)
	}
	res.hedgeAfter = make([]float64, n)
	res.hedged = make([]int, n)

	// Samples in route order, trial-major: pass 2 needs them again once the
	// hedging delays are known.
	wv := make([]float64, T*n)
	rv := make([]float64, T*n)
	rs := make([]float64, T*n)
	commit := make([]float64, T*n) // commit[t*n+w-1]
	gap := make([]float64, T)
	// rp[t*n+j] is the write-side slot of the replica at read position j:
	// the identity, unless CoordinatorSpread makes the reader another
	// replica than the writer.
	rp := make([]int, T*n)

	perm := make([]int, len(sc.nodes))
	for i := range perm {
		perm[i] = i
	}
	var slot [MaxRF]*legs
	inf, to := math.Inf(1), float64(m.Timeout)
	missed := float64(m.Timeout + m.HintDelay)
	for t := 0; t < T; t++ {
		// Choose the key's replicas and order them nearest first.
		k := 0
		if len(sc.nodes) > n {
			for i := 0; i < n; i++ {
				j := i + rng.IntN(len(perm)-i)
				perm[i], perm[j] = perm[j], perm[i]
				slot[k] = &sc.nodes[perm[i]]
				k++
			}
		} else {
			for i := range sc.nodes {
				slot[k] = &sc.nodes[i]
				k++
			}
			for k < n {
				slot[k] = &sc.pool
				k++
			}
		}
		for i := 1; i < n; i++ { // insertion sort by route order; stable
			for j := i; j > 0 && slot[j].before(slot[j-1]); j-- {
				slot[j], slot[j-1] = slot[j-1], slot[j]
			}
		}
		// healthy is how many of the key's replicas are not flagged; they
		// come first in route order.
		healthy := n
		for healthy > 0 && slot[healthy-1].flagged {
			healthy--
		}
		if n < len(sc.lastFlagged) && sc.lastFlagged[n] > 0 && rng.Float64() < sc.lastFlagged[n] {
			healthy = n - 1 // replicas by rank: the flagged one is ranked last
			if sc.flagged != nil {
				// Its own legs; the last rank, recorded without it, is a
				// healthy replica's, which this key does not have.
				slot[n-1] = sc.flagged
			}
		}
		var ack [MaxRF]float64
		base := t * n
		for j := 0; j < n; j++ {
			wv[base+j], ack[j] = slot[j].write(rng, missed, m.WriteLegShare)
			rv[base+j], rs[base+j] = slot[j].read(rng, m.ReadLegShare)
			// A reply later than the timeout is as good as none (the
			// write itself is still applied when it arrives).
			if ack[j] > to {
				ack[j] = inf
			}
			if rs[base+j] > to {
				rs[base+j] = inf
			}
		}
		if sc.gap != nil {
			gap[t] = sc.gap.sample(rng)
		}
		for j := 0; j < n; j++ {
			rp[base+j] = j
		}
		if m.CoordinatorSpread && healthy > 1 && rng.IntN(healthy) != 0 {
			// The read is coordinated by another replica than the write:
			// its nearest (local) replica is one of the writer's others,
			// and the rest follow in random order. Neither the writer nor
			// the reader is a flagged replica (the SDK does not coordinate
			// through one), and flagged replicas stay last in route order.
			rr := rp[base : base+healthy]
			first := 1 + rng.IntN(healthy-1)
			rr[0], rr[first] = rr[first], rr[0]
			for i := healthy - 1; i > 1; i-- {
				j := 1 + rng.IntN(i)
				rr[i], rr[j] = rr[j], rr[i]
			}
		}
		sortSmall(ack[:n])
		for w := 1; w <= n; w++ {
			c := ack[w-1]
			commit[base+w-1] = c
			res.writeLat[w-1][t] = c
		}
		// Read latencies, independent of W: ReadAll answers with the r
		// fastest; ReadNearest waits for all of the r nearest.
		var sorted [MaxRF]float64
		copy(sorted[:n], rs[base:base+n])
		sortSmall(sorted[:n])
		pm := 0.0
		for r := 1; r <= n; r++ {
			pm = math.Max(pm, rs[base+r-1])
			res.readLat[ReadAll][r-1][t] = sorted[r-1]
			res.readLat[ReadNearest][r-1][t] = pm
		}
	}
	// Hedging delay per R: the HedgeQuantile of the unhedged latency of
	// the reads that got their replies. (Counting failures would put the
	// delay at the timeout exactly when a replica is flapping, which is
	// when hedging is needed.)
	scratch := make([]float64, 0, T)
	for r := 1; r < n; r++ {
		scratch = scratch[:0]
		for _, v := range res.readLat[ReadNearest][r-1] {
			if v < inf {
				scratch = append(scratch, v)
			}
		}
		if len(scratch) > 0 {
			res.hedgeAfter[r-1] = quantileSelect(scratch, m.HedgeQuantile)
		}
	}

	// Pass 2: staleness of every (R, W, path), and hedged latencies.
	for t := 0; t < T; t++ {
		base := t * n
		w := wv[base : base+n]
		rvv := rv[base : base+n]
		rss := rs[base : base+n]
		// Reply order for ReadAll.
		var ord [MaxRF]int
		for i := 0; i < n; i++ {
			ord[i] = i
		}
		for i := 1; i < n; i++ {
			for j := i; j > 0 && rss[ord[j]] < rss[ord[j-1]]; j-- {
				ord[j], ord[j-1] = ord[j-1], ord[j]
			}
		}
		// Hedged reads: which replica's reply is not among the first r, and
		// when the read completes. excl[r-1] = -1 if the hedge was not sent.
		var excl [MaxRF]int
		var hedgeLat [MaxRF]float64
		pm := 0.0
		for r := 1; r <= n; r++ {
			pm = math.Max(pm, rss[r-1])
			excl[r-1] = -1
			if r == n {
				continue
			}
			d := res.hedgeAfter[r-1]
			if pm <= d {
				hedgeLat[r-1] = pm
				continue
			}
			res.hedged[r-1]++
			var v [MaxRF + 1]float64
			copy(v[:r], rss[:r])
			v[r] = d + rss[r]
			if v[r] > to {
				v[r] = inf
			}
			// The slowest of the r+1 replies is left out; the read
			// completes with the slowest of the rest.
			slowest := 0
			for j := 1; j <= r; j++ {
				if v[j] > v[slowest] {
					slowest = j
				}
			}
			second := 0.0
			for j := 0; j <= r; j++ {
				if j != slowest {
					second = math.Max(second, v[j])
				}
			}
			excl[r-1] = slowest
			hedgeLat[r-1] = second
		}
		for r := 1; r < n; r++ {
			res.readLat[ReadHedged][r-1][t] = hedgeLat[r-1]
		}

		for wq := 1; wq <= n; wq++ {
			c := commit[base+wq-1]
			if c == inf {
				continue // the write failed; no read can be stale with respect to it
			}
			t0 := c + gap[t]
			var fresh [MaxRF]bool
			for j := 0; j < n; j++ {
				fresh[j] = w[rp[base+j]] <= t0+rvv[j]
			}
			// ReadAll: position of the first fresh reply.
			firstAll := n
			for i := 0; i < n; i++ {
				if rss[ord[i]] < inf && fresh[ord[i]] {
					firstAll = i
					break
				}
			}
			// ReadNearest: first fresh replica in route order.
			firstNear := n
			for j := 0; j < n; j++ {
				if fresh[j] {
					firstNear = j
					break
				}
			}
			pmax := 0.0
			for r := 1; r <= n; r++ {
				pmax = math.Max(pmax, rss[r-1])
				if rss[ord[r-1]] < inf {
					res.valid[ReadAll][r-1][wq-1]++
					if firstAll >= r {
						res.stale[ReadAll][r-1][wq-1]++
					}
				}
				if pmax < inf {
					res.valid[ReadNearest][r-1][wq-1]++
					if firstNear >= r {
						res.stale[ReadNearest][r-1][wq-1]++
					}
				}
				if r == n {
					continue
				}
				if excl[r-1] < 0 { // no hedge: as ReadNearest
					if pmax < inf {
						res.valid[ReadHedged][r-1][wq-1]++
						if firstNear >= r {
							res.stale[ReadHedged][r-1][wq-1]++
						}
					}
					continue
				}
				if hedgeLat[r-1] == inf {
					continue
				}
				res.valid[ReadHedged][r-1][wq-1]++
				any := false
				for j := 0; j <= r; j++ {
					if j == excl[r-1] {
						continue
					}
					f := fresh[j]
					if j == r { // the hedge was sent hedgeAfter later
						f = w[j] <= t0+res.hedgeAfter[r-1]+rvv[j]
					}
					if f {
						any = true
						break
					}
				}
				if !any {
					res.stale[ReadHedged][r-1][wq-1]++
				}
			}
		}
	}
	return res
}

// prediction reads one candidate's figures out of the Monte Carlo result.
func (res *mcResult) prediction(p Policy, cal Calibration) Prediction {
	r, w, path := p.R, p.W, p.Read
	if r == res.n {
		path = ReadAll // every path contacts all replicas
	}
	pr := Prediction{Policy: p}
	stale, valid := res.stale[path][r-1][w-1], res.valid[path][r-1][w-1]
	if valid > 0 {
		pr.RawStaleProb = res.atRisk * float64(stale) / float64(valid)
	}
	pr.StaleProb = cal.Apply(pr.RawStaleProb)
	var rf, wf float64
	pr.ReadP50, pr.ReadP99, pr.ReadMean, rf = res.latency(res.readLat[path][r-1])
	pr.WriteP50, pr.WriteP99, pr.WriteMean, wf = res.latency(res.writeLat[w-1])
	pr.ReadFail, pr.WriteFail = rf, wf
	pr.WriteMsgs = float64(res.n)
	switch path {
	case ReadAll:
		pr.ReadMsgs = float64(res.n)
	case ReadNearest:
		pr.ReadMsgs = float64(r)
	case ReadHedged:
		pr.HedgeAfter = time.Duration(res.hedgeAfter[r-1])
		pr.HedgeRate = float64(res.hedged[r-1]) / float64(res.trials)
		pr.ReadMsgs = float64(r) + pr.HedgeRate
	}
	return pr
}

// latency summarises trial latencies: failures (+Inf) count at the timeout.
func (res *mcResult) latency(xs []float64) (p50, p99, mean time.Duration, fail float64) {
	s := make([]float64, len(xs))
	var sum float64
	nf := 0
	for i, x := range xs {
		if math.IsInf(x, 1) {
			x = res.timeout
			nf++
		}
		s[i] = x
		sum += x
	}
	k99 := rankOf(len(s), 0.99)
	q99 := selectK(s, k99)
	// selectK left the k99+1 smallest values in s[:k99+1], so the median,
	// of lower rank, can be selected from that prefix.
	q50 := selectK(s[:k99+1], rankOf(len(s), 0.5))
	return time.Duration(q50), time.Duration(q99), time.Duration(sum / float64(len(s))), float64(nf) / float64(len(s))
}

func make2(a, b int) [][]float64 {
	flat := make([]float64, a*b)
	out := make([][]float64, a)
	for i := range out {
		out[i] = flat[i*b : (i+1)*b : (i+1)*b]
	}
	return out
}

func make2i(a, b int) [][]int {
	flat := make([]int, a*b)
	out := make([][]int, a)
	for i := range out {
		out[i] = flat[i*b : (i+1)*b : (i+1)*b]
	}
	return out
}

// sortSmall sorts a short slice in place (insertion sort: N ≤ MaxRF).
func sortSmall(a []float64) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// rankOf is the 0-based nearest-rank index of quantile q among n values:
// ⌈q·n⌉−1, clamped to [0, n−1].
func rankOf(n int, q float64) int {
	k := int(math.Ceil(q*float64(n))) - 1
	return min(max(k, 0), n-1)
}

// quantileSelect returns the nearest-rank q-quantile of xs, reordering xs
// so that xs[:k] ≤ xs[k] ≤ xs[k+1:] for the rank k it selected.
func quantileSelect(xs []float64, q float64) float64 {
	return selectK(xs, rankOf(len(xs), q))
}

// selectK returns the k-th smallest (0-based) element of xs in expected
// O(len(xs)) time (Hoare's quickselect, median-of-three pivot), partially
// reordering xs.
func selectK(xs []float64, k int) float64 {
	lo, hi := 0, len(xs)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		// Median of three to the middle.
		if xs[mid] < xs[lo] {
			xs[mid], xs[lo] = xs[lo], xs[mid]
		}
		if xs[hi] < xs[lo] {
			xs[hi], xs[lo] = xs[lo], xs[hi]
		}
		if xs[hi] < xs[mid] {
			xs[hi], xs[mid] = xs[mid], xs[hi]
		}
		pivot := xs[mid]
		i, j := lo, hi
		for i <= j {
			for xs[i] < pivot {
				i++
			}
			for xs[j] > pivot {
				j--
			}
			if i <= j {
				xs[i], xs[j] = xs[j], xs[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return xs[k]
		}
	}
	return xs[k]
}

package tuner

import (
	"slices"
	"time"
)

// Observation is what one keyspace did during one decision interval, as the
// node measured it. It carries its own time span, so the tuner never reads a
// clock, and a recorded sequence of observations replays exactly.
//
// Histograms in an Observation are owned by it: do not record into them
// after handing the observation to a Window.
type Observation struct {
	// Keyspace names the keyspace observed.
	Keyspace string `json:"keyspace"`
	// Start and End bound the interval.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Policy is the configuration that was in force during the interval (the
	// zero Policy if unknown). Calibration uses it to know what the
	// measured stale-read rate is evidence about.
	Policy Policy `json:"policy"`
	// ClusterSize is the number of live nodes that can hold replicas; it
	// caps N. 0 means unknown (no cap beyond the goal).
	ClusterSize int `json:"cluster_size,omitempty"`

	// Reads and Writes count the client operations coordinated.
	Reads  uint64 `json:"reads"`
	Writes uint64 `json:"writes"`
	// ReadLatency and WriteLatency are the client-visible latencies at the
	// coordinator, used to compare predictions with what happened.
	ReadLatency  Hist `json:"read_latency"`
	WriteLatency Hist `json:"write_latency"`

	// Gap holds, for reads of a key that had been written, the time from the
	// acknowledgement (commit) of that write to the read's arrival at a
	// coordinator. adaptkv's node estimates it from the age of the version
	// a read returned, less the read's latency and the coordinator's median
	// write latency; a stale read returns an older version, so under a
	// partial quorum it under-counts short gaps, which calibration absorbs.
	// Ideally every such read is recorded (the age of the latest write);
	// recording only the first read after each write is a conservative
	// proxy when the rest come later. Reads with no recent write are not
	// recorded: Gap.Count()/Reads is the share of reads at risk of being
	// stale at all.
	Gap Hist `json:"gap"`
	// Skew is how concentrated accesses were on a few keys.
	Skew Skew `json:"skew"`

	// Probed is the number of reads whose freshness was checked: reads whose
	// late replies were compared with the answer by background read repair,
	// or that were followed by a digest probe of all replicas.
	Probed uint64 `json:"probed"`
	// Stale is the number of probed reads found stale: some replica held a
	// newer version than the one returned. A write still in flight can make
	// a fresh read look stale, so this errs on the side of staleness.
	Stale uint64 `json:"stale"`
	// StaleReplicas counts reads that saw at least one replica behind the
	// answer (read repair had work to do), stale or not. It shows how far
	// replicas lag; the tuner only reports it.
	StaleReplicas uint64 `json:"stale_replicas"`

	// Replicas holds per-replica latencies and timeouts, one entry per node
	// (or per rank from the coordinator, plus an entry per flagged node
	// recorded apart: see FlaggedShare and ReplicaObservation.Apart).
	Replicas []ReplicaObservation `json:"replicas"`

	// Flagged names the nodes the cluster's gray-failure detector had
	// flagged when the interval ended (replication/health). Coordinators
	// read from a flagged replica last and the SDK does not coordinate
	// through it, but it still receives every write and counts toward W,
	// so the model routes reads away from it and lets it acknowledge
	// writes (see Model.simulate). Merge keeps the later interval's set:
	// a decision is about how the cluster routes from now on.
	Flagged []string `json:"flagged,omitempty"`
	// FlaggedShare[n] is the share of keys whose n replicas include a
	// flagged node (by ring ownership), for observations whose Replicas
	// are named by rank from the coordinator ("nearest", ...) rather than
	// by node, as adaptkv's node records them: a coordinator ranks a
	// flagged replica last, so for that share of keys the model takes the
	// last-ranked replica to be the flagged one. Indexed by N; missing or
	// zero entries mean no key has a flagged replica at that N. Ignored
	// when Replicas are named by node and Flagged names some of them.
	//
	// Which legs the model draws the flagged replica from: the entries
	// recorded apart under a flagged node's own ID (ReplicaObservation.
	// Apart) when there are any, so that the ranks describe only healthy
	// replicas; else the last rank's, a mixture of the flagged node and of
	// the healthy replicas ranked last for the other keys.
	FlaggedShare []float64 `json:"flagged_share,omitempty"`
}

// ReplicaObservation is the coordinator's view of one replica during an
// interval, split into the four legs of PBS's WARS model (Bailis et al.,
// VLDB 2012): W, the write request reaching the replica; A, its
// acknowledgement returning; R, a read request reaching it; S, its response
// returning.
//
// One-way times need synchronised clocks or replica-side timestamps. When
// only round trips are measured, record them in WriteRTT and ReadRTT and
// leave W, A, R and S empty: the model then splits each sampled round trip
// at Model.WriteLegShare and Model.ReadLegShare (by default half and half:
// W = A = RTT/2, R = S = RTT/2). That assumes symmetric links and no
// queueing at the replica, which understates W (and so staleness) when the
// delay is on the request path, and overstates it when a replica is slow to
// answer.
type ReplicaObservation struct {
	// ID names the node.
	ID string `json:"id"`
	// W, A, R and S are the one-way legs, when measured.
	W Hist `json:"w"`
	A Hist `json:"a"`
	R Hist `json:"r"`
	S Hist `json:"s"`
	// WriteRTT and ReadRTT are round trips, used when the legs are empty.
	WriteRTT Hist `json:"write_rtt"`
	ReadRTT  Hist `json:"read_rtt"`
	// WritesSent and ReadsSent count requests sent to the replica;
	// WriteTimeouts and ReadTimeouts those that got no answer in time.
	WritesSent    uint64 `json:"writes_sent"`
	ReadsSent     uint64 `json:"reads_sent"`
	WriteTimeouts uint64 `json:"write_timeouts"`
	ReadTimeouts  uint64 `json:"read_timeouts"`

	// Apart marks the legs to a node the health detector had flagged,
	// recorded under the node's own ID apart from the ranks of an
	// observation named by rank (adaptkv's node does; see FlaggedShare):
	// a rank then holds only healthy replicas, and the model draws a
	// key's flagged replica from these legs. Entries whose node
	// Observation.Flagged no longer names (it was reinstated, and is
	// ranked like the others again) are left out of the model.
	Apart bool `json:"apart,omitempty"`
}

// Duration is End − Start, or 0 if End is not after Start.
func (o *Observation) Duration() time.Duration {
	if !o.End.After(o.Start) {
		return 0
	}
	return o.End.Sub(o.Start)
}

// ReadRate is reads per second over the interval (0 for an empty interval).
func (o *Observation) ReadRate() float64 { return perSecond(o.Reads, o.Duration()) }

// WriteRate is writes per second over the interval.
func (o *Observation) WriteRate() float64 { return perSecond(o.Writes, o.Duration()) }

func perSecond(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// ReadShare is reads/(reads+writes), or 0.5 when nothing happened, so that an
// idle keyspace weighs both paths equally.
func (o *Observation) ReadShare() float64 {
	t := o.Reads + o.Writes
	if t == 0 {
		return 0.5
	}
	return float64(o.Reads) / float64(t)
}

// StaleRate is the measured stale-read rate, Stale/Probed (0 without probes).
func (o *Observation) StaleRate() float64 {
	if o.Probed == 0 {
		return 0
	}
	return float64(o.Stale) / float64(o.Probed)
}

// AtRisk is the share of reads that followed a write of the same key and so
// could be stale at all: Gap.Count()/Reads, at most 1.
func (o *Observation) AtRisk() float64 {
	if o.Reads == 0 {
		return 0
	}
	return min(1, float64(o.Gap.Count())/float64(o.Reads))
}

// TimeoutRate is the share of requests to the replica that timed out.
func (r *ReplicaObservation) TimeoutRate() float64 {
	sent := r.WritesSent + r.ReadsSent
	if sent == 0 {
		return 0
	}
	return float64(r.WriteTimeouts+r.ReadTimeouts) / float64(sent)
}

// readMedian is the replica's median read round trip, by which reads are
// routed nearest first: ReadRTT when measured, else the sum of the R and S
// medians.
func (r *ReplicaObservation) readMedian() (float64, bool) {
	switch {
	case r.ReadRTT.Count() > 0:
		return r.ReadRTT.quantile(0.5), true
	case r.R.Count() > 0 && r.S.Count() > 0:
		return r.R.quantile(0.5) + r.S.quantile(0.5), true
	}
	return 0, false
}

// clone returns a deep copy.
func (r *ReplicaObservation) clone() ReplicaObservation {
	c := *r
	c.W, c.A, c.R, c.S = r.W.Clone(), r.A.Clone(), r.R.Clone(), r.S.Clone()
	c.WriteRTT, c.ReadRTT = r.WriteRTT.Clone(), r.ReadRTT.Clone()
	return c
}

// merge adds o's samples and counters to r.
func (r *ReplicaObservation) merge(o *ReplicaObservation) {
	r.W.Merge(&o.W)
	r.A.Merge(&o.A)
	r.R.Merge(&o.R)
	r.S.Merge(&o.S)
	r.WriteRTT.Merge(&o.WriteRTT)
	r.ReadRTT.Merge(&o.ReadRTT)
	r.WritesSent += o.WritesSent
	r.ReadsSent += o.ReadsSent
	r.WriteTimeouts += o.WriteTimeouts
	r.ReadTimeouts += o.ReadTimeouts
}

// Clone returns a deep copy of the observation.
func (o *Observation) Clone() Observation {
	c := *o
	c.ReadLatency, c.WriteLatency, c.Gap = o.ReadLatency.Clone(), o.WriteLatency.Clone(), o.Gap.Clone()
	c.Flagged = slices.Clone(o.Flagged)
	c.FlaggedShare = slices.Clone(o.FlaggedShare)
	c.Replicas = make([]ReplicaObservation, len(o.Replicas))
	for i := range o.Replicas {
		c.Replicas[i] = o.Replicas[i].clone()
	}
	return c
}

// Merge returns the combination of o and p as one observation spanning
// both: counters add, histograms merge, replicas are matched by ID and
// Apart (in order of first appearance), the span runs from the earlier start to the later
// end, Policy and ClusterSize are p's (the later interval's), and Flagged
// is that of whichever ends later. Neither
// argument is modified.
func Merge(o, p Observation) Observation {
	m := o.Clone()
	m.mergeFrom(&p)
	return m
}

// mergeFrom adds p into o in place; o must own its histograms.
func (o *Observation) mergeFrom(p *Observation) {
	if o.Keyspace == "" {
		o.Keyspace = p.Keyspace
	}
	if o.Start.IsZero() || (!p.Start.IsZero() && p.Start.Before(o.Start)) {
		o.Start = p.Start
	}
	if p.End.After(o.End) {
		o.End = p.End
	}
	if p.Policy != (Policy{}) {
		o.Policy = p.Policy
	}
	if p.ClusterSize != 0 {
		o.ClusterSize = p.ClusterSize
	}
	if !p.End.Before(o.End) {
		// The later interval's flags, even none: a reinstated node is
		// read from again.
		o.Flagged = slices.Clone(p.Flagged)
		o.FlaggedShare = slices.Clone(p.FlaggedShare)
	}
	o.Reads += p.Reads
	o.Writes += p.Writes
	o.ReadLatency.Merge(&p.ReadLatency)
	o.WriteLatency.Merge(&p.WriteLatency)
	o.Gap.Merge(&p.Gap)
	o.Skew = o.Skew.merge(p.Skew)
	o.Probed += p.Probed
	o.Stale += p.Stale
	o.StaleReplicas += p.StaleReplicas
	for i := range p.Replicas {
		pr := &p.Replicas[i]
		found := false
		for j := range o.Replicas {
			if o.Replicas[j].ID == pr.ID && o.Replicas[j].Apart == pr.Apart {
				o.Replicas[j].merge(pr)
				found = true
				break
			}
		}
		if !found {
			o.Replicas = append(o.Replicas, pr.clone())
		}
	}
}

// Window is a sliding window of a keyspace's observations with bounded
// memory: it keeps at most Size observations, and drops those that ended
// more than Span before the newest one ended. The tuner decides on the
// merged window (enough samples for tail percentiles and rare stale reads)
// and calibrates on the newest observation alone (so that one interval's
// evidence is counted once).
//
// A Window is not safe for concurrent use. Decide only reads it.
type Window struct {
	size int
	span time.Duration
	obs  []Observation // oldest first
}

// NewWindow returns a window of at most size observations (at least 1)
// spanning at most span (0: no limit by time).
func NewWindow(size int, span time.Duration) *Window {
	size = max(size, 1)
	return &Window{size: size, span: span, obs: make([]Observation, 0, size)}
}

// Push appends an observation, dropping the oldest ones beyond the window's
// size or span. The window takes ownership of o's histograms.
func (w *Window) Push(o Observation) {
	if len(w.obs) == w.size {
		copy(w.obs, w.obs[1:])
		w.obs[len(w.obs)-1] = Observation{} // let the histograms go
		w.obs = w.obs[:len(w.obs)-1]
	}
	w.obs = append(w.obs, o)
	if w.span > 0 {
		cut := 0
		for cut < len(w.obs)-1 && o.End.Sub(w.obs[cut].End) > w.span {
			cut++
		}
		if cut > 0 {
			n := copy(w.obs, w.obs[cut:])
			clear(w.obs[n:])
			w.obs = w.obs[:n]
		}
	}
}

// Len is the number of observations held.
func (w *Window) Len() int { return len(w.obs) }

// Last returns the newest observation.
func (w *Window) Last() (Observation, bool) {
	if len(w.obs) == 0 {
		return Observation{}, false
	}
	return w.obs[len(w.obs)-1], true
}

// Observations returns the observations held, oldest first. The slice is a
// copy; the observations' histograms are shared and must not be modified.
func (w *Window) Observations() []Observation {
	return append([]Observation(nil), w.obs...)
}

// Merged returns all observations in the window merged into one (Merge),
// freshly allocated.
func (w *Window) Merged() Observation {
	if len(w.obs) == 0 {
		return Observation{}
	}
	m := w.obs[0].Clone()
	for i := 1; i < len(w.obs); i++ {
		m.mergeFrom(&w.obs[i])
	}
	return m
}

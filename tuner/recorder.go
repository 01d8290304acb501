package tuner

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// AtomicHist is a Hist whose Record may be called from many goroutines at
// once: one atomic add per counter, no lock, no allocation. It has the full
// bucket range (4.7 KB), since it cannot grow safely. Snapshot-and-reset is
// not atomic as a whole: a sample recorded during Swap may land in either
// interval, or be counted in the total of one and the buckets of the other,
// which the tuner tolerates (it reads hundreds of samples per interval).
// The zero value is ready to use.
type AtomicHist struct {
	counts [histBuckets]atomic.Uint64 // the count is their sum
	sum    atomic.Uint64              // ns; wraps after 584 years of summed latency
	min    atomic.Int64               // ns+1, 0 meaning unset
	max    atomic.Int64               // ns+1, 0 meaning unset
}

// Record adds one sample; safe for concurrent use.
func (h *AtomicHist) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if v > histMaxValue {
		v = histMaxValue
	}
	h.counts[bucketOf(v)].Add(1)
	h.sum.Add(uint64(v))
	for {
		old := h.min.Load()
		if (old != 0 && old <= v+1) || h.min.CompareAndSwap(old, v+1) {
			break
		}
	}
	for {
		old := h.max.Load()
		if old >= v+1 || h.max.CompareAndSwap(old, v+1) {
			break
		}
	}
}

// Swap returns the samples recorded since the last Swap as a Hist and
// resets the counters. It must not be called concurrently with itself.
func (h *AtomicHist) Swap() Hist {
	var out Hist
	hi := -1
	var counts [histBuckets]uint64
	var n uint64
	for i := range h.counts {
		if c := h.counts[i].Swap(0); c != 0 {
			counts[i] = c
			n += c
			hi = i
		}
	}
	sum := h.sum.Swap(0)
	mn, mx := h.min.Swap(0), h.max.Swap(0)
	if hi < 0 {
		return out
	}
	out.counts = append([]uint64(nil), counts[:hi+1]...)
	out.n = n
	out.sum = float64(sum)
	// A racing Record may have set min/max for a sample now counted in the
	// next interval, or not yet have set them: keep them inside the first
	// and last non-empty buckets.
	lb, lw := bucketBounds(firstNonZero(out.counts))
	hb, hw := bucketBounds(hi)
	out.min, out.max = lb, hb+hw-1
	if mn > 0 {
		out.min = min(max(mn-1, lb), lb+lw-1)
	}
	if mx > 0 {
		out.max = min(max(mx-1, hb), hb+hw-1)
	}
	out.max = min(out.max, histMaxValue)
	out.min = min(out.min, out.max)
	mean := math.Max(float64(out.min), math.Min(float64(out.max), out.sum/float64(n)))
	out.sum = mean * float64(n)
	return out
}

func firstNonZero(c []uint64) int {
	for i, x := range c {
		if x != 0 {
			return i
		}
	}
	return 0
}

// Leg names one of the per-replica latencies a Recorder keeps.
type Leg int

const (
	// LegW is the write request's one-way time to the replica.
	LegW Leg = iota
	// LegA is the write acknowledgement's one-way time back.
	LegA
	// LegR is the read request's one-way time to the replica.
	LegR
	// LegS is the read response's one-way time back.
	LegS
	// LegWriteRTT is a write's round trip, when one-way times are unknown.
	LegWriteRTT
	// LegReadRTT is a read's round trip, when one-way times are unknown.
	LegReadRTT
	numLegs
)

// Recorder collects one keyspace's observations on the hot path. Every
// method is safe for concurrent use; all but Snapshot cost a few atomic
// adds, so the coordinator calls them inline. Snapshot, once per decision
// interval, takes a lock of its own.
//
// Replicas are identified by their index in the list given to NewRecorder
// (adaptkv's node gives ranks from the coordinator), and a node recorded
// apart from them by its ID (LegApart); when membership changes, the node
// takes a last Snapshot and starts a new Recorder.
type Recorder struct {
	keyspace string
	ids      []string
	// snapMu serializes Snapshot: the tuner loop, what-if's gather and the
	// TunerSnapshot RPC all take snapshots, and start and the key ring are
	// not atomic as a pair.
	snapMu sync.Mutex
	start  time.Time // guarded by snapMu

	reads, writes          atomic.Uint64
	probed, stale, staleRp atomic.Uint64
	readLat, writeLat, gap AtomicHist
	replicas               []replicaRecorder
	// apart maps a node ID to the *replicaRecorder of the legs recorded
	// apart from the ranks under that node's ID (LegApart). It only grows:
	// entries are few (the nodes ever flagged), and one deleted at a
	// snapshot could lose a sample recorded into it meanwhile.
	apart sync.Map

	keyCalls atomic.Uint64
	keyNext  atomic.Uint64
	keys     [keyRing]atomic.Uint64
	topK     int
}

type replicaRecorder struct {
	legs                                      [numLegs]AtomicHist
	writesSent, readsSent, wTimeout, rTimeout atomic.Uint64
}

// Key sampling. The hot path keeps every keySampleEvery-th key hash in a
// ring of keyRing slots; Snapshot runs Space-Saving over the ring. Why
// sample? Space-Saving needs a lock or a CAS loop over shared counters,
// while a ring store is one atomic add and one atomic store. Why these
// sizes? 4096 samples per interval estimate the share of the hottest keys
// to about ±1.5 points (binomial error at share 0.5), and 1 in 8 keeps the
// ring from wrapping below about 32k operations per interval; above that
// the ring holds the interval's last 4096 samples, which is still a fair
// sample of a stationary workload.
const (
	keyRing        = 4096
	keySampleEvery = 8
	defaultTopK    = 16
)

// NewRecorder returns a recorder for a keyspace whose replicas are the
// given nodes, starting its first interval at start.
func NewRecorder(keyspace string, replicas []string, start time.Time) *Recorder {
	return &Recorder{
		keyspace: keyspace,
		ids:      append([]string(nil), replicas...),
		start:    start,
		replicas: make([]replicaRecorder, len(replicas)),
		topK:     defaultTopK,
	}
}

// Read records a client read's latency at the coordinator.
func (r *Recorder) Read(d time.Duration) {
	r.reads.Add(1)
	r.readLat.Record(d)
}

// Write records a client write's latency at the coordinator.
func (r *Recorder) Write(d time.Duration) {
	r.writes.Add(1)
	r.writeLat.Record(d)
}

// Gap records, for a read of a key that had been written, the time since
// that write was acknowledged.
func (r *Recorder) Gap(d time.Duration) { r.gap.Record(d) }

// Key records an access to the key with the given hash (for skew).
func (r *Recorder) Key(hash uint64) {
	if r.keyCalls.Add(1)%keySampleEvery != 0 {
		return
	}
	i := r.keyNext.Add(1) - 1
	r.keys[i%keyRing].Store(hash)
}

// Probe records a read whose freshness was checked, and whether it was
// stale (a replica held a newer version than the one returned) and whether
// any replica was behind the answer.
func (r *Recorder) Probe(stale, replicaBehind bool) {
	r.probed.Add(1)
	if stale {
		r.stale.Add(1)
	}
	if replicaBehind || stale {
		r.staleRp.Add(1)
	}
}

// Leg records one latency of the replica with the given index. Out-of-range
// indices are ignored.
func (r *Recorder) Leg(replica int, leg Leg, d time.Duration) {
	if replica < 0 || replica >= len(r.replicas) || leg < 0 || leg >= numLegs {
		return
	}
	r.replicas[replica].legs[leg].Record(d)
}

// Sent records a request sent to a replica (write or read).
func (r *Recorder) Sent(replica int, write bool) {
	if replica < 0 || replica >= len(r.replicas) {
		return
	}
	if write {
		r.replicas[replica].writesSent.Add(1)
	} else {
		r.replicas[replica].readsSent.Add(1)
	}
}

// Timeout records a request to a replica that got no answer in time.
func (r *Recorder) Timeout(replica int, write bool) {
	if replica < 0 || replica >= len(r.replicas) {
		return
	}
	if write {
		r.replicas[replica].wTimeout.Add(1)
	} else {
		r.replicas[replica].rTimeout.Add(1)
	}
}

// apartOf returns the recorder of the legs to node kept apart from the
// ranks, making it on first use.
func (r *Recorder) apartOf(node string) *replicaRecorder {
	if v, ok := r.apart.Load(node); ok {
		return v.(*replicaRecorder)
	}
	v, _ := r.apart.LoadOrStore(node, new(replicaRecorder))
	return v.(*replicaRecorder)
}

// LegApart records one latency of a request to node under the node's own
// ID, apart from the replicas given to NewRecorder. adaptkv's node
// records replicas by rank from the coordinator, and a request to a node
// the health detector has flagged here instead, so that the last rank
// does not mix the flagged node's latencies with those of the healthy
// replicas ranked last for the keys it does not hold
// (ReplicaObservation.Apart).
func (r *Recorder) LegApart(node string, leg Leg, d time.Duration) {
	if leg < 0 || leg >= numLegs {
		return
	}
	r.apartOf(node).legs[leg].Record(d)
}

// SentApart is Sent for a node recorded apart (LegApart).
func (r *Recorder) SentApart(node string, write bool) {
	rr := r.apartOf(node)
	if write {
		rr.writesSent.Add(1)
	} else {
		rr.readsSent.Add(1)
	}
}

// TimeoutApart is Timeout for a node recorded apart (LegApart).
func (r *Recorder) TimeoutApart(node string, write bool) {
	rr := r.apartOf(node)
	if write {
		rr.wTimeout.Add(1)
	} else {
		rr.rTimeout.Add(1)
	}
}

// swap returns what rr recorded since the last swap, named id.
func (rr *replicaRecorder) swap(id string) ReplicaObservation {
	return ReplicaObservation{
		ID: id,
		W:  rr.legs[LegW].Swap(), A: rr.legs[LegA].Swap(),
		R: rr.legs[LegR].Swap(), S: rr.legs[LegS].Swap(),
		WriteRTT: rr.legs[LegWriteRTT].Swap(), ReadRTT: rr.legs[LegReadRTT].Swap(),
		WritesSent: rr.writesSent.Swap(0), ReadsSent: rr.readsSent.Swap(0),
		WriteTimeouts: rr.wTimeout.Swap(0), ReadTimeouts: rr.rTimeout.Swap(0),
	}
}

// empty reports whether nothing was recorded in ro.
func (ro *ReplicaObservation) empty() bool {
	return ro.WritesSent+ro.ReadsSent == 0 && ro.W.Count()+ro.A.Count()+ro.R.Count()+ro.S.Count()+ro.WriteRTT.Count()+ro.ReadRTT.Count() == 0
}

// Snapshot returns what was recorded since the previous snapshot (or since
// NewRecorder) as an Observation ending at now, with the policy that was in
// force and the cluster size, and starts the next interval. It is safe for
// concurrent use: snapshots are taken one at a time, and records racing
// with one land in one of the two intervals.
func (r *Recorder) Snapshot(now time.Time, inForce Policy, clusterSize int) Observation {
	r.snapMu.Lock()
	defer r.snapMu.Unlock()
	o := Observation{
		Keyspace: r.keyspace, Start: r.start, End: now,
		Policy: inForce, ClusterSize: clusterSize,
		Reads: r.reads.Swap(0), Writes: r.writes.Swap(0),
		ReadLatency: r.readLat.Swap(), WriteLatency: r.writeLat.Swap(), Gap: r.gap.Swap(),
		Probed: r.probed.Swap(0), Stale: r.stale.Swap(0), StaleReplicas: r.staleRp.Swap(0),
	}
	r.start = now
	n := min(r.keyNext.Swap(0), keyRing)
	r.keyCalls.Store(0)
	t := NewTopK(r.topK)
	for i := uint64(0); i < n; i++ {
		t.Add(r.keys[i].Load(), 1)
	}
	o.Skew = SkewOf(t)
	o.Replicas = make([]ReplicaObservation, len(r.replicas))
	for i := range r.replicas {
		o.Replicas[i] = r.replicas[i].swap(r.ids[i])
	}
	// The nodes recorded apart follow the ranks, sorted by ID, those
	// with nothing in this interval left out.
	var apart []ReplicaObservation
	r.apart.Range(func(k, v any) bool {
		if ro := v.(*replicaRecorder).swap(k.(string)); !ro.empty() {
			ro.Apart = true
			apart = append(apart, ro)
		}
		return true
	})
	slices.SortFunc(apart, func(a, b ReplicaObservation) int { return strings.Compare(a.ID, b.ID) })
	o.Replicas = append(o.Replicas, apart...)
	return o
}

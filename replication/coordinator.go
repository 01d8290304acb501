package replication

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/replication/paxos"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// Config configures a Coordinator.
type Config struct {
	// NodeID names this node on the ring.
	NodeID string
	// NodeNumber breaks ties between versions written by different nodes in
	// the same clock tick; NodeNumbers, when set, replaces it.
	NodeNumber uint32
	// NodeNumbers returns this node's number, unique in the cluster (the
	// metadata log assigns them); an error refuses writes until it has one.
	NodeNumbers NodeNumberSource
	Transport   Transport
	Topology    Topology
	Keyspaces   Keyspaces
	Hints       *HintStore
	Clock       *Clock
	// ReplicaTimeout bounds each replica request, independently of the
	// client's deadline, so that a slow replica becomes a hint instead of
	// holding resources. Default 2s: well above a loaded replica's fsync,
	// short enough that a hung node is given up on quickly.
	ReplicaTimeout time.Duration
	// ReadRepairChance is the probability that a read asks every alive
	// replica instead of only R of them, so that the others are compared and
	// repaired in the background. A keyspace may set its own
	// (KeyspaceConfig.ReadRepairChance). Default 0.01: at 0.1 (Cassandra's
	// historical read_repair_chance) a read at `one` cost 1.2 replica reads
	// on average, two of them remote, a fifth of the read path's CPU;
	// Cassandra 4.0 dropped the option for that cost. Hints and quorum reads
	// do most of the repair; this share finds what they miss. 1 makes every
	// read cost N replica reads; negative means never.
	ReadRepairChance float64
	// Observer, when set, receives per-request observations for the tuner.
	Observer Observer
	// Calls, when set, receives every replica request's outcome by node,
	// for the health detector (flags.go).
	Calls CallObserver
	// Flagged, when set, reports whether a node is flagged as unhealthy:
	// reads ask flagged replicas last. They still take writes and count
	// for W, and still answer reads when no other replica can, so no
	// consistency level loses availability.
	Flagged func(id string) bool
	// Fence, when set, is consulted for fenced keyspaces
	// (KeyspaceConfig.Fenced): without a configuration lease the
	// coordinator does not serve them (fence.go).
	Fence Fence
	// Logger receives the coordinator's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultReadRepairChance is Config.ReadRepairChance's default.
const DefaultReadRepairChance = 0.01

// ProbeReadRepairChance is the read-repair chance of keyspaces whose tuner
// measures staleness on the reads that ask every replica. At 0.05 a keyspace
// serving a few hundred reads per second yields the 100 probes the tuner's
// calibration wants in a few decision intervals; at 0.1 the probes' replica
// reads (of the slowest replica too) raised the read p99 of the adaptive arm
// of the experiment to 1.25-1.31x the static arm's in its slow-replica phase.
const ProbeReadRepairChance = 0.05

// Metrics counts the coordinator's repair work since start.
type Metrics struct {
	// ReadRepairsForeground counts replicas repaired before a read answered.
	ReadRepairsForeground atomic.Uint64
	// ReadRepairsBackground counts replicas repaired after a read answered.
	ReadRepairsBackground atomic.Uint64
	// DigestFetches counts reads whose newest version came only from
	// digests, so that its value took a second round.
	DigestFetches atomic.Uint64
	// ReplicaErrors counts failed or refused replica requests.
	ReplicaErrors atomic.Uint64
	// HintsStored counts hints written by this coordinator.
	HintsStored atomic.Uint64
	// EpochRetries counts operations run again after a replica reported a
	// newer configuration epoch.
	EpochRetries atomic.Uint64
	// Hedges counts reads sent to one more replica because the first ones
	// were slow.
	Hedges atomic.Uint64
	// EpochRefreshes counts catch-ups started because a replica reported a
	// configuration epoch newer than this node's, whether or not the
	// request that saw it needed to run again.
	EpochRefreshes atomic.Uint64
	// SessionSkips counts replicas a session read asked beyond its quorum
	// because those that answered were behind the session.
	SessionSkips atomic.Uint64
	// SessionBehind counts session reads that failed because no replica in
	// reach was as new as the session (ErrSessionBehind).
	SessionBehind atomic.Uint64
	// PaxosBackoffs counts the backoffs of conditional and linearizable
	// operations after a refused, failed or timed-out Paxos round.
	PaxosBackoffs atomic.Uint64
	// PaxosLeased counts conditional writes that proposed under the lease
	// their key's previous one left on this coordinator, with no prepare.
	PaxosLeased atomic.Uint64
	// PaxosWidened counts proposals first sent to a quorum (thrifty) that
	// then went to every replica: one of the quorum refused, failed, or
	// was slower than the hedge.
	PaxosWidened atomic.Uint64
}

// Coordinator runs reads and writes over a key's replicas. It is safe for
// concurrent use.
type Coordinator struct {
	cfg     Config
	log     *slog.Logger
	metrics Metrics
	latency latencyTracker
	// paxosRTT tracks each replica's Paxos round trips (fsynced, unlike
	// reads): the base of the backoff after a lost round (lin.go).
	paxosRTT latencyTracker
	// paxosKeys serializes each key's Paxos ops on this coordinator and
	// keeps the lease each leaves for the next (paxoskeys.go).
	paxosKeys paxosKeys
	// refreshes holds, per keyspace, the latest catch-up started after a
	// replica reported a newer epoch (*epochRefresh).
	refreshes sync.Map
	// bg counts the goroutines that outlive the request that started them
	// (replica requests finishing after W acks, hints, background rounds),
	// so that Wait can tell when they are all gone.
	bg sync.WaitGroup
	// ranges caches the token ranges of the last ring a scan used.
	ranges atomic.Pointer[rangeCache]
}

// NewCoordinator returns a Coordinator; cfg's Transport, Topology, Keyspaces,
// Hints and Clock are required.
func NewCoordinator(cfg Config) *Coordinator {
	if cfg.ReplicaTimeout <= 0 {
		cfg.ReplicaTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadRepairChance == 0 {
		cfg.ReadRepairChance = DefaultReadRepairChance
	}
	return &Coordinator{cfg: cfg, log: cfg.Logger}
}

// Metrics returns the coordinator's counters.
func (c *Coordinator) Metrics() *Metrics { return &c.metrics }

// Consistency is what a request asks for: a level, or R and W with
// quorum.Custom. The zero value means the keyspace's default.
type Consistency struct {
	Level quorum.Level
	R, W  int
	// MinVersion, for a read, is a session's floor for the key: the newest
	// version the session has written or read. Replicas that answer with
	// an older version (or none) do not satisfy the read, which asks the
	// next replicas in rank order and fails with ErrSessionBehind when none
	// in reach is new enough. Zero means no session.
	MinVersion storage.Version
	// After, for a write, is the highest timestamp a session has seen: the
	// clock moves past it before stamping, so the write's version is newer
	// than everything the session saw. Zero means no session.
	After uint64
}

// Receipt says what an operation achieved.
type Receipt struct {
	Policy quorum.Policy
	// Acked is the number of replicas that acknowledged (writes) or answered
	// (reads) before the coordinator replied.
	Acked int
	// Repaired is the number of replicas repaired in the foreground.
	Repaired int
	Epoch    uint64
}

func (c *Coordinator) policy(ks KeyspaceConfig, cons Consistency) (quorum.Policy, error) {
	level, r, w := cons.Level, cons.R, cons.W
	if level == quorum.Default {
		level, r, w = ks.Default, ks.R, ks.W
	}
	if level == quorum.Default {
		level = quorum.Quorum
	}
	p, err := quorum.Resolve(level, ks.N, r, w)
	if err != nil {
		return quorum.Policy{}, fmt.Errorf("keyspace %q: %w: %w", ks.Name, ErrInvalidRequest, err)
	}
	return p, nil
}

// unknownKeyspaceWait is how long a request for a keyspace this node does
// not know waits for the metadata log to bring it: a keyspace created a
// moment ago through another node may not have been applied here yet.
const unknownKeyspaceWait = 500 * time.Millisecond

// WaitForKeyspace returns a keyspace's configuration, waiting briefly for
// the metadata log to bring it if this node does not know it yet; it fails
// with ErrKeyspaceNotFound after that.
func (c *Coordinator) WaitForKeyspace(ctx context.Context, name string) (KeyspaceConfig, error) {
	return c.keyspace(ctx, name)
}

// keyspace looks a keyspace up, waiting up to unknownKeyspaceWait for it to
// be applied if it is not known yet.
func (c *Coordinator) keyspace(ctx context.Context, name string) (KeyspaceConfig, error) {
	if ks, ok := c.cfg.Keyspaces.Keyspace(name); ok {
		return c.awaitRefresh(ctx, ks), nil
	}
	wctx, cancel := context.WithTimeout(ctx, unknownKeyspaceWait)
	defer cancel()
	for {
		if err := c.cfg.Keyspaces.WaitForIndex(wctx, c.cfg.Keyspaces.Applied()+1); err != nil {
			return KeyspaceConfig{}, fmt.Errorf("keyspace %q: %w", name, ErrKeyspaceNotFound)
		}
		if ks, ok := c.cfg.Keyspaces.Keyspace(name); ok {
			return ks, nil
		}
	}
}

// plan is the shell's half of planning an attempt: the keyspace's
// configuration (waiting for a refresh in progress), the lease, the policy,
// the key's replicas split by gossip's view, ranked by latency, and, for a
// read, the read-repair draw and the write acknowledgement delay.
func (c *Coordinator) plan(ctx context.Context, keyspace string, key []byte, cons Consistency, read bool) (*opPlan, error) {
	ks, pol, r, err := c.planKeyspace(ctx, keyspace, cons)
	if err != nil {
		return nil, err
	}
	// Preference lists are prefixes of one ring walk, so the first N of the
	// longer list are the counted replicas.
	n := max(ks.N, min(ks.PendingN, r.Len()))
	list := r.PreferenceList(keyspace, key, n)
	if pt, ok := c.cfg.Topology.(PendingTopology); ok {
		if fr := pt.Pending(); fr != nil {
			// The key's future replicas that are not current ones are
			// pending: the write rule above keeps R + W > N when the
			// future ring takes over (node/topology.go says why).
			for _, id := range fr.PreferenceList(keyspace, key, max(ks.N, min(ks.PendingN, fr.Len()))) {
				if !slices.Contains(list, id) {
					list = append(list, id)
				}
			}
		}
	}
	p := &opPlan{ks: ks, pol: pol, replicas: list[:ks.N]}
	for i, id := range list {
		alive := c.cfg.Topology.Alive(id)
		switch {
		case i < ks.N && alive:
			p.alive = append(p.alive, id)
		case i < ks.N:
			p.dead = append(p.dead, id)
		case alive:
			p.pendingAlive = append(p.pendingAlive, id)
		default:
			p.pendingDead = append(p.pendingDead, id)
		}
	}
	p.ranked = c.rank(p.alive)
	if read {
		p.readAll = ks.ReadAll || c.readRepairDraw(ks)
		p.ackDelay = c.ackDelay(p.ranked, pol.W)
	}
	return p, nil
}

// planKeyspace is what every plan starts with: the keyspace's configuration
// (waiting for a refresh in progress), the lease, the policy, and a ring
// with room for N replicas.
func (c *Coordinator) planKeyspace(ctx context.Context, keyspace string, cons Consistency) (KeyspaceConfig, quorum.Policy, *ring.Ring, error) {
	ks, err := c.keyspace(ctx, keyspace)
	if err != nil {
		return KeyspaceConfig{}, quorum.Policy{}, nil, err
	}
	if err := c.checkLease(ks, false); err != nil {
		return KeyspaceConfig{}, quorum.Policy{}, nil, err
	}
	pol, err := c.policy(ks, cons)
	if err != nil {
		return KeyspaceConfig{}, quorum.Policy{}, nil, err
	}
	r := c.cfg.Topology.Ring()
	if r.Len() < ks.N {
		return KeyspaceConfig{}, quorum.Policy{}, nil, fmt.Errorf("keyspace %q: %w: replication factor %d exceeds the cluster's %d nodes", keyspace, ErrInvalidRequest, ks.N, r.Len())
	}
	return ks, pol, r, nil
}

// planScan is the shell's half of planning a scan attempt.
func (c *Coordinator) planScan(ctx context.Context, keyspace string, cons Consistency) (*scanPlan, error) {
	ks, pol, rg, err := c.planKeyspace(ctx, keyspace, cons)
	if err != nil {
		return nil, err
	}
	p := &scanPlan{ks: ks, pol: pol, ranges: c.tokenRanges(rg, ks.N)}
	for _, m := range rg.Members() {
		if c.cfg.Topology.Alive(m.ID) {
			p.nodes = append(p.nodes, m.ID)
		}
	}
	return p, nil
}

// Put writes value under key and returns its version.
//
// At the linearizable level (asked for, or the keyspace's default) it is a
// CondPut with the Always condition: a Paxos round orders it.
func (c *Coordinator) Put(ctx context.Context, keyspace string, key, value []byte, cons Consistency) (storage.Version, Receipt, error) {
	if c.isLinearizable(keyspace, cons) {
		r, err := c.CondPut(ctx, keyspace, key, value, paxos.Condition{Kind: paxos.Always}, cons)
		return r.Record.Version, r.Receipt, err
	}
	v, err := c.newVersion(cons.After)
	if err != nil {
		return storage.Version{}, Receipt{}, err
	}
	rcpt, err := c.write(ctx, keyspace, storage.Record{Key: key, Value: value, Version: v}, cons)
	return v, rcpt, err
}

// Delete writes a tombstone for key and returns its version.
// At the linearizable level it is a CondDelete with the Always condition.
func (c *Coordinator) Delete(ctx context.Context, keyspace string, key []byte, cons Consistency) (storage.Version, Receipt, error) {
	if c.isLinearizable(keyspace, cons) {
		r, err := c.CondDelete(ctx, keyspace, key, paxos.Condition{Kind: paxos.Always}, cons)
		return r.Record.Version, r.Receipt, err
	}
	v, err := c.newVersion(cons.After)
	if err != nil {
		return storage.Version{}, Receipt{}, err
	}
	rcpt, err := c.write(ctx, keyspace, storage.Record{Key: key, Tombstone: true, Version: v}, cons)
	return v, rcpt, err
}

func (c *Coordinator) write(ctx context.Context, keyspace string, rec storage.Record, cons Consistency) (Receipt, error) {
	start := time.Now()
	o := newWriteOp(c.cfg.NodeID, keyspace, rec, &c.metrics)
	a := c.run(ctx, keyspace, o, func() event {
		p, err := c.plan(ctx, keyspace, rec.Key, cons, false)
		return event{kind: evPlanned, plan: p, err: err}
	})
	if a.err == nil && c.cfg.Observer != nil {
		c.cfg.Observer.ClientWrite(keyspace, rec.Key, time.Since(start))
	}
	return a.receipt, a.err
}

// NodeNumberSource returns this node's number.
type NodeNumberSource func() (uint32, error)

// MaxSessionLead bounds how far ahead of the coordinator's physical clock a
// session's timestamp (Consistency.After) may be. The clock moves past what
// it observes and never back, so an unbounded value, from a corrupt or
// forged token, would stamp every later write of this node in the future.
// Why a minute: the timestamps a session holds come from the cluster's
// clocks, which are kept within seconds of each other (the Jepsen clock
// nemesis skews them by seconds); a minute leaves room for that and for a
// token handed on between requests, and caps the damage of a bad token.
const MaxSessionLead = time.Minute

// newVersion stamps a write after the session timestamp after (0: none).
func (c *Coordinator) newVersion(after uint64) (storage.Version, error) {
	if after > 0 {
		lead := time.UnixMilli(int64(after >> logicalBits)).Sub(c.cfg.Clock.Physical())
		if lead > MaxSessionLead {
			return storage.Version{}, fmt.Errorf("%w: session timestamp is %v ahead of this node's clock, more than %v", ErrInvalidRequest, lead.Round(time.Millisecond), MaxSessionLead)
		}
		c.cfg.Clock.Observe(after)
	}
	num := c.cfg.NodeNumber
	if c.cfg.NodeNumbers != nil {
		var err error
		if num, err = c.cfg.NodeNumbers(); err != nil {
			return storage.Version{}, err
		}
	}
	return storage.Version{Timestamp: c.cfg.Clock.Now(), Node: num}, nil
}

// hint stores mut for targets in one durable batch.
func (c *Coordinator) hint(ctx context.Context, targets []string, mut *kvpb.Mutation) {
	// A coordinator does not hint itself: its own write failed locally,
	// and a hint in the same engine would fail the same way.
	targets = slices.DeleteFunc(slices.Clone(targets), func(id string) bool { return id == c.cfg.NodeID })
	if len(targets) == 0 {
		return
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ReplicaTimeout)
	defer cancel()
	stored, err := c.cfg.Hints.AddAll(hctx, targets, mut)
	c.metrics.HintsStored.Add(uint64(stored))
	switch {
	case errors.Is(err, ErrHintWindowPassed):
		// Expected for every write while a replica stays away: the
		// store's log and metrics already say so.
		c.log.Debug("hints not stored", "targets", targets, "stored", stored, "keyspace", mut.GetKeyspace(), "err", err)
	case err != nil:
		c.log.Warn("hints not stored", "targets", targets, "stored", stored, "keyspace", mut.GetKeyspace(), "err", err)
	}
}

// epochRefreshWait bounds a catch-up started by noteEpoch, and so how long
// requests for the keyspace wait for it. A replica that knows an epoch
// means it is committed, and this node normally applies it within a
// heartbeat; a node that cannot (cut off from the metadata leader) stops
// holding requests up after this, and they go out at the epoch it has,
// where the replicas' epoch check still guards them.
const epochRefreshWait = 2 * time.Second

// epochRefresh is one catch-up with a keyspace epoch a replica reported.
type epochRefresh struct {
	epoch uint64
	done  chan struct{} // closed when the wait ends, caught up or not
}

// noteEpoch starts catching up with a keyspace epoch that a replica
// reported, unless this node has it or is already catching up with it or a
// later one. It is called on every refusal, including those of requests
// that won their quorum anyway (which do not run again): requests planned
// meanwhile wait for the catch-up (awaitRefresh), so that they go out at
// the new epoch instead of meeting the same refusals (and leaving hints for
// the refusing replicas) until the metadata log gets here by itself.
func (c *Coordinator) noteEpoch(keyspace string, known uint64) {
	if ks, ok := c.cfg.Keyspaces.Keyspace(keyspace); ok && ks.Epoch >= known {
		return
	}
	r := &epochRefresh{epoch: known, done: make(chan struct{})}
	for {
		v, loaded := c.refreshes.LoadOrStore(keyspace, r)
		if !loaded {
			break
		}
		cur := v.(*epochRefresh)
		if cur.epoch >= known {
			return
		}
		if c.refreshes.CompareAndSwap(keyspace, cur, r) {
			break
		}
	}
	c.metrics.EpochRefreshes.Add(1)
	c.goBackground(func() {
		defer close(r.done)
		ctx, cancel := context.WithTimeout(context.Background(), epochRefreshWait)
		defer cancel()
		if err := c.cfg.Keyspaces.WaitForIndex(ctx, known); err != nil {
			c.log.Warn("metadata behind a replica's configuration epoch", "keyspace", keyspace, "epoch", known, "applied", c.cfg.Keyspaces.Applied(), "err", err)
		}
	})
}

// awaitRefresh returns the keyspace's configuration once any catch-up that
// noteEpoch started for an epoch newer than ks's has ended (or ctx has).
func (c *Coordinator) awaitRefresh(ctx context.Context, ks KeyspaceConfig) KeyspaceConfig {
	v, ok := c.refreshes.Load(ks.Name)
	if !ok {
		return ks
	}
	r := v.(*epochRefresh)
	if r.epoch <= ks.Epoch {
		return ks
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return ks
	}
	if now, ok := c.cfg.Keyspaces.Keyspace(ks.Name); ok {
		return now
	}
	return ks
}

// catchUp waits until the local metadata has reached epoch, after a replica
// reported it.
func (c *Coordinator) catchUp(ctx context.Context, epoch uint64) error {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.cfg.Keyspaces.WaitForIndex(wctx, epoch); err != nil {
		return fmt.Errorf("catch up with configuration epoch %d: %w: %w", epoch, ErrStaleEpoch, err)
	}
	return nil
}

// ReadResult is the answer to a Get.
type ReadResult struct {
	// Record is the newest record among the replicas that answered; it may be
	// a tombstone, in which case Found is false.
	Record storage.Record
	Found  bool
	Receipt
}

// Get reads key from R replicas and returns the newest version they hold.
// At the linearizable level (asked for, or the keyspace's default) it asks
// a majority and writes back or escalates to a Paxos read as
// replication/paxos's Reader decides. Such a read returns every write
// answered before it began through Paxos, but not a session's own write at
// a weaker level that reached only a minority: when what it found is older
// than cons.MinVersion it fails with ErrSessionBehind, as a session read
// at any level does, rather than go back in time.
func (c *Coordinator) Get(ctx context.Context, keyspace string, key []byte, cons Consistency) (ReadResult, error) {
	if c.isLinearizable(keyspace, cons) {
		res, err := c.linGet(ctx, keyspace, key)
		if err == nil && cons.MinVersion != (storage.Version{}) && res.Record.Version.Less(cons.MinVersion) {
			c.metrics.SessionBehind.Add(1)
			return ReadResult{Receipt: res.Receipt}, fmt.Errorf("linearizable read of %q found version %d.%d, older than the session's %d.%d: %w",
				key, res.Record.Version.Timestamp, res.Record.Version.Node, cons.MinVersion.Timestamp, cons.MinVersion.Node, ErrSessionBehind)
		}
		return res, err
	}
	start := time.Now()
	o := newReadOp(c.cfg.NodeID, keyspace, key, start, &c.metrics)
	o.min = cons.MinVersion
	a := c.run(ctx, keyspace, o, func() event {
		p, err := c.plan(ctx, keyspace, key, cons, true)
		return event{kind: evPlanned, plan: p, err: err}
	})
	if a.err != nil {
		return ReadResult{Receipt: a.receipt}, a.err
	}
	if o := c.cfg.Observer; o != nil {
		var age time.Duration
		if a.found {
			age = max(time.Since(a.record.Version.WallTime()), 0)
		}
		o.ClientRead(keyspace, key, time.Since(start), age, a.found)
	}
	return ReadResult{Record: a.record, Found: a.found && !a.record.Tombstone, Receipt: a.receipt}, nil
}

// ackDelay estimates how long after it is stamped a write to these replicas
// is acknowledged at W: the W-th shortest of this coordinator's round trips
// to them (its own replica's being about zero). A writer elsewhere sees other
// round trips; the estimate only has to tell writes in flight from writes
// long done.
func (c *Coordinator) ackDelay(replicas []string, w int) time.Duration {
	if w <= 0 || len(replicas) == 0 {
		return 0
	}
	rtts := make([]int64, len(replicas))
	for i, id := range replicas {
		rtts[i] = c.latency.get(id)
	}
	slices.Sort(rtts)
	return time.Duration(rtts[min(w, len(rtts))-1])
}

// readRepairDraw decides whether a read asks every replica: with the
// keyspace's own chance when it has one (adaptive keyspaces, whose tuner
// measures staleness on these reads), else the coordinator's.
func (c *Coordinator) readRepairDraw(ks KeyspaceConfig) bool {
	chance := c.cfg.ReadRepairChance
	if ks.ReadRepairChance != 0 {
		chance = ks.ReadRepairChance
	}
	return chance > 0 && rand.Float64() < chance
}

// rank orders replicas for reading: replicas flagged by the health
// detector last, then this node first when it is a replica (no network
// hop), then by observed read latency, failures charged as timeouts,
// fastest first (the dynamic-snitch idea of Cassandra and C3, without
// queue sizes yet).
func (c *Coordinator) rank(alive []string) []string {
	order := slices.Clone(alive)
	slices.SortStableFunc(order, func(a, b string) int {
		if fa, fb := c.flagged(a), c.flagged(b); fa != fb {
			if fa {
				return 1
			}
			return -1
		}
		if a == c.cfg.NodeID {
			return -1
		}
		if b == c.cfg.NodeID {
			return 1
		}
		return cmp.Compare(c.latency.get(a), c.latency.get(b))
	})
	return order
}

// latencyTracker keeps an exponentially weighted moving average of each
// replica's read latency.
type latencyTracker struct {
	m sync.Map // node ID -> *atomic.Int64 (nanoseconds)
}

func (t *latencyTracker) get(id string) int64 {
	if v, ok := t.m.Load(id); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// observe folds a sample in with weight 1/8: recent enough to follow a
// replica that slows down within a second under load, smooth enough that
// one slow reply does not reorder the replicas.
func (t *latencyTracker) observe(id string, d time.Duration) {
	v, ok := t.m.Load(id)
	if !ok {
		v, _ = t.m.LoadOrStore(id, new(atomic.Int64))
	}
	a := v.(*atomic.Int64)
	for {
		old := a.Load()
		next := int64(d)
		if old != 0 {
			next = old + (int64(d)-old)/8
		}
		if a.CompareAndSwap(old, next) {
			return
		}
	}
}

// ScanResult is the answer to a Scan.
type ScanResult struct {
	Records []storage.Record // live records only, in key order
	More    bool
	// NextStart is where a follow-up scan continues when More is set.
	NextStart []byte
	Receipt
}

// Scan returns the live records with start <= key < end (end nil: no bound)
// in key order, at most limit of them; More and NextStart say where the next
// page starts.
//
// Keys are placed by hash, so any key of the range may live in any token
// range of the ring: every alive node is asked for its records in the key
// range, and the scan answers only if every token range has at least R of
// its N replicas among the nodes that answered. Then every key has been
// seen by R of its replicas, and for each key the newest version among them
// wins. Otherwise it fails with a *QuorumError whose Detail names token
// ranges it could not cover and the replicas missing: ErrNotEnoughReplicas
// when too few were alive to try, ErrQuorumNotReached when too few
// answered. A replica that knows a newer configuration epoch refuses; when
// that costs the scan its coverage, the coordinator catches up and runs it
// again, as reads do. Scans do not repair.
func (c *Coordinator) Scan(ctx context.Context, keyspace string, start, end []byte, limit int, cons Consistency) (ScanResult, error) {
	o := newScanOp(c.cfg.NodeID, keyspace, start, end, limit, &c.metrics)
	a := c.run(ctx, keyspace, o, func() event {
		p, err := c.planScan(ctx, keyspace, cons)
		return event{kind: evPlanned, scan: p, err: err}
	})
	return *a.scan, a.err
}

// rangeCache is the token ranges of one ring for one replication factor.
type rangeCache struct {
	ring   *ring.Ring
	n      int
	ranges []ring.Range
}

// tokenRanges returns rg's token ranges with preference lists of n,
// computed once per ring (a ring is immutable, and replaced on every
// membership change).
func (c *Coordinator) tokenRanges(rg *ring.Ring, n int) []ring.Range {
	if rc := c.ranges.Load(); rc != nil && rc.ring == rg && rc.n == n {
		return rc.ranges
	}
	rc := &rangeCache{ring: rg, n: n, ranges: rg.Ranges(n)}
	c.ranges.Store(rc)
	return rc.ranges
}

// goBackground runs f on a goroutine Wait waits for.
func (c *Coordinator) goBackground(f func()) {
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		f()
	}()
}

// Wait returns once every goroutine the coordinator started for requests
// that outlive their clients has ended. Each is bounded by the replica
// timeout; a node calls Wait when it stops, after its server has stopped
// taking requests and its peer connections are closed (so what is still in
// flight fails at once), and before its storage closes.
func (c *Coordinator) Wait() { c.bg.Wait() }

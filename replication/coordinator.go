package replication

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
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
}

// Coordinator runs reads and writes over a key's replicas. It is safe for
// concurrent use.
type Coordinator struct {
	cfg     Config
	log     *slog.Logger
	metrics Metrics
	latency latencyTracker
	// refreshes holds, per keyspace, the latest catch-up started after a
	// replica reported a newer epoch (*epochRefresh).
	refreshes sync.Map
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

// maxEpochAttempts bounds how often one operation is run again after a
// replica reported a newer epoch: each retry waits for the local metadata to
// catch up, so a second refusal means the configuration is changing fast.
const maxEpochAttempts = 3

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

// plan is one attempt's view of a key: its configuration, policy and replicas.
type plan struct {
	ks       KeyspaceConfig
	pol      quorum.Policy
	replicas []string // preference list: the first N, which count
	alive    []string
	dead     []string
	// pendingAlive and pendingDead are the replicas beyond N that writes
	// also reach while the keyspace grows (KeyspaceConfig.PendingN); they
	// never count in a quorum.
	pendingAlive []string
	pendingDead  []string
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

func (c *Coordinator) plan(ctx context.Context, keyspace string, key []byte, cons Consistency) (plan, error) {
	ks, err := c.keyspace(ctx, keyspace)
	if err != nil {
		return plan{}, err
	}
	if err := c.checkLease(ks, false); err != nil {
		return plan{}, err
	}
	pol, err := c.policy(ks, cons)
	if err != nil {
		return plan{}, err
	}
	r := c.cfg.Topology.Ring()
	if r.Len() < ks.N {
		return plan{}, fmt.Errorf("keyspace %q: %w: replication factor %d exceeds the cluster's %d nodes", keyspace, ErrInvalidRequest, ks.N, r.Len())
	}
	// Preference lists are prefixes of one ring walk, so the first N of the
	// longer list are the counted replicas.
	n := max(ks.N, min(ks.PendingN, r.Len()))
	list := r.PreferenceList(keyspace, key, n)
	p := plan{ks: ks, pol: pol, replicas: list[:ks.N]}
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
	return p, nil
}

// Put writes value under key and returns its version.
func (c *Coordinator) Put(ctx context.Context, keyspace string, key, value []byte, cons Consistency) (storage.Version, Receipt, error) {
	v, err := c.newVersion()
	if err != nil {
		return storage.Version{}, Receipt{}, err
	}
	rec := storage.Record{Key: key, Value: value, Version: v}
	rcpt, err := c.write(ctx, keyspace, rec, cons)
	return rec.Version, rcpt, err
}

// Delete writes a tombstone for key and returns its version.
func (c *Coordinator) Delete(ctx context.Context, keyspace string, key []byte, cons Consistency) (storage.Version, Receipt, error) {
	v, err := c.newVersion()
	if err != nil {
		return storage.Version{}, Receipt{}, err
	}
	rec := storage.Record{Key: key, Tombstone: true, Version: v}
	rcpt, err := c.write(ctx, keyspace, rec, cons)
	return rec.Version, rcpt, err
}

// NodeNumberSource returns this node's number.
type NodeNumberSource func() (uint32, error)

func (c *Coordinator) newVersion() (storage.Version, error) {
	num := c.cfg.NodeNumber
	if c.cfg.NodeNumbers != nil {
		var err error
		if num, err = c.cfg.NodeNumbers(); err != nil {
			return storage.Version{}, err
		}
	}
	return storage.Version{Timestamp: c.cfg.Clock.Now(), Node: num}, nil
}

type writeReply struct {
	id    string
	ok    bool
	known uint64 // newer epoch the replica reported
	err   error
}

func (c *Coordinator) replicaCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	// Replica requests outlive the client's request: after W acks the rest
	// finish in the background, and their failures become hints.
	return context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ReplicaTimeout)
}

// fanout is one replica context shared by every replica request of one
// operation, released when the last of them and the coordinator itself are
// done with it: one timer per operation instead of one per replica.
type fanout struct {
	ctx    context.Context
	cancel context.CancelFunc
	refs   atomic.Int32
}

// newFanout returns a fanout holding the coordinator's reference.
func (c *Coordinator) newFanout(ctx context.Context) *fanout {
	f := &fanout{}
	f.ctx, f.cancel = c.replicaCtx(ctx)
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

func (c *Coordinator) write(ctx context.Context, keyspace string, rec storage.Record, cons Consistency) (Receipt, error) {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		p, err := c.plan(ctx, keyspace, rec.Key, cons)
		var le *LeaseError
		if err != nil && attempt > 1 && errors.As(err, &le) {
			// An earlier attempt was sent: some replicas may hold it.
			le.Lost = true
		}
		if err != nil {
			return Receipt{}, err
		}
		rcpt := Receipt{Policy: p.pol, Epoch: p.ks.Epoch}
		if len(p.alive) < p.pol.W {
			if attempt > 1 {
				// Not a definite failure: the first attempt was sent.
				return rcpt, &QuorumError{Op: "write", Answered: len(p.alive), Required: p.pol.W, Err: ErrQuorumNotReached,
					Detail: "too few replicas alive for a retry after a newer configuration epoch; an earlier attempt may have been applied"}
			}
			return rcpt, &QuorumError{Op: "write", Answered: len(p.alive), Required: p.pol.W, Err: ErrNotEnoughReplicas}
		}
		if len(p.pendingDead) > 0 {
			// While the keyspace grows, an acknowledged write must be on
			// every added replica (see below); one is down, so nothing is
			// sent and the failure is definite. The tuner abandons a grow
			// whose streaming cannot reach every node, which ends this.
			return rcpt, &QuorumError{Op: "write", Answered: len(p.alive), Required: p.pol.W, Err: ErrNotEnoughReplicas,
				Detail: fmt.Sprintf("keyspace %q is growing to N=%d and added replica %s is down; a write must reach every added replica", keyspace, p.ks.PendingN, p.pendingDead[0])}
		}
		mut := &kvpb.Mutation{Keyspace: keyspace, Epoch: p.ks.Epoch, Record: RecordToPB(rec)}
		req := &kvpb.ReplicaWriteRequest{Mutations: []*kvpb.Mutation{mut}, From: c.cfg.NodeID}
		sent := len(p.alive) + len(p.pendingAlive)
		replies := make(chan writeReply, sent)
		// The dead replicas' hints wait for the first acknowledgement (see
		// writeHints): they are stored while the other replica writes are
		// in flight, not before any is sent.
		hints := &writeHints{c: c, ctx: ctx, mut: mut}
		hints.add(p.dead...)
		fan := c.newFanout(ctx)
		for rank, id := range c.rank(p.alive) {
			fan.acquire()
			go func() {
				defer fan.release()
				sent := time.Now()
				resp, err := c.cfg.Transport.Write(fan.ctx, id, req)
				r := toWriteReply(id, resp, err)
				if o := c.cfg.Observer; o != nil {
					// A replica that refused a stale epoch answered in time:
					// it is not a failed or slow replica to the tuner.
					o.Replica(keyspace, rank, true, time.Since(sent), r.ok || r.known > 0)
				}
				replies <- r
			}()
		}
		// Pending replicas get the write too. They do not count towards W,
		// nor feed the tuner's per-rank latencies (which describe the
		// counted ones), but the write is acknowledged only once every one
		// of them has it: the grown configuration counts them in read
		// quorums as soon as streaming ends, and a write that reached an
		// added replica only as a hint could be missed by such a read.
		for _, id := range p.pendingAlive {
			fan.acquire()
			go func() {
				defer fan.release()
				resp, err := c.cfg.Transport.Write(fan.ctx, id, req)
				replies <- toWriteReply(id, resp, err)
			}()
		}
		fan.release() // every replica write is out
		tally := quorum.NewTally(p.pol.W, len(p.alive))
		var newest uint64
		received := 0
		verdict := quorum.Pending
		pendingLeft := len(p.pendingAlive)
		var pendingErr error // the first added replica that did not acknowledge
		for verdict == quorum.Pending || (verdict == quorum.Won && pendingLeft > 0 && pendingErr == nil) {
			select {
			case r := <-replies:
				received++
				if i := indexOf(p.alive, r.id); i >= 0 {
					verdict = tally.Record(i, r.ok)
				} else {
					pendingLeft--
					if !r.ok && pendingErr == nil {
						pendingErr = fmt.Errorf("added replica %s did not acknowledge (keyspace growing to N=%d; a write must reach every added replica): %w", r.id, p.ks.PendingN, r.err)
					}
				}
				newest = max(newest, r.known)
				c.afterWrite(hints, r)
			case <-ctx.Done():
				go c.drainWrites(hints, replies, sent-received)
				return Receipt{Policy: p.pol, Acked: tally.Acks(), Epoch: p.ks.Epoch},
					fmt.Errorf("write: %d of %d required replicas acknowledged before %w", tally.Acks(), p.pol.W, ctx.Err())
			}
		}
		go c.drainWrites(hints, replies, sent-received)
		rcpt.Acked = tally.Acks()
		if verdict == quorum.Won && pendingErr == nil {
			// Acknowledged: the hints of the replicas that did not get the
			// write so far (the dead ones, and any that failed before the
			// quorum) are on disk before the client hears of it.
			hints.wait()
			if err := c.checkLease(p.ks, true); err != nil {
				if movedOn(err) && attempt < maxEpochAttempts {
					// Acknowledged under the epoch before: send it again,
					// with the same version, under the one in force.
					c.metrics.EpochRetries.Add(1)
					continue
				}
				return rcpt, err
			}
			if o := c.cfg.Observer; o != nil {
				o.ClientWrite(keyspace, rec.Key, time.Since(start))
			}
			return rcpt, nil
		}
		if newest > p.ks.Epoch && attempt < maxEpochAttempts {
			if err := c.catchUp(ctx, newest); err != nil {
				return rcpt, err
			}
			continue
		}
		if verdict == quorum.Won {
			return rcpt, &QuorumError{Op: "write", Answered: tally.Acks(), Required: p.pol.W, Err: ErrQuorumNotReached, Detail: pendingErr.Error()}
		}
		return rcpt, &QuorumError{Op: "write", Answered: tally.Acks(), Required: p.pol.W, Err: ErrQuorumNotReached}
	}
}

func toWriteReply(id string, resp *kvpb.ReplicaWriteResponse, err error) writeReply {
	if err != nil {
		return writeReply{id: id, err: err}
	}
	if len(resp.GetResults()) != 1 {
		return writeReply{id: id, err: fmt.Errorf("replica %s answered %d results for 1 mutation", id, len(resp.GetResults()))}
	}
	res := resp.GetResults()[0]
	if !res.GetOk() {
		return writeReply{id: id, known: res.GetKnownEpoch(), err: errors.New(res.GetError())}
	}
	return writeReply{id: id, ok: true}
}

// afterWrite acknowledges a replica write to the hints, or turns a failed
// one into a hint, and notes a newer epoch the replica reported.
func (c *Coordinator) afterWrite(h *writeHints, r writeReply) {
	if r.ok {
		h.ack()
		return
	}
	c.metrics.ReplicaErrors.Add(1)
	c.log.Debug("replica write failed", "replica", r.id, "keyspace", h.mut.GetKeyspace(), "err", r.err)
	if r.known > h.mut.GetEpoch() {
		c.noteEpoch(h.mut.GetKeyspace(), r.known)
	}
	h.add(r.id)
}

func (c *Coordinator) drainWrites(h *writeHints, replies <-chan writeReply, n int) {
	for range n {
		c.afterWrite(h, <-replies)
	}
}

// writeHints collects the hints of one write attempt: the replicas that
// were dead when it was planned and those whose write failed.
//
// Hints are stored only once some replica has acknowledged the write, and
// then at once, concurrently with the replica writes still in flight. The
// guarantee: a write acknowledged to the client has the hints of every
// replica that was dead, or had failed before the quorum was reached, on
// the coordinator's disk (write waits for them); failures after that are
// hinted in the background, as they always were. Why not before the
// fan-out, as this code once did? Because that made every write with a
// dead replica pay a hint fsync before anything was sent, and left hints
// for writes that no replica then accepted: when every replica refused an
// attempt (a newer epoch) the write took effect nowhere, and if its retry
// failed definitively the hints would still have delivered a write the
// client was told had failed. Why wait for them before acknowledging?
// At W=1 with the other replicas down the hint is the only record that
// they lack the write; a coordinator crash just after the acknowledgement
// would otherwise leave that to anti-entropy. A write no replica
// acknowledged leaves no hint: refused, it took effect nowhere (a retry
// resends it); failed or timed out, its outcome is unknown, and read repair
// and anti-entropy settle whatever part of it landed.
type writeHints struct {
	c   *Coordinator
	ctx context.Context
	mut *kvpb.Mutation

	mu      sync.Mutex
	acked   bool
	waiting []string        // targets held until the first acknowledgement
	stores  []chan struct{} // one per store started, closed when it ends
}

// add hints targets: at once if a replica has acknowledged, else at the
// first acknowledgement.
func (h *writeHints) add(targets ...string) {
	if len(targets) == 0 {
		return
	}
	h.mu.Lock()
	if !h.acked {
		h.waiting = append(h.waiting, targets...)
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	h.store(targets)
}

// ack records a replica's acknowledgement; the first one stores the hints
// held until then.
func (h *writeHints) ack() {
	h.mu.Lock()
	if h.acked {
		h.mu.Unlock()
		return
	}
	h.acked = true
	targets := h.waiting
	h.waiting = nil
	h.mu.Unlock()
	h.store(targets)
}

func (h *writeHints) store(targets []string) {
	if len(targets) == 0 {
		return
	}
	done := make(chan struct{})
	h.mu.Lock()
	h.stores = append(h.stores, done)
	h.mu.Unlock()
	go func() {
		defer close(done)
		h.c.hint(h.ctx, targets, h.mut)
	}()
}

// wait returns once the hints started so far are stored (or failed). Late
// replies may start more meanwhile; they are not waited for.
func (h *writeHints) wait() {
	h.mu.Lock()
	stores := slices.Clone(h.stores)
	h.mu.Unlock()
	for _, done := range stores {
		<-done
	}
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
	go func() {
		defer close(r.done)
		ctx, cancel := context.WithTimeout(context.Background(), epochRefreshWait)
		defer cancel()
		if err := c.cfg.Keyspaces.WaitForIndex(ctx, known); err != nil {
			c.log.Warn("metadata behind a replica's configuration epoch", "keyspace", keyspace, "epoch", known, "applied", c.cfg.Keyspaces.Applied(), "err", err)
		}
	}()
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
	c.metrics.EpochRetries.Add(1)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.cfg.Keyspaces.WaitForIndex(wctx, epoch); err != nil {
		return fmt.Errorf("catch up with configuration epoch %d: %w: %w", epoch, ErrStaleEpoch, err)
	}
	return nil
}

func indexOf(ids []string, id string) int {
	for i, x := range ids {
		if x == id {
			return i
		}
	}
	return -1
}

// ReadResult is the answer to a Get.
type ReadResult struct {
	// Record is the newest record among the replicas that answered; it may be
	// a tombstone, in which case Found is false.
	Record storage.Record
	Found  bool
	Receipt
}

type readReply struct {
	id    string
	found bool
	rec   storage.Record // without its value when digest
	// digest: the reply to a digest read, whose record has no value.
	digest bool
	known  uint64
	err    error
}

// Get reads key from R replicas and returns the newest version they hold.
func (c *Coordinator) Get(ctx context.Context, keyspace string, key []byte, cons Consistency) (ReadResult, error) {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		p, err := c.plan(ctx, keyspace, key, cons)
		if err != nil {
			return ReadResult{}, err
		}
		rcpt := Receipt{Policy: p.pol, Epoch: p.ks.Epoch}
		if len(p.alive) < p.pol.R {
			return ReadResult{Receipt: rcpt}, &QuorumError{Op: "read", Answered: len(p.alive), Required: p.pol.R, Err: ErrNotEnoughReplicas}
		}
		req := &kvpb.ReplicaReadRequest{Keyspace: keyspace, Epoch: p.ks.Epoch, Key: key, From: c.cfg.NodeID}
		digestReq := &kvpb.ReplicaReadRequest{Keyspace: keyspace, Epoch: p.ks.Epoch, Key: key, From: c.cfg.NodeID, Digest: true}
		// Ask the R best replicas; ask the next one only when one fails. With
		// probability ReadRepairChance ask every alive replica, so that the
		// ones not needed for the answer are compared (and repaired) in the
		// background.
		order := c.rank(p.alive)
		hedgeAfter := p.ks.HedgeAfter // a hedged read must not wait on a local read
		asked := p.pol.R
		if p.ks.ReadAll || c.readRepairDraw(p.ks) {
			asked = len(order)
		}
		replies := make(chan readReply, len(order))
		// Only the first replica asked returns the value; the others, which
		// are there to be compared (a quorum's other members, or the extra
		// replicas of read repair and the tuner's probes), return digests
		// (key, version, tombstone). When every reply agrees, or the first
		// holds the newest version, that is the whole read; otherwise the
		// value is fetched from a replica that holds the newest
		// (fetchNewest), as it is when the first replica fails at R=1 and
		// the next one answered with a digest. A hedged read, where any
		// reply may be the answer, asks for values everywhere.
		digests := hedgeAfter == 0
		readOne := func(ctx context.Context, rank int) {
			id := order[rank]
			start := time.Now() // this replica's round trip
			rq, digest := req, digests && rank > 0
			if digest {
				rq = digestReq
			}
			resp, err := c.cfg.Transport.Read(ctx, id, rq)
			r := readReply{id: id, err: err, digest: digest}
			if o := c.cfg.Observer; o != nil {
				o.Replica(keyspace, rank, false, time.Since(start), err == nil)
			}
			if err == nil {
				c.latency.observe(id, time.Since(start))
				switch {
				case resp.GetKnownEpoch() > 0:
					r.known, r.err = resp.GetKnownEpoch(), ErrStaleEpoch
				case resp.GetFound():
					r.found, r.rec = true, RecordFromPB(resp.GetRecord())
					// Every version a read sees moves the clock, digests and
					// late replies included, so that a write this node
					// coordinates after the read orders after what it
					// returned (the promise Clock makes).
					c.cfg.Clock.Observe(r.rec.Version.Timestamp)
				}
			}
			replies <- r // never blocks: the channel holds every replica's reply
		}
		fan := c.newFanout(ctx)
		defer fan.release() // no read is sent after Get returns
		fullOut := 0        // value reads sent and not answered yet
		send := func(rank int) {
			if !digests || rank == 0 {
				fullOut++
			}
			fan.acquire()
			go func() {
				defer fan.release()
				readOne(fan.ctx, rank)
			}()
		}
		// The local replica, when it is among the first asked, is read on
		// this goroutine after the others are sent: a goroutine and a timer
		// per local read were a quarter of a node's CPU at `one` (profile in
		// BENCHMARKS.md), and a local read needs neither, since it does not
		// wait on the network.
		local := order[0] == c.cfg.NodeID && hedgeAfter == 0
		for rank := range asked {
			if rank > 0 || !local {
				send(rank)
			}
		}
		if local {
			fullOut++
			readOne(ctx, 0)
		}
		tally := quorum.NewTally(p.pol.R, len(order))
		var got []readReply
		var newest uint64
		var hedge <-chan time.Time
		if hedgeAfter > 0 && asked < len(order) {
			t := time.NewTimer(hedgeAfter)
			defer t.Stop()
			hedge = t.C
		}
		verdict := quorum.Pending
		// A quorum of digests that the value read has not caught up with
		// yet waits for it (it is on its way) rather than fetching the
		// value again: at R=1 with the compared replicas asked too, a
		// digest often arrives first.
		awaitValue := func() bool {
			w, found := newestOf(got)
			return verdict == quorum.Won && fullOut > 0 && found && needsValue(w, got)
		}
		for verdict == quorum.Pending || awaitValue() {
			select {
			case <-hedge:
				if verdict == quorum.Pending && asked < len(order) {
					c.metrics.Hedges.Add(1)
					send(asked)
					asked++
				}
			case r := <-replies:
				if !r.digest {
					fullOut--
				}
				if r.err != nil {
					c.metrics.ReplicaErrors.Add(1)
					newest = max(newest, r.known)
					if verdict == quorum.Pending && asked < len(order) {
						send(asked)
						asked++
					}
				} else {
					got = append(got, r)
				}
				verdict = tally.Record(indexOf(order, r.id), r.err == nil)
			case <-ctx.Done():
				return ReadResult{Receipt: rcpt}, fmt.Errorf("read: %d of %d required replicas answered before %w", tally.Acks(), p.pol.R, ctx.Err())
			}
		}
		rcpt.Acked = tally.Acks()
		if verdict == quorum.Lost {
			if newest > p.ks.Epoch && attempt < maxEpochAttempts {
				if err := c.catchUp(ctx, newest); err != nil {
					return ReadResult{Receipt: rcpt}, err
				}
				continue
			}
			return ReadResult{Receipt: rcpt}, &QuorumError{Op: "read", Answered: tally.Acks(), Required: p.pol.R, Err: ErrQuorumNotReached}
		}
		if newest > p.ks.Epoch {
			c.noteEpoch(keyspace, newest)
		}
		winner, found := newestOf(got)
		if found && needsValue(winner, got) {
			c.metrics.DigestFetches.Add(1)
			if winner, err = c.fetchNewest(ctx, keyspace, p.ks.Epoch, key, winner, got); err != nil {
				return ReadResult{Receipt: rcpt}, err
			}
		}
		if found {
			rcpt.Repaired = c.repairForeground(ctx, keyspace, p.ks.Epoch, winner, got)
		}
		if err := c.checkLease(p.ks, true); err != nil {
			if movedOn(err) && attempt < maxEpochAttempts {
				// Read again under the epoch in force.
				c.metrics.EpochRetries.Add(1)
				continue
			}
			return ReadResult{Receipt: rcpt}, err
		}
		if outstanding := asked - tally.Answered(); outstanding > 0 {
			go c.repairBackground(ctx, keyspace, p.ks.Epoch, start, c.ackDelay(order, p.pol.W), winner, found, got, replies, outstanding)
		}
		if o := c.cfg.Observer; o != nil {
			var age time.Duration
			if found {
				age = max(time.Since(winner.Version.WallTime()), 0)
			}
			o.ClientRead(keyspace, key, time.Since(start), age, found)
		}
		return ReadResult{Record: winner, Found: found && !winner.Tombstone, Receipt: rcpt}, nil
	}
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

// rank orders replicas for reading: this node first when it is a replica
// (no network hop), then by observed read latency, fastest first (the
// dynamic-snitch idea of Cassandra and C3, without queue sizes yet).
func (c *Coordinator) rank(alive []string) []string {
	order := slices.Clone(alive)
	slices.SortStableFunc(order, func(a, b string) int {
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

// fetchNewest reads the full record from the replicas whose digest showed
// the newest version, in reply order, and returns the first answer at that
// version or newer: the second round of a read whose digests disagreed with
// its full reply.
func (c *Coordinator) fetchNewest(ctx context.Context, keyspace string, epoch uint64, key []byte, winner storage.Record, replies []readReply) (storage.Record, error) {
	req := &kvpb.ReplicaReadRequest{Keyspace: keyspace, Epoch: epoch, Key: key, From: c.cfg.NodeID}
	var last error
	for _, r := range replies {
		if !r.found || r.rec.Version != winner.Version {
			continue
		}
		rec, err := c.readFull(ctx, r.id, req)
		if err == nil && !rec.Version.Less(winner.Version) {
			return rec, nil
		}
		if err == nil {
			err = fmt.Errorf("replica %s answered version %v after its digest showed %v", r.id, rec.Version, winner.Version)
		}
		c.metrics.ReplicaErrors.Add(1)
		last = err
	}
	return storage.Record{}, &QuorumError{Op: "read", Answered: len(replies), Required: len(replies),
		Err: fmt.Errorf("%w: no replica holding the newest version answered the read of its value: %w", ErrQuorumNotReached, last)}
}

// readFull reads one replica's full record of key.
func (c *Coordinator) readFull(ctx context.Context, id string, req *kvpb.ReplicaReadRequest) (storage.Record, error) {
	rctx, cancel := c.replicaCtx(ctx)
	defer cancel()
	resp, err := c.cfg.Transport.Read(rctx, id, req)
	switch {
	case err != nil:
		return storage.Record{}, err
	case resp.GetKnownEpoch() > 0:
		c.noteEpoch(req.GetKeyspace(), resp.GetKnownEpoch())
		return storage.Record{}, ErrStaleEpoch
	case !resp.GetFound():
		return storage.Record{}, fmt.Errorf("replica %s no longer holds the key", id)
	}
	rec := RecordFromPB(resp.GetRecord())
	c.cfg.Clock.Observe(rec.Version.Timestamp)
	return rec, nil
}

func stale(r readReply, winner storage.Record) bool {
	return !r.found || r.rec.Version.Less(winner.Version)
}

// repairForeground writes the winner to the replicas among those that
// answered that hold an older version, and waits for them, so that the
// version a quorum read returns is on a quorum before the client sees it.
func (c *Coordinator) repairForeground(ctx context.Context, keyspace string, epoch uint64, winner storage.Record, got []readReply) int {
	var targets []string
	for _, r := range got {
		if stale(r, winner) {
			targets = append(targets, r.id)
		}
	}
	if len(targets) == 0 {
		return 0
	}
	done := make(chan bool, len(targets))
	for _, id := range targets {
		go func() { done <- c.repairOne(ctx, keyspace, epoch, id, winner) }()
	}
	repaired := 0
	for range targets {
		if <-done {
			repaired++
		}
	}
	c.metrics.ReadRepairsForeground.Add(uint64(repaired))
	return repaired
}

// repairBackground collects the replies that arrive after the read answered
// and repairs the replicas that turn out stale.
//
// readStart is when the read began and ackDelay how long a write takes to
// be acknowledged: a newer version stamped later than readStart − ackDelay
// belongs to a write that was most likely still in flight when the read
// began (concurrent with it), not evidence that the answer was stale.
func (c *Coordinator) repairBackground(ctx context.Context, keyspace string, epoch uint64, readStart time.Time, ackDelay time.Duration, winner storage.Record, found bool, early []readReply, replies <-chan readReply, n int) {
	var late []readReply
	for range n {
		if r := <-replies; r.err == nil {
			late = append(late, r)
		} else {
			c.metrics.ReplicaErrors.Add(1)
			if r.known > epoch {
				c.noteEpoch(keyspace, r.known)
			}
		}
	}
	if o := c.cfg.Observer; o != nil {
		// Compare the answer with every replica: the tuner's measured
		// staleness (a newer version, acknowledged before the read began,
		// existed) and lag (some replica behind). Writes still in flight
		// when the read began are concurrent with it, and a read may order
		// them either way; counting them made the probes report hot keys
		// stale under write-heavy load, first those stamped after the
		// read began and then, under R=1 W=3 across zones, those stamped
		// less than a cross-zone round trip before it (1–5% of probes
		// "stale" where the clients measured none).
		stale, behind := false, false
		for _, r := range append(late, early...) {
			switch {
			case r.found && (!found || winner.Version.Less(r.rec.Version)):
				if r.rec.Version.WallTime().Add(ackDelay).Before(readStart) {
					stale = true
				}
			case found && (!r.found || r.rec.Version.Less(winner.Version)):
				behind = true
			}
		}
		o.Probe(keyspace, stale, behind)
	}
	check := late
	if w, ok := newestOf(late); ok && (!found || winner.Version.Less(w.Version)) {
		// A late replica holds something newer than what the client got (a
		// write that completed meanwhile, or a replica the answer missed):
		// spread that instead, to the early replicas too, once its value is
		// in hand (late replies are digests).
		if needsValue(w, late) {
			full, err := c.fetchNewest(ctx, keyspace, epoch, w.Key, w, late)
			if err != nil {
				return
			}
			w = full
		}
		winner, found = w, true
		check = append(late, early...)
	}
	if !found {
		return
	}
	for _, r := range check {
		if stale(r, winner) && c.repairOne(ctx, keyspace, epoch, r.id, winner) {
			c.metrics.ReadRepairsBackground.Add(1)
		}
	}
}

func (c *Coordinator) repairOne(ctx context.Context, keyspace string, epoch uint64, id string, rec storage.Record) bool {
	rctx, cancel := c.replicaCtx(ctx)
	defer cancel()
	req := &kvpb.ReplicaWriteRequest{
		Mutations: []*kvpb.Mutation{{Keyspace: keyspace, Epoch: epoch, Record: RecordToPB(rec)}},
		From:      c.cfg.NodeID,
	}
	resp, err := c.cfg.Transport.Write(rctx, id, req)
	r := toWriteReply(id, resp, err)
	if !r.ok {
		c.log.Debug("read repair failed", "replica", id, "keyspace", keyspace, "err", r.err)
		if r.known > epoch {
			c.noteEpoch(keyspace, r.known)
		}
	}
	return r.ok
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
	for attempt := 1; ; attempt++ {
		res, newest, err := c.scanOnce(ctx, keyspace, start, end, limit, cons)
		if movedOn(err) && attempt < maxEpochAttempts {
			c.metrics.EpochRetries.Add(1)
			continue
		}
		var qe *QuorumError
		if errors.As(err, &qe) && errors.Is(err, ErrQuorumNotReached) && newest > res.Epoch && attempt < maxEpochAttempts {
			if err := c.catchUp(ctx, newest); err != nil {
				return ScanResult{Receipt: res.Receipt}, err
			}
			continue
		}
		return res, err
	}
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

// coverage checks that every range has at least r of its replicas in have.
// It returns the least number of replicas any range has, and the ranges
// short of r.
func coverage(ranges []ring.Range, r int, have func(string) bool) (least int, short []ring.Range) {
	least = -1
	for _, g := range ranges {
		n := 0
		for _, id := range g.Replicas {
			if have(id) {
				n++
			}
		}
		if least < 0 || n < least {
			least = n
		}
		if n < r {
			short = append(short, g)
		}
	}
	return max(least, 0), short
}

// maxRangesNamed bounds the token ranges a scan error names.
const maxRangesNamed = 3

// describeGaps says which token ranges lack replicas, a few of them and how
// many in all, and why each missing replica is missing.
func describeGaps(short []ring.Range, total, r int, have func(string) bool, why func(string) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d token ranges have fewer than %d replicas answering", len(short), total, r)
	var missing []string
	for i, g := range short {
		var lack []string
		for _, id := range g.Replicas {
			if !have(id) {
				lack = append(lack, id)
				if !slices.Contains(missing, id) {
					missing = append(missing, id)
				}
			}
		}
		if i < maxRangesNamed {
			sep := ", "
			if i == 0 {
				sep = ": "
			}
			fmt.Fprintf(&b, "%s(%#016x, %#016x] on %s lacks %s", sep, g.After, g.Through, strings.Join(g.Replicas, ","), strings.Join(lack, ","))
		}
	}
	if len(short) > maxRangesNamed {
		fmt.Fprintf(&b, ", and %d more", len(short)-maxRangesNamed)
	}
	slices.Sort(missing)
	reasons := make([]string, len(missing))
	for i, id := range missing {
		reasons[i] = id + " (" + why(id) + ")"
	}
	fmt.Fprintf(&b, "; missing replicas: %s", strings.Join(reasons, ", "))
	return b.String()
}

// scanOnce runs one attempt of Scan; newest is the newest epoch a replica
// reported.
func (c *Coordinator) scanOnce(ctx context.Context, keyspace string, start, end []byte, limit int, cons Consistency) (ScanResult, uint64, error) {
	ks, err := c.keyspace(ctx, keyspace)
	if err != nil {
		return ScanResult{}, 0, err
	}
	if err := c.checkLease(ks, false); err != nil {
		return ScanResult{}, 0, err
	}
	pol, err := c.policy(ks, cons)
	if err != nil {
		return ScanResult{}, 0, err
	}
	rg := c.cfg.Topology.Ring()
	if rg.Len() < ks.N {
		return ScanResult{}, 0, fmt.Errorf("keyspace %q: %w: replication factor %d exceeds the cluster's %d nodes", keyspace, ErrInvalidRequest, ks.N, rg.Len())
	}
	rcpt := Receipt{Policy: pol, Epoch: ks.Epoch}
	ranges := c.tokenRanges(rg, ks.N)
	var nodes []string
	alive := map[string]bool{}
	for _, m := range rg.Members() {
		if c.cfg.Topology.Alive(m.ID) {
			nodes = append(nodes, m.ID)
			alive[m.ID] = true
		}
	}
	isAlive := func(id string) bool { return alive[id] }
	if least, short := coverage(ranges, pol.R, isAlive); len(short) > 0 {
		return ScanResult{Receipt: rcpt}, 0, &QuorumError{Op: "scan", Answered: least, Required: pol.R, Err: ErrNotEnoughReplicas,
			Detail: describeGaps(short, len(ranges), pol.R, isAlive, func(string) string { return "down" })}
	}
	type scanReply struct {
		id    string
		recs  []*kvpb.Record
		known uint64
		err   error
	}
	req := &kvpb.ReplicaScanRequest{Keyspace: keyspace, Epoch: ks.Epoch, Start: start, End: end, Limit: uint32(limit), From: c.cfg.NodeID}
	replies := make(chan scanReply, len(nodes))
	for _, id := range nodes {
		go func() {
			rctx, cancel := context.WithTimeout(ctx, c.cfg.ReplicaTimeout)
			defer cancel()
			resp, err := c.cfg.Transport.Scan(rctx, id, req)
			r := scanReply{id: id, recs: resp.GetRecords(), err: err}
			if err == nil && resp.GetKnownEpoch() > 0 {
				r.known = resp.GetKnownEpoch()
				r.err = &EpochError{Keyspace: keyspace, Requested: ks.Epoch, Known: r.known}
			}
			replies <- r
		}()
	}
	answered := map[string]bool{}
	failed := map[string]string{}
	var newest uint64
	merged := map[string]storage.Record{}
	// bound is the smallest last key among replicas that hit the limit:
	// beyond it some replica's records were cut off, so nothing past it can
	// be answered in this round.
	var bound []byte
	for range nodes {
		var r scanReply
		select {
		case r = <-replies:
		case <-ctx.Done():
			return ScanResult{Receipt: rcpt}, newest, fmt.Errorf("scan: %w", ctx.Err())
		}
		if r.err != nil {
			c.metrics.ReplicaErrors.Add(1)
			failed[r.id] = r.err.Error()
			newest = max(newest, r.known)
			continue
		}
		answered[r.id] = true
		var seen uint64
		for _, pr := range r.recs {
			rec := RecordFromPB(pr)
			seen = max(seen, rec.Version.Timestamp)
			if cur, ok := merged[string(rec.Key)]; !ok || cur.Version.Less(rec.Version) {
				merged[string(rec.Key)] = rec
			}
		}
		c.cfg.Clock.Observe(seen)
		if limit > 0 && len(r.recs) >= limit {
			last := r.recs[len(r.recs)-1].GetKey()
			if bound == nil || bytes.Compare(last, bound) < 0 {
				bound = last
			}
		}
	}
	if newest > ks.Epoch {
		c.noteEpoch(keyspace, newest)
	}
	hasAnswered := func(id string) bool { return answered[id] }
	least, short := coverage(ranges, pol.R, hasAnswered)
	if len(short) > 0 {
		why := func(id string) string {
			if e, ok := failed[id]; ok {
				return e
			}
			return "down"
		}
		return ScanResult{Receipt: rcpt}, newest, &QuorumError{Op: "scan", Answered: least, Required: pol.R, Err: ErrQuorumNotReached,
			Detail: describeGaps(short, len(ranges), pol.R, hasAnswered, why)}
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		if bound == nil || bytes.Compare([]byte(k), bound) <= 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	res := ScanResult{Receipt: rcpt}
	for _, k := range keys {
		rec := merged[k]
		if limit > 0 && len(res.Records) == limit {
			res.More = true
			break
		}
		if !rec.Tombstone {
			res.Records = append(res.Records, rec)
		}
	}
	if bound != nil {
		res.More = true
	}
	if res.More {
		var last []byte
		if len(res.Records) > 0 {
			last = res.Records[len(res.Records)-1].Key
		} else {
			last = bound
		}
		res.NextStart = append(append([]byte{}, last...), 0)
	}
	res.Acked = least
	if err := c.checkLease(ks, true); err != nil {
		return ScanResult{Receipt: rcpt}, newest, err
	}
	return res, newest, nil
}

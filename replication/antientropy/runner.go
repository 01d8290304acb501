package antientropy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/storage"
)

// Replicas carries a part's digests and writes to other replicas. The node
// implements it over gRPC, straight to the peer: repair writes are already
// batched by page, and must not queue behind (or hold up) client writes in
// the node's write batcher. Errors may be gRPC statuses; InvalidArgument,
// NotFound, Unimplemented, FailedPrecondition and PermissionDenied are not
// retried. Safe for concurrent use.
type Replicas interface {
	// Digest asks replica to which of the request's (key, version) pairs it
	// lacks or holds older (replication.Replica.Digest).
	Digest(ctx context.Context, to string, req *kvpb.ReplicaDigestRequest) (*kvpb.ReplicaDigestResponse, error)
	// Write applies records on replica to (replication.Replica.Write).
	Write(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error)
	// CompareTrees asks replica to which tree nodes hash differently there
	// (its Runner.CompareTrees).
	CompareTrees(ctx context.Context, to string, req *kvpb.CompareTreesRequest) (*kvpb.CompareTreesResponse, error)
}

// Nodes runs parts of a pass on other nodes. Safe for concurrent use.
type Nodes interface {
	// RunPart runs node id's part of a pass (its Runner.RunPart) and
	// returns its final stats, calling progress, on the caller's
	// goroutine, with the stats id reports meanwhile.
	RunPart(ctx context.Context, id, keyspace string, epoch uint64, opts Options, progress func(Stats)) (Stats, error)
}

// View is the cluster as gossip sees it at one moment.
type View struct {
	// Ring holds every member that has not left, alive or not.
	Ring *ring.Ring
	// Alive reports whether gossip considers a member alive.
	Alive func(id string) bool
}

// Topology gives a pass the cluster. Safe for concurrent use.
type Topology interface {
	// View returns the current ring and liveness, from one snapshot.
	View() View
}

// Keyspaces is the metadata a pass reads: this node's applied keyspace
// configurations (replication.Keyspaces), and a lookup that waits briefly
// for a keyspace this node has not applied yet
// (replication.Coordinator.WaitForKeyspace). Safe for concurrent use.
type Keyspaces interface {
	replication.Keyspaces
	WaitForKeyspace(ctx context.Context, name string) (replication.KeyspaceConfig, error)
}

// Runner runs passes, and parts of passes, on one node. Set its fields
// before the first call and never change them.
type Runner struct {
	// Self is this node's ID.
	Self string
	// Engine is this node's storage: its part walks the records there.
	Engine storage.Engine
	// Keyspaces is this node's metadata.
	Keyspaces Keyspaces
	// Topology is this node's view of the cluster.
	Topology Topology
	// Replicas carries this node's digests and writes.
	Replicas Replicas
	// Nodes runs the other nodes' parts of a pass that Run starts.
	Nodes Nodes
	// Trees keeps this node's index of a keyspace for the length of a
	// pass, shared by its own part and the comparisons it answers; nil
	// builds a fresh index every time (correct, but a scan per request).
	Trees *TreeCache
	// Ready, when not nil, is asked before this node runs its part; an
	// error refuses the part. The node refuses until it has joined the
	// cluster: its ring may lack members, and it would push to the wrong
	// replicas.
	Ready func() error
	// Logger receives the pass's logs; nil discards them.
	Logger *slog.Logger

	mu    sync.Mutex
	parts map[string]int // parts running on this node, by keyspace
}

// enter registers a part of keyspace name, refusing an exclusive one while
// another part of it runs here; the returned func ends it.
func (r *Runner) enter(name string, exclusive bool) (func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if exclusive && r.parts[name] > 0 {
		return nil, fmt.Errorf("node %s: %w (%q)", r.Self, ErrPassRunning, name)
	}
	if r.parts == nil {
		r.parts = map[string]int{}
	}
	r.parts[name]++
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.parts[name]--; r.parts[name] == 0 {
			delete(r.parts, name)
		}
	}, nil
}

func (r *Runner) log() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// Run runs a pass over keyspace name on every alive node and waits for it:
// see the package doc for what it guarantees. progress, when not nil, is
// called on the caller's goroutine (so never concurrently; it must not
// block for long) once as the pass starts, whenever a node reports
// progress, and as each node completes.
//
// It fails with an error that is a replication.ErrInvalidRequest for bad
// options, a replication.ErrKeyspaceNotFound for an unknown keyspace, an
// *IncompleteError when a ring member is down (without AllowDown) or a node
// could not complete its part, and one wrapping ctx's error when ctx ends.
// Only a nil error means the pass covered every node.
//
// The pass covers what the replicas held when it started. Writes that
// begin later go where the configuration in force sends them, so a caller
// that needs every write on every replica makes new writes safe first and
// then runs the pass: before lowering a quorum under a quorum floor
// (tuner.Step.RequiresRepair), run it once the joint step is applied on
// every live node; before N grows (RequiresStreaming), run it with
// ReplicationFactor set to the new N once writes reach the new replicas,
// and count those in read quorums only after it returned nil.
func (r *Runner) Run(ctx context.Context, name string, opts Options, progress func(Report)) (Report, error) {
	start := time.Now()
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return Report{}, err
	}
	ks, err := r.Keyspaces.WaitForKeyspace(ctx, name)
	if err != nil {
		return Report{}, err
	}
	v := r.Topology.View()
	rf := ks.N
	if opts.ReplicationFactor != 0 {
		if opts.ReplicationFactor < ks.N {
			return Report{}, invalidf("repair replication factor %d is below keyspace %q's %d: a pass fills at least every current replica", opts.ReplicationFactor, name, ks.N)
		}
		rf = opts.ReplicationFactor
	}
	if size := v.Ring.Len(); rf > size {
		return Report{}, invalidf("repair replication factor %d is larger than the cluster (%d nodes)", rf, size)
	}
	opts.ReplicationFactor = rf // every node fills the same number of replicas
	if opts.PassID == "" {
		opts.PassID = fmt.Sprintf("%s/%s/%d", r.Self, name, start.UnixNano())
	}
	rep := Report{Keyspace: name, Epoch: ks.Epoch, ReplicationFactor: rf, NodesDone: []string{}}
	for _, m := range v.Ring.Members() {
		if v.Alive(m.ID) {
			rep.Nodes = append(rep.Nodes, m.ID)
		} else {
			rep.Down = append(rep.Down, m.ID)
		}
	}
	slices.Sort(rep.Nodes)
	slices.Sort(rep.Down)
	if len(rep.Down) > 0 && !opts.AllowDown {
		return rep, &IncompleteError{Keyspace: name, Down: slices.Clone(rep.Down),
			msg: fmt.Sprintf("repair of keyspace %q not started: %s down, so %s replicas would not be repaired; run it when they are back, or allow down nodes (--allow-down) to repair the alive ones only",
				name, strings.Join(rep.Down, ", "), plural(len(rep.Down), "its", "their"))}
	}
	log := r.log().With("keyspace", name, "epoch", ks.Epoch)
	log.Info("repair pass started", "nodes", rep.Nodes, "down", rep.Down, "replication_factor", rf, "method", opts.Method, "push_all", opts.PushAll)
	if progress != nil {
		progress(rep)
	}

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type update struct {
		node  string
		stats Stats
		final bool
		err   error
	}
	updates := make(chan update, len(rep.Nodes))
	for _, id := range rep.Nodes {
		go func() {
			report := func(st Stats) {
				select {
				case updates <- update{node: id, stats: st}:
				case <-pctx.Done():
				}
			}
			var st Stats
			var err error
			if id == r.Self {
				st, err = r.RunPart(pctx, name, ks.Epoch, opts, report)
			} else {
				st, err = r.Nodes.RunPart(pctx, id, name, ks.Epoch, opts, report)
			}
			updates <- update{node: id, stats: st, final: true, err: err} // the collector reads every final
		}()
	}
	latest := map[string]Stats{}
	failed := map[string]error{}
	for finals := 0; finals < len(rep.Nodes); {
		u := <-updates
		latest[u.node] = u.stats
		if u.final {
			finals++
			if u.err != nil {
				failed[u.node] = u.err
				cancel() // the pass cannot complete: stop the others
			} else {
				rep.NodesDone = append(rep.NodesDone, u.node)
				slices.Sort(rep.NodesDone)
			}
		}
		rep.Stats = Stats{}
		for _, id := range rep.Nodes {
			rep.Stats.add(latest[id])
		}
		rep.Stats.Elapsed = time.Since(start)
		if progress != nil && len(failed) == 0 {
			progress(rep)
		}
	}
	if len(failed) > 0 {
		err := failure(ctx, name, failed)
		log.Warn("repair pass failed", "err", err, "nodes_done", rep.NodesDone)
		return rep, err
	}
	rep.Done = true
	log.Info("repair pass completed", "keys_scanned", rep.Stats.KeysScanned, "ranges_compared", rep.Stats.RangesCompared,
		"ranges_differing", rep.Stats.RangesDiffering, "digests_sent", rep.Stats.DigestsSent, "bytes_sent", rep.Stats.BytesSent,
		"records_pushed", rep.Stats.RecordsPushed, "bytes_pushed", rep.Stats.BytesPushed,
		"repaired_nodes", rep.Stats.RepairedNodes, "elapsed", rep.Stats.Elapsed)
	return rep, nil
}

// failure builds the error of a pass that some nodes could not complete.
// Nodes that failed only because the pass was stopped after another node's
// failure are not blamed.
func failure(ctx context.Context, name string, failed map[string]error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("repair of keyspace %q stopped before it completed: %w", name, err)
	}
	var ids []string
	for id, err := range failed {
		if !isCanceled(err) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 { // only cancellations: name them all
		for id := range failed {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("node %s could not complete its part: %v", id, errText(failed[id])))
	}
	return &IncompleteError{Keyspace: name, Failed: ids,
		msg: fmt.Sprintf("repair of keyspace %q incomplete: %s; the other nodes were stopped, and running the pass again is safe", name, strings.Join(parts, "; "))}
}

func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled
}

// errText is an error's message without gRPC's "rpc error: code = ... desc
// =" wrapping, which would repeat in a message that nests them.
func errText(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// textError wraps an error, for errors.Is and errors.As, while its message
// uses the wrapped error's errText.
type textError struct {
	prefix string
	err    error
}

func (e *textError) Error() string { return e.prefix + ": " + errText(e.err) }
func (e *textError) Unwrap() error { return e.err }

func wrapText(prefix string, err error) error { return &textError{prefix: prefix, err: err} }

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// counters are one node's counters during its part of a pass, updated by
// the goroutines that work with each replica.
type counters struct {
	keys, tombstones, digests, pushed, bytes     atomic.Uint64
	ranges, rangesDiff, leavesDiff, hashes, sent atomic.Uint64
	limit                                        *limiter

	mu       sync.Mutex
	repaired map[string]bool
}

func (c *counters) markRepaired(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.repaired == nil {
		c.repaired = map[string]bool{}
	}
	c.repaired[id] = true
}

func (c *counters) stats(start time.Time) Stats {
	s := Stats{
		KeysScanned: c.keys.Load(), TombstonesScanned: c.tombstones.Load(), DigestsSent: c.digests.Load(),
		RecordsPushed: c.pushed.Load(), BytesPushed: c.bytes.Load(), Elapsed: time.Since(start),
		RangesCompared: c.ranges.Load(), RangesDiffering: c.rangesDiff.Load(), LeavesDiffering: c.leavesDiff.Load(),
		HashesSent: c.hashes.Load(), BytesSent: c.sent.Load(),
	}
	c.mu.Lock()
	for id := range c.repaired {
		s.RepairedNodes = append(s.RepairedNodes, id)
	}
	c.mu.Unlock()
	slices.Sort(s.RepairedNodes)
	return s
}

// RunPart runs this node's part of a pass: it walks its own records of
// keyspace name and brings the other replicas of each up to date. epoch is
// the configuration the pass started under; this node first waits until it
// has applied it. progress, when not nil, is called after every page, on
// this goroutine.
func (r *Runner) RunPart(ctx context.Context, name string, epoch uint64, opts Options, progress func(Stats)) (Stats, error) {
	start := time.Now()
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return Stats{}, err
	}
	if r.Ready != nil {
		if err := r.Ready(); err != nil {
			return Stats{}, err
		}
	}
	leave, err := r.enter(name, opts.Exclusive)
	if err != nil {
		return Stats{}, err
	}
	defer leave()
	if err := r.waitEpoch(ctx, epoch); err != nil {
		return Stats{}, err
	}
	ks, ok := r.Keyspaces.Keyspace(name)
	if !ok {
		return Stats{}, fmt.Errorf("keyspace %q: %w", name, replication.ErrKeyspaceNotFound)
	}
	c := counters{limit: newLimiter(opts.RateLimit)}
	if opts.Method == MethodMerkle && !opts.PushAll {
		for attempt := 1; ; attempt++ {
			err := r.merklePart(ctx, ks, opts, &c, start, progress)
			var ee *replication.EpochError
			if errors.As(err, &ee) && attempt < epochAttempts {
				// The configuration moved on: catch up and compare again
				// under the new one.
				if err := r.waitEpoch(ctx, ee.Known); err != nil {
					return c.stats(start), err
				}
				if ks, ok = r.Keyspaces.Keyspace(name); !ok {
					return c.stats(start), fmt.Errorf("keyspace %q: %w", name, replication.ErrKeyspaceNotFound)
				}
				continue
			}
			return c.stats(start), err
		}
	}
	var cursor []byte
	for {
		if err := ctx.Err(); err != nil {
			return c.stats(start), err
		}
		recs, err := r.Engine.Scan(name, cursor, nil, opts.PageSize)
		if err != nil {
			return c.stats(start), fmt.Errorf("read local records: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		for attempt := 1; ; attempt++ {
			err := r.page(ctx, ks, recs, opts, &c)
			var ee *replication.EpochError
			if errors.As(err, &ee) && attempt < epochAttempts {
				// The configuration moved on while the pass ran: catch up and
				// redo the page under the new one (N, and so the replicas,
				// may have changed).
				if err := r.waitEpoch(ctx, ee.Known); err != nil {
					return c.stats(start), err
				}
				if ks, ok = r.Keyspaces.Keyspace(name); !ok {
					return c.stats(start), fmt.Errorf("keyspace %q: %w", name, replication.ErrKeyspaceNotFound)
				}
				continue
			}
			if err != nil {
				return c.stats(start), err
			}
			break
		}
		c.keys.Add(uint64(len(recs)))
		for i := range recs {
			if recs[i].Tombstone {
				c.tombstones.Add(1)
			}
		}
		if progress != nil {
			progress(c.stats(start))
		}
		if len(recs) < opts.PageSize {
			break
		}
		last := recs[len(recs)-1].Key
		cursor = append(append(make([]byte, 0, len(last)+1), last...), 0)
	}
	return c.stats(start), nil
}

// waitEpoch waits, briefly, until this node has applied the metadata log up
// to epoch.
func (r *Runner) waitEpoch(ctx context.Context, epoch uint64) error {
	if r.Keyspaces.Applied() >= epoch {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.Keyspaces.WaitForIndex(wctx, epoch); err != nil {
		return fmt.Errorf("node %s has not applied configuration epoch %d: %w", r.Self, epoch, err)
	}
	return nil
}

// page brings the other replicas of a page's records up to date, working
// with up to opts.Concurrency replicas at once.
func (r *Runner) page(ctx context.Context, ks replication.KeyspaceConfig, recs []storage.Record, opts Options, c *counters) error {
	v := r.Topology.View()
	rf := max(ks.N, opts.ReplicationFactor)
	if v.Ring.Len() < rf {
		return fmt.Errorf("%w: the ring has %d members, fewer than the %d replicas to fill", replication.ErrInvalidRequest, v.Ring.Len(), rf)
	}
	batches := replication.PlanRepair(ks.Name, recs, v.Ring, rf, r.Self)
	work := batches[:0]
	for _, b := range batches {
		if v.Alive(b.Target) {
			work = append(work, b)
			continue
		}
		if !opts.AllowDown {
			return fmt.Errorf("replica %s is down, so it cannot be repaired", b.Target)
		}
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, opts.Concurrency)
	errs := make(chan error, len(work))
	var wg sync.WaitGroup
	for _, b := range work {
		select {
		case sem <- struct{}{}:
		case <-pctx.Done():
		}
		if pctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := r.target(pctx, ks, recs, b, opts.PushAll, c); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	var first error
	for err := range errs {
		var ee *replication.EpochError
		if errors.As(err, &ee) {
			return err // redo the page under the newer configuration
		}
		if first == nil || isCanceled(first) {
			first = err
		}
	}
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// target compares a page's records with one replica and writes it the
// ones it lacks.
func (r *Runner) target(ctx context.Context, ks replication.KeyspaceConfig, recs []storage.Record, b replication.RepairBatch, pushAll bool, c *counters) error {
	idx := b.Records
	if !pushAll {
		req := &kvpb.ReplicaDigestRequest{Keyspace: ks.Name, Epoch: ks.Epoch, From: r.Self, Entries: make([]*kvpb.DigestEntry, len(idx))}
		for i, j := range idx {
			req.Entries[i] = &kvpb.DigestEntry{Key: recs[j].Key, Version: replication.VersionToPB(recs[j].Version)}
		}
		if err := c.limit.wait(ctx, proto.Size(req)); err != nil {
			return err
		}
		var resp *kvpb.ReplicaDigestResponse
		err := retry(ctx, func(ctx context.Context) (err error) {
			resp, err = r.Replicas.Digest(ctx, b.Target, req)
			return err
		})
		if err != nil {
			return wrapText(fmt.Sprintf("compare with replica %s", b.Target), err)
		}
		if k := resp.GetKnownEpoch(); k > 0 {
			return &replication.EpochError{Keyspace: ks.Name, Requested: ks.Epoch, Known: k}
		}
		c.digests.Add(uint64(len(idx)))
		c.sent.Add(uint64(proto.Size(req) + proto.Size(resp)))
		behind := make([]int, 0, len(resp.GetBehind()))
		for _, i := range resp.GetBehind() {
			if int(i) >= len(idx) {
				return fmt.Errorf("replica %s answered a digest of %d entries with index %d", b.Target, len(idx), i)
			}
			behind = append(behind, idx[i])
		}
		idx = behind
	}
	for _, chunk := range replication.ChunkRecords(recs, idx, pushRecords, pushBytes) {
		req := &kvpb.ReplicaWriteRequest{From: r.Self, Mutations: make([]*kvpb.Mutation, len(chunk))}
		size := 0
		for i, j := range chunk {
			req.Mutations[i] = &kvpb.Mutation{Keyspace: ks.Name, Epoch: ks.Epoch, Record: replication.RecordToPB(recs[j])}
			size += replication.RecordSize(recs[j])
		}
		if err := c.limit.wait(ctx, proto.Size(req)); err != nil {
			return err
		}
		var resp *kvpb.ReplicaWriteResponse
		err := retry(ctx, func(ctx context.Context) (err error) {
			resp, err = r.Replicas.Write(ctx, b.Target, req)
			return err
		})
		if err != nil {
			return wrapText(fmt.Sprintf("write to replica %s", b.Target), err)
		}
		if len(resp.GetResults()) != len(chunk) {
			return fmt.Errorf("replica %s answered %d results for %d records", b.Target, len(resp.GetResults()), len(chunk))
		}
		for _, res := range resp.GetResults() {
			if k := res.GetKnownEpoch(); k > 0 {
				return &replication.EpochError{Keyspace: ks.Name, Requested: ks.Epoch, Known: k}
			}
			if !res.GetOk() {
				return fmt.Errorf("replica %s refused a repair write: %s", b.Target, res.GetError())
			}
		}
		c.sent.Add(uint64(proto.Size(req) + proto.Size(resp)))
		c.pushed.Add(uint64(len(chunk)))
		c.bytes.Add(uint64(size))
		c.markRepaired(b.Target)
	}
	return nil
}

// limiter paces a part's sends to a rate in bytes per second: each send
// is scheduled after the previous ones have had their share of time. No
// burst: a part is long-running, and an even pace is what the rate means.
// A nil *limiter does not limit. Safe for concurrent use.
type limiter struct {
	rate float64 // bytes per second

	mu   sync.Mutex
	next time.Time // when the next send may start
}

func newLimiter(bytesPerSecond int64) *limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	return &limiter{rate: float64(bytesPerSecond)}
}

// wait blocks until n more bytes may be sent, or ctx ends.
func (l *limiter) wait(ctx context.Context, n int) error {
	if l == nil {
		return ctx.Err()
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	l.mu.Unlock()
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retry runs call up to attempts times, each bounded by rpcTimeout, backing
// off between attempts, until it succeeds or ctx ends. Errors that another
// attempt cannot cure are returned at once.
func retry(ctx context.Context, call func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		err := call(cctx)
		cancel()
		if err == nil || ctx.Err() != nil || attempt == attempts {
			return err
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.NotFound, codes.Unimplemented, codes.FailedPrecondition, codes.PermissionDenied:
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		backoff *= 2
	}
}

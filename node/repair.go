package node

// Anti-entropy repair of a keyspace.
//
// # What a pass guarantees
//
// When RepairKeyspace returns without error, every replica of every key that
// was alive throughout the pass holds at least the newest version of the
// key that any of those replicas held when the pass started, tombstones
// included. "Replica" means the first N members of the key's preference
// list on the current ring, N being the keyspace's replication factor or
// the larger RepairOptions.ReplicationFactor (which streams data to the
// replicas a larger N would add, before N is raised).
//
// # How
//
// The node that receives the call fans the pass out to every alive ring
// member (Peer.Repair) and runs its own part locally. Each node walks its
// own records of the keyspace in key order, a page at a time (tombstones
// included), and for each page:
//
//  1. works out which other replicas should hold each record
//     (replication.PlanRepair on its current ring);
//  2. sends each of them the page's (key, version) pairs for that replica
//     (Peer.Digest) and learns which it lacks or holds older;
//  3. writes just those records to it (Peer.Write, the replica's ordinary
//     last-writer-wins apply under the epoch check), in chunks bounded by
//     count and bytes.
//
// Digests first, because a pass usually finds little to fix: a digest entry
// is the key and 12 bytes of version, a push carries the value too. With
// RepairOptions.PushAll the digest step is skipped and every record is
// pushed to every other replica; that mode is kept to measure the
// difference (see BenchmarkRepair in repair_test.go).
//
// Last writer wins makes every step idempotent: a record pushed twice (two
// nodes held it) or overtaken by a newer write is harmless, and a pass that
// failed half way can simply be run again.
//
// # Bounds
//
// Memory: one page of records per node (PageSize records; values are up to
// the node's value limit, so a page of 256 can reach 256 MiB in the worst
// case of 1 MiB values) plus the digests of that page. Concurrency: each
// node talks to at most Concurrency replicas at once; pages are sequential.
// Cancelling the caller's context stops every node's part.
//
// # Failures
//
// A pass is all or nothing to its caller: when a node cannot run or finish
// its part, or a replica cannot be compared with or written to after a few
// attempts, the other nodes are stopped and the call fails with a status
// (Unavailable, reason REPAIR_INCOMPLETE) naming the node and the cause. A
// ring member that gossip reports down fails the pass before it starts,
// unless AllowDown is set: its replicas would not be repaired.
//
// Tombstones are collected after the node's tombstone grace period; a pass
// must complete within that period after a delete, or a replica that
// missed the delete can bring the value back (as in Cassandra, whose
// gc_grace_seconds has the same rule).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptkv/adaptkv/api"
	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/storage"
)

// Repair defaults and bounds.
const (
	// DefaultRepairPageSize is how many local records a node reads per page.
	// Why not smaller? Each page costs one digest round trip per replica.
	// Why not larger? A page is held in memory with its values.
	DefaultRepairPageSize = 256
	// MaxRepairPageSize bounds RepairOptions.PageSize.
	MaxRepairPageSize = 10000
	// DefaultRepairConcurrency is how many replicas one node compares with
	// and writes to at once.
	DefaultRepairConcurrency = 4
	// MaxRepairConcurrency bounds RepairOptions.Concurrency.
	MaxRepairConcurrency = 64
	// DefaultRepairProgressInterval is the least time between two progress
	// messages on the gRPC streams.
	DefaultRepairProgressInterval = time.Second

	// repairPushRecords and repairPushBytes bound one replica write of a
	// pass: within the peer's 4 MiB message limit, one group commit each.
	repairPushRecords = maxBatchMutations
	repairPushBytes   = 2 << 20
	// repairRPCTimeout bounds one digest or write of a pass: generous,
	// since a write may carry megabytes and wait on an fsync.
	repairRPCTimeout = 30 * time.Second
	// repairAttempts is how often a failed digest or write to a replica is
	// tried before the node gives up its part of the pass.
	repairAttempts = 3
	// repairEpochAttempts is how often a page is redone after a replica
	// reported a newer configuration epoch.
	repairEpochAttempts = 3
)

// RepairOptions tune a repair pass. The zero value takes every default.
type RepairOptions struct {
	// PageSize is the number of local records a node reads at once;
	// 0 means DefaultRepairPageSize.
	PageSize int
	// Concurrency is the number of replicas a node works with at once;
	// 0 means DefaultRepairConcurrency.
	Concurrency int
	// ReplicationFactor, when larger than the keyspace's N, makes the pass
	// fill the first ReplicationFactor members of each key's preference
	// list: the streaming step before N is raised. 0 means N; a value
	// below N is refused.
	ReplicationFactor int
	// AllowDown runs the pass over the alive nodes when some ring members
	// are down, instead of refusing. The down members are reported in
	// RepairReport.Down and are not repaired.
	AllowDown bool
	// PushAll skips the digest comparison and pushes every record to every
	// other replica. More traffic; kept to measure what digests save.
	PushAll bool
	// ProgressInterval is the least time between progress messages on the
	// gRPC streams (the progress callback of RepairKeyspace is not
	// throttled); 0 means DefaultRepairProgressInterval.
	ProgressInterval time.Duration
}

func (o RepairOptions) withDefaults() RepairOptions {
	if o.PageSize == 0 {
		o.PageSize = DefaultRepairPageSize
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultRepairConcurrency
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = DefaultRepairProgressInterval
	}
	return o
}

func (o RepairOptions) validate() error {
	switch {
	case o.PageSize < 1 || o.PageSize > MaxRepairPageSize:
		return invalidArgument(fmt.Sprintf("repair page size %d: want 1 to %d", o.PageSize, MaxRepairPageSize))
	case o.Concurrency < 1 || o.Concurrency > MaxRepairConcurrency:
		return invalidArgument(fmt.Sprintf("repair concurrency %d: want 1 to %d", o.Concurrency, MaxRepairConcurrency))
	case o.ReplicationFactor < 0:
		return invalidArgument(fmt.Sprintf("repair replication factor %d: must not be negative", o.ReplicationFactor))
	case o.ProgressInterval < 0:
		return invalidArgument(fmt.Sprintf("repair progress interval %v: must not be negative", o.ProgressInterval))
	}
	return nil
}

func repairOptionsFromPB(o *kvpb.RepairOptions) RepairOptions {
	return RepairOptions{
		PageSize: int(o.GetPageSize()), Concurrency: int(o.GetConcurrency()),
		ReplicationFactor: int(o.GetReplicationFactor()), AllowDown: o.GetAllowDown(), PushAll: o.GetPushAll(),
		ProgressInterval: time.Duration(o.GetProgressIntervalMs()) * time.Millisecond,
	}
}

func (o RepairOptions) toPB() *kvpb.RepairOptions {
	return &kvpb.RepairOptions{
		PageSize: uint32(o.PageSize), Concurrency: uint32(o.Concurrency),
		ReplicationFactor: uint32(o.ReplicationFactor), AllowDown: o.AllowDown, PushAll: o.PushAll,
		ProgressIntervalMs: uint32(o.ProgressInterval / time.Millisecond),
	}
}

// RepairStats count a repair pass's work, on one node or summed over nodes.
type RepairStats struct {
	// KeysScanned is the number of local records walked, tombstones
	// included. Summed over nodes, a key counts once per node holding it.
	KeysScanned uint64
	// TombstonesScanned is how many of them were tombstones.
	TombstonesScanned uint64
	// DigestsSent is the number of (key, version) pairs compared with
	// another replica.
	DigestsSent uint64
	// RecordsPushed is the number of records written to a replica that
	// lacked them (with PushAll: every record to every other replica).
	RecordsPushed uint64
	// BytesPushed is the keys and values of the pushed records.
	BytesPushed uint64
	// RepairedNodes are the replicas that were sent at least one record,
	// sorted.
	RepairedNodes []string
	// Elapsed is the time the pass (or the node's part) has run.
	Elapsed time.Duration
}

// add sums o into s; RepairedNodes become the sorted union.
func (s *RepairStats) add(o RepairStats) {
	s.KeysScanned += o.KeysScanned
	s.TombstonesScanned += o.TombstonesScanned
	s.DigestsSent += o.DigestsSent
	s.RecordsPushed += o.RecordsPushed
	s.BytesPushed += o.BytesPushed
	for _, id := range o.RepairedNodes {
		if i, found := slices.BinarySearch(s.RepairedNodes, id); !found {
			s.RepairedNodes = slices.Insert(s.RepairedNodes, i, id)
		}
	}
}

func (s RepairStats) toPB() *kvpb.RepairStats {
	return &kvpb.RepairStats{
		KeysScanned: s.KeysScanned, TombstonesScanned: s.TombstonesScanned, DigestsSent: s.DigestsSent,
		RecordsPushed: s.RecordsPushed, BytesPushed: s.BytesPushed, RepairedNodes: s.RepairedNodes,
		ElapsedMs: uint64(s.Elapsed / time.Millisecond),
	}
}

func repairStatsFromPB(p *kvpb.RepairStats) RepairStats {
	return RepairStats{
		KeysScanned: p.GetKeysScanned(), TombstonesScanned: p.GetTombstonesScanned(), DigestsSent: p.GetDigestsSent(),
		RecordsPushed: p.GetRecordsPushed(), BytesPushed: p.GetBytesPushed(), RepairedNodes: slices.Clone(p.GetRepairedNodes()),
		Elapsed: time.Duration(p.GetElapsedMs()) * time.Millisecond,
	}
}

// RepairReport is the state of a repair pass: passed to the progress
// callback while it runs, and returned, with Done set, when it completed.
type RepairReport struct {
	Keyspace string
	// Epoch is the keyspace configuration the pass started under.
	Epoch uint64
	// ReplicationFactor is the number of replicas of each key the pass
	// filled.
	ReplicationFactor int
	// Nodes are the nodes running the pass; NodesDone those that completed
	// their part. Both sorted.
	Nodes, NodesDone []string
	// Down are ring members that were not alive and were skipped
	// (RepairOptions.AllowDown only).
	Down []string
	// Stats are summed over the nodes so far.
	Stats RepairStats
	// Done is set when every node completed its part.
	Done bool
}

func (r RepairReport) toPB() *kvpb.RepairKeyspaceResponse {
	return &kvpb.RepairKeyspaceResponse{
		Stats: r.Stats.toPB(), Nodes: r.Nodes, NodesDone: r.NodesDone, Down: r.Down,
		Epoch: r.Epoch, ReplicationFactor: uint32(r.ReplicationFactor), Done: r.Done,
	}
}

// RepairKeyspace runs an anti-entropy pass over keyspace name on every
// alive node and waits for it: see the comment at the top of this file for
// what it guarantees. progress, when not nil, is called on the caller's
// goroutine (so never concurrently; it must not block for long) once as the
// pass starts, whenever a node reports progress, and as each node
// completes.
//
// It fails with a gRPC status: InvalidArgument for a bad name or options,
// NotFound for an unknown keyspace, Unavailable with reason
// REPAIR_INCOMPLETE when a ring member is down (without AllowDown) or a
// node could not complete its part, and Canceled or DeadlineExceeded when
// ctx ends. Only a nil error means the pass covered every node.
//
// The pass covers what the replicas held when it started. Writes that
// begin later go where the configuration in force sends them, so a caller
// that needs every write on every replica makes new writes safe first and
// then runs the pass: before lowering a quorum under a quorum floor
// (tuner.Step.RequiresRepair), run it once the joint step is applied on
// every live node; before N grows (RequiresStreaming), run it with
// ReplicationFactor set to the new N once writes reach the new replicas,
// and count those in read quorums only after it returned nil.
func (n *Node) RepairKeyspace(ctx context.Context, name string, opts RepairOptions, progress func(RepairReport)) (RepairReport, error) {
	start := time.Now()
	if err := validKeyspaceName(name); err != nil {
		return RepairReport{}, err
	}
	if err := n.checkJoined(); err != nil {
		return RepairReport{}, err
	}
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return RepairReport{}, err
	}
	ks, err := n.coord.WaitForKeyspace(ctx, name)
	if err != nil {
		return RepairReport{}, toStatus(err)
	}
	v := n.members.View()
	rf := ks.N
	if opts.ReplicationFactor != 0 {
		if opts.ReplicationFactor < ks.N {
			return RepairReport{}, invalidArgument(fmt.Sprintf("repair replication factor %d is below keyspace %q's %d: a pass fills at least every current replica", opts.ReplicationFactor, name, ks.N))
		}
		rf = opts.ReplicationFactor
	}
	if size := v.Ring.Len(); rf > size {
		return RepairReport{}, invalidArgument(fmt.Sprintf("repair replication factor %d is larger than the cluster (%d nodes)", rf, size))
	}
	opts.ReplicationFactor = rf // every node fills the same number of replicas
	rep := RepairReport{Keyspace: name, Epoch: ks.Epoch, ReplicationFactor: rf, NodesDone: []string{}}
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
		return rep, withReason(codes.Unavailable, api.ReasonRepairIncomplete,
			fmt.Sprintf("repair of keyspace %q not started: %s down, so %s replicas would not be repaired; run it when they are back, or allow down nodes (--allow-down) to repair the alive ones only",
				name, strings.Join(rep.Down, ", "), plural(len(rep.Down), "its", "their")),
			map[string]string{"down": strings.Join(rep.Down, ",")})
	}
	log := n.log.With("keyspace", name, "epoch", ks.Epoch)
	log.Info("repair pass started", "nodes", rep.Nodes, "down", rep.Down, "replication_factor", rf, "push_all", opts.PushAll)
	if progress != nil {
		progress(rep)
	}

	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type update struct {
		node  string
		stats RepairStats
		final bool
		err   error
	}
	updates := make(chan update, len(rep.Nodes))
	for _, id := range rep.Nodes {
		go func() {
			report := func(st RepairStats) {
				select {
				case updates <- update{node: id, stats: st}:
				case <-pctx.Done():
				}
			}
			var st RepairStats
			var err error
			if id == n.cfg.ID {
				st, err = n.repairLocal(pctx, name, ks.Epoch, opts, report)
			} else {
				st, err = n.repairRemote(pctx, id, name, ks.Epoch, opts, report)
			}
			updates <- update{node: id, stats: st, final: true, err: err} // the collector reads every final
		}()
	}
	latest := map[string]RepairStats{}
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
		rep.Stats = RepairStats{}
		for _, id := range rep.Nodes {
			rep.Stats.add(latest[id])
		}
		rep.Stats.Elapsed = time.Since(start)
		if progress != nil && len(failed) == 0 {
			progress(rep)
		}
	}
	if len(failed) > 0 {
		err := repairFailure(ctx, name, failed)
		log.Warn("repair pass failed", "err", err, "nodes_done", rep.NodesDone)
		return rep, err
	}
	rep.Done = true
	log.Info("repair pass completed", "keys_scanned", rep.Stats.KeysScanned, "digests_sent", rep.Stats.DigestsSent,
		"records_pushed", rep.Stats.RecordsPushed, "bytes_pushed", rep.Stats.BytesPushed,
		"repaired_nodes", rep.Stats.RepairedNodes, "elapsed", rep.Stats.Elapsed)
	return rep, nil
}

// repairFailure builds the status of a pass that some nodes could not
// complete. Nodes that failed only because the pass was stopped after
// another node's failure are not blamed.
func repairFailure(ctx context.Context, name string, failed map[string]error) error {
	if err := ctx.Err(); err != nil {
		return toStatus(fmt.Errorf("repair of keyspace %q stopped before it completed: %w", name, err))
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
	return withReason(codes.Unavailable, api.ReasonRepairIncomplete,
		fmt.Sprintf("repair of keyspace %q incomplete: %s; the other nodes were stopped, and running the pass again is safe", name, strings.Join(parts, "; ")),
		map[string]string{"nodes": strings.Join(ids, ",")})
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

// repairRemote runs node id's part of a pass through Peer.Repair and
// relays its progress.
func (n *Node) repairRemote(ctx context.Context, id, name string, epoch uint64, opts RepairOptions, progress func(RepairStats)) (RepairStats, error) {
	stream, err := n.transport.repairStream(ctx, id, &kvpb.ReplicaRepairRequest{Keyspace: name, Epoch: epoch, Options: opts.toPB(), From: n.cfg.ID})
	if err != nil {
		return RepairStats{}, err
	}
	var last RepairStats
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return last, fmt.Errorf("node %s ended its stream before completing", id)
		}
		if err != nil {
			return last, err
		}
		last = repairStatsFromPB(resp.GetStats())
		if resp.GetDone() {
			return last, nil
		}
		progress(last)
	}
}

// repairCounters are one node's counters during its part of a pass,
// updated by the goroutines that work with each replica.
type repairCounters struct {
	keys, tombstones, digests, pushed, bytes atomic.Uint64

	mu       sync.Mutex
	repaired map[string]bool
}

func (c *repairCounters) markRepaired(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.repaired == nil {
		c.repaired = map[string]bool{}
	}
	c.repaired[id] = true
}

func (c *repairCounters) stats(start time.Time) RepairStats {
	s := RepairStats{
		KeysScanned: c.keys.Load(), TombstonesScanned: c.tombstones.Load(), DigestsSent: c.digests.Load(),
		RecordsPushed: c.pushed.Load(), BytesPushed: c.bytes.Load(), Elapsed: time.Since(start),
	}
	c.mu.Lock()
	for id := range c.repaired {
		s.RepairedNodes = append(s.RepairedNodes, id)
	}
	c.mu.Unlock()
	slices.Sort(s.RepairedNodes)
	return s
}

// repairLocal runs this node's part of a pass: it walks its own records of
// keyspace name and brings the other replicas of each up to date. epoch is
// the configuration the pass started under; this node first waits until it
// has applied it. progress is called after every page, on this goroutine.
func (n *Node) repairLocal(ctx context.Context, name string, epoch uint64, opts RepairOptions, progress func(RepairStats)) (RepairStats, error) {
	start := time.Now()
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return RepairStats{}, err
	}
	if !n.joined.Load() {
		// Its ring may lack members: it would push to the wrong replicas.
		return RepairStats{}, fmt.Errorf("node %s has not joined the cluster yet", n.cfg.ID)
	}
	if err := n.waitEpoch(ctx, epoch); err != nil {
		return RepairStats{}, err
	}
	ks, ok := n.meta.Keyspace(name)
	if !ok {
		return RepairStats{}, fmt.Errorf("keyspace %q: %w", name, replication.ErrKeyspaceNotFound)
	}
	var c repairCounters
	var cursor []byte
	for {
		if err := ctx.Err(); err != nil {
			return c.stats(start), err
		}
		recs, err := n.engine.Scan(name, cursor, nil, opts.PageSize)
		if err != nil {
			return c.stats(start), fmt.Errorf("read local records: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		for attempt := 1; ; attempt++ {
			err := n.repairPage(ctx, ks, recs, opts, &c)
			var ee *replication.EpochError
			if errors.As(err, &ee) && attempt < repairEpochAttempts {
				// The configuration moved on while the pass ran: catch up and
				// redo the page under the new one (N, and so the replicas,
				// may have changed).
				if err := n.waitEpoch(ctx, ee.Known); err != nil {
					return c.stats(start), err
				}
				if ks, ok = n.meta.Keyspace(name); !ok {
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
func (n *Node) waitEpoch(ctx context.Context, epoch uint64) error {
	if n.meta.Applied() >= epoch {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := n.meta.WaitForIndex(wctx, epoch); err != nil {
		return fmt.Errorf("node %s has not applied configuration epoch %d: %w", n.cfg.ID, epoch, err)
	}
	return nil
}

// repairPage brings the other replicas of a page's records up to date,
// working with up to opts.Concurrency replicas at once.
func (n *Node) repairPage(ctx context.Context, ks replication.KeyspaceConfig, recs []storage.Record, opts RepairOptions, c *repairCounters) error {
	v := n.members.View()
	rf := max(ks.N, opts.ReplicationFactor)
	if v.Ring.Len() < rf {
		return fmt.Errorf("%w: the ring has %d members, fewer than the %d replicas to fill", replication.ErrInvalidRequest, v.Ring.Len(), rf)
	}
	batches := replication.PlanRepair(ks.Name, recs, v.Ring, rf, n.cfg.ID)
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
			if err := n.repairTarget(pctx, ks, recs, b, opts.PushAll, c); err != nil {
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

// repairTarget compares a page's records with one replica and writes it
// the ones it lacks.
func (n *Node) repairTarget(ctx context.Context, ks replication.KeyspaceConfig, recs []storage.Record, b replication.RepairBatch, pushAll bool, c *repairCounters) error {
	idx := b.Records
	if !pushAll {
		req := &kvpb.ReplicaDigestRequest{Keyspace: ks.Name, Epoch: ks.Epoch, From: n.cfg.ID, Entries: make([]*kvpb.DigestEntry, len(idx))}
		for i, j := range idx {
			req.Entries[i] = &kvpb.DigestEntry{Key: recs[j].Key, Version: replication.VersionToPB(recs[j].Version)}
		}
		var resp *kvpb.ReplicaDigestResponse
		err := retry(ctx, func(ctx context.Context) (err error) {
			resp, err = n.transport.digest(ctx, b.Target, req)
			return err
		})
		if err != nil {
			return wrapText(fmt.Sprintf("compare with replica %s", b.Target), err)
		}
		if k := resp.GetKnownEpoch(); k > 0 {
			return &replication.EpochError{Keyspace: ks.Name, Requested: ks.Epoch, Known: k}
		}
		c.digests.Add(uint64(len(idx)))
		behind := make([]int, 0, len(resp.GetBehind()))
		for _, i := range resp.GetBehind() {
			if int(i) >= len(idx) {
				return fmt.Errorf("replica %s answered a digest of %d entries with index %d", b.Target, len(idx), i)
			}
			behind = append(behind, idx[i])
		}
		idx = behind
	}
	for _, chunk := range replication.ChunkRecords(recs, idx, repairPushRecords, repairPushBytes) {
		req := &kvpb.ReplicaWriteRequest{From: n.cfg.ID, Mutations: make([]*kvpb.Mutation, len(chunk))}
		size := 0
		for i, j := range chunk {
			req.Mutations[i] = &kvpb.Mutation{Keyspace: ks.Name, Epoch: ks.Epoch, Record: replication.RecordToPB(recs[j])}
			size += replication.RecordSize(recs[j])
		}
		var resp *kvpb.ReplicaWriteResponse
		err := retry(ctx, func(ctx context.Context) (err error) {
			resp, err = n.transport.repairWrite(ctx, b.Target, req)
			return err
		})
		if err != nil {
			return wrapText(fmt.Sprintf("write to replica %s", b.Target), err)
		}
		if len(resp.GetResults()) != len(chunk) {
			return fmt.Errorf("replica %s answered %d results for %d records", b.Target, len(resp.GetResults()), len(chunk))
		}
		for _, r := range resp.GetResults() {
			if k := r.GetKnownEpoch(); k > 0 {
				return &replication.EpochError{Keyspace: ks.Name, Requested: ks.Epoch, Known: k}
			}
			if !r.GetOk() {
				return fmt.Errorf("replica %s refused a repair write: %s", b.Target, r.GetError())
			}
		}
		c.pushed.Add(uint64(len(chunk)))
		c.bytes.Add(uint64(size))
		c.markRepaired(b.Target)
	}
	return nil
}

// retry runs call up to repairAttempts times, each bounded by
// repairRPCTimeout, backing off between attempts, until it succeeds or ctx
// ends. Errors that another attempt cannot cure are returned at once.
func retry(ctx context.Context, call func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, repairRPCTimeout)
		err := call(cctx)
		cancel()
		if err == nil || ctx.Err() != nil || attempt == repairAttempts {
			return err
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.NotFound, codes.Unimplemented, codes.FailedPrecondition, codes.PermissionDenied:
			return err
		}
		if err := sleepCtx(ctx, backoff); err != nil {
			return err
		}
		backoff *= 2
	}
}

// Transport of a pass. Repair writes go straight to the peer, not through
// the write batcher: they are already batched by page, and must not queue
// behind (or hold up) client writes to the same peer.

func (t *peerTransport) digest(ctx context.Context, to string, req *kvpb.ReplicaDigestRequest) (*kvpb.ReplicaDigestResponse, error) {
	if to == t.self {
		return t.local.Digest(ctx, req)
	}
	c, err := t.client(to)
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, t.hooks.peerDelay(to)); err != nil {
		return nil, err
	}
	return c.Digest(ctx, req)
}

func (t *peerTransport) repairWrite(ctx context.Context, to string, req *kvpb.ReplicaWriteRequest) (*kvpb.ReplicaWriteResponse, error) {
	if to == t.self {
		return t.local.Write(ctx, req)
	}
	c, err := t.client(to)
	if err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, t.hooks.peerDelay(to)); err != nil {
		return nil, err
	}
	return c.Write(ctx, req)
}

func (t *peerTransport) repairStream(ctx context.Context, to string, req *kvpb.ReplicaRepairRequest) (grpc.ServerStreamingClient[kvpb.ReplicaRepairResponse], error) {
	c, err := t.client(to)
	if err != nil {
		return nil, err
	}
	return c.Repair(ctx, req)
}

// Digest implements the Peer service.
func (s peerServer) Digest(ctx context.Context, req *kvpb.ReplicaDigestRequest) (*kvpb.ReplicaDigestResponse, error) {
	resp, err := s.n.replica.Digest(ctx, req)
	return resp, toStatus(err)
}

// Repair implements the Peer service: this node's part of a pass, with
// progress at most every ProgressInterval and a last message with done set.
func (s peerServer) Repair(req *kvpb.ReplicaRepairRequest, stream grpc.ServerStreamingServer[kvpb.ReplicaRepairResponse]) error {
	opts := repairOptionsFromPB(req.GetOptions()).withDefaults()
	if err := opts.validate(); err != nil {
		return err
	}
	var last time.Time
	st, err := s.n.repairLocal(stream.Context(), req.GetKeyspace(), req.GetEpoch(), opts, func(st RepairStats) {
		if time.Since(last) < opts.ProgressInterval {
			return
		}
		last = time.Now()
		// A failed send means the caller is gone; the stream's context
		// ends with it and stops the pass.
		_ = stream.Send(&kvpb.ReplicaRepairResponse{Stats: st.toPB()})
	})
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&kvpb.ReplicaRepairResponse{Stats: st.toPB(), Done: true})
}

// RepairKeyspace implements the Admin service: it runs the pass from this
// node and streams its progress, the first message at once and then at
// most every ProgressInterval; the last message has done set.
func (s adminServer) RepairKeyspace(req *kvpb.RepairKeyspaceRequest, stream grpc.ServerStreamingServer[kvpb.RepairKeyspaceResponse]) error {
	opts := repairOptionsFromPB(req.GetOptions()).withDefaults()
	var last time.Time
	rep, err := s.n.RepairKeyspace(stream.Context(), req.GetKeyspace(), opts, func(r RepairReport) {
		if !last.IsZero() && time.Since(last) < opts.ProgressInterval {
			return
		}
		last = time.Now()
		_ = stream.Send(r.toPB())
	})
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(rep.toPB())
}

package antientropy

// The merkle method of a node's part: compare this node's tree of each
// range it replicates with each other replica's, then send digests (and
// push) only the records of the leaves that differ.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/proto"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/replication"
	"github.com/adaptkv/adaptkv/storage"
)

// index is one node's records of a keyspace as trees see them: an Entry
// per record, sorted by token. It is built by one scan of the keyspace and
// costs 16 bytes a record.
type index struct {
	entries    []Entry
	tombstones uint64
}

// buildIndex scans keyspace name on engine, a page at a time.
func buildIndex(ctx context.Context, engine storage.Engine, name string, pageSize int) (*index, error) {
	x := &index{}
	var cursor []byte
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		recs, err := engine.Scan(name, cursor, nil, pageSize)
		if err != nil {
			return nil, fmt.Errorf("read local records: %w", err)
		}
		for i := range recs {
			x.entries = append(x.entries, Entry{Token: ring.Token(name, recs[i].Key), Hash: RecordHash(recs[i])})
			if recs[i].Tombstone {
				x.tombstones++
			}
		}
		if len(recs) < pageSize {
			break
		}
		last := recs[len(recs)-1].Key
		cursor = append(append(make([]byte, 0, len(last)+1), last...), 0)
	}
	slices.SortFunc(x.entries, func(a, b Entry) int {
		switch {
		case a.Token < b.Token:
			return -1
		case a.Token > b.Token:
			return 1
		}
		return 0
	})
	return x, nil
}

// arc returns the entries on a, in clockwise order from a.After.
func (x *index) arc(a Arc) []Entry {
	es := x.entries
	after := sort.Search(len(es), func(i int) bool { return es[i].Token > a.After })
	through := sort.Search(len(es), func(i int) bool { return es[i].Token > a.Through })
	if a.After < a.Through {
		return es[after:through]
	}
	// Wrapping (or the whole ring): the tail past After, then the head.
	return append(slices.Clone(es[after:]), es[:through]...)
}

// TreeCache keeps, for each keyspace, the index of the latest pass that
// asked for it, so that a node builds one index per pass and uses it for
// its own part and every comparison other nodes send it. An index unused
// for Idle is dropped. The zero value is ready to use; safe for concurrent
// use.
type TreeCache struct {
	// Idle is how long an unused index is kept; 0 means 2 minutes.
	Idle time.Duration

	mu sync.Mutex
	m  map[string]*cachedIndex // by keyspace
}

type cachedIndex struct {
	pass  string
	ready chan struct{} // closed once x or err is set
	x     *index
	err   error
	used  time.Time
}

func (c *TreeCache) idle() time.Duration {
	if c.Idle <= 0 {
		return 2 * time.Minute
	}
	return c.Idle
}

// get returns the index of keyspace name for pass, building it on first use.
func (c *TreeCache) get(ctx context.Context, engine storage.Engine, name, pass string, pageSize int) (*index, error) {
	if c == nil || pass == "" {
		return buildIndex(ctx, engine, name, pageSize)
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]*cachedIndex{}
	}
	e := c.m[name]
	build := e == nil || e.pass != pass
	if build {
		// A newer pass replaces the index of an older one.
		e = &cachedIndex{pass: pass, ready: make(chan struct{})}
		c.m[name] = e
	}
	e.used = time.Now()
	c.mu.Unlock()
	if build {
		// Built with a context of its own: a caller that gives up must not
		// fail the others waiting for the same index.
		bctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		e.x, e.err = buildIndex(bctx, engine, name, pageSize)
		cancel()
		close(e.ready)
		c.mu.Lock()
		if e.err != nil && c.m[name] == e {
			delete(c.m, name) // let the next request try again
		}
		c.mu.Unlock()
		time.AfterFunc(c.idle(), func() { c.sweep(name, e) })
	}
	select {
	case <-e.ready:
		return e.x, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// sweep drops e once it has been idle for Idle, checking again later while
// it is in use.
func (c *TreeCache) sweep(name string, e *cachedIndex) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[name] != e {
		return
	}
	if left := c.idle() - time.Since(e.used); left > 0 {
		time.AfterFunc(left, func() { c.sweep(name, e) })
		return
	}
	delete(c.m, name)
}

// span is a token range whose keys have the same replicas, and a tree of
// this node's records on it (built when needed).
type span struct {
	arc      Arc
	replicas []string // sorted
	tree     *Tree
}

// spans returns rg's ranges for n replicas with neighbours merged while
// their replica sets (not lists: order does not matter to a comparison) are
// equal; together they cover the ring once, in token order, each Through
// above the previous one (the first may wrap).
func spans(rg *ring.Ring, n int) []span {
	var out []span
	for _, g := range rg.Ranges(n) {
		set := slices.Clone(g.Replicas)
		slices.Sort(set)
		if k := len(out); k > 0 && slices.Equal(out[k-1].replicas, set) {
			out[k-1].arc.Through = g.Through
			continue
		}
		out = append(out, span{arc: Arc{After: g.After, Through: g.Through}, replicas: set})
	}
	if k := len(out); k > 1 && slices.Equal(out[0].replicas, out[k-1].replicas) {
		out[0].arc.After = out[k-1].arc.After
		out = out[:k-1]
	}
	return out
}

// find returns the span holding token t.
func find(ss []span, t uint64) int {
	i := sort.Search(len(ss), func(i int) bool { return ss[i].arc.Through >= t })
	if i == len(ss) {
		return 0 // past the last Through: the first span, which wraps
	}
	return i
}

// differing is what a comparison found: for each span, the leaves that
// differ with each replica.
type differing map[int]map[string]map[uint32]bool

func (d differing) add(s int, target string, leaves []uint32) {
	if d[s] == nil {
		d[s] = map[string]map[uint32]bool{}
	}
	if d[s][target] == nil {
		d[s][target] = map[uint32]bool{}
	}
	for _, l := range leaves {
		d[s][target][l] = true
	}
}

// merklePart is the merkle method of RunPart.
func (r *Runner) merklePart(ctx context.Context, ks replication.KeyspaceConfig, opts Options, c *counters, start time.Time, progress func(Stats)) error {
	v := r.Topology.View()
	rf := max(ks.N, opts.ReplicationFactor)
	if v.Ring.Len() < rf {
		return fmt.Errorf("%w: the ring has %d members, fewer than the %d replicas to fill", replication.ErrInvalidRequest, v.Ring.Len(), rf)
	}
	x, err := r.Trees.get(ctx, r.Engine, ks.Name, opts.PassID, opts.PageSize)
	if err != nil {
		return err
	}
	c.keys.Store(uint64(len(x.entries)))
	c.tombstones.Store(x.tombstones)
	ss := spans(v.Ring, rf)
	// Which spans to compare with which replica: every span both replicate
	// (shared), and every span where this node holds records of keys it
	// does not replicate (extra: left behind when N shrank, say). A node
	// compares only to push: where it holds nothing, it has nothing to
	// send, and the other replicas' parts push to it.
	work := map[string]*pairWork{}
	for i := range ss {
		entries := x.arc(ss[i].arc)
		if len(entries) > 0 {
			ss[i].tree = NewTree(ss[i].arc, opts.MerkleDepth, entries)
		}
		mine := slices.Contains(ss[i].replicas, r.Self)
		if !mine && len(entries) == 0 {
			continue
		}
		for _, id := range ss[i].replicas {
			if id == r.Self {
				continue
			}
			if !v.Alive(id) {
				if len(entries) > 0 && !opts.AllowDown {
					return fmt.Errorf("replica %s is down, so it cannot be repaired", id)
				}
				continue
			}
			w := work[id]
			if w == nil {
				w = &pairWork{}
				work[id] = w
			}
			if mine {
				w.shared = append(w.shared, i)
			} else {
				w.extra = append(w.extra, i)
			}
		}
	}
	targets := make([]string, 0, len(work))
	for id := range work {
		targets = append(targets, id)
	}
	slices.Sort(targets)

	// Compare with up to Concurrency replicas at once.
	var mu sync.Mutex
	diff := differing{}
	err = r.each(ctx, targets, opts.Concurrency, func(ctx context.Context, target string) error {
		found, err := r.descend(ctx, ks, opts, rf, ss, work[target], target, c)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for s, leaves := range found {
			diff.add(s, target, leaves)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if progress != nil {
		progress(c.stats(start))
	}
	if len(diff) == 0 {
		return nil
	}
	return r.pushDiffering(ctx, ks, opts, ss, diff, c, start, progress)
}

// each runs f for every target, up to n at once, stopping the others at
// the first error; an *replication.EpochError is preferred, since it makes
// the caller redo the part rather than fail.
func (r *Runner) each(ctx context.Context, targets []string, n int, f func(context.Context, string) error) error {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, n)
	errs := make(chan error, len(targets))
	var wg sync.WaitGroup
	for _, t := range targets {
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
			if err := f(pctx, t); err != nil {
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
			return err
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

// query is one span's nodes at one level, still to be compared.
type query struct {
	span  int
	level int
	nodes []uint32
}

// pairWork is the spans one node compares with one other replica.
type pairWork struct {
	shared []int // spans both replicate, in token order
	extra  []int // spans only the other replicates, where this node holds records
}

// sharedRoot sums up the given spans for a comparison of all of them at
// once: a hash of their bounds, and a hash of their trees' roots (0 for a
// span without a tree), both in the spans' order.
func sharedRoot(ss []span, idx []int) (bounds, roots uint64) {
	var b, h xxhash.Digest
	b.Reset()
	h.Reset()
	var buf [16]byte
	for _, i := range idx {
		binary.BigEndian.PutUint64(buf[:8], ss[i].arc.After)
		binary.BigEndian.PutUint64(buf[8:], ss[i].arc.Through)
		b.Write(buf[:])
		var root uint64
		if ss[i].tree != nil {
			root = ss[i].tree.Hash(0, 0)
		}
		binary.BigEndian.PutUint64(buf[:8], root)
		h.Write(buf[:8])
	}
	return b.Sum64(), h.Sum64()
}

// descend compares this node's trees with target's, top down, and returns
// the differing leaves of each span in which this node holds records. The
// shared spans are compared at once first (a pass over replicas that agree
// ends there, one hash per pair of replicas); the spans of a pair that
// differs, and the extra spans, one root at a time, then down.
func (r *Runner) descend(ctx context.Context, ks replication.KeyspaceConfig, opts Options, rf int, ss []span, w *pairWork, target string, c *counters) (map[int][]uint32, error) {
	found := map[int][]uint32{}
	var pending []query
	root := func(s int) {
		if ss[s].tree != nil { // no records here: nothing to push
			pending = append(pending, query{span: s, level: 0, nodes: []uint32{0}})
		}
	}
	for _, s := range w.extra {
		root(s)
	}
	c.ranges.Add(uint64(len(w.shared) + len(w.extra)))
	if len(w.shared) > 0 {
		bounds, roots := sharedRoot(ss, w.shared)
		req := &kvpb.CompareTreesRequest{Keyspace: ks.Name, Epoch: ks.Epoch, From: r.Self, PassId: opts.PassID,
			Depth: uint32(opts.MerkleDepth), ReplicationFactor: uint32(rf), Shared: &kvpb.SharedRoot{BoundsHash: bounds, RootsHash: roots}}
		c.hashes.Add(1)
		if err := c.limit.wait(ctx, proto.Size(req)); err != nil {
			return nil, err
		}
		var resp *kvpb.CompareTreesResponse
		err := retry(ctx, func(ctx context.Context) (err error) {
			resp, err = r.Replicas.CompareTrees(ctx, target, req)
			return err
		})
		if err != nil {
			return nil, wrapText(fmt.Sprintf("compare trees with replica %s", target), err)
		}
		c.sent.Add(uint64(proto.Size(req) + proto.Size(resp)))
		if k := resp.GetKnownEpoch(); k > 0 {
			return nil, &replication.EpochError{Keyspace: ks.Name, Requested: ks.Epoch, Known: k}
		}
		if !resp.GetSharedEqual() {
			for _, s := range w.shared {
				root(s)
			}
		}
	}
	for len(pending) > 0 {
		// One request carries as many queries as fit under maxCompareNodes
		// (a query larger than that alone goes on its own).
		n, size := 0, 0
		for n < len(pending) && (n == 0 || size+len(pending[n].nodes) <= maxCompareNodes) {
			size += len(pending[n].nodes)
			n++
		}
		batch := pending[:n]
		pending = pending[n:]
		req := &kvpb.CompareTreesRequest{Keyspace: ks.Name, Epoch: ks.Epoch, From: r.Self, PassId: opts.PassID,
			Depth: uint32(opts.MerkleDepth), Queries: make([]*kvpb.TreeQuery, len(batch))}
		for i, q := range batch {
			tr := ss[q.span].tree
			hashes := make([]uint64, len(q.nodes))
			for k, nd := range q.nodes {
				hashes[k] = tr.Hash(q.level, nd)
			}
			req.Queries[i] = &kvpb.TreeQuery{After: ss[q.span].arc.After, Through: ss[q.span].arc.Through,
				Level: uint32(q.level), Nodes: q.nodes, Hashes: hashes}
			c.hashes.Add(uint64(len(hashes)))
		}
		if err := c.limit.wait(ctx, proto.Size(req)); err != nil {
			return nil, err
		}
		var resp *kvpb.CompareTreesResponse
		err := retry(ctx, func(ctx context.Context) (err error) {
			resp, err = r.Replicas.CompareTrees(ctx, target, req)
			return err
		})
		if err != nil {
			return nil, wrapText(fmt.Sprintf("compare trees with replica %s", target), err)
		}
		c.sent.Add(uint64(proto.Size(req) + proto.Size(resp)))
		if k := resp.GetKnownEpoch(); k > 0 {
			return nil, &replication.EpochError{Keyspace: ks.Name, Requested: ks.Epoch, Known: k}
		}
		if len(resp.GetAnswers()) != len(batch) {
			return nil, fmt.Errorf("replica %s answered %d tree queries with %d answers", target, len(batch), len(resp.GetAnswers()))
		}
		for i, q := range batch {
			var diff []uint32
			for _, k := range resp.GetAnswers()[i].GetDiffering() {
				if int(k) >= len(q.nodes) {
					return nil, fmt.Errorf("replica %s answered a tree query of %d nodes with position %d", target, len(q.nodes), k)
				}
				diff = append(diff, q.nodes[k])
			}
			if len(diff) == 0 {
				continue
			}
			if q.level == 0 {
				c.rangesDiff.Add(1)
			}
			if q.level == opts.MerkleDepth {
				found[q.span] = append(found[q.span], diff...)
				c.leavesDiff.Add(uint64(len(diff)))
				continue
			}
			// Descend only where this node holds records: elsewhere it has
			// nothing to push.
			next := min(q.level+merkleStep, opts.MerkleDepth)
			tr := ss[q.span].tree
			children := slices.DeleteFunc(Children(q.level, next, diff), func(nd uint32) bool { return tr.Hash(next, nd) == 0 })
			if len(children) > 0 {
				pending = append(pending, query{span: q.span, level: next, nodes: children})
			}
		}
	}
	return found, nil
}

// pushDiffering walks this node's records again and, for those in a leaf
// that differs with some replica, sends that replica their digests and
// pushes what it lacks, as the digest method does for every record.
func (r *Runner) pushDiffering(ctx context.Context, ks replication.KeyspaceConfig, opts Options, ss []span, diff differing, c *counters, start time.Time, progress func(Stats)) error {
	var cursor []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		recs, err := r.Engine.Scan(ks.Name, cursor, nil, opts.PageSize)
		if err != nil {
			return fmt.Errorf("read local records: %w", err)
		}
		byTarget := map[string][]int{}
		for i := range recs {
			t := ring.Token(ks.Name, recs[i].Key)
			s := find(ss, t)
			leaf := ss[s].arc.Leaf(t, opts.MerkleDepth)
			for target, leaves := range diff[s] {
				if leaves[leaf] {
					byTarget[target] = append(byTarget[target], i)
				}
			}
		}
		targets := make([]string, 0, len(byTarget))
		for id := range byTarget {
			targets = append(targets, id)
		}
		slices.Sort(targets)
		err = r.each(ctx, targets, opts.Concurrency, func(ctx context.Context, target string) error {
			return r.target(ctx, ks, recs, replication.RepairBatch{Target: target, Records: byTarget[target]}, false, c)
		})
		if err != nil {
			return err
		}
		if progress != nil && len(targets) > 0 {
			progress(c.stats(start))
		}
		if len(recs) < opts.PageSize {
			return nil
		}
		last := recs[len(recs)-1].Key
		cursor = append(append(make([]byte, 0, len(last)+1), last...), 0)
	}
}

// CompareTrees answers another node's comparison (its merkle method):
// which of the nodes it sent hash differently here. It builds this node's
// index of the keyspace once per pass (Runner.Trees). It fails with a
// replication.ErrInvalidRequest for a malformed request and a
// replication.ErrKeyspaceNotFound for an unknown keyspace, and answers
// KnownEpoch when this node knows a newer configuration.
func (r *Runner) CompareTrees(ctx context.Context, req *kvpb.CompareTreesRequest) (*kvpb.CompareTreesResponse, error) {
	depth := int(req.GetDepth())
	if req.GetKeyspace() == "" {
		return nil, invalidf("compare trees: no keyspace")
	}
	if depth < 1 || depth > MaxMerkleDepth {
		return nil, invalidf("compare trees: depth %d: want 1 to %d", depth, MaxMerkleDepth)
	}
	total := 0
	for i, q := range req.GetQueries() {
		if int(q.GetLevel()) > depth {
			return nil, invalidf("compare trees: query %d: level %d below the tree's depth %d", i, q.GetLevel(), depth)
		}
		if len(q.GetNodes()) != len(q.GetHashes()) {
			return nil, invalidf("compare trees: query %d: %d nodes but %d hashes", i, len(q.GetNodes()), len(q.GetHashes()))
		}
		for _, nd := range q.GetNodes() {
			if uint64(nd) >= 1<<q.GetLevel() {
				return nil, invalidf("compare trees: query %d: node %d does not exist at level %d", i, nd, q.GetLevel())
			}
		}
		total += len(q.GetNodes())
	}
	rf := int(req.GetReplicationFactor())
	if req.GetShared() != nil {
		if req.GetFrom() == "" {
			return nil, invalidf("compare trees: a shared root without its sender (from)")
		}
		if n := r.Topology.View().Ring.Len(); rf < 1 || rf > n {
			return nil, invalidf("compare trees: replication factor %d: want 1 to the ring's %d members", rf, n)
		}
	}
	if total > 4*maxCompareNodes {
		return nil, invalidf("compare trees: %d nodes in one request; at most %d", total, 4*maxCompareNodes)
	}
	if known, err := r.checkEpoch(ctx, req.GetKeyspace(), req.GetEpoch()); err != nil || known > 0 {
		return &kvpb.CompareTreesResponse{KnownEpoch: known}, err
	}
	x, err := r.Trees.get(ctx, r.Engine, req.GetKeyspace(), req.GetPassId(), DefaultPageSize)
	if err != nil {
		return nil, err
	}
	resp := &kvpb.CompareTreesResponse{Answers: make([]*kvpb.TreeAnswer, len(req.GetQueries()))}
	if sh := req.GetShared(); sh != nil {
		// The ranges this node and the sender both replicate, by this
		// node's ring: the bounds hash tells whether the sender meant the
		// same ones.
		v := r.Topology.View()
		ss := spans(v.Ring, rf)
		var idx []int
		for i := range ss {
			if slices.Contains(ss[i].replicas, req.GetFrom()) && slices.Contains(ss[i].replicas, r.Self) {
				if entries := x.arc(ss[i].arc); len(entries) > 0 {
					ss[i].tree = NewTree(ss[i].arc, depth, entries)
				}
				idx = append(idx, i)
			}
		}
		bounds, roots := sharedRoot(ss, idx)
		resp.SharedEqual = bounds == sh.GetBoundsHash() && roots == sh.GetRootsHash()
	}
	for i, q := range req.GetQueries() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		a := Arc{After: q.GetAfter(), Through: q.GetThrough()}
		tr := NewTree(a, depth, x.arc(a))
		resp.Answers[i] = &kvpb.TreeAnswer{Differing: tr.Differing(int(q.GetLevel()), q.GetNodes(), q.GetHashes())}
	}
	return resp, nil
}

// checkEpoch is the replica's epoch check for a comparison: the newer
// epoch this node knows (the request must be redone), or an error when the
// keyspace is unknown even after waiting for the request's epoch.
func (r *Runner) checkEpoch(ctx context.Context, name string, epoch uint64) (uint64, error) {
	cfg, ok := r.Keyspaces.Keyspace(name)
	if !ok || cfg.Epoch < epoch {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := r.Keyspaces.WaitForIndex(wctx, epoch)
		cancel()
		if cfg, ok = r.Keyspaces.Keyspace(name); !ok {
			if err != nil {
				return 0, fmt.Errorf("keyspace %q at epoch %d: %w", name, epoch, replication.ErrKeyspaceNotFound)
			}
			return 0, fmt.Errorf("keyspace %q: %w", name, replication.ErrKeyspaceNotFound)
		}
	}
	if cfg.Epoch > epoch {
		return cfg.Epoch, nil
	}
	return 0, nil
}

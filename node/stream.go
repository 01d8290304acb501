package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
)

// The stream of a topology change: paced, checkpointed, resumable.
//
// The metadata leader drives it (finishChange): for each keyspace it scans
// every current member that is read (in parallel, one scan per member) and
// pushes each record to the key's new replicas. Progress is kept per
// keyspace and per source member as the last key whose page has been
// pushed and acknowledged, and every Config.StreamCheckpoint the driver
// writes it to the metadata log ("stream-progress"). A driver that starts
// on a change (after a restart, or a new leader) continues each source from
// its checkpoint instead of from the start.
//
// Why a checkpoint in the metadata log rather than on the receiving node:
// the driver changes with the leader, and the log is the one store every
// possible driver reads; the checkpoint is small (a key per source) and
// written every few seconds, not per record.
//
// Why resuming keeps the safety argument (topology.go): a checkpoint only
// ever names keys whose records were pushed and acknowledged by every new
// replica they went to, and the stream starts only once every member has
// applied the change's entry, so every write acknowledged before the entry
// was on the scanned sources when those pages were read, and every write
// since went to the new replicas too (pending replicas). A write to a key
// below the checkpoint after it was read is such a later write. What a
// resumed stream skips is therefore already on the new replicas. A
// checkpoint is honoured only for the change it was written for (Since)
// and only at the keyspace epoch it was written at: a keyspace whose
// configuration changed since (N, pending N) is streamed again from the
// start, since its preference lists may have changed.

// DefaultStreamRate is Config.StreamRate's default, in bytes per second:
// enough to move a node's worth of ranges in minutes, while leaving most of
// a source's disk and network to the clients.
const DefaultStreamRate = 64 << 20

// DefaultStreamCheckpoint is Config.StreamCheckpoint's default.
const DefaultStreamCheckpoint = 2 * time.Second

// StreamProgress is the stream of a topology change as the metadata log
// last recorded it: the checkpoint a new driver resumes from.
type StreamProgress struct {
	// Since is the index of the entry that started the change; a
	// checkpoint of another change is ignored.
	Since  uint64 `json:"since"`
	Change string `json:"change"`
	Driver string `json:"driver"`
	// Keyspaces is the progress per keyspace; a keyspace absent is not
	// started.
	Keyspaces map[string]KeyspaceStream `json:"keyspaces,omitempty"`
	// Keyspace is the keyspace being streamed.
	Keyspace       string `json:"keyspace,omitempty"`
	KeyspacesTotal int    `json:"keyspaces_total,omitempty"`
	RecordsScanned uint64 `json:"records_scanned,omitempty"`
	BytesScanned   uint64 `json:"bytes_scanned,omitempty"`
	RecordsPushed  uint64 `json:"records_pushed,omitempty"`
	BytesPushed    uint64 `json:"bytes_pushed,omitempty"`
	StartedUnixMs  int64  `json:"started,omitempty"`
	UpdatedUnixMs  int64  `json:"updated,omitempty"`
	// Resumes counts the drivers that continued from a checkpoint.
	Resumes int `json:"resumes,omitempty"`
}

// KeyspaceStream is one keyspace's stream progress.
type KeyspaceStream struct {
	// Epoch is the keyspace epoch the progress was made at.
	Epoch uint64 `json:"epoch"`
	Done  bool   `json:"done,omitempty"`
	// Sources is the progress per current member read.
	Sources map[string]SourceStream `json:"sources,omitempty"`
}

// SourceStream is the progress of the scan of one source member.
type SourceStream struct {
	// After is the last key whose page has been pushed; the scan resumes
	// just past it.
	After []byte `json:"after,omitempty"`
	Done  bool   `json:"done,omitempty"`
}

// clone returns a deep copy, so that a checkpoint being proposed does not
// share maps with the running stream.
func (p StreamProgress) clone() StreamProgress {
	q := p
	q.Keyspaces = make(map[string]KeyspaceStream, len(p.Keyspaces))
	for k, ks := range p.Keyspaces {
		// A keyspace checkpointed before any page of it was pushed comes
		// back from the log with no map at all (omitempty): make one, so
		// that the run can record its sources' progress.
		ks.Sources = maps.Clone(ks.Sources)
		if ks.Sources == nil {
			ks.Sources = map[string]SourceStream{}
		}
		q.Keyspaces[k] = ks
	}
	return q
}

// advance records that src's scan of keyspace has pushed every page up to
// and including the key after (none when empty), and whether it is done.
func (p *StreamProgress) advance(keyspace, src string, after []byte, done bool) {
	if p.Keyspaces == nil {
		p.Keyspaces = map[string]KeyspaceStream{}
	}
	ks := p.Keyspaces[keyspace]
	if ks.Sources == nil {
		ks.Sources = map[string]SourceStream{}
	}
	ss := ks.Sources[src]
	if len(after) > 0 {
		ss.After = slices.Clone(after)
	}
	ss.Done = done
	ks.Sources[src] = ss
	p.Keyspaces[keyspace] = ks
}

// streamStats are the node's counters of the streams it drove, for tests
// and metrics: what this process did, whatever checkpoints say.
type streamStats struct {
	recordsPushed atomic.Uint64
	bytesPaced    atomic.Uint64 // bytes that went through the limiter
	waits         atomic.Uint64 // limiter reservations that had to wait
	checkpoints   atomic.Uint64 // stream-progress entries committed
	resumed       atomic.Uint64 // streams started from a checkpoint
}

// streamRun is one driver's run of a change's stream.
type streamRun struct {
	n       *Node
	limiter *rate.Limiter // nil: unlimited
	burst   int
	started time.Time
	base    uint64 // BytesScanned when this run started

	mu    sync.Mutex
	prog  StreamProgress
	dirty bool
}

// newStreamRun starts a run of change c, from the checkpoint in the
// metadata log if it is this change's.
func (n *Node) newStreamRun(c change) *streamRun {
	r := &streamRun{n: n, started: time.Now()}
	if lim := n.cfg.StreamRate; lim > 0 {
		// A burst of a quarter second keeps the pace even; a page larger
		// than the burst waits in burst-sized pieces (pace).
		r.burst = int(max(lim/4, 64<<10))
		r.limiter = rate.NewLimiter(rate.Limit(lim), r.burst)
	}
	now := time.Now().UnixMilli()
	if cp := n.meta.streamProgress(); cp != nil && cp.Since == c.since {
		r.prog = cp.clone()
		r.prog.Resumes++
		n.streamStats.resumed.Add(1)
		n.log.Info("stream resumes from checkpoint", "change", c.what, "records_pushed", cp.RecordsPushed,
			"bytes_scanned", cp.BytesScanned, "keyspace", cp.Keyspace)
	} else {
		r.prog = StreamProgress{Since: c.since, Change: c.what, StartedUnixMs: now, Keyspaces: map[string]KeyspaceStream{}}
	}
	r.prog.Driver, r.prog.UpdatedUnixMs = n.cfg.ID, now
	r.base = r.prog.BytesScanned
	return r
}

// pace waits until bytes more may be streamed.
func (r *streamRun) pace(ctx context.Context, bytes int) error {
	if r.limiter == nil {
		return nil
	}
	r.n.streamStats.bytesPaced.Add(uint64(bytes))
	for bytes > 0 {
		take := min(bytes, r.burst)
		bytes -= take
		res := r.limiter.ReserveN(time.Now(), take)
		d := res.Delay()
		if d <= 0 {
			continue
		}
		r.n.streamStats.waits.Add(1)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			res.Cancel()
			return ctx.Err()
		}
	}
	return nil
}

// snapshot returns the progress, for status and checkpoints.
func (r *streamRun) snapshot() (StreamProgress, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.dirty
	r.dirty = false
	return r.prog.clone(), d
}

// rate is the bytes scanned per second since this run started.
func (r *streamRun) rate(p StreamProgress) float64 {
	el := time.Since(r.started).Seconds()
	if el <= 0 {
		return 0
	}
	return float64(p.BytesScanned-r.base) / el
}

// checkpoint writes the progress to the metadata log when it changed.
func (r *streamRun) checkpoint(ctx context.Context) {
	p, dirty := r.snapshot()
	if !dirty {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := propose(pctx, r.n.raft, command{Op: "stream-progress", Stream: &p, AtUnixMs: time.Now().UnixMilli()}); err != nil {
		r.n.log.Warn("stream checkpoint", "change", p.Change, "err", err)
		r.mu.Lock()
		r.dirty = true
		r.mu.Unlock()
		return
	}
	r.n.streamStats.checkpoints.Add(1)
	r.n.log.Info("stream progress", "change", p.Change, "keyspace", p.Keyspace, "records_pushed", p.RecordsPushed,
		"bytes_pushed", p.BytesPushed, "bytes_scanned", p.BytesScanned, "bytes_per_sec", int64(r.rate(p)),
		"rate_limit", r.n.cfg.StreamRate)
}

// streamChange streams every keyspace for change c in st, checkpointing
// as it goes; it returns the records this run pushed.
func (n *Node) streamChange(ctx context.Context, st *topoState, c change) (int, error) {
	r := n.newStreamRun(c)
	n.stream.Store(r)
	defer n.stream.CompareAndSwap(r, nil)
	defs := n.meta.Defs()
	r.mu.Lock()
	r.prog.KeyspacesTotal = len(defs)
	r.dirty = true
	r.mu.Unlock()

	every := n.cfg.StreamCheckpoint
	if every <= 0 {
		every = DefaultStreamCheckpoint
	}
	cpDone := make(chan struct{})
	cpCtx, cpStop := context.WithCancel(ctx)
	go func() {
		defer close(cpDone)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-cpCtx.Done():
				return
			case <-t.C:
				r.checkpoint(cpCtx)
			}
		}
	}()
	pushed := 0
	var err error
	for _, d := range defs {
		var p int
		p, err = r.keyspace(ctx, d.Name, st.current, st.future, c.dead)
		pushed += p
		if err != nil {
			err = fmt.Errorf("keyspace %q: %w", d.Name, err)
			break
		}
	}
	cpStop()
	<-cpDone
	// What was pushed is kept for the next driver, whether this run ended
	// or failed; a failure to write it only costs a longer resume.
	r.checkpoint(context.WithoutCancel(ctx))
	return pushed, err
}

// keyspace streams one keyspace: see streamSource for what goes where.
// Every current member but dead is read, each in its own goroutine, each
// from its checkpoint; the keyspace is done when all are.
func (r *streamRun) keyspace(ctx context.Context, keyspace string, cur, fut *ring.Ring, dead string) (int, error) {
	n := r.n
	cfg, ok := n.meta.Keyspace(keyspace)
	if !ok {
		return 0, nil
	}
	r.mu.Lock()
	ks, ok := r.prog.Keyspaces[keyspace]
	if ok && ks.Epoch != cfg.Epoch {
		// Written under another configuration: the preference lists it
		// followed may not be this epoch's.
		ok = false
	}
	if !ok {
		ks = KeyspaceStream{Epoch: cfg.Epoch, Sources: map[string]SourceStream{}}
		r.prog.Keyspaces[keyspace] = ks
	}
	r.prog.Keyspace = keyspace
	r.dirty = true
	r.mu.Unlock()
	if ks.Done {
		return 0, nil
	}
	view := n.members.View()
	for _, m := range fut.Members() {
		if !view.Alive(m.ID) {
			return 0, fmt.Errorf("%w: future member %s is down", errStreamNotReady, m.ID)
		}
	}
	var sources []string
	for _, m := range cur.Members() {
		if m.ID == dead {
			continue
		}
		if !view.Alive(m.ID) {
			// Every current replica must be read: W of them may be all that
			// hold an acknowledged write.
			return 0, fmt.Errorf("%w: current member %s is down", errStreamNotReady, m.ID)
		}
		sources = append(sources, m.ID)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		pushed int
		errs   []error
	)
	starts := map[string]SourceStream{}
	r.mu.Lock()
	for _, src := range sources {
		starts[src] = r.prog.Keyspaces[keyspace].Sources[src]
	}
	r.mu.Unlock()
	for _, src := range sources {
		ss := starts[src]
		if ss.Done {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := r.source(sctx, keyspace, cfg.Epoch, cfg.N, cfg.PendingN, cur, fut, dead, src, ss.After)
			mu.Lock()
			pushed += p
			if err != nil {
				errs = append(errs, err)
				cancel()
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return pushed, err
	}
	r.mu.Lock()
	ks = r.prog.Keyspaces[keyspace]
	ks.Done = true
	r.prog.Keyspaces[keyspace] = ks
	r.dirty = true
	r.mu.Unlock()
	return pushed, nil
}

// source copies to each key's new replicas the records of keyspace that
// member src holds, starting past after (nil: from the start), and
// records its progress page by page.
//
// The new replicas of a key are the members on the future ring's
// preference list that are not on the current one's (the joining member,
// or the members that take over a leaving member's ranges). The records go
// as hints (old writes: last writer wins keeps a copy older than one a
// replica already has harmless), tombstones too.
//
// With dead (a removed member) each record goes to every future replica of
// its key but src, when src is one of the key's current replicas (not a
// stale copy of a range it no longer owns): a survivor may lack a write
// that the dead member and one other acknowledged, and after the removal
// the survivors and the new replica are all the copies there are. That
// pushes each record up to N-1 times per survivor holding it instead of
// once per new replica; a removal is rare, and last writer wins makes the
// extra copies harmless.
func (r *streamRun) source(ctx context.Context, keyspace string, epoch uint64, rf, pendingN int,
	cur, fut *ring.Ring, dead, src string, after []byte) (int, error) {
	n := r.n
	rfCur := max(rf, min(pendingN, cur.Len()))
	rfFut := max(rf, min(pendingN, fut.Len()))
	var from []byte
	if after != nil {
		from = append(slices.Clone(after), 0)
	}
	pushed := 0
	for {
		resp, err := n.transport.Scan(ctx, src, &kvpb.ReplicaScanRequest{
			Keyspace: keyspace, Epoch: epoch, Start: from, Limit: streamPage, From: n.cfg.ID})
		if err != nil {
			return pushed, fmt.Errorf("scan %s: %w", src, err)
		}
		if resp.GetKnownEpoch() > epoch {
			return pushed, fmt.Errorf("%w: %s knows epoch %d", errStreamNotReady, src, resp.GetKnownEpoch())
		}
		recs := resp.GetRecords()
		scanned := 0
		for _, rec := range recs {
			scanned += proto.Size(rec)
		}
		if err := r.pace(ctx, scanned); err != nil {
			return pushed, err
		}
		batches := map[string][]*kvpb.Mutation{}
		for _, rec := range recs {
			now := cur.PreferenceList(keyspace, rec.GetKey(), rfCur)
			for _, id := range fut.PreferenceList(keyspace, rec.GetKey(), rfFut) {
				if (dead == "" && !slices.Contains(now, id)) || (dead != "" && id != src && slices.Contains(now, src)) {
					batches[id] = append(batches[id], &kvpb.Mutation{Keyspace: keyspace, Epoch: epoch, Record: rec})
				}
			}
		}
		bytesPushed := 0
		for to, muts := range batches {
			wr, err := n.transport.Hint(ctx, to, &kvpb.ReplicaWriteRequest{Mutations: muts, From: n.cfg.ID})
			if err != nil {
				return pushed, fmt.Errorf("push to %s: %w", to, err)
			}
			for _, res := range wr.GetResults() {
				if !res.GetOk() {
					return pushed, fmt.Errorf("push to %s refused: %s", to, res.GetError())
				}
			}
			pushed += len(muts)
			n.streamStats.recordsPushed.Add(uint64(len(muts)))
			for _, m := range muts {
				bytesPushed += proto.Size(m.GetRecord())
			}
		}
		last := len(recs) < streamPage
		// Only now, with every push of the page acknowledged, may the
		// checkpoint move past it.
		r.mu.Lock()
		var after []byte
		if len(recs) > 0 {
			after = recs[len(recs)-1].GetKey()
		}
		r.prog.advance(keyspace, src, after, last)
		r.prog.RecordsScanned += uint64(len(recs))
		r.prog.BytesScanned += uint64(scanned)
		for _, muts := range batches {
			r.prog.RecordsPushed += uint64(len(muts))
		}
		r.prog.BytesPushed += uint64(bytesPushed)
		r.prog.UpdatedUnixMs = time.Now().UnixMilli()
		r.dirty = true
		r.mu.Unlock()
		if last {
			return pushed, nil
		}
		from = append(slices.Clone(recs[len(recs)-1].GetKey()), 0)
	}
}

// streamStatus is the stream in progress as this node knows it: live when
// it drives it, else the last checkpoint in the metadata log; nil when no
// change is streaming.
func (n *Node) streamStatus() *kvpb.StreamStatus {
	topo := n.meta.Topology()
	c, changing := topo.Changing()
	if !changing {
		return nil
	}
	var (
		p     StreamProgress
		live  bool
		rateB float64
	)
	if r := n.stream.Load(); r != nil {
		p, _ = r.snapshotKeep()
		live, rateB = true, r.rate(p)
	} else if cp := n.meta.streamProgress(); cp != nil && cp.Since == topo.Epoch {
		p = *cp
		if el := float64(p.UpdatedUnixMs-p.StartedUnixMs) / 1000; el > 0 && p.Resumes == 0 {
			rateB = float64(p.BytesScanned) / el
		}
	} else {
		return &kvpb.StreamStatus{Change: string(c.State) + " " + c.ID, Since: topo.Epoch}
	}
	out := &kvpb.StreamStatus{
		Change: p.Change, Since: p.Since, Driver: p.Driver, Live: live, Keyspace: p.Keyspace,
		KeyspacesTotal: uint32(p.KeyspacesTotal), RecordsScanned: p.RecordsScanned, BytesScanned: p.BytesScanned,
		RecordsPushed: p.RecordsPushed, BytesPushed: p.BytesPushed, StartedUnixMs: p.StartedUnixMs,
		UpdatedUnixMs: p.UpdatedUnixMs, BytesPerSecond: rateB, Resumes: uint32(p.Resumes),
	}
	if live {
		out.RateLimit = n.cfg.StreamRate
	}
	sources := 0
	if st := n.meta.topo.Load(); st.current != nil {
		sources = st.current.Len()
		for _, m := range topo.Members {
			if m.State == StateRemoving {
				sources-- // a dead member is not read
			}
		}
	}
	out.SourcesTotal = uint32(sources * p.KeyspacesTotal)
	for _, ks := range p.Keyspaces {
		if ks.Done {
			out.KeyspacesDone++
			out.SourcesDone += uint32(sources)
			continue
		}
		for _, s := range ks.Sources {
			if s.Done {
				out.SourcesDone++
			}
		}
	}
	return out
}

// snapshotKeep is snapshot without clearing the dirty mark.
func (r *streamRun) snapshotKeep() (StreamProgress, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.prog.clone(), r.dirty
}

// StreamCounters are what this node's process streamed as driver of
// topology changes, since it started.
type StreamCounters struct {
	// RecordsPushed is the records pushed to new replicas.
	RecordsPushed uint64
	// BytesPaced is the bytes that went through the rate limiter, and
	// Waits the times the limiter made the stream wait.
	BytesPaced, Waits uint64
	// Checkpoints is the stream-progress entries committed.
	Checkpoints uint64
	// Resumed is the streams this process continued from a checkpoint.
	Resumed uint64
}

// StreamCounters returns what this node has streamed as driver.
func (n *Node) StreamCounters() StreamCounters {
	s := &n.streamStats
	return StreamCounters{RecordsPushed: s.recordsPushed.Load(), BytesPaced: s.bytesPaced.Load(), Waits: s.waits.Load(),
		Checkpoints: s.checkpoints.Load(), Resumed: s.resumed.Load()}
}

package jepsen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/client"
	"github.com/adaptkv/adaptkv/jepsen/history"
)

// maxProbeKeys bounds the keys the convergence probe reads on every
// replica; a larger run probes an evenly spread sample.
const maxProbeKeys = 20000

// finalProcess is the first process number of the final reads, far from
// the workers'.
const finalProcess = 1_000_000

// converge waits for the hints to be delivered, then reads every written
// key on every replica of its preference list (replica-local reads, no
// quorum, no repair) until the replicas of each key agree or the time is
// up, and records the last round in the history for the convergence
// checker.
func (r *runner) converge(ctx context.Context) {
	start := time.Now()
	deadline := start.Add(r.cfg.ConvergeTimeout.D())
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	// Hints first: until they are delivered, replicas that missed writes
	// legitimately lag.
	pending := -1
	for cctx.Err() == nil {
		total, err := r.hintsPending(cctx)
		if err == nil && total == 0 {
			pending = 0
			break
		}
		pending = int(total)
		time.Sleep(250 * time.Millisecond)
	}
	r.hintsWait = time.Since(start)
	if pending != 0 {
		r.harnessError(fmt.Errorf("hints still pending %v after the heal (%d)", r.cfg.ConvergeTimeout.D(), pending))
	}

	rg, rf, err := r.placement(cctx)
	if err != nil {
		r.harnessError(fmt.Errorf("convergence probe: %w", err))
		return
	}
	keys := r.writtenKeys()
	if len(keys) > maxProbeKeys {
		step := float64(len(keys)) / maxProbeKeys
		var s []string
		for i := 0.0; int(i) < len(keys); i += step {
			s = append(s, keys[int(i)])
		}
		r.log.Warn("convergence probe samples keys", "written", len(keys), "probed", len(s))
		keys = s
	}
	// Probe until every key's replicas agree, the time is up, or the
	// disagreement has stopped shrinking for a while with no hints left to
	// deliver (nothing else would repair it: probes do not repair).
	results := map[string][]history.Op{}
	todo := keys
	best, stalled := len(keys)+1, 0
	for round := 1; ; round++ {
		got := r.probe(cctx, rg, rf, todo)
		var again []string
		for _, k := range todo {
			results[k] = got[k]
			if !agree(got[k]) {
				again = append(again, k)
			}
		}
		r.log.Info("convergence probe round", "round", round, "keys", len(todo), "not_agreeing", len(again))
		if len(again) < best {
			best, stalled = len(again), 0
		} else if hints, err := r.hintsPending(cctx); err == nil && hints == 0 {
			stalled++
		}
		if len(again) > 0 && r.cfg.ConvergeRepair && r.convergeRepair == nil && (stalled >= 6 || time.Now().Add(5*time.Second).After(deadline)) {
			// Hints and read repair have done what they will: a write
			// whose coordinator died before it stored a hint reaches its
			// other replicas only through anti-entropy.
			r.convergeRepair = r.repairPass(cctx, len(again))
			best, stalled = len(again)+1, 0
			todo = again
			continue
		}
		if len(again) == 0 || stalled >= 6 || time.Now().Add(500*time.Millisecond).After(deadline) {
			break
		}
		todo = again
		time.Sleep(500 * time.Millisecond)
	}
	for _, k := range keys {
		for _, op := range results[k] {
			r.rec.Append(op)
		}
	}
	r.convergeDur = time.Since(start)
}

// repairPass runs one repair pass over the keyspace, over whichever nodes
// are alive, and reports it.
func (r *runner) repairPass(ctx context.Context, disagreeing int) *ConvergeRepair {
	start := time.Now()
	out := &ConvergeRepair{Disagreeing: disagreeing}
	r.log.Info("convergence: replicas still disagree once hints are delivered; running a repair pass", "keys", disagreeing)
	rep, err := r.routed.RepairKeyspace(ctx, Keyspace, client.RepairOptions{AllowDown: true}, nil)
	out.Seconds = round3(time.Since(start).Seconds())
	if rep != nil {
		out.RecordsPushed = rep.RecordsPushed
	}
	if err != nil {
		out.Error = err.Error()
		r.log.Warn("convergence repair pass failed", "err", err)
	}
	return out
}

// hintsPending sums the hints stored on every node.
func (r *runner) hintsPending(ctx context.Context) (uint64, error) {
	var total uint64
	for _, id := range r.c.Members() {
		st, err := r.c.Status(ctx, id)
		if err != nil {
			return 0, err
		}
		total += st.HintsPending
	}
	return total, nil
}

// placement builds the ring as the nodes do, from a node's view of the
// members and vnodes, and returns it with the keyspace's replication
// factor.
func (r *runner) placement(ctx context.Context) (*ring.Ring, int, error) {
	var last error
	for _, id := range r.c.Members() {
		st, err := r.c.Status(ctx, id)
		if err != nil {
			last = err
			continue
		}
		// The nodes place keys on the metadata log's ring when they report
		// ring states: its normal and leaving members.
		byLog := false
		for _, m := range st.Members {
			byLog = byLog || m.RingState != ""
		}
		var ms []ring.Member
		for _, m := range st.Members {
			onRing := m.State != client.StateLeft
			if byLog {
				onRing = m.RingState == "normal" || m.RingState == "leaving" || m.RingState == "removing"
			}
			if onRing {
				ms = append(ms, ring.Member{ID: m.ID, Zone: m.Zone})
			}
		}
		cl, err := r.c.Client(ctx, id)
		if err != nil {
			last = err
			continue
		}
		ks, err := cl.DescribeKeyspace(ctx, Keyspace)
		if err != nil {
			last = err
			continue
		}
		return ring.New(ms, st.Vnodes), ks.ReplicationFactor, nil
	}
	return nil, 0, fmt.Errorf("no node answered: %w", last)
}

// writtenKeys returns the keys the history has writes for, sorted.
func (r *runner) writtenKeys() []string {
	seen := map[string]bool{}
	for _, op := range r.rec.Ops() {
		if op.Type == history.Invoke && (op.F == history.FWrite || op.F == history.FAdd || op.F == history.FCas) {
			seen[op.Key] = true
		}
	}
	return sortedKeys(seen)
}

// probe reads keys on each of their replicas.
func (r *runner) probe(ctx context.Context, rg *ring.Ring, rf int, keys []string) map[string][]history.Op {
	out := make(map[string][]history.Op, len(keys))
	var mu sync.Mutex
	ch := make(chan string)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range ch {
				var ops []history.Op
				for _, id := range rg.PreferenceList(Keyspace, []byte(k), rf) {
					ops = append(ops, r.localRead(ctx, id, k))
				}
				mu.Lock()
				out[k] = ops
				mu.Unlock()
			}
		}()
	}
	for _, k := range keys {
		ch <- k
	}
	close(ch)
	wg.Wait()
	return out
}

// localRead reads one replica's own record of a key, as a history event
// (not yet recorded: the caller records the last round).
func (r *runner) localRead(ctx context.Context, node, key string) history.Op {
	op := history.Op{Process: history.ProbeProcess, Client: history.ProbeProcess, F: history.FReplicaRead, Key: key, Node: node, Phase: history.PhaseConverge}
	var rec *client.LocalRecord
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rec, err = r.routed.LocalGet(rctx, node, Keyspace, []byte(key))
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	op.Time = r.rec.Now()
	if err != nil {
		op.Type, op.Error = history.Fail, err.Error()
		return op
	}
	op.Type = history.OK
	op.Tombstone = rec.Tombstone
	if rec.Found && !rec.Tombstone {
		op.Value, op.Raw = decodeValue(rec.Value)
	}
	if rec.Found {
		op.Version = toVersion(rec.Version)
	}
	return op
}

// agree reports whether the replica reads of a key all succeeded and found
// the same record.
func agree(ops []history.Op) bool {
	for _, op := range ops {
		if op.Type != history.OK {
			return false
		}
		if !sameRecord(op, ops[0]) {
			return false
		}
	}
	return true
}

func sameRecord(a, b history.Op) bool {
	va, vb := history.Version{}, history.Version{}
	if a.Version != nil {
		va = *a.Version
	}
	if b.Version != nil {
		vb = *b.Version
	}
	return va == vb && a.Tombstone == b.Tombstone && valueOf(a.Value) == valueOf(b.Value) && a.Raw == b.Raw
}

func valueOf(v *int64) int64 {
	if v == nil {
		return 0
	}
	return *v
}

// finalReads reads every key at the strongest level, all: the set workload
// scans its elements (then reads each acknowledged element the scan did not
// return, to tell a lost element from a scan that missed one); the others
// read each key.
func (r *runner) finalReads(ctx context.Context) {
	fctx, cancel := context.WithTimeout(ctx, max(30*time.Second, r.cfg.ConvergeTimeout.D()))
	defer cancel()
	var keys []string
	if r.cfg.Workload == WorkloadSet {
		found, err := r.readAll(fctx)
		if err != nil {
			r.harnessError(fmt.Errorf("final read-all: %w", err))
			return
		}
		for _, p := range history.Pairs(r.rec.Ops()) {
			if p.Invoke.F == history.FAdd && p.Type() != history.Fail && !found[*p.Invoke.Value] {
				keys = append(keys, p.Invoke.Key)
			}
		}
		if len(keys) > 5000 {
			keys = keys[:5000]
		}
	} else {
		keys = r.gen.keys()
	}
	ch := make(chan string)
	var wg sync.WaitGroup
	var failed sync.Map
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			process := finalProcess + i
			for k := range ch {
				for attempt := 0; attempt < 5 && fctx.Err() == nil; attempt++ {
					typ := r.execute(fctx, r.routed, process, process, opSpec{f: history.FRead, key: k, level: client.All.String()})
					if typ == history.Info {
						process += 8
					}
					if typ == history.OK {
						failed.Delete(k)
						break
					}
					failed.Store(k, true)
					time.Sleep(200 * time.Millisecond)
				}
			}
		}()
	}
	for _, k := range keys {
		ch <- k
	}
	close(ch)
	wg.Wait()
	n := 0
	failed.Range(func(any, any) bool { n++; return true })
	if n > 0 {
		r.harnessError(fmt.Errorf("final reads at all failed for %d keys", n))
	}
	if err := r.rec.Flush(); err != nil {
		r.harnessError(err)
	}
}

// readAll scans every set element at level all, page by page, and records
// the result as one read-all operation.
func (r *runner) readAll(ctx context.Context) (map[int64]bool, error) {
	var lastErr error
	for attempt := 0; attempt < 5 && ctx.Err() == nil; attempt++ {
		process := finalProcess - 1 - attempt
		r.rec.Append(history.Op{Process: process, Client: process, Type: history.Invoke, F: history.FReadAll, Level: client.All.String()})
		comp := history.Op{Process: process, Client: process, F: history.FReadAll, Level: client.All.String()}
		found, receipt, err := r.scanAll(ctx)
		if err == nil {
			comp.Type = history.OK
			fillReceipt(&comp, receipt)
			comp.Values = make([]int64, 0, len(found))
			for e := range found {
				comp.Values = append(comp.Values, e)
			}
			slices.Sort(comp.Values)
			r.rec.Append(comp)
			return found, nil
		}
		comp.Type = completionType(false, err)
		fillError(&comp, err)
		r.rec.Append(comp)
		lastErr = err
		time.Sleep(500 * time.Millisecond)
	}
	return nil, lastErr
}

func (r *runner) scanAll(ctx context.Context) (map[int64]bool, client.Receipt, error) {
	found := map[int64]bool{}
	start := []byte(setPrefix)
	end := client.PrefixEnd([]byte(setPrefix))
	var receipt client.Receipt
	for page := 0; page < 100000; page++ {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := r.routed.Scan(sctx, client.WithKeyspace(Keyspace), client.WithConsistency(client.All), client.WithRange(start, end), client.WithLimit(1000))
		cancel()
		if err != nil {
			return nil, receipt, err
		}
		receipt = res.Receipt
		for _, kv := range res.Items {
			e, ok := elementOf(string(kv.Key))
			if !ok {
				continue
			}
			found[e] = true
		}
		if !res.More {
			return found, receipt, nil
		}
		if len(res.NextStart) == 0 {
			return nil, receipt, errors.New("scan said more but gave no next start")
		}
		start = res.NextStart
	}
	return nil, receipt, errors.New("scan did not end after 100000 pages")
}

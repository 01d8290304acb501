package replication

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/api/ring"
	"github.com/adaptkv/adaptkv/replication/quorum"
	"github.com/adaptkv/adaptkv/storage"
)

// scanPlan is one scan attempt's view of the cluster, computed by the
// shell.
type scanPlan struct {
	ks     KeyspaceConfig
	pol    quorum.Policy
	ranges []ring.Range // the ring's token ranges with their N replicas
	nodes  []string     // the members gossip reports alive
}

// scanOp is one scan as a state machine; see core.go and Coordinator.Scan.
//
// Keys are placed by hash, so any key of the range may live in any token
// range of the ring: every alive node is asked for its records in the key
// range, and the scan answers only if every token range has at least R of
// its N replicas among the nodes that answered. Then every key has been
// seen by R of its replicas, and for each key the newest version among
// them wins.
type scanOp struct {
	self       string
	keyspace   string
	start, end []byte
	limit      int
	metrics    *Metrics

	attempt int
	phase   scanPhase
	plan    scanPlan
	rcpt    Receipt
	sends   map[int]string
	next    int

	answered map[string]bool
	failed   map[string]string
	newest   uint64
	merged   map[string]storage.Record
	// bound is the smallest last key among replicas that hit the limit:
	// beyond it some replica's records were cut off, so nothing past it
	// can be answered in this round.
	bound  []byte
	result ScanResult
}

type scanPhase uint8

const (
	scanPlanning scanPhase = iota
	scanGathering
	scanChecking
	scanCatchingUp
	scanFinished
)

// newScanOp returns the op for scanning [start, end) of keyspace.
func newScanOp(self, keyspace string, start, end []byte, limit int, m *Metrics) *scanOp {
	return &scanOp{self: self, keyspace: keyspace, start: start, end: end, limit: limit, metrics: m}
}

func (o *scanOp) begin() effects {
	o.attempt = 1
	return effects{plan: true}
}

func (o *scanOp) step(ev event) effects {
	switch ev.kind {
	case evPlanned:
		if o.phase == scanPlanning {
			return o.planned(ev.scan, ev.err)
		}
	case evReply:
		if o.phase == scanGathering {
			return o.replied(ev.reply)
		}
	case evDeadline:
		if o.phase == scanGathering {
			return o.answer(fmt.Errorf("scan: %w", ev.err))
		}
	case evLeaseChecked:
		if o.phase == scanChecking {
			if ev.err == nil {
				o.phase = scanFinished
				return effects{done: &answer{receipt: o.result.Receipt, scan: &o.result, observe: true}, finished: true}
			}
			if movedOn(ev.err) && o.attempt < maxEpochAttempts {
				o.metrics.EpochRetries.Add(1)
				return o.retry()
			}
			return o.answer(ev.err)
		}
	case evCaughtUp:
		if o.phase == scanCatchingUp {
			if ev.err != nil {
				return o.answer(ev.err)
			}
			return o.retry()
		}
	}
	return effects{}
}

func (o *scanOp) retry() effects {
	o.attempt++
	o.phase = scanPlanning
	return effects{plan: true}
}

func (o *scanOp) answer(err error) effects {
	o.phase = scanFinished
	o.result = ScanResult{Receipt: o.rcpt}
	return effects{done: &answer{err: err, receipt: o.rcpt, scan: &o.result}, finished: true}
}

func (o *scanOp) planned(p *scanPlan, err error) effects {
	o.rcpt = Receipt{}
	if err != nil {
		return o.answer(err)
	}
	o.plan = *p
	o.rcpt = Receipt{Policy: p.pol, Epoch: p.ks.Epoch}
	isAlive := func(id string) bool { return slices.Contains(p.nodes, id) }
	if least, short := coverage(p.ranges, p.pol.R, isAlive); len(short) > 0 {
		return o.answer(&QuorumError{Op: "scan", Answered: least, Required: p.pol.R, Err: ErrNotEnoughReplicas,
			Detail: describeGaps(short, len(p.ranges), p.pol.R, isAlive, func(string) string { return "down" })})
	}
	o.phase = scanGathering
	o.sends = map[int]string{}
	o.answered, o.failed, o.merged = map[string]bool{}, map[string]string{}, map[string]storage.Record{}
	o.newest, o.bound = 0, nil
	req := &kvpb.ReplicaScanRequest{Keyspace: o.keyspace, Epoch: p.ks.Epoch, Start: o.start, End: o.end, Limit: uint32(o.limit), From: o.self}
	var eff effects
	for _, id := range p.nodes {
		o.next++
		o.sends[o.next] = id
		eff.sends = append(eff.sends, send{id: o.next, to: id, kind: sendScan, scan: req})
	}
	if len(eff.sends) == 0 {
		eff.merge(o.gathered())
	}
	return eff
}

func (o *scanOp) replied(r reply) effects {
	id, ok := o.sends[r.id]
	if !ok {
		return effects{}
	}
	delete(o.sends, r.id)
	err := r.err
	if err == nil && r.scan.GetKnownEpoch() > 0 {
		known := r.scan.GetKnownEpoch()
		o.newest = max(o.newest, known)
		err = &EpochError{Keyspace: o.keyspace, Requested: o.plan.ks.Epoch, Known: known}
	}
	if err != nil {
		o.metrics.ReplicaErrors.Add(1)
		o.failed[id] = err.Error()
	} else {
		o.answered[id] = true
		recs := r.scan.GetRecords()
		for _, pr := range recs {
			rec := RecordFromPB(pr)
			if cur, ok := o.merged[string(rec.Key)]; !ok || cur.Version.Less(rec.Version) {
				o.merged[string(rec.Key)] = rec
			}
		}
		if o.limit > 0 && len(recs) >= o.limit {
			last := recs[len(recs)-1].GetKey()
			if o.bound == nil || bytes.Compare(last, o.bound) < 0 {
				o.bound = last
			}
		}
	}
	if len(o.sends) > 0 {
		return effects{}
	}
	return o.gathered()
}

// gathered decides the attempt once every node has answered or failed.
func (o *scanOp) gathered() effects {
	p := o.plan
	var eff effects
	if o.newest > p.ks.Epoch {
		eff.noteEpoch = o.newest
	}
	hasAnswered := func(id string) bool { return o.answered[id] }
	least, short := coverage(p.ranges, p.pol.R, hasAnswered)
	if len(short) > 0 {
		if o.newest > p.ks.Epoch && o.attempt < maxEpochAttempts {
			// A replica's refusal cost the coverage: catch up, run again.
			o.phase = scanCatchingUp
			o.metrics.EpochRetries.Add(1)
			eff.catchUp = o.newest
			return eff
		}
		why := func(id string) string {
			if e, ok := o.failed[id]; ok {
				return e
			}
			return "down"
		}
		eff.merge(o.answer(&QuorumError{Op: "scan", Answered: least, Required: p.pol.R, Err: ErrQuorumNotReached,
			Detail: describeGaps(short, len(p.ranges), p.pol.R, hasAnswered, why)}))
		return eff
	}
	keys := make([]string, 0, len(o.merged))
	for k := range o.merged {
		if o.bound == nil || bytes.Compare([]byte(k), o.bound) <= 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	res := ScanResult{Receipt: o.rcpt}
	for _, k := range keys {
		rec := o.merged[k]
		if o.limit > 0 && len(res.Records) == o.limit {
			res.More = true
			break
		}
		if !rec.Tombstone {
			res.Records = append(res.Records, rec)
		}
	}
	if o.bound != nil {
		res.More = true
	}
	if res.More {
		var last []byte
		if len(res.Records) > 0 {
			last = res.Records[len(res.Records)-1].Key
		} else {
			last = o.bound
		}
		res.NextStart = append(append([]byte{}, last...), 0)
	}
	res.Acked = least
	o.result = res
	o.phase = scanChecking
	eff.checkLease = &o.plan.ks
	return eff
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

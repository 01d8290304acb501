package node

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/adaptkv/adaptkv/api/kvpb"
	"github.com/adaptkv/adaptkv/replication/health"
	"github.com/adaptkv/adaptkv/tuner"
)

// DefaultHealthWindow is Config.HealthWindow's default. With the
// detector's three bad windows to flag, a node that turns slow is flagged
// in 6-8 s and reinstated as fast once it recovers (issue 16 asks for 10 s
// and 30 s). A window then needs 10 requests a second to a node for the
// detector's 20-sample minimum: below that load nothing is judged, which
// is right, since a nearly idle cluster has nothing to protect. The cost is
// one small RPC per node per window on the metadata leader.
const DefaultHealthWindow = 2 * time.Second

// maxHealthDecisions is how many health decisions the metadata log keeps.
const maxHealthDecisions = 50

// nodeHealth is the node's shell around the pure detector
// (replication/health): on every node it records each replica call's
// outcome by replica (it is the coordinator's CallObserver); on the
// metadata leader it also gathers every node's records each window, steps
// the detector, and records its decisions in the metadata log as "health"
// entries. Every node applies those entries (fsm.health), and its
// coordinator reads replicas flagged there last.
type nodeHealth struct {
	n      *Node
	window time.Duration
	params health.Params

	recs sync.Map // replica ID -> *callRec

	det      *health.Detector // leader loop only
	evidence atomic.Pointer[[]health.Evidence]
}

// callRec is this node's calls to one replica since the last snapshot,
// reads [0] and writes [1] apart (the detector judges them apart).
type callRec struct {
	mu     sync.Mutex
	sent   [2]uint64
	failed [2]uint64
	rtt    [2]tuner.Hist
	// total counts every call since start by operation and outcome, for
	// the adaptkv_replica_calls_total metric: [write][failed].
	total [2][2]uint64
}

func newNodeHealth(n *Node, window time.Duration) *nodeHealth {
	h := &nodeHealth{n: n, window: window, params: health.DefaultParams()}
	if n.cfg.HealthFlagAfter > 0 {
		h.params.FlagAfter = n.cfg.HealthFlagAfter
		h.params.ClearAfter = n.cfg.HealthFlagAfter
	}
	return h
}

// ReplicaCall implements replication.CallObserver.
func (h *nodeHealth) ReplicaCall(to string, write bool, rtt time.Duration, ok bool) {
	v, found := h.recs.Load(to)
	if !found {
		v, _ = h.recs.LoadOrStore(to, &callRec{})
	}
	r := v.(*callRec)
	k := b2i(write)
	r.mu.Lock()
	r.sent[k]++
	r.total[k][b2i(!ok)]++
	if ok {
		r.rtt[k].Record(rtt)
	} else {
		r.failed[k]++
	}
	r.mu.Unlock()
}

// snapshot returns this node's samples since the last snapshot and starts
// afresh.
func (h *nodeHealth) snapshot() []health.Sample {
	var out []health.Sample
	h.recs.Range(func(k, v any) bool {
		r := v.(*callRec)
		r.mu.Lock()
		for i := range 2 {
			if r.sent[i] > 0 {
				out = append(out, health.Sample{Coordinator: h.n.cfg.ID, Replica: k.(string), Write: i == 1,
					Sent: r.sent[i], Failed: r.failed[i], Latency: r.rtt[i].Quantile(0.5)})
			}
			r.sent[i], r.failed[i] = 0, 0
			r.rtt[i].Reset()
		}
		r.mu.Unlock()
		return true
	})
	return out
}

// flagged reports whether the metadata log has node id flagged.
func (h *nodeHealth) flagged(id string) bool {
	_, ok := h.n.meta.health.Load().Flagged[id]
	return ok
}

// loop runs on every node; it decides while this node leads the metadata
// log. A node whose window is negative does not detect (it still applies
// the leader's decisions, and records calls for a leader that does).
func (h *nodeHealth) loop(ctx context.Context) {
	if h.window <= 0 {
		return
	}
	tick := time.NewTicker(h.window)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if h.n.MetadataLeader() != h.n.cfg.ID {
			h.det = nil
			h.evidence.Store(nil)
			continue
		}
		if err := h.step(ctx); err != nil {
			h.n.log.Warn("health detector", "err", err)
			h.det = nil // start again from what the log says
		}
	}
}

// step gathers one window and records the decisions it leads to.
func (h *nodeHealth) step(ctx context.Context) error {
	if h.det == nil {
		h.det = health.New(h.params)
		var flagged []string
		for id := range h.n.meta.health.Load().Flagged {
			flagged = append(flagged, id)
		}
		h.det.Restore(flagged)
	}
	w := health.Window{End: time.Now(), Members: h.ringMembers(), Samples: h.gather(ctx)}
	decs, ev := h.det.Step(w)
	h.evidence.Store(&ev)
	for _, d := range decs {
		b, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("encode health decision: %w", err)
		}
		if _, err := propose(ctx, h.n.raft, command{Op: "health", Health: b, AtUnixMs: d.At.UnixMilli()}); err != nil {
			return fmt.Errorf("record health decision on %s: %w", d.Node, err)
		}
		h.n.log.Warn("health decision", "node", d.Node, "flag", d.Flag, "why", d.Reason, "evidence", d.Evidence.String())
	}
	return nil
}

// ringMembers are the members the detector judges: those in normal state
// on the ring (a joining or leaving node's load is not comparable).
func (h *nodeHealth) ringMembers() []string {
	var out []string
	if st := h.n.meta.topo.Load(); st != nil {
		for _, m := range st.Members {
			if m.State == StateNormal {
				out = append(out, m.ID)
			}
		}
	}
	slices.Sort(out)
	return out
}

// gather collects every live node's samples, this node's included.
func (h *nodeHealth) gather(ctx context.Context) []health.Sample {
	samples := h.snapshot()
	var mu sync.Mutex
	h.n.eachAlivePeer(ctx, min(h.window, 2*time.Second), func(ctx context.Context, id string, c kvpb.AdminClient) {
		resp, err := c.HealthSnapshot(ctx, &kvpb.HealthSnapshotRequest{})
		if err != nil {
			h.n.log.Debug("health snapshot failed", "member", id, "err", err)
			return
		}
		var s []health.Sample
		if err := json.Unmarshal(resp.GetSamplesJson(), &s); err != nil {
			h.n.log.Warn("health snapshot undecodable", "member", id, "err", err)
			return
		}
		for i := range s {
			s[i].Coordinator = id // a node reports only its own calls
		}
		mu.Lock()
		samples = append(samples, s...)
		mu.Unlock()
	})
	return samples
}

// healthState is the metadata log's health record: the flagged nodes with
// the decision that flagged each, and the recent decisions.
type healthState struct {
	Flagged map[string]health.Decision `json:"flagged"`
	Recent  []health.Decision          `json:"recent"`
}

// applyHealth applies a "health" entry.
func (f *fsm) applyHealth(raw json.RawMessage, index uint64) applyResult {
	var d health.Decision
	if err := json.Unmarshal(raw, &d); err != nil || d.Node == "" {
		return applyResult{err: fmt.Errorf("metadata entry %d: undecodable health decision: %v", index, err)}
	}
	cur := f.health.Load()
	next := &healthState{Flagged: make(map[string]health.Decision, len(cur.Flagged)+1)}
	for k, v := range cur.Flagged {
		next.Flagged[k] = v
	}
	if d.Flag {
		next.Flagged[d.Node] = d
	} else {
		delete(next.Flagged, d.Node)
	}
	next.Recent = append(slices.Clone(cur.Recent), d)
	if len(next.Recent) > maxHealthDecisions {
		next.Recent = next.Recent[len(next.Recent)-maxHealthDecisions:]
	}
	f.health.Store(next)
	return applyResult{}
}

// HealthSnapshot implements the Admin RPC the leader's detector gathers.
func (s adminServer) HealthSnapshot(ctx context.Context, req *kvpb.HealthSnapshotRequest) (*kvpb.HealthSnapshotResponse, error) {
	b, err := json.Marshal(s.n.gray.snapshot())
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvpb.HealthSnapshotResponse{NodeId: s.n.cfg.ID, SamplesJson: b}, nil
}

// Health implements the Admin RPC behind `adaptkv doctor`.
func (s adminServer) Health(ctx context.Context, req *kvpb.HealthRequest) (*kvpb.HealthResponse, error) {
	st := s.n.meta.health.Load()
	resp := &kvpb.HealthResponse{NodeId: s.n.cfg.ID, Leader: s.n.MetadataLeader() == s.n.cfg.ID, Enabled: s.n.gray.window > 0}
	var err error
	if resp.FlaggedJson, err = json.Marshal(st.Flagged); err != nil {
		return nil, toStatus(err)
	}
	if resp.DecisionsJson, err = json.Marshal(st.Recent); err != nil {
		return nil, toStatus(err)
	}
	if ev := s.n.gray.evidence.Load(); ev != nil {
		if resp.EvidenceJson, err = json.Marshal(*ev); err != nil {
			return nil, toStatus(err)
		}
	}
	return resp, nil
}

// flagReason is the reason a member is flagged, "" if it is not.
func (n *Node) flagReason(id string) (bool, string) {
	d, ok := n.meta.health.Load().Flagged[id]
	return ok, d.Reason
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

var replicaCallsDesc = prometheus.NewDesc("adaptkv_replica_calls_total",
	"Replica requests this node sent as coordinator, by replica, operation (read or write) and outcome (ok or failed): which replicas serve the reads, and which fail.",
	[]string{"replica", "op", "outcome"}, nil)

// Describe implements prometheus.Collector.
func (h *nodeHealth) Describe(ch chan<- *prometheus.Desc) { ch <- replicaCallsDesc }

// Collect implements prometheus.Collector: the counts are read at scrape
// time, so the data path pays no label lookup.
func (h *nodeHealth) Collect(ch chan<- prometheus.Metric) {
	h.recs.Range(func(k, v any) bool {
		r := v.(*callRec)
		r.mu.Lock()
		total := r.total
		r.mu.Unlock()
		for w, op := range []string{"read", "write"} {
			for f, outcome := range []string{"ok", "failed"} {
				ch <- prometheus.MustNewConstMetric(replicaCallsDesc, prometheus.CounterValue, float64(total[w][f]), k.(string), op, outcome)
			}
		}
		return true
	})
}

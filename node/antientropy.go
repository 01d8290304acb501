package node

// Scheduled anti-entropy: while this node leads the metadata log, it runs
// a repair pass (replication/antientropy, merkle method) of each keyspace
// every Config.AntiEntropyInterval, paced to Config.AntiEntropyRate, and
// the metrics of every pass this node runs.

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Scheduled anti-entropy defaults.
const (
	// DefaultAntiEntropyInterval is Config.AntiEntropyInterval's default.
	// Why not shorter? A pass scans every key on every node, even when the
	// trees agree. Why not longer? Replicas that missed writes past the
	// hint window (3 h) stay behind until a pass; an hour keeps that well
	// inside the tombstone grace period (24 h), after which a missed delete
	// could come back.
	DefaultAntiEntropyInterval = time.Hour
	// DefaultAntiEntropyRate is Config.AntiEntropyRate's default, in bytes
	// per second per node: a pass over replicas that agree sends a few
	// hashes and is not slowed by it; one that finds much to repair
	// streams at most this much from each node.
	DefaultAntiEntropyRate = 4 << 20
	// antiEntropyRetry is the most a failed scheduled pass waits before it
	// is tried again.
	antiEntropyRetry = time.Minute
)

// scheduler runs the scheduled passes. Only the metadata leader schedules,
// and at most one pass of a keyspace at a time; the passes are exclusive
// (antientropy.Options.Exclusive), so one that a former leader still runs,
// or one run by hand, makes a scheduled pass fail and retry rather than
// overlap it.
type scheduler struct {
	n        *Node
	interval time.Duration
	rate     int64

	mu      sync.Mutex
	term    uint64               // the leadership term of next; 0 when not leading
	next    map[string]time.Time // when each keyspace's next pass is due
	running map[string]bool
}

func newScheduler(n *Node) *scheduler {
	return &scheduler{n: n, interval: n.cfg.AntiEntropyInterval, rate: n.cfg.AntiEntropyRate,
		next: map[string]time.Time{}, running: map[string]bool{}}
}

// loop runs on every node until ctx ends; it does nothing when the interval
// is 0.
func (s *scheduler) loop(ctx context.Context) {
	if s.interval <= 0 {
		return
	}
	tick := time.NewTicker(min(max(s.interval/10, 50*time.Millisecond), 30*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.step(ctx, time.Now())
	}
}

// step starts the passes that are due. A node that becomes leader starts
// its schedule afresh: each keyspace's first pass one interval later (the
// former leader's schedule is not in the log).
func (s *scheduler) step(ctx context.Context, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n.MetadataLeader() != s.n.cfg.ID {
		s.term = 0
		return
	}
	if term := s.n.raft.CurrentTerm(); term != s.term {
		s.term = term
		s.next = map[string]time.Time{}
	}
	for _, d := range s.n.meta.Defs() {
		name := d.Name
		due, ok := s.next[name]
		switch {
		case s.running[name]:
			continue
		case !ok:
			s.next[name] = now.Add(s.interval)
			continue
		case now.Before(due):
			continue
		}
		s.running[name] = true
		s.n.goRun(func() { s.pass(ctx, name) })
	}
}

// pass runs one scheduled pass and schedules the next: one interval after
// a completed pass, sooner after a failed one.
func (s *scheduler) pass(ctx context.Context, name string) {
	log := s.n.log.With("keyspace", name)
	log.Info("scheduled anti-entropy pass starting")
	_, err := s.n.RepairKeyspace(ctx, name, RepairOptions{RateLimit: s.rate, Exclusive: true}, nil)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, name)
	if err != nil {
		log.Warn("scheduled anti-entropy pass failed; it will be tried again", "err", err)
		s.next[name] = now.Add(min(s.interval, antiEntropyRetry))
		return
	}
	s.next[name] = now.Add(s.interval)
}

// repairMetrics are the metrics of the passes this node runs (scheduled,
// by hand through this node, or the tuner's), by keyspace. A pass's stats
// are summed over every node taking part, so each pass is counted once, on
// the node that ran it: sum the counters (and take the largest timestamp)
// over the cluster's nodes.
type repairMetrics struct {
	passes                                                   *prometheus.CounterVec
	rangesCompared, rangesDiffering, keysRepaired, bytesSent *prometheus.CounterVec
	lastCompleted                                            *prometheus.GaugeVec
}

func newRepairMetrics() *repairMetrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "adaptkv", Subsystem: "antientropy", Name: name, Help: help}, labels)
	}
	return &repairMetrics{
		passes:          counter("passes_total", "Anti-entropy passes this node ran, by keyspace and outcome (completed or failed).", "keyspace", "outcome"),
		rangesCompared:  counter("ranges_compared_total", "Token ranges whose Merkle trees a pass compared, once per pair of replicas.", "keyspace"),
		rangesDiffering: counter("ranges_differing_total", "Compared token ranges whose trees differed.", "keyspace"),
		keysRepaired:    counter("keys_repaired_total", "Records a pass wrote to replicas that lacked them or held them older.", "keyspace"),
		bytesSent:       counter("bytes_sent_total", "Encoded size of a pass's requests between replicas and their responses.", "keyspace"),
		lastCompleted: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "adaptkv", Subsystem: "antientropy", Name: "last_completed_pass_timestamp_seconds",
			Help: "Unix time at which the last pass of the keyspace that this node ran completed."}, []string{"keyspace"}),
	}
}

func (m *repairMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.passes, m.rangesCompared, m.rangesDiffering, m.keysRepaired, m.bytesSent, m.lastCompleted}
}

// record counts a pass that ran (completed or not).
func (m *repairMetrics) record(name string, rep RepairReport, err error, now time.Time) {
	outcome := "completed"
	if err != nil {
		outcome = "failed"
	}
	m.passes.WithLabelValues(name, outcome).Inc()
	m.rangesCompared.WithLabelValues(name).Add(float64(rep.Stats.RangesCompared))
	m.rangesDiffering.WithLabelValues(name).Add(float64(rep.Stats.RangesDiffering))
	m.keysRepaired.WithLabelValues(name).Add(float64(rep.Stats.RecordsPushed))
	m.bytesSent.WithLabelValues(name).Add(float64(rep.Stats.BytesSent))
	if err == nil {
		m.lastCompleted.WithLabelValues(name).Set(float64(now.UnixNano()) / 1e9)
	}
}

package node

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/adaptkv/adaptkv/replication"
)

// metrics are a node's Prometheus metrics, in a registry of the node's own
// so that several nodes can run in one process (tests, the in-process
// cluster) without clashing.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	repairs  *repairMetrics
}

func newMetrics(n *Node) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "requests_total",
			Help: "Client requests coordinated by this node, by operation, consistency level and outcome (a gRPC code).",
		}, []string{"op", "level", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "adaptkv", Name: "request_duration_seconds",
			Help: "Latency of client requests coordinated by this node, by operation and consistency level.",
			// 100 µs to ~6.5 s: loopback reads sit at the bottom, fsynced
			// writes and replica timeouts at the top.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17),
		}, []string{"op", "level"}),
		repairs: newRepairMetrics(),
	}
	reg.MustRegister(m.repairs.collectors()...)
	if sec := n.cfg.Security; sec != nil {
		// Read at each scrape, so a reloaded certificate shows at once.
		for kind, notAfter := range map[string]func() time.Time{"node": sec.NotAfter, "ca": sec.CANotAfter} {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: "adaptkv", Name: "cert_expiry_seconds",
				Help:        "Seconds until this node's certificate (kind=node) or the CA's (kind=ca) expires; negative once expired. Absent on an --insecure node.",
				ConstLabels: prometheus.Labels{"kind": kind},
			}, func() float64 { return time.Until(notAfter()).Seconds() }))
		}
	}
	cm := n.coord.Metrics()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.latency, n.tuning.predicted, n.tuning.observed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "adaptkv", Name: "hints_pending",
			Help: "Hints stored on this node awaiting delivery to a replica.",
		}, func() float64 { return float64(n.hints.Pending()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "hints_delivered_total",
			Help: "Hints delivered to their replica.",
		}, func() float64 { return float64(n.hints.Delivered()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "hints_dropped_total",
			Help: "Hints not stored because the hint store was full or their replica had been unreachable for longer than the hint window.",
		}, func() float64 { return float64(n.hints.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "hints_expired_total",
			Help: "Hints removed undelivered because they were older than the hint window (--max-hint-window); their replica needs a repair.",
		}, func() float64 { return float64(n.hints.Expired()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "hints_stored_total",
			Help: "Hints stored by this node's coordinator.",
		}, func() float64 { return float64(cm.HintsStored.Load()) }),
		readRepairs{cm},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "digest_fetches_total",
			Help: "Reads whose newest version came only from replicas that sent digests, so that its value took a second round.",
		}, func() float64 { return float64(cm.DigestFetches.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "replica_errors_total",
			Help: "Replica requests from this coordinator that failed, timed out or were refused.",
		}, func() float64 { return float64(cm.ReplicaErrors.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "epoch_retries_total",
			Help: "Operations run again after a replica reported a newer configuration epoch.",
		}, func() float64 { return float64(cm.EpochRetries.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "paxos_backoffs_total",
			Help: "Backoffs (with jitter) of conditional and linearizable operations this node coordinated after a refused, failed or timed-out Paxos round: the contention on their keys.",
		}, func() float64 { return float64(cm.PaxosBackoffs.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "paxos_leased_total",
			Help: "Conditional writes this node coordinated that proposed under the lease the key's previous one left here: one round trip, no prepare.",
		}, func() float64 { return float64(cm.PaxosLeased.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "paxos_widened_total",
			Help: "Proposals this node coordinated that went to a quorum of replicas first (thrifty) and then to all: one of the quorum refused, failed or was slower than the hedge.",
		}, func() float64 { return float64(cm.PaxosWidened.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "storage_syncs_total",
			Help: "fsyncs of the storage engine's write-ahead log (group commit shares one among concurrent writes).",
		}, func() float64 { return float64(n.engine.Metrics().Syncs) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "storage_row_cache_hits_total",
			Help: "Point reads (client reads and the write path's version checks) answered by the storage row cache.",
		}, func() float64 { return float64(n.engine.Metrics().RowCacheHits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "storage_row_cache_misses_total",
			Help: "Point reads that the storage row cache could not answer.",
		}, func() float64 { return float64(n.engine.Metrics().RowCacheMisses) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "storage_mutations_total",
			Help: "Mutations written to the storage engine.",
		}, func() float64 { return float64(n.engine.Metrics().Mutations) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "adaptkv", Name: "requests_shed_total",
			Help: "Client requests refused with RESOURCE_EXHAUSTED (OVERLOADED) because the node had its maximum in flight.",
		}, func() float64 {
			if n.admission == nil {
				return 0
			}
			return float64(n.admission.shed.Load())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "adaptkv", Name: "requests_inflight",
			Help: "Client requests this node is coordinating now (admitted, not yet answered).",
		}, func() float64 {
			if n.admission == nil {
				return 0
			}
			return float64(n.admission.inflight.Load())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "adaptkv", Name: "metadata_applied_index",
			Help: "Last metadata log index applied on this node.",
		}, func() float64 { return float64(n.meta.applied.Load()) }),
	)
	return m
}

var readRepairsDesc = prometheus.NewDesc("adaptkv_read_repairs_total",
	"Replicas repaired by reads: in the foreground (before the read answered) or the background (after).",
	[]string{"mode"}, nil)

// readRepairs exports the coordinator's two repair counters as one labelled
// metric.
type readRepairs struct{ m *replication.Metrics }

func (r readRepairs) Describe(ch chan<- *prometheus.Desc) { ch <- readRepairsDesc }

func (r readRepairs) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(readRepairsDesc, prometheus.CounterValue, float64(r.m.ReadRepairsForeground.Load()), "foreground")
	ch <- prometheus.MustNewConstMetric(readRepairsDesc, prometheus.CounterValue, float64(r.m.ReadRepairsBackground.Load()), "background")
}

package zktree

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/metric"
)

type metrics struct {
	resyncs       prometheus.Counter
	resyncSeconds prometheus.Histogram
	divergence    *prometheus.CounterVec
	malformed     prometheus.Counter
	malformedNow  prometheus.Gauge
	revision      prometheus.Gauge
	lost          prometheus.Counter
}

// newMetrics makes the tree's metrics, named prefix_… (e.g.
// zkgate_registry_resync_divergence_total), and registers them when reg is
// not nil.
func newMetrics(prefix string, reg prometheus.Registerer) *metrics {
	m := &metrics{
		resyncs: metric.Counter(prefix+"_resyncs_total",
			"Full re-reads (after reconnects, new sessions and every resync interval)."),
		resyncSeconds: metric.Histogram(prefix+"_resync_duration_seconds",
			"Time a full re-read took.", prometheus.ExponentialBuckets(0.001, 4, 8)),
		divergence: metric.CounterVec(prefix+"_resync_divergence_total",
			"Nodes that a full resync found added, removed or changed although no watch had reported it.", "kind"),
		malformed: metric.Counter(prefix+"_malformed_total",
			"Malformed node versions seen (each skipped and logged once)."),
		malformedNow: metric.Gauge(prefix+"_malformed_nodes",
			"Nodes currently skipped because they are malformed."),
		revision: metric.Gauge(prefix+"_revision",
			"Revision of the latest snapshot."),
		lost: metric.Counter(prefix+"_session_lost_total",
			"Times the ZooKeeper session was lost while following the tree."),
	}
	metric.Preset(m.divergence, "added", "removed", "changed")
	if reg != nil {
		reg.MustRegister(m.resyncs, m.resyncSeconds, m.divergence, m.malformed, m.malformedNow, m.revision, m.lost)
	}
	return m
}

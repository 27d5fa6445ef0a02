package zktree

import "github.com/prometheus/client_golang/prometheus"

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
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prefix + "_resyncs_total",
			Help: "Full re-reads (after reconnects, new sessions and every resync interval).",
		}),
		resyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    prefix + "_resync_duration_seconds",
			Help:    "Time a full re-read took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		divergence: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_resync_divergence_total",
			Help: "Nodes that a full resync found added, removed or changed although no watch had reported it.",
		}, []string{"kind"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prefix + "_malformed_total",
			Help: "Malformed node versions seen (each skipped and logged once).",
		}),
		malformedNow: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: prefix + "_malformed_nodes",
			Help: "Nodes currently skipped because they are malformed.",
		}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: prefix + "_revision",
			Help: "Revision of the latest snapshot.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prefix + "_session_lost_total",
			Help: "Times the ZooKeeper session was lost while following the tree.",
		}),
	}
	for _, k := range []string{"added", "removed", "changed"} {
		m.divergence.WithLabelValues(k)
	}
	if reg != nil {
		reg.MustRegister(m.resyncs, m.resyncSeconds, m.divergence, m.malformed, m.malformedNow, m.revision, m.lost)
	}
	return m
}

package registry

import "github.com/prometheus/client_golang/prometheus"

type cacheMetrics struct {
	resyncs       prometheus.Counter
	resyncSeconds prometheus.Histogram
	divergence    *prometheus.CounterVec
	malformed     prometheus.Counter
	malformedNow  prometheus.Gauge
	revision      prometheus.Gauge
	lost          prometheus.Counter
}

func newCacheMetrics(reg prometheus.Registerer) *cacheMetrics {
	m := &cacheMetrics{
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkgate_registry_resyncs_total",
			Help: "Full re-reads of the registry (after reconnects, new sessions and every resync interval).",
		}),
		resyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zkgate_registry_resync_duration_seconds",
			Help:    "Time a full re-read of the registry took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		divergence: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zkgate_registry_resync_divergence_total",
			Help: "Registry nodes that a full resync found added, removed or changed although no watch had reported it.",
		}, []string{"kind"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkgate_registry_malformed_total",
			Help: "Malformed registry node versions seen (each skipped and logged once).",
		}),
		malformedNow: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zkgate_registry_malformed_nodes",
			Help: "Registry nodes currently skipped because they are malformed.",
		}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zkgate_registry_revision",
			Help: "Revision of the latest registry snapshot.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkgate_registry_session_lost_total",
			Help: "Times the ZooKeeper session was lost while following the registry.",
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

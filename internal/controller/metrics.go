package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zkgate/zkgate/internal/ctlclient"
)

// metrics are the controller's own series, zkgate_controller_…. The
// caches' and the session's series (zkgate_registry_…, zkgate_marks_…,
// zkgate_presence_…, zkgate_zookeeper_…) are registered next to them.
type metrics struct {
	requests       *prometheus.CounterVec
	drains         *prometheus.CounterVec
	drainSeconds   prometheus.Histogram
	marksWritten   prometheus.Counter
	marksCleared   *prometheus.CounterVec
	isLeader       prometheus.Gauge
	leaderChanges  prometheus.Counter
	reconciles     prometheus.Counter
	repairs        prometheus.Counter
	auditWrites    prometheus.Counter
	auditFailures  prometheus.Counter
	unknownOutcome prometheus.Counter
	marks          prometheus.GaugeFunc
	gateways       prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, marksCount, gatewaysCount func() float64) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zkgate_controller_api_requests_total",
			Help: "API requests by route pattern and status code.",
		}, []string{"route", "code"}),
		drains: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zkgate_controller_drains_total",
			Help: "Drains answered, by result (marked, drained, timeout, lost, superseded, error).",
		}, []string{"result"}),
		drainSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zkgate_controller_drain_confirm_seconds",
			Help:    "Time from a waiting drain's request to its confirmation.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 16),
		}),
		marksWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkgate_controller_marks_written_total",
			Help: "Marks written (created or overwritten) by this replica.",
		}),
		marksCleared: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zkgate_controller_marks_cleared_total",
			Help: "Marks deleted by this replica, by why (undrain, reregistered, reregistered_bound, expired, absent); reregistered_bound: the instance registered again but some gateway had not acknowledged it within the bound.",
		}, []string{"why"}),
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zkgate_controller_leader",
			Help: "1 while this replica is the elected leader running the background jobs.",
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkgate_controller_leadership_changes_total",
			Help: "Times this replica became or stopped being the leader.",
		}),
		reconciles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkgate_controller_reconciles_total",
			Help: "Periodic reconciliations run by the leader.",
		}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkgate_controller_reconcile_repairs_total",
			Help: "Changes a reconciliation made that the event-driven jobs had not (a sign of missed events).",
		}),
		auditWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkgate_controller_audit_entries_total",
			Help: "Audit entries written by this replica.",
		}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkgate_controller_audit_failures_total",
			Help: "Audit entries that could not be written.",
		}),
		unknownOutcome: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zkgate_controller_unknown_outcome_writes_total",
			Help: "ZooKeeper writes whose outcome was unknown and were re-read before retrying.",
		}),
		marks: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "zkgate_controller_marks",
			Help: "Marks currently in ZooKeeper, as this replica sees them.",
		}, marksCount),
		gateways: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "zkgate_controller_gateways",
			Help: "Live gateways (presence nodes), as this replica sees them.",
		}, gatewaysCount),
	}
	for _, r := range []string{ctlclient.StatusMarked, ctlclient.StatusDrained, ctlclient.StatusTimeout, ctlclient.StatusLost, ctlclient.StatusSuperseded, "error"} {
		m.drains.WithLabelValues(r)
	}
	for _, w := range []string{"undrain", "reregistered", "reregistered_bound", "expired", "absent"} {
		m.marksCleared.WithLabelValues(w)
	}
	reg.MustRegister(m.requests, m.drains, m.drainSeconds, m.marksWritten, m.marksCleared, m.isLeader,
		m.leaderChanges, m.reconciles, m.repairs, m.auditWrites, m.auditFailures, m.unknownOutcome,
		m.marks, m.gateways)
	return m
}

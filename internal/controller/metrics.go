package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/metric"
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
		requests: metric.CounterVec("zkgate_controller_api_requests_total",
			"API requests by route pattern and status code.", "route", "code"),
		drains: metric.CounterVec("zkgate_controller_drains_total",
			"Drains answered, by result (marked, drained, timeout, lost, superseded, error).", "result"),
		drainSeconds: metric.Histogram("zkgate_controller_drain_confirm_seconds",
			"Time from a waiting drain's request to its confirmation.", prometheus.ExponentialBuckets(0.002, 2, 16)),
		marksWritten: metric.Counter("zkgate_controller_marks_written_total",
			"Marks written (created or overwritten) by this replica."),
		marksCleared: metric.CounterVec("zkgate_controller_marks_cleared_total",
			"Marks deleted by this replica, by why (undrain, reregistered, reregistered_bound, expired, absent); reregistered_bound: the instance registered again but some gateway had not acknowledged it within the bound.", "why"),
		isLeader: metric.Gauge("zkgate_controller_leader",
			"1 while this replica is the elected leader running the background jobs."),
		leaderChanges: metric.Counter("zkgate_controller_leadership_changes_total",
			"Times this replica became or stopped being the leader."),
		reconciles: metric.Counter("zkgate_controller_reconciles_total",
			"Periodic reconciliations run by the leader."),
		repairs: metric.Counter("zkgate_controller_reconcile_repairs_total",
			"Changes a reconciliation made that the event-driven jobs had not (a sign of missed events)."),
		auditWrites: metric.Counter("zkgate_controller_audit_entries_total",
			"Audit entries written by this replica."),
		auditFailures: metric.Counter("zkgate_controller_audit_failures_total",
			"Audit entries that could not be written."),
		unknownOutcome: metric.Counter("zkgate_controller_unknown_outcome_writes_total",
			"ZooKeeper writes whose outcome was unknown and were re-read before retrying."),
		marks: metric.GaugeFunc("zkgate_controller_marks",
			"Marks currently in ZooKeeper, as this replica sees them.", marksCount),
		gateways: metric.GaugeFunc("zkgate_controller_gateways",
			"Live gateways (presence nodes), as this replica sees them.", gatewaysCount),
	}
	metric.Preset(m.drains, ctlclient.StatusMarked, ctlclient.StatusDrained, ctlclient.StatusTimeout, ctlclient.StatusLost, ctlclient.StatusSuperseded, "error")
	metric.Preset(m.marksCleared, "undrain", "reregistered", "reregistered_bound", "expired", "absent")
	reg.MustRegister(m.requests, m.drains, m.drainSeconds, m.marksWritten, m.marksCleared, m.isLeader,
		m.leaderChanges, m.reconciles, m.repairs, m.auditWrites, m.auditFailures, m.unknownOutcome,
		m.marks, m.gateways)
	return m
}

// Package ctlclient is a small typed client of the zkgate controller's HTTP
// JSON API, used by `zkgate drain|undrain|status|register|rollout`. It also
// holds the API's wire types, which the controller serves: the JSON shapes
// here are the API contract (add fields, never rename or remove them).
package ctlclient

import "github.com/zkgate/zkgate/internal/instancestate"

// Drain statuses (DrainResponse.Status).
const (
	// StatusMarked: the mark was written and the caller did not ask to wait.
	StatusMarked = "marked"
	// StatusDrained: confirmed. Every gateway that was live when the drain
	// started reports the mark applied (applied mzxid ≥ the mark's mzxid)
	// with zero requests in flight to the instance.
	StatusDrained = instancestate.Drained
	// StatusTimeout: the timeout passed before every gateway confirmed.
	StatusTimeout = "timeout"
	// StatusLost: the timeout passed while every other gateway had
	// confirmed but at least one gateway was lost (GatewayLost): its
	// presence node disappeared without a graceful shutdown — its ZooKeeper
	// session expired, typically because it is partitioned from ZooKeeper —
	// less than controller.departed_window before. Such a gateway may still
	// route by its last state (until its gateway.stale_after), so it never
	// counts as having acknowledged. This covers gateways that were live
	// when the drain started and went away during the wait as well as
	// gateways that had gone away shortly before it started. The drain
	// waits, up to its timeout, for the window to pass (the gateway is then
	// gone and no longer waited for) or for the gateway to come back, with
	// a new session, and report the mark applied with nothing in flight
	// (it then counts like any other). The drain is not confirmed.
	StatusLost = "lost"
	// StatusSuperseded: the mark stopped applying during the wait: it was
	// deleted (undrain, expiry, another controller) or the instance
	// registered again after it.
	StatusSuperseded = "superseded"
)

// Per-gateway drain states (GatewayDrain.State).
const (
	// GatewayPending: the gateway has not reported the mark yet.
	GatewayPending = "pending"
	// GatewayDraining: the gateway applies the mark; requests are in flight.
	GatewayDraining = instancestate.Draining
	// GatewayDrained: the gateway applies the mark; nothing is in flight
	// (this includes a gateway where the instance is not registered).
	GatewayDrained = instancestate.Drained
	// GatewayServing: the gateway has seen the mark but it does not apply
	// there (the instance registered again after it).
	GatewayServing = instancestate.Serving
	// GatewayLost: the gateway's presence node disappeared without a
	// graceful shutdown less than controller.departed_window ago and has
	// not come back: it may still route by its last state. The drain waits
	// for it (see StatusLost).
	GatewayLost = "lost"
	// GatewayGone: the gateway's presence node disappeared after a
	// graceful shutdown (its last report said it was leaving), its process
	// was found gone (nothing listens on its admin address, or another
	// process answers there: GatewayDrain.Detail says which), or it
	// disappeared more than controller.departed_window ago: it is no
	// longer waited for.
	GatewayGone = instancestate.Gone
	// GatewayAbsent: the gateway routes the service but has no
	// registration of the address (it sends it nothing).
	GatewayAbsent = instancestate.Absent
	// GatewayUnrouted: the gateway has no route for the service (it sends
	// the instance nothing, whatever the mark says).
	GatewayUnrouted = instancestate.Unrouted
)

// Instance states (InstanceView.State); see
// docs/architecture.md#instance-states.
const (
	StateServing  = instancestate.Serving
	StateDown     = instancestate.Down // the registry says the instance is not UP
	StateDraining = instancestate.Draining
	StateDrained  = instancestate.Drained
	// StateAbsent: marked but not registered.
	StateAbsent = instancestate.Absent
)

// ErrorResponse is the body of every 4xx/5xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
	// Outcome is OutcomeUnknown when a write may or may not have been
	// applied (503 only); empty otherwise.
	Outcome string `json:"outcome,omitempty"`
	// Registered lists the registered addresses of the service when a
	// drain names an address no registration has (404 unless
	// DrainRequest.AllowAbsent).
	Registered []string `json:"registered,omitempty"`
}

// OutcomeUnknown (ErrorResponse.Outcome) says the controller gave up on a
// ZooKeeper write (a drain's mark, an undrain's deletion) without knowing
// whether it was applied: the request may still be applied after the
// answer. Re-reading the mark did not settle it. Repeating the call is
// safe (both calls are idempotent); see IsOutcomeUnknown.
const OutcomeUnknown = "unknown"

// DrainRequest is the body of PUT /v1/services/{service}/instances/{addr}/drain.
// Durations are Go duration strings ("90s", "10m"); empty means the default.
// Unknown fields are rejected.
type DrainRequest struct {
	// Reason is required: it goes into the mark and the audit trail.
	Reason string `json:"reason"`
	// TTL is the mark's lifetime (default controller.mark_ttl).
	TTL string `json:"ttl,omitempty"`
	// Wait: answer only when the drain is confirmed or Timeout passes.
	Wait bool `json:"wait,omitempty"`
	// Timeout bounds the wait (default 2m, at most 1h).
	Timeout string `json:"timeout,omitempty"`
	// MinWait: with Wait, do not answer "drained" before this long has
	// passed (for clients that cache routes outside zkgate). Timeout still
	// bounds the whole wait.
	MinWait string `json:"min_wait,omitempty"`
	// DeployID is recorded in the mark and the audit trail.
	DeployID string `json:"deploy_id,omitempty"`
	// AllowAbsent writes the mark even when no registration of the service
	// has the address (for drains before the instance registers); without
	// it such a drain is refused with 404 and the registered addresses.
	// The query parameter allow_absent=true does the same.
	AllowAbsent bool `json:"allow_absent,omitempty"`
}

// MarkView is a mark as the API shows it.
type MarkView struct {
	Service   string `json:"service"`
	Addr      string `json:"addr"`
	Reason    string `json:"reason"`
	By        string `json:"by"`
	CreatedMs int64  `json:"created_ms"`
	ExpiresMs int64  `json:"expires_ms"`
	DeployID  string `json:"deploy_id,omitempty"`
	// Mzxid is the zxid of the mark's last write.
	Mzxid int64 `json:"mzxid"`
	// Incarnation and RegCzxid describe the registration of the address
	// when the mark was written (empty/0 when it was not registered): a
	// later registration with the same incarnation is that registration
	// re-created after a session flap and does not end the mark.
	Incarnation string `json:"incarnation,omitempty"`
	RegCzxid    int64  `json:"reg_czxid,omitempty"`
}

// GatewayDrain is one gateway's part in a drain.
type GatewayDrain struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// InFlight is the gateway's last reported in-flight count for the
	// instance.
	InFlight int64 `json:"in_flight"`
	// AppliedMzxid is the mzxid of the mark version the gateway applies
	// (0: not seen).
	AppliedMzxid int64 `json:"applied_mzxid,omitempty"`
	// AppliedMs and DrainedMs are when (ms after the drain started) the
	// controller first saw the gateway apply the mark and report zero in
	// flight; 0 when not (yet).
	AppliedMs int64 `json:"applied_ms,omitempty"`
	DrainedMs int64 `json:"drained_ms,omitempty"`
	// Error says why the gateway's presence report cannot be read (for
	// example a gateway of an incompatible version); such a gateway stays
	// pending: the drain is never confirmed while it is live.
	Error string `json:"error,omitempty"`
	// DepartedMs: for a lost or gone gateway, when (unix ms) the controller
	// saw its presence node disappear; 0 when unknown.
	DepartedMs int64 `json:"departed_ms,omitempty"`
	// Detail: for a departed gateway, why it is gone (its process was
	// found gone) or what the last probe of its admin address saw.
	Detail string `json:"detail,omitempty"`
}

// DrainResponse answers a drain.
type DrainResponse struct {
	Service string `json:"service"`
	Addr    string `json:"addr"`
	// Status is one of the Status* constants.
	Status string `json:"status"`
	// Confirmed is true exactly when Status is "drained".
	Confirmed bool   `json:"confirmed"`
	Message   string `json:"message,omitempty"`
	// Warning says something the caller may want to know, e.g. that the
	// address is not registered (draining ahead is allowed).
	Warning string   `json:"warning,omitempty"`
	Mark    MarkView `json:"mark"`
	// ElapsedMs is the time from the request to the answer.
	ElapsedMs int64 `json:"elapsed_ms"`
	// Gateways are the gateways live when the drain started (with Wait).
	Gateways []GatewayDrain `json:"gateways"`
}

// UndrainRequest is the optional body of DELETE …/drain.
type UndrainRequest struct {
	Reason string `json:"reason,omitempty"`
}

// UndrainResponse answers DELETE …/drain.
type UndrainResponse struct {
	Service string `json:"service"`
	Addr    string `json:"addr"`
	// Removed is false when there was no mark.
	Removed bool `json:"removed"`
	// Mark is the mark that was removed.
	Mark *MarkView `json:"mark,omitempty"`
}

// ServiceSummary is one service in GET /v1/services.
type ServiceSummary struct {
	Name string `json:"name"`
	// Instances counts registered addresses.
	Instances int `json:"instances"`
	// Up counts registered addresses whose registry status is UP.
	Up int `json:"up"`
	// Marked counts marks that apply (registered or not).
	Marked int `json:"marked"`
}

// ServicesResponse answers GET /v1/services.
type ServicesResponse struct {
	Services []ServiceSummary `json:"services"`
	// Skipped lists, sorted, the registry's services whose names the API
	// refuses (see README.md, Controller API): they are not in Services,
	// and zkgate cannot drain their instances. Names may hold any
	// character: escape them before showing them.
	Skipped []string `json:"skipped,omitempty"`
}

// GatewayInstance is one gateway's view of an instance that has a mark
// (applying or not).
type GatewayInstance struct {
	ID string `json:"id"`
	// State is what the gateway reports for the mark's version (or a newer
	// one): pending when it has not reported it yet; draining or drained
	// while the mark applies there; absent (routes the service, has no
	// registration of the address); unrouted (no route for the service);
	// otherwise the instance's own state at the gateway (warming, serving,
	// down, ejected): the mark does not apply there, e.g. because the
	// gateway has seen the instance register again after it.
	State        string `json:"state"`
	InFlight     int64  `json:"in_flight"`
	AppliedMzxid int64  `json:"applied_mzxid,omitempty"`
}

// InstanceView is one address of a service: registry data, mark and, for
// marked instances, each live gateway's state.
type InstanceView struct {
	Service string `json:"service"`
	Addr    string `json:"addr"`
	// State is one of the State* constants.
	State string `json:"state"`
	// Registered is false for a marked address not in the registry.
	Registered bool   `json:"registered"`
	Host       string `json:"host,omitempty"`
	Port       int    `json:"port,omitempty"`
	ID         string `json:"id,omitempty"`
	Node       string `json:"node,omitempty"`
	Czxid      int64  `json:"czxid,omitempty"`
	// RegisteredMs is the registration's ctime (display only).
	RegisteredMs int64 `json:"registered_ms,omitempty"`
	// Incarnation tells a session flap from a restart (registry.Instance):
	// a registration created after a mark ends it only when its
	// incarnation differs from the one the mark recorded.
	Incarnation string            `json:"incarnation,omitempty"`
	Status      string            `json:"status,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	// Mark is the address's mark, if any; Marked says whether it applies
	// (it does not once the instance registered again after it, or after
	// it expired).
	Mark   *MarkView `json:"mark,omitempty"`
	Marked bool      `json:"marked"`
	// Gateways are every live gateway's states for the mark, when there is
	// one (whether it applies or not).
	Gateways []GatewayInstance `json:"gateways,omitempty"`
	// Acknowledged: the instance registered again after its mark
	// (registration czxid > mark mzxid) and every live gateway has
	// acknowledged that through its presence report: it reports the mark's
	// version with the instance in a state other than draining, drained or
	// absent (or has no route for the service). The leader deletes such a
	// mark.
	Acknowledged bool `json:"acknowledged,omitempty"`
	// Traffic is what the live gateways send the instance, over the last
	// few seconds (see Traffic); nil while the answering controller
	// replica has no traffic figures yet (TrafficStatus).
	Traffic *Traffic `json:"traffic,omitempty"`
	// Timeline lists the instance's state changes as the answering
	// controller replica saw them since it started (see TimelineEntry),
	// oldest first, at most TimelineLimit entries; empty for an instance
	// that was never marked.
	Timeline []TimelineEntry `json:"timeline,omitempty"`
}

// Traffic is an instance's traffic summed over the live gateways (README.md,
// Controller API: traffic). Rates are per second over the last
// TrafficStatus.WindowMs; InFlight is the latest count.
type Traffic struct {
	RPS        float64 `json:"rps"`
	InFlight   int64   `json:"in_flight"`
	ErrorsPerS float64 `json:"errors_per_s"`
	// ByGateway is the same per gateway id (gateways that know the
	// instance).
	ByGateway map[string]GatewayTraffic `json:"by_gateway"`
	// History is the sum over gateways, one point per poll, oldest first
	// (at most TrafficHistoryLimit points), for charts.
	History []TrafficPoint `json:"history,omitempty"`
}

// GatewayTraffic is an instance's traffic at one gateway.
type GatewayTraffic struct {
	RPS        float64 `json:"rps"`
	InFlight   int64   `json:"in_flight"`
	ErrorsPerS float64 `json:"errors_per_s"`
	// State is the instance's state at the gateway (warming, serving,
	// draining, drained, down, ejected, gone).
	State string `json:"state,omitempty"`
}

// TrafficPoint is one point of Traffic.History.
type TrafficPoint struct {
	AtMs       int64   `json:"at_ms"`
	RPS        float64 `json:"rps"`
	ErrorsPerS float64 `json:"errors_per_s"`
	InFlight   int64   `json:"in_flight"`
}

// TrafficHistoryLimit bounds Traffic.History.
const TrafficHistoryLimit = 60

// TrafficStatus says where ServiceResponse's traffic figures come from.
type TrafficStatus struct {
	// AtMs is when the answering replica last polled the gateways (0:
	// not yet: polling starts with the first GET /v1/services/{service}
	// and stops after a minute without one).
	AtMs int64 `json:"at_ms"`
	// WindowMs is the span rates are computed over.
	WindowMs int64 `json:"window_ms"`
	// IntervalMs is the pause between two polls.
	IntervalMs int64 `json:"interval_ms"`
	// Polled counts the gateways whose counters are in the figures.
	Polled int `json:"polled"`
	// Errors says, by gateway id, why a live gateway's counters could not
	// be read at the last poll.
	Errors map[string]string `json:"errors,omitempty"`
}

// TimelineEntry is one state change of an instance (Timeline): draining,
// drained, gone (deregistered), warming (registered again, some gateway
// ramps its weight), serving, down (registry status not UP).
type TimelineEntry struct {
	State string `json:"state"`
	AtMs  int64  `json:"at_ms"`
	// DeployID is the deploy id of the mark in force at the change, if any.
	DeployID string `json:"deploy_id,omitempty"`
}

// TimelineLimit bounds InstanceView.Timeline.
const TimelineLimit = 24

// ServiceResponse answers GET /v1/services/{service}.
type ServiceResponse struct {
	Service   string         `json:"service"`
	Instances []InstanceView `json:"instances"`
	// LiveGateways is the number of gateways with a presence node.
	LiveGateways int `json:"live_gateways"`
	// Traffic describes the instances' traffic figures (see Traffic).
	Traffic *TrafficStatus `json:"traffic,omitempty"`
}

// AppliedMark is one mark as a gateway applies it, in its presence
// report and in GET /v1/gateways. It is also the format every gateway
// writes to ZooKeeper (presence.AppliedMark is this type), which
// controllers of other versions read: a field added here is written to
// every presence node, so add only optional (omitempty) ones.
type AppliedMark struct {
	Service string `json:"service"`
	Addr    string `json:"addr"`
	// Mzxid identifies the version of the mark applied.
	Mzxid int64 `json:"mzxid"`
	// InFlight is the number of requests to the instance still in flight
	// at this gateway.
	InFlight int64 `json:"in_flight"`
	// State is the instance's state at this gateway:
	//   - draining or drained while the mark applies;
	//   - fail_open (presence.StateFailOpen) while the mark applies but every
	//     instance of the service is marked, so the gateway still sends
	//     the instance new requests (gateway.fail_open);
	//   - unrouted (presence.StateUnrouted) when the gateway has no route for the
	//     mark's service: it never sends the instance anything;
	//   - absent (presence.StateAbsent) when the gateway routes the service but has
	//     no registration of the address (none seen yet, or gone);
	//   - otherwise the instance's own state (warming, serving, down,
	//     ejected): the mark does not apply there, e.g. because the gateway
	//     has seen a registration of the address newer than the mark.
	//
	// The controller confirms a drain when every gateway reports the mark
	// with nothing in flight (draining/drained/absent/unrouted), and
	// removes a mark superseded by a re-registration once every gateway
	// reports it in a state other than draining, drained or absent.
	State string `json:"state"`
}

// GatewayView is one live gateway in GET /v1/gateways.
type GatewayView struct {
	ID          string `json:"id"`
	Listen      string `json:"listen"`
	AdminListen string `json:"admin_listen"`
	// AdminAddr is where controllers reach the gateway's admin endpoints
	// when AdminListen is bound to every interface (see the presence
	// node in README.md, ZooKeeper layout).
	AdminAddr string `json:"admin_addr,omitempty"`
	// ProbeReady: were the gateway's presence node to vanish without a
	// graceful leave, the controller would ask its admin address whether
	// its process is gone (controller.probe_departed): it has seen the
	// gateway answer there. Otherwise ProbeNote says why not, and such a
	// departure holds drains for the whole departed window.
	ProbeReady       bool          `json:"probe_ready"`
	ProbeNote        string        `json:"probe_note,omitempty"`
	Version          string        `json:"version"`
	StartedMs        int64         `json:"started_ms"`
	UpdatedMs        int64         `json:"updated_ms"`
	RegistryRevision uint64        `json:"registry_revision"`
	MarksRevision    uint64        `json:"marks_revision"`
	Session          string        `json:"session"`
	Marks            []AppliedMark `json:"marks"`
	// Leaving: the gateway reported that it is shutting down.
	Leaving bool `json:"leaving,omitempty"`
	// Error is set when the gateway's presence report cannot be decoded
	// (e.g. a gateway of an incompatible version): only ID, Session and
	// UpdatedMs (the node's mtime) are known, and drains are never
	// confirmed while it is live.
	Error string `json:"error,omitempty"`
}

// DepartedGateway is a gateway whose presence node disappeared less than
// controller.departed_window ago (as this controller replica saw it) and
// has not come back.
type DepartedGateway struct {
	ID      string `json:"id"`
	Session string `json:"session"`
	// DepartedMs is when (unix ms) the controller saw the node disappear.
	DepartedMs int64 `json:"departed_ms"`
	// UntilMs is when it stops being remembered (DepartedMs + the window).
	UntilMs int64 `json:"until_ms"`
	// Leaving: its last report said it was shutting down gracefully. When
	// false it may still route by its last state, and waiting drains
	// report it lost until UntilMs, until it comes back, or until its
	// process is found gone (Gone).
	Leaving bool `json:"leaving"`
	// Gone says why the controller knows the gateway's process is gone
	// (nothing listens on its admin address, or another process answers
	// there): it routes nothing and drains do not wait for it.
	Gone string `json:"gone,omitempty"`
	// Probe is what the last probe of its admin address saw when it found
	// no such evidence.
	Probe string `json:"probe,omitempty"`
}

// GatewaysResponse answers GET /v1/gateways.
type GatewaysResponse struct {
	Gateways []GatewayView `json:"gateways"`
	// Departed lists recently departed gateways (see DepartedGateway).
	Departed []DepartedGateway `json:"departed,omitempty"`
}

// Audit actions (AuditEntry.Action).
const (
	AuditDrain             = "drain"
	AuditUndrain           = "undrain"
	AuditClearReregistered = "clear-reregistered"
	AuditExpire            = "expire"
	AuditClearAbsent       = "clear-absent"
)

// AuditEntry is one change: who, when, why, what.
type AuditEntry struct {
	// Seq is the entry's sequence number in ZooKeeper (increasing).
	Seq    int64  `json:"seq"`
	TimeMs int64  `json:"time_ms"`
	By     string `json:"by"`
	// Action is one of the Audit* constants.
	Action   string `json:"action"`
	Service  string `json:"service"`
	Addr     string `json:"addr"`
	Reason   string `json:"reason,omitempty"`
	DeployID string `json:"deploy_id,omitempty"`
	// Detail says more, e.g. the mark's TTL or why a job acted.
	Detail string `json:"detail,omitempty"`
	// Controller is the id of the controller replica that made the change.
	Controller string `json:"controller"`
	// ID identifies the entry across retries.
	ID string `json:"id"`
}

// AuditResponse answers GET /v1/audit (newest first).
type AuditResponse struct {
	Entries []AuditEntry `json:"entries"`
}

// LeaderResponse answers GET /v1/leader.
type LeaderResponse struct {
	// ID is the answering replica's id.
	ID string `json:"id"`
	// IsLeader says whether the answering replica runs the jobs.
	IsLeader bool `json:"is_leader"`
	// Leader is the current leader's id as this replica knows it ("" when
	// unknown).
	Leader string `json:"leader"`
}

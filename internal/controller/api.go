package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/dashboard"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/zksession"
)

// writeTimeout bounds one ZooKeeper write made for an API call (a
// variable for tests).
var writeTimeout = 15 * time.Second

// Handler returns the API:
//
//	GET    /v1/services                                  service summaries
//	GET    /v1/services/{service}                        instances, marks, per-gateway states
//	PUT    /v1/services/{service}/instances/{addr}/drain write a mark (optionally wait for confirmation)
//	DELETE /v1/services/{service}/instances/{addr}/drain remove a mark
//	GET    /v1/gateways                                  live gateways and what they applied; recently departed ones
//	GET    /v1/audit?service=S&limit=N                   audit trail, newest first
//	GET    /v1/leader                                    which replica leads
//	GET    /healthz, /readyz, /metrics
//
// Mutating calls need "Authorization: Bearer <token>" with one of
// controller.tokens (401 without credentials, 403 with a token that is not
// accepted); GET /v1/… calls need one of controller.read_tokens or
// controller.tokens when read_tokens is set. Errors are JSON
// {"error": "..."}; bad input is 400 and writes nothing. A write given up
// without knowing whether ZooKeeper applied it (or still will) is 503 with
// {"error": "outcome unknown: ...", "outcome": "unknown"}, after the mark
// was re-read (a re-read that shows the write applied turns the answer
// into a success).
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/services", c.read(c.getServices))
	mux.HandleFunc("GET /v1/services/{service}", c.read(c.getService))
	mux.HandleFunc("PUT /v1/services/{service}/instances/{addr}/drain", c.write(c.putDrain))
	mux.HandleFunc("DELETE /v1/services/{service}/instances/{addr}/drain", c.write(c.deleteDrain))
	mux.HandleFunc("GET /v1/gateways", c.read(c.getGateways))
	mux.HandleFunc("GET /v1/audit", c.read(c.getAudit))
	mux.HandleFunc("GET /v1/leader", c.read(c.getLeader))
	mux.Handle("GET /ui/", dashboard.Handler())
	mux.Handle("GET /ui", dashboard.Handler())
	mux.HandleFunc("GET /healthz", c.healthz)
	mux.HandleFunc("GET /readyz", c.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.promReg, promhttp.HandlerOpts{}))
	return c.instrument(mux)
}

// handlerFunc is an API handler given the caller's identity.
type handlerFunc func(w http.ResponseWriter, r *http.Request, who string)

func (c *Controller) read(h handlerFunc) http.HandlerFunc  { return c.authorized(h, false) }
func (c *Controller) write(h handlerFunc) http.HandlerFunc { return c.authorized(h, true) }

func (c *Controller) authorized(h handlerFunc, mutating bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, code := c.auth.check(r, mutating)
		switch code {
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Bearer realm="zkgate"`)
			writeError(w, "", statusf(code, "authorization required: send Authorization: Bearer <token>"))
			return
		case http.StatusForbidden:
			writeError(w, "", statusf(code, "this token is not allowed to do this"))
			return
		}
		if actor := sanitizeActor(r.Header.Get("X-Zkgate-Actor")); actor != "" {
			who = actor + " via " + who
		}
		h(w, r, who)
	}
}

// sanitizeActor keeps a short printable actor name.
func sanitizeActor(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 64 {
		s = s[:64]
	}
	if checkText("actor", s, 64) != nil {
		return ""
	}
	return s
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (c *Controller) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		c.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away: nothing to do
}

// writeError answers err: its own status for a statusError (400 for input
// errors), 404 for a drain of an
// address that is not registered (with the registered addresses), 503 when ZooKeeper cannot be
// reached (with "outcome": "unknown" when a write may or may not have been
// applied), 500 otherwise.
func writeError(w http.ResponseWriter, what string, err error) {
	var se *statusError
	var ae *absentError
	switch {
	case errors.As(err, &se):
		writeJSON(w, se.code, ctlclient.ErrorResponse{Error: se.msg})
	case errors.As(err, &ae):
		writeJSON(w, http.StatusNotFound, ctlclient.ErrorResponse{Error: ae.msg, Registered: ae.registered})
	case errors.Is(err, errOutcomeUnknown):
		writeJSON(w, http.StatusServiceUnavailable, ctlclient.ErrorResponse{
			Error: fmt.Sprintf("%v (%s)", err, what), Outcome: ctlclient.OutcomeUnknown,
		})
	case errors.Is(err, errSessionGone), errors.Is(err, errStopping), errors.Is(err, zksession.ErrClosed),
		zksession.IsUnknownOutcome(err), errors.Is(err, errNotConnected):
		writeJSON(w, http.StatusServiceUnavailable, ctlclient.ErrorResponse{Error: fmt.Sprintf("%s: %v", what, err)})
	default:
		writeJSON(w, http.StatusInternalServerError, ctlclient.ErrorResponse{Error: fmt.Sprintf("%s: %v", what, err)})
	}
}

var errNotConnected = errors.New("not connected to ZooKeeper")

// reread settles a write whose outcome is unknown: it counts it
// (zkgate_controller_unknown_outcome_writes_total) and reports whether
// settled, a re-read bounded by rereadTimeout, found the write applied.
func (c *Controller) reread(ctx context.Context, settled func(context.Context) bool) bool {
	c.metrics.unknownOutcome.Inc()
	ctx, cancel := context.WithTimeout(ctx, rereadTimeout)
	defer cancel()
	return settled(ctx)
}

// target validates the {service} and {addr} path values.
func target(r *http.Request) (service, addr string, err error) {
	service = r.PathValue("service")
	if err := checkService(service); err != nil {
		return "", "", err
	}
	addr, err = checkAddr(r.PathValue("addr"))
	return service, addr, err
}

func (c *Controller) getServices(w http.ResponseWriter, r *http.Request, _ string) {
	rs, ms := c.reg.Snapshot(), c.marks.Snapshot()
	if rs == nil {
		writeError(w, "", statusf(http.StatusServiceUnavailable, "the registry is not loaded yet"))
		return
	}
	list, skipped := serviceSummaries(rs, ms, c.now())
	writeJSON(w, http.StatusOK, ctlclient.ServicesResponse{Services: list, Skipped: skipped})
}

func (c *Controller) getService(w http.ResponseWriter, r *http.Request, _ string) {
	service := r.PathValue("service")
	if err := checkService(service); err != nil {
		writeError(w, "service", err)
		return
	}
	rs, ms := c.reg.Snapshot(), c.marks.Snapshot()
	if rs == nil || ms == nil {
		writeError(w, "", statusf(http.StatusServiceUnavailable, "the registry and marks are not loaded yet"))
		return
	}
	v, ok := serviceView(service, rs, ms, c.presence.Gateways(), c.presence.Departed(), c.now())
	if !ok {
		writeError(w, "", statusf(http.StatusNotFound, "service %q has no instances and no marks", service))
		return
	}
	c.traffic.fill(&v)
	c.fillTimelines(&v)
	writeJSON(w, http.StatusOK, v)
}

func (c *Controller) getGateways(w http.ResponseWriter, r *http.Request, _ string) {
	if !c.presence.Loaded() {
		writeError(w, "", statusf(http.StatusServiceUnavailable, "the gateways' presence is not loaded yet"))
		return
	}
	gws := c.presence.Gateways()
	writeJSON(w, http.StatusOK, ctlclient.GatewaysResponse{
		Gateways: gatewayViews(gws, c.presence.ProbeReady),
		Departed: departedViews(c.presence.Departed(), gws, c.presence.DepartedWindow()),
	})
}

func (c *Controller) getLeader(w http.ResponseWriter, r *http.Request, _ string) {
	writeJSON(w, http.StatusOK, ctlclient.LeaderResponse{ID: c.id, IsLeader: c.elector.IsLeader(), Leader: c.elector.Leader()})
}

func (c *Controller) getAudit(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			writeError(w, "", badf("limit: %q is not a positive integer", s))
			return
		}
		limit = n
	}
	limit = min(limit, max(c.cfg.Controller.AuditLimit, 1))
	service := q.Get("service")
	if service != "" {
		if err := checkService(service); err != nil {
			writeError(w, "service", err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	defer cancel()
	entries, err := c.audit.List(ctx, service, limit)
	if err != nil {
		writeError(w, "reading the audit trail", err)
		return
	}
	writeJSON(w, http.StatusOK, ctlclient.AuditResponse{Entries: entries})
}

// drainParams is a validated drain request.
type drainParams struct {
	reason, deployID      string
	ttl, timeout, minWait time.Duration
	wait, allowAbsent     bool
}

func (c *Controller) parseDrain(w http.ResponseWriter, r *http.Request) (drainParams, error) {
	var req ctlclient.DrainRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return drainParams{}, err
	}
	p := drainParams{reason: strings.TrimSpace(req.Reason), deployID: strings.TrimSpace(req.DeployID), wait: req.Wait, allowAbsent: req.AllowAbsent}
	if v := r.URL.Query().Get("allow_absent"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return p, badf("allow_absent: %q is not true or false", v)
		}
		p.allowAbsent = p.allowAbsent || b
	}
	if p.reason == "" {
		return p, badf("reason is required")
	}
	if err := checkText("reason", p.reason, maxReasonLen); err != nil {
		return p, err
	}
	if err := checkText("deploy_id", p.deployID, maxDeployIDLen); err != nil {
		return p, err
	}
	var err error
	if p.ttl, err = parseDuration("ttl", req.TTL, c.cfg.Controller.MarkTTL, MaxMarkTTL); err != nil {
		return p, err
	}
	if p.ttl == 0 {
		return p, badf("ttl must be positive")
	}
	if p.timeout, err = parseDuration("timeout", req.Timeout, DefaultDrainTimeout, MaxDrainTimeout); err != nil {
		return p, err
	}
	if p.minWait, err = parseDuration("min_wait", req.MinWait, 0, MaxDrainTimeout); err != nil {
		return p, err
	}
	return p, nil
}

func (c *Controller) putDrain(w http.ResponseWriter, r *http.Request, who string) {
	start := time.Now()
	service, addr, err := target(r)
	if err == nil {
		var p drainParams
		p, err = c.parseDrain(w, r)
		if err == nil {
			c.drain(w, r, who, service, addr, p, start)
			return
		}
	}
	c.metrics.drains.WithLabelValues("error").Inc()
	writeError(w, "drain", err)
}

func (c *Controller) drain(w http.ResponseWriter, r *http.Request, who, service, addr string, p drainParams, start time.Time) {
	fail := func(what string, err error) {
		c.metrics.drains.WithLabelValues("error").Inc()
		c.log.Warn("drain failed", "service", service, "addr", addr, "err", err)
		writeError(w, what, err)
	}
	if s, _ := c.sess.State(); s != zksession.StateConnected {
		fail("drain", fmt.Errorf("%w (session %s)", errNotConnected, s))
		return
	}
	// The mark is written for the address as registered, however the
	// caller spelled it; an address no registration has is refused unless
	// the caller allows it (README.md, "A deploy with zkgate").
	tgt, err := c.drainTarget(r.Context(), service, addr, p.allowAbsent)
	if err != nil {
		fail("drain", err)
		return
	}
	addr = tgt.addr
	resp := ctlclient.DrainResponse{Service: service, Addr: addr, Gateways: []ctlclient.GatewayDrain{}}
	if !tgt.registered {
		resp.Warning = fmt.Sprintf("%s is not registered in service %q: the mark is written anyway (allow_absent; a later registration of this exact address clears it)", addr, service)
	} else if tgt.note != "" {
		resp.Warning = tgt.note
	}
	now := c.now()
	m := marks.Mark{
		Reason: p.reason, By: who, CreatedMs: now.UnixMilli(), ExpiresMs: now.Add(p.ttl).UnixMilli(),
		DeployID: p.deployID, Service: service, Addr: addr,
	}
	if tgt.registered {
		// What tells a session flap of this registration from a restart
		// (README.md, "ZooKeeper layout (contract)").
		m.Incarnation, m.RegCzxid = tgt.in.Incarnation, tgt.in.Czxid
	}
	wctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	written, err := c.store.putMark(wctx, m)
	cancel()
	if err != nil && zksession.IsUnknownOutcome(err) && r.Context().Err() == nil {
		// The write may still be applied after we stopped waiting for it:
		// look before answering.
		var got marks.Mark
		if c.reread(r.Context(), func(ctx context.Context) (ok bool) {
			got, ok = c.store.markWritten(ctx, m)
			return ok
		}) {
			c.log.Info("the mark write's outcome was unknown; re-reading found it written", "service", service, "addr", addr, "err", err)
			written, err = got, nil
		} else {
			err = fmt.Errorf("%w: the mark of %s/%s may or may not be written, and may still appear later "+
				"(re-reading it did not show it); repeat the drain (it is idempotent) or undrain to settle it: %w",
				errOutcomeUnknown, service, addr, err)
		}
	}
	if err != nil {
		fail("writing the mark", err)
		return
	}
	m = written
	c.metrics.marksWritten.Inc()
	c.log.Info("mark written", "service", service, "addr", addr, "by", who, "reason", p.reason, "ttl", p.ttl, "mzxid", m.Mzxid)
	// The audit entry is written while the drain is waited for, off the
	// confirmation's critical path; the answer waits for it.
	audited := make(chan struct{})
	go func() {
		defer close(audited)
		actx, acancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		defer acancel()
		c.audit.Record(actx, ctlclient.AuditEntry{
			By: who, Action: ctlclient.AuditDrain, Service: service, Addr: addr, Reason: p.reason,
			DeployID: p.deployID, Detail: fmt.Sprintf("ttl %s, mzxid %d", p.ttl, m.Mzxid),
		})
	}()
	defer func() { <-audited }()
	resp.Mark = markView(m)
	if !p.wait {
		resp.Status = ctlclient.StatusMarked
		resp.Message = "mark written; not waiting for confirmation"
		resp.ElapsedMs = time.Since(start).Milliseconds()
		c.metrics.drains.WithLabelValues(resp.Status).Inc()
		writeJSON(w, http.StatusOK, resp)
		return
	}
	status, dw, err := c.waitDrained(r.Context(), service, addr, m.Mzxid, m.Incarnation, start, p.timeout, p.minWait)
	if err != nil {
		fail("waiting for the drain", err)
		return
	}
	resp.Status = status
	resp.Confirmed = status == ctlclient.StatusDrained
	resp.Gateways = dw.views()
	resp.Message = dw.message(status, p.timeout)
	resp.ElapsedMs = time.Since(start).Milliseconds()
	if resp.Confirmed {
		c.metrics.drainSeconds.Observe(time.Since(start).Seconds())
		if len(dw.gateways) == 0 {
			resp.Warning = joinWarnings(resp.Warning, "no gateway is live, so none was waited for")
		}
	}
	c.metrics.drains.WithLabelValues(status).Inc()
	c.log.Info("drain answered", "service", service, "addr", addr, "status", status, "elapsed", time.Since(start), "gateways", len(dw.gateways))
	writeJSON(w, http.StatusOK, resp)
}

func joinWarnings(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func (c *Controller) deleteDrain(w http.ResponseWriter, r *http.Request, who string) {
	service, addr, err := target(r)
	var req ctlclient.UndrainRequest
	if err == nil {
		err = decodeBody(w, r, &req, true)
	}
	if err == nil {
		err = checkText("reason", req.Reason, maxReasonLen)
	}
	if err != nil {
		writeError(w, "undrain", err)
		return
	}
	if s, _ := c.sess.State(); s != zksession.StateConnected {
		writeError(w, "undrain", fmt.Errorf("%w (session %s)", errNotConnected, s))
		return
	}
	// The mark of the address however it is spelled (as drain writes it
	// for the address as registered).
	if addr, err = c.undrainTarget(r.Context(), service, addr); err != nil {
		writeError(w, "undrain", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
	prev, removed, err := c.store.deleteMark(ctx, service, addr, 0)
	cancel()
	if err != nil && prev.Service != "" && r.Context().Err() == nil {
		// A delete was sent whose outcome is unknown: it may still be
		// applied. Look before answering.
		if c.reread(r.Context(), func(ctx context.Context) bool { return c.store.markGone(ctx, service, addr) }) {
			removed, err = true, nil
		} else {
			err = fmt.Errorf("%w: the mark of %s/%s may or may not be removed, and may still disappear later "+
				"(re-reading it still showed it); repeat the undrain (it is idempotent) to settle it: %w",
				errOutcomeUnknown, service, addr, err)
		}
	}
	if err != nil {
		writeError(w, "removing the mark", err)
		return
	}
	resp := ctlclient.UndrainResponse{Service: service, Addr: addr, Removed: removed}
	if removed {
		mv := markView(prev)
		resp.Mark = &mv
		c.metrics.marksCleared.WithLabelValues("undrain").Inc()
		c.log.Info("mark removed", "service", service, "addr", addr, "by", who)
		actx, acancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		c.audit.Record(actx, ctlclient.AuditEntry{
			By: who, Action: ctlclient.AuditUndrain, Service: service, Addr: addr,
			Reason: strings.TrimSpace(req.Reason), DeployID: prev.DeployID,
			Detail: fmt.Sprintf("removed mark %q by %s", prev.Reason, prev.By),
		})
		acancel()
	}
	writeJSON(w, http.StatusOK, resp)
}

func (c *Controller) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "id": c.id, "version": c.opts.Version})
}

// readyz is 200 once the session is connected and every cache is loaded.
func (c *Controller) readyz(w http.ResponseWriter, _ *http.Request) {
	var problems []string
	if s, _ := c.sess.State(); s != zksession.StateConnected {
		problems = append(problems, "zookeeper session "+s.String())
	}
	if c.reg.Snapshot() == nil {
		problems = append(problems, "registry not loaded")
	}
	if c.marks.Snapshot() == nil {
		problems = append(problems, "marks not loaded")
	}
	if !c.presence.Loaded() {
		problems = append(problems, "presence not loaded")
	}
	if len(problems) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "problems": problems})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true, "leader": c.elector.IsLeader()})
}

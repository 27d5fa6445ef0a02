package controller

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/presence"
	"github.com/zkgate/zkgate/internal/registry"
)

func TestCheckService(t *testing.T) {
	for _, s := range []string{"orders", "payment-v2", "a.b_c:d@e", "X"} {
		if err := checkService(s); err != nil {
			t.Errorf("checkService(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range []string{"", ".", "..", "a/b", "a b", "a*b", "é", strings.Repeat("a", 256), "a\x00"} {
		if err := checkService(s); err == nil {
			t.Errorf("checkService(%q) = nil, want an error", s)
		}
	}
}

func TestCheckAddr(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.5:8080": "10.0.0.5:8080", "[::1]:80": "[::1]:80", "host.example:1": "host.example:1"} {
		got, err := checkAddr(in)
		if err != nil || got != want {
			t.Errorf("checkAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"10.0.0.5", "10.0.0.5:0", "10.0.0.5:99999", "h:abc", ":80", "a b:80", "::1:80"} {
		if _, err := checkAddr(in); err == nil {
			t.Errorf("checkAddr(%q) = nil error", in)
		}
	}
}

func TestParseDuration(t *testing.T) {
	if d, err := parseDuration("ttl", "", time.Minute, time.Hour); err != nil || d != time.Minute {
		t.Errorf("empty: %v %v", d, err)
	}
	if d, err := parseDuration("ttl", "90s", time.Minute, time.Hour); err != nil || d != 90*time.Second {
		t.Errorf("90s: %v %v", d, err)
	}
	for _, s := range []string{"-1s", "abc", "2h", "10"} {
		if _, err := parseDuration("ttl", s, time.Minute, time.Hour); err == nil {
			t.Errorf("parseDuration(%q) = nil error", s)
		}
	}
}

func TestDecodeBody(t *testing.T) {
	type body struct {
		Reason string `json:"reason"`
	}
	cases := map[string]bool{ // body → ok
		`{"reason":"x"}`:          true,
		` {"reason":"x"} `:        true,
		`{"reason":"x","more":1}`: false,
		`{"reason":`:              false,
		`{"reason":"x"} {}`:       false,
		`{"reason":"x"} x`:        false,
		`[]`:                      false,
		`"x"`:                     false,
		``:                        false,
		`{"reason":1}`:            false,
	}
	for in, ok := range cases {
		r := httptest.NewRequest(http.MethodPut, "/", strings.NewReader(in))
		var b body
		err := decodeBody(httptest.NewRecorder(), r, &b, false)
		if (err == nil) != ok {
			t.Errorf("decodeBody(%q) = %v, want ok=%v", in, err, ok)
		}
	}
	r := httptest.NewRequest(http.MethodDelete, "/", strings.NewReader(""))
	if err := decodeBody(httptest.NewRecorder(), r, &body{}, true); err != nil {
		t.Errorf("empty body allowed: %v", err)
	}
	big := `{"reason":"` + strings.Repeat("a", maxBodyBytes) + `"}`
	r = httptest.NewRequest(http.MethodPut, "/", strings.NewReader(big))
	if err := decodeBody(httptest.NewRecorder(), r, &body{}, false); err == nil {
		t.Error("oversized body accepted")
	}
}

func TestAuthenticator(t *testing.T) {
	a := newAuthenticator([]string{"w1", "w2"}, nil)
	ra := newAuthenticator([]string{"w"}, []string{"r"}) // with read tokens
	req := func(method, auth string) *http.Request {
		r := httptest.NewRequest(method, "/", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return r
	}
	for _, tc := range []struct {
		a        *authenticator
		method   string
		auth     string
		mutating bool
		want     int
	}{
		{a, "PUT", "", true, 401},
		{a, "PUT", "Basic dzE=", true, 401},
		{a, "PUT", "Bearer", true, 401},
		{a, "PUT", "Bearer ", true, 401},
		{a, "PUT", "Bearer nope", true, 403},
		{a, "PUT", "Bearer w1x", true, 403},
		{a, "PUT", "Bearer w1", true, 0},
		{a, "PUT", "bearer w2", true, 0},
		{a, "PUT", "", false, 0}, // GETs open without read tokens
		{ra, "GET", "", false, 401},
		{ra, "GET", "Bearer r", false, 0},
		{ra, "GET", "Bearer w", false, 0},
		{ra, "GET", "Bearer x", false, 403},
		{ra, "GET", "Bearer r", true, 403},
	} {
		who, code := tc.a.check(req(tc.method, tc.auth), tc.mutating)
		if code != tc.want {
			t.Errorf("check(%q, mutating=%v) with %d read tokens = %d, want %d", tc.auth, tc.mutating, len(tc.a.read), code, tc.want)
		}
		if code == 0 && tc.mutating && !strings.HasPrefix(who, "token:") {
			t.Errorf("identity %q does not name the token", who)
		}
		if strings.Contains(who, "w1") || strings.Contains(who, "w2") {
			t.Errorf("identity %q reveals the token", who)
		}
	}
}

// regOf is a registry snapshot of svc's instances (Service set to svc).
func regOf(svc string, ins ...registry.Instance) *registry.Snapshot {
	for i := range ins {
		ins[i].Service = svc
	}
	return &registry.Snapshot{Services: map[string][]registry.Instance{svc: ins}}
}

// marksOf is a marks snapshot of svc's marks (Service set to svc).
func marksOf(svc string, ms ...marks.Mark) *marks.Snapshot {
	byAddr := map[string]marks.Mark{}
	for _, m := range ms {
		m.Service = svc
		byAddr[m.Addr] = m
	}
	return &marks.Snapshot{Marks: map[string]map[string]marks.Mark{svc: byAddr}}
}

func report(session int64, ams ...presence.AppliedMark) presence.Report {
	return presence.Report{Session: session, Marks: ams}
}

func TestDrainWaitObserve(t *testing.T) {
	const svc, addr, mz = "orders", "10.0.0.5:8080", int64(100)
	const window = time.Minute
	start := time.Now()
	reg := regOf(svc, registry.Instance{Addr: addr, Czxid: 50})
	mk := marksOf(svc, marks.Mark{Addr: addr, Mzxid: mz})
	am := func(mzxid, inflight int64, state string) presence.AppliedMark {
		return presence.AppliedMark{Service: svc, Addr: addr, Mzxid: mzxid, InFlight: inflight, State: state}
	}
	live := map[string]presence.Report{"g1": report(1), "g2": report(2)}
	w := newDrainWait(svc, addr, mz, start, window, live, nil)

	if st := w.observe(start, live, nil, reg, mk); st != "" {
		t.Fatalf("nothing applied yet: status %q", st)
	}
	// g1 applied an older version: still pending. g2 draining.
	live = map[string]presence.Report{"g1": report(1, am(90, 0, "drained")), "g2": report(2, am(100, 2, "draining"))}
	if st := w.observe(start, live, nil, reg, mk); st != "" {
		t.Fatalf("status %q while draining", st)
	}
	if v := w.views(); v[0].State != ctlclient.GatewayPending || v[1].State != ctlclient.GatewayDraining || v[1].InFlight != 2 {
		t.Fatalf("views %+v", v)
	}
	if st := w.final(); st != ctlclient.StatusTimeout {
		t.Fatalf("final %q while gateways are pending, want timeout", st)
	}
	// Both drained (g1 at a newer version, g2 with the instance absent).
	live = map[string]presence.Report{"g1": report(1, am(120, 0, "drained")), "g2": report(2, am(100, 0, "absent"))}
	if st := w.observe(start.Add(time.Second), live, nil, reg, mk); st != ctlclient.StatusDrained {
		t.Fatalf("status %q, want drained", st)
	}
	if v := w.views(); v[0].DrainedMs == 0 || v[1].AppliedMs == 0 {
		t.Fatalf("views lack timings: %+v", v)
	}

	// A gateway that fails open to the instance (every instance of the
	// service is marked) still sends it requests: not confirmed, even idle.
	w = newDrainWait(svc, addr, mz, start, window, map[string]presence.Report{"g1": report(1)}, nil)
	live = map[string]presence.Report{"g1": report(1, am(100, 0, presence.StateFailOpen))}
	if st := w.observe(start, live, nil, reg, mk); st != "" {
		t.Fatalf("status %q while the gateway fails open", st)
	}
	if v := w.views(); v[0].State != presence.StateFailOpen {
		t.Fatalf("views %+v, want fail_open", v)
	}

	// A gateway whose presence node disappeared without a graceful
	// shutdown is lost while the departure is recent: never confirmed, and
	// at the deadline the answer is lost, naming it.
	w = newDrainWait(svc, addr, mz, start, window, map[string]presence.Report{"g1": report(1), "g2": report(2)}, nil)
	live = map[string]presence.Report{"g1": report(1, am(100, 1, "draining")), "g2": report(2, am(100, 0, "drained"))}
	if st := w.observe(start, live, nil, reg, mk); st != "" {
		t.Fatalf("status %q while g1 drains", st)
	}
	live = map[string]presence.Report{"g1": report(1, am(100, 0, "drained"))}
	departed := map[string]presence.Departure{"g2": {ID: "g2", Session: 2, At: start}}
	if st := w.observe(start, live, departed, reg, mk); st != "" {
		t.Fatalf("status %q with g2 lost, want the wait to go on", st)
	}
	if v := w.views(); v[1].State != ctlclient.GatewayLost || v[1].DepartedMs == 0 {
		t.Fatalf("g2 not reported lost: %+v", v)
	}
	if st := w.final(); st != ctlclient.StatusLost {
		t.Fatalf("final %q, want lost", st)
	}
	if msg := w.message(ctlclient.StatusLost, time.Minute); !strings.Contains(msg, "g2") {
		t.Fatalf("message %q does not name the lost gateway", msg)
	}
	// It comes back with a new session, not applying the mark yet:
	// pending; then with the mark applied: it counts again.
	live = map[string]presence.Report{"g1": report(1, am(100, 0, "drained")), "g2": report(3)}
	if st := w.observe(start, live, nil, reg, mk); st != "" {
		t.Fatalf("status %q with g2 back but pending", st)
	}
	if v := w.views(); v[1].State != ctlclient.GatewayPending {
		t.Fatalf("g2 back: %+v, want pending", v)
	}
	live["g2"] = report(3, am(100, 0, "drained"))
	if st := w.observe(start, live, nil, reg, mk); st != ctlclient.StatusDrained {
		t.Fatalf("status %q with g2 back and drained, want drained", st)
	}
	// Once its departure is older than the window (the watcher forgets
	// it), a gateway that never came back is gone: not waited for.
	w = newDrainWait(svc, addr, mz, start, window, map[string]presence.Report{"g1": report(1)}, departed)
	if len(w.gateways) != 2 {
		t.Fatalf("a gateway departed before the drain started is not tracked: %+v", w.views())
	}
	live = map[string]presence.Report{"g1": report(1, am(100, 0, "drained"))}
	if st := w.observe(start, live, departed, reg, mk); st != "" {
		t.Fatalf("status %q with g2 departed before the drain", st)
	}
	if st := w.observe(start, live, nil, reg, mk); st != ctlclient.StatusDrained {
		t.Fatalf("status %q after the window, want drained", st)
	}
	if v := w.views(); v[1].State != ctlclient.GatewayGone {
		t.Fatalf("g2 after the window: %+v, want gone", v)
	}
	// A gateway that left gracefully is not waited for.
	left := map[string]presence.Departure{"g2": {ID: "g2", Session: 2, At: start, Leaving: true}}
	w = newDrainWait(svc, addr, mz, start, window, map[string]presence.Report{"g1": report(1), "g2": report(2)}, nil)
	if st := w.observe(start, live, left, reg, mk); st != ctlclient.StatusDrained {
		t.Fatalf("status %q with g2 gone gracefully, want drained", st)
	}
	// A gateway whose report cannot be decoded is pending, with the error.
	bad := presence.Report{ID: "g2", Session: 2, Malformed: "cannot decode"}
	w = newDrainWait(svc, addr, mz, start, window, map[string]presence.Report{"g1": report(1), "g2": bad}, nil)
	live = map[string]presence.Report{"g1": report(1, am(100, 0, "drained")), "g2": bad}
	if st := w.observe(start, live, nil, reg, mk); st != "" {
		t.Fatalf("status %q with g2 unreadable, want the wait to go on", st)
	}
	if v := w.views(); v[1].State != ctlclient.GatewayPending || v[1].Error == "" {
		t.Fatalf("unreadable g2: %+v", v)
	}
	if st := w.final(); st != ctlclient.StatusTimeout {
		t.Fatalf("final %q with g2 unreadable, want timeout", st)
	}
	if msg := w.message(ctlclient.StatusTimeout, time.Minute); !strings.Contains(msg, "cannot decode") {
		t.Fatalf("message %q does not say why g2 is pending", msg)
	}

	// Superseded: the instance registered again after the mark.
	w = newDrainWait(svc, addr, mz, start, window, live, nil)
	reg2 := regOf(svc, registry.Instance{Addr: addr, Czxid: 150})
	if st := w.observe(start, live, nil, reg2, mk); st != ctlclient.StatusSuperseded {
		t.Fatalf("status %q, want superseded", st)
	}
	// Superseded: the mark was deleted after it had been seen.
	one := map[string]presence.Report{"g1": report(1)}
	w = newDrainWait(svc, addr, mz, start, window, one, nil)
	if st := w.observe(start, one, nil, reg, mk); st != "" {
		t.Fatalf("status %q", st)
	}
	if st := w.observe(start, one, nil, reg, &marks.Snapshot{}); st != ctlclient.StatusSuperseded {
		t.Fatalf("status %q, want superseded", st)
	}
	// The mark not seen yet by the cache is not "deleted".
	w = newDrainWait(svc, addr, mz, start, window, one, nil)
	if st := w.observe(start, one, nil, reg, &marks.Snapshot{}); st != "" {
		t.Fatalf("status %q before the cache saw the mark", st)
	}
	// No gateway: nothing to wait for.
	w = newDrainWait(svc, addr, mz, start, window, nil, nil)
	if st := w.observe(start, nil, nil, reg, mk); st != ctlclient.StatusDrained {
		t.Fatalf("status %q with no gateways", st)
	}
}

func TestServiceView(t *testing.T) {
	now := time.Now()
	const svc = "orders"
	reg := regOf(svc,
		registry.Instance{Addr: "10.0.0.1:80", Czxid: 10, Status: "UP"},
		registry.Instance{Addr: "10.0.0.2:80", Czxid: 10, Status: "UP"},
		registry.Instance{Addr: "10.0.0.3:80", Czxid: 200, Status: "UP"},
		registry.Instance{Addr: "10.0.0.4:80", Czxid: 10, Status: "OUT_OF_SERVICE"},
	)
	mk := marksOf(svc,
		marks.Mark{Addr: "10.0.0.2:80", Mzxid: 100, Reason: "r"},
		marks.Mark{Addr: "10.0.0.3:80", Mzxid: 100, Reason: "old"},
		marks.Mark{Addr: "10.0.0.9:80", Mzxid: 100, Reason: "ahead"},
	)
	gws := map[string]presence.Report{"g1": report(1,
		presence.AppliedMark{Service: svc, Addr: "10.0.0.2:80", Mzxid: 100, InFlight: 0, State: "drained"})}
	v, ok := serviceView(svc, reg, mk, gws, nil, now)
	if !ok {
		t.Fatal("service not found")
	}
	states := map[string]string{}
	for _, in := range v.Instances {
		states[in.Addr] = in.State
	}
	want := map[string]string{"10.0.0.1:80": "serving", "10.0.0.2:80": "drained", "10.0.0.3:80": "serving", "10.0.0.4:80": "down", "10.0.0.9:80": "absent"}
	for a, s := range want {
		if states[a] != s {
			t.Errorf("%s: state %q, want %q (all: %v)", a, states[a], s, states)
		}
	}
	if _, ok := serviceView("nope", reg, mk, gws, nil, now); ok {
		t.Error("unknown service found")
	}
	sums, skipped := serviceSummaries(reg, mk, now)
	if len(sums) != 1 || sums[0].Instances != 4 || sums[0].Up != 3 || sums[0].Marked != 2 || len(skipped) != 0 {
		t.Errorf("summaries %+v, skipped %q", sums, skipped)
	}
	// A registry service whose name the API refuses is skipped, counted.
	bad := "<img src=x onerror=alert(1)>"
	reg.Services[bad] = []registry.Instance{{Service: bad, Addr: "10.0.0.7:80", Czxid: 5, Status: "UP"}}
	sums, skipped = serviceSummaries(reg, mk, now)
	if len(sums) != 1 || sums[0].Name != svc || len(skipped) != 1 || skipped[0] != bad {
		t.Errorf("with %q: summaries %+v, skipped %q", bad, sums, skipped)
	}
}

// Reconciliation applies the rules only once both caches published the
// result of a full re-read that began after it asked for one (their
// snapshots' Resync tickets reach the ones it got): revisions published by
// watch events do not count, nor do re-reads that were already running.
func TestReconcileFreshness(t *testing.T) {
	want := progress{loaded: true, registry: 4, marks: 7}
	for _, tc := range []struct {
		name string
		now  progress
		want bool
	}{
		{"watch events only, or re-reads begun before the request", progress{loaded: true, registry: 3, marks: 6, registryResyncs: 9, marksResyncs: 9}, false},
		{"registry re-read only", progress{loaded: true, registry: 4, marks: 6}, false},
		{"marks re-read only", progress{loaded: true, registry: 3, marks: 7}, false},
		{"both re-read", progress{loaded: true, registry: 4, marks: 7}, true},
		{"both re-read again since", progress{loaded: true, registry: 5, marks: 9}, true},
		{"not loaded", progress{registry: 4, marks: 7}, false},
	} {
		if got := fresh(want, tc.now); got != tc.want {
			t.Errorf("%s: fresh = %v, want %v", tc.name, got, tc.want)
		}
	}
}

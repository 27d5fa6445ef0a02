package gateway

import (
	"strings"
	"testing"

	"github.com/zkgate/zkgate/internal/config"
)

// The per-service counters are plain atomics collected at scrape time:
// every routed service has every series from the start (0 until it
// counts), typed counter, as client_golang children had them.
func TestServiceCounterFamilies(t *testing.T) {
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/1/", "s1"), rte("/2/", "s2")}}, Options{})
	s1 := tg.byName["s1"]
	s1.metrics.retries.Inc()
	s1.metrics.errors[kindTimeout].Add(3)
	s1.metrics.drainCuts.Add(2)
	r := get(t, client(), tg.admin.URL+"/metrics")
	if r.code != 200 {
		t.Fatalf("metrics %d", r.code)
	}
	for _, line := range []string{
		"# TYPE zkgate_retries_total counter",
		"# TYPE zkgate_upstream_errors_total counter",
		`zkgate_retries_total{service="s1"} 1`,
		`zkgate_retries_total{service="s2"} 0`,
		`zkgate_upstream_errors_total{kind="timeout",service="s1"} 3`,
		`zkgate_upstream_errors_total{kind="connect",service="s1"} 0`,
		`zkgate_upstream_errors_total{kind="other",service="s2"} 0`,
		`zkgate_fail_open_total{service="s2"} 0`,
		`zkgate_ejections_total{service="s1"} 0`,
		`zkgate_drain_cuts_total{service="s1"} 2`,
		`zkgate_drain_cuts_total{service="s2"} 0`,
	} {
		if !strings.Contains(r.body, line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}
}

// A route's duration histogram appears with its first request: a gateway
// with thousands of routes exports none for the routes that served none.
func TestRouteDurationHistogramAtFirstRequest(t *testing.T) {
	b := newBackend(t, "b", nil)
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/1/", "s1"), rte("/2/", "s2")}}, Options{})
	tg.Update(regSnap(1, inst("s1", b.addr(), 1), inst("s2", b.addr(), 2)), nil)
	metrics := func() string {
		t.Helper()
		r := get(t, client(), tg.admin.URL+"/metrics")
		if r.code != 200 {
			t.Fatalf("metrics %d", r.code)
		}
		return r.body
	}
	if m := metrics(); strings.Contains(m, "zkgate_request_duration_seconds_count{") {
		t.Fatalf("duration series before any request:\n%s", m)
	}
	if r := get(t, client(), tg.front.URL+"/1/x"); r.code != 200 {
		t.Fatalf("GET /1/x: %d", r.code)
	}
	m := metrics()
	if !strings.Contains(m, `zkgate_request_duration_seconds_count{route="/1/",service="s1"} 1`) {
		t.Errorf("no duration series for the route that served a request")
	}
	if strings.Contains(m, `route="/2/"`) {
		t.Errorf("series for a route that served nothing")
	}
}

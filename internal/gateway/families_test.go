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

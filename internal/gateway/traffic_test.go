package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/instancestate"
)

// TestTrafficCounters: /admin/traffic counts, per instance, the exchanges
// that ended (responses and failures), the errors among them (5xx
// responses, connections refused) and what is in flight.
func TestTrafficCounters(t *testing.T) {
	ok := newBackend(t, "ok", nil)
	bad := newBackend(t, "bad", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	dead := deadAddr(t)
	// No retries: a refused connection is the client's 502, counted once.
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/ok/", "ok"), rte("/bad/", "bad"), rte("/dead/", "dead")}, Retries: new0()}, Options{})
	tg.Update(regSnap(1, inst("ok", ok.addr(), 1), inst("bad", bad.addr(), 2), inst("dead", dead, 3)), markSnap(1))
	c := client()
	for i := 0; i < 7; i++ {
		get(t, c, tg.front.URL+"/ok/x")
	}
	for i := 0; i < 3; i++ {
		get(t, c, tg.front.URL+"/bad/x")
	}
	if r := get(t, c, tg.front.URL+"/dead/x"); r.code != 502 {
		t.Fatalf("dead instance: %d", r.code)
	}
	r := get(t, c, tg.admin.URL+TrafficPath)
	if r.code != 200 {
		t.Fatalf("%s: %d %s", TrafficPath, r.code, r.body)
	}
	var rep TrafficReport
	decodeJSON(t, r.body, &rep)
	if d := time.Since(time.UnixMilli(rep.AtMs)); d < 0 || d > time.Minute {
		t.Errorf("at_ms %d is not now", rep.AtMs)
	}
	got := map[string]TrafficCounters{}
	for _, tc := range rep.Instances {
		got[tc.Service] = tc
	}
	want := map[string]TrafficCounters{
		"ok":   {Service: "ok", Addr: ok.addr(), State: instancestate.Serving, Requests: 7},
		"bad":  {Service: "bad", Addr: bad.addr(), State: instancestate.Serving, Requests: 3, Errors: 3},
		"dead": {Service: "dead", Addr: dead, State: instancestate.Serving, Requests: 1, Errors: 1},
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %+v, want %+v", k, got[k], w)
		}
	}
	if len(rep.Instances) != 3 {
		t.Errorf("instances: %+v", rep.Instances)
	}
}

func new0() *int { var n int; return &n }

package controller

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gateway"
	"github.com/zkgate/zkgate/internal/presence"
)

func sample(atMs int64, cs ...gateway.TrafficCounters) trafficSample {
	s := trafficSample{atMs: atMs, c: map[instKey]gateway.TrafficCounters{}}
	for _, c := range cs {
		s.c[instKey{c.Service, c.Addr}] = c
	}
	return s
}

func TestTrafficRates(t *testing.T) {
	p := newTrafficPoller(nil, time.Now, slog.Default(), nil)
	a := instKey{"s", "a:1"}
	b := instKey{"s", "b:1"}
	c := func(k instKey, req, errs uint64, inflight int64) gateway.TrafficCounters {
		return gateway.TrafficCounters{Service: k.service, Addr: k.addr, State: "serving", Requests: req, Errors: errs, InFlight: inflight}
	}
	p.gws = map[string]*gatewaySamples{
		// Samples older than the window are not used: the rate spans
		// the last 2 s. b's counters restarted from zero (30 < 1000):
		// 30 in 2 s.
		"g1": {samples: []trafficSample{sample(0, c(a, 0, 0, 0)), sample(1000, c(a, 100, 0, 0), c(b, 1000, 0, 0)), sample(2000, c(a, 300, 10, 3), c(b, 1500, 0, 0)), sample(3000, c(a, 500, 20, 2), c(b, 30, 0, 1))}},
		"g2": {samples: []trafficSample{sample(500, c(a, 0, 0, 0)), sample(1500, c(a, 50, 0, 1))}},
		// A gateway that failed at this poll counts for nothing.
		"g3": {samples: []trafficSample{sample(0, c(a, 0, 0, 0)), sample(1000, c(a, 1000, 0, 9))}},
	}
	p.errs = map[string]string{"g3": "refused"}
	r := p.rates()
	if !p.hasRate {
		t.Fatal("no rate")
	}
	ta, tb := r[a], r[b]
	if ta.ByGateway["g1"].RPS != 200 || ta.ByGateway["g1"].ErrorsPerS != 10 || ta.ByGateway["g2"].RPS != 50 || ta.RPS != 250 || ta.InFlight != 3 {
		t.Errorf("a: %+v", ta)
	}
	if _, ok := ta.ByGateway["g3"]; ok {
		t.Errorf("a failing gateway counted: %+v", ta)
	}
	if tb.RPS != 15 || tb.InFlight != 1 { // 1000 → 30: restarted from zero, 30 in 2 s
		t.Errorf("b: %+v", tb)
	}
}

// TestTrafficPollerLazy: polling starts with the first read, gives rates
// from a real admin endpoint, and stops after a minute without reads.
func TestTrafficPollerLazy(t *testing.T) {
	var n, polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != gateway.TrafficPath {
			http.NotFound(w, r)
			return
		}
		polls.Add(1)
		k := n.Add(100)
		json.NewEncoder(w).Encode(gateway.TrafficReport{AtMs: time.Now().UnixMilli(), Instances: []gateway.TrafficCounters{
			{Service: "s", Addr: "a:1", State: "serving", Requests: uint64(k)},
		}})
	}))
	defer srv.Close()
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	gws := func() map[string]presence.Report {
		return map[string]presence.Report{
			"g1":   {ID: "g1", AdminListen: strings.TrimPrefix(srv.URL, "http://"), BootID: "x"},
			"wild": {ID: "wild", AdminListen: "0.0.0.0:1"},
			// Bound to every interface, reached at its advertised address.
			"adv": {ID: "adv", AdminListen: "[::]:1", AdminAddr: strings.TrimPrefix(srv.URL, "http://"), BootID: "y"},
			// Its admin address is not known to be its own: not polled.
			"twin": {ID: "twin", AdminListen: strings.TrimPrefix(srv.URL, "http://"), BootID: "z"},
		}
	}
	p := newTrafficPoller(gws, now, slog.Default(), nil)
	p.trusted = func(id string) (bool, string) {
		if id == "twin" {
			return false, `gateway "g1" names the same admin address`
		}
		return true, ""
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	time.Sleep(1500 * time.Millisecond)
	if polls.Load() != 0 {
		t.Fatalf("%d polls before anyone read the view", polls.Load())
	}
	v := ctlclient.ServiceResponse{Instances: []ctlclient.InstanceView{{Service: "s", Addr: "a:1"}}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v.Instances[0].Traffic = nil
		p.fill(&v)
		if tr := v.Instances[0].Traffic; tr != nil && tr.RPS > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no rate: %+v", v.Traffic)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v.Traffic.Polled != 2 || !strings.Contains(v.Traffic.Errors["wild"], "every interface") || v.Traffic.Errors["adv"] != "" ||
		!strings.Contains(v.Traffic.Errors["twin"], "not polled: ") {
		t.Errorf("status: %+v", v.Traffic)
	}
	clock.Add(int64(2 * time.Minute)) // nobody read it for two minutes
	time.Sleep(2500 * time.Millisecond)
	before := polls.Load()
	time.Sleep(2500 * time.Millisecond)
	if after := polls.Load(); after != before {
		t.Errorf("still polling a minute after the last read: %d → %d", before, after)
	}
}

func TestTimelineDrainingFromMark(t *testing.T) {
	tl := newTimelines()
	k := instKey{"s", "a:1"}
	tl.record(k, "serving", "", 100, false, 0) // never marked: no timeline
	if tl.get(k) != nil {
		t.Fatal("timeline for an unmarked instance")
	}
	// Seen drained at once: draining is dated from the mark.
	tl.record(k, "drained", "d1", 200, true, 150)
	tl.record(k, "drained", "d1", 250, true, 150)
	tl.record(k, "gone", "d1", 300, true, 150)
	tl.record(k, "serving", "", 400, false, 0)
	var got []string
	for _, e := range tl.get(k) {
		got = append(got, e.State+"@"+time.UnixMilli(e.AtMs).Format(".000"))
	}
	if s := strings.Join(got, " "); s != "draining@.150 drained@.200 gone@.300 serving@.400" {
		t.Errorf("timeline: %s", s)
	}
}

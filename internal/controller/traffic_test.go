package controller_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gatewayd"
)

// load sends GET /orders/ through the gateways from a few goroutines
// until the test ends (or stop is called).
type load struct {
	sent, failed atomic.Int64
	stop         func()
}

func startLoad(t *testing.T, workers int, proxies ...string) *load {
	t.Helper()
	l := &load{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+proxies[i%len(proxies)]+"/orders/", nil)
				resp, err := c.Do(req)
				if ctx.Err() != nil {
					return
				}
				l.sent.Add(1)
				if err != nil {
					l.failed.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					l.failed.Add(1)
				}
				time.Sleep(2 * time.Millisecond) // a steady load, not a benchmark
			}
		}()
	}
	var once sync.Once
	l.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(l.stop)
	return l
}

// metricValue reads one unlabelled counter from a /metrics page.
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q", name, v)
			}
			return f
		}
	}
	t.Fatalf("%s not in %s", name, url)
	return 0
}

// presenceVersions returns the version of every gateway's presence node.
func (e *env) presenceVersions(ids ...string) map[string]int32 {
	e.t.Helper()
	out := map[string]int32{}
	for _, id := range ids {
		_, st, err := e.conn.Get(path.Join(e.zkRoot, "gateways", id))
		if err != nil {
			e.t.Fatalf("presence of %s: %v", id, err)
		}
		out[id] = st.Version
	}
	return out
}

// TestTrafficUnderLoad: under load through two real gateways, the API
// shows every serving instance's rate (per gateway and summed) and, a few
// seconds after a confirmed drain, about zero for the drained one; its
// timeline shows draining then drained. The traffic view writes nothing to
// ZooKeeper.
func TestTrafficUnderLoad(t *testing.T) {
	e := newEnv(t)
	ctl := e.startController("c1", e.config("", "", 0), controller.Options{})
	g1 := e.startGateway("gw-t1", 0, gatewayd.Options{})
	g2 := e.startGateway("gw-t2", 0, gatewayd.Options{})
	a, b, c := newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)
	e.register("orders", "a", a)
	e.register("orders", "b", b)
	e.register("orders", "c", c)
	waitRoutes(t, g1.ProxyAddr(), "a", "b", "c")
	waitRoutes(t, g2.ProxyAddr(), "a", "b", "c")
	l := startLoad(t, 4, g1.ProxyAddr(), g2.ProxyAddr())
	cl := client(t, ctl.URL())

	view := func() ctlclient.ServiceResponse {
		v, err := cl.Service(context.Background(), "orders")
		if err != nil {
			t.Fatal(err)
		}
		return *v
	}
	rps := func(v ctlclient.ServiceResponse, addr string) (float64, ctlclient.Traffic) {
		for _, in := range v.Instances {
			if in.Addr == addr && in.Traffic != nil {
				return in.Traffic.RPS, *in.Traffic
			}
		}
		return -1, ctlclient.Traffic{}
	}
	var last ctlclient.ServiceResponse
	eventually(t, "every instance to show traffic at both gateways", func() bool {
		last = view()
		for _, x := range []*backend{a, b, c} {
			r, tr := rps(last, x.addr)
			if r <= 0 || tr.ByGateway["gw-t1"].RPS <= 0 || tr.ByGateway["gw-t2"].RPS <= 0 || len(tr.History) == 0 {
				return false
			}
		}
		return last.Traffic != nil && last.Traffic.Polled == 2
	})
	for _, x := range []*backend{a, b, c} {
		r, tr := rps(last, x.addr)
		t.Logf("%s: %.1f rps (gw-t1 %.1f, gw-t2 %.1f), %.2f errors/s", x.name, r, tr.ByGateway["gw-t1"].RPS, tr.ByGateway["gw-t2"].RPS, tr.ErrorsPerS)
		if tr.ErrorsPerS != 0 {
			t.Errorf("%s: errors_per_s %v under a load without errors", x.name, tr.ErrorsPerS)
		}
	}

	// The cost: polls and bytes while polling, and no ZooKeeper write
	// beyond the presence heartbeat (one per 10 s).
	before := e.presenceVersions("gw-t1", "gw-t2")
	p0 := metricValue(t, ctl.URL()+"/metrics", "zkgate_controller_traffic_polls_total")
	b0 := metricValue(t, ctl.URL()+"/metrics", "zkgate_controller_traffic_poll_bytes_total")
	start := time.Now()
	for time.Since(start) < 4*time.Second {
		view() // keeps the polling on, as a dashboard does
		time.Sleep(500 * time.Millisecond)
	}
	el := time.Since(start).Seconds()
	p1 := metricValue(t, ctl.URL()+"/metrics", "zkgate_controller_traffic_polls_total")
	b1 := metricValue(t, ctl.URL()+"/metrics", "zkgate_controller_traffic_poll_bytes_total")
	after := e.presenceVersions("gw-t1", "gw-t2")
	t.Logf("cost at 2 gateways: %.1f polls/s, %.0f bytes/poll", (p1-p0)/el, (b1-b0)/max(p1-p0, 1))
	if got := (p1 - p0) / el; got < 1 || got > 4 {
		t.Errorf("%.1f polls/s at 2 gateways, want about 2", got)
	}
	for id, v := range after {
		if v-before[id] > 1 {
			t.Errorf("presence of %s written %d times in %.0fs of polling (heartbeat: at most 1)", id, v-before[id], el)
		}
	}

	// Drain b: its rate falls to about 0 within a few seconds, a and c
	// keep theirs.
	dr, err := cl.Drain(context.Background(), "orders", b.addr, ctlclient.DrainRequest{Reason: "traffic test", Wait: true, Timeout: "20s", DeployID: "deploy-7"})
	if err != nil || dr.Status != ctlclient.StatusDrained {
		t.Fatalf("drain: %+v %v", dr, err)
	}
	drained := time.Now()
	eventually(t, "the drained instance's rate to fall to 0", func() bool {
		last = view()
		r, tr := rps(last, b.addr)
		return r == 0 && tr.InFlight == 0
	})
	t.Logf("drained instance at 0 rps %v after the drain was confirmed", time.Since(drained).Round(100*time.Millisecond))
	if d := time.Since(drained); d > 6*time.Second {
		t.Errorf("the drained instance's rate took %v to reach 0", d)
	}
	for _, x := range []*backend{a, c} {
		if r, _ := rps(last, x.addr); r <= 0 {
			t.Errorf("%s: %v rps after b's drain", x.name, r)
		}
	}
	var tl []ctlclient.TimelineEntry
	for _, in := range last.Instances {
		if in.Addr == b.addr {
			tl = in.Timeline
		}
	}
	var states []string
	for _, en := range tl {
		states = append(states, en.State)
		if en.DeployID != "deploy-7" {
			t.Errorf("timeline entry %+v lacks the mark's deploy id", en)
		}
	}
	if got := strings.Join(states, ","); got != "draining,drained" {
		t.Errorf("timeline of the drained instance: %s, want draining,drained (%+v)", got, tl)
	}
	l.stop()
	if n := l.failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed", n, l.sent.Load())
	}
	t.Logf("load: %d requests", l.sent.Load())
}

// TestTrafficCostTenGateways measures what the traffic view costs at 10
// gateways: polls/s and bytes per poll from the controller's metrics, and
// ZooKeeper writes (presence versions: at most the 10 s heartbeat).
func TestTrafficCostTenGateways(t *testing.T) {
	e := newEnv(t)
	ctl := e.startController("c1", e.config("", "", 0), controller.Options{})
	var ids, proxies []string
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("gw-%02d", i)
		ids = append(ids, id)
		proxies = append(proxies, e.startGateway(id, 0, gatewayd.Options{}).ProxyAddr())
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		e.register("orders", n, newBackend(t, n, nil))
	}
	for _, p := range proxies {
		waitRoutes(t, p, "a", "b", "c", "d")
	}
	startLoad(t, 4, proxies...)
	cl := client(t, ctl.URL())
	eventually(t, "traffic from all 10 gateways", func() bool {
		v, err := cl.Service(context.Background(), "orders")
		return err == nil && v.Traffic != nil && v.Traffic.Polled == 10 && len(v.Instances) == 4 &&
			v.Instances[0].Traffic != nil && len(v.Instances[0].Traffic.ByGateway) == 10
	})
	before := e.presenceVersions(ids...)
	p0 := metricValue(t, ctl.URL()+"/metrics", "zkgate_controller_traffic_polls_total")
	b0 := metricValue(t, ctl.URL()+"/metrics", "zkgate_controller_traffic_poll_bytes_total")
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		if _, err := cl.Service(context.Background(), "orders"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	el := time.Since(start).Seconds()
	p1 := metricValue(t, ctl.URL()+"/metrics", "zkgate_controller_traffic_polls_total")
	b1 := metricValue(t, ctl.URL()+"/metrics", "zkgate_controller_traffic_poll_bytes_total")
	after := e.presenceVersions(ids...)
	writes := 0
	for id, v := range after {
		writes += int(v - before[id])
	}
	t.Logf("cost at 10 gateways, 4 instances: %.1f polls/s, %.0f bytes/poll, %d presence writes in %.1fs (heartbeats)",
		(p1-p0)/el, (b1-b0)/max(p1-p0, 1), writes, el)
	if got := (p1 - p0) / el; got < 6 || got > 14 {
		t.Errorf("%.1f polls/s at 10 gateways, want about 10", got)
	}
	if writes > 10 {
		t.Errorf("%d presence writes in %.1fs: more than one heartbeat per gateway", writes, el)
	}
}

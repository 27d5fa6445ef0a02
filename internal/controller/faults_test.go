package controller_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/zktest"
)

// With the registry events that would clear a mark dropped on the
// controller (and the mark's deletion event dropped on the gateway), the
// periodic reconciliation still clears the mark, and the gateway routes to
// the re-registered instance by the zxid rule meanwhile.
func TestReconciliationClearsMarkWhenEventsAreDropped(t *testing.T) {
	e := newEnv(t)
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	nodeA := e.register("orders", "a-1", a)
	e.register("orders", "b-1", b)

	var dropping atomic.Bool
	var droppedCtl, droppedGw atomic.Int64
	ctl := e.startController("c1", e.config("reconcile_interval: 1s\n", "", 0), controller.Options{
		DropEvent: func(ev zk.Event) bool {
			if dropping.Load() && strings.HasPrefix(ev.Path, e.regRoot) {
				droppedCtl.Add(1)
				return true
			}
			return false
		},
	})
	gw := e.startGateway("gw-1", 0, gatewayd.Options{
		DropEvent: func(ev zk.Event) bool {
			if dropping.Load() && strings.HasPrefix(ev.Path, e.zkRoot+"/marks") {
				droppedGw.Add(1)
				return true
			}
			return false
		},
	})
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	cl := client(t, ctl.URL())
	r, err := cl.Drain(context.Background(), "orders", a.addr, ctlclient.DrainRequest{Reason: "deploy", Wait: true, Timeout: "30s"})
	if err != nil || r.Status != ctlclient.StatusDrained {
		t.Fatalf("drain: %+v %v", r, err)
	}
	for i := 0; i < 10; i++ {
		if n, _ := get(gw.ProxyAddr(), "/orders/"); n != "b" {
			t.Fatalf("drained instance still gets traffic (%q)", n)
		}
	}

	dropping.Store(true)
	e.deregister(nodeA)
	e.register("orders", "a-2", a)
	// The gateway sees the new registration (its registry events are not
	// dropped) and routes to it although the mark is still there.
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	eventually(t, "reconciliation to clear the mark", func() bool { return !e.markExists("orders", a.addr) })
	if droppedCtl.Load() == 0 {
		t.Fatal("no registry event was dropped on the controller: the test proves nothing")
	}
	// The reconciliation counts its repair once it is done.
	eventually(t, "the repair to be counted", func() bool {
		return strings.Contains(ctlMetrics(t, ctl), "zkgate_controller_reconcile_repairs_total 1")
	})
}

func ctlMetrics(t *testing.T, c *controller.Controller) string {
	t.Helper()
	code, body := api(t, http.MethodGet, c.URL()+"/metrics", "", "")
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	return string(body)
}

// The leader's session is closed in the middle of a waiting drain: the
// client's wait moves to the other replica, which confirms the drain, takes
// over leadership and clears the mark when the instance re-registers.
func TestLeaderKilledMidDrain(t *testing.T) {
	e := newEnv(t)
	started := make(chan string, 4)
	a, b := newBackend(t, "a", started), newBackend(t, "b", started)
	nodes := map[string]string{"a": e.register("orders", "a-1", a), "b": e.register("orders", "b-1", b)}
	c1 := e.startController("c1", e.config("", "", 0), controller.Options{})
	eventually(t, "c1 to lead", c1.IsLeader)
	c2 := e.startController("c2", e.config("", "", 0), controller.Options{})
	gw := e.startGateway("gw-1", 0, gatewayd.Options{})
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	if c2.IsLeader() {
		t.Fatal("two leaders")
	}
	l, err := client(t, c2.URL()).Leader(context.Background())
	if err != nil || l.IsLeader || l.Leader != "c1" {
		t.Fatalf("c2's view of the leader: %+v %v", l, err)
	}

	victim, slowDone := startSlow(t, gw.ProxyAddr(), started)
	target := map[string]*backend{"a": a, "b": b}[victim]
	cl := client(t, c1.URL(), c2.URL())
	res := drainAsync(cl, "orders", target.addr, ctlclient.DrainRequest{Reason: "failover", Wait: true, Timeout: "1m"})
	eventually(t, "the drain to be in progress", func() bool {
		in, ok := instance(t, client(t, c2.URL()), "orders", target.addr)
		st, _ := gatewayState(in, "gw-1")
		return ok && st == ctlclient.GatewayDraining
	})

	// The leader dies (its session closes: its election node goes).
	c1.Session().Close()
	eventually(t, "c2 to take over leadership", c2.IsLeader)
	// Session.Close reports the closed state once the client library's
	// Close returns, which may be a moment after the servers deleted the
	// election node: allow for that moment.
	eventually(t, "c1 to stop acting as leader", func() bool { return !c1.IsLeader() })
	select {
	case r := <-res:
		t.Fatalf("drain answered while a request is in flight: %+v %v", r.resp, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	target.Release()
	<-slowDone
	r := <-res
	if r.err != nil {
		t.Fatalf("drain: %v", r.err)
	}
	if r.resp.Status != ctlclient.StatusDrained || !r.resp.Confirmed {
		t.Fatalf("drain answer %+v", r.resp)
	}
	// The new leader finishes the job: re-registration clears the mark.
	e.deregister(nodes[victim])
	e.register("orders", victim+"-2", target)
	eventually(t, "the new leader to clear the mark", func() bool { return !e.markExists("orders", target.addr) })
	// The audit entry is written after the mark is deleted.
	eventually(t, "c2's clearing in the audit trail", func() bool {
		return slices.ContainsFunc(audit(t, client(t, c2.URL())), func(en ctlclient.AuditEntry) bool {
			return en.Action == ctlclient.AuditClearReregistered && en.By == "controller:c2"
		})
	})
}

// Two gateways; one is partitioned from ZooKeeper during a waiting drain
// and loses its session. It is reported lost, never counted as having
// acknowledged, and the drain is not confirmed: it ends at its timeout
// (shorter than controller.departed_window) with status lost.
func TestPartitionedGatewayIsReportedLost(t *testing.T) {
	e := newEnv(t)
	started := make(chan string, 4)
	w := e.startPartitionWorld(started, 2*time.Second)
	a, b, g1, part, cl := w.a, w.b, w.g1, w.part, w.cl

	victim, slowDone := startSlow(t, g1.ProxyAddr(), started)
	target := map[string]*backend{"a": a, "b": b}[victim]
	res := drainAsync(cl, "orders", target.addr, ctlclient.DrainRequest{Reason: "partition", Wait: true, Timeout: "15s"})
	eventually(t, "gw-1 draining and gw-2 drained", func() bool {
		in, _ := instance(t, cl, "orders", target.addr)
		s1, _ := gatewayState(in, "gw-1")
		s2, _ := gatewayState(in, "gw-2")
		return s1 == ctlclient.GatewayDraining && s2 == ctlclient.GatewayDrained
	})
	part.Cut()
	eventually(t, "gw-2's presence to go with its session", func() bool {
		g, err := cl.Gateways(context.Background())
		return err == nil && len(g.Gateways) == 1
	})
	target.Release()
	<-slowDone
	expectGw2Lost(t, <-res)
}

// Bad input gets 400 with a JSON error and writes nothing.
func TestBadInputWritesNothing(t *testing.T) {
	e := newEnv(t)
	ctl := e.startController("c1", e.config("", "", 0), controller.Options{})
	base := ctl.URL() + "/v1/services/"
	drainURL := base + "orders/instances/10.0.0.5:8080/drain"
	for _, tc := range []struct{ name, method, url, body string }{
		{"malformed JSON", "PUT", drainURL, `{"reason":`},
		{"unknown field", "PUT", drainURL, `{"reason":"x","force":true}`},
		{"trailing data", "PUT", drainURL, `{"reason":"x"} {"reason":"y"}`},
		{"array", "PUT", drainURL, `[]`},
		{"empty body", "PUT", drainURL, ``},
		{"missing reason", "PUT", drainURL, `{"wait":true}`},
		{"wrong type", "PUT", drainURL, `{"reason":"x","wait":"yes"}`},
		{"addr without port", "PUT", base + "orders/instances/10.0.0.5/drain", `{"reason":"x"}`},
		{"addr bad port", "PUT", base + "orders/instances/10.0.0.5:70000/drain", `{"reason":"x"}`},
		{"addr junk", "PUT", base + "orders/instances/a%20b:80/drain", `{"reason":"x"}`},
		{"negative ttl", "PUT", drainURL, `{"reason":"x","ttl":"-1s"}`},
		{"negative timeout", "PUT", drainURL, `{"reason":"x","wait":true,"timeout":"-5s"}`},
		{"negative min_wait", "PUT", drainURL, `{"reason":"x","min_wait":"-1ms"}`},
		{"bad duration", "PUT", drainURL, `{"reason":"x","ttl":"ten minutes"}`},
		{"zero ttl", "PUT", drainURL, `{"reason":"x","ttl":"0s"}`},
		{"bad service", "PUT", base + "or%20ders/instances/10.0.0.5:8080/drain", `{"reason":"x"}`},
		{"bad service chars", "PUT", base + "a*b/instances/10.0.0.5:8080/drain", `{"reason":"x"}`},
		{"control chars in reason", "PUT", drainURL, `{"reason":"a\u0000b"}`},
		{"undrain malformed", "DELETE", drainURL, `{"reason":`},
		{"undrain bad addr", "DELETE", base + "orders/instances/nope/drain", ``},
		{"audit bad limit", "GET", ctl.URL() + "/v1/audit?limit=-1", ``},
		// Control and non-characters in the instance (issue 11): 400, and
		// no empty marks/orders node either.
		{"addr NUL", "PUT", base + "orders/instances/%00/drain", `{"reason":"x"}`},
		{"addr NUL in host", "PUT", base + "orders/instances/10.0.0.5%00:8080/drain", `{"reason":"x"}`},
		{"addr SOH", "PUT", base + "orders/instances/%01/drain", `{"reason":"x"}`},
		{"addr SOH in host", "PUT", base + "orders/instances/10.0.0.5%01:8080/drain", `{"reason":"x"}`},
		{"addr DEL", "PUT", base + "orders/instances/%7F/drain", `{"reason":"x"}`},
		{"addr DEL in host", "PUT", base + "orders/instances/10.0.0.5%7F:8080/drain", `{"reason":"x"}`},
		{"addr C1", "PUT", base + "orders/instances/%C2%80/drain", `{"reason":"x"}`},
		{"addr C1 in host", "PUT", base + "orders/instances/10.0.0.5%C2%80:8080/drain", `{"reason":"x"}`},
		{"addr invalid UTF-8", "PUT", base + "orders/instances/%FF%FE/drain", `{"reason":"x"}`},
		{"addr invalid UTF-8 in host", "PUT", base + "orders/instances/10.0.0.5%FF%FE:8080/drain", `{"reason":"x"}`},
		{"addr private use", "PUT", base + "orders/instances/%EE%80%80/drain", `{"reason":"x"}`},
		{"addr private use in host", "PUT", base + "orders/instances/10.0.0.5%EE%80%80:8080/drain", `{"reason":"x"}`},
		{"addr ESC", "PUT", base + "orders/instances/%1B/drain", `{"reason":"x"}`},
		{"addr ESC in host", "PUT", base + "orders/instances/10.0.0.5%1B:8080/drain", `{"reason":"x"}`},
		{"undrain addr C1", "DELETE", base + "orders/instances/h%C2%80:80/drain", ``},
	} {
		code, body := api(t, tc.method, tc.url, token, tc.body)
		if code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", tc.name, code, body)
			continue
		}
		if er := decode[ctlclient.ErrorResponse](t, body); er.Error == "" {
			t.Errorf("%s: no error message in %s", tc.name, body)
		}
	}
	for _, p := range []string{e.zkRoot + "/marks", e.zkRoot + "/audit"} {
		kids, _, err := e.conn.Children(p)
		if err != nil && err != zk.ErrNoNode {
			t.Fatal(err)
		}
		if len(kids) > 0 {
			t.Errorf("%s has children after bad input: %v", p, kids)
		}
	}
	// The same request, well formed, works.
	if code, body := api(t, "PUT", drainURL, token, `{"reason":"x","allow_absent":true}`); code != http.StatusOK {
		t.Fatalf("good request: %d %s", code, body)
	}
}

// Mutating calls need a write token (401 without, 403 with a wrong one);
// GETs are open unless read_tokens is set.
func TestTokensEnforced(t *testing.T) {
	e := newEnv(t)
	open := e.startController("c1", e.config("", "", 0), controller.Options{})
	closed := e.startController("c2", e.config("read_tokens: [\"reader\"]\n", "", 0), controller.Options{})
	drain := "/v1/services/orders/instances/10.0.0.5:8080/drain"
	body := `{"reason":"x","allow_absent":true}`
	for _, c := range []*controller.Controller{open, closed} {
		if code, _ := api(t, "PUT", c.URL()+drain, "", body); code != http.StatusUnauthorized {
			t.Errorf("%s PUT without token: %d", c.ID(), code)
		}
		if code, _ := api(t, "PUT", c.URL()+drain, "wrong", body); code != http.StatusForbidden {
			t.Errorf("%s PUT with a wrong token: %d", c.ID(), code)
		}
		if code, _ := api(t, "DELETE", c.URL()+drain, "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s DELETE without token: %d", c.ID(), code)
		}
		if code, _ := api(t, "PUT", c.URL()+drain, "reader", body); code != http.StatusForbidden {
			t.Errorf("%s PUT with a read token: %d", c.ID(), code)
		}
	}
	if e.markExists("orders", "10.0.0.5:8080") {
		t.Fatal("an unauthorized call wrote a mark")
	}
	if code, _ := api(t, "GET", open.URL()+"/v1/services", "", ""); code != http.StatusOK {
		t.Errorf("open GET: %d", code)
	}
	if code, _ := api(t, "GET", closed.URL()+"/v1/services", "", ""); code != http.StatusUnauthorized {
		t.Errorf("GET without token with read_tokens set: %d", code)
	}
	if code, _ := api(t, "GET", closed.URL()+"/v1/services", "nope", ""); code != http.StatusForbidden {
		t.Errorf("GET with a wrong token: %d", code)
	}
	for _, tok := range []string{"reader", token} {
		if code, _ := api(t, "GET", closed.URL()+"/v1/gateways", tok, ""); code != http.StatusOK {
			t.Errorf("GET with token %q: %d", tok, code)
		}
	}
	if code, _ := api(t, "GET", closed.URL()+"/healthz", "", ""); code != http.StatusOK {
		t.Errorf("healthz needs no token: %d", code)
	}
	if code, _ := api(t, "PUT", open.URL()+drain, token, body); code != http.StatusOK {
		t.Errorf("PUT with the token: %d", code)
	}
}

// A leader partitioned from ZooKeeper stops acting as leader as soon as
// its connection drops (it cannot know whether its session still lives);
// the other replica takes over once the session expires; the old leader
// comes back as a follower with a new session.
func TestPartitionedLeaderStepsDown(t *testing.T) {
	e := newEnv(t)
	part := zktest.NewPartitioner()
	t.Cleanup(part.Restore)
	c1 := e.startController("c1", e.config("", "", 2*time.Second), controller.Options{Dialer: part.Dialer()})
	eventually(t, "c1 to lead", c1.IsLeader)
	c2 := e.startController("c2", e.config("", "", 0), controller.Options{})
	part.Cut()
	eventually(t, "c1 to step down", func() bool { return !c1.IsLeader() })
	eventually(t, "c2 to take over", c2.IsLeader)
	part.Restore()
	eventually(t, "c1 to follow c2", func() bool {
		l, err := client(t, c1.URL()).Leader(context.Background())
		return err == nil && !l.IsLeader && l.Leader == "c2"
	})
	if !c2.IsLeader() {
		t.Fatal("c2 lost leadership when c1 came back")
	}
	names, _, err := e.conn.Children(e.zkRoot + "/leader")
	if err != nil || len(names) != 2 {
		t.Fatalf("election nodes %v %v, want one per replica", names, err)
	}
}

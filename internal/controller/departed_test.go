package controller_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/presence"
)

// A gateway partitioned from ZooKeeper keeps routing by its last state
// after its session expired and its presence node went away. A drain
// started then is not confirmed: the gateway is reported lost until it
// comes back (then it counts like any other) or the departed window
// passes.
func TestDrainNotConfirmedWhileDepartedGatewayMayRoute(t *testing.T) {
	e := newEnv(t)
	w := e.startPartitionWorld(nil, 2*time.Second)
	a, part, cl := w.a, w.part, w.cl

	part.Cut()
	eventually(t, "gw-2's presence to go with its session, and its admin address probed", func() bool {
		g, err := cl.Gateways(context.Background())
		return err == nil && len(g.Gateways) == 1 && len(g.Departed) == 1 && g.Departed[0].ID == "gw-2" && !g.Departed[0].Leaving &&
			g.Departed[0].Probe != ""
	})
	// Its process still answers on its admin address: it is cut off from
	// ZooKeeper, not crashed, and may route by its last state.
	if g, _ := cl.Gateways(context.Background()); g.Departed[0].Gone != "" || !strings.Contains(g.Departed[0].Probe, "still answers") {
		t.Fatalf("partitioned gw-2 taken for gone: %+v", g.Departed[0])
	}
	// gw-2 is partitioned: it may still route to a.
	r := <-drainAsync(cl, "orders", a.addr, ctlclient.DrainRequest{Reason: "deploy", Wait: true, Timeout: "3s"})
	expectGw2Lost(t, r)
	in, _ := instance(t, cl, "orders", a.addr)
	if s, _ := gatewayState(in, "gw-2"); s != ctlclient.GatewayLost || in.State == ctlclient.StateDrained {
		t.Errorf("instance view with gw-2 lost: state %q, gw-2 %q", in.State, s)
	}

	// gw-2 comes back with a new session and applies the mark: it counts
	// again, and the drain is confirmed.
	part.Restore()
	r = <-drainAsync(cl, "orders", a.addr, ctlclient.DrainRequest{Reason: "deploy", Wait: true, Timeout: "30s"})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.resp.Confirmed {
		t.Fatalf("drain after gw-2 came back answered %+v", r.resp)
	}
	for _, g := range r.resp.Gateways {
		if g.State != ctlclient.GatewayDrained {
			t.Fatalf("gateway %s: %+v", g.ID, g)
		}
	}
	if len(r.resp.Gateways) != 2 {
		t.Fatalf("gateways %+v", r.resp.Gateways)
	}
}

// fakeGateway writes a presence node by hand (an ephemeral of the test's
// client) and returns its path.
func (e *env) fakeGateway(id string, data []byte) string {
	e.t.Helper()
	e.ensure(e.zkRoot + "/gateways")
	p := e.zkRoot + "/gateways/" + id
	if _, err := e.conn.Create(p, data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		e.t.Fatalf("creating %s: %v", p, err)
	}
	return p
}

func reportJSON(t *testing.T, r presence.Report) []byte {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A gateway whose node disappears without a leaving report blocks drains
// for controller.departed_window, then is gone and no longer waited for; a
// gateway that reported leaving before its node went is not waited for.
func TestDepartedWindowAndGracefulLeave(t *testing.T) {
	e := newEnv(t)
	ctl := e.startController("c1", e.config("departed_window: 8s\n", "", 0), controller.Options{})
	cl := client(t, ctl.URL())
	const addr = "10.0.0.5:8080"

	p := e.fakeGateway("gw-x", reportJSON(t, presence.Report{ID: "gw-x", Version: "test"}))
	eventually(t, "gw-x present", func() bool {
		g, err := cl.Gateways(context.Background())
		return err == nil && len(g.Gateways) == 1
	})
	if err := e.conn.Delete(p, -1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "gw-x departed", func() bool {
		g, err := cl.Gateways(context.Background())
		return err == nil && len(g.Gateways) == 0 && len(g.Departed) == 1 && g.Departed[0].ID == "gw-x"
	})
	r := <-drainAsync(cl, "orders", addr, ctlclient.DrainRequest{Reason: "x", Wait: true, Timeout: "1s", AllowAbsent: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.resp.Status != ctlclient.StatusLost || len(r.resp.Gateways) != 1 || r.resp.Gateways[0].State != ctlclient.GatewayLost {
		t.Fatalf("drain within the window answered %+v", r.resp)
	}
	// Within a longer wait the window passes: confirmed, gw-x gone.
	r = <-drainAsync(cl, "orders", addr, ctlclient.DrainRequest{Reason: "x", Wait: true, Timeout: "60s", AllowAbsent: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.resp.Confirmed || len(r.resp.Gateways) != 1 || r.resp.Gateways[0].State != ctlclient.GatewayGone {
		t.Fatalf("drain past the window answered %+v", r.resp)
	}

	// Graceful: the last report says leaving.
	p = e.fakeGateway("gw-y", reportJSON(t, presence.Report{ID: "gw-y", Version: "test"}))
	if _, err := e.conn.Set(p, reportJSON(t, presence.Report{ID: "gw-y", Version: "test", Leaving: true}), -1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "gw-y leaving", func() bool {
		g, err := cl.Gateways(context.Background())
		return err == nil && len(g.Gateways) == 1 && g.Gateways[0].Leaving
	})
	if err := e.conn.Delete(p, -1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "gw-y departed", func() bool {
		g, err := cl.Gateways(context.Background())
		return err == nil && len(g.Gateways) == 0 && len(g.Departed) == 1 && g.Departed[0].ID == "gw-y" && g.Departed[0].Leaving
	})
	r = <-drainAsync(cl, "orders", addr, ctlclient.DrainRequest{Reason: "x", Wait: true, Timeout: "5s", AllowAbsent: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.resp.Confirmed || len(r.resp.Gateways) != 0 {
		t.Fatalf("drain after a graceful shutdown answered %+v", r.resp)
	}
}

// A presence node that cannot be decoded (e.g. a gateway of an
// incompatible version) is not taken for an absent gateway: it is listed
// with its error, and drains are not confirmed while it is there.
func TestMalformedPresenceBlocksDrains(t *testing.T) {
	e := newEnv(t)
	ctl := e.startController("c1", e.config("", "", 0), controller.Options{})
	cl := client(t, ctl.URL())
	p := e.fakeGateway("gw-skewed", []byte(`{"id":"gw-skewed","marks":{"format":2}}`))
	eventually(t, "gw-skewed listed with its error", func() bool {
		g, err := cl.Gateways(context.Background())
		return err == nil && len(g.Gateways) == 1 && g.Gateways[0].ID == "gw-skewed" && g.Gateways[0].Error != ""
	})
	r := <-drainAsync(cl, "orders", "10.0.0.5:8080", ctlclient.DrainRequest{Reason: "x", Wait: true, Timeout: "1s", AllowAbsent: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.resp.Confirmed || r.resp.Status != ctlclient.StatusTimeout || len(r.resp.Gateways) != 1 ||
		r.resp.Gateways[0].State != ctlclient.GatewayPending || r.resp.Gateways[0].Error == "" {
		t.Fatalf("drain with an unreadable gateway answered %+v", r.resp)
	}
	// Once it writes a readable report applying the mark (any version at
	// least as new as the drain's), it counts.
	data := reportJSON(t, presence.Report{ID: "gw-skewed", Marks: []presence.AppliedMark{{
		Service: "orders", Addr: "10.0.0.5:8080", Mzxid: 1 << 62, State: "drained",
	}}})
	if _, err := e.conn.Set(p, data, -1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "gw-skewed readable", func() bool {
		g, err := cl.Gateways(context.Background())
		return err == nil && len(g.Gateways) == 1 && g.Gateways[0].Error == ""
	})
	r = <-drainAsync(cl, "orders", "10.0.0.5:8080", ctlclient.DrainRequest{Reason: "x", Wait: true, Timeout: "5s", AllowAbsent: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.resp.Confirmed || len(r.resp.Gateways) != 1 || r.resp.Gateways[0].State != ctlclient.GatewayDrained {
		t.Fatalf("drain with a readable report answered %+v", r.resp)
	}
}

// A gateway killed with -9 routes nothing: once its session expired, the
// controller finds nothing listening on its admin address and drains stop
// waiting for it, within the session timeout plus a few seconds rather
// than controller.departed_window (60 s by default).
func TestCrashedGatewayReleasesDrainsAfterSessionTimeout(t *testing.T) {
	const sessionTimeout = 4 * time.Second
	e := newEnv(t)
	w := e.startPartitionWorld(nil, sessionTimeout)
	a, g2, part, cl := w.a, w.g2, w.part, w.cl

	// kill -9: no leaving report, the session is left to expire.
	killed := time.Now()
	part.Cut()
	g2.Kill()
	r := <-drainAsync(cl, "orders", a.addr, ctlclient.DrainRequest{Reason: "deploy", Wait: true, Timeout: "25s"})
	took := time.Since(killed)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("drain answered %s %.1fs after the kill: %s", r.resp.Status, took.Seconds(), r.resp.Message)
	if !r.resp.Confirmed {
		t.Fatalf("drain with gw-2 crashed answered %+v", r.resp)
	}
	if limit := sessionTimeout + 6*time.Second; took > limit {
		t.Errorf("drain confirmed %.1fs after the kill, want ≤ %s (session timeout + 6 s)", took.Seconds(), limit)
	}
	states := map[string]ctlclient.GatewayDrain{}
	for _, g := range r.resp.Gateways {
		states[g.ID] = g
	}
	if states["gw-1"].State != ctlclient.GatewayDrained || states["gw-2"].State != ctlclient.GatewayGone ||
		!strings.Contains(states["gw-2"].Detail, "refused") {
		t.Fatalf("per-gateway states %+v", r.resp.Gateways)
	}
	g, err := cl.Gateways(context.Background())
	if err != nil || len(g.Departed) != 1 || !strings.Contains(g.Departed[0].Gone, "refused") {
		t.Fatalf("departed gateways %+v %v", g, err)
	}
}

// Probes of a departed gateway's admin address (fake presence nodes): a
// gateway that accepts connections but does not answer (paused, or
// unreachable) keeps drains unconfirmed; another process answering on its
// address (a restarted gateway: another boot id) means the old one is gone.
func TestDepartedGatewayProbes(t *testing.T) {
	e := newEnv(t)
	ctl := e.startController("c1", e.config("", "", 0), controller.Options{})
	cl := client(t, ctl.URL())
	const addr = "10.0.0.5:8080"

	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	// gw-r's process answers until it is "restarted": then another
	// process answers there.
	var restartedBoot atomic.Pointer[presence.Identity]
	restartedBoot.Store(&presence.Identity{ID: "gw-r", BootID: "old-boot", StartedMs: 1000})
	restarted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(restartedBoot.Load())
	}))
	t.Cleanup(restarted.Close)

	// gw-x's admin address refuses from the start (as a gateway on
	// another machine that listens on its own 127.0.0.1 looks from here):
	// a refusal there proves nothing about gw-x.
	refusing := httptest.NewServer(http.NotFoundHandler())
	refusingAddr := refusing.Listener.Addr().String()
	refusing.Close()
	pElsewhere := e.fakeGateway("gw-x", reportJSON(t, presence.Report{ID: "gw-x", Version: "test",
		AdminListen: refusingAddr, BootID: "boot-x", StartedMs: 1000}))
	pSilent := e.fakeGateway("gw-s", reportJSON(t, presence.Report{ID: "gw-s", Version: "test",
		AdminListen: silent.Addr().String(), BootID: "boot-s", StartedMs: 1000}))
	pRestarted := e.fakeGateway("gw-r", reportJSON(t, presence.Report{ID: "gw-r", Version: "test",
		AdminListen: restarted.Listener.Addr().String(), BootID: "old-boot", StartedMs: 1000}))
	// gw-r's address is seen answering as gw-r; gw-s's never answers, so
	// its departure will not be probed at all.
	eventually(t, "gw-r ready to be probed, gw-s's address asked in vain", func() bool {
		g, err := cl.Gateways(context.Background())
		if err != nil || len(g.Gateways) != 3 {
			return false
		}
		byID := map[string]ctlclient.GatewayView{}
		for _, v := range g.Gateways {
			byID[v.ID] = v
		}
		return byID["gw-r"].ProbeReady && !byID["gw-s"].ProbeReady && strings.Contains(byID["gw-s"].ProbeNote, "did not answer") &&
			!byID["gw-x"].ProbeReady && strings.Contains(byID["gw-x"].ProbeNote, "refused")
	})
	restartedBoot.Store(&presence.Identity{ID: "gw-r", BootID: "new-boot", StartedMs: 2000})
	for _, p := range []string{pSilent, pRestarted, pElsewhere} {
		if err := e.conn.Delete(p, -1); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "gw-r found gone, gw-s probed without an answer", func() bool {
		g, err := cl.Gateways(context.Background())
		if err != nil || len(g.Departed) != 3 {
			return false
		}
		dep := map[string]ctlclient.DepartedGateway{}
		for _, d := range g.Departed {
			dep[d.ID] = d
		}
		return strings.Contains(dep["gw-r"].Gone, "another process") && dep["gw-s"].Gone == "" && dep["gw-x"].Gone == "" &&
			strings.HasPrefix(dep["gw-x"].Probe, "not probed: ") &&
			strings.HasPrefix(dep["gw-s"].Probe, "not probed: ") && strings.Contains(dep["gw-s"].Probe, "did not answer")
	})
	r := <-drainAsync(cl, "orders", addr, ctlclient.DrainRequest{Reason: "x", Wait: true, Timeout: "6s", AllowAbsent: true})
	if r.err != nil {
		t.Fatal(r.err)
	}
	states := map[string]string{}
	for _, g := range r.resp.Gateways {
		states[g.ID] = g.State
	}
	// gw-r was known gone before the drain started: not even tracked.
	if r.resp.Confirmed || r.resp.Status != ctlclient.StatusLost || len(states) != 2 || states["gw-s"] != ctlclient.GatewayLost ||
		states["gw-x"] != ctlclient.GatewayLost {
		t.Fatalf("drain with gw-s silent and gw-r restarted answered %+v", r.resp)
	}
}

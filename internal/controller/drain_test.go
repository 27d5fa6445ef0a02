package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/marks"
)

// A drain stops new traffic to the instance at once, lets the request in
// flight finish, and is confirmed only once nothing is in flight; the
// instance then re-registers and the leader removes the mark, and traffic
// returns.
func TestConfirmedDrainWaitsForInFlightThenReregistrationClears(t *testing.T) {
	e := newEnv(t)
	started := make(chan string, 4)
	a, b := newBackend(t, "a", started), newBackend(t, "b", started)
	nodeA := e.register("orders", "a-1", a)
	e.register("orders", "b-1", b)
	ctl := e.startController("c1", e.config("", "", 0), controller.Options{})
	gw := e.startGateway("gw-1", 0, gatewayd.Options{})
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	eventually(t, "the controller to be leader", ctl.IsLeader)

	// A slow request is in flight to one instance: drain that one.
	victim, slowDone := startSlow(t, gw.ProxyAddr(), started)
	target, other := a, b
	if victim == "b" {
		target, other = b, a
	}
	cl := client(t, ctl.URL())
	res := drainAsync(cl, "orders", target.addr, ctlclient.DrainRequest{
		Reason: "release 4711", Wait: true, Timeout: "1m", DeployID: "d-4711",
	})
	eventually(t, "the gateway to apply the mark with one request in flight", func() bool {
		in, ok := instance(t, cl, "orders", target.addr)
		st, n := gatewayState(in, "gw-1")
		return ok && in.State == ctlclient.StateDraining && st == ctlclient.GatewayDraining && n == 1
	})
	select {
	case r := <-res:
		t.Fatalf("drain answered while a request is in flight: %+v %v", r.resp, r.err)
	default:
	}
	// New requests go to the other instance only.
	for i := 0; i < 20; i++ {
		if n, code := get(gw.ProxyAddr(), "/orders/"); code != http.StatusOK || n != other.name {
			t.Fatalf("request %d during the drain answered %d by %q, want 200 by %q", i, code, n, other.name)
		}
	}
	// The request in flight finishes normally; then the drain is confirmed.
	target.Release()
	if got := <-slowDone; got != "200 "+target.name {
		t.Fatalf("in-flight request ended %q, want 200 from %s", got, target.name)
	}
	r := <-res
	if r.err != nil {
		t.Fatalf("drain: %v", r.err)
	}
	if r.resp.Status != ctlclient.StatusDrained || !r.resp.Confirmed || len(r.resp.Gateways) != 1 ||
		r.resp.Gateways[0].State != ctlclient.GatewayDrained || r.resp.Gateways[0].DrainedMs == 0 {
		t.Fatalf("drain answer %+v", r.resp)
	}
	if r.resp.Warning != "" {
		t.Errorf("unexpected warning %q", r.resp.Warning)
	}
	// The mark's content is the contract of
	// docs/architecture.md#zookeeper-layout.
	data, _, err := e.conn.Get(e.markPath("orders", target.addr))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"reason", "by", "created_ms", "expires_ms", "deploy_id"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("mark lacks %q: %s", k, data)
		}
	}
	if raw["reason"] != "release 4711" || raw["deploy_id"] != "d-4711" || !strings.Contains(raw["by"].(string), "test via token:") {
		t.Errorf("mark content %s", data)
	}
	if !hasAudit(audit(t, cl), ctlclient.AuditDrain, target.addr) {
		t.Error("no audit entry for the drain")
	}

	// Redeploy: the old registration goes, a new one (new id, same
	// address) comes. Traffic returns and the leader removes the mark.
	if target == a {
		e.deregister(nodeA)
	} else {
		e.deregister(e.regRoot + "/orders/b-1")
	}
	e.register("orders", target.name+"-2", target)
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	eventually(t, "the leader to remove the mark", func() bool { return !e.markExists("orders", target.addr) })
	eventually(t, "an audit entry for the clearing", func() bool {
		return hasAudit(audit(t, cl), ctlclient.AuditClearReregistered, target.addr)
	})
}

// Draining an address that is not registered is allowed, with a warning;
// an undrain removes the mark; the HTTP API's shapes hold.
func TestDrainAheadAndUndrain(t *testing.T) {
	e := newEnv(t)
	ctl := e.startController("c1", e.config("", "", 0), controller.Options{})
	cl := client(t, ctl.URL())
	ctx := context.Background()
	r, err := cl.Drain(ctx, "orders", "10.1.2.3:8080", ctlclient.DrainRequest{Reason: "ahead", Wait: true, Timeout: "10s", AllowAbsent: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != ctlclient.StatusDrained || r.Warning == "" || !strings.Contains(r.Warning, "not registered") {
		t.Fatalf("drain ahead answered %+v", r)
	}
	if !e.markExists("orders", "10.1.2.3:8080") {
		t.Fatal("no mark written")
	}
	eventually(t, "the mark in the service view", func() bool {
		in, ok := instance(t, cl, "orders", "10.1.2.3:8080")
		return ok && in.State == ctlclient.StateAbsent && in.Mark != nil && in.Mark.Reason == "ahead" && !in.Registered
	})
	svcs, err := cl.Services(ctx)
	if err != nil || len(svcs.Services) != 1 || svcs.Services[0].Marked != 1 {
		t.Fatalf("services %+v %v", svcs, err)
	}
	u, err := cl.Undrain(ctx, "orders", "10.1.2.3:8080", "changed my mind")
	if err != nil || !u.Removed || u.Mark == nil || u.Mark.Reason != "ahead" {
		t.Fatalf("undrain %+v %v", u, err)
	}
	if e.markExists("orders", "10.1.2.3:8080") {
		t.Fatal("mark still there after undrain")
	}
	u, err = cl.Undrain(ctx, "orders", "10.1.2.3:8080", "")
	if err != nil || u.Removed {
		t.Fatalf("second undrain %+v %v", u, err)
	}
	entries := audit(t, cl)
	if len(entries) != 2 || entries[0].Action != ctlclient.AuditUndrain || entries[1].Action != ctlclient.AuditDrain ||
		entries[0].Reason != "changed my mind" || entries[0].Seq <= entries[1].Seq || entries[0].Controller != "c1" {
		t.Fatalf("audit entries %+v", entries)
	}
	gws, err := cl.Gateways(ctx)
	if err != nil || len(gws.Gateways) != 0 {
		t.Fatalf("gateways %+v %v", gws, err)
	}
	l, err := cl.Leader(ctx)
	if err != nil || l.ID != "c1" {
		t.Fatalf("leader %+v %v", l, err)
	}
	// Not waiting: the answer says "marked".
	r, err = cl.Drain(ctx, "orders", "10.1.2.3:8080", ctlclient.DrainRequest{Reason: "x", AllowAbsent: true})
	if err != nil || r.Status != ctlclient.StatusMarked || r.Mark.Mzxid == 0 {
		t.Fatalf("drain without wait %+v %v", r, err)
	}
	code, body := api(t, http.MethodGet, ctl.URL()+"/metrics", "", "")
	if code != http.StatusOK || !strings.Contains(string(body), "zkgate_controller_drains_total") {
		t.Fatalf("metrics %d", code)
	}
}

// Marks expire after their TTL, and marks of addresses absent from the
// registry longer than absent_grace are removed, by the leader.
func TestLeaderExpiresAndClearsAbsentMarks(t *testing.T) {
	e := newEnv(t)
	b := newBackend(t, "b", nil)
	e.register("orders", "b-1", b)
	ctl := e.startController("c1", e.config("absent_grace: 1500ms\nreconcile_interval: 1s\n", "", 0), controller.Options{})
	cl := client(t, ctl.URL())
	ctx := context.Background()
	if _, err := cl.Drain(ctx, "orders", b.addr, ctlclient.DrainRequest{Reason: "short", TTL: "1s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Drain(ctx, "orders", "10.9.9.9:80", ctlclient.DrainRequest{Reason: "ahead", TTL: "1h", AllowAbsent: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the expired mark to go", func() bool { return !e.markExists("orders", b.addr) })
	eventually(t, "the absent address's mark to go", func() bool { return !e.markExists("orders", "10.9.9.9:80") })
	// The audit entry is written after the mark is deleted.
	var entries []ctlclient.AuditEntry
	eventually(t, "the audit entries of both clearings", func() bool {
		entries = audit(t, cl)
		return hasAudit(entries, ctlclient.AuditExpire, b.addr) && hasAudit(entries, ctlclient.AuditClearAbsent, "10.9.9.9:80")
	})
	for _, en := range entries {
		if en.Action == ctlclient.AuditExpire && en.By != "controller:c1" {
			t.Errorf("job entry by %q", en.By)
		}
	}
	// The empty service directory is pruned by a reconciliation.
	eventually(t, "the empty marks directory to be pruned", func() bool {
		ok, _, err := e.conn.Exists(marks.Dir(e.zkRoot) + "/orders")
		return err == nil && !ok
	})
}

// The audit trail stays bounded: it is trimmed in batches, in the
// background, once it holds more than audit_limit + max(10, limit/10)
// entries, down to audit_limit; the API shows at most audit_limit entries,
// newest first.
func TestAuditBounded(t *testing.T) {
	e := newEnv(t)
	const limit, slack = 3, 10
	ctl := e.startController("c1", e.config("audit_limit: 3\n", "", 0), controller.Options{})
	cl := client(t, ctl.URL())
	ctx := context.Background()
	nodes := func() int {
		names, _, err := e.conn.Children(e.zkRoot + "/audit")
		if err != nil {
			t.Fatalf("audit nodes: %v", err)
		}
		return len(names)
	}
	pair := func() {
		if _, err := cl.Drain(ctx, "orders", "10.0.0.1:80", ctlclient.DrainRequest{Reason: "r", AllowAbsent: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Undrain(ctx, "orders", "10.0.0.1:80", ""); err != nil {
			t.Fatal(err)
		}
	}
	// Below limit+slack nothing is trimmed (no delete per entry).
	for i := 0; i < 4; i++ {
		pair()
	}
	time.Sleep(100 * time.Millisecond) // let a (wrongly) started trim show
	if n := nodes(); n != 8 {
		t.Fatalf("%d audit nodes after 8 entries, want 8 (no trim below limit+slack)", n)
	}
	entries := audit(t, cl)
	if len(entries) != limit || entries[0].Action != ctlclient.AuditUndrain {
		t.Fatalf("entries %+v", entries)
	}
	// Past limit+slack the trail is trimmed back towards the limit.
	for i := 0; i < 8; i++ {
		pair()
	}
	// 24 entries written: trimmed once (at 14) down to 3 since.
	eventually(t, "the audit trail trimmed", func() bool { n := nodes(); return n >= limit && n <= limit+slack })
	for i := 0; i < 20; i++ {
		pair()
		if n := nodes(); n > limit+slack+4 { // +4: the trim runs after the answer
			t.Fatalf("%d audit nodes, want at most about %d", n, limit+slack)
		}
	}
	eventually(t, "the audit trail bounded", func() bool { n := nodes(); return n >= limit && n <= limit+slack })
	entries = audit(t, cl)
	if len(entries) != limit || entries[0].Action != ctlclient.AuditUndrain || entries[1].Action != ctlclient.AuditDrain {
		t.Fatalf("entries %+v", entries)
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Seq >= entries[i-1].Seq {
			t.Fatalf("entries not newest first: %+v", entries)
		}
	}
	one, err := cl.Audit(ctx, "orders", 1)
	if err != nil || len(one.Entries) != 1 || one.Entries[0].Seq != entries[0].Seq {
		t.Fatalf("limited audit %+v %v", one, err)
	}
}

// A replica shutting down answers its waiting drains with 503 at once, so
// their clients can move to another replica, instead of holding them.
func TestShutdownReleasesWaitingDrains(t *testing.T) {
	e := newEnv(t)
	ctl := e.startController("c1", e.config("", "", 0), controller.Options{})
	// A gateway that never applies anything: its presence node only.
	e.ensure(e.zkRoot + "/gateways")
	if _, err := e.conn.Create(e.zkRoot+"/gateways/fake", []byte(`{"id":"fake"}`), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	cl := client(t, ctl.URL())
	eventually(t, "the fake gateway to be seen", func() bool {
		g, err := cl.Gateways(context.Background())
		return err == nil && len(g.Gateways) == 1
	})
	res := drainAsync(cl, "orders", "10.0.0.1:80", ctlclient.DrainRequest{Reason: "x", Wait: true, Timeout: "1h", AllowAbsent: true})
	eventually(t, "the drain to wait on the fake gateway", func() bool {
		in, ok := instance(t, cl, "orders", "10.0.0.1:80")
		st, _ := gatewayState(in, "fake")
		return ok && st == ctlclient.GatewayPending
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := ctl.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	r := <-res
	var ae *ctlclient.APIError
	if r.err == nil || (errors.As(r.err, &ae) && ae.StatusCode != http.StatusServiceUnavailable) {
		t.Fatalf("waiting drain answered %+v %v, want 503 or a refused connection", r.resp, r.err)
	}
}

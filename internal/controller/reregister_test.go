package controller_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/presence"
)

// The leader deletes the mark of an instance that registered again only
// once every live gateway acknowledged the new registration through its
// presence report; a gateway whose presence goes away stops blocking; and
// a gateway that never acknowledges is overruled after the bound, which is
// counted.
func TestReregistrationClearsMarkOnceEveryGatewayAcknowledged(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	node := e.register("orders", "a-1", a)
	e.register("orders", "b-1", b)
	c1 := e.startController("c1", e.config("reconcile_interval: 300ms\n", "", 0), controller.Options{})
	eventually(t, "c1 to lead", c1.IsLeader)
	gw := e.startGateway("gw-1", 0, gatewayd.Options{})
	waitRoutes(t, gw.ProxyAddr(), "a", "b")

	// A second gateway that reports only what the test writes.
	fakePath := presence.Dir(e.zkRoot) + "/fake"
	writeFake := func(ams ...presence.AppliedMark) {
		t.Helper()
		data, _ := json.Marshal(presence.Report{ID: "fake", Marks: ams})
		if _, err := e.conn.Set(fakePath, data, -1); err != nil {
			t.Fatalf("writing the fake presence: %v", err)
		}
	}
	createFake := func() {
		t.Helper()
		if _, err := e.conn.Create(fakePath, []byte(`{"id":"fake"}`), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatalf("creating the fake presence: %v", err)
		}
	}
	createFake()
	cl := client(t, c1.URL())
	eventually(t, "both gateways seen", func() bool {
		g, err := cl.Gateways(context.Background())
		return err == nil && len(g.Gateways) == 2
	})

	// drainAndRestart marks a (without waiting: the fake gateway never
	// confirms), re-registers it and waits until the controller shows gw-1
	// routing to the new registration while the fake one has not said so.
	restarts := 1
	drainAndRestart := func(c *ctlclient.Client) int64 {
		t.Helper()
		r, err := c.Drain(context.Background(), "orders", a.addr, ctlclient.DrainRequest{Reason: "rollout", TTL: "1h"})
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
		e.deregister(node)
		restarts++
		node = e.register("orders", "a-"+string(rune('0'+restarts)), a)
		eventually(t, "gw-1 to acknowledge the re-registration", func() bool {
			in, ok := instance(t, c, "orders", a.addr)
			s1, _ := gatewayState(in, "gw-1")
			sf, _ := gatewayState(in, "fake")
			return ok && in.Mark != nil && in.Mark.Mzxid == r.Mark.Mzxid && !in.Marked && in.Czxid > r.Mark.Mzxid &&
				(s1 == "warming" || s1 == "serving") && sf == ctlclient.GatewayPending && !in.Acknowledged
		})
		return r.Mark.Mzxid
	}
	reconciles := func(c *controller.Controller) int {
		for _, l := range strings.Split(ctlMetrics(t, c), "\n") {
			if v, ok := strings.CutPrefix(l, "zkgate_controller_reconciles_total "); ok {
				var n int
				for _, ch := range v {
					if ch < '0' || ch > '9' {
						break
					}
					n = n*10 + int(ch-'0')
				}
				return n
			}
		}
		return 0
	}
	// afterReconciles returns once the leader has applied its rules twice
	// more to fresh state (nothing that should happen is merely late).
	afterReconciles := func(c *controller.Controller) {
		t.Helper()
		n := reconciles(c)
		eventually(t, "two more reconciliations", func() bool { return reconciles(c) >= n+2 })
	}

	// 1. One gateway has not acknowledged: the mark stays, and traffic
	// reaches a through the gateway that has.
	mz := drainAndRestart(cl)
	afterReconciles(c1)
	if !e.markExists("orders", a.addr) {
		t.Fatal("the mark was deleted before every gateway acknowledged the re-registration")
	}
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	// It acknowledges: the mark goes.
	writeFake(presence.AppliedMark{Service: "orders", Addr: a.addr, Mzxid: mz, State: "warming"})
	eventually(t, "the mark to go once every gateway acknowledged", func() bool { return !e.markExists("orders", a.addr) })
	entries := auditEventually(t, cl, "the clearing in the audit trail", func(entries []ctlclient.AuditEntry) bool {
		return hasAudit(entries, ctlclient.AuditClearReregistered, a.addr)
	})
	if !strings.Contains(entries[0].Detail, "acknowledged") {
		t.Fatalf("audit entries %+v", entries)
	}

	// 2. A gateway that never acknowledges stops blocking when its
	// presence goes away.
	drainAndRestart(cl)
	afterReconciles(c1)
	if !e.markExists("orders", a.addr) {
		t.Fatal("the mark was deleted although the fake gateway reports an older version")
	}
	if err := e.conn.Delete(fakePath, -1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the mark to go with the silent gateway", func() bool { return !e.markExists("orders", a.addr) })

	// 3. A new leader with a short bound overrules a silent gateway, and
	// counts it.
	createFake()
	c2 := e.startController("c2", e.config("reconcile_interval: 300ms\n", "", 0), controller.Options{ReregisterAckBound: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c2 to lead", c2.IsLeader)
	cl2 := client(t, c2.URL())
	eventually(t, "both gateways seen by c2", func() bool {
		g, err := cl2.Gateways(context.Background())
		return err == nil && len(g.Gateways) == 2
	})
	drainAndRestart(cl2)
	eventually(t, "the bound to clear the mark", func() bool { return !e.markExists("orders", a.addr) })
	if m := ctlMetrics(t, c2); !strings.Contains(m, `zkgate_controller_marks_cleared_total{why="reregistered_bound"} 1`) {
		t.Errorf("the clearing by the bound is not counted:\n%s", grepLines(m, "marks_cleared"))
	}
	entries = auditEventually(t, cl2, "the clearing by the bound in the audit trail", func(entries []ctlclient.AuditEntry) bool {
		return len(entries) > 0 && entries[0].Action == ctlclient.AuditClearReregistered
	})
	if entries[0].Action != ctlclient.AuditClearReregistered || !strings.Contains(entries[0].Detail, "fake") {
		t.Errorf("the audit entry does not name the silent gateway: %+v", entries[0])
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package controller_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/register"
)

// afterReconciles returns once the leader has applied its rules twice more
// to fresh state, so that a mark that should have been deleted by now is
// not merely late.
func afterReconciles(t *testing.T, c *controller.Controller) {
	t.Helper()
	count := func() int {
		for _, l := range strings.Split(ctlMetrics(t, c), "\n") {
			if v, ok := strings.CutPrefix(l, "zkgate_controller_reconciles_total "); ok {
				var n int
				fmt.Sscan(v, &n)
				return n
			}
		}
		return 0
	}
	n := count()
	eventually(t, "two more reconciliations", func() bool { return count() >= n+2 })
}

// routesOnly sends requests through the gateway and fails when any of
// them reaches a backend outside names.
func routesOnly(t *testing.T, proxyAddr string, names ...string) {
	t.Helper()
	for i := 0; i < 40; i++ {
		n, code := get(proxyAddr, "/orders/")
		if code != http.StatusOK {
			t.Fatalf("request %d: status %d", i, code)
		}
		ok := false
		for _, want := range names {
			ok = ok || n == want
		}
		if !ok {
			t.Fatalf("request %d reached %q, which is drained", i, n)
		}
	}
}

// A session flap of a drained instance does not undo the drain: its
// registrar (zkgate's register library, as `zkgate register` runs it)
// re-creates the same registration (same id, same registrationTimeUTC)
// on a new session after the old one expired; the new node is newer than
// the mark by zxid, yet the gateway keeps the instance out of rotation and
// the leader keeps the mark. A restart (a new Registration: a new id)
// clears it. README.md, "ZooKeeper layout (contract)".
func TestSessionFlapDoesNotUndoDrain(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	e.register("orders", "b-1", b)
	part := zktest.NewPartitioner()
	regOpts := register.Options{
		Servers: e.servers, SessionTimeout: 2 * time.Second, Dialer: part.Dial,
		Root: e.regRoot, Service: "orders", Address: a.addr, Logger: e.log,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	reg, err := register.Register(ctx, regOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { reg.Close() }()

	c1 := e.startController("c1", e.config("reconcile_interval: 300ms\n", "", 0), controller.Options{})
	eventually(t, "c1 to lead", c1.IsLeader)
	gw := e.startGateway("gw-1", 0, gatewayd.Options{})
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	cl := client(t, c1.URL())

	r, err := cl.Drain(ctx, "orders", a.addr, ctlclient.DrainRequest{Reason: "deploy", TTL: "1h", Wait: true, Timeout: "20s"})
	if err != nil || r.Status != ctlclient.StatusDrained {
		t.Fatalf("drain: %+v, %v", r, err)
	}
	routesOnly(t, gw.ProxyAddr(), "b")
	first := reg.Status()

	// The flap: a partition longer than the session timeout; the servers
	// expire the session and delete the node; the registrar re-creates it.
	part.Blackhole()
	eventually(t, "the registrar to see its session lost", func() bool { return !reg.Status().Registered })
	part.Restore()
	eventually(t, "the registration to be re-created", func() bool {
		st := reg.Status()
		return st.Registered && st.Czxid > first.Czxid
	})
	again := reg.Status()
	if again.Czxid <= r.Mark.Mzxid {
		t.Fatalf("re-created registration czxid %d is not newer than the mark's mzxid %d", again.Czxid, r.Mark.Mzxid)
	}
	eventually(t, "the controller to see the re-created registration", func() bool {
		in, ok := instance(t, cl, "orders", a.addr)
		return ok && in.Czxid == again.Czxid
	})
	afterReconciles(t, c1)
	if !e.markExists("orders", a.addr) {
		t.Fatal("the leader deleted the mark after a session flap of the drained instance")
	}
	in, _ := instance(t, cl, "orders", a.addr)
	if !in.Marked || in.State != ctlclient.StateDrained {
		t.Fatalf("after the flap the controller shows marked=%v state %s", in.Marked, in.State)
	}
	routesOnly(t, gw.ProxyAddr(), "b")

	// A restart: a new process registers anew (a new id).
	reg.Close()
	reg, err = register.Register(ctx, regOpts)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the restart to clear the mark", func() bool { return !e.markExists("orders", a.addr) })
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	if entries := audit(t, cl); !hasAudit(entries, ctlclient.AuditClearReregistered, a.addr) {
		t.Fatalf("audit entries %+v", entries)
	}
}

package gateway

import (
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/instancestate"
	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/zktree"
)

// A marked instance gets no new requests; the ones in flight finish; its
// state goes draining → drained; Updates fires for the table and for each
// change of its in-flight count.
func TestDrainMarkedInstance(t *testing.T) {
	gt, a, b, tg := newGatedPair(t)
	ia, ib := inst("s", a.addr(), 10), inst("s", b.addr(), 11)
	tg.Update(regSnap(1, ia), nil)
	c := client()
	done := goGet(c, tg.front.URL+"/svc/slow")
	gt.waitArrived(t)

	drainChanges(tg.Gateway)
	tg.Update(regSnap(2, ia, ib), markSnap(1, mark("s", a.addr(), 20)))
	waitChange(t, tg.Gateway)
	if r, m := tg.AppliedRevision(); r != 2 || m != 1 {
		t.Fatalf("applied revision %d/%d", r, m)
	}
	st := tg.status(t, a.addr())
	if st.State != instancestate.Draining || st.InFlight != 1 || !st.Marked || st.MarkReason != "deploy" || st.FailOpen {
		t.Fatalf("a while its request runs: %+v", st)
	}
	for i := 0; i < 30; i++ {
		if r := get(t, c, tg.front.URL+"/svc/x"); r.code != 200 || r.body != "b /svc/x" {
			t.Fatalf("request %d during the drain: %d %q", i, r.code, r.body)
		}
	}
	if n := a.hits.Load(); n != 1 {
		t.Fatalf("marked instance got %d requests, want only the one in flight", n)
	}

	drainChanges(tg.Gateway)
	gt.open()
	if r := <-done; r.code != 200 || r.body != "a" {
		t.Fatalf("in-flight request: %d %q", r.code, r.body)
	}
	waitChange(t, tg.Gateway)
	eventually(t, "a drained", func() bool {
		st := tg.status(t, a.addr())
		return st.State == instancestate.Drained && st.InFlight == 0
	})
}

// A mark applies only while no registration of its address is newer
// (czxid > mzxid); an expired mark is ignored.
func TestMarkZxidRuleAndExpiry(t *testing.T) {
	clk := newFakeClock()
	a := newBackend(t, "a", nil)
	f := false
	tg := newTestGateway(t, config.Gateway{FailOpen: &f, Routes: []config.Route{rte("/", "s")}}, Options{Now: clk.Now})
	c := client()

	// Re-registered after the mark: served.
	tg.Update(regSnap(1, inst("s", a.addr(), 30)), markSnap(1, mark("s", a.addr(), 20)))
	if st := tg.status(t, a.addr()); st.State != instancestate.Serving || st.Marked {
		t.Fatalf("registered after the mark: %+v", st)
	}
	if r := get(t, c, tg.front.URL+"/"); r.code != 200 {
		t.Fatalf("got %d", r.code)
	}

	// Registered before the mark: out (no fail-open here).
	tg.Update(regSnap(2, inst("s", a.addr(), 10)), markSnap(1, mark("s", a.addr(), 20)))
	if st := tg.status(t, a.addr()); st.State != instancestate.Drained || !st.Marked {
		t.Fatalf("registered before the mark: %+v", st)
	}
	if r := get(t, c, tg.front.URL+"/"); r.code != 503 {
		t.Fatalf("marked, fail-open off: got %d", r.code)
	}

	// Expired: ignored.
	m := mark("s", a.addr(), 20)
	m.ExpiresMs = clk.Now().Add(-time.Second).UnixMilli()
	tg.Update(regSnap(2, inst("s", a.addr(), 10)), markSnap(2, m))
	if st := tg.status(t, a.addr()); st.State != instancestate.Serving || st.Marked {
		t.Fatalf("expired mark: %+v", st)
	}

	// Expiring later: applies until then.
	m.ExpiresMs = clk.Now().Add(time.Minute).UnixMilli()
	tg.Update(regSnap(2, inst("s", a.addr(), 10)), markSnap(3, m))
	if st := tg.status(t, a.addr()); st.State != instancestate.Drained {
		t.Fatalf("live mark: %+v", st)
	}
	clk.Advance(2 * time.Minute)
	tg.refresh()
	if st := tg.status(t, a.addr()); st.State != instancestate.Serving {
		t.Fatalf("after expiry: %+v", st)
	}
}

// A session flap is not a restart (README.md, "ZooKeeper layout
// (contract)"): a registration created after the mark with the
// incarnation the mark recorded keeps the instance drained; one with
// another incarnation (a restart) ends the mark. A gone host is judged by
// its last registration's incarnation.
func TestMarkFlapRule(t *testing.T) {
	gt := newGate(t)
	a := newBackend(t, "a", gt.handler("a"))
	f := false
	tg := newTestGateway(t, config.Gateway{FailOpen: &f, Routes: []config.Route{rte("/", "s")}}, Options{})
	m := mark("s", a.addr(), 20)
	m.Incarnation = "u-1@5"
	reg := func(czxid int64, incarnation string) registry.Instance {
		in := inst("s", a.addr(), czxid)
		in.Incarnation = incarnation
		return in
	}
	tg.Update(regSnap(1, reg(30, "u-1@5")), markSnap(1, m))
	if st := tg.status(t, a.addr()); st.State != instancestate.Drained || !st.Marked {
		t.Fatalf("re-created after a flap: %+v", st)
	}
	tg.Update(regSnap(2, reg(40, "u-2@9")), markSnap(1, m))
	if st := tg.status(t, a.addr()); st.State != instancestate.Serving || st.Marked {
		t.Fatalf("restarted: %+v", st)
	}

	// The flapped registration with a request in flight leaves the
	// registry: still marked while it drains.
	tg.Update(regSnap(3, reg(50, "u-1@5")), markSnap(1, m))
	c := client()
	tg.Update(regSnap(4, reg(50, "u-1@5")), nil)
	done := goGet(c, tg.front.URL+"/svc/slow")
	defer gt.open() // before the gateway's cleanup waits for the request
	gt.waitArrived(t)
	tg.Update(regSnap(5), markSnap(2, m))
	if st := tg.status(t, a.addr()); st.State != instancestate.Gone || !st.Marked || st.InFlight != 1 {
		t.Fatalf("gone, flapped registration: %+v", st)
	}
	gt.open()
	<-done
}

// Expiry needs no new snapshot: the gateway rebuilds when the first mark
// expires (real clock).
func TestMarkExpiryTimer(t *testing.T) {
	a := newBackend(t, "a", nil)
	f := false
	tg := newTestGateway(t, config.Gateway{FailOpen: &f, Routes: []config.Route{rte("/", "s")}}, Options{})
	m := mark("s", a.addr(), 20)
	m.ExpiresMs = time.Now().Add(50 * time.Millisecond).UnixMilli()
	tg.Update(regSnap(1, inst("s", a.addr(), 10)), markSnap(1, m))
	eventually(t, "the mark to expire", func() bool {
		return tg.status(t, a.addr()).State == instancestate.Serving
	})
	if r := get(t, client(), tg.front.URL+"/"); r.code != 200 {
		t.Fatalf("got %d", r.code)
	}
}

func TestFailOpenWhenAllMarked(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", a.addr(), 1), inst("s", b.addr(), 2)),
		markSnap(1, mark("s", a.addr(), 5), mark("s", b.addr(), 5)))
	c := client()
	for i := 0; i < 10; i++ {
		if r := get(t, c, tg.front.URL+"/"); r.code != 200 {
			t.Fatalf("fail-open: got %d %s", r.code, r.body)
		}
	}
	if n := counterValue(t, tg.metrics.failOpen.WithLabelValues("s")); n != 10 {
		t.Fatalf("zkgate_fail_open_total = %v, want 10", n)
	}
	for _, st := range tg.InstanceStates() {
		if !st.Marked || !st.FailOpen || (st.State != instancestate.Drained && st.State != instancestate.Draining) {
			t.Fatalf("fail-open instance: %+v", st)
		}
	}

	// One instance unmarked: no more fail-open, it takes everything.
	tg.Update(regSnap(1, inst("s", a.addr(), 1), inst("s", b.addr(), 2)),
		markSnap(2, mark("s", a.addr(), 5)))
	for i := 0; i < 10; i++ {
		if r := get(t, c, tg.front.URL+"/"); r.body != "b /" {
			t.Fatalf("got %q, want b", r.body)
		}
	}

	// Fail-open off: 503.
	f := false
	tg2 := newTestGateway(t, config.Gateway{FailOpen: &f, Routes: []config.Route{rte("/", "s")}}, Options{})
	tg2.Update(regSnap(1, inst("s", a.addr(), 1)), markSnap(1, mark("s", a.addr(), 5)))
	if r := get(t, c, tg2.front.URL+"/"); r.code != 503 {
		t.Fatalf("fail-open off: got %d", r.code)
	}
}

func TestOutOfServiceExcluded(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	oos := inst("s", a.addr(), 1)
	oos.Status = "OUT_OF_SERVICE"
	tg.Update(regSnap(1, oos, inst("s", b.addr(), 2)), nil)
	c := client()
	for i := 0; i < 20; i++ {
		if r := get(t, c, tg.front.URL+"/"); r.body != "b /" {
			t.Fatalf("got %q", r.body)
		}
	}
	if st := tg.status(t, a.addr()); st.State != instancestate.Down || st.Weight != 0 {
		t.Fatalf("out of service: %+v", st)
	}
	// Down instances are never a fail-open target.
	tg.Update(regSnap(2, oos), nil)
	if r := get(t, c, tg.front.URL+"/"); r.code != 503 {
		t.Fatalf("only a down instance: got %d", r.code)
	}
	if a.hits.Load() != 0 {
		t.Fatal("the down instance got requests")
	}
}

// In-flight state belongs to the address, not to the table: it survives
// Updates, and an address that left the registry is reported (gone) until
// its requests end.
func TestHostStateSurvivesUpdate(t *testing.T) {
	gt, a, b, tg := newGatedPair(t)
	ia := inst("s", a.addr(), 1)
	tg.Update(regSnap(1, ia), nil)
	c := client()
	done := goGet(c, tg.front.URL+"/svc/slow")
	gt.waitArrived(t)

	tg.Update(regSnap(2, ia, inst("s", b.addr(), 2)), nil)
	if st := tg.status(t, a.addr()); st.InFlight != 1 || st.State != instancestate.Serving {
		t.Fatalf("after an update: %+v", st)
	}
	tg.Update(regSnap(3, inst("s", b.addr(), 2)), nil)
	if st := tg.status(t, a.addr()); st.InFlight != 1 || st.State != instancestate.Gone {
		t.Fatalf("after leaving the registry: %+v", st)
	}
	// Back before its request ended: same state object.
	tg.Update(regSnap(4, ia, inst("s", b.addr(), 2)), nil)
	if st := tg.status(t, a.addr()); st.InFlight != 1 {
		t.Fatalf("after coming back: %+v", st)
	}
	gt.open()
	<-done
	eventually(t, "in-flight 0", func() bool { return tg.status(t, a.addr()).InFlight == 0 })
	tg.Update(regSnap(5, inst("s", b.addr(), 2)), nil)
	tg.Update(regSnap(6, inst("s", b.addr(), 2)), nil)
	if st := tg.status(t, a.addr()); st.Addr != "" {
		t.Fatalf("address gone and idle is still reported: %+v", st)
	}
	if n := tg.InFlight(); n != 0 {
		t.Fatalf("InFlight() = %d", n)
	}
}

func TestNilSnapshots(t *testing.T) {
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(nil, nil)
	if r := get(t, client(), tg.front.URL+"/"); r.code != 503 {
		t.Fatalf("got %d", r.code)
	}
	tg.Update(&registry.Snapshot{Info: zktree.Info{Revision: 1}}, nil)
	if r, m := tg.AppliedRevision(); r != 1 || m != 0 {
		t.Fatalf("revisions %d %d", r, m)
	}
}

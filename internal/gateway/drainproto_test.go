package gateway

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/instancestate"
)

// hostOf returns the host of addr in the active set of the table in use.
func hostOf(t *testing.T, g *Gateway, addr string) *host {
	t.Helper()
	for _, h := range g.table.Load().pools[0].active {
		if h.addr == addr {
			return h
		}
	}
	t.Fatalf("%s is not in rotation", addr)
	return nil
}

// withPublishHook runs fn in the next table build, between publishing the
// table to the request path and storing its members' flags.
func withPublishHook(t *testing.T, fn func()) {
	t.Helper()
	testHookPublished = fn
	t.Cleanup(func() { testHookPublished = nil })
}

// A report is never built from a table whose host flags are not stored
// yet: otherwise it could say "marked, not failing open, 0 in flight"
// while a request holding the previous (fail-open) table still acquires
// the instance. Whatever a report says, a request that gets through is in
// the count.
func TestReportNotAheadOfHostFlags(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	reg := regSnap(1, inst("s", a.addr(), 1), inst("s", b.addr(), 2))
	tg.Update(reg, markSnap(1, mark("s", a.addr(), 5), mark("s", b.addr(), 5)))
	if !tg.table.Load().pools[0].failOpen {
		t.Fatal("setup: not failing open")
	}
	hA := hostOf(t, tg.Gateway, a.addr())

	var inHook InstanceStatus
	var acquired bool
	withPublishHook(t, func() {
		// The presence writer builds a report here, and a request that
		// picked A from the fail-open table acquires it.
		inHook = tg.status(t, a.addr())
		acquired = hA.acquire()
	})
	// B is no longer marked: A is not failed open to any more.
	tg.Update(reg, markSnap(2, mark("s", a.addr(), 5)))
	testHookPublished = nil

	if inHook.Marked && !inHook.FailOpen && inHook.InFlight == 0 && acquired {
		t.Fatalf("a report said drained with nothing in flight (%+v), then a request got through to A", inHook)
	}
	st := tg.status(t, a.addr())
	if !st.Marked || st.FailOpen {
		t.Fatalf("after the update: %+v", st)
	}
	if acquired && st.InFlight != 1 {
		t.Fatalf("a request got through and the report says %d in flight", st.InFlight)
	}
	if acquired {
		hA.release()
	}
	// From now on nothing gets through to A.
	if hA.acquire() {
		t.Fatal("acquire on a drained instance succeeded")
	}
	if st := tg.status(t, a.addr()); st.State != instancestate.Drained || st.InFlight != 0 {
		t.Fatalf("drained: %+v", st)
	}
}

// A host that leaves the registry is excluded before its in-flight count is
// read: a request that picked it from the previous table either gets
// through and is reported (state gone, counted by InFlight and so by
// Shutdown), or picks again.
func TestLeavingHostNeverInvisible(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", a.addr(), 1), inst("s", b.addr(), 2)), markSnap(1))
	hA := hostOf(t, tg.Gateway, a.addr())

	var acquired bool
	withPublishHook(t, func() { acquired = hA.acquire() })
	tg.Update(regSnap(2, inst("s", b.addr(), 2)), markSnap(1))
	testHookPublished = nil

	st := tg.status(t, a.addr())
	if acquired && (st.State != instancestate.Gone || st.InFlight != 1 || tg.InFlight() != 1) {
		t.Fatalf("a request to A got through but is not reported: %+v, InFlight() = %d", st, tg.InFlight())
	}
	if hA.acquire() {
		t.Fatal("acquire on a host that left the registry succeeded")
	}
	if acquired {
		hA.release()
	}
	// Idle and excluded: dropped at the next table.
	tg.Update(regSnap(3, inst("s", b.addr(), 2)), markSnap(1))
	if st := tg.status(t, a.addr()); st.Addr != "" || tg.InFlight() != 0 {
		t.Fatalf("idle host that left is still reported: %+v", st)
	}
}

// A mark written after its instance left the registry, while a request to
// it is still in flight, makes it draining (not absent) until the request
// ends, and the end signals Updates.
func TestGoneHostMarkedLater(t *testing.T) {
	gt, a, b, tg := newGatedPair(t)
	ia, ib := inst("s", a.addr(), 1), inst("s", b.addr(), 2)
	tg.Update(regSnap(1, ia), markSnap(1))
	done := goGet(client(), tg.front.URL+"/svc/slow")
	gt.waitArrived(t)
	tg.Update(regSnap(2, ib), markSnap(1))
	if st := tg.status(t, a.addr()); st.State != instancestate.Gone || st.Marked || st.InFlight != 1 {
		t.Fatalf("gone: %+v", st)
	}
	tg.Update(regSnap(2, ib), markSnap(2, mark("s", a.addr(), 5)))
	if st := tg.status(t, a.addr()); st.State != instancestate.Gone || !st.Marked || st.InFlight != 1 {
		t.Fatalf("gone, then marked: %+v", st)
	}
	drainChanges(tg.Gateway)
	gt.open()
	if r := <-done; r.code != 200 {
		t.Fatalf("in-flight request: %d %v", r.code, r.err)
	}
	waitChange(t, tg.Gateway)
	if st := tg.status(t, a.addr()); st.Addr != "" {
		t.Fatalf("idle host that left is still reported: %+v", st)
	}
	tg.Update(regSnap(3, ib), markSnap(2, mark("s", a.addr(), 5)))
	if n := tg.InFlight(); n != 0 {
		t.Fatalf("InFlight() = %d", n)
	}
}

// Traffic to instances in rotation, failed-open ones included, never
// signals Updates (every signal costs a presence write); the end of a
// request to an instance that a mark keeps out of rotation does.
func TestChangesOnlyForDrainingInstances(t *testing.T) {
	gt := newGate(t)
	a := newBackend(t, "a", gt.handler("a"))
	b := newBackend(t, "b", gt.handler("b"))
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/svc/", "s")}}, Options{})
	reg := regSnap(1, inst("s", a.addr(), 1), inst("s", b.addr(), 2))
	c := client()

	for _, ms := range []struct {
		name string
		all  bool
	}{{"serving", false}, {"failing open", true}} {
		if ms.all {
			tg.Update(reg, markSnap(2, mark("s", a.addr(), 5), mark("s", b.addr(), 5)))
		} else {
			tg.Update(reg, markSnap(1))
		}
		drainChanges(tg.Gateway)
		for i := 0; i < 20; i++ {
			if r := get(t, c, tg.front.URL+"/svc/x"); r.code != 200 {
				t.Fatalf("%s: %d %s", ms.name, r.code, r.body)
			}
		}
		select {
		case <-tg.Updates():
			t.Fatalf("%s: requests signalled Updates", ms.name)
		case <-time.After(20 * time.Millisecond):
		}
	}

	// A request in flight to a while it is failed open to; then b is
	// unmarked, so a drains: the end of its request signals.
	done := goGet(c, tg.front.URL+"/svc/slow")
	gt.waitArrived(t)
	var slow string
	for _, st := range tg.InstanceStates() {
		if st.InFlight == 1 {
			slow = st.Addr
		}
	}
	tg.Update(reg, markSnap(3, mark("s", slow, 5)))
	if st := tg.status(t, slow); st.State != instancestate.Draining || st.FailOpen {
		t.Fatalf("draining: %+v", st)
	}
	drainChanges(tg.Gateway)
	gt.open()
	if r := <-done; r.code != 200 {
		t.Fatalf("slow request: %d", r.code)
	}
	waitChange(t, tg.Gateway)
	if st := tg.status(t, slow); st.State != instancestate.Drained {
		t.Fatalf("drained: %+v", st)
	}
}

// While the controller may not see the gateway (its session is lost),
// /readyz fails at once, long before stale_after; the proxy keeps routing.
func TestReadyzDetached(t *testing.T) {
	a := newBackend(t, "a", nil)
	sync := &fakeSync{}
	tg := newTestGateway(t, config.Gateway{StaleAfter: time.Hour, Routes: []config.Route{rte("/", "s")}}, Options{Sync: sync})
	tg.Update(regSnap(1, inst("s", a.addr(), 1)), markSnap(1))
	sync.ns.Store(time.Now().UnixNano())
	c := client()
	if rd := tg.Ready(); !rd.Ready {
		t.Fatalf("fresh: %+v", rd)
	}
	sync.detach("zookeeper session lost")
	r := get(t, c, tg.admin.URL+"/readyz")
	var rd Readiness
	decodeJSON(t, r.body, &rd)
	if r.code != 503 || rd.Ready || !strings.Contains(rd.Reason, "session lost") {
		t.Fatalf("detached: %d %+v", r.code, rd)
	}
	if r := get(t, c, tg.front.URL+"/x"); r.code != 200 || r.body != "a /x" {
		t.Fatalf("routing while detached: %d %q", r.code, r.body)
	}
	sync.detach("")
	if rd := tg.Ready(); !rd.Ready {
		t.Fatalf("attached again: %+v", rd)
	}
}

// The same race as TestLeavingHostNeverInvisible, without a hook: a request
// acquires a host from the previous table at a random moment while the
// table without it is built. If it gets through, it must be reported.
func TestLeavingHostRace(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	ib := inst("s", b.addr(), 2)
	got := 0
	var spin atomic.Int64
	for i := 0; i < 20000; i++ {
		tg.Update(regSnap(uint64(3*i+1), inst("s", a.addr(), int64(i+10)), ib), markSnap(1))
		hA := hostOf(t, tg.Gateway, a.addr())
		var start, acquired atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			for !start.Load() {
			}
			for j := 0; j < (i%300)*4; j++ {
				spin.Add(1)
			}
			acquired.Store(hA.acquire())
		}()
		start.Store(true)
		tg.Update(regSnap(uint64(3*i+2), ib), markSnap(1))
		<-done
		if acquired.Load() {
			got++
			if st := tg.status(t, a.addr()); st.State != instancestate.Gone || st.InFlight != 1 || tg.InFlight() != 1 {
				t.Fatalf("iteration %d: a request to A got through but is not reported: %+v, InFlight() = %d", i, st, tg.InFlight())
			}
			hA.release()
		}
		tg.Update(regSnap(uint64(3*i+3), ib), markSnap(1))
	}
	t.Logf("%d of the requests got through", got)
}

package gateway

import (
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/instancestate"
)

// A dying instance cuts every request already sent to it at once: that is
// one failure episode, one ejection of the base length, not an ejection per
// ejectAfter failures with a doubling backoff (10 s, 20 s, 40 s, 80 s within
// milliseconds, as measured before). And a new registration at the address,
// a new process, is not ejected at all.
func TestEjectionOnePerFailureBurst(t *testing.T) {
	clk := newFakeClock()
	gt := newGate(t)
	dying := newBackend(t, "dying", gt.handler("dying"))
	live := newBackend(t, "live", nil)
	t.Cleanup(gt.open) // before the backends close, should the test fail
	tg := newTestGateway(t, config.Gateway{Balancer: config.BalancerRoundRobin, Routes: []config.Route{rte("/svc/", "s")}}, Options{Now: clk.Now})
	tg.Update(regSnap(1, inst("s", dying.addr(), 1), inst("s", live.addr(), 2)), nil)

	const n = 24 // round robin: 12 reach the dying instance
	c := client()
	var res []<-chan result
	for i := 0; i < n; i++ {
		res = append(res, goPost(c, tg.front.URL+"/svc/slow", "x"))
	}
	for i := 0; i < n/2; i++ {
		gt.waitArrived(t)
	}
	dying.CloseClientConnections() // the process dies: all 12 are cut
	var failed int
	for _, ch := range res {
		if r := <-ch; r.err != nil || r.code != 200 {
			failed++
		}
	}
	if failed < ejectAfter*2 {
		t.Fatalf("only %d requests were cut; the test needs several bursts' worth", failed)
	}
	if got := counterValue(t, tg.metrics.ejections.WithLabelValues("s")); got != 1 {
		t.Fatalf("%d cut requests made %v ejections, want 1", failed, got)
	}
	if st := tg.status(t, dying.addr()); st.State != instancestate.Ejected {
		t.Fatalf("dying: %+v", st)
	}
	// The backend is back within the base ejection: it serves once that
	// ended (not 80 s later).
	clk.Advance(ejectBase + time.Second)
	if st := tg.status(t, dying.addr()); st.State != instancestate.Serving {
		t.Fatalf("%v after the burst: %+v", ejectBase+time.Second, st)
	}
	gt.open()
	before := dying.hits.Load()
	for i := 0; i < 4; i++ {
		if r := post(t, c, tg.front.URL+"/svc/x", "x"); r.code != 200 {
			t.Fatalf("got %d", r.code)
		}
	}
	if dying.hits.Load() == before {
		t.Fatal("the restarted instance got no traffic after its ejection ended")
	}

	// Ejected again; then the process restarts and registers anew (a new
	// czxid): the new registration is in rotation at once.
	dying.Listener.Close()
	dying.CloseClientConnections()
	for i := 0; i < 8; i++ {
		post(t, c, tg.front.URL+"/svc/x", "x")
	}
	if st := tg.status(t, dying.addr()); st.State != instancestate.Ejected {
		t.Fatalf("dead again: %+v", st)
	}
	tg.Update(regSnap(2, inst("s", dying.addr(), 3), inst("s", live.addr(), 2)), nil)
	if st := tg.status(t, dying.addr()); st.State != instancestate.Serving {
		t.Fatalf("re-registered: %+v", st)
	}
}

package gateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/instancestate"
)

func testPool(b balancer, n int) (*pool, []*host) {
	hosts := make([]*host, n)
	for i := range hosts {
		hosts[i] = newHost("s", fmt.Sprintf("10.0.0.%d:80", i+1), make(chan struct{}, 1))
	}
	return &pool{svc: &service{name: "s"}, balancer: b, active: hosts}, hosts
}

func TestBalancersSpreadLoad(t *testing.T) {
	for _, bal := range []string{config.BalancerLeastRequests, config.BalancerRoundRobin} {
		t.Run(bal, func(t *testing.T) {
			bs := []*backend{newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)}
			tg := newTestGateway(t, config.Gateway{Balancer: bal, Routes: []config.Route{rte("/", "s")}}, Options{})
			tg.Update(regSnap(1, inst("s", bs[0].addr(), 1), inst("s", bs[1].addr(), 1), inst("s", bs[2].addr(), 1)), nil)
			c := client()
			for i := 0; i < 300; i++ {
				if r := get(t, c, tg.front.URL+"/x"); r.code != 200 {
					t.Fatalf("got %d %s", r.code, r.body)
				}
			}
			for _, b := range bs {
				if n := b.hits.Load(); n < 30 {
					t.Errorf("backend %s got %d of 300 requests", b.name, n)
				}
			}
		})
	}
}

func TestLeastRequestsPrefersIdle(t *testing.T) {
	p, hs := testPool(leastRequests, 3)
	hs[0].inflight.Store(5)
	hs[1].inflight.Store(3)
	counts := map[*host]int{}
	for i := 0; i < 3000; i++ {
		ps := pickState{nowFn: time.Now}
		counts[p.pick(&ps)]++
	}
	if counts[hs[0]] != 0 {
		t.Errorf("busiest host picked %d times", counts[hs[0]])
	}
	if counts[hs[2]] < counts[hs[1]] {
		t.Errorf("idle host picked %d times, busier one %d", counts[hs[2]], counts[hs[1]])
	}

	// Two hosts: every pick compares both, so the idle one always wins.
	p, hs = testPool(leastRequests, 2)
	hs[0].inflight.Store(1)
	for i := 0; i < 1000; i++ {
		ps := pickState{nowFn: time.Now}
		if h := p.pick(&ps); h != hs[1] {
			t.Fatalf("picked the busy host")
		}
	}
}

func TestLeastRequestsPrefersIdleEndToEnd(t *testing.T) {
	gt, a, b, tg := newGatedPair(t)
	tg.Update(regSnap(1, inst("s", a.addr(), 1)), nil)
	c := client()
	done := goGet(c, tg.front.URL+"/svc/slow")
	gt.waitArrived(t)
	tg.Update(regSnap(2, inst("s", a.addr(), 1), inst("s", b.addr(), 2)), nil)
	for i := 0; i < 20; i++ {
		if r := get(t, c, tg.front.URL+"/svc/x"); r.header.Get("X-Backend") != "b" {
			t.Fatalf("request %d went to %q, want the idle instance b", i, r.header.Get("X-Backend"))
		}
	}
	gt.open()
	if r := <-done; r.code != 200 || r.body != "a" {
		t.Fatalf("slow request: %d %q", r.code, r.body)
	}
}

func TestPickSkipsTriedAndEjected(t *testing.T) {
	for _, bal := range []balancer{leastRequests, roundRobin} {
		p, hs := testPool(bal, 3)
		now := time.Now()
		hs[0].ejectedUntil.Store(now.Add(time.Minute).UnixNano())
		for i := 0; i < 200; i++ {
			ps := pickState{nowFn: func() time.Time { return now }}
			ps.addTried(hs[1])
			if h := p.pick(&ps); h != hs[2] {
				t.Fatalf("balancer %d picked %v, want the only untried, unejected host", bal, h.addr)
			}
			ps.addTried(hs[2])
			if h := p.pick(&ps); h != hs[0] {
				t.Fatalf("balancer %d: ejected host not used as last resort", bal)
			}
			ps.addTried(hs[0])
			if h := p.pick(&ps); h != nil {
				t.Fatalf("balancer %d picked a tried host", bal)
			}
		}
	}
}

func TestWarmupWeightRamp(t *testing.T) {
	clk := newFakeClock()
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	tg := newTestGateway(t, config.Gateway{Warmup: 100 * time.Second, Routes: []config.Route{rte("/", "s")}}, Options{Now: clk.Now})
	ia, ib := inst("s", a.addr(), 1), inst("s", b.addr(), 2)

	// Instances already there when the gateway starts do not warm up.
	tg.Update(regSnap(1, ia), nil)
	if st := tg.status(t, a.addr()); st.State != instancestate.Serving || st.Weight != 1 {
		t.Fatalf("a at start: %+v", st)
	}
	// A new address warms up from 10%.
	tg.Update(regSnap(2, ia, ib), nil)
	st := tg.status(t, b.addr())
	if st.State != instancestate.Warming || st.Weight < 0.099 || st.Weight > 0.101 {
		t.Fatalf("b when it appears: %+v", st)
	}
	// The less weight, the fewer picks.
	p := tg.table.Load().pools[0]
	picks := map[string]int{}
	for i := 0; i < 4000; i++ {
		ps := pickState{nowFn: clk.Now, warmup: tg.warmup}
		picks[p.pick(&ps).addr]++
	}
	if picks[b.addr()] == 0 || picks[b.addr()]*3 > picks[a.addr()] {
		t.Errorf("picks while b warms at 10%%: %v", picks)
	}

	clk.Advance(50 * time.Second)
	if st := tg.status(t, b.addr()); st.State != instancestate.Warming || st.Weight < 0.54 || st.Weight > 0.56 {
		t.Fatalf("b half-way: %+v", st)
	}
	clk.Advance(51 * time.Second)
	if st := tg.status(t, b.addr()); st.State != instancestate.Serving || st.Weight != 1 {
		t.Fatalf("b after warm-up: %+v", st)
	}

	// Marked: out of rotation. Unmarked: warms up again.
	tg.Update(regSnap(2, ia, ib), markSnap(1, mark("s", b.addr(), 10)))
	if st := tg.status(t, b.addr()); st.State != instancestate.Drained || st.Weight != 0 {
		t.Fatalf("b marked: %+v", st)
	}
	tg.Update(regSnap(2, ia, ib), markSnap(2))
	if st := tg.status(t, b.addr()); st.State != instancestate.Warming || st.Weight > 0.101 {
		t.Fatalf("b unmarked: %+v", st)
	}
	// Re-registered (new czxid): warms up again.
	clk.Advance(200 * time.Second)
	tg.Update(regSnap(3, ia, inst("s", b.addr(), 20)), markSnap(2))
	if st := tg.status(t, b.addr()); st.State != instancestate.Warming {
		t.Fatalf("b re-registered: %+v", st)
	}

	// A gateway starting right after an instance registered warms it up
	// from its registration time.
	tg2 := newTestGateway(t, config.Gateway{Warmup: 100 * time.Second, Routes: []config.Route{rte("/", "s")}}, Options{Now: clk.Now})
	fresh := inst("s", b.addr(), 30)
	fresh.Registered = clk.Now().Add(-10 * time.Second)
	tg2.Update(regSnap(1, ia, fresh), nil)
	if st := tg2.status(t, b.addr()); st.State != instancestate.Warming || st.Weight < 0.18 || st.Weight > 0.2 {
		t.Fatalf("freshly registered at start: %+v", st)
	}
}

func TestRoundRobinWarmupSkips(t *testing.T) {
	now := time.Now()
	p, hs := testPool(roundRobin, 2)
	hs[1].warmStart.Store(now.UnixNano()) // weight 0.1
	picks := map[*host]int{}
	for i := 0; i < 4000; i++ {
		ps := pickState{nowFn: func() time.Time { return now }, warmup: int64(time.Minute)}
		picks[p.pick(&ps)]++
	}
	if picks[hs[1]] == 0 || picks[hs[1]]*3 > picks[hs[0]] {
		t.Errorf("round robin picks with one host at 10%%: %d vs %d", picks[hs[0]], picks[hs[1]])
	}
}

func TestAcquireLeftRotation(t *testing.T) {
	ch := make(chan struct{}, 1)
	signalled := func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	h := newHost("s", "a:1", ch)
	h.flags.Store(flagMarked | flagExcluded)
	if h.acquire() {
		t.Fatal("acquired a host that left rotation")
	}
	if n := h.inflight.Load(); n != 0 {
		t.Fatalf("in-flight %d after a refused acquire", n)
	}
	if !signalled() {
		t.Fatal("the undone count of a draining host did not signal")
	}
	h.flags.Store(flagMarked) // failing open
	if !h.acquire() {
		t.Fatal("refused a fail-open host")
	}
	h.release()
	if signalled() {
		t.Fatal("traffic to a fail-open host signalled")
	}
	if !h.acquire() {
		t.Fatal("refused a fail-open host")
	}
	h.flags.Store(flagMarked | flagExcluded) // draining now
	h.release()
	if !signalled() {
		t.Fatal("the end of a request to a draining host did not signal")
	}
}

func TestEjectionBackoff(t *testing.T) {
	h := newHost("s", "a:1", nil)
	now := time.Now().UnixNano()
	at := func(d time.Duration) int64 { return now + int64(d) }
	// fail makes k failures of requests that took h in episode ep and
	// returns the ejections they caused.
	fail := func(k int, ep uint32, when int64) []time.Duration {
		var got []time.Duration
		for i := 0; i < k; i++ {
			if d := h.connFailed(ep, when); d > 0 {
				got = append(got, d)
			}
		}
		return got
	}
	// A burst of failures of requests that all took h before the ejection:
	// one ejection.
	ep := h.episode.Load()
	if got := fail(18, ep, now); fmt.Sprint(got) != "[10s]" {
		t.Fatalf("one burst: ejections %v, want [10s]", got)
	}
	// Requests that took h while it was ejected (a last resort) fail
	// within the episode acted on.
	if got := fail(9, h.episode.Load(), at(5*time.Second)); len(got) != 0 {
		t.Fatalf("failures while ejected: ejections %v", got)
	}
	// After the ejection: a late failure of a request that took h while
	// it was ejected does not count either ...
	if got := fail(3, h.episode.Load(), at(11*time.Second)); len(got) != 0 {
		t.Fatalf("late failures of requests taken while ejected: ejections %v", got)
	}
	// ... but ejectAfter failures of requests taken after it ended, with no
	// success in between, eject it again for twice as long, and so on.
	want := []time.Duration{20 * time.Second, 40 * time.Second, 80 * time.Second, 2 * time.Minute, 2 * time.Minute}
	var got []time.Duration
	when := at(11 * time.Second)
	for i := range want {
		if i > 0 {
			// The first failure after the ejection ended opens the new
			// episode; it was taken in the old one.
			got = append(got, fail(1, h.episode.Load(), when)...)
		}
		got = append(got, fail(ejectAfter, h.episode.Load(), when)...)
		when = h.ejectedUntil.Load() + 1
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ejections %v, want %v", got, want)
	}
	// A success after the ejection ended resets the backoff.
	h.succeeded(func() time.Time { return time.Unix(0, when) })
	if got := fail(ejectAfter, h.episode.Load(), when); fmt.Sprint(got) != "[10s]" {
		t.Fatalf("after a success: ejections %v, want [10s]", got)
	}
	// A new registration at the address (a new process): not ejected, no
	// backoff, and the old process's failures do not count.
	old := h.episode.Load()
	fail(ejectAfter, old, when) // while ejected
	h.resetEjection()
	if h.ejectedAt(when) {
		t.Fatal("a new registration inherited the ejection")
	}
	if got := fail(2*ejectAfter, old, when); len(got) != 0 {
		t.Fatalf("the old process's failures ejected the new one: %v", got)
	}
	h.connFailed(h.episode.Load(), when)
	h.connFailed(h.episode.Load(), when)
	if got := fail(1, h.episode.Load(), when); fmt.Sprint(got) != "[10s]" {
		t.Fatalf("new registration: ejections %v, want [10s] (no backoff)", got)
	}
}

func BenchmarkPick(b *testing.B) {
	for _, bc := range []struct {
		name string
		bal  balancer
	}{{"LeastRequests", leastRequests}, {"RoundRobin", roundRobin}} {
		b.Run(bc.name, func(b *testing.B) {
			p, _ := testPool(bc.bal, 10)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ps := pickState{nowFn: time.Now}
					h := p.pick(&ps)
					h.acquire()
					h.release()
				}
			})
		})
	}
}

func BenchmarkRouteMatch(b *testing.B) {
	var routes []config.Route
	for i := 0; i < 20; i++ {
		routes = append(routes, config.Route{Prefix: fmt.Sprintf("/svc%d/", i), Service: "s"})
	}
	rs, _ := newRouteSet(routes)
	path, host := []byte("/svc7/orders/1"), []byte("gw")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if rs.matchBytes(path, host) == nil {
			b.Fatal("no match")
		}
	}
}

package gateway

import (
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/instancestate"
	"github.com/zkgate/zkgate/internal/marks"
)

// pendingSnap is markSnap plus the pending marks of service s at addrs.
func pendingSnap(rev uint64, s string, addrs []string, ms ...marks.Mark) *marks.Snapshot {
	snap := markSnap(rev, ms...)
	snap.Pending = map[string]map[string]struct{}{s: {}}
	for _, a := range addrs {
		snap.Pending[s][a] = struct{}{}
	}
	return snap
}

// A mark written but not read yet (marks.Snapshot.Pending) takes its
// address out of rotation at once without marking it (nothing reported as
// drained for it); when every instance is pending the pool fails open; a
// pending mark that turns out not to apply restarts no warm-up.
func TestPendingMarkExcludes(t *testing.T) {
	clk := newFakeClock()
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	tg := newTestGateway(t, config.Gateway{Warmup: 100 * time.Second, Routes: []config.Route{rte("/svc/", "s")}}, Options{Now: clk.Now})
	c := client()
	reg := regSnap(1, inst("s", a.addr(), 10), inst("s", b.addr(), 11))
	tg.Update(reg, markSnap(1))
	if st := tg.status(t, a.addr()); st.State != instancestate.Serving || st.Weight != 1 {
		t.Fatalf("a before any mark: %+v", st)
	}

	tg.Update(reg, pendingSnap(2, "s", []string{a.addr()}))
	st := tg.status(t, a.addr())
	if !st.MarkPending || st.Marked || st.Weight != 0 || st.State != instancestate.Serving {
		t.Fatalf("a with a pending mark: %+v, want pending, not marked, weight 0", st)
	}
	before := a.hits.Load()
	for i := 0; i < 20; i++ {
		if r := get(t, c, tg.front.URL+"/svc/x"); r.code != 200 || r.body != "b /svc/x" {
			t.Fatalf("request %d while a's mark is pending: %d %q", i, r.code, r.body)
		}
	}
	if n := a.hits.Load() - before; n != 0 {
		t.Fatalf("a got %d requests while its mark was pending", n)
	}

	// Both pending: they serve rather than refuse every request.
	tg.Update(reg, pendingSnap(3, "s", []string{a.addr(), b.addr()}))
	if r := get(t, c, tg.front.URL+"/svc/x"); r.code != 200 {
		t.Fatalf("every instance pending: %d %q, want served", r.code, r.body)
	}

	// The read finds a mark older than a's registration: it does not
	// apply, and a is back at full weight (no warm-up restarted).
	clk.Advance(time.Second)
	tg.Update(reg, markSnap(4, mark("s", a.addr(), 5)))
	if st := tg.status(t, a.addr()); st.MarkPending || st.Marked || st.State != instancestate.Serving || st.Weight != 1 {
		t.Fatalf("a after its pending mark was read and does not apply: %+v", st)
	}

	// A warming instance stays warming through a pending mark that does
	// not apply (neither restarted nor ended).
	d := newBackend(t, "d", nil)
	reg = regSnap(2, inst("s", a.addr(), 10), inst("s", b.addr(), 11), inst("s", d.addr(), 30))
	tg.Update(reg, markSnap(6))
	clk.Advance(50 * time.Second)
	w0 := tg.status(t, d.addr()).Weight
	if w0 <= 0.1 || w0 >= 1 {
		t.Fatalf("d half-way through its warm-up: weight %v", w0)
	}
	tg.Update(reg, pendingSnap(7, "s", []string{d.addr()}))
	tg.Update(reg, markSnap(8, mark("s", d.addr(), 5)))
	if st := tg.status(t, d.addr()); st.State != instancestate.Warming || st.Weight != w0 {
		t.Fatalf("d after a pending mark that does not apply: %+v, want still warming at weight %v", st, w0)
	}

	// The read finds a mark that applies: a is drained.
	tg.Update(reg, markSnap(9, mark("s", a.addr(), 20)))
	if st := tg.status(t, a.addr()); st.MarkPending || !st.Marked || st.State != instancestate.Drained {
		t.Fatalf("a after its pending mark was read and applies: %+v", st)
	}

	// a drained, b's mark pending: b serves; a stays out and is not
	// reported failed open (its drain stays confirmable).
	reg = regSnap(3, inst("s", a.addr(), 10), inst("s", b.addr(), 11))
	tg.Update(reg, pendingSnap(10, "s", []string{b.addr()}, mark("s", a.addr(), 20)))
	before = a.hits.Load()
	for i := 0; i < 10; i++ {
		if r := get(t, c, tg.front.URL+"/svc/x"); r.code != 200 || r.body != "b /svc/x" {
			t.Fatalf("request %d with a drained and b pending: %d %q", i, r.code, r.body)
		}
	}
	if n := a.hits.Load() - before; n != 0 {
		t.Fatalf("drained a got %d requests while only b's mark was pending", n)
	}
	if st := tg.status(t, a.addr()); !st.Marked || st.FailOpen || st.State != instancestate.Drained {
		t.Fatalf("a drained while b is pending: %+v, want drained, not failed open", st)
	}
}

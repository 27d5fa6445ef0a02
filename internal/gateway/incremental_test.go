package gateway

import (
	"maps"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/instancestate"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/zktree"
)

// The registry and marks caches publish a snapshot that shares every
// unchanged service's instances (and marks) with the previous one. These
// helpers make such snapshots: prev with service's content replaced.

func regNext(prev *registry.Snapshot, rev uint64, service string, ins ...registry.Instance) *registry.Snapshot {
	s := &registry.Snapshot{Info: zktree.Info{Revision: rev, Time: time.Now()}, Services: maps.Clone(prev.Services)}
	if len(ins) == 0 {
		delete(s.Services, service)
		return s
	}
	ins = slices.Clone(ins)
	sort.Slice(ins, func(a, b int) bool { return ins[a].Addr < ins[b].Addr })
	s.Services[service] = ins
	return s
}

func markNext(prev *marks.Snapshot, rev uint64, service string, ms ...marks.Mark) *marks.Snapshot {
	s := &marks.Snapshot{Info: zktree.Info{Revision: rev}, Marks: maps.Clone(prev.Marks)}
	delete(s.Marks, service)
	for _, m := range ms {
		if s.Marks[service] == nil {
			s.Marks[service] = map[string]marks.Mark{}
		}
		s.Marks[service][m.Addr] = m
	}
	return s
}

// host returns the host of service/addr in the current table.
func (tg *testGateway) host(t testing.TB, service, addr string) *host {
	t.Helper()
	for _, p := range tg.table.Load().pools {
		if p.svc.name != service {
			continue
		}
		if k, ok := p.memberOf(addr); ok {
			return p.members[k].h
		}
	}
	t.Fatalf("%s/%s is not in the table", service, addr)
	return nil
}

func (tg *testGateway) statusOf(t testing.TB, service, addr string) InstanceStatus {
	t.Helper()
	for _, st := range tg.InstanceStates() {
		if st.Service == service && st.Addr == addr {
			return st
		}
	}
	t.Fatalf("%s/%s is not reported", service, addr)
	return InstanceStatus{}
}

func (tg *testGateway) poolOf(service string) *pool {
	return tg.table.Load().pools[tg.byName[service].idx]
}

// Three services with state of their own (a request in flight, a
// warm-up, an ejection), each at addresses that the others share (an
// instance is its address within its service). A change to one service
// rebuilds exactly its pool: the others keep their pools and their state,
// and the changed one shows the change.
func TestRebuildOnlyTheChangedService(t *testing.T) {
	clk := newFakeClock()
	tg := newTestGateway(t, config.Gateway{
		Warmup: 100 * time.Second,
		Routes: []config.Route{rte("/a/", "a"), rte("/b/", "b"), rte("/c/", "c")},
	}, Options{Now: clk.Now})
	const x, y, z = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"
	reg1 := regSnap(1, inst("a", x, 1), inst("a", y, 2), inst("b", x, 3), inst("b", y, 4), inst("c", x, 5), inst("c", y, 6))
	mk := markSnap(1)
	tg.Update(reg1, mk)

	// a/x: a request in flight. c/x: ejected. b/y and c/y re-register, so
	// they warm up (a new czxid at the address) from now.
	if !tg.host(t, "a", x).acquire() {
		t.Fatal("a/x: acquire refused")
	}
	ch := tg.host(t, "c", x)
	for range ejectAfter {
		ch.connFailed(ch.episode.Load(), clk.Now().UnixNano())
	}
	reg2 := regNext(reg1, 2, "c", inst("c", x, 5), inst("c", y, 16))
	reg2 = regNext(reg2, 2, "b", inst("b", x, 3), inst("b", y, 14))
	tg.Update(reg2, mk)
	clk.Advance(5 * time.Second) // warming, still ejected
	before := map[string]InstanceStatus{}
	for _, st := range tg.InstanceStates() {
		before[st.Service+"/"+st.Addr] = st
	}
	if st := before["a/"+x]; st.InFlight != 1 {
		t.Fatalf("a/x before: %+v", st)
	}
	if st := before["c/"+x]; st.State != instancestate.Ejected {
		t.Fatalf("c/x before: %+v", st)
	}
	if st := before["c/"+y]; st.State != instancestate.Warming || st.Weight >= 1 {
		t.Fatalf("c/y before: %+v", st)
	}
	pa, pc := tg.poolOf("a"), tg.poolOf("c")

	// b gains z and loses y; a and c are unchanged.
	reg3 := regNext(reg2, 3, "b", inst("b", x, 3), inst("b", z, 20))
	tg.Update(reg3, mk)
	if tg.poolOf("a") != pa || tg.poolOf("c") != pc {
		t.Error("an unchanged service's pool was built again")
	}
	if rr, mr := tg.AppliedRevision(); rr != 3 || mr != 1 {
		t.Errorf("applied revisions %d/%d, want 3/1", rr, mr)
	}
	after := map[string]InstanceStatus{}
	for _, st := range tg.InstanceStates() {
		after[st.Service+"/"+st.Addr] = st
	}
	for _, k := range []string{"a/" + x, "a/" + y, "c/" + x, "c/" + y, "b/" + x} {
		if after[k] != before[k] {
			t.Errorf("%s changed: %+v, was %+v", k, after[k], before[k])
		}
	}
	if _, ok := after["b/"+y]; ok {
		t.Errorf("b/y left the registry and is still reported: %+v", after["b/"+y])
	}
	if st, ok := after["b/"+z]; !ok || st.State != instancestate.Warming || st.Czxid != 20 {
		t.Errorf("b/z: %+v (reported %v), want warming at czxid 20", st, ok)
	}
	if got := tg.poolOf("b"); len(got.active) != 2 || got.active[0].addr != x || got.active[1].addr != z {
		t.Errorf("b's rotation is not x and z")
	}

	// The request to a/x still counts; releasing it leaves a/x serving
	// and idle, c/x stays ejected until its ejection ends.
	tg.host(t, "a", x).release()
	if st := tg.statusOf(t, "a", x); st.InFlight != 0 || st.State != instancestate.Serving {
		t.Errorf("a/x after release: %+v", st)
	}
	clk.Advance(ejectBase)
	if st := tg.statusOf(t, "c", x); st.State != instancestate.Serving {
		t.Errorf("c/x after its ejection: %+v", st)
	}
}

// A mark (or a pending mark) in a service whose instances did not change
// is applied, and its removal puts the instance back; the registry
// snapshot is the very same one throughout.
func TestRebuildOnMarkChangeAlone(t *testing.T) {
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/a/", "a"), rte("/b/", "b")}}, Options{})
	const x, y = "10.0.0.1:80", "10.0.0.2:80"
	reg := regSnap(1, inst("a", x, 1), inst("a", y, 2), inst("b", x, 3), inst("b", y, 4))
	mk1 := markSnap(1)
	tg.Update(reg, mk1)
	pa := tg.poolOf("a")

	// A mark of b/x is written: first pending, then read.
	mk2 := markNext(mk1, 2, "b")
	mk2.Pending = map[string]map[string]struct{}{"b": {x: {}}}
	tg.Update(reg, mk2)
	if st := tg.statusOf(t, "b", x); !st.MarkPending || st.Weight != 0 {
		t.Fatalf("b/x with its mark pending: %+v", st)
	}
	if p := tg.poolOf("b"); len(p.active) != 1 || p.active[0].addr != y {
		t.Fatal("b/x pending is still in b's rotation")
	}
	mk3 := markNext(mk2, 3, "b", mark("b", x, 10))
	mk3.Pending = nil
	tg.Update(reg, mk3)
	if st := tg.statusOf(t, "b", x); st.MarkPending || !st.Marked || st.State != instancestate.Drained {
		t.Fatalf("b/x marked: %+v", st)
	}
	if f := tg.host(t, "b", x).flags.Load(); f != flagDraining {
		t.Fatalf("b/x flags %b, want marked and excluded", f)
	}
	if a := tg.AppliedMarked(); len(a.Instances) != 1 || a.Instances[0].Addr != x || a.Instances[0].Service != "b" || !a.Instances[0].Marked {
		t.Fatalf("AppliedMarked: %+v", a.Instances)
	}

	// The same mark again, in a new map (a full re-read of the marks):
	// nothing to rebuild, still marked.
	pb := tg.poolOf("b")
	tg.Update(reg, markNext(mk3, 4, "b", mark("b", x, 10)))
	if tg.poolOf("b") != pb {
		t.Error("b was built again for marks of the same content")
	}
	if st := tg.statusOf(t, "b", x); !st.Marked {
		t.Fatalf("b/x after the re-read: %+v", st)
	}
	// The mark is rewritten (new mzxid) with a new reason: shown.
	m := mark("b", x, 11)
	m.Reason = "again"
	tg.Update(reg, markNext(mk3, 5, "b", m))
	if st := tg.statusOf(t, "b", x); !st.Marked || st.MarkReason != "again" {
		t.Fatalf("b/x after the mark was rewritten: %+v", st)
	}

	// Undrained: back in rotation.
	tg.Update(reg, markNext(mk3, 6, "b"))
	if st := tg.statusOf(t, "b", x); st.Marked || st.State != instancestate.Serving {
		t.Fatalf("b/x undrained: %+v", st)
	}
	if f := tg.host(t, "b", x).flags.Load(); f != 0 {
		t.Fatalf("b/x flags %b after the undrain, want none", f)
	}
	if tg.poolOf("a") != pa {
		t.Error("a's pool was built again although nothing of a changed")
	}
}

// A mark that expires changes the table with no new snapshot: the
// expiry's rebuild must rebuild the pool holding it even though its
// inputs are the same.
func TestRebuildOnMarkExpiry(t *testing.T) {
	clk := newFakeClock()
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/a/", "a"), rte("/b/", "b")}}, Options{Now: clk.Now})
	const x, y = "10.0.0.1:80", "10.0.0.2:80"
	reg := regSnap(1, inst("a", x, 1), inst("a", y, 2), inst("b", x, 3), inst("b", y, 4))
	m := mark("b", x, 10)
	m.ExpiresMs = clk.Now().Add(time.Minute).UnixMilli()
	tg.Update(reg, markSnap(1, m))
	if st := tg.statusOf(t, "b", x); !st.Marked {
		t.Fatalf("b/x: %+v", st)
	}
	clk.Advance(time.Minute)
	tg.refresh()
	if st := tg.statusOf(t, "b", x); st.Marked || st.State != instancestate.Serving {
		t.Fatalf("b/x after its mark expired: %+v", st)
	}
	if f := tg.host(t, "b", x).flags.Load(); f != 0 {
		t.Fatalf("b/x flags %b after its mark expired, want none", f)
	}
}

// A snapshot with new slices for every service, changed or not (a full
// re-read after a failed partial one builds every group): every pool is
// built again from them, the changed service shows its change, and
// per-address state carries over everywhere.
func TestRebuildAfterFullResync(t *testing.T) {
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/a/", "a"), rte("/b/", "b")}}, Options{})
	const x, y = "10.0.0.1:80", "10.0.0.2:80"
	reg1 := regSnap(1, inst("a", x, 1), inst("a", y, 2), inst("b", x, 3), inst("b", y, 4))
	tg.Update(reg1, markSnap(1))
	if !tg.host(t, "a", x).acquire() {
		t.Fatal("acquire refused")
	}
	down := inst("b", y, 4)
	down.Status = "OUT_OF_SERVICE"
	reg2 := regSnap(2, inst("a", x, 1), inst("a", y, 2), inst("b", x, 3), down)
	tg.Update(reg2, markSnap(2, mark("a", y, 5)))
	if st := tg.statusOf(t, "b", y); st.State != instancestate.Down {
		t.Errorf("b/y: %+v, want down", st)
	}
	if st := tg.statusOf(t, "a", x); st.InFlight != 1 || st.State != instancestate.Serving {
		t.Errorf("a/x: %+v, want serving with 1 in flight", st)
	}
	if st := tg.statusOf(t, "a", y); !st.Marked {
		t.Errorf("a/y: %+v, want marked", st)
	}
	if p := tg.poolOf("b"); len(p.active) != 1 || p.active[0].addr != x {
		t.Error("b's rotation is not b/x alone")
	}
}

// An instance that leaves the registry with a request in flight is
// reported gone until the request ends, even when later changes are to
// other services only; AppliedMarked reports it while a mark names it.
func TestRebuildGoneHostAcrossOtherChanges(t *testing.T) {
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/a/", "a"), rte("/b/", "b")}}, Options{})
	const x, y = "10.0.0.1:80", "10.0.0.2:80"
	reg1 := regSnap(1, inst("a", x, 1), inst("a", y, 2), inst("b", x, 3))
	mk := markSnap(1, mark("a", x, 5))
	tg.Update(reg1, mk)
	h := tg.host(t, "a", x)
	h.inflight.Add(1) // in flight since before the mark
	reg2 := regNext(reg1, 2, "a", inst("a", y, 2))
	tg.Update(reg2, mk)
	reg3 := regNext(reg2, 3, "b", inst("b", x, 3), inst("b", y, 6))
	tg.Update(reg3, mk)
	if st := tg.statusOf(t, "a", x); st.State != instancestate.Gone || st.InFlight != 1 || !st.Marked {
		t.Fatalf("a/x: %+v, want gone, marked, 1 in flight", st)
	}
	if a := tg.AppliedMarked(); len(a.Instances) != 1 || a.Instances[0].State != instancestate.Gone {
		t.Fatalf("AppliedMarked: %+v", a.Instances)
	}
	h.release()
	tg.Update(regNext(reg3, 4, "b", inst("b", x, 3)), mk)
	for _, st := range tg.InstanceStates() {
		if st.Service == "a" && st.Addr == x {
			t.Fatalf("a/x reported after its last request ended: %+v", st)
		}
	}
	if p := tg.poolOf("a"); len(p.gone) != 0 {
		t.Errorf("a's pool keeps %d idle gone hosts", len(p.gone))
	}
}

// AppliedMarked is Applied restricted to the marked addresses, whatever
// the marks mean: applying, failed open to, ended by a new registration,
// naming an absent address or an unrouted service.
func TestAppliedMarkedMatchesApplied(t *testing.T) {
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/a/", "a"), rte("/b/", "b"), rte("/c/", "c")}}, Options{})
	const x, y, z = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"
	// a's instances in reverse address order: no search may rely on it.
	reg := regSnap(1, inst("b", x, 3), inst("b", y, 4), inst("c", x, 5))
	reg.Services["a"] = []registry.Instance{inst("a", z, 1), inst("a", y, 2), inst("a", x, 7)}
	tg.Update(reg, markSnap(1,
		mark("a", x, 6),             // ended: a/x registered again after it
		mark("a", y, 8),             // applies
		mark("a", "10.0.0.9:80", 8), // absent
		mark("c", x, 9),             // applies, the only instance: failed open to
		mark("d", x, 9),             // unrouted
	))
	a := tg.Applied()
	want := []InstanceStatus{}
	for _, st := range a.Instances {
		if _, ok := a.Marks.Get(st.Service, st.Addr); ok {
			want = append(want, st)
		}
	}
	got := tg.AppliedMarked()
	if got.RegistryRevision != a.RegistryRevision || got.MarksRevision != a.MarksRevision || got.Marks != a.Marks {
		t.Errorf("AppliedMarked revisions %d/%d, Applied %d/%d", got.RegistryRevision, got.MarksRevision, a.RegistryRevision, a.MarksRevision)
	}
	if len(want) != 3 || !slices.Equal(got.Instances, want) {
		t.Fatalf("AppliedMarked:\n%+v\nwant\n%+v", got.Instances, want)
	}
}

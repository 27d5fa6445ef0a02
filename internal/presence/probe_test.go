package presence

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/testutil"
)

// ProbeAdmin finds a departed gateway gone only on evidence: nothing
// listens on its admin address, or another process answers there. The
// same process answering, silence (a paused or unreachable gateway), an
// answer without identity and an address without a host are not evidence.
func TestProbeAdmin(t *testing.T) {
	last := Report{ID: "gw-1", BootID: "boot-a", StartedMs: 1000}
	identity := func(id Identity) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != IdentityPath {
				http.NotFound(w, r)
				return
			}
			json.NewEncoder(w).Encode(id)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	probe := func(addr string) ProbeResult {
		t.Helper()
		l := last
		l.AdminListen = addr
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		return ProbeAdmin(ctx, Departure{ID: "gw-1", Last: l})
	}

	// Nothing listens: connection refused.
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := closed.Listener.Addr().String()
	closed.Close()
	if r := probe(closedAddr); !r.Gone || !strings.Contains(r.Detail, "refused") {
		t.Errorf("refused: %+v", r)
	}
	// The same process answers: alive (cut off from ZooKeeper).
	same := identity(Identity{ID: "gw-1", BootID: "boot-a", StartedMs: 1000})
	if r := probe(same.Listener.Addr().String()); r.Gone || !strings.Contains(r.Detail, "still answers") {
		t.Errorf("same process: %+v", r)
	}
	// A restarted process of the same gateway on the same address.
	for _, id := range []Identity{
		{ID: "gw-1", BootID: "boot-b", StartedMs: 2000},
		{ID: "gw-1", BootID: "boot-b", StartedMs: 1000},
	} {
		srv := identity(id)
		if r := probe(srv.Listener.Addr().String()); !r.Gone || !strings.Contains(r.Detail, "another process") {
			t.Errorf("another process %+v: %+v", id, r)
		}
	}
	// Another gateway answers: the address (a name several gateways'
	// addresses resolve to, a balancer, NAT) leads elsewhere now, which
	// says nothing about gw-1's process: unknown.
	for _, id := range []Identity{
		{ID: "gw-other", BootID: "boot-a", StartedMs: 1000},
		{ID: "gw-other", BootID: "boot-c", StartedMs: 3000},
	} {
		srv := identity(id)
		if r := probe(srv.Listener.Addr().String()); r.Gone || !strings.Contains(r.Detail, "gw-other") {
			t.Errorf("another gateway %+v: %+v", id, r)
		}
	}
	// Something else answers without an identity: unknown.
	other := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(other.Close)
	if r := probe(other.Listener.Addr().String()); r.Gone {
		t.Errorf("answer without identity: %+v", r)
	}
	// A paused process: the kernel accepts, nobody answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if r := probe(ln.Addr().String()); r.Gone || !strings.Contains(r.Detail, "did not answer") {
		t.Errorf("silent: %+v", r)
	}
	// No host to ask, no address at all.
	for _, addr := range []string{"0.0.0.0:" + portOf(closedAddr), "[::]:" + portOf(closedAddr), ""} {
		if r := probe(addr); r.Gone || !strings.Contains(r.Detail, "address") {
			t.Errorf("%q: %+v", addr, r)
		}
	}
	// Bound to every interface, with an address advertised: that one is
	// asked.
	for _, c := range []struct {
		advertised string
		gone       bool
	}{{closedAddr, true}, {same.Listener.Addr().String(), false}} {
		l := last
		l.AdminListen, l.AdminAddr = "0.0.0.0:"+portOf(c.advertised), c.advertised
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		r := ProbeAdmin(ctx, Departure{ID: "gw-1", Last: l})
		cancel()
		if r.Gone != c.gone {
			t.Errorf("advertised %s: %+v, want gone %v", c.advertised, r, c.gone)
		}
	}
}

func TestAdminTarget(t *testing.T) {
	for _, c := range []struct {
		listen, addr, want, err string
	}{
		{"10.0.0.5:9080", "", "10.0.0.5:9080", ""},
		{"gw1.example:9080", "", "gw1.example:9080", ""},
		{"0.0.0.0:9080", "10.0.0.5:9080", "10.0.0.5:9080", ""},
		{"[::]:9080", "gw1.example:9080", "gw1.example:9080", ""},
		{"0.0.0.0:9080", "", "", "listens on every interface"},
		{":9080", "", "", "listens on every interface"},
		{"", "", "", "no admin address"},
		{"nonsense", "", "", "missing port"},
	} {
		r := Report{AdminListen: c.listen, AdminAddr: c.addr}
		got, err := r.AdminTarget()
		if got != c.want || (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("AdminTarget(listen %q, addr %q) = %q, %v; want %q, error with %q", c.listen, c.addr, got, err, c.want, c.err)
		}
	}
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// The watcher probes a departure without a leaving report until its
// process is found gone, records why and signals Probed; a graceful
// departure is not probed.
func TestWatcherProbesDepartures(t *testing.T) {
	calls := make(chan Departure, 10)
	gone := make(chan struct{})
	w := NewWatcher(nil, WatcherOptions{ZKRoot: "/zkgate", ProbeInterval: 10 * time.Millisecond,
		Probe: func(ctx context.Context, d Departure) ProbeResult {
			calls <- d
			select {
			case <-gone:
				return ProbeResult{Gone: true, Detail: "refused"}
			default:
				return ProbeResult{Detail: "silent"}
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.mu.Lock()
	w.runCtx = ctx // as Run does
	w.mu.Unlock()
	w.noteBuild(map[string]Report{"gw-1": {ID: "gw-1", Session: 1}, "gw-2": {ID: "gw-2", Session: 2}})
	w.noteBuild(map[string]Report{"gw-2": {ID: "gw-2", Session: 2, Leaving: true}})
	w.noteBuild(map[string]Report{})
	if d := <-calls; d.ID != "gw-1" {
		t.Fatalf("probed %+v", d)
	}
	<-calls // probed again while silent
	if d := w.Departed()["gw-1"]; !d.MayRoute() || d.Probe != "silent" {
		t.Fatalf("after a silent probe: %+v", d)
	}
	close(gone)
	select {
	case <-w.Probed():
	case <-time.After(10 * time.Second):
		t.Fatal("Probed not signalled")
	}
	d := w.Departed()
	if d["gw-1"].MayRoute() || d["gw-1"].Gone != "refused" || d["gw-2"].MayRoute() {
		t.Fatalf("departures %+v", d)
	}
	cancel()
	w.probes.Wait()
	for len(calls) > 0 {
		if d := <-calls; d.ID != "gw-1" {
			t.Fatalf("a graceful departure was probed: %+v", d)
		}
	}
}

// With Verify, a departure is probed only when its gateway was seen at
// its admin target while live (the same process), and no other live
// gateway names that target; a restarted process must be seen again.
func TestWatcherProbesOnlyVerifiedAddresses(t *testing.T) {
	var mu sync.Mutex
	answers := map[string]error{} // by admin target; missing: not verified
	probed := make(chan string, 10)
	w := NewWatcher(nil, WatcherOptions{ZKRoot: "/zkgate", ProbeInterval: time.Hour, VerifyInterval: 10 * time.Millisecond,
		Probe: func(ctx context.Context, d Departure) ProbeResult {
			probed <- d.ID
			return ProbeResult{Gone: true, Detail: "refused"}
		},
		Verify: func(ctx context.Context, r Report) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			target, _ := r.AdminTarget()
			if err, ok := answers[r.BootID+"@"+target]; ok {
				return target, err
			}
			return "", errors.New("connection refused")
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); w.probes.Wait() }()
	w.mu.Lock()
	w.runCtx = ctx // as Run does
	w.mu.Unlock()
	answer := func(key string) {
		mu.Lock()
		answers[key] = nil
		mu.Unlock()
	}
	ready := func(id string) bool { ok, _ := w.ProbeReady(id); return ok }

	gw := func(id, boot, admin string) Report {
		return Report{ID: id, Session: 1, BootID: boot, AdminListen: admin}
	}
	live := map[string]Report{
		"seen":    gw("seen", "b1", "10.0.0.1:9080"),
		"unseen":  gw("unseen", "b2", "127.0.0.1:9080"),
		"shared1": gw("shared1", "b3", "10.0.0.9:9080"),
		"shared2": gw("shared2", "b4", "10.0.0.9:9080"),
	}
	answer("b1@10.0.0.1:9080")
	answer("b3@10.0.0.9:9080")
	w.noteBuild(live)
	testutil.Eventually(t, 5*time.Second, "the reachable gateway verified", func() bool { return ready("seen") })
	// Its verification runs beside seen's: its failure may come later.
	testutil.Eventually(t, 5*time.Second, "unseen's failed verification noted", func() bool {
		ok, why := w.ProbeReady("unseen")
		return strings.Contains(why, "connection refused") && !ok
	})
	if ok, why := w.ProbeReady("unseen"); ok || !strings.Contains(why, "never seen answering") {
		t.Errorf("unseen: ready %v, %q", ok, why)
	}
	if ok, why := w.ProbeReady("shared1"); ok || !strings.Contains(why, "names the same admin address") {
		t.Errorf("shared1: ready %v, %q", ok, why)
	}

	// A restart of "seen" (another boot id) must be verified anew.
	live["seen"] = gw("seen", "b5", "10.0.0.1:9080")
	w.noteBuild(live)
	if ready("seen") {
		t.Error("a new process trusted before it was seen")
	}
	answer("b5@10.0.0.1:9080")
	testutil.Eventually(t, 5*time.Second, "the new process verified", func() bool { return ready("seen") })

	w.noteBuild(map[string]Report{}) // every node gone, none leaving
	select {
	case id := <-probed:
		if id != "seen" {
			t.Fatalf("probed %q", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the verified gateway was not probed")
	}
	d := w.Departed()
	for _, id := range []string{"unseen", "shared1", "shared2"} {
		if !d[id].MayRoute() || !strings.HasPrefix(d[id].Probe, "not probed: ") {
			t.Errorf("%s: %+v, want it to keep counting, not probed", id, d[id])
		}
	}
	select {
	case id := <-probed:
		t.Fatalf("%s probed", id)
	case <-time.After(100 * time.Millisecond):
	}
}

// A target two gateways named is never evidence for either, even when
// they go at different times: here a DNS name (or a load balancer) that
// led to each gateway in turn, so both were verified there. When the
// first has departed, a refusal at the name may come from its dead
// machine while the second, cut off from ZooKeeper, still routes. So a
// departure is not probed while a gateway departed within the window
// named its target, and a gateway naming the target that appears while
// a departure is probed stops the probe (a refusal or another identity
// there proves nothing about the departed gateway any more).
func TestWatcherSharedTargetAcrossDepartures(t *testing.T) {
	probed := make(chan string, 10)
	var mu sync.Mutex
	gone := false
	w := NewWatcher(nil, WatcherOptions{ZKRoot: "/zkgate", ProbeInterval: 10 * time.Millisecond, VerifyInterval: 10 * time.Millisecond,
		Probe: func(ctx context.Context, d Departure) ProbeResult {
			probed <- d.ID
			mu.Lock()
			defer mu.Unlock()
			if gone {
				return ProbeResult{Gone: true, Detail: "refused"}
			}
			return ProbeResult{Detail: "silent"}
		},
		Verify: func(ctx context.Context, r Report) (string, error) { return "", nil }, // every gateway answered there once
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); w.probes.Wait() }()
	w.mu.Lock()
	w.runCtx = ctx // as Run does
	w.mu.Unlock()
	trusted := func(ids ...string) bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, id := range ids {
			if w.trusted[id] == "" {
				return false
			}
		}
		return true
	}
	gw := func(id, boot string) Report {
		return Report{ID: id, Session: 1, BootID: boot, AdminListen: "gateways.example:9080"}
	}

	// Staggered departures of two gateways sharing a name.
	a, b := gw("a", "ba"), gw("b", "bb")
	w.noteBuild(map[string]Report{"a": a, "b": b})
	testutil.Eventually(t, 5*time.Second, "a and b verified", func() bool { return trusted("a", "b") })
	w.noteBuild(map[string]Report{"b": b}) // a crashed; b named its target
	w.noteBuild(map[string]Report{})       // then b is cut off from ZooKeeper
	mu.Lock()
	gone = true
	mu.Unlock()
	select {
	case id := <-probed:
		t.Fatalf("%s probed though another gateway, departed a moment before, named its admin address", id)
	case <-time.After(200 * time.Millisecond):
	}
	d := w.Departed()
	for _, id := range []string{"a", "b"} {
		if !d[id].MayRoute() || !strings.HasPrefix(d[id].Probe, "not probed: ") {
			t.Errorf("%s: %+v, want it to keep counting, not probed", id, d[id])
		}
	}

	// A gateway naming the target appears while a departure is probed.
	mu.Lock()
	gone = false
	mu.Unlock()
	c, e := gw("c", "bc"), gw("e", "be")
	c.AdminListen, e.AdminListen = "10.0.0.3:9080", "10.0.0.3:9080"
	w.noteBuild(map[string]Report{"c": c})
	testutil.Eventually(t, 5*time.Second, "c verified", func() bool { return trusted("c") })
	w.noteBuild(map[string]Report{})
	select {
	case id := <-probed:
		if id != "c" {
			t.Fatalf("probed %q", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("c, the only gateway naming its admin address, was not probed")
	}
	w.noteBuild(map[string]Report{"e": e})
	mu.Lock()
	gone = true
	mu.Unlock()
	testutil.Eventually(t, 5*time.Second, "c's probe stopped", func() bool {
		return strings.HasPrefix(w.Departed()["c"].Probe, "not probed: ") || !w.Departed()["c"].MayRoute()
	})
	if dc := w.Departed()["c"]; !dc.MayRoute() {
		t.Fatalf("c found gone at an address gateway e names too: %+v", dc)
	}
}

// A report without a boot id (hand-written, or another implementation)
// cannot tell its process from a later one on the same address: the
// trust seen for one must not carry to the next, so none is given.
func TestWatcherNoTrustWithoutBootID(t *testing.T) {
	var mu sync.Mutex
	answering := int64(1) // StartedMs of the process that answers as "old"
	w := NewWatcher(nil, WatcherOptions{ZKRoot: "/zkgate", ProbeInterval: time.Hour, VerifyInterval: 10 * time.Millisecond,
		Probe: func(ctx context.Context, d Departure) ProbeResult { return ProbeResult{Gone: true, Detail: "refused"} },
		Verify: func(ctx context.Context, r Report) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			if r.StartedMs != answering {
				return "", errors.New("another process answers")
			}
			return r.AdminListen, nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); w.probes.Wait() }()
	w.mu.Lock()
	w.runCtx = ctx // as Run does
	w.mu.Unlock()
	p1 := Report{ID: "old", Session: 1, StartedMs: 1, AdminListen: "127.0.0.1:9080"}
	w.noteBuild(map[string]Report{"old": p1})
	time.Sleep(100 * time.Millisecond) // verification, if any, done
	w.noteBuild(map[string]Report{})   // p1 crashed
	// Another process of "old" (elsewhere: its 127.0.0.1 is not the
	// controller's) registers within the window.
	p2 := p1
	p2.Session, p2.StartedMs = 2, 2
	w.noteBuild(map[string]Report{"old": p2})
	time.Sleep(100 * time.Millisecond)
	if ok, why := w.ProbeReady("old"); ok {
		t.Fatalf("a process never seen at its admin address is ready to be probed (%q)", why)
	}
	w.noteBuild(map[string]Report{})
	if d := w.Departed()["old"]; !d.MayRoute() || !strings.HasPrefix(d.Probe, "not probed: ") {
		t.Fatalf("departure %+v, want it to keep counting, not probed", d)
	}
}

// The probe of a departure asks the ip:port seen answering as the gateway
// while it was live, not its target's name resolved again (which could
// lead to another machine by now), and follows no redirect (the answer
// must come from that address).
func TestProbeAdminAsksTheAddressSeenAnswering(t *testing.T) {
	last := Report{ID: "gw-1", BootID: "boot-a", StartedMs: 1000}
	same := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(Identity{ID: "gw-1", BootID: "boot-a", StartedMs: 1000})
	}))
	t.Cleanup(same.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := closed.Listener.Addr().String()
	closed.Close()
	_, port, _ := net.SplitHostPort(same.Listener.Addr().String())

	// Verified under a name: the address that answered is pinned.
	l := last
	l.AdminListen = "localhost:" + port
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	at, err := VerifyAdmin(ctx, l)
	cancel()
	if err != nil || at != same.Listener.Addr().String() {
		t.Fatalf("VerifyAdmin(%s) = %q, %v; want %s", l.AdminListen, at, err, same.Listener.Addr())
	}

	// The name now leads to a refusing address; the process still answers
	// where it was seen.
	l.AdminListen = closedAddr
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	r := ProbeAdmin(ctx, Departure{ID: "gw-1", Last: l, ProbeAddr: at})
	cancel()
	if r.Gone || !strings.Contains(r.Detail, "still answers") {
		t.Errorf("probe of the pinned address: %+v", r)
	}

	// A redirect to a refusing address is not evidence.
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+closedAddr+IdentityPath, http.StatusFound)
	}))
	t.Cleanup(redirect.Close)
	l.AdminListen = redirect.Listener.Addr().String()
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	r = ProbeAdmin(ctx, Departure{ID: "gw-1", Last: l})
	cancel()
	if r.Gone {
		t.Errorf("probe redirected to a refusing address: %+v", r)
	}
}

// Two gateways seen answering at the same ip:port, under different
// spellings (a round-robin name and an address), share it: neither's
// departure is probed.
func TestWatcherSharedPinnedAddress(t *testing.T) {
	probed := make(chan string, 10)
	w := NewWatcher(nil, WatcherOptions{ZKRoot: "/zkgate", ProbeInterval: time.Hour, VerifyInterval: 10 * time.Millisecond,
		Probe: func(ctx context.Context, d Departure) ProbeResult {
			probed <- d.ID + "@" + d.ProbeAddr
			return ProbeResult{Gone: true, Detail: "refused"}
		},
		Verify: func(ctx context.Context, r Report) (string, error) { return "10.0.0.6:9080", nil },
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); w.probes.Wait() }()
	w.mu.Lock()
	w.runCtx = ctx // as Run does
	w.mu.Unlock()
	a := Report{ID: "a", Session: 1, BootID: "ba", AdminListen: "gateways.example:9080"}
	b := Report{ID: "b", Session: 2, BootID: "bb", AdminListen: "10.0.0.6:9080"}
	c := Report{ID: "c", Session: 3, BootID: "bc", AdminListen: "gw-c.example:9080"}
	w.noteBuild(map[string]Report{"a": a, "b": b})
	testutil.Eventually(t, 5*time.Second, "a and b verified", func() bool {
		_, whyA := w.ProbeReady("a")
		_, whyB := w.ProbeReady("b")
		return strings.Contains(whyA, "seen at the same admin address") && strings.Contains(whyB, "seen at the same admin address")
	})
	w.noteBuild(map[string]Report{"b": b})
	w.noteBuild(map[string]Report{})
	// c alone at its pinned address: probed there.
	w.noteBuild(map[string]Report{"c": c})
	w.mu.Lock()
	w.pinned["a"], w.pinned["b"] = "10.0.0.1:9080", "10.0.0.2:9080" // as if seen elsewhere: c is alone at 10.0.0.6
	w.mu.Unlock()
	testutil.Eventually(t, 5*time.Second, "c verified", func() bool { ok, _ := w.ProbeReady("c"); return ok })
	w.noteBuild(map[string]Report{})
	select {
	case got := <-probed:
		if got != "c@10.0.0.6:9080" {
			t.Fatalf("probed %s, want c at its pinned address", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("c not probed")
	}
	d := w.Departed()
	for _, id := range []string{"a", "b"} {
		if !d[id].MayRoute() || !strings.HasPrefix(d[id].Probe, "not probed: ") {
			t.Errorf("%s: %+v, want it to keep counting, not probed", id, d[id])
		}
	}
}

// A trusted gateway is verified again every Reverify: when its address no
// longer answers as it (the address moved to another machine), the trust
// goes, and a report that names another address and then the first one
// again is not trusted before it is verified again.
func TestWatcherReverifiesTrust(t *testing.T) {
	var mu sync.Mutex
	ok := map[string]bool{"10.0.0.1:9080": true}
	w := NewWatcher(nil, WatcherOptions{ZKRoot: "/zkgate", ProbeInterval: time.Hour,
		VerifyInterval: 10 * time.Millisecond, Reverify: 20 * time.Millisecond,
		Probe: func(ctx context.Context, d Departure) ProbeResult { return ProbeResult{} },
		Verify: func(ctx context.Context, r Report) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			target, _ := r.AdminTarget()
			if ok[target] {
				return target, nil
			}
			return "", errors.New("another gateway answers there")
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); w.probes.Wait() }()
	w.mu.Lock()
	w.runCtx = ctx // as Run does
	w.mu.Unlock()
	set := func(target string, answers bool) {
		mu.Lock()
		ok[target] = answers
		mu.Unlock()
	}
	ready := func() bool { r, _ := w.ProbeReady("gw"); return r }
	report := func(admin string) map[string]Report {
		return map[string]Report{"gw": {ID: "gw", Session: 1, BootID: "b", AdminListen: admin}}
	}

	w.noteBuild(report("10.0.0.1:9080"))
	testutil.Eventually(t, 5*time.Second, "trusted", ready)
	set("10.0.0.1:9080", false) // the address moved
	testutil.Eventually(t, 5*time.Second, "the trust withdrawn by a verification again", func() bool { return !ready() })
	if _, why := w.ProbeReady("gw"); !strings.Contains(why, "another gateway answers there") {
		t.Errorf("note %q", why)
	}
	set("10.0.0.1:9080", true)
	testutil.Eventually(t, 5*time.Second, "trusted again", ready)

	// Another address (not answering), then the first again: not trusted
	// until verified again.
	set("10.0.0.1:9080", false)
	w.noteBuild(report("10.0.0.2:9080"))
	w.noteBuild(report("10.0.0.1:9080"))
	if ready() {
		t.Fatal("trusted again at once after the address changed and came back")
	}
}

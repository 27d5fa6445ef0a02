package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/instancestate"
)

func TestReadyzTransitions(t *testing.T) {
	clk := newFakeClock()
	sync := &fakeSync{}
	tg := newTestGateway(t, config.Gateway{StaleAfter: time.Minute, Routes: []config.Route{rte("/", "s")}},
		Options{Now: clk.Now, Sync: sync})
	c := client()
	readyz := func() (int, Readiness) {
		r := get(t, c, tg.admin.URL+"/readyz")
		var rd Readiness
		decodeJSON(t, r.body, &rd)
		return r.code, rd
	}
	if r := get(t, c, tg.admin.URL+"/healthz"); r.code != 200 {
		t.Fatalf("healthz %d", r.code)
	}
	if code, rd := readyz(); code != 503 || rd.Ready || !strings.Contains(rd.Reason, "not loaded") {
		t.Fatalf("before Update: %d %+v", code, rd)
	}
	tg.Update(regSnap(7), markSnap(3))
	if code, rd := readyz(); code != 503 || !strings.Contains(rd.Reason, "never synchronized") {
		t.Fatalf("loaded, never in contact: %d %+v", code, rd)
	}
	sync.ns.Store(clk.Now().UnixNano())
	if code, rd := readyz(); code != 200 || !rd.Ready || rd.RegistryRevision != 7 || rd.MarksRevision != 3 {
		t.Fatalf("loaded and fresh: %d %+v", code, rd)
	}
	clk.Advance(59 * time.Second)
	if code, _ := readyz(); code != 200 {
		t.Fatalf("59s after contact: %d", code)
	}
	clk.Advance(2 * time.Second)
	code, rd := readyz()
	if code != 503 || rd.Ready || !strings.Contains(rd.Reason, "stale") || rd.LastContact == nil {
		t.Fatalf("stale: %d %+v", code, rd)
	}
	sync.ns.Store(clk.Now().UnixNano()) // reconnected
	if code, _ := readyz(); code != 200 {
		t.Fatalf("after reconnecting: %d", code)
	}
	if r := get(t, c, tg.admin.URL+"/healthz"); r.code != 200 {
		t.Fatalf("healthz %d", r.code)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	a := newBackend(t, "a", nil)
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", a.addr(), 1), inst("s", deadAddr(t), 2)), markSnap(1))
	c := client()
	for i := 0; i < 5; i++ {
		get(t, c, tg.front.URL+"/")
	}
	r := get(t, c, tg.admin.URL+"/metrics")
	if r.code != 200 {
		t.Fatalf("metrics %d", r.code)
	}
	for _, name := range []string{
		`zkgate_requests_total{code="200",route="/",service="s"} 5`,
		`zkgate_request_duration_seconds_bucket{route="/",service="s",le=`,
		`zkgate_instances{service="s",state="serving"}`,
		`zkgate_retries_total{service="s"}`,
		`zkgate_upstream_errors_total{kind="connect",service="s"}`,
		`zkgate_fail_open_total{service="s"} 0`,
		`zkgate_inflight{service="s"} 0`,
		`zkgate_applied_revision{source="registry"} 1`,
	} {
		if !strings.Contains(r.body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestAdminInstances(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s"), rte("/empty/", "empty")}}, Options{})
	ia, ib := inst("s", a.addr(), 5), inst("s", b.addr(), 6)
	tg.Update(regSnap(4, ia, ib), markSnap(2, mark("s", a.addr(), 9)))
	r := get(t, client(), tg.admin.URL+"/admin/instances")
	if r.code != 200 {
		t.Fatalf("%d", r.code)
	}
	var out struct {
		RegistryRevision uint64 `json:"registry_revision"`
		MarksRevision    uint64 `json:"marks_revision"`
		Services         map[string][]struct {
			Addr       string    `json:"addr"`
			State      string    `json:"state"`
			InFlight   *int64    `json:"in_flight"`
			Marked     bool      `json:"marked"`
			MarkReason string    `json:"mark_reason"`
			Weight     *float64  `json:"weight"`
			Czxid      int64     `json:"czxid"`
			Registered time.Time `json:"registered"`
		} `json:"services"`
	}
	decodeJSON(t, r.body, &out)
	if out.RegistryRevision != 4 || out.MarksRevision != 2 {
		t.Fatalf("revisions %+v", out)
	}
	if e, ok := out.Services["empty"]; !ok || len(e) != 0 {
		t.Fatalf("routed service without instances: %v %v", e, ok)
	}
	s := out.Services["s"]
	if len(s) != 2 {
		t.Fatalf("instances %+v", s)
	}
	byAddr := map[string]int{s[0].Addr: 0, s[1].Addr: 1}
	ma, mb := s[byAddr[a.addr()]], s[byAddr[b.addr()]]
	if ma.State != instancestate.Drained || !ma.Marked || ma.MarkReason != "deploy" || ma.Czxid != 5 || *ma.Weight != 0 || ma.InFlight == nil {
		t.Fatalf("marked instance %+v", ma)
	}
	if mb.State != instancestate.Serving || mb.Marked || *mb.Weight != 1 || mb.Czxid != 6 || !mb.Registered.Equal(ib.Registered) {
		t.Fatalf("serving instance %+v", mb)
	}
}

func TestOwnRegistryByDefault(t *testing.T) {
	// Two gateways in one process: no global registry, no conflict.
	for i := 0; i < 2; i++ {
		g, err := New(config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if g.gatherer == nil {
			t.Fatal("no gatherer")
		}
	}
}

// Readiness and its revisions come from one applied table: while the first
// table is being published (request path first, state readers after),
// Ready must not answer ready with registry revision 0.
func TestReadyRevisionFromSameTable(t *testing.T) {
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	var during Readiness
	withPublishHook(t, func() { during = tg.Ready() })
	tg.Update(regSnap(5), markSnap(2))
	if during.Ready || during.RegistryRevision != 0 {
		t.Fatalf("mid-publish: %+v, want not ready (the table is not applied yet)", during)
	}
	if rd := tg.Ready(); !rd.Ready || rd.RegistryRevision != 5 || rd.MarksRevision != 2 {
		t.Fatalf("after Update: %+v", rd)
	}
	// The next table mid-publish: still ready, with the previous revisions.
	withPublishHook(t, func() { during = tg.Ready() })
	tg.Update(regSnap(6), markSnap(2))
	if !during.Ready || during.RegistryRevision != 5 {
		t.Fatalf("second table mid-publish: %+v", during)
	}
	if rd := tg.Ready(); !rd.Ready || rd.RegistryRevision != 6 {
		t.Fatalf("after the second Update: %+v", rd)
	}
}

// A table built without a registry snapshot does not make the gateway
// ready.
func TestReadyNeedsRegistrySnapshot(t *testing.T) {
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(nil, markSnap(1))
	if rd := tg.Ready(); rd.Ready || !strings.Contains(rd.Reason, "not loaded") {
		t.Fatalf("no registry snapshot: %+v", rd)
	}
	tg.Update(regSnap(1), markSnap(1))
	if rd := tg.Ready(); !rd.Ready || rd.RegistryRevision != 1 {
		t.Fatalf("registry loaded: %+v", rd)
	}
}

// Whenever Ready says ready, the registry revision it reports is > 0, also
// while tables are applied concurrently.
func TestReadyImpliesRevision(t *testing.T) {
	for i := 0; i < 50; i++ {
		tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for rev := uint64(1); rev <= 3; rev++ {
				tg.Update(regSnap(rev), markSnap(rev))
			}
		}()
		for {
			rd := tg.Ready()
			if rd.Ready && rd.RegistryRevision == 0 {
				t.Fatalf("ready with registry revision 0: %+v", rd)
			}
			select {
			case <-done:
			default:
				continue
			}
			break
		}
	}
}

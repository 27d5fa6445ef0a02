package presence

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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
		{ID: "gw-other", BootID: "boot-a", StartedMs: 1000},
	} {
		srv := identity(id)
		if r := probe(srv.Listener.Addr().String()); !r.Gone || !strings.Contains(r.Detail, "another process") {
			t.Errorf("another process %+v: %+v", id, r)
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
		if r := probe(addr); r.Gone {
			t.Errorf("%q: %+v", addr, r)
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

//go:build linux

package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/testutil"
)

// fakeResolver answers the gateway's lookups of instance host names
// (Options.Resolver) from a table the test changes.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	err     error
	calls   int
}

func (r *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if network != "ip" {
		return nil, errors.New("unexpected network " + network)
	}
	if r.err != nil {
		return nil, r.err
	}
	return append([]netip.Addr(nil), r.answers[host]...), nil
}

func (r *fakeResolver) set(host string, err error, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
	r.answers[host] = nil
	for _, a := range addrs {
		r.answers[host] = append(r.answers[host], netip.MustParseAddr(a))
	}
}

// nameGateway is a loop gateway routing to one instance registered as
// localhost:<port of b>, whose lookups r answers. (The goroutine engine
// dials the name through the system's resolver: localhost is 127.0.0.1
// there.)
func nameGateway(t *testing.T, cfg config.Gateway, b *backend, r *fakeResolver) *testGateway {
	t.Helper()
	_, port, _ := net.SplitHostPort(b.addr())
	cfg.Engine = config.EngineEpoll
	cfg.Routes = []config.Route{rte("/", "s")}
	tg := newTestGateway(t, cfg, Options{Resolver: r})
	tg.Update(regSnap(1, inst("s", "localhost:"+port, 1)), nil)
	return tg
}

// getOnNewConn sends one request on a new client connection and checks
// the instance answered it.
func getOnNewConn(t *testing.T, tg *testGateway, b *backend) {
	t.Helper()
	conn, br := semDial(t, tg.front.Addr)
	defer conn.Close()
	semWrite(t, conn, "GET /x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
	resp, body := semMustRead(t, br, "GET")
	if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != b.name {
		t.Fatalf("GET: %d %q", resp.StatusCode, body)
	}
}

// An instance registered by host name is served by the event loops once
// its name is looked up; a refused address of the lookup is skipped for
// the next one.
func TestLoopDialsLookedUpHostName(t *testing.T) {
	b := newBackend(t, "b", nil)
	r := &fakeResolver{answers: map[string][]netip.Addr{}}
	// 127.0.0.2 refuses: b listens on 127.0.0.1 only.
	r.set("localhost", nil, "127.0.0.2", "127.0.0.1")
	tg := nameGateway(t, config.Gateway{}, b, r)

	// The first connection finds the name not looked up: a goroutine
	// serves it, and the lookup starts.
	getOnNewConn(t, tg, b)
	if n := tg.handoffs(t); n[handoffConnect] != 1 {
		t.Fatalf("handoffs %v after the first request, want one connect handoff", n)
	}
	eventually(t, "the lookup to answer", func() bool { return counterValue(t, tg.metrics.lookups[lookupAnswered]) >= 1 })

	// The second dials 127.0.0.2, is refused and handed over; the loop
	// moves on to 127.0.0.1.
	getOnNewConn(t, tg, b)
	if n := tg.handoffs(t); n[handoffConnect] != 2 {
		t.Fatalf("handoffs %v after the refused address, want two connect handoffs", n)
	}
	for i := 0; i < 10; i++ {
		getOnNewConn(t, tg, b)
	}
	if n := tg.handoffs(t); n[handoffConnect] != 2 {
		t.Fatalf("handoffs %v: connections to the looked-up address should stay on the loops", n)
	}
	// The refusal makes the next lookup due lookupRetry (5 s) after the
	// last one, not at once: within that, one lookup in all.
	time.Sleep(50 * time.Millisecond)
	if got := counterValue(t, tg.metrics.lookups[lookupAnswered]); got != 1 {
		t.Fatalf("%v lookups within lookupRetry of a refusal, want 1", got)
	}
	_, port, _ := net.SplitHostPort(b.addr())
	if lk := tg.host(t, "s", "localhost:"+port).lookup.Load(); lk == nil || lk.expires != lk.at+int64(lookupRetry) {
		t.Fatalf("lookup after the refusal %+v: want it due lookupRetry after the last", lk)
	}
	if v := testutil.MetricValue(t, tg.reg, "zkgate_upstream_lookups_total", "result", "failed"); v != 0 {
		t.Fatalf("%v failed lookups, want 0", v)
	}
}

// The name is looked up again by the first dial after dns_refresh; a
// lookup that fails
// keeps the addresses of the last one that answered, so the loops go on
// serving.
func TestLoopKeepsAddressesWhenLookupFails(t *testing.T) {
	// Every exchange dials anew (the instance closes its connections):
	// lookups follow dials.
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.Header().Set("X-Backend", "b")
	})
	r := &fakeResolver{answers: map[string][]netip.Addr{}}
	r.set("localhost", nil, "127.0.0.1")
	tg := nameGateway(t, config.Gateway{DNSRefresh: 20 * time.Millisecond}, b, r)
	getOnNewConn(t, tg, b)
	eventually(t, "the lookup to answer", func() bool { return counterValue(t, tg.metrics.lookups[lookupAnswered]) >= 1 })

	r.set("localhost", errors.New("no DNS server answers"))
	eventually(t, "a failed lookup", func() bool {
		getOnNewConn(t, tg, b)
		return counterValue(t, tg.metrics.lookups[lookupFailed]) >= 1
	})
	for i := 0; i < 5; i++ {
		getOnNewConn(t, tg, b)
	}
	if n := tg.handoffs(t); n[handoffConnect] != 1 {
		t.Fatalf("handoffs %v: a failed lookup should keep the last addresses on the loops", n)
	}

	// An answer without addresses counts as a failure too; a good one
	// ends the failures.
	r.set("localhost", nil)
	failed := counterValue(t, tg.metrics.lookups[lookupFailed])
	eventually(t, "an empty answer counted as failed", func() bool {
		getOnNewConn(t, tg, b)
		return counterValue(t, tg.metrics.lookups[lookupFailed]) > failed
	})
	r.set("localhost", nil, "127.0.0.1")
	answered := counterValue(t, tg.metrics.lookups[lookupAnswered])
	eventually(t, "lookups answering again", func() bool {
		getOnNewConn(t, tg, b)
		return counterValue(t, tg.metrics.lookups[lookupAnswered]) > answered
	})
	if n := tg.handoffs(t); n[handoffConnect] != 1 {
		t.Fatalf("handoffs %v after the failures, want still one", n)
	}
}

// backendOn starts an instance named name listening on addr (host:port),
// answering as newBackend's default handler does and closing every
// connection (so that nothing is pooled: each exchange dials).
func backendOn(t *testing.T, name, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listening on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		w.Header().Set("X-Backend", name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// backendOnNewConn sends one request on a new client connection and
// returns the name of the instance that answered it.
func backendOnNewConn(t *testing.T, tg *testGateway) string {
	t.Helper()
	conn, br := semDial(t, tg.front.Addr)
	defer conn.Close()
	semWrite(t, conn, "GET /x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
	resp, body := semMustRead(t, br, "GET")
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d %q", resp.StatusCode, body)
	}
	return resp.Header.Get("X-Backend")
}

// A new registration of an instance registered by host name is most
// likely a new process, which may well have a new address (a container
// re-created with the same host name): the loops must not go on dialling
// what the name pointed to before it, for up to dns_refresh, while the
// address may already belong to someone else.
func TestLoopForgetsLookupOnNewRegistration(t *testing.T) {
	b := newBackend(t, "new", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.Header().Set("X-Backend", "new")
	})
	_, port, _ := net.SplitHostPort(b.addr())
	// What the name pointed to before: another process, still answering
	// on the same port.
	backendOn(t, "old", net.JoinHostPort("127.0.0.2", port))
	r := &fakeResolver{answers: map[string][]netip.Addr{}}
	r.set("localhost", nil, "127.0.0.2")
	tg := nameGateway(t, config.Gateway{}, b, r)
	backendOnNewConn(t, tg) // not looked up yet: a goroutine serves it
	eventually(t, "the lookup to answer", func() bool { return counterValue(t, tg.metrics.lookups[lookupAnswered]) >= 1 })
	if got := backendOnNewConn(t, tg); got != "old" {
		t.Fatalf("the loops dialled %q, want the looked-up address (old)", got)
	}

	// The instance registers again (a new czxid) and its name now points
	// to 127.0.0.1.
	r.set("localhost", nil, "127.0.0.1")
	tg.Update(regSnap(2, inst("s", "localhost:"+port, 7)), nil)
	for i := 0; i < 5; i++ {
		if got := backendOnNewConn(t, tg); got != "new" {
			t.Fatalf("request %d after the new registration went to %q: the loops still dial the address the name had before", i, got)
		}
	}
}

// Pooled connections follow the name: once a lookup gives other
// addresses, a connection kept alive to the old one is closed rather than
// reused, and the loops dial what the name points to now.
func TestLoopPooledConnectionsFollowTheName(t *testing.T) {
	b := newBackend(t, "new", nil) // keeps its connections alive
	_, port, _ := net.SplitHostPort(b.addr())
	old := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Backend", "old")
	})}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", port))
	if err != nil {
		t.Skipf("listening on 127.0.0.2: %v", err)
	}
	go old.Serve(ln)
	t.Cleanup(func() { old.Close() })

	r := &fakeResolver{answers: map[string][]netip.Addr{}}
	r.set("localhost", nil, "127.0.0.2")
	tg := nameGateway(t, config.Gateway{DNSRefresh: 20 * time.Millisecond}, b, r)
	backendOnNewConn(t, tg) // not looked up yet: a goroutine serves it
	eventually(t, "the lookup to answer", func() bool { return counterValue(t, tg.metrics.lookups[lookupAnswered]) >= 1 })
	for i := 0; i < 3; i++ {
		if got := backendOnNewConn(t, tg); got != "old" {
			t.Fatalf("request %d went to %q, want the looked-up address (old)", i, got)
		}
	}

	// The name moves; the pooled connection to the old address must not
	// keep serving it.
	r.set("localhost", nil, "127.0.0.1")
	eventually(t, "requests reaching where the name points now", func() bool { return backendOnNewConn(t, tg) == "new" })
	for i := 0; i < 5; i++ {
		if got := backendOnNewConn(t, tg); got != "new" {
			t.Fatalf("request %d after the move went to %q", i, got)
		}
	}
}

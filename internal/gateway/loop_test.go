//go:build linux

package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/testutil"
)

// Tests of the event loops (gateway.engine: epoll): which exchanges they
// serve themselves and which they hand to a goroutine. Every other test
// of the package runs on both engines (scripts/test.sh).

func loopGateway(t *testing.T, cfg config.Gateway, ins ...registry.Instance) *testGateway {
	t.Helper()
	cfg.Engine = config.EngineEpoll
	if cfg.Routes == nil {
		cfg.Routes = []config.Route{rte("/", "s")}
	}
	tg := newTestGateway(t, cfg, Options{})
	tg.Update(regSnap(1, ins...), nil)
	return tg
}

func (tg *testGateway) handoffs(t *testing.T) (n [numHandoffs]float64) {
	t.Helper()
	for i := range n {
		n[i] = counterValue(t, tg.metrics.handoffs[i])
	}
	return n
}

// loopConns counts the client connections event loops own.
func (tg *testGateway) loopConns() int {
	tg.srv.mu.Lock()
	defer tg.srv.mu.Unlock()
	n := 0
	for c := range tg.srv.native.conns {
		if c.loop != nil {
			n++
		}
	}
	return n
}

// The common exchange stays on the loop: keep-alive GETs and small POSTs,
// pipelined requests, one reused upstream connection, forwarded headers.
func TestLoopServesCommonExchange(t *testing.T) {
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", r.Header.Get("X-Forwarded-For")+"|"+r.Header.Get("X-Forwarded-Host")+"|"+r.Host)
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(body))
	})
	tg := loopGateway(t, config.Gateway{}, inst("s", b.addr(), 1))
	conn, br := semDial(t, tg.front.Addr)
	for i := 0; i < 5; i++ {
		semWrite(t, conn, "GET /a?i=1 HTTP/1.1\r\nHost: gw.example\r\n\r\n")
		resp, body := semMustRead(t, br, "GET")
		if resp.StatusCode != 200 || string(body) != "GET /a?i=1 " {
			t.Fatalf("GET %d: %d %q", i, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Seen"); got != "127.0.0.1|gw.example|gw.example" {
			t.Fatalf("the instance saw X-Forwarded-For|X-Forwarded-Host|Host = %q", got)
		}
		semWrite(t, conn, "POST /p HTTP/1.1\r\nHost: gw.example\r\nContent-Length: 5\r\n\r\nhello")
		resp, body = semMustRead(t, br, "POST")
		if resp.StatusCode != 200 || string(body) != "POST /p hello" {
			t.Fatalf("POST %d: %d %q", i, resp.StatusCode, body)
		}
	}
	// Three pipelined requests in one write: three answers, in order.
	semWrite(t, conn, "GET /1 HTTP/1.1\r\nHost: gw\r\n\r\nGET /2 HTTP/1.1\r\nHost: gw\r\n\r\nGET /3 HTTP/1.1\r\nHost: gw\r\n\r\n")
	for i := 1; i <= 3; i++ {
		resp, body := semMustRead(t, br, "GET")
		if want := "GET /" + string(rune('0'+i)) + " "; resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("pipelined %d: %d %q, want %q", i, resp.StatusCode, body, want)
		}
	}
	if n := tg.handoffs(t); n != [numHandoffs]float64{} {
		t.Fatalf("handoffs %v, want none: the loop should have served all of it", n)
	}
	if n := tg.loopConns(); n != 1 {
		t.Fatalf("%d connections on event loops, want 1", n)
	}
	if in := tg.InFlight(); in != 0 {
		t.Fatalf("in flight %d after the answers", in)
	}
}

// What the loop does not serve it hands to a goroutine at the point it
// reached, and the answer is the same.
func TestLoopHandsOffWhatItDoesNotServe(t *testing.T) {
	big := strings.Repeat("x", 100<<10)
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			io.WriteString(w, "part1")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
		case "/big":
			io.WriteString(w, big)
		default:
			body, _ := io.ReadAll(r.Body)
			io.WriteString(w, r.URL.Path+" "+string(body))
		}
	})
	cases := []struct {
		name, raw, want string
		reason          int
	}{
		{"chunked response", "GET /chunked HTTP/1.1\r\nHost: gw\r\n\r\n", "part1part2", handoffResponse},
		{"large response", "GET /big HTTP/1.1\r\nHost: gw\r\n\r\n", big, handoffResponse},
		{"chunked request", "POST /c HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "/c abc", handoffRequest},
		{"100-continue", "POST /e HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "/e hi", handoffRequest},
		{"head larger than the loop's buffer", "GET /h HTTP/1.1\r\nHost: gw\r\n" + strings.Repeat("X-Big: "+strings.Repeat("y", 2<<10)+"\r\n", 5) + "\r\n", "/h ", handoffHead},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := loopGateway(t, config.Gateway{}, inst("s", b.addr(), 1))
			conn, br := semDial(t, tg.front.Addr)
			semWrite(t, conn, tc.raw)
			method, _, _ := strings.Cut(tc.raw, " ")
			resp, body := semMustRead(t, br, method)
			if resp.StatusCode != 200 || string(body) != tc.want {
				t.Fatalf("%d %.60q, want 200 %.60q", resp.StatusCode, body, tc.want)
			}
			// The connection goes on, served by the goroutine now.
			semWrite(t, conn, "GET /next HTTP/1.1\r\nHost: gw\r\n\r\n")
			if resp, body := semMustRead(t, br, "GET"); resp.StatusCode != 200 || string(body) != "/next " {
				t.Fatalf("next request: %d %q", resp.StatusCode, body)
			}
			if n := tg.loopConns(); n != 0 {
				t.Fatalf("%d connections still on event loops after a handoff", n)
			}
			var want [numHandoffs]float64
			want[tc.reason] = 1
			if n := tg.handoffs(t); n != want {
				t.Fatalf("handoffs %v, want %v", n, want)
			}
		})
	}
}

// A connection that fails is handed to the goroutine engine, which tries
// another instance: the client sees no error.
func TestLoopConnectFailureRetried(t *testing.T) {
	b := newBackend(t, "live", nil)
	dead := deadAddr(t)
	tg := loopGateway(t, config.Gateway{Balancer: config.BalancerRoundRobin}, inst("s", dead, 1), inst("s", b.addr(), 2))
	c := client()
	for i := 0; i < 4; i++ {
		if r := get(t, c, tg.front.URL+"/x"); r.code != 200 || r.header.Get("X-Backend") != "live" {
			t.Fatalf("request %d: %d %q", i, r.code, r.body)
		}
	}
	if n := tg.handoffs(t); n[handoffConnect] == 0 {
		t.Fatalf("handoffs %v: the refused connections should have gone to the goroutine engine", n)
	}
}

// The route's timeout is kept on the loop: 504, and the instance's
// connection is closed.
func TestLoopRouteTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	b := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	rt := rte("/", "s")
	rt.Timeout = 200 * time.Millisecond
	tg := loopGateway(t, config.Gateway{Routes: []config.Route{rt}}, inst("s", b.addr(), 1))
	r := get(t, client(), tg.front.URL+"/slow")
	if r.code != 504 {
		t.Fatalf("status %d %q, want 504", r.code, r.body)
	}
	eventually(t, "nothing in flight after the timeout", func() bool { return tg.InFlight() == 0 })
	if n := tg.handoffs(t); n != [numHandoffs]float64{} {
		t.Fatalf("handoffs %v, want none", n)
	}
}

// A client that leaves while its request is being served cuts the
// exchange: the instance sees its request cancelled and the request
// leaves the in-flight count (confirmed drains depend on it).
func TestLoopClientGoneCutsExchange(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	arrived := make(chan struct{}, 1)
	b := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
		case <-time.After(waitFor):
		}
	})
	tg := loopGateway(t, config.Gateway{}, inst("s", b.addr(), 1))
	conn, _ := semDial(t, tg.front.Addr)
	semWrite(t, conn, "GET /slow HTTP/1.1\r\nHost: gw\r\n\r\n")
	select {
	case <-arrived:
	case <-time.After(waitFor):
		t.Fatal("the request did not reach the instance")
	}
	if in := tg.InFlight(); in != 1 {
		t.Fatalf("in flight %d, want 1", in)
	}
	conn.Close()
	select {
	case <-cancelled:
	case <-time.After(waitFor):
		t.Fatal("the instance's request was not cancelled when the client left")
	}
	eventually(t, "nothing in flight once the client left", func() bool { return tg.InFlight() == 0 })
}

// Graceful shutdown waits for an exchange in progress on a loop, then
// closes the connection.
func TestLoopShutdownFinishesExchange(t *testing.T) {
	gate := newGate(t)
	b := newBackend(t, "b", gate.handler("b"))
	tg := loopGateway(t, config.Gateway{}, inst("s", b.addr(), 1))
	conn, br := semDial(t, tg.front.Addr)
	semWrite(t, conn, "GET /svc/slow HTTP/1.1\r\nHost: gw\r\n\r\n")
	gate.waitArrived(t)
	idle, _ := semDial(t, tg.front.Addr) // an idle connection: closed at once
	_ = idle
	shut := make(chan error, 1)
	go func() { shut <- tg.Shutdown(t.Context()) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	gate.open()
	resp, _ := semMustRead(t, br, "GET")
	if resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("status %d, close %v: want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
	semExpectClosed(t, conn, br)
	if err := testutil.Receive(t, waitFor, "Shutdown to return once the exchange ended", shut); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

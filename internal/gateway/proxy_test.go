package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/instancestate"
	"github.com/zkgate/zkgate/internal/testutil"
)

// hashHandler answers the sha256 and length of the request body.
func hashHandler(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Backend", name)
		io.WriteString(w, hex.EncodeToString(h.Sum(nil))+" "+strconv.FormatInt(n, 10))
	}
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]) + " " + strconv.Itoa(len(b))
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// Connection refused before anything was sent: the request goes to another
// instance, for any method, with its whole body.
func TestRetryConnectionRefused(t *testing.T) {
	live := newBackend(t, "live", hashHandler("live"))
	body := randomBytes(t, 1<<20)
	for _, method := range []string{"GET", "POST", "PUT-chunked"} {
		t.Run(method, func(t *testing.T) {
			dead := deadAddr(t)
			tg := newTestGateway(t, config.Gateway{Balancer: config.BalancerRoundRobin, Routes: []config.Route{rte("/", "s")}}, Options{})
			tg.Update(regSnap(1, inst("s", dead, 1), inst("s", live.addr(), 2)), nil)
			c := client()
			for i := 0; i < 6; i++ {
				var req *http.Request
				want := hashOf(nil)
				switch method {
				case "GET":
					req, _ = http.NewRequest("GET", tg.front.URL+"/", nil)
				case "POST":
					req, _ = http.NewRequest("POST", tg.front.URL+"/upload", bytes.NewReader(body))
					want = hashOf(body)
				default: // unknown length: sent chunked
					req, _ = http.NewRequest("PUT", tg.front.URL+"/upload", io.MultiReader(bytes.NewReader(body[:1000]), bytes.NewReader(body[1000:])))
					want = hashOf(body)
				}
				if r := do(t, c, req); r.code != 200 || r.body != want || r.header.Get("X-Backend") != "live" {
					t.Fatalf("request %d: %d %s", i, r.code, r.body)
				}
			}
			if n := counterValue(t, tg.metrics.retries.WithLabelValues("s")); n < 1 {
				t.Fatalf("zkgate_retries_total = %v", n)
			}
			if n := counterValue(t, tg.metrics.upstreamErrors.WithLabelValues("s", "connect")); n < 1 {
				t.Fatalf("connect errors = %v", n)
			}
			// Three refused connections in a row ejected the dead instance.
			if st := tg.status(t, dead); st.State != instancestate.Ejected || st.ConnectFailures != 3 {
				t.Fatalf("dead instance: %+v", st)
			}
		})
	}
}

func TestRetriesExhausted(t *testing.T) {
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", deadAddr(t), 1), inst("s", deadAddr(t), 2), inst("s", deadAddr(t), 3), inst("s", deadAddr(t), 4)), nil)
	r := post(t, client(), tg.front.URL+"/", "payload")
	if r.code != 502 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %s", r.code, r.body)
	}
	var e map[string]string
	decodeJSON(t, r.body, &e)
	if e["error"] != "upstream connection failed" || e["service"] != "s" {
		t.Fatalf("body %q", r.body)
	}
	if n := counterValue(t, tg.metrics.retries.WithLabelValues("s")); n != 2 {
		t.Fatalf("retries = %v, want 2 (the default bound)", n)
	}
	if n := counterValue(t, tg.metrics.upstreamErrors.WithLabelValues("s", "connect")); n != 3 {
		t.Fatalf("connect errors = %v, want 3", n)
	}
}

// Once the request may have reached an instance, it is never retried.
func TestNoRetryAfterSent(t *testing.T) {
	var seen atomic.Int64
	hijackClose := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		seen.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	x := newBackend(t, "x", hijackClose)
	y := newBackend(t, "y", hijackClose)
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", x.addr(), 1), inst("s", y.addr(), 2)), nil)
	c := client()
	for _, method := range []string{"POST", "GET"} {
		seen.Store(0)
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader("exactly once")
		}
		req, _ := http.NewRequest(method, tg.front.URL+"/", body)
		r := do(t, c, req)
		if r.code != 502 {
			t.Fatalf("%s: got %d %s", method, r.code, r.body)
		}
		if n := seen.Load(); n != 1 {
			t.Fatalf("%s: instances saw %d requests, want 1", method, n)
		}
	}
	if n := counterValue(t, tg.metrics.retries.WithLabelValues("s")); n != 0 {
		t.Fatalf("retries = %v", n)
	}
	if n := counterValue(t, tg.metrics.upstreamErrors.WithLabelValues("s", "reset")); n != 2 {
		t.Fatalf("reset errors = %v", n)
	}
}

func TestErrorResponses(t *testing.T) {
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(waitFor):
		}
	})
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{
		{Prefix: "/empty/", Service: "empty"},
		{Prefix: "/slow/", Service: "slow", Timeout: 50 * time.Millisecond},
	}}, Options{})
	c := client()

	// Before the first Update: 503 for routed paths.
	if r := get(t, c, tg.front.URL+"/empty/x"); r.code != 503 {
		t.Fatalf("not loaded: %d", r.code)
	}
	tg.Update(regSnap(1, inst("slow", slow.addr(), 1)), nil)
	for _, c2 := range []struct {
		path    string
		code    int
		errText string
		service string
	}{
		{"/nowhere", 404, "no route", ""},
		{"/empty/x", 503, "no instance available", "empty"},
		{"/slow/x", 504, "upstream timeout", "slow"},
	} {
		r := get(t, c, tg.front.URL+c2.path)
		if r.code != c2.code || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %q", c2.path, r.code, r.body)
		}
		var e map[string]string
		decodeJSON(t, r.body, &e)
		if e["error"] != c2.errText || e["service"] != c2.service {
			t.Fatalf("%s: body %q", c2.path, r.body)
		}
	}
	if n := counterValue(t, tg.metrics.upstreamErrors.WithLabelValues("slow", "timeout")); n != 1 {
		t.Fatalf("timeout errors = %v", n)
	}
	if n := counterValue(t, tg.metrics.requests.WithLabelValues("/slow/", "slow", "504")); n != 1 {
		t.Fatalf("requests{code=504} = %v", n)
	}
	eventually(t, "in-flight 0", func() bool { return tg.InFlight() == 0 })
}

// Streamed responses reach the client before the instance finishes.
func TestStreaming(t *testing.T) {
	for _, ct := range []string{"text/event-stream", "application/octet-stream"} {
		t.Run(ct, func(t *testing.T) {
			release := make(chan struct{})
			b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ct) // no Content-Length: chunked
				io.WriteString(w, "data: first\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
				}
				io.WriteString(w, "data: second\n\n")
			})
			tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
			tg.Update(regSnap(1, inst("s", b.addr(), 1)), nil)
			defer close(release)
			resp, err := client().Get(tg.front.URL + "/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			line := make(chan string, 1)
			go func() {
				s, _ := bufio.NewReader(resp.Body).ReadString('\n')
				line <- s
			}()
			select {
			case s := <-line:
				if s != "data: first\n" {
					t.Fatalf("first line %q", s)
				}
			case <-time.After(waitFor):
				t.Fatal("the first event did not arrive while the instance was still streaming")
			}
			if st := tg.status(t, b.addr()); st.InFlight != 1 {
				t.Fatalf("streaming response not in flight: %+v", st)
			}
		})
	}
}

func TestLargeBodies(t *testing.T) {
	const size = 32 << 20
	payload := randomBytes(t, size)
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			hashHandler("b")(w, r)
			return
		}
		if r.URL.Query().Has("length") {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		w.Write(payload)
	})
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", b.addr(), 1)), nil)
	c := client()

	req, _ := http.NewRequest("POST", tg.front.URL+"/up", bytes.NewReader(payload))
	if r := do(t, c, req); r.code != 200 || r.body != hashOf(payload) {
		t.Fatalf("upload: %d %s", r.code, r.body[:min(len(r.body), 200)])
	}
	for _, q := range []string{"", "?length"} {
		resp, err := c.Get(tg.front.URL + "/down" + q)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != hashOf(payload)[:64] {
			t.Fatalf("download%s: %d bytes, err %v", q, n, err)
		}
	}
	eventually(t, "in-flight 0", func() bool { return tg.InFlight() == 0 })
}

// wsBackend completes a WebSocket-style upgrade by hand and echoes.
func wsBackend(t *testing.T) *backend {
	return newBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		testutil.EchoUpgraded(w)
	})
}

func dialUpgrade(t *testing.T, front string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, br, resp, err := testutil.DialUpgrade(strings.TrimPrefix(front, "http://"), "/ws", waitFor)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("handshake: %s %v", resp.Status, resp.Header)
	}
	return conn, br
}

func TestWebSocketUpgrade(t *testing.T) {
	b := wsBackend(t)
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", b.addr(), 1)), nil)
	conn, br := dialUpgrade(t, tg.front.URL)
	for _, msg := range []string{"hello", "world, again"} {
		io.WriteString(conn, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo %q: got %q, %v", msg, got, err)
		}
	}
	if st := tg.status(t, b.addr()); st.InFlight != 1 {
		t.Fatalf("upgraded connection not in flight: %+v", st)
	}
	conn.Close()
	eventually(t, "the upgraded connection to end", func() bool { return tg.InFlight() == 0 })
	if n := counterValue(t, tg.metrics.requests.WithLabelValues("/", "s", "101")); n != 1 {
		t.Fatalf("requests{code=101} = %v", n)
	}
}

func TestHopByHopAndForwardedHeaders(t *testing.T) {
	got := make(chan *http.Request, 1)
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		got <- r
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Kept", "1")
	})
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", b.addr(), 1)), nil)
	req, _ := http.NewRequest("GET", tg.front.URL+"/h", nil)
	req.Header.Set("Connection", "X-Custom-Hop")
	req.Header.Set("X-Custom-Hop", "1")
	req.Header.Set("Proxy-Authorization", "secret")
	req.Header.Set("X-Forwarded-For", "1.2.3.4")
	req.Header.Set("X-Forwarded-Proto", "gopher")
	req.Header.Set("X-Other", "y")
	r := do(t, client(), req)
	if r.code != 200 {
		t.Fatalf("got %d", r.code)
	}
	in := <-got
	front := strings.TrimPrefix(tg.front.URL, "http://")
	for name, want := range map[string]string{
		"X-Custom-Hop":        "",
		"Proxy-Authorization": "",
		"X-Other":             "y",
		"X-Forwarded-For":     "1.2.3.4, 127.0.0.1",
		"X-Forwarded-Host":    front,
		"X-Forwarded-Proto":   "http",
	} {
		if v := in.Header.Get(name); v != want {
			t.Errorf("upstream saw %s = %q, want %q", name, v, want)
		}
	}
	if in.Host != front {
		t.Errorf("upstream saw Host %q, want the client's %q", in.Host, front)
	}
	if r.header.Get("X-Resp-Hop") != "" || r.header.Get("Keep-Alive") != "" || r.header.Get("X-Kept") != "1" {
		t.Errorf("response headers %v", r.header)
	}
}

func TestEjectionExpires(t *testing.T) {
	clk := newFakeClock()
	dead := deadAddr(t)
	live := newBackend(t, "live", nil)
	tg := newTestGateway(t, config.Gateway{Balancer: config.BalancerRoundRobin, Routes: []config.Route{rte("/", "s")}}, Options{Now: clk.Now})
	tg.Update(regSnap(1, inst("s", dead, 1), inst("s", live.addr(), 2)), nil)
	c := client()
	for i := 0; i < 8; i++ {
		if r := get(t, c, tg.front.URL+"/"); r.code != 200 {
			t.Fatalf("got %d", r.code)
		}
	}
	if st := tg.status(t, dead); st.State != instancestate.Ejected {
		t.Fatalf("dead: %+v", st)
	}
	before := counterValue(t, tg.metrics.upstreamErrors.WithLabelValues("s", "connect"))
	for i := 0; i < 8; i++ {
		get(t, c, tg.front.URL+"/")
	}
	if after := counterValue(t, tg.metrics.upstreamErrors.WithLabelValues("s", "connect")); after != before {
		t.Fatalf("ejected instance still tried: connect errors %v → %v", before, after)
	}
	clk.Advance(11 * time.Second)
	if st := tg.status(t, dead); st.State != instancestate.Serving {
		t.Fatalf("after the ejection: %+v", st)
	}

	// Ejection never empties a pool: with only ejected instances left,
	// they are still tried (502, not 503).
	tg.Update(regSnap(2, inst("s", dead, 1)), nil)
	for i := 0; i < 5; i++ {
		if r := get(t, c, tg.front.URL+"/"); r.code != 502 {
			t.Fatalf("only an ejected instance: got %d", r.code)
		}
	}
	if st := tg.status(t, dead); st.State != instancestate.Ejected {
		t.Fatalf("dead: %+v", st)
	}
}

func TestShutdownWaitsForInFlight(t *testing.T) {
	gt := newGate(t)
	a := newBackend(t, "a", gt.handler("a"))
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/svc/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", a.addr(), 1)), nil)
	done := goGet(client(), tg.front.URL+"/svc/slow")
	gt.waitArrived(t)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		shut <- tg.Shutdown(ctx)
	}()
	eventually(t, "readyz to fail", func() bool { return !tg.Ready().Ready })
	if rd := tg.Ready(); rd.Reason != "shutting down" {
		t.Fatalf("readiness %+v", rd)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	gt.open()
	if r := <-done; r.code != 200 {
		t.Fatalf("in-flight request: %d %v", r.code, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

func TestShutdownClosesUpgradesAtDeadline(t *testing.T) {
	b := wsBackend(t)
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", b.addr(), 1)), nil)
	conn, br := dialUpgrade(t, tg.front.URL)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := tg.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("upgraded connection still open after Shutdown's deadline")
	}
	eventually(t, "in-flight 0", func() bool { return tg.InFlight() == 0 })
}

func TestClientGoneCountsNoUpstreamError(t *testing.T) {
	gt := newGate(t)
	a := newBackend(t, "a", gt.handler("a"))
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/svc/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", a.addr(), 1)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", tg.front.URL+"/svc/slow", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	gt.waitArrived(t)
	cancel()
	<-errc
	eventually(t, "in-flight 0", func() bool { return tg.InFlight() == 0 })
	eventually(t, "the 499", func() bool {
		return counterValue(t, tg.metrics.requests.WithLabelValues("/svc/", "s", "499")) == 1
	})
	for _, k := range kindNames {
		if n := counterValue(t, tg.metrics.upstreamErrors.WithLabelValues("s", k)); n != 0 {
			t.Errorf("upstream errors{kind=%s} = %v after the client left", k, n)
		}
	}
}

// An instance answering 101 with another protocol than requested gets a
// 502, and the exchange does not stay in flight.
func TestUpgradeMismatch(t *testing.T) {
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, ok := testutil.SwitchProtocols(w, "h2c")
		if !ok {
			return
		}
		defer conn.Close()
		io.Copy(io.Discard, brw)
	})
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", b.addr(), 1)), nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(tg.front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitFor))
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 502 {
		t.Fatalf("got %s", resp.Status)
	}
	eventually(t, "in-flight 0", func() bool { return tg.InFlight() == 0 })
}

package gateway

// HTTP/1.1 semantics of the proxy listener, written against raw TCP so that
// no client library normalises the bytes. These tests define the behaviour
// of the data plane whatever engine serves it.

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/instancestate"
)

// semRejected sends raw on a new connection and expects an answer with one
// of codes, the connection closed after it, and no request reaching an
// instance (hits counts the requests the instances received).
func semRejected(t *testing.T, front, raw, method string, codes []int, hits func() int64) {
	t.Helper()
	before := hits()
	conn, br := semDial(t, front)
	semWrite(t, conn, raw)
	resp, body, err := semRead(br, method)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	if !slices.Contains(codes, resp.StatusCode) {
		t.Fatalf("got %s %q, want one of %v", resp.Status, body, codes)
	}
	semExpectClosed(t, conn, br)
	if n := hits() - before; n != 0 {
		t.Errorf("the instances received %d requests", n)
	}
}

// expectHopsRemoved checks that h (what the receiver saw) has none of the
// hop-by-hop headers names, and no Connection value naming token.
func expectHopsRemoved(t *testing.T, saw string, h http.Header, token string, names ...string) {
	t.Helper()
	for _, name := range names {
		if v := h.Values(name); len(v) != 0 {
			t.Errorf("%s %s %q", saw, name, v)
		}
	}
	for _, v := range h.Values("Connection") {
		if strings.Contains(strings.ToLower(v), token) {
			t.Errorf("%s Connection %q", saw, v)
		}
	}
}

// semGateway serves routes "/" → service s, backed by one instance.
func semGateway(t *testing.T, cfg config.Gateway, addr string) *testGateway {
	t.Helper()
	if cfg.Routes == nil {
		cfg.Routes = []config.Route{rte("/", "s")}
	}
	tg := newTestGateway(t, cfg, Options{})
	tg.Update(regSnap(1, inst("s", addr, 1)), nil)
	return tg
}

// 1. Requests whose framing is ambiguous (request smuggling) or whose head
// is malformed are refused, the connection is closed, and nothing reaches
// the instance.
func TestSemSmugglingRefused(t *testing.T) {
	b := newBackend(t, "b", nil)
	tg := semGateway(t, config.Gateway{}, b.addr())
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: gw\r\n\r\n"
	post := func(headers, body string) string {
		return "POST /a HTTP/1.1\r\nHost: gw\r\n" + headers + "\r\n" + body
	}
	bad := []int{400}
	badTE := []int{400, 501}
	for _, c := range []struct {
		name  string
		raw   string
		codes []int
	}{
		{"cl-then-te", post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"+smuggled), bad},
		{"te-then-cl", post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"+smuggled), bad},
		{"two-cl-different", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"+smuggled), bad},
		{"two-cl-equal", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"+smuggled), bad},
		{"te-gzip-chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"+smuggled), badTE},
		{"te-chunked-identity", post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"+smuggled), badTE},
		{"te-xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"+smuggled), badTE},
		{"te-twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"+smuggled), badTE},
		{"te-in-http10", "POST /a HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", bad},
		{"cl-plus", post("Content-Length: +5\r\n", "hello"+smuggled), bad},
		{"cl-list", post("Content-Length: 5, 5\r\n", "hello"+smuggled), bad},
		{"cl-negative", post("Content-Length: -1\r\n", "hello"+smuggled), bad},
		{"cl-hex", post("Content-Length: 0x10\r\n", "hello"+smuggled), bad},
		{"cl-huge", post("Content-Length: 99999999999999999999999\r\n", "hello"+smuggled), bad},
		{"cl-empty", post("Content-Length: \r\n", "hello"+smuggled), bad},
		{"obs-fold", "GET /a HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\n continued\r\n\r\n", bad},
		{"obs-fold-tab", "GET /a HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\n\tcontinued\r\n\r\n", bad},
		{"space-before-colon", "GET /a HTTP/1.1\r\nHost: gw\r\nX-A : 1\r\n\r\n", bad},
		{"name-non-token", "GET /a HTTP/1.1\r\nHost: gw\r\nX{A}: 1\r\n\r\n", bad},
		{"name-control-byte", "GET /a HTTP/1.1\r\nHost: gw\r\nX\x01A: 1\r\n\r\n", bad},
		{"no-host", "GET /a HTTP/1.1\r\nX-A: 1\r\n\r\n", bad},
		{"two-hosts", "GET /a HTTP/1.1\r\nHost: gw\r\nHost: other\r\n\r\n", bad},
	} {
		t.Run(c.name, func(t *testing.T) {
			semRejected(t, tg.front.Addr, c.raw, "POST", c.codes, b.hits.Load)
		})
	}
}

// 2. Upgrade to anything but WebSocket (h2c, or any other token) is never
// tunnelled: the request goes upstream as plain HTTP/1.1 without its
// Upgrade and HTTP2-Settings headers, and the client gets the instance's
// ordinary response on a connection that goes on speaking HTTP/1.1.
func TestSemUpgradeOtherThanWebSocketStripped(t *testing.T) {
	b := newRecBackend(t, "b")
	tg := semGateway(t, config.Gateway{}, b.addr())
	for _, c := range []struct{ name, headers string }{
		{"h2c", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"},
		{"foo", "Connection: Upgrade\r\nUpgrade: foo/2\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, br := semDial(t, tg.front.Addr)
			semWrite(t, conn, "GET /u?x=1 HTTP/1.1\r\nHost: gw\r\n"+c.headers+"\r\n")
			resp, body := semMustRead(t, br, "GET")
			if resp.StatusCode != 200 || string(body) != "b /u?x=1" {
				t.Fatalf("got %s %q, want the instance's 200", resp.Status, body)
			}
			seen := b.last(t)
			if v := seen.header.Values("Upgrade"); len(v) != 0 {
				t.Errorf("the instance saw Upgrade %q", v)
			}
			if v := seen.header.Values("Http2-Settings"); len(v) != 0 {
				t.Errorf("the instance saw HTTP2-Settings %q", v)
			}
			for _, v := range seen.header.Values("Connection") {
				if l := strings.ToLower(v); strings.Contains(l, "upgrade") || strings.Contains(l, "http2-settings") {
					t.Errorf("the instance saw Connection %q", v)
				}
			}
			// The connection was not switched: it serves another request.
			semWrite(t, conn, "GET /again HTTP/1.1\r\nHost: gw\r\n\r\n")
			if resp, body := semMustRead(t, br, "GET"); resp.StatusCode != 200 || string(body) != "b /again" {
				t.Fatalf("next request on the connection: %s %q", resp.Status, body)
			}
		})
	}
}

// 2. WebSocket is tunnelled both ways after the 101, including bytes the
// instance sent in the same write as its 101, and a large transfer in both
// directions at once.
func TestSemWebSocketRawEcho(t *testing.T) {
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	accept := base64.StdEncoding.EncodeToString(sum[:])
	b := newBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || r.Header.Get("Sec-WebSocket-Key") != key {
			http.Error(w, "bad handshake", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		// The 101 and the first frame in one write.
		conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\nHELLO"))
		buf := make([]byte, 32<<10)
		for {
			n, err := brw.Read(buf)
			for i := range buf[:n] {
				buf[i]++
			}
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	tg := semGateway(t, config.Gateway{}, b.addr())
	conn, br := semDial(t, tg.front.Addr)
	semWrite(t, conn, "GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "+key+"\r\n\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || resp.Header.Get("Sec-WebSocket-Accept") != accept {
		t.Fatalf("handshake: %s %v", resp.Status, resp.Header)
	}
	hello := make([]byte, 5)
	if _, err := io.ReadFull(br, hello); err != nil || string(hello) != "HELLO" {
		t.Fatalf("first frame: %q, %v", hello, err)
	}
	payload := randomBytes(t, 4<<20)
	want := bytes.Clone(payload)
	for i := range want {
		want[i]++
	}
	werr := make(chan error, 1)
	go func() { _, err := conn.Write(payload); werr <- err }()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("echo of %d bytes: intact %v, %v", len(want), bytes.Equal(got, want), err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	conn.Close()
	eventually(t, "the tunnel to end", func() bool { return tg.status(t, b.addr()).InFlight == 0 })
}

// 3. Dot-segments (also percent-encoded) are resolved before routing, like
// nginx; a path that climbs above the root is refused; the query string is
// passed unchanged.
func TestSemDotSegments(t *testing.T) {
	orders := newRecBackend(t, "orders")
	admin := newRecBackend(t, "admin")
	root := newRecBackend(t, "root")
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{
		rte("/orders/", "orders"), rte("/admin/", "admin"), rte("/", "root"),
	}}, Options{})
	tg.Update(regSnap(1, inst("orders", orders.addr(), 1), inst("admin", admin.addr(), 2), inst("root", root.addr(), 3)), nil)
	hits := func() int64 { return orders.hits.Load() + admin.hits.Load() + root.hits.Load() }
	for _, c := range []struct{ target, want string }{
		{"/orders/../admin/x", "admin /admin/x"},
		{"/orders/./x", "orders /orders/x"},
		{"/orders/%2e%2e/admin/x", "admin /admin/x"},
		{"/orders/%2E%2E/admin/x", "admin /admin/x"},
		{"/orders/.%2E/admin/x", "admin /admin/x"},
		{"/orders/%2e/x", "orders /orders/x"},
		{"/orders/a/b/../../../admin/y", "admin /admin/y"},
		{"/orders/x/..", "orders /orders/"},
		{"/orders/..", "root /"},
		{"/orders/../admin/x?q=/../z&r=%2e%2e&s=./", "admin /admin/x?q=/../z&r=%2e%2e&s=./"},
	} {
		t.Run(c.target, func(t *testing.T) {
			resp, body := semRoundTrip(t, tg.front.Addr, "GET "+c.target+" HTTP/1.1\r\nHost: gw\r\n\r\n")
			if resp.StatusCode != 200 || string(body) != c.want {
				t.Fatalf("got %s %q, want 200 %q", resp.Status, body, c.want)
			}
		})
	}
	for _, target := range []string{"/../x", "/orders/../../x", "/%2e%2e/x", "/orders/%2e%2e/%2E%2E/x", "/orders/a/../../../admin/x"} {
		t.Run(target, func(t *testing.T) {
			before := hits()
			resp, body := semRoundTrip(t, tg.front.Addr, "GET "+target+" HTTP/1.1\r\nHost: gw\r\n\r\n")
			if resp.StatusCode != 400 {
				t.Fatalf("got %s %q, want 400", resp.Status, body)
			}
			if n := hits() - before; n != 0 {
				t.Fatalf("instances received %d requests", n)
			}
		})
	}

	t.Run("strip_prefix", func(t *testing.T) {
		o := newRecBackend(t, "orders")
		tg := newTestGateway(t, config.Gateway{Routes: []config.Route{
			{Prefix: "/orders/", Service: "orders", StripPrefix: true},
		}}, Options{})
		tg.Update(regSnap(1, inst("orders", o.addr(), 1)), nil)
		for target, want := range map[string]string{
			"/orders/a/../b":         "orders /b",
			"/orders/./b?c=../d":     "orders /b?c=../d",
			"/orders/%2e/a/%2E%2E/b": "orders /b",
		} {
			resp, body := semRoundTrip(t, tg.front.Addr, "GET "+target+" HTTP/1.1\r\nHost: gw\r\n\r\n")
			if resp.StatusCode != 200 || string(body) != want {
				t.Errorf("%s: got %s %q, want 200 %q", target, resp.Status, body, want)
			}
		}
	})
}

// 4. A malformed chunked body from the client is the client's fault: it
// gets a 400 (or the connection is closed), and the instance is charged
// with nothing (no upstream error, no ejection).
func TestSemMalformedChunkedBody(t *testing.T) {
	b := newBackend(t, "b", hashHandler("b"))
	tg := semGateway(t, config.Gateway{}, b.addr())
	for _, c := range []struct{ name, body string }{
		{"bare-lf-after-size", "5\r\nhello\r\n5\nworld\r\n0\r\n\r\n"},
		{"non-hex-size", "5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n"},
		{"non-hex-first-size", "zz\r\nhello\r\n0\r\n\r\n"},
		{"no-crlf-after-data", "5\r\nhelloXX5\r\nworld\r\n0\r\n\r\n"},
		{"size-overflow", "5\r\nhello\r\nfffffffffffffffffffffff\r\nworld\r\n0\r\n\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, br := semDial(t, tg.front.Addr)
			semWrite(t, conn, "POST /up HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"+c.body)
			resp, body, err := semRead(br, "POST")
			switch {
			case err == nil && resp.StatusCode != 400:
				t.Fatalf("got %s %q, want 400 or a closed connection", resp.Status, body)
			case err == nil:
				semExpectClosed(t, conn, br)
			case isTimeout(err):
				t.Fatalf("no answer and the connection stays open: %v", err)
			}
			eventually(t, "in-flight 0", func() bool { return tg.status(t, b.addr()).InFlight == 0 })
			for _, k := range kindNames {
				if n := counterValue(t, tg.metrics.upstreamErrors.WithLabelValues("s", k)); n != 0 {
					t.Errorf("upstream errors{kind=%s} = %v for the client's bad body", k, n)
				}
			}
			if st := tg.status(t, b.addr()); st.State != instancestate.Serving || st.ConnectFailures != 0 {
				t.Errorf("instance charged with the client's bad body: %+v", st)
			}
		})
	}
}

// 5. Client-side timeouts. Each case uses its own service, so in-flight
// counts do not mix.
func TestSemClientTimeouts(t *testing.T) {
	const d = 300 * time.Millisecond
	bodyB := newBackend(t, "body", hashHandler("body"))
	const bigSize = 64 << 20
	sent := make(chan struct{}, 4)
	sendB := newBackend(t, "send", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(bigSize))
		sent <- struct{}{}
		buf := make([]byte, 64<<10)
		for n := 0; n < bigSize; n += len(buf) {
			if _, err := w.Write(buf); err != nil || r.Context().Err() != nil {
				return
			}
		}
	})
	slowB := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		time.Sleep(4 * d) // longer than every client timeout
		io.WriteString(w, "slow "+strconv.FormatInt(n, 10))
	})
	plain := newBackend(t, "plain", nil)
	tg := newTestGateway(t, config.Gateway{
		ClientIdleTimeout: d, ClientHeaderTimeout: d, ClientBodyTimeout: d, ClientSendTimeout: d,
		Routes: []config.Route{rte("/body/", "body"), rte("/send/", "send"), rte("/slow/", "slow"), rte("/", "plain")},
	}, Options{})
	tg.Update(regSnap(1, inst("body", bodyB.addr(), 1), inst("send", sendB.addr(), 2), inst("slow", slowB.addr(), 3), inst("plain", plain.addr(), 4)), nil)

	// closedMaybe408: the gateway may answer 408 first; then it closes.
	closedMaybe408 := func(t *testing.T, conn net.Conn, br *bufio.Reader) {
		t.Helper()
		resp, body, err := semRead(br, "GET")
		switch {
		case err == nil && resp.StatusCode != 408:
			t.Fatalf("got %s %q, want 408 or a closed connection", resp.Status, body)
		case err == nil:
			semExpectClosed(t, conn, br)
		case isTimeout(err):
			t.Fatal("the gateway kept the connection open")
		}
	}

	t.Run("idle-keepalive", func(t *testing.T) {
		t.Parallel()
		conn, br := semDial(t, tg.front.Addr)
		semWrite(t, conn, "GET /x HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp, body := semMustRead(t, br, "GET"); resp.StatusCode != 200 {
			t.Fatalf("got %s %q", resp.Status, body)
		}
		semExpectClosed(t, conn, br)
	})
	t.Run("silent-new-connection", func(t *testing.T) {
		t.Parallel()
		conn, br := semDial(t, tg.front.Addr)
		semExpectClosed(t, conn, br)
	})
	t.Run("head-stalled", func(t *testing.T) {
		t.Parallel()
		conn, br := semDial(t, tg.front.Addr)
		semWrite(t, conn, "GET /x HTTP/1.1\r\nHo")
		closedMaybe408(t, conn, br)
	})
	// A head trickling in a byte at a time: each read is quick, the head
	// as a whole is not.
	t.Run("head-trickle", func(t *testing.T) {
		t.Parallel()
		conn, br := semDial(t, tg.front.Addr)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			head := []byte("GET /x HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
			for i := 0; ; i++ {
				c := byte('a')
				if i < len(head) {
					c = head[i]
				}
				if _, err := conn.Write([]byte{c}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(d / 6):
				}
			}
		}()
		closedMaybe408(t, conn, br)
		close(stop)
		<-done
	})
	t.Run("body-stalled", func(t *testing.T) {
		t.Parallel()
		conn, br := semDial(t, tg.front.Addr)
		semWrite(t, conn, "POST /body/up HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\n0123456789")
		closedMaybe408(t, conn, br)
		eventually(t, "in-flight 0", func() bool { return tg.status(t, bodyB.addr()).InFlight == 0 })
		if st := tg.status(t, bodyB.addr()); st.State != instancestate.Serving {
			t.Errorf("instance charged with the slow client: %+v", st)
		}
	})
	t.Run("send-stalled", func(t *testing.T) {
		t.Parallel()
		conn, br := semDial(t, tg.front.Addr)
		conn.(*net.TCPConn).SetReadBuffer(16 << 10)
		semWrite(t, conn, "GET /send/big HTTP/1.1\r\nHost: gw\r\n\r\n")
		select {
		case <-sent:
		case <-time.After(waitFor):
			t.Fatal("the request did not reach the instance")
		}
		// The client reads nothing.
		eventually(t, "in-flight 0", func() bool { return tg.status(t, sendB.addr()).InFlight == 0 })
		closed, n := semClosed(conn, br)
		if !closed {
			t.Fatal("the gateway kept the connection open")
		}
		if n >= bigSize {
			t.Fatalf("the whole response (%d bytes) was delivered to a client that did not read", n)
		}
	})
	// Timeouts bound the client, never the instance: a response slower
	// than all of them is delivered.
	t.Run("slow-instance-not-cut", func(t *testing.T) {
		t.Parallel()
		conn, br := semDial(t, tg.front.Addr)
		semWrite(t, conn, "POST /slow/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello")
		if resp, body := semMustRead(t, br, "POST"); resp.StatusCode != 200 || string(body) != "slow 5" {
			t.Fatalf("got %s %q", resp.Status, body)
		}
	})
}

// 6. Expect: 100-continue: the client gets 100 Continue before it sends
// the body, then the instance's answer, with the body intact.
func TestSemExpectContinue(t *testing.T) {
	b := newBackend(t, "b", hashHandler("b"))
	tg := semGateway(t, config.Gateway{}, b.addr())
	payload := randomBytes(t, 256<<10)
	conn, br := semDial(t, tg.front.Addr)
	semWrite(t, conn, "POST /up HTTP/1.1\r\nHost: gw\r\nContent-Length: "+strconv.Itoa(len(payload))+"\r\nExpect: 100-continue\r\n\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
	if err != nil {
		t.Fatalf("waiting for 100 Continue: %v", err)
	}
	if resp.StatusCode != 100 {
		t.Fatalf("got %s before the body was sent, want 100 Continue", resp.Status)
	}
	if _, err := conn.Write(payload); err != nil {
		t.Fatal(err)
	}
	for {
		resp, body := semMustRead(t, br, "POST")
		if resp.StatusCode == 100 { // the instance's own, forwarded
			continue
		}
		if resp.StatusCode != 200 || string(body) != hashOf(payload) || resp.Header.Get("X-Backend") != "b" {
			t.Fatalf("got %s %q", resp.Status, body)
		}
		break
	}
	// The connection goes on.
	semWrite(t, conn, "POST /up HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello")
	if resp, body := semMustRead(t, br, "POST"); resp.StatusCode != 200 || string(body) != hashOf([]byte("hello")) {
		t.Fatalf("next request: %s %q", resp.Status, body)
	}
}

// 7. Chunked bodies both ways.
func TestSemChunked(t *testing.T) {
	t.Run("request", func(t *testing.T) {
		b := newBackend(t, "b", hashHandler("b"))
		tg := semGateway(t, config.Gateway{}, b.addr())
		payload := randomBytes(t, 1+0x10+4096+(64<<10)+3+7)
		var raw strings.Builder
		raw.WriteString("POST /up HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
		rest := payload
		for i, n := range []int{1, 0x10, 4096, 64<<10 + 3, 7} {
			if i%2 == 0 {
				fmt.Fprintf(&raw, "%x\r\n", n)
			} else {
				fmt.Fprintf(&raw, "%X\r\n", n)
			}
			raw.Write(rest[:n])
			raw.WriteString("\r\n")
			rest = rest[n:]
		}
		raw.WriteString("0\r\n\r\n")
		conn, br := semDial(t, tg.front.Addr)
		semWrite(t, conn, raw.String())
		if resp, body := semMustRead(t, br, "POST"); resp.StatusCode != 200 || string(body) != hashOf(payload) {
			t.Fatalf("got %s %q, want %q", resp.Status, body, hashOf(payload))
		}
		// The body ended where its last chunk said: the next request on
		// the connection is read as one.
		semWrite(t, conn, "POST /up HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nok")
		if resp, body := semMustRead(t, br, "POST"); resp.StatusCode != 200 || string(body) != hashOf([]byte("ok")) {
			t.Fatalf("next request: %s %q", resp.Status, body)
		}
	})
	t.Run("response-streamed", func(t *testing.T) {
		release := make(chan struct{})
		var once sync.Once
		t.Cleanup(func() { once.Do(func() { close(release) }) })
		b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "data: second\n\n")
			w.(http.Flusher).Flush()
			io.WriteString(w, "data: third\n\n")
		})
		tg := semGateway(t, config.Gateway{}, b.addr())
		conn, br := semDial(t, tg.front.Addr)
		semWrite(t, conn, "GET /events HTTP/1.1\r\nHost: gw\r\n\r\n")
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("got %s", resp.Status)
		}
		first := make([]byte, len("data: first\n\n"))
		if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "data: first\n\n" {
			t.Fatalf("the first event did not arrive while the instance held the second: %q, %v", first, err)
		}
		once.Do(func() { close(release) })
		rest, err := io.ReadAll(resp.Body)
		if err != nil || string(rest) != "data: second\n\ndata: third\n\n" {
			t.Fatalf("rest of the stream %q, %v", rest, err)
		}
		// Properly framed: the connection serves another request.
		semWrite(t, conn, "GET /events HTTP/1.1\r\nHost: gw\r\n\r\n")
		resp2, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil || resp2.StatusCode != 200 {
			t.Fatalf("next request: %v %v", resp2, err)
		}
		resp2.Body.Close()
	})
}

// 8. 100 MiB each way go through without being buffered whole: the whole
// test process allocates less than 32 MiB during each transfer.
func TestSemBigBodiesStream(t *testing.T) {
	const size = 100 << 20
	const maxAlloc = 32 << 20
	pat := randomBytes(t, 65521)
	h := sha256.New()
	buf := make([]byte, 64<<10)
	io.CopyBuffer(h, newPatternReader(pat, size), buf)
	want := hex.EncodeToString(h.Sum(nil)) + " " + strconv.Itoa(size)

	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		if r.Method == "POST" {
			h := sha256.New()
			n, err := io.CopyBuffer(h, r.Body, buf)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			io.WriteString(w, hex.EncodeToString(h.Sum(nil))+" "+strconv.FormatInt(n, 10))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		pr := newPatternReader(pat, size)
		for {
			n, _ := pr.Read(buf)
			if n == 0 {
				return
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
		}
	})
	tg := semGateway(t, config.Gateway{}, b.addr())
	conn, br := semDial(t, tg.front.Addr)
	conn.SetDeadline(time.Now().Add(4 * waitFor))
	// Warm up the connections (buffers, pools).
	semWrite(t, conn, "POST /up HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nok")
	semMustRead(t, br, "POST")

	allocated := func(f func()) uint64 {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		f()
		runtime.ReadMemStats(&m1)
		return m1.TotalAlloc - m0.TotalAlloc
	}
	var upBody []byte
	var upStatus int
	up := allocated(func() {
		semWrite(t, conn, "POST /up HTTP/1.1\r\nHost: gw\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
		if _, err := io.CopyBuffer(conn, newPatternReader(pat, size), buf); err != nil {
			t.Fatalf("uploading: %v", err)
		}
		resp, body := semMustRead(t, br, "POST")
		upStatus, upBody = resp.StatusCode, body
	})
	if upStatus != 200 || string(upBody) != want {
		t.Fatalf("upload: %d %q, want %q", upStatus, upBody, want)
	}
	if up >= maxAlloc {
		t.Errorf("uploading %d MiB allocated %d MiB", size>>20, up>>20)
	}

	var n int64
	var sum string
	down := allocated(func() {
		semWrite(t, conn, "GET /down HTTP/1.1\r\nHost: gw\r\n\r\n")
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err = io.CopyBuffer(h, resp.Body, buf)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("downloading: %v after %d bytes", err, n)
		}
		sum = hex.EncodeToString(h.Sum(nil)) + " " + strconv.FormatInt(n, 10)
	})
	if sum != want {
		t.Fatalf("download: %q, want %q", sum, want)
	}
	if down >= maxAlloc {
		t.Errorf("downloading %d MiB allocated %d MiB", size>>20, down>>20)
	}
	t.Logf("allocated: upload %d KiB, download %d KiB", up>>10, down>>10)
}

// 9. Message framing: pipelining, HTTP/1.0, HEAD, 204/304, close-delimited
// responses.
func TestSemFraming(t *testing.T) {
	echo := newBackend(t, "echo", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(50 * time.Millisecond) // so a concurrent answer to the next would overtake it
		}
		if r.URL.Path == "/stream" {
			io.WriteString(w, "part one, ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part two")
			return
		}
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.RequestURI+" "+string(body))
	})
	closeBody := randomBytes(t, 1<<20)
	raw := newRawBackend(t, func(conn net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			var resp string
			switch {
			case req.Method == "HEAD":
				resp = "HTTP/1.1 200 OK\r\nX-Backend: raw\r\nContent-Length: 11\r\n\r\n"
			case req.URL.Path == "/raw/204":
				resp = "HTTP/1.1 204 No Content\r\nX-Backend: raw\r\n\r\n"
			case req.URL.Path == "/raw/304":
				resp = "HTTP/1.1 304 Not Modified\r\nX-Backend: raw\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n"
			case req.URL.Path == "/raw/close10" || req.URL.Path == "/raw/close11":
				if req.URL.Path == "/raw/close10" {
					io.WriteString(conn, "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
				} else {
					io.WriteString(conn, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/octet-stream\r\n\r\n")
				}
				for b := closeBody; len(b) > 0; b = b[min(len(b), 100000):] {
					conn.Write(b[:min(len(b), 100000)])
				}
				return
			default:
				body := "raw " + req.URL.RequestURI()
				resp = "HTTP/1.1 200 OK\r\nX-Backend: raw\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
			}
			if _, err := io.WriteString(conn, resp); err != nil {
				return
			}
		}
	})
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "echo"), rte("/raw/", "raw")}}, Options{})
	tg.Update(regSnap(1, inst("echo", echo.addr(), 1), inst("raw", raw.addr(), 2)), nil)

	t.Run("pipelined", func(t *testing.T) {
		conn, br := semDial(t, tg.front.Addr)
		semWrite(t, conn, "GET /slow HTTP/1.1\r\nHost: gw\r\n\r\n"+
			"POST /p HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello"+
			"GET /last?q=1 HTTP/1.1\r\nHost: gw\r\n\r\n")
		for _, want := range []string{"GET /slow ", "POST /p hello", "GET /last?q=1 "} {
			resp, body := semMustRead(t, br, "GET")
			if resp.StatusCode != 200 || string(body) != want {
				t.Fatalf("got %s %q, want %q", resp.Status, body, want)
			}
		}
	})
	t.Run("http10-close", func(t *testing.T) {
		for _, path := range []string{"/x", "/stream"} {
			conn, br := semDial(t, tg.front.Addr)
			semWrite(t, conn, "GET "+path+" HTTP/1.0\r\nHost: gw\r\n\r\n")
			resp, body := semMustRead(t, br, "GET")
			want := "GET " + path + " "
			if path == "/stream" {
				want = "part one, part two"
			}
			if resp.StatusCode != 200 || string(body) != want {
				t.Fatalf("%s: got %s %q, want %q", path, resp.Status, body, want)
			}
			if len(resp.TransferEncoding) != 0 {
				t.Errorf("%s: %v sent to an HTTP/1.0 client", path, resp.TransferEncoding)
			}
			semExpectClosed(t, conn, br)
		}
	})
	t.Run("head", func(t *testing.T) {
		conn, br := semDial(t, tg.front.Addr)
		semWrite(t, conn, "HEAD /raw/h HTTP/1.1\r\nHost: gw\r\n\r\n")
		resp, body := semMustRead(t, br, "HEAD")
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("X-Backend") != "raw" {
			t.Fatalf("got %s %v %q", resp.Status, resp.Header, body)
		}
		if cl := resp.Header.Get("Content-Length"); cl != "" && cl != "11" {
			t.Errorf("HEAD Content-Length %q, want the instance's 11", cl)
		}
		semWrite(t, conn, "GET /raw/after HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp, body := semMustRead(t, br, "GET"); resp.StatusCode != 200 || string(body) != "raw /raw/after" {
			t.Fatalf("after HEAD: %s %q", resp.Status, body)
		}
	})
	t.Run("204-304", func(t *testing.T) {
		conn, br := semDial(t, tg.front.Addr)
		for _, code := range []int{204, 304} {
			semWrite(t, conn, fmt.Sprintf("GET /raw/%d HTTP/1.1\r\nHost: gw\r\n\r\n", code))
			resp, body := semMustRead(t, br, "GET")
			if resp.StatusCode != code || len(body) != 0 || resp.Header.Get("X-Backend") != "raw" {
				t.Fatalf("got %s %q, want %d without a body", resp.Status, body, code)
			}
			if len(resp.TransferEncoding) != 0 {
				t.Errorf("%d with Transfer-Encoding %v", code, resp.TransferEncoding)
			}
		}
		semWrite(t, conn, "GET /raw/after HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp, body := semMustRead(t, br, "GET"); resp.StatusCode != 200 || string(body) != "raw /raw/after" {
			t.Fatalf("after 204 and 304: %s %q", resp.Status, body)
		}
	})
	t.Run("close-delimited", func(t *testing.T) {
		for _, path := range []string{"/raw/close10", "/raw/close11"} {
			resp, body := semRoundTrip(t, tg.front.Addr, "GET "+path+" HTTP/1.1\r\nHost: gw\r\n\r\n")
			if resp.StatusCode != 200 || hashOf(body) != hashOf(closeBody) {
				t.Fatalf("%s: got %s, body %s, want %s", path, resp.Status, hashOf(body), hashOf(closeBody))
			}
		}
	})
}

// 10. Hop-by-hop headers are not forwarded, either way; X-Forwarded-*
// are set.
func TestSemHopByHopRaw(t *testing.T) {
	b := newRecBackend(t, "b")
	raw := newRawBackend(t, func(conn net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			_, err = io.WriteString(conn, "HTTP/1.1 200 OK\r\nConnection: X-Hop-A\r\nConnection: x-hop-b\r\n"+
				"X-Hop-A: 1\r\nX-Hop-B: 1\r\nKeep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\n"+
				"Upgrade: foo\r\nTrailer: X-T\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok")
			if err != nil {
				return
			}
		}
	})
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/", "s"), rte("/resp/", "r")}}, Options{})
	tg.Update(regSnap(1, inst("s", b.addr(), 1), inst("r", raw.addr(), 2)), nil)

	t.Run("request", func(t *testing.T) {
		resp, body := semRoundTrip(t, tg.front.Addr, "GET /h HTTP/1.1\r\nHost: gw.example:8080\r\n"+
			"Connection: keep-alive, X-Secret\r\nConnection: x-other-secret\r\nX-Secret: 1\r\nX-Other-Secret: 2\r\n"+
			"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip;q=0.5, deflate\r\nTrailer: X-Trail\r\n"+
			"X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\nX-Forwarded-For: 10.0.0.3\r\n"+
			"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nX-Kept: yes\r\n\r\n")
		if resp.StatusCode != 200 || string(body) != "b /h" {
			t.Fatalf("got %s %q", resp.Status, body)
		}
		in := b.last(t)
		expectHopsRemoved(t, "the instance saw", in.header, "secret", "X-Secret", "X-Other-Secret", "Keep-Alive", "Proxy-Connection", "Te", "Trailer")
		for name, want := range map[string]string{
			"X-Forwarded-For":   "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1",
			"X-Forwarded-Host":  "gw.example:8080",
			"X-Forwarded-Proto": "http",
			"X-Kept":            "yes",
		} {
			if v := strings.Join(in.header.Values(name), ", "); v != want {
				t.Errorf("the instance saw %s %q, want %q", name, v, want)
			}
		}
		if in.host != "gw.example:8080" {
			t.Errorf("the instance saw Host %q", in.host)
		}
	})
	t.Run("response", func(t *testing.T) {
		resp, body := semRoundTrip(t, tg.front.Addr, "GET /resp/x HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp.StatusCode != 200 || string(body) != "ok" || resp.Header.Get("X-Kept") != "1" {
			t.Fatalf("got %s %v %q", resp.Status, resp.Header, body)
		}
		expectHopsRemoved(t, "the client got", resp.Header, "hop", "X-Hop-A", "X-Hop-B", "Keep-Alive", "Proxy-Connection", "Upgrade", "Trailer")
	})
}

// 11. Request lines and head size.
func TestSemRequestLine(t *testing.T) {
	orders := newRecBackend(t, "orders")
	root := newRecBackend(t, "root")
	const maxHead = 4096
	tg := newTestGateway(t, config.Gateway{MaxHeaderBytes: maxHead, Routes: []config.Route{rte("/orders/", "orders"), rte("/", "root")}}, Options{})
	tg.Update(regSnap(1, inst("orders", orders.addr(), 1), inst("root", root.addr(), 2)), nil)
	hits := func() int64 { return orders.hits.Load() + root.hits.Load() }

	t.Run("absolute-form", func(t *testing.T) {
		resp, body := semRoundTrip(t, tg.front.Addr, "GET http://example.com/orders/x?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
		if resp.StatusCode != 200 || string(body) != "orders /orders/x?q=1" {
			t.Fatalf("got %s %q, want the orders instance, in origin form", resp.Status, body)
		}
	})
	for _, line := range []string{
		"GET / HTTP/2.0", "GET / HTTP/3.0", "GET / HTTP/1", "GET / HTTX/1.1", "GET / HTTP/1.1.1",
		"GET /", "hello", "GET / HTTP/1.1 extra",
	} {
		t.Run("bad:"+line, func(t *testing.T) {
			semRejected(t, tg.front.Addr, line+"\r\nHost: gw\r\n\r\n", "GET", []int{400, 505}, hits)
		})
	}
	t.Run("head-under-limit", func(t *testing.T) {
		resp, body := semRoundTrip(t, tg.front.Addr, "GET /x HTTP/1.1\r\nHost: gw\r\nX-Big: "+strings.Repeat("a", maxHead*3/4)+"\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("got %s %q", resp.Status, body)
		}
	})
	for _, c := range []struct {
		name, raw string
		codes     []int
	}{
		{"one-huge-header", "GET /x HTTP/1.1\r\nHost: gw\r\nX-Big: " + strings.Repeat("a", 4*maxHead) + "\r\n\r\n", []int{431}},
		{"many-headers", "GET /x HTTP/1.1\r\nHost: gw\r\n" + strings.Repeat("X-Many: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 4*maxHead/56) + "\r\n", []int{431}},
		{"huge-target", "GET /" + strings.Repeat("a", 4*maxHead) + " HTTP/1.1\r\nHost: gw\r\n\r\n", []int{414, 431}},
	} {
		t.Run(c.name, func(t *testing.T) {
			semRejected(t, tg.front.Addr, c.raw, "GET", c.codes, hits)
		})
	}
}

// 12. An instance that closes an idle keep-alive connection (as servers do
// on deploys and idle timeouts) loses no request: the next one, GET or
// POST with a body, is not failed on the dead pooled connection.
func TestSemPooledConnClosedByInstance(t *testing.T) {
	closed := make(chan struct{}, 16)
	var served atomic.Int64
	raw := newRawBackend(t, func(conn net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		h := sha256.New()
		n, _ := io.Copy(h, req.Body)
		served.Add(1)
		body := req.Method + " " + hex.EncodeToString(h.Sum(nil)) + " " + strconv.FormatInt(n, 10)
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		time.Sleep(50 * time.Millisecond)
		conn.Close()
		closed <- struct{}{}
	})
	tg := semGateway(t, config.Gateway{}, raw.addr())
	c := client()
	payload := randomBytes(t, 64<<10)
	for i, method := range []string{"GET", "GET", "POST", "GET", "POST", "POST"} {
		var req *http.Request
		want := method + " " + hashOf(nil)
		if method == "POST" {
			req, _ = http.NewRequest("POST", tg.front.URL+"/p", bytes.NewReader(payload))
			want = "POST " + hashOf(payload)
		} else {
			req, _ = http.NewRequest("GET", tg.front.URL+"/g", nil)
		}
		if r := do(t, c, req); r.code != 200 || r.body != want {
			t.Fatalf("request %d (%s) after the instance closed its idle connection: %d %q", i, method, r.code, r.body)
		}
		select {
		case <-closed:
		case <-time.After(waitFor):
			t.Fatal("the instance did not close the connection")
		}
		time.Sleep(50 * time.Millisecond) // let the close reach the gateway
	}
	if n := served.Load(); n != 6 {
		t.Fatalf("the instance served %d requests, want 6", n)
	}
}

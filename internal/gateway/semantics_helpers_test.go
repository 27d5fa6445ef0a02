package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Helpers of semantics_test.go: raw HTTP/1.1 over TCP, so that nothing
// normalises what the gateway receives or sends.

// semDial opens a raw connection to addr (host:port). Every read and write
// on it gives up after waitFor; it is closed when the test ends.
func semDial(t testing.TB, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(waitFor))
	t.Cleanup(func() { conn.Close() })
	return conn, bufio.NewReader(conn)
}

func semWrite(t testing.TB, conn net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(conn, s); err != nil {
		t.Fatalf("writing to the gateway: %v", err)
	}
}

// semRead reads one response to a request of method, with its whole body.
func semRead(br *bufio.Reader, method string) (*http.Response, []byte, error) {
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b, err
}

// semMustRead is semRead that fails the test on any error.
func semMustRead(t testing.TB, br *bufio.Reader, method string) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := semRead(br, method)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return resp, b
}

// semRoundTrip sends raw on a new connection and reads one response.
func semRoundTrip(t testing.TB, addr, raw string) (*http.Response, []byte) {
	t.Helper()
	conn, br := semDial(t, addr)
	semWrite(t, conn, raw)
	method, _, _ := strings.Cut(raw, " ")
	return semMustRead(t, br, method)
}

// semClosed reads what is left on the connection and reports whether the
// peer closed it (EOF or a reset) before waitFor passed. Any bytes still
// sent are discarded and counted in n.
func semClosed(conn net.Conn, br *bufio.Reader) (closed bool, n int64) {
	conn.SetReadDeadline(time.Now().Add(waitFor))
	n, err := io.Copy(io.Discard, br)
	return !isTimeout(err), n
}

// semExpectClosed fails the test unless the gateway closes the connection
// (sending nothing more).
func semExpectClosed(t testing.TB, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	if closed, n := semClosed(conn, br); !closed {
		t.Errorf("the gateway kept the connection open (%d more bytes)", n)
	} else if n > 0 {
		t.Errorf("the gateway sent %d unexpected bytes before closing", n)
	}
}

// seenRequest is what a recording backend received.
type seenRequest struct {
	method, uri, host, proto string
	header                   http.Header
	bodyLen                  int64
}

// recBackend is a backend that records every request it gets and answers
// 200 "<name> <request-target as received>".
type recBackend struct {
	*backend
	seen chan seenRequest
}

func newRecBackend(t testing.TB, name string) *recBackend {
	rb := &recBackend{seen: make(chan seenRequest, 256)}
	rb.backend = newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		select {
		case rb.seen <- seenRequest{r.Method, r.RequestURI, r.Host, r.Proto, r.Header.Clone(), n}:
		default:
		}
		w.Header().Set("X-Backend", name)
		io.WriteString(w, name+" "+r.RequestURI)
	})
	return rb
}

// last returns the request the backend received last.
func (rb *recBackend) last(t testing.TB) seenRequest {
	t.Helper()
	select {
	case s := <-rb.seen:
		for {
			select {
			case s = <-rb.seen:
			default:
				return s
			}
		}
	case <-time.After(waitFor):
		t.Fatal("the backend received no request")
		return seenRequest{}
	}
}

// rawBackend is an upstream instance speaking raw TCP: serve runs for each
// accepted connection (and the connection is closed when it returns).
type rawBackend struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func newRawBackend(t testing.TB, serve func(conn net.Conn, br *bufio.Reader)) *rawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &rawBackend{ln: ln, conns: map[net.Conn]struct{}{}}
	rb.wg.Add(1)
	go func() {
		defer rb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rb.accepted.Add(1)
			rb.mu.Lock()
			rb.conns[c] = struct{}{}
			rb.mu.Unlock()
			rb.wg.Add(1)
			go func() {
				defer rb.wg.Done()
				defer func() {
					rb.mu.Lock()
					delete(rb.conns, c)
					rb.mu.Unlock()
					c.Close()
				}()
				c.SetDeadline(time.Now().Add(2 * waitFor))
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		rb.mu.Lock()
		for c := range rb.conns {
			c.Close()
		}
		rb.mu.Unlock()
		rb.wg.Wait()
	})
	return rb
}

func (rb *rawBackend) addr() string { return rb.ln.Addr().String() }

// patternReader produces n bytes of a repeated pattern without allocating.
// The pattern's length is prime, so a dropped, repeated or reordered block
// of any power-of-two size changes the hash.
type patternReader struct {
	pat  []byte
	off  int
	left int64
}

func newPatternReader(pat []byte, n int64) *patternReader {
	return &patternReader{pat: pat, left: n}
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.pat[r.off:])
		n += c
		r.off = (r.off + c) % len(r.pat)
	}
	r.left -= int64(n)
	return n, nil
}

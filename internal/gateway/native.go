package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/h1"
)

// The native engine: zkgate's own HTTP/1.1 server loop and upstream
// exchange (package h1 for the wire format). One goroutine per client
// connection reads a request, picks an instance, writes the request to a
// pooled upstream connection and copies the response back, without the
// per-request goroutines, contexts, header maps and body wrappers of
// net/http and httputil.ReverseProxy. See docs/benchmarks.md for what it
// costs per request against nginx.

const (
	clientReadBufSize  = 8 << 10 // also the longest request head line
	clientWriteBufSize = 8 << 10
	// smallBody: request bodies of known length up to this size are sent
	// before the response is read; longer and chunked bodies are sent by
	// a goroutine of their own while the response is read, so an instance
	// that answers early (413, 401) and stops reading cannot stall the
	// exchange.
	smallBody = 16 << 10
	// maxDiscard: a request answered without reading its body (404, 503)
	// keeps its connection when the body is at most this long; it is read
	// and dropped. Longer ones close the connection.
	maxDiscard = 256 << 10
	// senderGrace: how long a response waits for its request body to be
	// sent completely before it is answered with Connection: close.
	senderGrace = 50 * time.Millisecond
	// maxTrailerBytes bounds the trailers of a chunked body.
	maxTrailerBytes = 16 << 10
)

// Client connection states, for Shutdown.
const (
	connIdle   int32 = iota // waiting for a request
	connActive              // reading or serving a request
	connClosed              // Shutdown closed it while idle
)

// clientConn is one client connection of the native engine.
type clientConn struct {
	g  *Gateway
	nc net.Conn
	rd clientReader
	wr clientWriter
	br *bufio.Reader
	bw *bufio.Writer

	remoteIP []byte // X-Forwarded-For's value for this client
	state    atomic.Int32

	// Client-gone detection while a response is awaited (watch.go).
	watch clientWatch

	req  h1.Request
	resp h1.Response
	out  []byte   // the forwarded request head (without request line)
	line []byte   // the forwarded request line
	rh   []byte   // scratch: response heads, chunk sizes, trailers
	path []byte   // scratch: CleanPath
	xff  []byte   // scratch: X-Forwarded-For
	num  [24]byte // scratch for numbers on the serving goroutine
	snum [24]byte // scratch for numbers of the body sender
	ex   exchange // the current request's exchange

	// Set while an event loop serves the connection (loop.go); nil once
	// a goroutine does. Changed under Gateway.srv.mu.
	loop   *evloop
	lc     loopClient  // the loop's state of the connection
	killed atomic.Bool // Shutdown ran out of time: the loop closes it

	// cur is the instance of the exchange in progress (nil between
	// requests), for cutting exchanges to drained instances (cut.go).
	cur atomic.Pointer[host]
}

// clientReader reads the client connection. In the body phase (timeout >
// 0) it keeps a read deadline of timeout ahead, refreshed when a quarter
// of it passed, so each read of a body may take up to timeout; otherwise
// the deadlines are set by the serve loop.
type clientReader struct {
	nc      net.Conn
	timeout int64 // ns
	last    int64
	raw     rawFD // on an event loop: the descriptor, read without waiting
}

func (r *clientReader) Read(p []byte) (int, error) {
	if r.raw.on {
		return r.raw.read(p)
	}
	if r.timeout > 0 {
		now := time.Now()
		if ns := now.UnixNano(); ns-r.last > r.timeout/4 {
			r.nc.SetReadDeadline(now.Add(time.Duration(r.timeout)))
			r.last = ns
		}
	}
	return r.nc.Read(p)
}

// clientWriter writes the client connection with a write deadline of
// timeout ahead, refreshed like clientReader's: a client that reads
// nothing for that long is cut.
type clientWriter struct {
	nc       net.Conn
	timeout  int64
	last     int64
	timedOut bool  // a write timed out: the connection is reset, not closed
	raw      rawFD // on an event loop: the descriptor, written without waiting
	// pend holds what a write on an event loop could not send yet; the
	// loop sends it when the socket is writable, before anything else.
	pend []byte
}

func (w *clientWriter) Write(p []byte) (int, error) {
	if w.raw.on {
		return w.writeRaw(p)
	}
	if w.timeout > 0 {
		now := time.Now()
		if ns := now.UnixNano(); ns-w.last > w.timeout/4 {
			w.nc.SetWriteDeadline(now.Add(time.Duration(w.timeout)))
			w.last = ns
		}
	}
	n, err := w.nc.Write(p)
	if err != nil && isTimeout(err) {
		w.timedOut = true
	}
	return n, err
}

// nativeConns tracks the native engine's listeners and connections.
type nativeConns struct {
	lns   map[net.Listener]struct{}
	conns map[*clientConn]struct{}
	// loops are the event loops (gateway.engine: epoll), started by the
	// first Serve and stopped by Shutdown and Close.
	loops    atomic.Pointer[[]*evloop]
	nextLoop atomic.Uint32
}

// nextLoop returns the event loop to give the next connection to, or nil
// when connections are served by goroutines only.
func (g *Gateway) nextLoop() *evloop {
	lp := g.srv.native.loops.Load()
	if lp == nil || len(*lp) == 0 {
		return nil
	}
	loops := *lp
	return loops[int(g.srv.native.nextLoop.Add(1))%len(loops)]
}

// startLoopsLocked starts the event loops once, when the engine uses
// them. g.srv.mu is held.
func (g *Gateway) startLoopsLocked() {
	if g.cfg.Engine == config.EngineGoroutine || g.srv.native.loops.Load() != nil {
		return
	}
	loops, err := startLoops(g, runtime.GOMAXPROCS(0))
	if err != nil {
		g.log.Warn("event loops unavailable; serving every connection with a goroutine", "err", err)
	}
	g.srv.native.loops.Store(&loops)
}

// stopLoops stops the event loops: they close every connection they still
// own.
func (g *Gateway) stopLoops() {
	lp := g.srv.native.loops.Swap(&[]*evloop{})
	if lp == nil {
		return
	}
	for _, l := range *lp {
		l.shutdown()
	}
	for _, l := range *lp {
		<-l.done
	}
}

func (g *Gateway) serveNative(ln net.Listener) error {
	g.srv.mu.Lock()
	if g.srv.closed.Load() {
		g.srv.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	if g.srv.native.lns == nil {
		g.srv.native.lns = map[net.Listener]struct{}{}
		g.srv.native.conns = map[*clientConn]struct{}{}
	}
	g.srv.native.lns[ln] = struct{}{}
	g.startLoopsLocked()
	g.srv.mu.Unlock()
	defer func() {
		g.srv.mu.Lock()
		delete(g.srv.native.lns, ln)
		g.srv.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if g.srv.closed.Load() {
				return ErrClosed
			}
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				// Out of file descriptors and the like: wait, as
				// net/http's server does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				g.log.Warn("accepting a connection failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := g.newClientConn(nc)
		g.srv.mu.Lock()
		if g.srv.closed.Load() {
			g.srv.mu.Unlock()
			nc.Close()
			return ErrClosed
		}
		g.srv.native.conns[c] = struct{}{}
		g.srv.mu.Unlock()
		if l := g.nextLoop(); l == nil || !l.adopt(c) {
			go c.serve()
		}
	}
}

func (g *Gateway) newClientConn(nc net.Conn) *clientConn {
	c := &clientConn{g: g, nc: nc}
	c.rd.nc = nc
	c.wr.nc, c.wr.timeout = nc, int64(g.cfg.ClientSendTimeout)
	c.br = bufio.NewReaderSize(&c.rd, clientReadBufSize)
	c.bw = bufio.NewWriterSize(&c.wr, clientWriteBufSize)
	c.watch.init(nc)
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.remoteIP = []byte(a.IP.String())
	} else if host, _, err := net.SplitHostPort(nc.RemoteAddr().String()); err == nil {
		c.remoteIP = []byte(host)
	}
	return c
}

// stopNative closes the native listeners, closes idle connections and
// waits for the busy ones to finish their request (they close after it),
// until ctx ends: then it closes them all.
func (g *Gateway) stopNative(done <-chan struct{}) error {
	g.srv.mu.Lock()
	g.srv.closed.Store(true)
	for ln := range g.srv.native.lns {
		ln.Close()
	}
	g.srv.mu.Unlock()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		g.srv.mu.Lock()
		n := len(g.srv.native.conns)
		for c := range g.srv.native.conns {
			// A loop's connection is closed by its loop, which sees the
			// state in its next scan.
			if c.state.CompareAndSwap(connIdle, connClosed) && c.loop == nil {
				c.nc.Close()
			}
		}
		g.srv.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-done:
			g.srv.mu.Lock()
			for c := range g.srv.native.conns {
				if c.loop != nil {
					c.killed.Store(true)
				} else {
					c.nc.Close()
				}
			}
			g.srv.mu.Unlock()
			return errShutdownTimeout
		case <-tick.C:
		}
	}
}

var errShutdownTimeout = errors.New("gateway: connections still busy when shutdown ran out of time")

func (c *clientConn) untrack() {
	c.g.srv.mu.Lock()
	delete(c.g.srv.native.conns, c)
	c.g.srv.mu.Unlock()
}

func (c *clientConn) serve() {
	defer c.finish()
	c.serveRequests()
}

// finish closes the connection when its goroutine ends.
func (c *clientConn) finish() {
	if tc, ok := c.nc.(*net.TCPConn); ok && c.wr.timedOut {
		// A client that stopped reading: drop what the kernel still
		// holds for it at once (nginx's reset_timedout_connection)
		// instead of trying to deliver it.
		tc.SetLinger(0)
	}
	c.nc.Close()
	c.untrack()
}

// serveHandedOff serves a connection an event loop handed over: what the
// loop could not send yet goes first, then cont (when not nil) carries on
// with the request in progress, then the connection serves requests like
// any other.
func (c *clientConn) serveHandedOff(cont func(*clientConn) bool) {
	defer c.finish()
	if p := c.wr.pend; len(p) > 0 {
		c.wr.pend = nil
		if _, err := c.wr.Write(p); err != nil {
			return
		}
	}
	if cont != nil {
		if !cont(c) {
			c.bw.Flush()
			return
		}
		if c.br.Buffered() == 0 && c.bw.Flush() != nil {
			return
		}
	}
	c.serveRequests()
}

// serveRequests serves requests until the connection must close.
func (c *clientConn) serveRequests() {
	cfg := &c.g.cfg
	for {
		c.state.Store(connIdle)
		if c.g.srv.closed.Load() {
			return
		}
		if c.br.Buffered() == 0 {
			c.nc.SetReadDeadline(time.Now().Add(cfg.ClientIdleTimeout))
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		if !c.state.CompareAndSwap(connIdle, connActive) {
			return
		}
		if !headBuffered(c.br) {
			c.nc.SetReadDeadline(time.Now().Add(cfg.ClientHeaderTimeout))
		}
		if err := c.req.Read(c.br, cfg.MaxHeaderBytes); err != nil {
			c.headFailed(err)
			c.bw.Flush()
			return
		}
		if keep, _ := c.handle(); !keep {
			c.bw.Flush()
			return
		}
		if c.br.Buffered() == 0 {
			if c.bw.Flush() != nil {
				return
			}
		}
	}
}

// headFailed answers a request head that could not be read, when there is
// something to answer.
func (c *clientConn) headFailed(err error) {
	var he *h1.Error
	switch {
	case errors.As(err, &he):
		c.g.metrics.unrouted.count(he.Status)
		c.writeError(he.Status, he.Msg, false)
	case isTimeout(err) && c.br.Buffered() > 0:
		c.g.metrics.unrouted.count(408)
		c.writeError(408, "request head not received in time", false)
	}
}

// headBuffered reports whether br holds a whole request head.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, crlfcrlf) || bytes.Contains(b, lflf)
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	lflf     = []byte("\n\n")
)

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeError answers with a JSON error body {"error": msg} (and the
// service, for the prepared bodies of routes).
func (c *clientConn) writeError(code int, msg string, keep bool) {
	b := c.rh[:0]
	b = append(b, `{"error":`...)
	b = strconv.AppendQuote(b, msg)
	b = append(b, '}')
	c.rh = b
	c.writeJSON(code, b, keep)
}

func (c *clientConn) writeJSON(code int, body []byte, keep bool) {
	w := c.bw
	w.WriteString("HTTP/1.1 ")
	w.Write(strconv.AppendInt(c.num[:0], int64(code), 10))
	w.WriteByte(' ')
	w.WriteString(h1.StatusText(code))
	w.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
	w.Write(strconv.AppendInt(c.num[:0], int64(len(body)), 10))
	if !keep {
		w.WriteString("\r\nConnection: close")
	} else if c.req.Minor == 0 {
		w.WriteString("\r\nConnection: keep-alive")
	}
	w.WriteString("\r\n\r\n")
	w.Write(body)
}

// handle serves the request whose head c.req holds. It reports whether
// the connection may carry another request, or, on an event loop, that
// the exchange goes on asynchronously (then c belongs to the loop's
// continuation or to a goroutine, and the caller must not touch it).
func (c *clientConn) handle() (keep, async bool) {
	g, r := c.g, &c.req
	keep = r.KeepAlive && !g.closing.Load()
	path, err := h1.CleanPath(c.path, r.Path)
	if err != nil {
		g.metrics.unrouted.count(400)
		c.writeError(400, err.Error(), false)
		return false, false
	}
	if len(path) > 0 && (len(r.Path) == 0 || &path[0] != &r.Path[0]) {
		c.path = path[:0] // keep the grown scratch buffer
	}
	rt := g.routes.matchBytes(path, r.Host)
	if rt == nil {
		g.metrics.noRoute.Inc()
		keep = keep && c.discardBody()
		c.writeJSON(404, g.bodyNoRoute, keep)
		return keep, false
	}
	var start time.Time
	if c.loop != nil {
		start = c.loop.now
		if keep, async = c.loop.proxy(c, rt, path, start, keep); async {
			return keep, true
		}
	} else {
		start = time.Now()
		keep = c.proxy(rt, path, start, keep)
		c.cur.Store(nil)
	}
	if c.loop != nil {
		rt.metrics.observe(c.loop.now.Sub(start).Seconds())
	} else {
		rt.metrics.observe(time.Since(start).Seconds())
	}
	return keep, false
}

// discardBody reads and drops a request body that will not be forwarded,
// so the connection can carry the next request. It reports false when the
// connection must close instead (a long or chunked body, a client waiting
// for 100 Continue, a read error).
func (c *clientConn) discardBody() bool {
	r := &c.req
	if !r.HasBody() {
		return true
	}
	if r.Chunked || r.Expect100 || r.ContentLength > maxDiscard {
		return false
	}
	c.bodyPhase(true)
	_, err := c.br.Discard(int(r.ContentLength))
	c.bodyPhase(false)
	return err == nil
}

func (c *clientConn) bodyPhase(on bool) {
	if on {
		c.rd.timeout, c.rd.last = int64(c.g.cfg.ClientBodyTimeout), 0
	} else {
		c.rd.timeout = 0
	}
}

// buildHead writes the forwarded request's line and fields into c.line
// and c.out: hop-by-hop fields dropped (and Upgrade, but for WebSocket),
// X-Forwarded-For/-Host/-Proto set, the body framed as it came.
func (c *clientConn) buildHead(rt *route, path []byte, websocket bool) {
	r := &c.req
	l := c.line[:0]
	l = append(l, r.Method...)
	l = append(l, ' ')
	if rt.strip {
		n := len(rt.prefix)
		if rt.prefix[n-1] == '/' {
			n--
		}
		rest := path[min(n, len(path)):]
		if len(rest) == 0 || rest[0] != '/' {
			l = append(l, '/')
		}
		l = append(l, rest...)
	} else {
		l = append(l, path...)
	}
	l = append(l, r.Query...)
	l = append(l, " HTTP/1.1\r\n"...)
	c.line = l

	b := c.out[:0]
	if len(r.Host) > 0 {
		b = h1.AppendField(b, hdrHost, r.Host)
	}
	xff := c.xff[:0]
	for i := range r.Fields {
		f := &r.Fields[i]
		n := f.Name
		if r.IsHopByHop(n) {
			continue
		}
		switch len(n) {
		case 4:
			if h1.EqualFold(n, "host") {
				continue
			}
		case 6:
			if h1.EqualFold(n, "expect") && r.Expect100 {
				continue
			}
		case 14:
			if h1.EqualFold(n, "content-length") || h1.EqualFold(n, "http2-settings") {
				continue
			}
		case 15:
			if h1.EqualFold(n, "x-forwarded-for") {
				if len(xff) > 0 {
					xff = append(xff, ", "...)
				}
				xff = append(xff, f.Value...)
				continue
			}
		case 16:
			if h1.EqualFold(n, "x-forwarded-host") {
				continue
			}
		case 17:
			if h1.EqualFold(n, "x-forwarded-proto") {
				continue
			}
		}
		b = h1.AppendField(b, n, f.Value)
	}
	if len(c.remoteIP) > 0 {
		if len(xff) > 0 {
			xff = append(xff, ", "...)
		}
		xff = append(xff, c.remoteIP...)
	}
	c.xff = xff
	if len(xff) > 0 {
		b = h1.AppendField(b, hdrXFF, xff)
	}
	if len(r.Host) > 0 {
		b = h1.AppendField(b, hdrXFHost, r.Host)
	}
	b = append(b, "X-Forwarded-Proto: http\r\n"...)
	switch {
	case r.Chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case r.ContentLength >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, r.ContentLength, 10)
		b = append(b, "\r\n"...)
	}
	if websocket {
		b = append(b, "Connection: Upgrade\r\nUpgrade: "...)
		b = append(b, r.Upgrade...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	c.out = b
}

var (
	hdrHost   = []byte("Host")
	hdrXFF    = []byte("X-Forwarded-For")
	hdrXFHost = []byte("X-Forwarded-Host")
)

// exchange outcomes that send the request elsewhere.
type attemptResult int

const (
	attemptDone      attemptResult = iota // answered (or the client is gone)
	attemptDialAgain                      // stale pooled connection: dial the same host
)

// proxy forwards the request to an instance of rt's service and copies
// the answer back. It reports whether the client connection may carry
// another request.
func (c *clientConn) proxy(rt *route, path []byte, start time.Time, keep bool) bool {
	g, r, s := c.g, &c.req, rt.svc
	t := g.table.Load()
	if t == nil || len(t.pools[s.idx].active) == 0 {
		return c.unavailable(rt, keep)
	}
	websocket := len(r.Upgrade) > 0 && h1.EqualFold(r.Upgrade, "websocket")
	c.buildHead(rt, path, websocket)
	var deadline time.Time
	if rt.timeout > 0 {
		deadline = start.Add(rt.timeout)
	}
	ex := &c.ex
	*ex = exchange{c: c, rt: rt, keep: keep, websocket: websocket, deadline: deadline, start: start}
	ps := pickState{nowFn: g.now, warmup: g.warmup}
	var lastErr error
	retries, skips := 0, 0
	for {
		h := g.acquireHost(s, &ps, &skips)
		if h == nil {
			if lastErr != nil {
				return ex.fail(kindConnect, lastErr)
			}
			return c.unavailable(rt, keep)
		}
		ex.h, ex.episode = h, h.episode.Load()
		c.cur.Store(h)
		uc, reused := h.conns.get(time.Now().UnixNano()), true
		for {
			if uc == nil {
				var err error
				uc, err = g.dialer.dial(h.addr, deadline)
				reused = false
				if err != nil {
					h.release()
					h.failed.Add(1)
					if !deadline.IsZero() && !time.Now().Before(deadline) {
						s.metrics.errors[kindTimeout].Inc()
						return ex.fail(kindTimeout, err)
					}
					s.metrics.errors[kindConnect].Inc()
					if d := h.connFailed(ex.episode, g.now().UnixNano()); d > 0 {
						s.metrics.ejections.Inc()
						g.log.Warn("instance ejected after consecutive connection failures",
							"service", s.name, "addr", h.addr, "for", d, "err", err)
					}
					if retries >= g.retries {
						return ex.fail(kindConnect, err)
					}
					retries++
					s.metrics.retries.Inc()
					ps.addTried(h)
					ps.now = 0
					lastErr = err
					break
				}
			}
			ex.uc, ex.reused = uc, reused
			res, keepConn := ex.run()
			if res == attemptDone {
				return keepConn
			}
			uc = nil // attemptDialAgain
		}
	}
}

// unavailable answers 503: no instance of rt's service can take the
// request.
func (c *clientConn) unavailable(rt *route, keep bool) bool {
	rt.metrics.count(503)
	keep = keep && c.discardBody()
	c.writeJSON(503, rt.svc.body503, keep)
	return keep
}

// acquireHost picks an instance of s and counts the request in flight to
// it (host.acquire); nil when no instance is available. skips counts the
// picks that left rotation meanwhile, across calls for one request.
func (g *Gateway) acquireHost(s *service, ps *pickState, skips *int) *host {
	for {
		p := g.table.Load().pools[s.idx]
		h := p.pick(ps)
		if h == nil {
			return nil
		}
		if !h.acquire() {
			// Left rotation since this table was built: pick again.
			ps.addTried(h)
			if *skips++; *skips > maxTried {
				return nil
			}
			continue
		}
		if p.failOpen {
			s.metrics.failOpen.Inc()
		}
		return h
	}
}

// exchange is one request's exchange with the instance it was sent to.
type exchange struct {
	c         *clientConn
	rt        *route
	h         *host
	episode   uint32 // h.episode when the request took h (see connFailed)
	uc        *upConn
	reused    bool
	keep      bool // the client connection may be kept
	websocket bool
	deadline  time.Time
	start     time.Time // when the request was routed
	sent100   bool
	// Request body state.
	bodyStarted bool  // reading the body began (or 100 Continue was sent)
	bodyDone    bool  // the whole body was read from the client
	clientErr   error // reading the body from the client failed
	upstreamErr error // writing the request to the instance failed
}

// fail answers an error that happened before anything of the response
// was sent. kind is the upstream error kind, err the cause.
func (ex *exchange) fail(kind int, err error) bool {
	c, s, rt := ex.c, ex.rt.svc, ex.rt
	keep := ex.keep && (ex.bodyDone || (!ex.bodyStarted && c.discardBody()))
	if ex.clientErr != nil {
		code, msg := 400, "malformed request body"
		if isTimeout(ex.clientErr) {
			code, msg = 408, "request body not received in time"
		} else if errors.Is(ex.clientErr, io.ErrUnexpectedEOF) || errors.Is(ex.clientErr, io.EOF) {
			rt.metrics.count(499) // the client went away mid-body
			return false
		} else if he, ok := ex.clientErr.(*h1.Error); ok {
			msg = he.Msg
		}
		rt.metrics.count(code)
		c.writeError(code, msg, false)
		return false
	}
	code, body := 502, s.body502
	if kind == kindTimeout && !ex.deadline.IsZero() {
		code, body = 504, s.body504
	} else {
		c.g.log.Warn("proxying failed", "route", rt.name, "service", s.name, "err", err)
	}
	rt.metrics.count(code)
	c.writeJSON(code, body, keep)
	return keep
}

// run sends the request on ex.uc and copies the response to the client.
func (ex *exchange) run() (attemptResult, bool) {
	c, r, uc, h := ex.c, &ex.c.req, ex.uc, ex.h
	if !ex.deadline.IsZero() {
		uc.nc.SetDeadline(ex.deadline)
	}
	uc.bw.Write(c.line)
	if len(r.Host) == 0 {
		uc.bw.Write(hdrHost)
		uc.bw.WriteString(": ")
		uc.bw.WriteString(h.addr)
		uc.bw.WriteString("\r\n")
	}
	uc.bw.Write(c.out)
	var sender *bodySender
	switch {
	case !r.HasBody():
		ex.bodyDone = true
		ex.upstreamErr = uc.bw.Flush()
	case !r.Chunked && r.ContentLength <= smallBody:
		ex.continue100()
		ex.sendBody()
		if ex.upstreamErr == nil && ex.clientErr == nil {
			ex.upstreamErr = uc.bw.Flush()
		}
	default:
		ex.continue100()
		if ex.upstreamErr = uc.bw.Flush(); ex.upstreamErr == nil {
			snd := &bodySender{done: make(chan struct{})}
			sender = snd
			go func() {
				ex.sendBody()
				if ex.upstreamErr == nil && ex.clientErr == nil {
					ex.upstreamErr = uc.bw.Flush()
				}
				if ex.upstreamErr != nil || ex.clientErr != nil {
					// The instance waits for the rest of a body that will
					// not come: cut the exchange.
					uc.close()
				}
				close(snd.done)
			}()
		}
	}
	if sender == nil && ex.clientErr != nil {
		uc.close()
		h.release()
		return attemptDone, ex.fail(kindOther, ex.clientErr)
	}
	watching := sender == nil && c.br.Buffered() == 0
	if watching {
		c.watch.arm(uc.nc)
	}
	err := ex.readHead()
	if watching && c.watch.disarm() {
		// The client went away while the instance was working: the
		// exchange was cut; nobody reads an answer.
		uc.close()
		h.release()
		ex.rt.metrics.count(499)
		return attemptDone, false
	}
	return ex.afterHead(err, sender)
}

// readHead reads the response head into c.resp; 1xx interim responses
// (but 101) are dropped.
func (ex *exchange) readHead() error {
	for {
		err := ex.c.resp.Read(ex.uc.br, upstreamBufSize)
		if err != nil || ex.c.resp.Status >= 200 || ex.c.resp.Status == 101 {
			return err
		}
	}
}

// afterHead ends the exchange once the response head was read into c.resp
// (err nil) or reading it failed: the response is copied to the client,
// or the failure answered (or the request sent again: attemptDialAgain).
// sender is the goroutine still sending the request body, if any.
func (ex *exchange) afterHead(err error, sender *bodySender) (attemptResult, bool) {
	c, r, uc, h, s := ex.c, &ex.c.req, ex.uc, ex.h, ex.rt.svc
	g := c.g
	resp := &c.resp
	if sender != nil && err != nil {
		uc.close() // unblocks the sender
		<-sender.done
		sender = nil
	}
	if err != nil {
		uc.close()
		if ex.clientErr != nil {
			h.release()
			return attemptDone, ex.fail(kindOther, ex.clientErr)
		}
		if ex.reused && len(r.Upgrade) == 0 && !r.HasBody() && idempotent(r.Method) && staleConnErr(err) {
			// The instance closed the pooled connection before it read
			// the request (its keep-alive timeout raced the reuse): send
			// it again on a new connection, as http.Transport does.
			return attemptDialAgain, false
		}
		kind := classify(err)
		if errors.As(err, new(*h1.Error)) {
			kind = kindOther
		} else if ex.upstreamErr != nil && kind == kindOther {
			kind = classify(ex.upstreamErr)
		}
		s.metrics.errors[kind].Inc()
		h.failed.Add(1)
		if kind == kindConnect || kind == kindReset {
			if d := h.connFailed(ex.episode, g.now().UnixNano()); d > 0 {
				s.metrics.ejections.Inc()
				g.log.Warn("instance ejected after consecutive connection failures",
					"service", s.name, "addr", h.addr, "for", d, "err", err)
			}
		}
		h.release()
		return attemptDone, ex.fail(kind, err)
	}
	h.succeeded(g.now)
	ex.rt.metrics.count(resp.Status)
	h.responded(resp.Status)
	if resp.Status == 101 && sender != nil {
		// An upgrade with a streamed body: not something to tunnel.
		uc.close()
		<-sender.done
		h.release()
		s.metrics.errors[kindOther].Inc()
		return attemptDone, ex.fail(kindOther, errUpgradeMismatch)
	}
	if resp.Status == 101 {
		if !ex.websocket || !bytes.EqualFold(resp.Upgrade, r.Upgrade) {
			uc.close()
			h.release()
			s.metrics.errors[kindOther].Inc()
			return attemptDone, ex.fail(kindOther, errUpgradeMismatch)
		}
		ex.tunnel()
		return attemptDone, false
	}
	keep := ex.respond(sender)
	return attemptDone, keep
}

type bodySender struct{ done chan struct{} }

// continue100 tells a client that waits for it to send its body.
func (ex *exchange) continue100() {
	c := ex.c
	if !c.req.Expect100 || ex.sent100 || c.br.Buffered() > 0 {
		return
	}
	ex.sent100, ex.bodyStarted = true, true
	c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	c.bw.Flush()
}

// sendBody copies the request body from the client to the instance,
// re-framing chunked bodies (trailers are dropped). It records which side
// failed.
func (ex *exchange) sendBody() {
	c, r, uw := ex.c, &ex.c.req, ex.uc.bw
	ex.bodyStarted = true
	c.bodyPhase(true)
	defer c.bodyPhase(false)
	if !r.Chunked {
		_, rerr, werr := h1.CopyN(uw, c.br, r.ContentLength, false)
		ex.clientErr, ex.upstreamErr = rerr, werr
		ex.bodyDone = rerr == nil && werr == nil
		return
	}
	for {
		n, err := h1.ReadChunkHeader(c.br)
		if err != nil {
			ex.clientErr = err
			return
		}
		if n == 0 {
			if _, err := h1.ReadTrailers(c.br, nil, maxTrailerBytes); err != nil {
				ex.clientErr = err
				return
			}
			if _, err := uw.WriteString("0\r\n\r\n"); err != nil {
				ex.upstreamErr = err
				return
			}
			ex.bodyDone = true
			return
		}
		if _, err := uw.Write(h1.AppendChunkHeader(c.snum[:0], int(n))); err != nil {
			ex.upstreamErr = err
			return
		}
		_, rerr, werr := h1.CopyN(uw, c.br, n, false)
		if rerr == nil && werr == nil {
			rerr = h1.ReadCRLF(c.br)
		}
		if rerr == nil && werr == nil {
			_, werr = uw.WriteString("\r\n")
		}
		if rerr != nil || werr != nil {
			ex.clientErr, ex.upstreamErr = rerr, werr
			return
		}
		if c.br.Buffered() == 0 {
			// Stream: the instance sees each chunk as it comes.
			if err := uw.Flush(); err != nil {
				ex.upstreamErr = err
				return
			}
		}
	}
}

// respond writes the response head c.resp and copies its body. The
// request stays in flight for its instance until the body was copied.
func (ex *exchange) respond(sender *bodySender) bool {
	c, r, resp, uc, h := ex.c, &ex.c.req, &ex.c.resp, ex.uc, ex.h
	isHead := len(r.Method) == 4 && string(r.Method) == "HEAD"
	mode := resp.BodyMode(isHead)
	keep := ex.keep && !c.g.closing.Load() // shutting down: say so now
	reuse := resp.KeepAlive && mode != h1.BodyToEOF
	chunkOut := false
	switch mode {
	case h1.BodyChunked, h1.BodyToEOF:
		if r.Minor == 0 {
			keep = false // close-delimited for an HTTP/1.0 client
		} else {
			chunkOut = true
		}
	}
	if sender == nil && !ex.bodyDone {
		reuse, keep = false, false
	}
	// With a body still being sent (the instance answered before it read
	// all of it), sending goes on while the response streams (an echo);
	// whatever is left when the response ended closes both connections.

	b := h1.AppendStatusLine(c.rh[:0], resp.Status, resp.Reason)
	for i := range resp.Fields {
		f := &resp.Fields[i]
		if resp.IsHopByHop(f.Name) || (len(f.Name) == 14 && h1.EqualFold(f.Name, "content-length")) {
			continue
		}
		b = h1.AppendField(b, f.Name, f.Value)
	}
	switch {
	case mode == h1.BodyLength || (mode == h1.BodyNone && resp.ContentLength >= 0 && resp.Status != 204 && resp.Status >= 200):
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, resp.ContentLength, 10)
		b = append(b, "\r\n"...)
	case chunkOut:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	// Whether the client connection is kept is known only after the body
	// for a streamed request body; say close when in doubt.
	if sender != nil {
		// An instance that answered has usually read the whole body: give
		// the sender a moment to finish so the connection can be kept.
		wait := time.NewTimer(senderGrace)
		select {
		case <-sender.done:
			if !ex.bodyDone {
				keep = false
			}
		case <-wait.C:
			keep = false
		}
		wait.Stop()
	}
	if !keep {
		b = append(b, "Connection: close\r\n"...)
	} else if r.Minor == 0 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	b = append(b, "\r\n"...)
	c.rh = b
	_, werr := c.bw.Write(b)

	var rerr error
	if werr == nil {
		switch mode {
		case h1.BodyLength:
			_, rerr, werr = h1.CopyN(c.bw, uc.br, resp.ContentLength, false)
		case h1.BodyChunked:
			rerr, werr = ex.copyChunked(chunkOut)
		case h1.BodyToEOF:
			_, rerr, werr = h1.CopyToEOF(c.bw, uc.br, true, chunkOut, c.num[:])
			if rerr == nil && werr == nil && chunkOut {
				_, werr = c.bw.WriteString("0\r\n\r\n")
			}
		}
	}
	if sender != nil {
		select {
		case <-sender.done:
		default:
			reuse = false
			uc.close()
			<-sender.done
		}
		if !ex.bodyDone {
			reuse, keep = false, false
		}
	}
	if rerr != nil {
		s := ex.rt.svc
		kind := classify(rerr)
		if errors.As(rerr, new(*h1.Error)) {
			kind = kindOther
		}
		s.metrics.errors[kind].Inc()
		c.g.log.Warn("instance broke the response", "route", ex.rt.name, "service", s.name, "addr", h.addr, "err", rerr)
	}
	if rerr != nil || werr != nil {
		reuse, keep = false, false
	}
	h.release()
	if reuse && h.flags.Load()&flagExcluded == 0 {
		uc.recycle(h, !ex.deadline.IsZero(), c.g.cfg.MaxIdleConnsPerHost)
	} else {
		uc.close()
	}
	return keep
}

// copyChunked copies a chunked response body, as chunks to the client
// (trailers included) or, for an HTTP/1.0 client, as plain bytes. The
// client sees every chunk as soon as the instance has nothing more
// buffered (streaming, server-sent events).
func (ex *exchange) copyChunked(chunkOut bool) (rerr, werr error) {
	c, ub := ex.c, ex.uc.br
	for {
		n, err := h1.ReadChunkHeader(ub)
		if err != nil {
			return err, nil
		}
		if n == 0 {
			tr, err := h1.ReadTrailers(ub, c.rh[:0], maxTrailerBytes)
			if err != nil {
				return err, nil
			}
			c.rh = tr
			if chunkOut {
				c.bw.WriteString("0\r\n")
				c.bw.Write(tr)
				_, werr = c.bw.WriteString("\r\n")
			}
			return nil, werr
		}
		if chunkOut {
			if _, err := c.bw.Write(h1.AppendChunkHeader(c.num[:0], int(n))); err != nil {
				return nil, err
			}
		}
		if _, rerr, werr = h1.CopyN(c.bw, ub, n, false); rerr != nil || werr != nil {
			return rerr, werr
		}
		if err := h1.ReadCRLF(ub); err != nil {
			return err, nil
		}
		if chunkOut {
			if _, err := c.bw.WriteString("\r\n"); err != nil {
				return nil, err
			}
		}
		if ub.Buffered() == 0 {
			if err := c.bw.Flush(); err != nil {
				return nil, err
			}
		}
	}
}

// tunnel relays an upgraded (WebSocket) connection in both directions
// until either side ends; the request stays in flight until then.
func (ex *exchange) tunnel() {
	c, r, resp, uc, h := ex.c, &ex.c.req, &ex.c.resp, ex.uc, ex.h
	b := h1.AppendStatusLine(c.rh[:0], 101, resp.Reason)
	for i := range resp.Fields {
		f := &resp.Fields[i]
		if !resp.IsHopByHop(f.Name) {
			b = h1.AppendField(b, f.Name, f.Value)
		}
	}
	b = append(b, "Connection: Upgrade\r\nUpgrade: "...)
	b = append(b, r.Upgrade...)
	b = append(b, "\r\n\r\n"...)
	c.rh = b
	c.bw.Write(b)
	t := &tunnel{client: c.nc, up: uc.nc, h: h}
	// The connection is no longer an HTTP one: Shutdown waits for it (or
	// closes it) through the gateway's upgrades, not as a client
	// connection.
	c.untrack()
	c.g.trackUpgrade(t, true)
	defer func() {
		t.Close()
		h.release()
		c.g.trackUpgrade(t, false)
	}()
	if err := c.bw.Flush(); err != nil {
		return
	}
	c.nc.SetDeadline(time.Time{})
	uc.nc.SetDeadline(time.Time{})
	c.wr.timeout = 0
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(uc.nc, c.br) // what the client sent, buffered first
		done <- struct{}{}
	}()
	go func() {
		io.Copy(c.nc, uc.br)
		done <- struct{}{}
	}()
	<-done
	t.Close()
	<-done
}

// tunnel is an upgraded connection pair.
type tunnel struct {
	client, up net.Conn
	h          *host
	once       sync.Once
}

func (t *tunnel) Close() error {
	t.once.Do(func() {
		t.client.Close()
		t.up.Close()
	})
	return nil
}

// staleConnErr: the instance closed a pooled connection before answering.
func staleConnErr(err error) bool {
	return errors.Is(err, io.EOF) || classify(err) == kindReset
}

// idempotent methods may be sent again when their first attempt may not
// have been received (RFC 9110 §9.2.2; like http.Transport, without PUT
// and DELETE).
func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

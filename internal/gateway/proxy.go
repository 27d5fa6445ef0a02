package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/internal/config"
)

// ServeHTTP proxies r to an instance of the service of the route it
// matches. Errors are answered with a JSON body {"error":...,"service":...}:
// 404 no route, 503 no instance available, 502 the instance could not be
// reached or broke the exchange, 504 the route's timeout passed.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := g.routes.match(r)
	if rt == nil {
		g.metrics.noRoute.Inc()
		writeJSON(w, http.StatusNotFound, g.bodyNoRoute)
		return
	}
	start := time.Now()
	defer func() { rt.metrics.duration.Observe(time.Since(start).Seconds()) }()
	if t := g.table.Load(); t == nil || len(t.pools[rt.svc.idx].active) == 0 {
		rt.metrics.count(http.StatusServiceUnavailable)
		writeJSON(w, http.StatusServiceUnavailable, rt.svc.body503)
		return
	}
	if rt.timeout > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), rt.timeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	rt.proxy.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}

// initRoute sets up the route's proxy and metrics. Each route has its own
// httputil.ReverseProxy (sharing one http.Transport), so the RoundTripper
// knows its route without a context value.
func (g *Gateway) initRoute(rt *route) {
	g.metrics.forRoute(&rt.metrics, rt.name, rt.svc.name)
	rt.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			out := pr.Out
			out.URL.Scheme = "http"
			out.URL.Host = rt.svc.name // replaced by the instance for each attempt
			if rt.strip {
				stripPrefix(out.URL, rt.prefix)
			}
			setForwarded(pr.In, out)
		},
		Transport: &routeTransport{g: g, rt: rt},
		// 0: ReverseProxy flushes at once for text/event-stream and for
		// responses of unknown length, and lets known-length responses
		// fill the server's buffer.
		FlushInterval: 0,
		BufferPool:    &g.bufPool,
		ErrorLog:      slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				// ReverseProxy would refuse these without closing the
				// body, leaking the in-flight count; refuse them here.
				if !strings.EqualFold(upgradeType(resp.Header), upgradeType(resp.Request.Header)) {
					return errUpgradeMismatch
				}
				if _, ok := resp.Body.(io.ReadWriteCloser); !ok {
					return errUpgradeMismatch
				}
			}
			rt.metrics.count(resp.StatusCode)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			g.proxyError(w, r, rt, err)
		},
	}
}

// setForwarded sets X-Forwarded-For (appending the client to the chain the
// request came with), X-Forwarded-Host and X-Forwarded-Proto, like
// ProxyRequest.SetXForwarded, and an empty User-Agent when the client sent
// none (so Go's default is not sent), as ReverseProxy would. The values
// share one backing array: one allocation instead of four.
func setForwarded(in, out *http.Request) {
	vals := make([]string, 4)
	if clientIP, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		vals[0] = clientIP
		out.Header["X-Forwarded-For"] = vals[0:1:1]
	}
	vals[1] = in.Host
	out.Header["X-Forwarded-Host"] = vals[1:2:2]
	vals[2] = "http"
	if in.TLS != nil {
		vals[2] = "https"
	}
	out.Header["X-Forwarded-Proto"] = vals[2:3:3]
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = vals[3:4:4]
	}
}

var errUpgradeMismatch = errors.New("instance switched to another protocol than the one requested")

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, rt *route, err error) {
	s := rt.svc
	var code int
	var body []byte
	ctxErr := r.Context().Err()
	switch {
	case err == s.errNoInstance:
		code, body = http.StatusServiceUnavailable, s.body503
	case ctxErr == context.DeadlineExceeded:
		code, body = http.StatusGatewayTimeout, s.body504
	case ctxErr != nil:
		// The client went away; nobody reads the answer.
		rt.metrics.count(499)
		w.WriteHeader(http.StatusBadGateway)
		return
	default:
		code, body = http.StatusBadGateway, s.body502
		g.log.Warn("proxying failed", "route", rt.name, "service", s.name, "err", err)
	}
	rt.metrics.count(code)
	writeJSON(w, code, body)
}

type noInstanceError struct{ service string }

func (e *noInstanceError) Error() string {
	return "no instance of service " + e.service + " available"
}

// routeTransport is the RoundTripper of one route: it picks an instance,
// counts the request in flight until its response body is closed, and
// retries on another instance when connecting failed.
//
// A retry happens only when the request cannot have reached the instance:
// the connection could not be made (a *dialError). Once a connection is
// made, the request is never sent elsewhere. Failures on a reused
// keep-alive connection before any byte was written are retried by
// http.Transport itself, on a new connection to the same instance (the
// request carries a GetBody that replays the body only if no byte of it
// was read); if that connection cannot be made, the request moves on to
// another instance as above.
type routeTransport struct {
	g  *Gateway
	rt *route
}

func (t *routeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	g, s := t.g, t.rt.svc
	ps := pickState{nowFn: g.now, warmup: g.warmup}
	var rb *replayBody
	if req.Body != nil && req.Body != http.NoBody {
		rb = newReplayBody(req.Body)
		req.Body = rb.cur
		req.GetBody = rb.getBody
	}
	var lastErr error
	retries, skips := 0, 0
	for {
		p := g.table.Load().pools[s.idx]
		h := p.pick(&ps)
		if h == nil {
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, s.errNoInstance
		}
		if !h.acquire() {
			// Left rotation since this table was built: pick again.
			ps.addTried(h)
			if skips++; skips > maxTried {
				return nil, s.errNoInstance
			}
			continue
		}
		if p.failOpen {
			s.metrics.failOpen.Inc()
		}
		req.URL.Host = h.addr
		resp, err := g.transport.RoundTrip(req)
		if err == nil {
			h.succeeded(g.now)
			resp.Body = g.wrapBody(resp, h)
			return resp, nil
		}
		h.release()
		if ctxErr := req.Context().Err(); ctxErr != nil {
			if ctxErr == context.DeadlineExceeded {
				s.metrics.errors[kindTimeout].Inc()
			}
			return nil, err
		}
		kind := classify(err)
		s.metrics.errors[kind].Inc()
		if kind == kindConnect || kind == kindReset {
			if d := h.connFailed(g.now().UnixNano()); d > 0 {
				s.metrics.ejections.Inc()
				g.log.Warn("instance ejected after consecutive connection failures",
					"service", s.name, "addr", h.addr, "for", d, "err", err)
			}
		}
		if kind != kindConnect || retries >= g.retries || (rb != nil && !rb.detach()) {
			return nil, err
		}
		retries++
		s.metrics.retries.Inc()
		ps.addTried(h)
		ps.now = 0
		lastErr = err
		// A fresh request value: the failed attempt's may still be
		// referenced by the transport.
		nr := new(http.Request)
		*nr = *req
		u := *req.URL
		nr.URL = &u
		if rb != nil {
			nr.Body = rb.cur
		}
		req = nr
	}
}

// classify maps an upstream error to its metrics kind.
func classify(err error) int {
	var de *dialError
	if errors.As(err, &de) {
		return kindConnect
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return kindTimeout
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return kindReset
	}
	return kindOther
}

// dialError marks an error from connecting to an instance: nothing was
// sent, so the request may go to another instance.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func newTransport(cfg config.Gateway) *http.Transport {
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		ForceAttemptHTTP2:   false,
		DisableCompression:  true,
		MaxIdleConns:        0, // no limit but the per-host one
		MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
	}
}

// Request bodies. A body is handed to the transport through a chain of
// attempt wrappers. An attempt that never had Read called can be detached
// (it then refuses every Read), and the next attempt reads the same body
// from the start. Once any Read has started, the body belongs to that
// attempt for good and the request cannot be retried.

const (
	bodyFresh int32 = iota
	bodyUsed
	bodyDetached
)

var errBodyDetached = errors.New("gateway: request body was handed to another attempt")

type replayBody struct {
	src io.ReadCloser
	cur *attemptBody
}

func newReplayBody(src io.ReadCloser) *replayBody {
	rb := &replayBody{src: src}
	rb.cur = &attemptBody{src: src}
	return rb
}

// detach takes the body back from the current attempt; it reports false
// when the attempt has started reading it.
func (rb *replayBody) detach() bool {
	if !rb.cur.state.CompareAndSwap(bodyFresh, bodyDetached) {
		return false
	}
	rb.cur = &attemptBody{src: rb.src}
	return true
}

// getBody is the request's GetBody, used by http.Transport to retry on a
// new connection after a reused one failed before anything was written.
func (rb *replayBody) getBody() (io.ReadCloser, error) {
	if !rb.detach() {
		return nil, errors.New("gateway: request body already read, cannot replay it")
	}
	return rb.cur, nil
}

type attemptBody struct {
	src   io.ReadCloser
	state atomic.Int32
}

func (b *attemptBody) Read(p []byte) (int, error) {
	if !b.state.CompareAndSwap(bodyFresh, bodyUsed) && b.state.Load() != bodyUsed {
		return 0, errBodyDetached
	}
	return b.src.Read(p)
}

// Close passes on only from an attempt that owns the body: the transport
// closes a request's body when an attempt fails, and a body that was not
// read must stay open for the next attempt. (ReverseProxy closes its own
// wrapper when the handler returns.)
func (b *attemptBody) Close() error {
	if b.state.Load() == bodyUsed {
		return b.src.Close()
	}
	return nil
}

// Response bodies. The request stays in flight for its instance until
// ReverseProxy closes the response body: after the last byte was copied,
// when the client went away, or when an upgraded connection ended.

func (g *Gateway) wrapBody(resp *http.Response, h *host) io.ReadCloser {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			u := &upgradeBody{rwc: rwc, h: h, g: g}
			g.trackUpgrade(u, true)
			return u
		}
	}
	return &upstreamBody{rc: resp.Body, h: h}
}

type upstreamBody struct {
	rc     io.ReadCloser
	h      *host
	closed atomic.Bool
}

func (b *upstreamBody) Read(p []byte) (int, error) { return b.rc.Read(p) }

func (b *upstreamBody) Close() error {
	err := b.rc.Close()
	if b.closed.CompareAndSwap(false, true) {
		b.h.release()
	}
	return err
}

// upgradeBody is the instance side of an upgraded (e.g. WebSocket)
// connection. ReverseProxy requires it to be an io.ReadWriteCloser.
type upgradeBody struct {
	rwc    io.ReadWriteCloser
	h      *host
	g      *Gateway
	closed atomic.Bool
}

func (u *upgradeBody) Read(p []byte) (int, error)  { return u.rwc.Read(p) }
func (u *upgradeBody) Write(p []byte) (int, error) { return u.rwc.Write(p) }

func (u *upgradeBody) Close() error {
	err := u.rwc.Close()
	if u.closed.CompareAndSwap(false, true) {
		u.h.release()
		u.g.trackUpgrade(u, false)
	}
	return err
}

// upgradeType returns the protocol a message asks to upgrade to, "" when
// none (same rule as ReverseProxy's).
func upgradeType(h http.Header) string {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

// bufferPool recycles ReverseProxy's copy buffers. It pools array
// pointers, so Put does not allocate.
type bufferPool struct{ p sync.Pool }

type copyBuf [32 << 10]byte

func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*copyBuf); ok {
		return b[:]
	}
	return new(copyBuf)[:]
}

func (bp *bufferPool) Put(b []byte) {
	if len(b) == len(copyBuf{}) {
		bp.p.Put((*copyBuf)(b))
	}
}

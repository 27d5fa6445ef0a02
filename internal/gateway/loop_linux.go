//go:build linux

package gateway

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/internal/h1"
)

// The event loops of the native engine (gateway.engine: epoll, the
// default on Linux). The common exchange — a request without a body or
// with a small body that has arrived whole, answered with a response of
// known length that fits a buffer — is served by a few event loops, one
// per CPU, each waiting on its own epoll set like an nginx worker:
// readiness comes from edge-triggered epoll events, so a socket is read
// only when it has data and no goroutine parks and wakes per read. That
// saves Go's poller its read-before-wait (a read answering EAGAIN on
// every wait) and the scheduler's work per request; see
// docs/benchmarks.md for what it costs per request against nginx.
//
// Everything else leaves the loop for good: the connection is handed to
// a goroutine of the native engine (native.go) at the point it reached,
// which then serves it as it serves any connection — chunked and large
// bodies, 100-continue, upgrades, streamed and chunked responses,
// responses larger than the buffer, malformed heads, host names to
// resolve, connection failures (the goroutine tries again, with retries
// and ejection). A handed-off connection never returns to a loop.
//
// A loop owns its descriptors: only its goroutine reads, writes or
// closes them. Others (Shutdown) set flags that the loop's periodic scan
// acts on.

const (
	// loopScan is how often a loop checks its connections' timeouts, and
	// so the precision of client and route timeouts on a loop.
	loopScan      = 25 * time.Millisecond
	loopMaxEvents = 256
)

// Client connection states on a loop (loopClient.st).
const (
	lcIdle     = iota // waiting for (the rest of) a request head
	lcUpstream        // an exchange with an instance is in progress
	lcWriting         // the response is written; pend waits for room
)

// loopClient is a loop's state of a client connection.
type loopClient struct {
	st        int
	since     int64 // unix ns: idle since, head begun, or writing since
	headBegun bool  // part of a request head is buffered
	keep      bool  // lcWriting: the connection stays open once pend is sent
}

// Upstream connection states on a loop (loopUp.st).
const (
	luIdle       = iota // pooled, unused
	luConnecting        // a non-blocking connect is in progress
	luSending           // the request is being written
	luAwaiting          // waiting for the response head
	luBody              // the head was read; waiting for the rest of the body
)

// loopUp is a loop's state of an upstream connection.
type loopUp struct {
	st    int
	fd    int
	c     *clientConn // the exchange's client; nil while idle
	wbuf  []byte      // the request to send
	woff  int
	since int64 // unix ns: idle or connecting since
	// addr is the address dialled: for an instance registered by host
	// name, one its lookup gave (see getIdle).
	addr netip.Addr
}

// evloop is one event loop.
type evloop struct {
	g    *Gateway
	epfd int
	evfd int // eventfd: new connections, shutdown

	mu       sync.Mutex
	incoming []*clientConn
	stop     bool

	clients  []*clientConn // by descriptor
	ups      []*upConn     // by descriptor
	conns    map[*clientConn]struct{}
	idle     map[*host][]*upConn
	events   [loopMaxEvents]syscall.EpollEvent
	lastScan int64
	done     chan struct{}
	// now is read once per wake-up: the loop's clock for timeouts and
	// request durations (a batch of events is handled in microseconds).
	now   time.Time
	nowNs int64
}

const epollFlags = syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | (-syscall.EPOLLET & 0xffffffff)

// Event masks: the peer closed (or shut down its side of) the connection,
// or it failed; something to read (a read will not block: it returns
// data, EOF or the error); the socket is writable (or failed).
const (
	evPeerGone = syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR
	evReadable = syscall.EPOLLIN | evPeerGone
	evWritable = syscall.EPOLLOUT | syscall.EPOLLERR | syscall.EPOLLHUP
)

// startLoops starts n event loops.
func startLoops(g *Gateway, n int) ([]*evloop, error) {
	var loops []*evloop
	for i := 0; i < n; i++ {
		l, err := newLoop(g)
		if err != nil {
			for _, l := range loops {
				l.shutdown()
			}
			return nil, err
		}
		loops = append(loops, l)
		go l.run()
	}
	return loops, nil
}

func newLoop(g *Gateway) (*evloop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if e != 0 {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("eventfd2", e)
	}
	evfd := int(r)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(evfd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(evfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return &evloop{
		g: g, epfd: epfd, evfd: evfd,
		conns: map[*clientConn]struct{}{},
		idle:  map[*host][]*upConn{},
		done:  make(chan struct{}),
	}, nil
}

// wake interrupts the loop's wait.
func (l *evloop) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	syscall.Write(l.evfd, one[:])
}

// shutdown stops the loop: it closes every descriptor it owns and ends.
func (l *evloop) shutdown() {
	l.mu.Lock()
	l.stop = true
	l.mu.Unlock()
	l.wake()
}

// adopt takes over client connection nc (already tracked by the gateway)
// and hands it to the loop. It reports false when nc is not a TCP
// connection the loop can own; the caller then serves it with a
// goroutine.
func (l *evloop) adopt(c *clientConn) bool {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return false
	}
	fd, err := dupConn(tc)
	if err != nil {
		return false
	}
	c.g.srv.mu.Lock()
	c.loop = l
	c.g.srv.mu.Unlock()
	tc.Close() // the loop keeps the duplicate
	c.rd.raw = rawFD{on: true, fd: fd}
	c.wr.raw = rawFD{on: true, fd: fd}
	l.mu.Lock()
	l.incoming = append(l.incoming, c)
	l.mu.Unlock()
	l.wake()
	return true
}

// dupConn duplicates the descriptor of tc (close-on-exec; non-blocking,
// as the original).
func dupConn(tc syscall.Conn) (int, error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		fd = int(r)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	return fd, nil
}

// fdConn makes a net.Conn of descriptor fd, which it closes.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	return nc, err
}

func (l *evloop) register(fd int) error {
	ev := syscall.EpollEvent{Events: epollFlags, Fd: int32(fd)}
	return syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
}

func (l *evloop) unregister(fd int) {
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
}

func (l *evloop) run() {
	defer close(l.done)
	for {
		wait := int(loopScan / time.Millisecond)
		n, err := syscall.EpollWait(l.epfd, l.events[:], wait)
		l.now = time.Now()
		l.nowNs = l.now.UnixNano()
		if err != nil && err != syscall.EINTR {
			l.g.log.Error("event loop failed; its connections are closed", "err", err)
			l.closeAll()
			return
		}
		for i := 0; i < n; i++ {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.evfd {
				var b [8]byte
				syscall.Read(l.evfd, b[:])
				if l.takeIncoming() {
					l.closeAll()
					return
				}
				continue
			}
			if fd < len(l.clients) && l.clients[fd] != nil {
				l.clientEvent(l.clients[fd], ev.Events)
			} else if fd < len(l.ups) && l.ups[fd] != nil {
				l.upEvent(l.ups[fd], ev.Events)
			}
		}
		if now := l.nowNs; now-l.lastScan >= int64(loopScan) {
			l.lastScan = now
			l.scan(now)
		}
	}
}

// takeIncoming registers the connections adopt queued. It reports
// whether the loop must stop.
func (l *evloop) takeIncoming() bool {
	l.mu.Lock()
	in, stop := l.incoming, l.stop
	l.incoming = nil
	l.mu.Unlock()
	now := l.nowNs
	for _, c := range in {
		fd := c.rd.raw.fd
		c.lc = loopClient{st: lcIdle, since: now}
		c.state.Store(connIdle)
		growTo(&l.clients, fd)
		l.clients[fd] = c
		l.conns[c] = struct{}{}
		if err := l.register(fd); err != nil {
			l.closeClient(c)
		}
	}
	return stop
}

func growTo[T any](s *[]*T, fd int) {
	if fd >= len(*s) {
		n := make([]*T, max(fd+1, 2*len(*s), 64))
		copy(n, *s)
		*s = n
	}
}

func (l *evloop) clientEvent(c *clientConn, ev uint32) {
	if ev&evReadable != 0 {
		c.rd.raw.ready = true
	}
	switch c.lc.st {
	case lcIdle:
		if c.rd.raw.ready {
			l.input(c)
		}
	case lcUpstream:
		if ev&evPeerGone != 0 {
			// The client went away (or shut down its side) while its
			// request was being served: cut the exchange, as the
			// goroutine engine's watch does.
			uc := c.ex.uc
			uc.close()
			c.ex.h.release()
			c.ex.rt.metrics.count(499)
			l.closeClient(c)
		}
	case lcWriting:
		if ev&(syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
			l.closeClient(c)
			return
		}
		if ev&syscall.EPOLLOUT != 0 {
			l.sendPending(c)
		}
	}
}

// input reads and serves the requests the client sent, until it has to
// wait.
func (l *evloop) input(c *clientConn) {
	g := l.g
	for {
		if !headBuffered(c.br) {
			if c.br.Buffered() == c.br.Size() {
				l.handoff(c, handoffHead, nil) // a head longer than the buffer
				return
			}
			if !c.rd.raw.ready {
				return
			}
			if _, err := c.br.Peek(c.br.Buffered() + 1); err != nil && err != errWouldBlock {
				if c.br.Buffered() > 0 && c.state.CompareAndSwap(connIdle, connActive) {
					// Half a head and then the end: as the goroutine
					// engine, answer what can be answered.
					c.headFailed(err)
					c.bw.Flush()
				}
				l.closeClient(c)
				return
			}
			if c.br.Buffered() > 0 && !c.lc.headBegun {
				c.lc.headBegun, c.lc.since = true, l.nowNs
			}
			continue
		}
		if g.srv.closed.Load() || !c.state.CompareAndSwap(connIdle, connActive) {
			l.closeClient(c)
			return
		}
		c.lc.headBegun = false
		if err := c.req.Read(c.br, g.cfg.MaxHeaderBytes); err != nil {
			c.headFailed(err)
			c.bw.Flush()
			l.closeClient(c)
			return
		}
		r := &c.req
		if r.Chunked || r.Expect100 || len(r.Upgrade) > 0 || r.ContentLength > int64(c.br.Buffered()) {
			// Bodies to stream, 100-continue, upgrades: a goroutine's.
			l.handoff(c, handoffRequest, handleRequest)
			return
		}
		keep, async := c.handle()
		if async {
			return
		}
		if !l.ended(c, keep) {
			return
		}
	}
}

// handleRequest serves the request whose head c.req holds, on a goroutine.
func handleRequest(c *clientConn) bool {
	keep, _ := c.handle()
	return keep
}

// ended finishes a request that was answered: the response is sent (or
// queued), and the connection waits for the next request or closes. It
// reports whether input may go on reading requests.
func (l *evloop) ended(c *clientConn, keep bool) bool {
	c.cur.Store(nil)
	if c.br.Buffered() == 0 || !keep {
		if c.bw.Flush() != nil {
			l.closeClient(c)
			return false
		}
	}
	if len(c.wr.pend) > 0 {
		c.lc = loopClient{st: lcWriting, since: l.nowNs, keep: keep}
		return false
	}
	if !keep {
		l.closeClient(c)
		return false
	}
	c.lc.st, c.lc.since = lcIdle, l.nowNs
	c.state.Store(connIdle)
	return true
}

// sendPending sends what the client could not take before.
func (l *evloop) sendPending(c *clientConn) {
	done, err := c.wr.sendPending()
	if err != nil {
		l.closeClient(c)
		return
	}
	if !done {
		return
	}
	if !c.lc.keep {
		l.closeClient(c)
		return
	}
	c.lc.st, c.lc.since = lcIdle, l.nowNs
	c.state.Store(connIdle)
	if c.br.Buffered() > 0 || c.rd.raw.ready {
		l.input(c)
	}
}

// proxy starts the exchange of the request whose head c.req holds (its
// body, if any, is buffered whole) with an instance of rt's service. It
// reports async when the exchange goes on (on the loop or, handed off, on
// a goroutine); else it was answered at once and keep says whether the
// connection stays open.
func (l *evloop) proxy(c *clientConn, rt *route, path []byte, start time.Time, keep bool) (bool, bool) {
	g, s := l.g, rt.svc
	t := g.table.Load()
	if t == nil || len(t.pools[s.idx].active) == 0 {
		return c.unavailable(rt, keep), false
	}
	ps := pickState{nowFn: g.now, warmup: g.warmup}
	skips := 0
	h := g.acquireHost(s, &ps, &skips)
	if h == nil {
		return c.unavailable(rt, keep), false
	}
	uc := l.getIdle(h)
	reused := uc != nil
	if uc == nil {
		var err error
		if uc, err = l.connect(h); err != nil {
			// A name not looked up yet, or a connection refused: the
			// goroutine engine does it again, with its retries and
			// ejection.
			h.release()
			l.handoff(c, handoffConnect, handleRequest)
			return false, true
		}
	}
	c.buildHead(rt, path, false)
	var deadline time.Time
	if rt.timeout > 0 {
		deadline = start.Add(rt.timeout)
	}
	c.ex = exchange{c: c, rt: rt, h: h, episode: h.episode.Load(), uc: uc, reused: reused, keep: keep, deadline: deadline, start: start,
		bodyStarted: true, bodyDone: true}
	c.lc.st = lcUpstream
	c.cur.Store(h)
	uc.lu.c = c
	if uc.lu.st != luConnecting {
		l.send(uc)
	}
	return false, true
}

// send writes the exchange's request to uc.
func (l *evloop) send(uc *upConn) {
	c := uc.lu.c
	r := &c.req
	b := uc.lu.wbuf[:0]
	b = append(b, c.line...)
	if len(r.Host) == 0 {
		b = append(b, hdrHost...)
		b = append(b, ": "...)
		b = append(b, c.ex.h.addr...)
		b = append(b, "\r\n"...)
	}
	b = append(b, c.out...)
	if n := int(r.ContentLength); n > 0 {
		body, _ := c.br.Peek(n)
		b = append(b, body...)
		c.br.Discard(n)
	}
	uc.lu.wbuf, uc.lu.woff = b, 0
	uc.lu.st = luSending
	l.sendMore(uc)
}

func (l *evloop) sendMore(uc *upConn) {
	n, err := uc.rd.raw.write(uc.lu.wbuf[uc.lu.woff:])
	uc.lu.woff += n
	if err != nil {
		c := uc.lu.c
		c.ex.upstreamErr = err
		l.finish(c, err)
		return
	}
	if uc.lu.woff == len(uc.lu.wbuf) {
		uc.lu.st = luAwaiting
		if uc.rd.raw.ready {
			l.readResponse(uc)
		}
	}
}

func (l *evloop) upEvent(uc *upConn, ev uint32) {
	if ev&evReadable != 0 {
		uc.rd.raw.ready = true
	}
	switch uc.lu.st {
	case luIdle:
		if uc.rd.raw.ready {
			// An idle connection has nothing to say: the instance closed
			// it (or broke the protocol). Drop it now rather than fail a
			// request on it later.
			l.dropIdle(uc)
		}
	case luConnecting:
		if ev&evWritable == 0 {
			return
		}
		c := uc.lu.c
		if e, err := syscall.GetsockoptInt(uc.lu.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil || e != 0 {
			if c == nil {
				l.closeUp(uc)
				return
			}
			// Refused or unreachable: the goroutine engine tries again,
			// with its retries and ejection.
			l.closeUp(uc)
			l.g.dialFailed(c.ex.h)
			c.ex.h.release()
			l.handoff(c, handoffConnect, handleRequest)
			return
		}
		if c == nil {
			return
		}
		l.send(uc)
	case luSending:
		if ev&evWritable != 0 {
			l.sendMore(uc)
		}
	case luAwaiting:
		if uc.rd.raw.ready {
			l.readResponse(uc)
		}
	case luBody:
		if uc.rd.raw.ready {
			l.readBody(uc)
		}
	}
}

// readResponse reads the response head; with the whole response in the
// buffer it is answered on the loop, else the exchange is handed off.
func (l *evloop) readResponse(uc *upConn) {
	c := uc.lu.c
	resp := &c.resp
	for {
		if !headBuffered(uc.br) {
			if uc.br.Buffered() == uc.br.Size() {
				l.handoffExchange(c, false) // the goroutine finds it too large
				return
			}
			if !uc.rd.raw.ready {
				return
			}
			if _, err := uc.br.Peek(uc.br.Buffered() + 1); err != nil && err != errWouldBlock {
				if errors.Is(err, io.EOF) && uc.br.Buffered() > 0 {
					l.handoffExchange(c, false) // the goroutine reads the same end
					return
				}
				l.finish(c, err)
				return
			}
			continue
		}
		if err := resp.Read(uc.br, upstreamBufSize); err != nil {
			l.finish(c, err)
			return
		}
		if resp.Status >= 200 || resp.Status == 101 {
			break
		}
		// 1xx interim responses (but 101) are dropped.
	}
	l.readBody(uc)
}

// readBody answers once the whole response is buffered.
func (l *evloop) readBody(uc *upConn) {
	c := uc.lu.c
	resp := &c.resp
	isHead := len(c.req.Method) == 4 && string(c.req.Method) == "HEAD"
	switch resp.BodyMode(isHead) {
	case h1.BodyNone:
	case h1.BodyLength:
		if resp.ContentLength > int64(uc.br.Size()) {
			l.handoffExchange(c, true)
			return
		}
		for int64(uc.br.Buffered()) < resp.ContentLength {
			if !uc.rd.raw.ready {
				uc.lu.st = luBody
				return
			}
			if _, err := uc.br.Peek(uc.br.Buffered() + 1); err != nil && err != errWouldBlock {
				l.handoffExchange(c, true) // the goroutine reads the same end
				return
			}
		}
	default:
		l.handoffExchange(c, true) // chunked or to the end: streamed
		return
	}
	l.finish(c, nil)
}

// finish ends the exchange with the response head in c.resp and its body
// buffered (err nil), or with the error that ended it.
func (l *evloop) finish(c *clientConn, err error) {
	ex := &c.ex
	res, keep := ex.afterHead(err, nil)
	if res == attemptDialAgain {
		// A pooled connection the instance had closed: send the request
		// again on a new one, as the goroutine engine does.
		uc, cerr := l.connect(ex.h)
		if cerr != nil {
			ex.h.release()
			l.handoff(c, handoffConnect, handleRequest)
			return
		}
		ex.uc, ex.reused = uc, false
		uc.lu.c = c
		if uc.lu.st != luConnecting {
			l.send(uc)
		}
		return
	}
	ex.rt.metrics.observe(l.now.Sub(ex.start).Seconds())
	if l.ended(c, keep) && (c.br.Buffered() > 0 || c.rd.raw.ready) {
		l.input(c)
	}
}

// errNotLookedUp: a host name that has not been looked up yet.
var errNotLookedUp = errors.New("the instance's host name is not looked up yet")

// connect opens a connection to h without waiting. A host name is dialled
// at the address its last lookup found (resolve.go); before the first
// lookup has answered it is an error (a lookup could block). A refused
// connect is noted (dialFailed), as the callers note one that fails
// later (SO_ERROR, dial timeout).
func (l *evloop) connect(h *host) (*upConn, error) {
	ap, ok := l.g.dialAddr(h, l.nowNs)
	if !ok {
		return nil, errNotLookedUp
	}
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if ap.Addr().Is4() || ap.Addr().Is4In6() {
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	} else {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1)
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 30)
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 30)
	uc := &upConn{loop: l}
	uc.rd.raw = rawFD{on: true, fd: fd}
	uc.br = bufio.NewReaderSize(&uc.rd, upstreamBufSize)
	uc.lu = loopUp{fd: fd, st: luConnecting, since: l.nowNs, addr: ap.Addr()}
	err = syscall.Connect(fd, sa)
	switch err {
	case nil:
		uc.lu.st = luIdle // connected; send sets the state
	case syscall.EINPROGRESS:
	default:
		syscall.Close(fd)
		l.g.dialFailed(h)
		return nil, os.NewSyscallError("connect", err)
	}
	growTo(&l.ups, fd)
	l.ups[fd] = uc
	if err := l.register(fd); err != nil {
		l.ups[fd] = nil
		syscall.Close(fd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return uc, nil
}

// getIdle returns a pooled connection to h, or nil.
//
// For an instance registered by host name, taking a pooled connection
// starts the name's next lookup when it is due, as a dial does, and a
// connection to an address the latest lookup no longer gives is closed
// instead: the name moved (and the old address may be another process's
// by now).
func (l *evloop) getIdle(h *host) *upConn {
	if !h.ip.IsValid() && len(l.idle[h]) > 0 {
		if lk := h.lookup.Load(); lk != nil && l.nowNs >= lk.expires {
			l.g.startLookup(h)
		}
	}
	for {
		list := l.idle[h]
		n := len(list)
		if n == 0 {
			return nil
		}
		uc := list[n-1]
		list[n-1] = nil
		l.idle[h] = list[:n-1]
		if h.ip.IsValid() || h.lookedUp(uc.lu.addr) {
			return uc
		}
		l.closeUp(uc)
	}
}

// putIdle pools uc after a clean exchange with h.
func (l *evloop) putIdle(h *host, uc *upConn, max int) {
	uc.lu.c = nil
	list := l.idle[h]
	if len(list) >= max || uc.rd.raw.ready || uc.br.Buffered() > 0 {
		l.closeUp(uc)
		return
	}
	uc.lu.st, uc.lu.since = luIdle, l.nowNs
	l.idle[h] = append(list, uc)
}

// dropIdle closes a pooled connection.
func (l *evloop) dropIdle(uc *upConn) {
	for h, list := range l.idle {
		for i, u := range list {
			if u == uc {
				list[i] = list[len(list)-1]
				list[len(list)-1] = nil
				l.idle[h] = list[:len(list)-1]
				if len(l.idle[h]) == 0 {
					delete(l.idle, h)
				}
				l.closeUp(uc)
				return
			}
		}
	}
	l.closeUp(uc)
}

// closeUp closes an upstream connection the loop owns.
func (l *evloop) closeUp(uc *upConn) {
	if uc.loop != l || uc.lu.fd < 0 {
		return
	}
	fd := uc.lu.fd
	l.ups[fd] = nil
	syscall.Close(fd)
	uc.lu.fd = -1
	uc.rd.raw.on = false
	uc.lu.c = nil
}

// closeClient closes a client connection the loop owns, cutting its
// exchange if one is in progress.
func (l *evloop) closeClient(c *clientConn) {
	fd := c.rd.raw.fd
	if c.lc.st == lcUpstream && c.ex.uc != nil && c.ex.uc.lu.c == c {
		c.ex.uc.close()
		c.ex.h.release()
	}
	if c.wr.timedOut {
		syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	}
	l.clients[fd] = nil
	delete(l.conns, c)
	syscall.Close(fd)
	c.rd.raw.on, c.wr.raw.on = false, false
	c.untrack()
}

// handoff gives client connection c to a goroutine, which runs cont (when
// not nil) and then serves the connection's next requests. c's exchange,
// if any, must have been ended or handed along.
func (l *evloop) handoff(c *clientConn, reason int, cont func(*clientConn) bool) {
	l.g.metrics.handoffs[reason].Inc()
	fd := c.rd.raw.fd
	l.unregister(fd)
	l.clients[fd] = nil
	delete(l.conns, c)
	c.rd.raw.on, c.wr.raw.on = false, false
	nc, err := fdConn(fd)
	if err != nil {
		l.g.log.Warn("handing a connection over from the event loop failed", "err", err)
		c.untrack()
		return
	}
	c.g.srv.mu.Lock()
	c.loop, c.nc = nil, nc
	c.g.srv.mu.Unlock()
	c.rd.nc, c.wr.nc = nc, nc
	c.watch.init(nc)
	go c.serveHandedOff(cont)
}

// handoffExchange gives the exchange in progress to a goroutine, with
// both of its connections. headRead: c.resp holds the response head.
func (l *evloop) handoffExchange(c *clientConn, headRead bool) {
	ex := &c.ex
	uc := ex.uc
	fd := uc.lu.fd
	l.unregister(fd)
	l.ups[fd] = nil
	uc.lu.fd = -1
	nc, err := fdConn(fd)
	if err != nil {
		uc.rd.raw.on = false
		ex.h.release()
		ex.h.failed.Add(1)
		ex.rt.metrics.count(502)
		l.closeClient(c)
		return
	}
	uc.attach(nc)
	if !ex.deadline.IsZero() {
		nc.SetDeadline(ex.deadline)
	}
	l.handoff(c, handoffResponse, func(c *clientConn) bool {
		ex := &c.ex
		var err error
		if !headRead {
			err = ex.readHead()
		}
		res, keep := ex.afterHead(err, nil)
		for res == attemptDialAgain {
			// As proxy does: a new connection to the same instance.
			uc, derr := c.g.dialer.dial(ex.h.addr, ex.deadline)
			if derr != nil {
				ex.h.release()
				ex.h.failed.Add(1)
				keep = ex.fail(kindConnect, derr)
				break
			}
			ex.uc, ex.reused = uc, false
			res, keep = ex.run()
		}
		ex.rt.metrics.observe(time.Since(ex.start).Seconds())
		c.cur.Store(nil)
		return keep
	})
}

// scan enforces the timeouts of the loop's connections and closes what
// Shutdown asked to close.
func (l *evloop) scan(now int64) {
	g := l.g
	cfg := &g.cfg
	closed := g.srv.closed.Load()
	for c := range l.conns {
		if c.killed.Load() {
			l.closeClient(c)
			continue
		}
		switch c.lc.st {
		case lcIdle:
			switch {
			case c.state.Load() == connClosed:
				l.closeClient(c)
			case closed && c.state.CompareAndSwap(connIdle, connClosed):
				l.closeClient(c)
			case c.lc.headBegun && now-c.lc.since > int64(cfg.ClientHeaderTimeout):
				if c.state.CompareAndSwap(connIdle, connActive) {
					g.metrics.unrouted.count(408)
					c.writeError(408, "request head not received in time", false)
					c.bw.Flush()
				}
				l.closeClient(c)
			case !c.lc.headBegun && now-c.lc.since > int64(cfg.ClientIdleTimeout):
				l.closeClient(c)
			}
		case lcWriting:
			if cfg.ClientSendTimeout > 0 && now-c.lc.since > int64(cfg.ClientSendTimeout) {
				c.wr.timedOut = true
				l.closeClient(c)
			}
		case lcUpstream:
			ex := &c.ex
			uc := ex.uc
			switch {
			case !ex.deadline.IsZero() && now >= ex.deadline.UnixNano():
				if uc.lu.st == luConnecting {
					l.closeUp(uc)
					ex.h.release()
					ex.rt.svc.metrics.errors[kindTimeout].Inc()
					ex.h.failed.Add(1)
					keep := ex.fail(kindTimeout, os.ErrDeadlineExceeded)
					ex.rt.metrics.observe(time.Since(ex.start).Seconds())
					if l.ended(c, keep) && (c.br.Buffered() > 0 || c.rd.raw.ready) {
						l.input(c)
					}
				} else if uc.lu.st == luBody {
					l.handoffExchange(c, true) // it times out there, mid-body
				} else {
					l.finish(c, os.ErrDeadlineExceeded)
				}
			case uc.lu.st == luConnecting && now-uc.lu.since > int64(cfg.DialTimeout):
				l.closeUp(uc)
				g.dialFailed(ex.h)
				ex.h.release()
				l.handoff(c, handoffConnect, handleRequest)
			}
		}
	}
	for h, list := range l.idle {
		keep := list[:0]
		for _, uc := range list {
			if closed || h.flags.Load()&flagExcluded != 0 || now-uc.lu.since > int64(upstreamIdleTimeout) {
				l.closeUp(uc)
				continue
			}
			keep = append(keep, uc)
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(l.idle, h)
		} else {
			l.idle[h] = keep
		}
	}
}

// closeAll closes every descriptor the loop owns; the loop ends.
func (l *evloop) closeAll() {
	for c := range l.conns {
		l.closeClient(c)
	}
	for _, list := range l.idle {
		for _, uc := range list {
			l.closeUp(uc)
		}
	}
	l.idle = map[*host][]*upConn{}
	l.mu.Lock()
	for _, c := range l.incoming {
		syscall.Close(c.rd.raw.fd)
		c.untrack()
	}
	l.incoming = nil
	l.mu.Unlock()
	syscall.Close(l.evfd)
	syscall.Close(l.epfd)
}

package gateway

import (
	"bufio"
	"context"
	"net"
	"sync"
	"syscall"
	"time"
)

// Upstream connections of the native engine. Each host keeps a LIFO stack
// of idle keep-alive connections; a request takes one (or dials), uses it
// for one exchange and gives it back when the exchange ended cleanly.
// Nothing watches an idle connection (no goroutine per connection, as
// http.Transport has): a connection that was idle for a while is checked
// with a non-blocking peek before reuse, so one the instance closed (its
// keep-alive timeout, or the process died and came back on the same
// address) is discarded instead of failing the request sent on it.

const (
	// upstreamBufSize is the size of an upstream connection's read and
	// write buffers. A response head must fit the read buffer.
	upstreamBufSize = 16 << 10
	// idleCheckAfter: an idle connection unused for longer is peeked at
	// before reuse. Below it the instance would have to have closed it
	// within this window, which only a dying instance does, and a dying
	// instance fails its requests in flight anyway.
	idleCheckAfter = 20 * time.Millisecond
	// upstreamIdleTimeout: idle connections unused this long are closed
	// instead of reused (http.Transport's IdleConnTimeout was 90 s).
	upstreamIdleTimeout = 90 * time.Second
)

// upConn is one connection to an instance.
type upConn struct {
	nc       net.Conn
	rd       upReader
	br       *bufio.Reader
	bw       *bufio.Writer
	raw      syscall.RawConn
	lastUsed int64 // unix ns it went idle
	peekBuf  [1]byte
	peekFn   func(fd uintptr) bool
	alive    bool // result of peekFn

	// Set while an event loop owns the connection (loop.go); nil once a
	// goroutine does.
	loop *evloop
	lu   loopUp // the loop's state of the connection
}

// upReader reads an upstream connection: its raw descriptor while an
// event loop owns it, else the net.Conn.
type upReader struct {
	nc  net.Conn
	raw rawFD
}

func (r *upReader) Read(p []byte) (int, error) {
	if r.raw.on {
		return r.raw.read(p)
	}
	return r.nc.Read(p)
}

func newUpConn(nc net.Conn) *upConn {
	u := &upConn{nc: nc}
	u.rd.nc = nc
	u.br = bufio.NewReaderSize(&u.rd, upstreamBufSize)
	u.attach(nc)
	return u
}

// attach makes nc the connection's goroutine-mode connection.
func (u *upConn) attach(nc net.Conn) {
	u.nc, u.rd.nc = nc, nc
	u.rd.raw.on = false
	u.loop = nil
	if u.bw == nil {
		u.bw = bufio.NewWriterSize(nc, upstreamBufSize)
	} else {
		u.bw.Reset(nc)
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			u.raw = raw
		}
	}
	u.peekFn = func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), u.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Alive: nothing to read (EAGAIN). Data (an instance never sends
		// unasked), EOF (n == 0) or an error: not reusable.
		u.alive = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true
	}
}

// usable reports whether an idle connection can carry a request.
func (u *upConn) usable(now int64) bool {
	idle := now - u.lastUsed
	if idle > int64(upstreamIdleTimeout) {
		return false
	}
	if idle < int64(idleCheckAfter) || u.raw == nil {
		return true
	}
	u.alive = false
	if err := u.raw.Read(u.peekFn); err != nil {
		return false
	}
	return u.alive
}

func (u *upConn) close() {
	if u.loop != nil {
		u.loop.closeUp(u)
		return
	}
	u.nc.Close()
}

// recycle keeps u, which just ended an exchange cleanly, for the next
// request to h (clearDeadline: the exchange set one).
func (u *upConn) recycle(h *host, clearDeadline bool, max int) {
	if u.loop != nil {
		u.loop.putIdle(h, u, max)
		return
	}
	if clearDeadline {
		u.nc.SetDeadline(time.Time{})
	}
	h.conns.put(u, time.Now().UnixNano(), max)
}

// connPool is a host's idle connections.
type connPool struct {
	mu   sync.Mutex
	idle []*upConn
}

// get returns an idle connection that passed its check, or nil.
func (p *connPool) get(now int64) *upConn {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		u := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if u.usable(now) {
			return u
		}
		u.close()
	}
}

// put keeps u for reuse, or closes it when max are idle already.
func (p *connPool) put(u *upConn, now int64, max int) {
	u.lastUsed = now
	p.mu.Lock()
	if len(p.idle) < max {
		p.idle = append(p.idle, u)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	u.close()
}

// closeIdle closes every idle connection.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, u := range idle {
		u.close()
	}
}

// dialer connects to instances; its errors are *dialError (nothing was
// sent: the request may go elsewhere).
type dialer struct{ d net.Dialer }

func newDialer(timeout time.Duration) *dialer {
	return &dialer{d: net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}}
}

func (d *dialer) dial(addr string, deadline time.Time) (*upConn, error) {
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	nc, err := d.d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &dialError{err}
	}
	return newUpConn(nc), nil
}

package zktest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
)

// ErrPartitioned is wrapped by the errors a [Partitioner] returns for dials
// made while it is cut or blackholed.
var ErrPartitioned = errors.New("zktest: network partitioned")

// DefaultCutDialDelay is how long a dial made during a Cut waits before it
// fails (unless Restore comes first), so that clients that redial in a tight
// loop do not spin.
const DefaultCutDialDelay = 100 * time.Millisecond

type linkState int

const (
	linkUp linkState = iota
	linkCut
	linkBlackhole
)

// Partitioner simulates a network partition between one ZooKeeper client
// and the servers. Pass [Partitioner.Dialer] to zk.Connect via
// zk.WithDialer; the Partitioner tracks every connection it makes.
//
//   - Cut: like a refused / reset network. Every tracked connection is
//     closed at once (the client sees EOF and reports StateDisconnected
//     immediately) and new dials fail after [DefaultCutDialDelay].
//   - Blackhole: like a silently dropped network. Tracked connections stay
//     open but carry nothing: writes are discarded, reads deliver nothing and
//     return a timeout error at the read deadline (the client notices on its
//     own, after its receive timeout of 2/3 of the session timeout). New
//     dials hang until their timeout. Meanwhile the servers stop hearing
//     from the client, as in a real partition.
//   - Restore: dials work again (dials waiting in Cut or Blackhole proceed);
//     connections that lived through a Blackhole are closed, since their byte
//     streams have lost data.
//
// Cut, Blackhole and Restore take effect immediately and are safe to call
// concurrently with each other and with dials and I/O. Use one Partitioner
// per client whose view should be cut. The zero value is ready to use (link
// up), as is [NewPartitioner]'s result.
type Partitioner struct {
	// CutDialDelay overrides DefaultCutDialDelay when positive. Set it
	// before the first dial.
	CutDialDelay time.Duration

	mu       sync.Mutex
	state    linkState
	restored chan struct{} // closed by Restore; nil while up
	gen      uint64        // incremented by Cut and Blackhole
	conns    map[*trackedConn]struct{}

	dials, failed atomic.Int64
}

// NewPartitioner returns a Partitioner whose link is up.
func NewPartitioner() *Partitioner { return &Partitioner{} }

// Dialer returns a zk.Dialer (func(network, address string, timeout
// time.Duration) (net.Conn, error)) that dials through p.
func (p *Partitioner) Dialer() zk.Dialer { return p.Dial }

// Dial dials address through p; see the type documentation for its
// behaviour while the link is cut or blackholed. timeout bounds the real
// dial; a non-positive timeout means no bound, and then a dial in Blackhole
// waits until Restore.
func (p *Partitioner) Dial(network, address string, timeout time.Duration) (net.Conn, error) {
	p.dials.Add(1)
	var gen uint64
	for {
		p.mu.Lock()
		state, restored := p.state, p.restored
		gen = p.gen
		p.mu.Unlock()
		if state == linkUp {
			break
		}
		if err := p.waitPartitioned(state, restored, timeout); err != nil {
			p.failed.Add(1)
			return nil, &net.OpError{Op: "dial", Net: network, Err: &partitionError{addr: address, cause: err}}
		}
	}

	raw, err := net.DialTimeout(network, address, timeout)
	if err != nil {
		p.failed.Add(1)
		return nil, err
	}
	c := &trackedConn{Conn: raw, p: p, closed: make(chan struct{})}
	p.mu.Lock()
	if p.state != linkUp || p.gen != gen {
		// Cut or Blackhole happened while we were dialling.
		p.mu.Unlock()
		raw.Close()
		p.failed.Add(1)
		return nil, &net.OpError{Op: "dial", Net: network, Err: &partitionError{addr: address, cause: syscall.ECONNRESET}}
	}
	if p.conns == nil {
		p.conns = make(map[*trackedConn]struct{})
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	return c, nil
}

// waitPartitioned waits, for a dial made while the link is in state, until
// Restore (nil: look again) or until the dial should fail (the cause).
func (p *Partitioner) waitPartitioned(state linkState, restored <-chan struct{}, timeout time.Duration) error {
	wait, cause := timeout, error(os.ErrDeadlineExceeded)
	if state == linkCut {
		wait, cause = p.CutDialDelay, syscall.ECONNREFUSED
		if wait <= 0 {
			wait = DefaultCutDialDelay
		}
		if timeout > 0 && timeout < wait {
			wait = timeout
		}
	}
	var expired <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-restored:
		return nil
	case <-expired:
		return cause
	}
}

// partitionError is the cause of a dial failed by a Partitioner. It wraps
// ErrPartitioned and, like the real thing, syscall.ECONNREFUSED (Cut),
// os.ErrDeadlineExceeded (Blackhole; Timeout reports true) or
// syscall.ECONNRESET (partitioned while dialling).
type partitionError struct {
	addr  string
	cause error
}

func (e *partitionError) Error() string {
	return fmt.Sprintf("%s: %v (%v)", e.addr, e.cause, ErrPartitioned)
}

func (e *partitionError) Unwrap() []error { return []error{ErrPartitioned, e.cause} }

func (e *partitionError) Timeout() bool { return errors.Is(e.cause, os.ErrDeadlineExceeded) }

// Cut closes every tracked connection and makes dials fail until Restore.
func (p *Partitioner) Cut() { p.partition(linkCut) }

// Blackhole makes every tracked connection silently drop traffic and dials
// hang until Restore (or their timeout).
func (p *Partitioner) Blackhole() { p.partition(linkBlackhole) }

func (p *Partitioner) partition(to linkState) {
	p.mu.Lock()
	if p.state == linkUp {
		p.restored = make(chan struct{})
	}
	p.state = to
	p.gen++
	var victims []*trackedConn
	switch to {
	case linkCut:
		victims = p.snapshotLocked()
	case linkBlackhole:
		// Their streams lose data from now on: never let them carry
		// traffic again.
		for c := range p.conns {
			c.tainted.Store(true)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}

// Restore heals the partition: dials work again (waiting dials proceed) and
// connections that were blackholed are closed. A no-op if the link is up.
func (p *Partitioner) Restore() {
	p.mu.Lock()
	if p.state == linkUp {
		p.mu.Unlock()
		return
	}
	var victims []*trackedConn
	if p.state == linkBlackhole {
		victims = p.snapshotLocked()
	}
	p.state = linkUp
	close(p.restored)
	p.restored = nil
	p.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}

func (p *Partitioner) snapshotLocked() []*trackedConn {
	out := make([]*trackedConn, 0, len(p.conns))
	for c := range p.conns {
		out = append(out, c)
	}
	return out
}

// Partitioned reports whether the link is cut or blackholed.
func (p *Partitioner) Partitioned() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state != linkUp
}

// Dials returns how many dials were attempted through p.
func (p *Partitioner) Dials() int64 { return p.dials.Load() }

// FailedDials returns how many of those dials failed (partition or real
// error).
func (p *Partitioner) FailedDials() int64 { return p.failed.Load() }

// OpenConns returns how many connections made by p are open.
func (p *Partitioner) OpenConns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// blackhole returns the channel Restore will close if the link is
// blackholed, or nil.
func (p *Partitioner) blackhole() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == linkBlackhole {
		return p.restored
	}
	return nil
}

func (p *Partitioner) forget(c *trackedConn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// trackedConn is a connection made by a Partitioner.
type trackedConn struct {
	net.Conn
	p         *Partitioner
	closeOnce sync.Once
	closed    chan struct{}
	tainted   atomic.Bool // lived through a Blackhole; dead after Restore

	mu           sync.Mutex
	readDeadline time.Time
}

func (c *trackedConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		close(c.closed)
		c.p.forget(c)
		err = c.Conn.Close()
	})
	return err
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *trackedConn) setReadDeadline(t time.Time) {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
}

// Read delivers nothing while the link is blackholed: data (and errors such
// as EOF) that arrive then are dropped, and Read returns a timeout error at
// the read deadline set before the stall began. After the Blackhole it
// reports the connection closed.
func (c *trackedConn) Read(b []byte) (int, error) {
	for {
		if hole := c.p.blackhole(); hole != nil {
			return 0, c.stall(hole)
		}
		if c.tainted.Load() {
			return 0, c.opError("read", net.ErrClosed)
		}
		n, err := c.Conn.Read(b)
		if c.p.blackhole() != nil || c.tainted.Load() {
			continue // arrived while blackholed: drop it
		}
		return n, err
	}
}

// stall blocks until the read deadline (a timeout error), Close or Restore
// (both: the connection is closed).
func (c *trackedConn) stall(restored <-chan struct{}) error {
	c.mu.Lock()
	dl := c.readDeadline
	c.mu.Unlock()
	var expired <-chan time.Time
	if !dl.IsZero() {
		t := time.NewTimer(time.Until(dl))
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-c.closed:
		return c.opError("read", net.ErrClosed)
	case <-restored:
		return c.opError("read", net.ErrClosed)
	case <-expired:
		return c.opError("read", os.ErrDeadlineExceeded)
	}
}

// Write discards b while the link is blackholed (reporting success, as a
// kernel with room in its send buffer would) and fails after it.
func (c *trackedConn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, c.opError("write", net.ErrClosed)
	default:
	}
	if c.p.blackhole() != nil {
		return len(b), nil
	}
	if c.tainted.Load() {
		return 0, c.opError("write", net.ErrClosed)
	}
	return c.Conn.Write(b)
}

func (c *trackedConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

package gateway

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// watchAfter: a request whose response head takes longer than this gets
// its client connection watched, so a client that leaves ends the
// exchange (the instance's connection is closed, the request leaves the
// in-flight count) instead of holding it until the instance answers.
// Faster requests pay only a timer reset.
const watchAfter = 10 * time.Millisecond

// clientWatch detects, without reading any byte, that a client closed its
// connection while its request is being served. It is armed while a
// response head is awaited (and no pipelined request is buffered); after
// watchAfter a timer goroutine waits for the connection to become
// readable and peeks: end of stream or an error means the client is gone,
// and the instance connection is closed to cut the exchange. Data (a
// pipelined request) ends the watch without a verdict.
type clientWatch struct {
	nc    net.Conn
	raw   syscall.RawConn
	timer *time.Timer
	wg    sync.WaitGroup

	mu      sync.Mutex
	up      net.Conn // the instance connection to cut; nil when disarmed
	running bool     // the watch goroutine is waiting on the connection
	gone    atomic.Bool

	peekBuf [1]byte
	peekFn  func(fd uintptr) bool
	verdict int // of peekFn: 0 data, 1 gone
}

func (w *clientWatch) init(nc net.Conn) {
	w.nc = nc
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw = raw
		}
	}
	w.peekFn = func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), w.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK {
			return false // wait until readable
		}
		w.verdict = 0
		if n == 0 || err != nil {
			w.verdict = 1
		}
		return true
	}
	w.timer = time.AfterFunc(time.Hour, w.run)
	w.timer.Stop()
}

// arm starts watching; up is closed if the client leaves.
func (w *clientWatch) arm(up net.Conn) {
	if w.raw == nil {
		return
	}
	w.mu.Lock()
	w.up = up
	w.mu.Unlock()
	w.gone.Store(false)
	w.wg.Add(1)
	w.timer.Reset(watchAfter)
}

func (w *clientWatch) run() {
	defer w.wg.Done()
	w.mu.Lock()
	if w.up == nil {
		w.mu.Unlock()
		return
	}
	w.running = true
	w.mu.Unlock()
	err := w.raw.Read(w.peekFn)
	w.mu.Lock()
	w.running = false
	if err == nil && w.verdict == 1 && w.up != nil {
		w.gone.Store(true)
		w.up.Close()
	}
	w.mu.Unlock()
}

// disarm stops watching and reports whether the client left. The client
// connection's read deadline may have been moved; the serve loop sets it
// again before the next read.
func (w *clientWatch) disarm() bool {
	if w.raw == nil {
		return false
	}
	if w.timer.Stop() {
		w.wg.Done() // run will not happen
	} else {
		w.mu.Lock()
		w.up = nil
		if w.running {
			// Interrupt the wait for readability.
			w.nc.SetReadDeadline(time.Unix(1, 0))
		}
		w.mu.Unlock()
		w.wg.Wait()
	}
	w.mu.Lock()
	w.up = nil
	w.mu.Unlock()
	return w.gone.Load()
}

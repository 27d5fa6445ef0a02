package gateway

import (
	"io"
	"syscall"
	"unsafe"
)

// rawFD is a non-blocking socket descriptor read and written directly,
// without Go's poller: an event loop (loop.go) learns from epoll when it
// is ready. Reads and writes never wait; they answer errWouldBlock
// instead.
//
// ready tracks edge-triggered readiness: an edge sets it, and a read that
// found the socket drained (a short read, or EAGAIN) clears it, so the
// loop reads only when there may be something to read and never makes
// the read that only answers EAGAIN (Go's poller makes one per wait).
type rawFD struct {
	on    bool // the descriptor is in use (an event loop owns it)
	fd    int
	ready bool
}

// errWouldBlock: the socket has nothing to read, or no room to write.
var errWouldBlock = syscall.EAGAIN

func (r *rawFD) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(r.fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			r.ready = false
			return 0, errWouldBlock
		case e != 0:
			return 0, e
		case n == 0:
			return 0, io.EOF
		}
		if int(n) < len(p) {
			r.ready = false
		}
		return int(n), nil
	}
}

// write writes what the socket takes now: n < len(p) with a nil error
// when it is full.
func (r *rawFD) write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(r.fd), uintptr(unsafe.Pointer(&p[done])), uintptr(len(p)-done))
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return done, nil
		case e != 0:
			return done, e
		}
		done += int(n)
	}
	return done, nil
}

// writeRaw writes p to the client without waiting: what the socket does
// not take now is kept in pend, which the event loop sends once the
// socket is writable. Only a failed connection is an error.
func (w *clientWriter) writeRaw(p []byte) (int, error) {
	if len(w.pend) > 0 {
		w.pend = append(w.pend, p...)
		return len(p), nil
	}
	n, err := w.raw.write(p)
	if err != nil {
		return n, err
	}
	if n < len(p) {
		w.pend = append(w.pend, p[n:]...)
	}
	return len(p), nil
}

// sendPending writes what pend holds; it reports whether all of it was
// sent.
func (w *clientWriter) sendPending() (bool, error) {
	if len(w.pend) == 0 {
		return true, nil
	}
	n, err := w.raw.write(w.pend)
	if err != nil {
		return false, err
	}
	rest := copy(w.pend, w.pend[n:])
	w.pend = w.pend[:rest]
	return rest == 0, nil
}

package gateway

import (
	"errors"
	"io"
	"net"
	"syscall"
)

var errUpgradeMismatch = errors.New("instance switched to another protocol than the one requested")

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
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return kindReset
	}
	return kindOther
}

// dialError marks an error from connecting to an instance: nothing was
// sent, so the request may go to another instance.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

package gateway

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// ErrClosed is returned by Serve once the gateway is shut down or closed.
var ErrClosed = errors.New("gateway: server closed")

// servers tracks the listeners and client connections a Gateway serves,
// for Shutdown and Close.
type servers struct {
	closed atomic.Bool
	mu     sync.Mutex
	native nativeConns
}

// Serve accepts proxy connections on ln and serves them until Shutdown or
// Close; it then returns ErrClosed (any other error is the listener's).
// It may be called for several listeners. The connections are subject to
// the client_* limits of the gateway's configuration.
func (g *Gateway) Serve(ln net.Listener) error {
	return g.serveNative(ln)
}

// stopServing closes every listener and lets connections finish their
// current request (keep-alive ends); with ctx done it closes them at once.
func (g *Gateway) stopServing(ctx context.Context) error {
	return g.stopNative(ctx.Done())
}

// Close closes every listener and client connection at once, and the idle
// upstream connections.
func (g *Gateway) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.BeginShutdown()
	g.stopServing(ctx)
	g.stopLoops()
	g.closeUpgrades()
	g.closeIdleUpstreams()
	g.stopLookups()
	return nil
}

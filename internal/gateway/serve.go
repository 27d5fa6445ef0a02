package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/zkgate/zkgate/internal/config"
)

// ErrClosed is returned by Serve once the gateway is shut down or closed.
var ErrClosed = errors.New("gateway: server closed")

// servers tracks the listeners a Gateway serves, for Shutdown and Close.
type servers struct {
	closed atomic.Bool
	mu     sync.Mutex
	http   map[*http.Server]struct{}
	native nativeConns
}

// Serve accepts proxy connections on ln and serves them until Shutdown or
// Close; it then returns ErrClosed (any other error is the listener's).
// It may be called for several listeners. The connections are subject to
// the client_* limits of the gateway's configuration.
func (g *Gateway) Serve(ln net.Listener) error {
	if g.cfg.Engine == config.EngineNetHTTP {
		return g.serveNetHTTP(ln)
	}
	return g.serveNative(ln)
}

func (g *Gateway) serveNetHTTP(ln net.Listener) error {
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: g.cfg.ClientHeaderTimeout,
		IdleTimeout:       g.cfg.ClientIdleTimeout,
		MaxHeaderBytes:    g.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	g.srv.mu.Lock()
	if g.srv.closed.Load() {
		g.srv.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	if g.srv.http == nil {
		g.srv.http = map[*http.Server]struct{}{}
	}
	g.srv.http[srv] = struct{}{}
	g.srv.mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return ErrClosed
	}
	return err
}

// stopServing closes every listener and lets connections finish their
// current request (keep-alive ends); with ctx done it closes them at once.
func (g *Gateway) stopServing(ctx context.Context) error {
	g.srv.mu.Lock()
	g.srv.closed.Store(true)
	srvs := make([]*http.Server, 0, len(g.srv.http))
	for s := range g.srv.http {
		srvs = append(srvs, s)
	}
	g.srv.mu.Unlock()
	var first error
	if err := g.stopNative(ctx.Done()); err != nil {
		first = err
	}
	for _, s := range srvs {
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// Close closes every listener and client connection at once, and the idle
// upstream connections.
func (g *Gateway) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.BeginShutdown()
	g.stopServing(ctx)
	g.closeUpgrades()
	g.closeIdleUpstreams()
	return nil
}

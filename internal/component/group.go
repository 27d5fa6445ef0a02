// Package component runs the long-lived parts of a daemon (caches,
// listeners, background jobs) as goroutines and keeps the first failure.
// The gateway and the controller both assemble themselves from such parts.
package component

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/zkgate/zkgate/internal/zksession"
)

// Group runs components. The zero value is not usable: call NewGroup.
//
// A component's function returning nil, context.Canceled,
// http.ErrServerClosed or zksession.ErrClosed has stopped as asked; any
// other error is a failure: it is logged, the first one is kept (Err) and
// Failed is closed.
type Group struct {
	log  *slog.Logger
	kind string

	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
	failed chan struct{}
	once   sync.Once
}

// NewGroup returns a group whose failures are logged as "<kind> component
// stopped".
func NewGroup(log *slog.Logger, kind string) *Group {
	return &Group{log: log, kind: kind, failed: make(chan struct{})}
}

// Go runs f in a goroutine as the component named what.
func (g *Group) Go(what string, f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := f()
		if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, http.ErrServerClosed) || errors.Is(err, zksession.ErrClosed) {
			return
		}
		g.log.Error(g.kind+" component stopped", "component", what, "err", err)
		g.mu.Lock()
		if g.err == nil {
			g.err = fmt.Errorf("%s: %w", what, err)
		}
		g.mu.Unlock()
		g.once.Do(func() { close(g.failed) })
	}()
}

// Wait waits for every component to return.
func (g *Group) Wait() { g.wg.Wait() }

// Err returns the first failure, nil if none.
func (g *Group) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Failed is closed at the first failure.
func (g *Group) Failed() <-chan struct{} { return g.failed }

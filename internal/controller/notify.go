package controller

import (
	"context"
	"sync"
)

// notifier wakes every waiter at once. The caches' Updates channels hold
// one signal for one reader; the controller has many readers (waiting
// drains, the jobs), so one goroutine turns cache updates into broadcasts.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func newNotifier() *notifier { return &notifier{ch: make(chan struct{})} }

// Wait returns a channel closed at the next Broadcast. Take it before
// looking at the state it guards, so that no change is missed.
func (n *notifier) Wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

// Broadcast wakes every current waiter.
func (n *notifier) Broadcast() {
	n.mu.Lock()
	defer n.mu.Unlock()
	close(n.ch)
	n.ch = make(chan struct{})
}

// fanout broadcasts every update of the registry, marks and presence
// caches and every session state change until ctx ends.
func (c *Controller) fanout(ctx context.Context) error {
	for {
		changed := c.sess.Changed()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.reg.Updates():
		case <-c.marks.Updates():
		case <-c.presence.Updates():
		case <-c.presence.Probed():
		case <-changed:
		}
		c.changed.Broadcast()
	}
}

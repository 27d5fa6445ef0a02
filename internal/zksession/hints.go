package zksession

import (
	"strings"
	"sync"
)

// Hints delivers coalesced watch events and session changes to one
// consumer. A hint says only "something here may have changed": the
// consumer re-reads what it cares about, so coalescing never loses
// information.
//
// Contract: after any watch event for a path under the prefix, or any
// session transition, C receives a value (it has capacity one, so several
// events may produce one wake-up); the next Take returns everything that
// accumulated since the previous Take. C is closed when the session or the
// Hints is closed; after that Take returns an empty Batch.
type Hints struct {
	prefix string
	c      chan struct{}

	mu     sync.Mutex
	batch  Batch
	closed bool
}

// Batch is what accumulated between two Take calls.
type Batch struct {
	// Paths had watch events (of any type).
	Paths map[string]struct{}
	// Deleted holds the paths of Paths whose latest event said the node
	// was deleted: unless something re-created it since (which its
	// parent's child watch reports), it is gone, and need not be read to
	// find out.
	Deleted map[string]struct{}
	// Reconnected: the client (re)connected; anything may have been missed
	// while it was disconnected, so a full resync is due.
	Reconnected bool
	// NewSession: the session is a new one; ephemerals and watches of the
	// old one are gone. Implies Reconnected.
	NewSession bool
	// Lost: the session was lost (ephemerals and watches are gone); a new
	// one is being established.
	Lost bool
}

// Empty reports whether the batch holds nothing.
func (b Batch) Empty() bool {
	return len(b.Paths) == 0 && !b.Reconnected && !b.NewSession && !b.Lost
}

// Hints registers a consumer of watch events for paths equal to prefix or
// below it. Call Close when done.
func (s *Session) Hints(prefix string) *Hints {
	h := &Hints{prefix: strings.TrimSuffix(prefix, "/"), c: make(chan struct{}, 1)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		h.close()
		return h
	}
	s.hints[h] = struct{}{}
	return h
}

// RemoveHints unregisters and closes h.
func (s *Session) RemoveHints(h *Hints) {
	s.mu.Lock()
	delete(s.hints, h)
	s.mu.Unlock()
	h.close()
}

// C is signalled when a batch is waiting.
func (h *Hints) C() <-chan struct{} { return h.c }

// Take returns and clears the accumulated batch.
func (h *Hints) Take() Batch {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.batch
	h.batch = Batch{}
	return b
}

func (h *Hints) signalLocked() {
	select {
	case h.c <- struct{}{}:
	default:
	}
}

// add applies f to the pending batch and signals the reader, unless the
// hints are closed.
func (h *Hints) add(f func(b *Batch)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	f(&h.batch)
	h.signalLocked()
}

func (h *Hints) addPath(p string, deleted bool) {
	if p != h.prefix && !strings.HasPrefix(p, h.prefix+"/") && h.prefix != "" {
		return
	}
	h.add(func(b *Batch) {
		if b.Paths == nil {
			b.Paths = map[string]struct{}{}
		}
		b.Paths[p] = struct{}{}
		if deleted {
			if b.Deleted == nil {
				b.Deleted = map[string]struct{}{}
			}
			b.Deleted[p] = struct{}{}
		} else {
			delete(b.Deleted, p)
		}
	})
}

func (h *Hints) addSession(newSession bool) {
	h.add(func(b *Batch) {
		b.Reconnected = true
		b.NewSession = b.NewSession || newSession
	})
}

func (h *Hints) addLost() {
	h.add(func(b *Batch) { b.Lost = true })
}

func (h *Hints) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	h.batch = Batch{}
	close(h.c)
}

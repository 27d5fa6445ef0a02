package gateway

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Passive outlier detection: a host that fails ejectAfter connection
// attempts in a row is taken out of rotation for ejectBase, doubling with
// every ejection that follows without a success in between, up to ejectMax.
//
// One ejection per failure episode: the requests already sent to a dying
// host fail together, and only those that started after its last ejection
// ended count towards the next one (see connFailed). A new registration at
// the address (a new process) starts with no ejection and no backoff.
const (
	ejectAfter = 3
	ejectBase  = 10 * time.Second
	ejectMax   = 2 * time.Minute

	// minWeight is the weight a warming host starts at; it ramps linearly
	// to 1 over the configured warm-up.
	minWeight = 0.1
)

// Host flags, stored by the table builder (see rebuildLocked for when).
const (
	// flagMarked: a drain mark applies to the host (fail-open or not).
	flagMarked uint32 = 1 << iota
	// flagExcluded: the host is not in the rotation of the latest table. A
	// request that picked it from an older table undoes its in-flight count
	// and picks again.
	flagExcluded

	// flagDraining: a mark keeps the host out of rotation (it is not failed
	// open to). Every change of its in-flight count signals
	// Gateway.Updates, since confirmed drains wait for it to reach zero.
	flagDraining = flagMarked | flagExcluded
)

// host is the state zkgate keeps for one address of one service. It
// outlives routing tables: the table builder carries it over while the
// address stays in the registry (and, while requests to it are still in
// flight, after it left), the way Caddy's host pool keeps upstream state
// across config reloads. Everything the request path touches is atomic.
type host struct {
	service string
	addr    string
	changes chan struct{} // Gateway.changes

	inflight atomic.Int64
	flags    atomic.Uint32
	drainGen atomic.Uint64 // drains begun, for the cutoff (cut.go)

	fails        atomic.Int32 // consecutive connection failures of the current episode
	ejections    atomic.Int32 // ejections since the last success, for the backoff
	ejectedUntil atomic.Int64 // unix ns; 0 when never ejected
	// episode numbers failure episodes. A request reads it when it takes
	// h (exchange.episode) and hands it back to connFailed, which ignores
	// failures of an earlier episode. It changes when h is ejected, when a
	// failure finds the last ejection over, and on a new registration.
	episode   atomic.Uint32
	ejectMu   sync.Mutex   // serializes connFailed's ejection decision and resetEjection
	ejectEp   uint32       // guarded by ejectMu: the episode the last ejection started
	warmStart atomic.Int64 // unix ns the warm-up began; 0 when not warming

	requests atomic.Uint64 // responses received from the host
	failures atomic.Uint64 // connection failures
	// For the traffic view (GET /admin/traffic): exchanges with the host
	// that ended without a usable response (refused, reset, timed out,
	// malformed), and responses with a 5xx status. One atomic add each.
	failed    atomic.Uint64
	status5xx atomic.Uint64

	conns connPool // idle upstream connections (native engine)

	// What the event loops dial (resolve.go): ip when addr is an IP
	// address; otherwise the last lookup of its host name, the index of
	// the looked-up address to dial, and whether a lookup is running.
	// lookupEpoch is bumped when a new registration makes the lookup
	// stale (forgetLookup): a lookup begun before drops its answer.
	ip          netip.AddrPort
	lookup      atomic.Pointer[lookup]
	dialNext    atomic.Uint32
	looking     atomic.Bool
	lookupEpoch atomic.Uint64

	// Guarded by Gateway.mu; only the table builder uses them.
	czxid   int64 // registration the host was last seen with
	inRot   bool  // in rotation in the latest table
	present bool  // in the registry in the latest table
	marked  bool  // a mark applied in the latest table
}

func newHost(service, addr string, changes chan struct{}) *host {
	h := &host{service: service, addr: addr, changes: changes}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		h.ip = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return h
}

// signal tells Gateway.Updates' reader that something changed, without
// blocking.
func (h *host) signal() {
	select {
	case h.changes <- struct{}{}:
	default:
	}
}

// acquire counts one request in flight to h. It returns false, with the
// count undone, when h is no longer in rotation (the caller picked it from
// a table older than the latest one) and the caller must pick again.
//
// The count is incremented before the flags are read, and the table
// builder stores flagExcluded before it publishes a table to the readers of
// state (and, for a host leaving the registry, before it reads the count).
// Atomics being sequentially consistent, a reader that sees such a table
// and then reads a count of n has seen every request that acquired h
// successfully: a later acquire reads flagExcluded and undoes itself. So
// once a marked host that is not failed open is reported with nothing in
// flight, nothing is ever sent to it again (until a later table puts it
// back in rotation).
//
// acquire never signals Updates: a successful acquire is never on a
// draining host, and traffic to a host that is failed open to is not
// reported as it happens (that would be a presence write per request).
func (h *host) acquire() bool {
	h.inflight.Add(1)
	if h.flags.Load()&flagExcluded == 0 {
		return true
	}
	h.release() // the undo may end a "draining" that a report saw
	return false
}

// release ends one request counted by acquire. It signals Updates when a
// mark keeps h out of rotation: confirmed drains wait for its count to
// reach zero.
func (h *host) release() {
	h.inflight.Add(-1)
	if h.flags.Load()&flagDraining == flagDraining {
		h.signal()
	}
}

// succeeded records a response from h: the consecutive failure count is
// reset, and so is the ejection backoff once the host is out of ejection
// (which also opens a new failure episode, see connFailed).
func (h *host) succeeded(now func() time.Time) {
	h.requests.Add(1)
	if h.fails.Load() != 0 {
		h.fails.Store(0)
	}
	if h.ejections.Load() != 0 {
		h.endEjection(now().UnixNano())
	}
}

// responded counts a 5xx response of h (the traffic view's errors).
func (h *host) responded(status int) {
	if status >= 500 {
		h.status5xx.Add(1)
	}
}

// endEjection resets the backoff and opens a new failure episode when the
// last ejection is over at now.
func (h *host) endEjection(now int64) {
	h.ejectMu.Lock()
	defer h.ejectMu.Unlock()
	if u := h.ejectedUntil.Load(); u != 0 && now < u {
		return
	}
	if h.ejectEp == h.episode.Load() {
		h.episode.Add(1)
	}
	h.ejections.Store(0)
}

// connFailed records a connection failure of a request that took h in
// episode ep (h.episode when it took h) and reports for how long h was
// ejected because of it (0 when it was not).
//
// Failures count towards an ejection only when the request started in the
// current episode, after the last ejection ended: a request that took h
// before its ejection, or while it was ejected (the last resort of a pool
// whose every host is ejected), fails with the episode already acted on
// and neither ejects h again nor doubles the backoff. The backoff doubles
// when h fails ejectAfter times again after its ejection ended with no
// success in between (succeeded resets it).
func (h *host) connFailed(ep uint32, now int64) time.Duration {
	h.failures.Add(1)
	h.ejectMu.Lock()
	defer h.ejectMu.Unlock()
	cur := h.episode.Load()
	if u := h.ejectedUntil.Load(); u != 0 && h.ejectEp == cur {
		if now < u {
			return 0 // ejected: this failure belongs to the episode acted on
		}
		// The ejection is over: a new episode starts with this failure;
		// requests that took h before now are still from the old one.
		cur = h.episode.Add(1)
		h.fails.Store(0)
	}
	if ep != cur {
		return 0
	}
	if h.fails.Add(1) < ejectAfter {
		return 0
	}
	h.fails.Store(0)
	n := h.ejections.Add(1)
	d := ejectMax
	if n <= 4 {
		d = min(ejectBase<<(n-1), ejectMax)
	}
	h.ejectedUntil.Store(now + int64(d))
	h.ejectEp = h.episode.Add(1)
	return d
}

// resetEjection forgets h's failures, ejection and backoff: a new
// registration at its address is a new process. Requests that took h
// before are of an earlier episode; their failures are not counted.
func (h *host) resetEjection() {
	h.ejectMu.Lock()
	defer h.ejectMu.Unlock()
	h.episode.Add(1)
	h.fails.Store(0)
	h.ejections.Store(0)
	h.ejectedUntil.Store(0)
}

// ejectedAt reports whether h is ejected at now (unix ns).
func (h *host) ejectedAt(now int64) bool {
	u := h.ejectedUntil.Load()
	return u != 0 && now < u
}

// weightAt returns h's balancing weight at now (unix ns): 1, or during a
// warm-up of length warmup (ns) a value ramping linearly from minWeight.
func (h *host) weightAt(now, warmup int64) float64 {
	ws := h.warmStart.Load()
	if ws == 0 {
		return 1
	}
	el := now - ws
	if el >= warmup {
		h.warmStart.CompareAndSwap(ws, 0) // done: later picks skip the clock
		return 1
	}
	if el < 0 {
		el = 0
	}
	return minWeight + (1-minWeight)*float64(el)/float64(warmup)
}

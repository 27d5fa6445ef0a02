package gateway

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// Instances registered by host name (Spring Cloud Zookeeper registers the
// host name unless preferIpAddress is set). The goroutine engine dials
// the name, so every new connection looks it up. The event loops cannot
// wait for a lookup: they dial the addresses the last lookup found, kept
// per host for gateway.dns_refresh, after which the next dial starts a
// lookup in the background and goes on with the old addresses until it
// answers. Until a host's first lookup has answered, a connection to it
// is handed to a goroutine (zkgate_loop_handoffs_total{reason="connect"}),
// as is one whose connecting failed; a failed connection also moves the
// host on to the next address of the lookup and starts a new one. A new
// registration at the address (a new czxid: most likely a new process,
// maybe with a new address under the same name) forgets the lookup, as if
// the name had never been looked up.
//
// The address a request is sent to never changes its identity: marks,
// in-flight counts and presence reports stay those of the registered
// host:port.

// lookupTimeout bounds one lookup of an instance's host name.
const lookupTimeout = 5 * time.Second

// lookupRetry is how soon a failed lookup is tried again (at most; sooner
// when gateway.dns_refresh is shorter).
const lookupRetry = 5 * time.Second

// lookup is the answer of one lookup of a host's name. It is immutable.
type lookup struct {
	addrs   []netip.Addr
	port    uint16
	expires int64 // unix ns; a dial after it starts the next lookup
	at      int64 // unix ns the lookup answered (or failed)
	failing bool  // the last lookup failed: addrs are an earlier answer's
}

// dialAddr returns the address an event loop dials for h (nowNs is the
// loop's clock), and false when there is none yet: the host name has not
// been looked up. It never blocks; it may start a lookup.
func (g *Gateway) dialAddr(h *host, nowNs int64) (netip.AddrPort, bool) {
	if h.ip.IsValid() {
		return h.ip, true
	}
	lk := h.lookup.Load()
	if lk == nil || nowNs >= lk.expires {
		g.startLookup(h)
	}
	if lk == nil || len(lk.addrs) == 0 {
		return netip.AddrPort{}, false
	}
	a := lk.addrs[int(h.dialNext.Load()%uint32(len(lk.addrs)))]
	return netip.AddrPortFrom(a, lk.port), true
}

// lookedUp reports whether a is one of the addresses of h's latest lookup.
func (h *host) lookedUp(a netip.Addr) bool {
	lk := h.lookup.Load()
	return lk != nil && slices.Contains(lk.addrs, a)
}

// dialFailed notes that an event loop could not connect to h: a host
// registered by name moves on to the next address of its lookup and is
// looked up again, no sooner than lookupRetry after the last lookup (an
// address that keeps refusing does not make lookups back to back).
func (g *Gateway) dialFailed(h *host) {
	if h.ip.IsValid() {
		return
	}
	h.dialNext.Add(1)
	if lk := h.lookup.Load(); lk != nil {
		if due := lk.at + int64(lookupRetry); due < lk.expires {
			stale := *lk
			stale.expires = due
			h.lookup.CompareAndSwap(lk, &stale)
		}
	}
}

// forgetLookup drops what h's name was last looked up to, and the answer
// of any lookup of it already running: a new registration at the address
// is most likely a new process, which may have a new address under the
// same name (and the old address may be someone else's by now). Until a
// new lookup answers, connections to h go through goroutines, which dial
// the name.
func (h *host) forgetLookup() {
	if h.ip.IsValid() {
		return
	}
	h.lookupEpoch.Add(1) // before the store: see storeLookup
	h.lookup.Store(nil)
}

// storeLookup stores lk as h's lookup unless forgetLookup ran since the
// lookup began (epoch is lookupEpoch then). forgetLookup bumps the epoch
// before it stores nil, so either this sees the new epoch, or its store
// comes first and is replaced by forgetLookup's.
func (h *host) storeLookup(lk *lookup, epoch uint64) bool {
	for {
		if h.lookupEpoch.Load() != epoch {
			return false
		}
		cur := h.lookup.Load()
		if h.lookup.CompareAndSwap(cur, lk) {
			return true
		}
	}
}

// startLookup looks h's name up in the background, unless a lookup of it
// is already running.
func (g *Gateway) startLookup(h *host) {
	if !h.looking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer h.looking.Store(false)
		ctx, cancel := context.WithTimeout(g.lookupCtx, lookupTimeout)
		defer cancel()
		g.lookUp(ctx, h)
	}()
}

// lookUp resolves h's host name and stores the answer. A failed lookup
// keeps the addresses of the last one that answered, and is tried again
// after lookupRetry or dns_refresh, whichever is shorter.
func (g *Gateway) lookUp(ctx context.Context, h *host) {
	epoch := h.lookupEpoch.Load()
	prev := h.lookup.Load()
	name, portText, err := net.SplitHostPort(h.addr)
	var port uint64
	if err == nil {
		port, err = strconv.ParseUint(portText, 10, 16)
	}
	var addrs []netip.Addr
	if err == nil {
		addrs, err = g.resolver.LookupNetIP(ctx, "ip", name)
		if err == nil && len(addrs) == 0 {
			err = &net.DNSError{Err: "no addresses", Name: name, IsNotFound: true}
		}
	}
	now := time.Now().UnixNano()
	if err != nil && g.lookupCtx.Err() != nil {
		return // the gateway is closed
	}
	if err != nil {
		g.metrics.lookups[lookupFailed].Inc()
		if prev == nil || !prev.failing {
			g.log.Warn("looking up an instance's host name failed; its connections go through goroutines until a lookup answers",
				"service", h.service, "addr", h.addr, "err", err)
		}
		next := &lookup{expires: now + int64(min(lookupRetry, g.cfg.DNSRefresh)), at: now, failing: true}
		if prev != nil {
			next.addrs, next.port = prev.addrs, prev.port
		}
		h.storeLookup(next, epoch)
		return
	}
	g.metrics.lookups[lookupAnswered].Inc()
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	if h.storeLookup(&lookup{addrs: addrs, port: uint16(port), expires: now + int64(g.cfg.DNSRefresh), at: now}, epoch) &&
		(prev == nil || !slices.Equal(prev.addrs, addrs)) {
		h.dialNext.Store(0)
	}
}

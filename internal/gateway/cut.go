package gateway

import (
	"time"
)

// Cutting exchanges that hold a drain. A drain is confirmed when no
// request is in flight to the instance; a client that sends its body or
// reads its response slowly enough keeps one in flight for as long as it
// likes (each read or write within the client timeouts). So once a mark
// keeps an instance out of rotation, the requests still in flight to it
// get gateway.drain_cutoff to end; then their client connections are
// closed, which ends the exchanges and their in-flight counts. The README
// ("Draining") states the bound.

// setFlags stores h's flags for a new table (rebuildLocked, g.mu held)
// and arms the cutoff when h starts draining.
func (g *Gateway) setFlags(h *host, f uint32, now time.Time) {
	old := h.flags.Swap(f)
	if f&flagDraining != flagDraining || old&flagDraining == flagDraining || g.cfg.DrainCutoff < 0 {
		return
	}
	gen := h.drainGen.Add(1)
	time.AfterFunc(g.cfg.DrainCutoff, func() { g.cutDrained(h, gen) })
}

// cutDrained closes the client connections whose exchange is with h, when
// h is still draining since the drain numbered gen began.
func (g *Gateway) cutDrained(h *host, gen uint64) {
	if h.drainGen.Load() != gen || h.flags.Load()&flagDraining != flagDraining || h.inflight.Load() == 0 {
		return
	}
	n := 0
	g.srv.mu.Lock()
	for c := range g.srv.native.conns {
		if c.cur.Load() != h {
			continue
		}
		n++
		if c.loop != nil {
			c.killed.Store(true) // its loop closes it within a scan
		} else {
			c.nc.Close()
		}
	}
	g.srv.mu.Unlock()
	g.upMu.Lock()
	for u := range g.upgrades {
		if t, ok := u.(*tunnel); ok && t.h == h {
			n++
			go t.Close()
		}
	}
	g.upMu.Unlock()
	if n > 0 {
		if s := g.serviceNamed(h.service); s != nil {
			s.metrics.drainCuts.Add(uint64(n))
		}
		g.log.Warn("cut requests still in flight to a drained instance after gateway.drain_cutoff",
			"service", h.service, "addr", h.addr, "requests", n, "cutoff", g.cfg.DrainCutoff)
	}
}

// serviceNamed returns the routed service called name, or nil.
func (g *Gateway) serviceNamed(name string) *service {
	for _, s := range g.services {
		if s.name == name {
			return s
		}
	}
	return nil
}

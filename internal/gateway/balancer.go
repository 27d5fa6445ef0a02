package gateway

import (
	"math/rand/v2"
	"time"

	"github.com/zkgate/zkgate/internal/config"
)

// balancer names a selection policy. A policy picks the host for one
// attempt of a request from a pool's rotation. Its contract:
//
//   - it returns a host that pickState allows: not tried yet by this
//     request and, while any other such host is left, not ejected; or nil
//     when every host was tried;
//   - it prefers hosts by their warm-up weight (weight 1 when not warming);
//   - it must be safe for concurrent use, must not block and must not
//     allocate: it runs on every request.
//
// Policies are switched on rather than called through an interface so that
// the per-request pickState stays on the stack.
type balancer uint8

const (
	// leastRequests picks the less loaded of two random hosts (power of two
	// choices), comparing in-flight requests relative to weight.
	leastRequests balancer = iota
	// roundRobin walks the rotation in order; a warming host is skipped
	// with probability 1-weight.
	roundRobin
)

func parseBalancer(s string) (balancer, bool) {
	switch s {
	case "", config.BalancerLeastRequests:
		return leastRequests, true
	case config.BalancerRoundRobin:
		return roundRobin, true
	}
	return 0, false
}

// maxTried bounds the hosts a request remembers having tried: retries (at
// most 10) plus hosts skipped because they left rotation mid-pick.
const maxTried = 16

// pickState is what one request knows while picking: the hosts it tried
// and, read lazily once, the clock.
type pickState struct {
	nowFn  func() time.Time
	now    int64 // unix ns; 0 until needed
	warmup int64 // ns; 0: no warm-up
	n      int
	tried  [maxTried]*host
}

func (ps *pickState) clock() int64 {
	if ps.now == 0 {
		ps.now = ps.nowFn().UnixNano()
	}
	return ps.now
}

func (ps *pickState) addTried(h *host) {
	if ps.n < maxTried {
		ps.tried[ps.n] = h
		ps.n++
	}
}

func (ps *pickState) wasTried(h *host) bool {
	for i := 0; i < ps.n; i++ {
		if ps.tried[i] == h {
			return true
		}
	}
	return false
}

func (ps *pickState) ejected(h *host) bool {
	return h.ejectedUntil.Load() != 0 && h.ejectedAt(ps.clock())
}

func (ps *pickState) usable(h *host) bool {
	return !ps.wasTried(h) && !ps.ejected(h)
}

func (ps *pickState) weight(h *host) float64 {
	if h.warmStart.Load() == 0 {
		return 1
	}
	return h.weightAt(ps.clock(), ps.warmup)
}

// pick runs the pool's policy.
func (p *pool) pick(ps *pickState) *host {
	if p.balancer == roundRobin {
		return p.pickRoundRobin(ps)
	}
	return pickLeastRequests(p.active, ps)
}

func pickLeastRequests(hosts []*host, ps *pickState) *host {
	n := len(hosts)
	switch n {
	case 0:
		return nil
	case 1:
		if ps.wasTried(hosts[0]) {
			return nil
		}
		return hosts[0] // ejection never empties a pool
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := hosts[i], hosts[j]
	ua, ub := ps.usable(a), ps.usable(b)
	switch {
	case ua && ub:
		return ps.better(a, b)
	case ua:
		return a
	case ub:
		return b
	}
	return scanLeast(hosts, ps, i)
}

// better returns the less loaded of a and b. With equal weights that is the
// one with fewer requests in flight (a, itself random, on a tie). With
// different weights (warm-up) the choice is random, a being chosen with
// probability proportional to b's load score (in-flight+1)/weight, so that
// a warming host gets a share of traffic even when everything is idle.
func (ps *pickState) better(a, b *host) *host {
	wa, wb := ps.weight(a), ps.weight(b)
	ia, ib := a.inflight.Load(), b.inflight.Load()
	if wa == wb {
		if ib < ia {
			return b
		}
		return a
	}
	sa := float64(ia+1) / wa
	sb := float64(ib+1) / wb
	if rand.Float64()*(sa+sb) < sb {
		return a
	}
	return b
}

// scanLeast is the slow path of least-requests when both random choices
// were unusable: the least loaded usable host, or, when every untried host
// is ejected, the least loaded ejected one.
func scanLeast(hosts []*host, ps *pickState, start int) *host {
	n := len(hosts)
	var best *host
	var bestScore float64
	for pass := 0; pass < 2 && best == nil; pass++ {
		for k := 0; k < n; k++ {
			idx := start + k
			if idx >= n {
				idx -= n
			}
			h := hosts[idx]
			if ps.wasTried(h) || (pass == 0 && ps.ejected(h)) {
				continue
			}
			s := float64(h.inflight.Load()+1) / ps.weight(h)
			if best == nil || s < bestScore {
				best, bestScore = h, s
			}
		}
	}
	return best
}

func (p *pool) pickRoundRobin(ps *pickState) *host {
	hosts := p.active
	n := len(hosts)
	if n == 0 {
		return nil
	}
	start := int(p.rr.Add(1) % uint64(n))
	var skippedWarm, skippedEjected *host
	for k := 0; k < n; k++ {
		idx := start + k
		if idx >= n {
			idx -= n
		}
		h := hosts[idx]
		if ps.wasTried(h) {
			continue
		}
		if ps.ejected(h) {
			if skippedEjected == nil {
				skippedEjected = h
			}
			continue
		}
		if w := ps.weight(h); w < 1 && rand.Float64() >= w {
			if skippedWarm == nil {
				skippedWarm = h
			}
			continue
		}
		return h
	}
	if skippedWarm != nil {
		return skippedWarm
	}
	return skippedEjected
}

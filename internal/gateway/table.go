package gateway

import (
	"maps"
	"sort"
	"sync/atomic"
	"time"

	"github.com/zkgate/zkgate/internal/instancestate"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/registry"
)

// The instance states (docs/architecture.md#instance-states) are
// instancestate's, as InstanceStatus.State and the state label of
// zkgate_instances; stateNames orders them for the per-state counts.
var stateNames = [...]string{instancestate.Warming, instancestate.Serving, instancestate.Draining, instancestate.Drained, instancestate.Down, instancestate.Ejected, instancestate.Gone}

const numStates = len(stateNames)

func stateIndex(s string) int {
	for i, n := range stateNames {
		if n == s {
			return i
		}
	}
	return 0
}

// InstanceStatus is what the gateway knows about one instance of a routed
// service.
type InstanceStatus struct {
	Service string `json:"service"`
	Addr    string `json:"addr"`
	// State is one of the State* constants.
	State string `json:"state"`
	// InFlight counts requests sent to the instance whose response has not
	// ended yet (upgraded connections count until they close).
	InFlight int64 `json:"in_flight"`
	// Marked: a drain mark applies to the instance (zxid rule, not
	// expired).
	Marked       bool   `json:"marked"`
	MarkReason   string `json:"mark_reason,omitempty"`
	MarkDeployID string `json:"mark_deploy_id,omitempty"`
	// FailOpen: the instance is marked but still takes requests, because
	// every instance of its service is marked.
	FailOpen bool `json:"fail_open,omitempty"`
	// MarkPending: a mark of the address was written and is not read yet;
	// the instance takes no new requests meanwhile (weight 0) unless
	// every instance of its service is marked or pending.
	MarkPending bool `json:"mark_pending,omitempty"`
	// Weight is the balancing weight: 1, less while warming, 0 when the
	// instance takes no new requests.
	Weight float64 `json:"weight"`
	// Status is the registry's instance_status.
	Status     string    `json:"status,omitempty"`
	Czxid      int64     `json:"czxid"`
	Registered time.Time `json:"registered"`
	// Requests counts responses received from the address, ConnectFailures
	// failed attempts to connect or exchange with it, since the gateway
	// first saw it (reset when the address leaves the registry).
	Requests        uint64 `json:"requests"`
	ConnectFailures uint64 `json:"connect_failures"`
	// Failed counts exchanges that ended without a usable response
	// (refused, reset, timed out, malformed), Status5xx responses with a
	// 5xx status (the traffic view, GET /admin/traffic).
	Failed    uint64 `json:"failed"`
	Status5xx uint64 `json:"status_5xx"`
}

// service is a service some route sends to. Services are fixed for the
// life of a Gateway.
type service struct {
	name    string
	idx     int              // index in table.pools
	warmup  int64            // ns, Gateway.warmup
	hosts   map[string]*host // by address; guarded by Gateway.mu
	metrics serviceMetrics

	body502 []byte
	body503 []byte
	body504 []byte
}

// table is one immutable routing table, swapped atomically by Update.
type table struct {
	pools    []*pool // by service.idx
	regRev   uint64
	marksRev uint64
	reg      *registry.Snapshot // the registry snapshot it was built from (may be nil)
	mk       *marks.Snapshot    // the marks snapshot it was built from (may be nil)
}

// pool is the routing state of one service in one table. A pool whose
// inputs did not change is shared by the next table (see
// rebuildLocked): nothing in it changes once a table holding it is
// published, apart from rr.
type pool struct {
	svc      *service
	balancer balancer
	members  []member   // every registered instance, in registry order
	active   []*host    // the rotation
	gone     []goneHost // left the registry, requests still in flight
	failOpen bool       // active holds marked instances
	rr       atomic.Uint64

	// What the pool was built from, to tell whether the next table may
	// share it (poolInputs.unchanged).
	in poolInputs
	// sorted: members are in address order (a registry snapshot's are),
	// so memberOf can search them.
	sorted bool
	// expiresMs is the earliest expiry (unix ms) of the marks that applied
	// in the pool when it was built (members and gone hosts); 0 if none.
	expiresMs int64
}

// poolInputs are the parts of the snapshots one service's pool is built
// from. Snapshots are immutable and share what did not change from one
// revision to the next (the registry shares the instance slice of every
// service that did not change, the marks cache the mark map of every
// service whose marks did not change: docs/architecture.md#registry-change-to-routing-table),
// so comparing them finds the services to rebuild without reading their
// instances.
type poolInputs struct {
	instances []registry.Instance
	marks     map[string]marks.Mark
	pending   map[string]struct{}
}

// inputsOf returns the inputs of service's pool in reg and mk. When old
// (the previous table, may be nil) was built from the same registry or
// marks snapshot, that part is taken from its pool at idx instead of
// being looked up: a registry change then costs one map look-up per
// routed service, a marks change two.
func inputsOf(reg *registry.Snapshot, mk *marks.Snapshot, old *table, idx int, service string) poolInputs {
	var in poolInputs
	if old != nil {
		in = old.pools[idx].in
	}
	if old == nil || old.reg != reg {
		in.instances = reg.Instances(service)
	}
	if old == nil || old.mk != mk {
		in.marks, in.pending = nil, nil
		if mk != nil {
			in.marks, in.pending = mk.Marks[service], mk.Pending[service]
		}
	}
	return in
}

// unchanged reports whether a pool built from a, at a time its marks all
// still applied at, would be built the same from b: the same instance
// slice (an immutable snapshot's slice is the same content), and the same
// marks and pending marks (compared by content: a service has few marks,
// and a full re-read of the marks makes new maps of the same content).
func (a poolInputs) unchanged(b poolInputs) bool {
	if len(a.instances) != len(b.instances) ||
		len(a.instances) > 0 && &a.instances[0] != &b.instances[0] {
		return false
	}
	if !maps.Equal(a.marks, b.marks) || len(a.pending) != len(b.pending) {
		return false
	}
	for addr := range a.pending {
		if _, ok := b.pending[addr]; !ok {
			return false
		}
	}
	return true
}

// reusable reports whether the next table may share p, built from in at
// nowMs: its inputs did not change, none of its marks expired since, and
// it holds no host that left the registry (those are dropped by the next
// rebuild of their service once idle, as every rebuild did before pools
// were shared).
func (p *pool) reusable(in poolInputs, nowMs int64) bool {
	return p != nil && len(p.gone) == 0 &&
		(p.expiresMs == 0 || nowMs < p.expiresMs) &&
		p.in.unchanged(in)
}

// markInfo is what InstanceStatus shows of a mark.
type markInfo struct{ reason, deployID string }

// goneHost is a host that left the registry, with what the builder knew
// of it (its mutable fields belong to the builder).
type goneHost struct {
	h      *host
	czxid  int64
	marked bool
	// inc is the incarnation of its last registration (the flap rule of
	// marks.Mark.EndedBy needs it).
	inc string
}

type member struct {
	h      *host
	inst   *registry.Instance
	marked bool
	// mark is what the reports show of the applying mark (nil unless
	// marked): kept apart so that an unmarked member costs one pointer.
	mark *markInfo
	// pending: a mark of the address was written but is not read yet
	// (marks.Snapshot.Pending); it keeps the member out of rotation.
	pending bool
	active  bool
}

// lastIncarnation returns the registration incarnation t knew for addr of
// s: a member's, or a gone host's ("" when t is nil or does not know it).
func (t *table) lastIncarnation(s *service, addr string) string {
	if t == nil {
		return ""
	}
	pools := t.pools
	if i := s.idx; i < len(pools) && pools[i] != nil && pools[i].svc == s {
		pools = pools[i : i+1] // the usual case: the services did not change
	}
	for _, p := range pools {
		if p == nil || p.svc != s {
			continue
		}
		for k := range p.members {
			if p.members[k].h.addr == addr {
				return p.members[k].inst.Incarnation
			}
		}
		for _, gh := range p.gone {
			if gh.h.addr == addr {
				return gh.inc
			}
		}
	}
	return ""
}

// testHookPublished, when set (tests), runs in rebuildLocked after the new
// table is published to the request path and before the host flags of its
// members are stored.
var testHookPublished func()

// rebuildLocked builds a table from g.reg and g.mk at the current time and
// publishes it. g.mu must be held. The order of its stores is the protocol
// host.acquire relies on:
//
//  1. The table is published to the request path (g.table), so a request
//     that finds its pick excluded picks again from the new table. The
//     request path reads only a pool's rotation; gone (below) is filled
//     in after this store.
//  2. Hosts that left the registry get flagExcluded first; only then is
//     their in-flight count read. Those with nothing in flight are dropped
//     (no acquire can succeed on them any more: a request that picked one
//     from an older table undoes its count), the others are kept as gone
//     in this table and the next ones until they are idle.
//  3. The flags of the table's members are stored.
//  4. The table is published to the readers of state (g.reported:
//     InstanceStates, Applied, AppliedRevision, metrics), so no report is
//     ever built from a table whose flags are not in force yet; then
//     Updates is signalled.
//
// Only the pools of services whose inputs changed are built again (see
// pool.reusable): the new table shares the others with the previous one,
// and their hosts' flags and builder state stay as they are (a rebuild
// would store the same). A change to one service of a gateway routing
// thousands costs that service's instances, not every routed instance.
func (g *Gateway) rebuildLocked() {
	now := g.now()
	nowMs := now.UnixMilli()
	old := g.table.Load()
	t := &table{pools: make([]*pool, len(g.services)), reg: g.reg, mk: g.mk}
	if g.reg != nil {
		t.regRev = g.reg.Revision
	}
	if g.mk != nil {
		t.marksRev = g.mk.Revision
	}
	// The services built again, with their hosts before this rebuild.
	type rebuiltPool struct {
		i    int
		prev map[string]*host
	}
	var rebuilt []rebuiltPool
	for i, s := range g.services {
		in := inputsOf(g.reg, g.mk, old, i, s.name)
		if old != nil {
			if op := old.pools[i]; op.reusable(in, nowMs) {
				t.pools[i] = op
				continue
			}
		}
		rebuilt = append(rebuilt, rebuiltPool{i, s.hosts})
		t.pools[i] = g.buildPoolLocked(s, in, now, old == nil)
	}

	g.table.Store(t)
	if testHookPublished != nil {
		testHookPublished()
	}
	for _, r := range rebuilt {
		s, p := g.services[r.i], t.pools[r.i]
		for addr, h := range r.prev {
			if s.hosts[addr] != nil {
				continue
			}
			// Left the registry (now or earlier, and was still in flight
			// then). A mark written for the address applies to its last
			// registration by the zxid rule (and the flap rule).
			inc := old.lastIncarnation(s, addr)
			mk, hasMark := g.mk.Get(s.name, addr)
			marked := hasMark && mk.AppliesTo(registry.Instance{Addr: addr, Czxid: h.czxid, Incarnation: inc}, now)
			if marked && mk.ExpiresMs > 0 && (p.expiresMs == 0 || mk.ExpiresMs < p.expiresMs) {
				p.expiresMs = mk.ExpiresMs
			}
			h.present, h.inRot, h.marked = false, false, marked
			f := flagExcluded
			if marked {
				f |= flagMarked
			}
			// Excluded before the count is read: a request that acquires
			// h from an older table after this store undoes its count, so
			// a count of 0 read after it stays 0 for good.
			g.setFlags(h, f, now)
			if h.inflight.Load() > 0 {
				s.hosts[addr] = h
				p.gone = append(p.gone, goneHost{h, h.czxid, marked, inc})
			}
			h.conns.closeIdle() // excluded hosts pool nothing from now on
		}
		sort.Slice(p.gone, func(a, b int) bool { return p.gone[a].h.addr < p.gone[b].h.addr })
	}
	for _, r := range rebuilt {
		p := t.pools[r.i]
		for k := range p.members {
			m := &p.members[k]
			var f uint32
			if m.marked {
				f |= flagMarked
			}
			if !m.active {
				f |= flagExcluded
			}
			g.setFlags(m.h, f, now)
		}
	}
	var nextExpiry int64 // ms
	for _, p := range t.pools {
		if e := p.expiresMs; e > 0 && (nextExpiry == 0 || e < nextExpiry) {
			nextExpiry = e
		}
	}
	g.reported.Store(t)
	g.signal()
	g.scheduleExpiryLocked(nextExpiry, now)
}

// buildPoolLocked builds the pool of s from in at now (first: the
// gateway's first table) and makes s.hosts its members' hosts. Hosts that
// left the registry are the caller's (rebuildLocked). g.mu must be held.
func (g *Gateway) buildPoolLocked(s *service, in poolInputs, now time.Time, first bool) *pool {
	nowNs := now.UnixNano()
	ins := in.instances
	p := &pool{svc: s, balancer: g.balancer, members: make([]member, len(ins)), in: in, sorted: true}
	hosts := make(map[string]*host, len(ins))
	// Up but out of rotation: marked (a mark pending or not), or only
	// a mark pending.
	var markedUp, pendingUp []*host
	for k := range ins {
		in := &ins[k]
		if k > 0 && ins[k-1].Addr >= in.Addr {
			p.sorted = false
		}
		mk, hasMark := g.mk.Get(s.name, in.Addr)
		marked := hasMark && mk.AppliesTo(*in, now)
		if marked && mk.ExpiresMs > 0 && (p.expiresMs == 0 || mk.ExpiresMs < p.expiresMs) {
			p.expiresMs = mk.ExpiresMs
		}
		// A mark written but not read yet: out of rotation at once
		// (not marked: nothing is reported or confirmed for it until
		// its read decides whether it applies).
		pending := g.mk.IsPending(s.name, in.Addr)
		up := in.Up()
		inRot := up && !marked && !pending
		h := s.hosts[in.Addr]
		if h == nil {
			h = newHost(s.name, in.Addr, g.changes)
		}
		if g.warmup > 0 {
			switch {
			case pending:
				// Warm-up as it was: the read decides.
			case !inRot:
				h.warmStart.Store(0)
			case !h.present && first:
				// The gateway starts: only instances that registered
				// recently (by ctime, the best hint there is) warm up.
				if reg := in.Registered.UnixNano(); nowNs-reg < g.warmup {
					h.warmStart.Store(min(reg, nowNs))
				}
			case !h.present, h.czxid != in.Czxid, !h.inRot:
				// (Re)appeared, re-registered, or back in rotation.
				h.warmStart.Store(nowNs)
			}
		}
		if h.czxid != 0 && h.czxid != in.Czxid {
			// A new registration at the address: a new process, most
			// likely; connections to the old one are dead, and the old
			// one's failures and ejection are not the new one's.
			h.conns.closeIdle()
			h.resetEjection()
			// A new process may have a new address under the same host
			// name: look the name up again before the loops dial it.
			h.forgetLookup()
		}
		h.czxid, h.present, h.marked = in.Czxid, true, marked
		hosts[in.Addr] = h
		m := &p.members[k]
		m.h, m.inst, m.marked, m.pending = h, in, marked, pending
		if marked {
			m.mark = &markInfo{reason: mk.Reason, deployID: mk.DeployID}
		}
		if inRot {
			p.active = append(p.active, h)
			m.active = true
		} else if up && marked {
			markedUp = append(markedUp, h)
		} else if up {
			pendingUp = append(pendingUp, h)
		}
	}
	switch {
	case len(p.active) > 0:
	case len(pendingUp) > 0:
		// Every instance is out, some only by a mark not read yet:
		// they serve (nothing is marked among them, so this is not a
		// fail-open) rather than the marked ones or nobody.
		p.active = pendingUp
		for k := range p.members {
			if m := &p.members[k]; m.pending && !m.marked && m.inst.Up() {
				m.active = true
			}
		}
	case len(markedUp) > 0 && g.failOpen:
		p.active, p.failOpen = markedUp, true
		for k := range p.members {
			if m := &p.members[k]; m.marked && m.inst.Up() {
				m.active = true
			}
		}
	}
	for k := range p.members {
		// A pending member keeps its last rotation state for warm-up:
		// a mark that turns out not to apply restarts no warm-up.
		if m := &p.members[k]; !m.pending {
			m.h.inRot = m.active
		}
	}
	s.hosts = hosts
	return p
}

// scheduleExpiryLocked arranges a rebuild when the first applied mark
// expires, since expiry changes the table without any new snapshot.
func (g *Gateway) scheduleExpiryLocked(nextMs int64, now time.Time) {
	if g.expiry != nil {
		g.expiry.Stop()
		g.expiry = nil
	}
	if nextMs == 0 || g.closing.Load() {
		return
	}
	d := time.UnixMilli(nextMs).Sub(now) + time.Millisecond
	g.expiry = time.AfterFunc(d, g.refresh)
}

// refresh rebuilds the table from the last snapshots.
func (g *Gateway) refresh() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.loaded {
		g.rebuildLocked()
	}
}

// each reports every member and gone host of p at now (unix ns).
func (p *pool) each(now int64, fn func(InstanceStatus)) {
	for k := range p.members {
		fn(p.memberStatus(k, now))
	}
	for k := range p.gone {
		if st, ok := p.goneStatus(k); ok {
			fn(st)
		}
	}
}

// status reports the member or gone host of p at addr at now (unix ns),
// as each would; false when each reports nothing for addr.
func (p *pool) status(addr string, now int64) (InstanceStatus, bool) {
	if k, ok := p.memberOf(addr); ok {
		return p.memberStatus(k, now), true
	}
	k := sort.Search(len(p.gone), func(k int) bool { return p.gone[k].h.addr >= addr })
	if k < len(p.gone) && p.gone[k].h.addr == addr {
		return p.goneStatus(k)
	}
	return InstanceStatus{}, false
}

// memberOf returns the index of p's member at addr.
func (p *pool) memberOf(addr string) (int, bool) {
	if p.sorted {
		k := sort.Search(len(p.members), func(k int) bool { return p.members[k].h.addr >= addr })
		return k, k < len(p.members) && p.members[k].h.addr == addr
	}
	for k := range p.members {
		if p.members[k].h.addr == addr {
			return k, true
		}
	}
	return 0, false
}

// memberStatus reports member k of p at now (unix ns).
func (p *pool) memberStatus(k int, now int64) InstanceStatus {
	m := &p.members[k]
	h := m.h
	st := InstanceStatus{
		Service:         p.svc.name,
		Addr:            h.addr,
		InFlight:        h.inflight.Load(),
		Marked:          m.marked,
		Status:          m.inst.Status,
		Czxid:           m.inst.Czxid,
		Registered:      m.inst.Registered,
		Requests:        h.requests.Load(),
		ConnectFailures: h.failures.Load(),
		Failed:          h.failed.Load(),
		Status5xx:       h.status5xx.Load(),
	}
	if m.marked {
		st.MarkReason, st.MarkDeployID = m.mark.reason, m.mark.deployID
		st.FailOpen = m.active
	}
	st.MarkPending = m.pending
	switch {
	case !m.inst.Up():
		st.State = instancestate.Down
	case m.marked:
		st.State = instancestate.Drained
		if st.InFlight > 0 {
			st.State = instancestate.Draining
		}
		if m.active {
			st.Weight = 1
		}
	case h.ejectedAt(now):
		st.State = instancestate.Ejected
	default:
		st.Weight = h.weightAt(now, p.svc.warmup)
		st.State = instancestate.Serving
		if st.Weight < 1 {
			st.State = instancestate.Warming
		}
		if m.pending && !m.active {
			st.Weight = 0
		}
	}
	return st
}

// goneStatus reports gone host k of p; false when nothing is in flight to
// it any more (it is not reported then).
func (p *pool) goneStatus(k int) (InstanceStatus, bool) {
	gh := &p.gone[k]
	h := gh.h
	n := h.inflight.Load()
	if n == 0 {
		return InstanceStatus{}, false
	}
	return InstanceStatus{
		Service:         p.svc.name,
		Addr:            h.addr,
		State:           instancestate.Gone,
		InFlight:        n,
		Marked:          gh.marked,
		Czxid:           gh.czxid,
		Requests:        h.requests.Load(),
		ConnectFailures: h.failures.Load(),
		Failed:          h.failed.Load(),
		Status5xx:       h.status5xx.Load(),
	}, true
}

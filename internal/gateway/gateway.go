// Package gateway is zkgate's data plane: a reverse proxy whose routing
// table is the service registry minus the instances that are out of
// rotation (drain-marked, not UP, or ejected by passive outlier detection).
//
// The package is split by concern, like Caddy's reverseproxy module:
//
//	gateway.go   Gateway, Options, Update and the state accessors
//	routes.go    matching requests to routes (prefix, host, strip_prefix)
//	table.go     building immutable routing tables; instance states
//	hosts.go     per-address state kept across tables (in-flight, ejection, warm-up)
//	balancer.go  least-requests (power of two choices) and round robin
//	proxy.go     ServeHTTP, the retrying RoundTripper, body accounting
//	admin.go     /healthz /readyz /metrics /admin/instances
//	metrics.go   Prometheus collectors
//
// Routing state flows one way: the caller hands Update immutable registry
// and marks snapshots; Update builds a new table and swaps it in with an
// atomic store (a second one publishes it to the readers of state once the
// per-host flags it implies are stored: see rebuildLocked). The request
// path reads the current table with one atomic load and takes no lock of
// its own.
package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/registry"
)

// SyncStatus tells how fresh the routing state is, and whether the
// controller can see this gateway. Its methods are called on every /readyz:
// they must be cheap and safe for concurrent use.
type SyncStatus interface {
	// LastContact returns when the routing state was last known to match
	// ZooKeeper: time.Now() while the session is connected and the caches
	// are loaded, the moment the connection was lost while it is not. The
	// zero time means the state was never loaded.
	LastContact() time.Time
	// Detached returns why the controller may not be counting this
	// gateway, or "" when it is. It is non-empty from the moment the
	// ZooKeeper servers may have deleted the gateway's presence node (the
	// session is lost, or presumed lost because it has been disconnected
	// for long enough that the servers may have expired it) until a
	// session has written the node again; and while another session holds
	// the node (a duplicate gateway id). A controller confirms drains
	// without waiting for a gateway it cannot see, so a detached gateway
	// must not be sent traffic: /readyz answers 503 with this reason at
	// once, however recent LastContact is (stale_after bounds only how old
	// a state a visible gateway may route by). Routing itself goes on, on
	// the last table (static stability): only the fronting load balancer
	// is asked to move traffic away.
	Detached() string
}

// Options are a Gateway's collaborators. Every field is optional.
type Options struct {
	// Logger receives errors and routing events (never one line per
	// request that succeeded). Default: discard.
	Logger *slog.Logger
	// Registerer receives the gateway's metrics. Default: a new registry
	// of the gateway's own (never the global one).
	Registerer prometheus.Registerer
	// Gatherer serves /metrics. Default: Registerer when it is a Gatherer
	// (a *prometheus.Registry is), else the gateway's own registry.
	Gatherer prometheus.Gatherer
	// Sync drives /readyz staleness. Nil: the state never goes stale.
	Sync SyncStatus
	// Now is the clock for mark expiry, warm-up, ejection and staleness.
	// Default time.Now. (Request durations always use the real clock.)
	Now func() time.Time
	// Resolver looks up the host names instances registered with, for
	// the event loops (see resolve.go). Default net.DefaultResolver.
	Resolver registry.Resolver
}

// Gateway is the data plane. It is an http.Handler (the proxy); its admin
// endpoints are served by AdminHandler. Create it with New, feed it with
// Update.
type Gateway struct {
	cfg      config.Gateway
	log      *slog.Logger
	now      func() time.Time
	sync     SyncStatus
	gatherer prometheus.Gatherer
	metrics  *metrics

	routes   *routeSet
	services []*service
	byName   map[string]*service // services by name; fixed after New
	balancer balancer
	retries  int
	failOpen bool
	warmup   int64 // ns

	dialer   *dialer
	resolver registry.Resolver
	// lookupCtx bounds the lookups of instance host names (resolve.go);
	// stopLookups ends them when the gateway stops.
	lookupCtx   context.Context
	stopLookups context.CancelFunc
	bodyNoRoute []byte

	// table is the routing table of the request path. reported is the same
	// table, stored once the host flags it implies are in force: every
	// reader of state (InstanceStates, Applied, metrics) uses it.
	table    atomic.Pointer[table]
	reported atomic.Pointer[table]
	changes  chan struct{}
	closing  atomic.Bool

	mu     sync.Mutex // serializes table building
	reg    *registry.Snapshot
	mk     *marks.Snapshot
	loaded bool
	expiry *time.Timer

	upMu     sync.Mutex
	upgrades map[io.Closer]struct{}

	srv servers
}

// New builds a gateway for cfg. Unset keys get the defaults of package
// config, and cfg must pass config's checks (Gateway.Validate). It routes
// nothing until the first Update.
func New(cfg config.Gateway, opts Options) (*Gateway, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	bal, _ := parseBalancer(cfg.Balancer) // checked by Validate
	rs, err := newRouteSet(cfg.Routes)
	if err != nil {
		return nil, fmt.Errorf("gateway.%w", err)
	}

	g := &Gateway{
		cfg:         cfg,
		log:         opts.Logger,
		now:         opts.Now,
		sync:        opts.Sync,
		routes:      rs,
		balancer:    bal,
		retries:     *cfg.Retries,
		failOpen:    *cfg.FailOpen,
		warmup:      int64(cfg.Warmup),
		changes:     make(chan struct{}, 1),
		upgrades:    map[io.Closer]struct{}{},
		bodyNoRoute: []byte(`{"error":"no route"}`),
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.now == nil {
		g.now = time.Now
	}
	g.resolver = opts.Resolver
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	g.lookupCtx, g.stopLookups = context.WithCancel(context.Background())
	reg, gath := opts.Registerer, opts.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg = r
		if gath == nil {
			gath = r
		}
	}
	if gath == nil {
		if gg, ok := reg.(prometheus.Gatherer); ok {
			gath = gg
		} else {
			gath = prometheus.NewRegistry() // serves an empty /metrics
		}
	}
	g.gatherer = gath

	byName := map[string]*service{}
	g.byName = byName
	for _, rt := range rs.routes {
		s := byName[rt.service]
		if s == nil {
			s = g.newService(rt.service, len(g.services))
			byName[rt.service] = s
			g.services = append(g.services, s)
		}
		rt.svc = s
	}
	// After the services: the collectors read them at every scrape.
	if g.metrics, err = newMetrics(reg, g); err != nil {
		return nil, fmt.Errorf("registering gateway metrics: %w", err)
	}
	g.dialer = newDialer(cfg.DialTimeout)
	for _, rt := range rs.routes {
		g.metrics.forRoute(&rt.metrics, rt.name, rt.svc.name)
	}
	return g, nil
}

func (g *Gateway) newService(name string, idx int) *service {
	body := func(msg string) []byte {
		b, _ := json.Marshal(struct {
			Error   string `json:"error"`
			Service string `json:"service"`
		}{msg, name})
		return b
	}
	return &service{
		name:    name,
		idx:     idx,
		warmup:  g.warmup,
		hosts:   map[string]*host{},
		body502: body("upstream connection failed"),
		body503: body("no instance available"),
		body504: body("upstream timeout"),
	}
}

// Update builds a routing table from a registry and a marks snapshot and
// swaps it in. Either may be nil (nothing registered, nothing marked). The
// snapshots must not be modified afterwards: a service's instance slice
// that is the very slice of the previous registry snapshot is taken to be
// unchanged, and only the services whose instances or marks changed get
// their pools built again (see rebuildLocked). Per-address state
// (in-flight requests, ejection, warm-up) carries over from the previous
// table for every address still registered. Safe for concurrent use.
func (g *Gateway) Update(reg *registry.Snapshot, mk *marks.Snapshot) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reg, g.mk, g.loaded = reg, mk, true
	g.rebuildLocked()
}

// AppliedRevision returns the revisions of the registry and marks
// snapshots of the routing table in use (0, 0 before the first Update; 0
// for a nil snapshot).
func (g *Gateway) AppliedRevision() (reg, marks uint64) {
	if t := g.reported.Load(); t != nil {
		return t.regRev, t.marksRev
	}
	return 0, 0
}

// Updates returns a channel of capacity 1 that receives a value, sent
// without blocking (so several events merge into one), after every routing
// table is applied and whenever the in-flight count of an instance that a
// mark keeps out of rotation changes (a marked instance that is not failed
// open to, including one that left the registry). The reader re-reads
// Applied (or InstanceStates and AppliedRevision). The channel is never
// closed. Requests to instances that are in rotation, failed-open ones
// included, do not signal it.
//
// Guarantee for confirmed drains: when InstanceStates (or Applied) reports
// an instance Marked, not FailOpen, with InFlight n, every request that
// will ever be sent to it is among those n, until a later table puts it
// back in rotation. In particular, once it reports 0, nothing is sent to
// it any more. An instance that left the registry is reported (state gone)
// while anything is in flight to it; once it is not reported, nothing is
// in flight to it and nothing will be.
func (g *Gateway) Updates() <-chan struct{} { return g.changes }

func (g *Gateway) signal() {
	select {
	case g.changes <- struct{}{}:
	default:
	}
}

// InstanceStates returns every instance of every routed service, sorted by
// service and address, as of now. Instances that left the registry are
// included (state gone) while requests to them are in flight.
func (g *Gateway) InstanceStates() []InstanceStatus {
	return g.Applied().Instances
}

// Applied describes the routing table in use, read from one table: what
// it was built from and the state of its instances.
type Applied struct {
	// RegistryRevision and MarksRevision are the revisions of the
	// snapshots (0 for a nil snapshot, or before the first Update).
	RegistryRevision, MarksRevision uint64
	// Marks is the marks snapshot the table was built from (nil before the
	// first Update or when Update was given nil).
	Marks *marks.Snapshot
	// Instances is as InstanceStates.
	Instances []InstanceStatus
}

// Applied returns the routing table in use as of now.
func (g *Gateway) Applied() Applied {
	t := g.reported.Load()
	if t == nil {
		return Applied{}
	}
	now := g.now().UnixNano()
	a := Applied{RegistryRevision: t.regRev, MarksRevision: t.marksRev, Marks: t.mk}
	for _, p := range t.pools {
		p.each(now, func(st InstanceStatus) { a.Instances = append(a.Instances, st) })
	}
	out := a.Instances
	sort.SliceStable(out, func(a, b int) bool {
		if out[a].Service != out[b].Service {
			return out[a].Service < out[b].Service
		}
		return out[a].Addr < out[b].Addr
	})
	return a
}

// AppliedMarked is Applied with Instances limited to the instances (gone
// ones included) whose address has a mark in Marks, whether or not it
// applies: what a presence report needs, at a cost that grows with the marks, not
// with the routed instances.
func (g *Gateway) AppliedMarked() Applied {
	t := g.reported.Load()
	if t == nil {
		return Applied{}
	}
	now := g.now().UnixNano()
	a := Applied{RegistryRevision: t.regRev, MarksRevision: t.marksRev, Marks: t.mk}
	if t.mk == nil {
		return a
	}
	for name, byAddr := range t.mk.Marks {
		s := g.byName[name]
		if s == nil {
			continue
		}
		p := t.pools[s.idx]
		for addr := range byAddr {
			if st, ok := p.status(addr, now); ok {
				a.Instances = append(a.Instances, st)
			}
		}
	}
	sortInstances(a.Instances)
	return a
}

// sortInstances sorts by service and address.
func sortInstances(out []InstanceStatus) {
	sort.Slice(out, func(a, b int) bool {
		if out[a].Service != out[b].Service {
			return out[a].Service < out[b].Service
		}
		return out[a].Addr < out[b].Addr
	})
}

// InFlight returns the number of requests in flight to all instances
// (upgraded connections included).
func (g *Gateway) InFlight() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n int64
	for _, s := range g.services {
		for _, h := range s.hosts {
			n += h.inflight.Load()
		}
	}
	return n
}

// BeginShutdown makes /readyz fail from now on ("shutting down") and stops
// the mark-expiry timer; the gateway goes on routing. It is the first step
// of Shutdown, for callers that must take the gateway out of a load
// balancer before they stop their listeners. Idempotent.
func (g *Gateway) BeginShutdown() {
	g.closing.Store(true)
	g.mu.Lock()
	if g.expiry != nil {
		g.expiry.Stop()
		g.expiry = nil
	}
	g.mu.Unlock()
}

// Shutdown stops the gateway gracefully: /readyz fails from now on
// (BeginShutdown), the listeners given to Serve close, idle client
// connections close and busy ones close after their current request;
// then Shutdown waits until no request is in flight to any instance
// (upgraded connections included) and closes the idle upstream
// connections. When ctx ends first, every connection is closed and ctx's
// error returned.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.BeginShutdown()
	err := g.stopServing(ctx)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for g.InFlight() > 0 {
		select {
		case <-ctx.Done():
			g.closeUpgrades()
			g.stopLoops()
			g.closeIdleUpstreams()
			g.stopLookups()
			return ctx.Err()
		case <-tick.C:
		}
	}
	g.stopLoops()
	g.closeIdleUpstreams()
	g.stopLookups()
	return err
}

func (g *Gateway) closeIdleUpstreams() {
	g.mu.Lock()
	for _, s := range g.services {
		for _, h := range s.hosts {
			h.conns.closeIdle()
		}
	}
	g.mu.Unlock()
}

func (g *Gateway) trackUpgrade(u io.Closer, add bool) {
	g.upMu.Lock()
	if add {
		g.upgrades[u] = struct{}{}
	} else {
		delete(g.upgrades, u)
	}
	g.upMu.Unlock()
}

func (g *Gateway) closeUpgrades() {
	g.upMu.Lock()
	us := make([]io.Closer, 0, len(g.upgrades))
	for u := range g.upgrades {
		us = append(us, u)
	}
	g.upMu.Unlock()
	for _, u := range us {
		u.Close()
	}
}

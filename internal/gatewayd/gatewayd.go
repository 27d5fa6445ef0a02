// Package gatewayd assembles a running gateway from its configuration: the
// ZooKeeper session, the registry and marks caches, the proxy, the presence
// node and the two listeners. `zkgate gateway` is a thin shell around it,
// and tests and benchmarks start real gateways in-process with it.
package gatewayd

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/component"
	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/gateway"
	"github.com/zkgate/zkgate/internal/instancestate"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/presence"
	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/zkacl"
	"github.com/zkgate/zkgate/internal/zkbase"
	"github.com/zkgate/zkgate/internal/zksession"
)

// Options adjust a daemon beyond its configuration.
type Options struct {
	Logger *slog.Logger
	// Version is reported in the presence node.
	Version string
	// Dialer, when set, makes the ZooKeeper connections (partition tests).
	Dialer zk.Dialer
	// DropEvent injects lost watch events (tests).
	DropEvent func(zk.Event) bool
	// OnApply, when set, is called after every routing table the gateway
	// applies, with the marks snapshot it was built from (benchmarks
	// measure propagation with it).
	OnApply func(reg *registry.Snapshot, mk *marks.Snapshot)
}

// Daemon is a running gateway.
type Daemon struct {
	cfg      *config.Config
	log      *slog.Logger
	sess     *zksession.Session
	gw       *gateway.Gateway
	reg      *registry.Cache
	marks    *marks.Cache
	presence *presence.Writer
	id       string
	// identity tells this process from another one of the same gateway
	// (presence report, admin /admin/identity).
	identity presence.Identity
	// routed holds the services some route leads to (fixed at start).
	routed map[string]bool

	proxyLn, adminLn net.Listener
	adminSrv         *http.Server

	cancel     context.CancelFunc
	components *component.Group
	killed     atomic.Bool
	// loopbackWarned: the warning that the derived admin address is a
	// loopback one was logged.
	loopbackWarned atomic.Bool
}

// Start connects to ZooKeeper, starts following the registry and marks and
// starts serving on gateway.listen and gateway.admin_listen (port 0 picks a
// free port). It does not wait for the first snapshots: the proxy routes
// nothing (503) until both the registry and the marks are loaded, and
// /readyz reports when they are and the presence node is written.
func Start(ctx context.Context, cfg *config.Config, opts Options) (*Daemon, error) {
	if err := cfg.ValidateGateway(); err != nil {
		return nil, err
	}
	log := cmp.Or(opts.Logger, slog.Default())
	// Listen first: the default id names the address actually bound (a
	// port 0 in gateway.listen would make every such gateway of a host
	// share one id).
	proxyLn, err := net.Listen("tcp", cfg.Gateway.Listen)
	if err != nil {
		return nil, fmt.Errorf("gateway.listen: %w", err)
	}
	adminLn, err := net.Listen("tcp", cfg.Gateway.AdminListen)
	if err != nil {
		proxyLn.Close()
		return nil, fmt.Errorf("gateway.admin_listen: %w", err)
	}
	closeListeners := func() {
		proxyLn.Close()
		adminLn.Close()
	}
	id := cfg.Gateway.ID
	if id == "" {
		id = DefaultID(proxyLn.Addr())
	}
	log = log.With("gateway", id)

	d := &Daemon{cfg: cfg, log: log, id: id, components: component.NewGroup(log, "gateway"), routed: map[string]bool{},
		proxyLn: proxyLn, adminLn: adminLn}
	services := []string{}
	for _, rt := range cfg.Gateway.Routes {
		if !d.routed[rt.Service] {
			services = append(services, rt.Service)
		}
		d.routed[rt.Service] = true
	}
	// A gateway reads and watches only the services its routes name
	// (routes name services exactly: README.md, Configuration): its cold
	// start and memory grow with what it routes, not with the registry.
	// With credentials, the root and the presence directory must be
	// zkgate's alone to change (README.md, Security).
	base, err := zkbase.Start(ctx, cfg, zkbase.Options{
		Logger: log, Dialer: opts.Dialer, DropEvent: opts.DropEvent,
		ACLTargets: []zkacl.Target{{Path: cfg.ZooKeeper.Root}, {Path: presence.Dir(cfg.ZooKeeper.Root)}},
		Services:   services,
		// A mark's event alone takes its address out of rotation; its
		// read decides the rest (docs/architecture.md, "Drain to
		// confirmation").
		PendingMarks: true,
	})
	if err != nil {
		closeListeners()
		return nil, err
	}
	d.sess, d.reg, d.marks = base.Session, base.Registry, base.Marks
	fail := func(err error) (*Daemon, error) {
		d.sess.Close()
		closeListeners()
		return nil, err
	}
	promReg := base.Metrics
	d.gw, err = gateway.New(cfg.Gateway, gateway.Options{
		Logger: log, Registerer: promReg, Gatherer: promReg, Sync: syncStatus{d},
	})
	if err != nil {
		return fail(err)
	}

	started := time.Now()
	d.identity = presence.Identity{ID: id, BootID: newBootID(), StartedMs: started.UnixMilli()}
	d.presence = presence.NewWriter(d.sess, presence.WriterOptions{
		ZKRoot: cfg.ZooKeeper.Root, ID: id, Logger: log,
		Report: func() presence.Report { return d.report(opts.Version) },
	})
	d.adminSrv = &http.Server{Handler: d.adminHandler(), ReadHeaderTimeout: 10 * time.Second}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	base.Go(runCtx, d.components)
	d.components.Go("presence", func() error { return d.presence.Run(runCtx) })
	d.components.Go("apply", func() error { return d.apply(runCtx, opts.OnApply) })
	d.components.Go("proxy listener", func() error {
		if err := d.gw.Serve(d.proxyLn); !errors.Is(err, gateway.ErrClosed) {
			return err
		}
		return nil
	})
	d.components.Go("admin listener", func() error { return d.adminSrv.Serve(d.adminLn) })
	log.Info("gateway started", "listen", d.ProxyAddr(), "admin", d.AdminAddr(), "zookeeper", cfg.ZooKeeper.Servers)
	return d, nil
}

// apply feeds every new registry or marks snapshot to the proxy, once both
// are loaded: a table built from the registry alone would route to every
// drained instance.
func (d *Daemon) apply(ctx context.Context, onApply func(*registry.Snapshot, *marks.Snapshot)) error {
	changes := d.gw.Updates()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.reg.Updates():
		case <-d.marks.Updates():
		case <-changes:
			// A table was applied, or the in-flight count of an instance a
			// mark keeps out of rotation changed. The writer writes only
			// if the report's content changed.
			d.presence.Notify()
			continue
		}
		rs, ms := d.reg.Snapshot(), d.marks.Snapshot()
		if rs == nil || ms == nil {
			continue // route nothing until both are loaded
		}
		d.gw.Update(rs, ms)
		if onApply != nil {
			onApply(rs, ms)
		}
	}
}

// report builds the presence report from what the proxy applies (one
// routing table: the marks, their states and the revisions agree). It
// reads only the marked addresses' states: the writer calls it after
// every applied table.
func (d *Daemon) report(version string) presence.Report {
	a := d.gw.AppliedMarked()
	adv := advertisedAdmin(d.cfg.Gateway.AdminAdvertise, d.AdminAddr(), d.sess.LocalAddr())
	if d.cfg.Gateway.AdminAdvertise == "" && isLoopback(adv) && d.loopbackWarned.CompareAndSwap(false, true) {
		d.log.Warn("the admin address this gateway advertises is a loopback one (its ZooKeeper connection runs over loopback): controllers on other machines cannot verify it, so a crash of this gateway holds drains for controller.departed_window; set gateway.admin_advertise",
			"admin_addr", adv)
	}
	r := presence.Report{
		Listen: d.ProxyAddr(), AdminListen: d.AdminAddr(), Version: version,
		AdminAddr: adv,
		StartedMs: d.identity.StartedMs, BootID: d.identity.BootID,
		RegistryRevision: a.RegistryRevision, MarksRevision: a.MarksRevision,
	}
	r.Marks = appliedMarks(a.Marks, a.Instances, d.routed)
	return r
}

// advertisedAdmin is the presence report's AdminAddr: advertise when set;
// else, when the admin listener is bound to every interface (bound), the
// admin port on the host of zkLocal, the address this gateway's
// ZooKeeper connection leaves from (an address other machines of the
// ensemble's network reach it at); else "" (admin_listen names its host).
func advertisedAdmin(advertise, bound, zkLocal string) string {
	if advertise != "" {
		return advertise
	}
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return ""
	}
	lhost, _, err := net.SplitHostPort(zkLocal)
	if err != nil {
		return ""
	}
	return net.JoinHostPort(lhost, port)
}

// isLoopback reports whether hostport's host is a loopback IP address.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// appliedMarks says, for every mark of the applied snapshot, what it means
// at this gateway: unrouted when no route of this gateway leads to the
// mark's service; draining/drained (with the in-flight count) when it keeps
// its instance out of rotation; the instance's own state (warming, serving,
// down, ejected) when the mark does not apply (the address registered
// again after it, or it expired); absent when the service is routed here
// but the address is not in its routing table. So "absent" never means
// "this gateway does not know the service".
func appliedMarks(ms *marks.Snapshot, states []gateway.InstanceStatus, routed map[string]bool) []presence.AppliedMark {
	if ms.Count() == 0 {
		return nil
	}
	byAddr := make(map[[2]string]gateway.InstanceStatus, len(states))
	for _, st := range states {
		byAddr[[2]string{st.Service, st.Addr}] = st
	}
	out := make([]presence.AppliedMark, 0, ms.Count())
	for service, byA := range ms.Marks {
		for addr, m := range byA {
			am := presence.AppliedMark{Service: service, Addr: addr, Mzxid: m.Mzxid, State: presence.StateAbsent}
			if !routed[service] {
				am.State = presence.StateUnrouted
			} else if st, ok := byAddr[[2]string{service, addr}]; ok {
				am.InFlight = st.InFlight
				switch {
				case st.Marked && st.FailOpen:
					am.State = presence.StateFailOpen
				case st.Marked && st.InFlight > 0:
					am.State = instancestate.Draining
				case st.Marked:
					am.State = instancestate.Drained
				case st.State == instancestate.Gone:
					am.State = presence.StateAbsent
				default:
					// The mark does not apply (the address registered
					// again after it, or it expired): the instance's own
					// state, e.g. warming or serving.
					am.State = st.State
				}
			}
			out = append(out, am)
		}
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Service != out[b].Service {
			return out[a].Service < out[b].Service
		}
		return out[a].Addr < out[b].Addr
	})
	return out
}

// adminHandler is the proxy's admin endpoints plus GET /admin/identity
// (presence.IdentityPath): which gateway process serves this address. A
// controller asks it when the gateway's presence node disappeared without
// a leaving report, to tell a crashed gateway (nothing answers, or another
// process does) from one cut off from ZooKeeper that may still route
// (docs/architecture.md#departed-gateways-and-lost-drains).
func (d *Daemon) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", d.gw.AdminHandler())
	body, _ := json.Marshal(d.identity) // plain data: cannot fail
	body = append(body, '\n')
	mux.HandleFunc("GET "+presence.IdentityPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	})
	return mux
}

// newBootID returns a random id for this process.
func newBootID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Identity is what /admin/identity answers.
func (d *Daemon) Identity() presence.Identity { return d.identity }

// DefaultID is the gateway id used when gateway.id is not set: the host
// name and the address the proxy listener is bound to (unique per host).
func DefaultID(bound net.Addr) string {
	host, _ := os.Hostname()
	return host + "-" + bound.String()
}

type syncStatus struct{ d *Daemon }

// LastContact is the older of the registry's and the marks' last contact.
func (s syncStatus) LastContact() time.Time {
	a, b := s.d.reg.LastContact(), s.d.marks.LastContact()
	if a.IsZero() || b.IsZero() {
		return time.Time{}
	}
	if b.Before(a) {
		return b
	}
	return a
}

// Detached says why the controller may not be counting this gateway: the
// session is lost or presumed lost (see presumedLost), or the presence
// writer does not hold its node in the current session.
//
// Unless gateway.unready_when_detached is set, only the presence part
// counts while the session is connected: a gateway cut off from ZooKeeper
// stays ready on its last state until gateway.stale_after (static
// stability), and the controller keeps drains unconfirmed meanwhile
// (controller.departed_window).
func (s syncStatus) Detached() string {
	st, since := s.d.sess.State()
	if !s.d.cfg.Gateway.UnreadyWhenDetached {
		if st == zksession.StateConnected {
			return s.d.presence.Detached()
		}
		return ""
	}
	switch st {
	case zksession.StateLost:
		return "ZooKeeper session lost: its presence node may be gone, so the controller no longer counts this gateway"
	case zksession.StateClosed:
		return "ZooKeeper session closed"
	case zksession.StateSuspended:
		if d := time.Since(since); d >= presumedLost(s.d.sess.SessionTimeout()) {
			return "disconnected from ZooKeeper for " + d.Round(time.Millisecond).String() +
				": the servers may have expired the session (timeout " + s.d.sess.SessionTimeout().String() +
				") and deleted its presence node"
		}
	}
	return s.d.presence.Detached()
}

// presumedLost is how long after noticing a disconnection a gateway must
// assume the servers may have expired its session. The servers expire it
// a session timeout T after they last heard from the client; go-zookeeper
// notices a silent connection only 2T/3 after it last heard from them (its
// read timeout), so the servers may expire the session as soon as T/3
// after the client notices, well before zksession's own Lost (T after).
// T/4 leaves a margin for scheduling.
func presumedLost(timeout time.Duration) time.Duration { return timeout / 4 }

// ID is the gateway's id (its presence node name).
func (d *Daemon) ID() string { return d.id }

// ProxyAddr is the proxy listener's address.
func (d *Daemon) ProxyAddr() string { return d.proxyLn.Addr().String() }

// AdminAddr is the admin listener's address.
func (d *Daemon) AdminAddr() string { return d.adminLn.Addr().String() }

// Gateway is the proxy.
func (d *Daemon) Gateway() *gateway.Gateway { return d.gw }

// Session is the ZooKeeper session.
func (d *Daemon) Session() *zksession.Session { return d.sess }

// Registry is the registry cache.
func (d *Daemon) Registry() *registry.Cache { return d.reg }

// Marks is the marks cache.
func (d *Daemon) Marks() *marks.Cache { return d.marks }

// Shutdown stops the gateway gracefully, bounded by ctx:
//
//  1. /readyz answers 503 from now on (a fronting load balancer stops
//     sending new connections), the proxy goes on routing;
//  2. the proxy listener closes and Shutdown waits for the requests in
//     flight, upgraded (WebSocket) connections included; when ctx ends
//     first, the remaining connections are closed;
//  3. the presence node gets a last report with leaving set, then is
//     deleted (presence.Writer.Leave), so the controller tells a graceful
//     departure from a lost session;
//  4. the admin listener and the ZooKeeper session close.
func (d *Daemon) Shutdown(ctx context.Context) error {
	if d.killed.Load() {
		return nil
	}
	d.log.Info("gateway shutting down")
	d.adminSrv.SetKeepAlivesEnabled(false)
	// The proxy listener closes; requests and upgraded connections in
	// flight are waited for.
	err := d.gw.Shutdown(ctx)
	lctx := ctx
	if ctx.Err() != nil {
		// Out of time for requests, but say goodbye all the same.
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
	}
	if lerr := d.presence.Leave(lctx); lerr != nil {
		d.log.Warn("leaving the presence node failed; closing the session deletes it", "err", lerr)
	}
	d.cancel()
	d.adminSrv.Close()
	d.components.Wait()
	d.sess.Close()
	if err != nil {
		return fmt.Errorf("waiting for requests in flight: %w", err)
	}
	return d.components.Err()
}

// Kill stops the gateway at once, as kill -9 would (tests): the listeners
// and every connection close, and no leaving report is written. The
// ZooKeeper session is closed too, which would end it (and delete the
// presence node) at once; to have the servers expire it after the session
// timeout, as after a real crash, cut its connections first
// (zktest.Partitioner). Shutdown after Kill does nothing.
func (d *Daemon) Kill() {
	if d.killed.Swap(true) {
		return
	}
	d.log.Warn("gateway killed (test)")
	d.adminSrv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = d.gw.Shutdown(ctx) // closes the proxy listener and its connections now
	d.cancel()
	d.components.Wait()
	d.sess.Close()
}

// Err returns the first error a component stopped with, if any.
func (d *Daemon) Err() error { return d.components.Err() }

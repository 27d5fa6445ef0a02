// Package gatewayd assembles a running gateway from its configuration: the
// ZooKeeper session, the registry and marks caches, the proxy, the presence
// node and the two listeners. `zkgate gateway` is a thin shell around it,
// and tests and benchmarks start real gateways in-process with it.
package gatewayd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/gateway"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/presence"
	"github.com/zkgate/zkgate/internal/registry"
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
	// routed holds the services some route leads to (fixed at start).
	routed map[string]bool
	// applied is the marks snapshot of the routing table in use.
	applied atomic.Pointer[marks.Snapshot]

	proxyLn, adminLn net.Listener
	proxySrv         *http.Server
	adminSrv         *http.Server

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	err    error
	done   chan struct{}
}

// Start connects to ZooKeeper, starts following the registry and marks and
// starts serving on gateway.listen and gateway.admin_listen (port 0 picks a
// free port). It does not wait for the first snapshot: /readyz reports
// when it is loaded.
func Start(ctx context.Context, cfg *config.Config, opts Options) (*Daemon, error) {
	if err := cfg.ValidateGateway(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	id := cfg.Gateway.ID
	if id == "" {
		host, _ := os.Hostname()
		id = host + "-" + cfg.Gateway.Listen
	}
	log = log.With("gateway", id)

	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	scfg, err := SessionConfig(cfg, log)
	if err != nil {
		return nil, err
	}
	scfg.Dialer = opts.Dialer
	scfg.DropEvent = opts.DropEvent
	sess, err := zksession.Connect(scfg)
	if err != nil {
		return nil, err
	}
	if err := sess.RegisterMetrics(promReg); err != nil {
		sess.Close()
		return nil, fmt.Errorf("registering session metrics: %w", err)
	}
	parser, err := registry.ParserFor(cfg.Registry.Format)
	if err != nil {
		sess.Close()
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, sess: sess, id: id, done: make(chan struct{}), routed: map[string]bool{}}
	for _, rt := range cfg.Gateway.Routes {
		d.routed[rt.Service] = true
	}
	d.reg = registry.NewCache(sess, registry.Options{
		Root: cfg.Registry.Root, Parser: parser, Watch: *cfg.Registry.Watch,
		ResyncInterval: cfg.Registry.ResyncInterval, Logger: log, Registerer: promReg,
	})
	d.marks = marks.NewCache(sess, marks.Options{
		ZKRoot: cfg.ZooKeeper.Root, ResyncInterval: cfg.Registry.ResyncInterval, Logger: log, Registerer: promReg,
	})
	d.gw, err = gateway.New(cfg.Gateway, gateway.Options{
		Logger: log, Registerer: promReg, Gatherer: promReg, Sync: syncStatus{d},
	})
	if err != nil {
		sess.Close()
		return nil, err
	}

	if d.proxyLn, err = net.Listen("tcp", cfg.Gateway.Listen); err != nil {
		sess.Close()
		return nil, fmt.Errorf("gateway.listen: %w", err)
	}
	if d.adminLn, err = net.Listen("tcp", cfg.Gateway.AdminListen); err != nil {
		d.proxyLn.Close()
		sess.Close()
		return nil, fmt.Errorf("gateway.admin_listen: %w", err)
	}
	started := time.Now()
	d.presence = presence.NewWriter(sess, presence.WriterOptions{
		ZKRoot: cfg.ZooKeeper.Root, ID: id, Logger: log,
		Report: func() presence.Report { return d.report(opts.Version, started) },
	})
	d.proxySrv = &http.Server{Handler: d.gw, ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	d.adminSrv = &http.Server{Handler: d.gw.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	d.goRun("registry", func() error { return d.reg.Run(runCtx) })
	d.goRun("marks", func() error { return d.marks.Run(runCtx) })
	d.goRun("presence", func() error { return d.presence.Run(runCtx) })
	d.goRun("apply", func() error { return d.apply(runCtx, opts.OnApply) })
	d.goRun("proxy listener", func() error { return d.proxySrv.Serve(d.proxyLn) })
	d.goRun("admin listener", func() error { return d.adminSrv.Serve(d.adminLn) })
	log.Info("gateway started", "listen", d.ProxyAddr(), "admin", d.AdminAddr(), "zookeeper", cfg.ZooKeeper.Servers)
	return d, nil
}

// SessionConfig makes the session configuration from the zookeeper section.
func SessionConfig(cfg *config.Config, log *slog.Logger) (zksession.Config, error) {
	sc := zksession.Config{
		Servers:        cfg.ZooKeeper.Servers,
		SessionTimeout: cfg.ZooKeeper.SessionTimeout,
		Logger:         log,
	}
	if a := cfg.ZooKeeper.Auth; a != nil {
		sc.Username, sc.Password = a.Username, a.Password
	}
	if cfg.ZooKeeper.TLS != nil {
		tc, err := cfg.ZooKeeper.TLS.ClientConfig()
		if err != nil {
			return sc, err
		}
		sc.TLS = tc
	}
	return sc, nil
}

func (d *Daemon) goRun(what string, f func() error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		err := f()
		if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, http.ErrServerClosed) || errors.Is(err, zksession.ErrClosed) {
			return
		}
		d.log.Error("gateway component stopped", "component", what, "err", err)
		d.errMu.Lock()
		if d.err == nil {
			d.err = fmt.Errorf("%s: %w", what, err)
		}
		d.errMu.Unlock()
	}()
}

// apply feeds every new registry or marks snapshot to the proxy.
func (d *Daemon) apply(ctx context.Context, onApply func(*registry.Snapshot, *marks.Snapshot)) error {
	changes := d.gw.Changes()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.reg.Updates():
		case <-d.marks.Updates():
		case <-changes:
			// In-flight of a marked instance changed, or a table was applied.
			d.presence.Notify()
			continue
		}
		rs, ms := d.reg.Snapshot(), d.marks.Snapshot()
		if rs == nil {
			continue // route nothing until the registry is loaded
		}
		if ms == nil {
			ms = &marks.Snapshot{}
		}
		d.gw.Update(rs, ms)
		d.applied.Store(ms)
		if onApply != nil {
			onApply(rs, ms)
		}
		d.presence.Notify()
	}
}

// report builds the presence report from what the proxy applies.
func (d *Daemon) report(version string, started time.Time) presence.Report {
	regRev, mkRev := d.gw.AppliedRevision()
	r := presence.Report{
		Listen: d.ProxyAddr(), AdminListen: d.AdminAddr(), Version: version,
		StartedMs: started.UnixMilli(), RegistryRevision: regRev, MarksRevision: mkRev,
	}
	r.Marks = appliedMarks(d.applied.Load(), d.gw.InstanceStates(), d.routed)
	return r
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
					am.State = gateway.StateDraining
				case st.Marked:
					am.State = gateway.StateDrained
				case st.State == gateway.StateGone:
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

// Shutdown stops accepting requests, waits for those in flight (bounded by
// ctx), removes the presence node and closes the session.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.log.Info("gateway shutting down")
	d.adminSrv.SetKeepAlivesEnabled(false)
	err := d.proxySrv.Shutdown(ctx)
	if err != nil {
		d.proxySrv.Close()
	}
	d.cancel() // presence deletes its node on the way out
	d.adminSrv.Close()
	d.wg.Wait()
	d.sess.Close()
	d.errMu.Lock()
	defer d.errMu.Unlock()
	if err != nil {
		return fmt.Errorf("waiting for requests in flight: %w", err)
	}
	return d.err
}

// Err returns the first error a component stopped with, if any.
func (d *Daemon) Err() error {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return d.err
}

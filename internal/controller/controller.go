// Package controller is zkgate's management plane: the HTTP JSON API that
// writes drain marks and confirms drains, and the background jobs that the
// elected leader among the controller replicas runs (clearing marks on
// re-registration, expiry, absence, periodic reconciliation, the audit
// trail).
//
// Any replica serves the API: writes go straight to ZooKeeper, and reads
// come from the replica's own caches of the registry, the marks and the
// gateways' presence reports. Only the leader runs the jobs.
package controller

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/component"
	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/presence"
	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/zkacl"
	"github.com/zkgate/zkgate/internal/zkbase"
	"github.com/zkgate/zkgate/internal/zksession"
)

// Options adjust a controller beyond its configuration.
type Options struct {
	Logger *slog.Logger
	// ID names this replica in the leader election and in the audit trail
	// ("controller:<id>"); default <hostname>-<listen>.
	ID string
	// Version is reported by /healthz.
	Version string
	// Dialer, when set, makes the ZooKeeper connections (partition tests).
	Dialer zk.Dialer
	// DropEvent injects lost watch events (tests).
	DropEvent func(zk.Event) bool
	// Now is the clock used for mark TTLs and the absence grace; default
	// time.Now.
	Now func() time.Time
	// ReregisterAckBound bounds how long the leader keeps a mark whose
	// address registered again after it while some live gateway has not
	// acknowledged the new registration (see jobs.go); default
	// DefaultReregisterAckBound.
	ReregisterAckBound time.Duration
	// Resolver resolves host names when a drain's address is spelled
	// otherwise than its registration (tests); default net.DefaultResolver.
	Resolver registry.Resolver
}

// DefaultReregisterAckBound is the default Options.ReregisterAckBound.
const DefaultReregisterAckBound = 30 * time.Second

// Controller is a running controller replica.
type Controller struct {
	cfg  *config.Config
	opts Options
	log  *slog.Logger
	id   string
	now  func() time.Time

	sess     *zksession.Session
	reg      *registry.Cache
	marks    *marks.Cache
	presence *presence.Watcher
	store    *store
	audit    *auditLog
	elector  *elector
	auth     *authenticator
	changed  *notifier
	resolver registry.Resolver
	promReg  *prometheus.Registry
	metrics  *metrics
	// The traffic view and the timelines (traffic.go, timeline.go).
	traffic      *trafficPoller
	timelines    *timelines
	timelineKick chan struct{}

	ln  net.Listener
	srv *http.Server

	cancel     context.CancelFunc
	components *component.Group
	// stopping is closed when Shutdown or Close begins: waiting drains
	// answer 503 at once so their clients move to another replica.
	stopping     chan struct{}
	stoppingOnce sync.Once
}

// Start connects to ZooKeeper, starts following the registry, the marks
// and the gateways' presence, joins the leader election and serves the API
// on controller.listen (port 0 picks a free port). It returns once the
// listener is open; /readyz reports when the caches are loaded.
func Start(ctx context.Context, cfg *config.Config, opts Options) (*Controller, error) {
	if err := cfg.ValidateController(); err != nil {
		return nil, err
	}
	log := cmp.Or(opts.Logger, slog.Default())
	id := opts.ID
	if id == "" {
		host, _ := os.Hostname()
		id = host + "-" + cfg.Controller.Listen
	}
	log = log.With("controller", id)
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if opts.Resolver == nil {
		opts.Resolver = defaultResolver()
	}
	if opts.ReregisterAckBound <= 0 {
		opts.ReregisterAckBound = DefaultReregisterAckBound
	}
	if host, _, _ := net.SplitHostPort(cfg.Controller.Listen); host == "" || host == "0.0.0.0" || host == "::" {
		log.Warn("the controller API listens on every interface: make sure the tokens are strong", "listen", cfg.Controller.Listen)
	}

	root := cfg.ZooKeeper.Root
	// With credentials, every node under the root must be zkgate's alone
	// to change (README.md, Security): repaired, or the start refused.
	base, err := zkbase.Start(ctx, cfg, zkbase.Options{
		Logger: log, Dialer: opts.Dialer, DropEvent: opts.DropEvent,
		ACLTargets: []zkacl.Target{{Path: root, Tree: true}},
	})
	if err != nil {
		return nil, err
	}
	sess := base.Session
	c := &Controller{
		cfg: cfg, opts: opts, log: log, id: id, now: now,
		sess: sess, reg: base.Registry, marks: base.Marks,
		auth:       newAuthenticator(cfg.Controller.Tokens, cfg.Controller.ReadTokens),
		changed:    newNotifier(),
		resolver:   opts.Resolver,
		promReg:    base.Metrics,
		stopping:   make(chan struct{}),
		components: component.NewGroup(log, "controller"),
	}
	c.metrics = newMetrics(c.promReg,
		func() float64 { return float64(c.marks.Snapshot().Count()) },
		func() float64 { return float64(len(c.presence.Gateways())) })
	c.promReg.MustRegister(skippedServices(c.reg.Snapshot))
	wopts := presence.WatcherOptions{
		ZKRoot: root, ResyncInterval: cfg.Registry.ResyncInterval, Logger: log, Registerer: c.promReg,
		DepartedWindow: cfg.Controller.DepartedWindow, Now: now,
	}
	if p := cfg.Controller.ProbeDeparted; p == nil || *p {
		// A crashed gateway stops holding drains once its session expired
		// and its admin address refuses connections (or another process
		// answers there), not only when the window ends
		// (docs/architecture.md#departed-gateways-and-lost-drains).
		wopts.Probe = presence.ProbeAdmin
	}
	// Only an admin address seen answering as the gateway while it was
	// live is probed (a refusal elsewhere proves nothing) or polled for
	// traffic (another gateway's figures would be shown as its).
	wopts.Verify = presence.VerifyAdmin
	c.presence = presence.NewWatcher(sess, wopts)
	c.traffic = newTrafficPoller(c.presence.Gateways, now, log, c.promReg)
	c.traffic.trusted = c.presence.AdminTrusted
	c.traffic.polled = c.kickTimelines
	c.timelines, c.timelineKick = newTimelines(), make(chan struct{}, 1)
	c.store = &store{sess: sess, root: root, metrics: c.metrics}
	c.audit = newAuditLog(sess, root, cfg.Controller.AuditLimit, id, func() int64 { return now().UnixMilli() }, log, c.metrics)
	c.elector = newElector(sess, root, id, log, c.runJobs, func(leading bool) {
		c.metrics.leaderChanges.Inc()
		if leading {
			c.metrics.isLeader.Set(1)
		} else {
			c.metrics.isLeader.Set(0)
		}
	})

	if c.ln, err = net.Listen("tcp", cfg.Controller.Listen); err != nil {
		sess.Close()
		return nil, fmt.Errorf("controller.listen: %w", err)
	}
	c.srv = &http.Server{
		Handler:           c.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: a waiting drain answers when it is confirmed.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	base.Go(runCtx, c.components)
	c.components.Go("presence", func() error { return c.presence.Run(runCtx) })
	c.components.Go("fanout", func() error { return c.fanout(runCtx) })
	c.components.Go("election", func() error { return c.elector.Run(runCtx) })
	c.components.Go("audit trim", func() error { return c.audit.Run(runCtx) })
	c.components.Go("traffic", func() error { return c.traffic.Run(runCtx) })
	c.components.Go("timelines", func() error { return c.runTimelines(runCtx) })
	c.components.Go("api listener", func() error { return c.srv.Serve(c.ln) })
	log.Info("controller started", "listen", c.Addr(), "zookeeper", cfg.ZooKeeper.Servers)
	return c, nil
}

// ID is this replica's id.
func (c *Controller) ID() string { return c.id }

// Addr is the API listener's address.
func (c *Controller) Addr() string { return c.ln.Addr().String() }

// URL is the API's base URL, e.g. http://127.0.0.1:7070.
func (c *Controller) URL() string { return "http://" + c.Addr() }

// IsLeader reports whether this replica currently runs the jobs.
func (c *Controller) IsLeader() bool { return c.elector.IsLeader() }

// Session is the ZooKeeper session (tests close it to simulate a crash).
func (c *Controller) Session() *zksession.Session { return c.sess }

// Registry is the controller's registry cache.
func (c *Controller) Registry() *registry.Cache { return c.reg }

// Marks is the controller's marks cache.
func (c *Controller) Marks() *marks.Cache { return c.marks }

// Presence is the controller's view of the gateways.
func (c *Controller) Presence() *presence.Watcher { return c.presence }

// Done is closed when a component stopped with an error (see Err); the
// process should then exit.
func (c *Controller) Done() <-chan struct{} { return c.components.Failed() }

// Err returns the first error a component stopped with, if any.
func (c *Controller) Err() error { return c.components.Err() }

// Shutdown stops accepting API calls, answers waiting drains with 503 at
// once (their clients move to another replica), waits for the other calls
// in progress (bounded by ctx), leaves the election and closes the
// session.
func (c *Controller) Shutdown(ctx context.Context) error {
	c.log.Info("controller shutting down")
	c.stoppingOnce.Do(func() { close(c.stopping) })
	err := c.srv.Shutdown(ctx)
	if err != nil {
		c.srv.Close()
	}
	c.cancel()
	c.components.Wait()
	c.sess.Close()
	if err != nil {
		return fmt.Errorf("waiting for API calls in progress: %w", err)
	}
	return c.Err()
}

// Close stops the replica at once, as a crash would: the session closes
// first (so the leadership and the election node go), then open API
// connections are closed without an answer.
func (c *Controller) Close() {
	c.stoppingOnce.Do(func() { close(c.stopping) })
	c.sess.Close()
	c.srv.Close()
	c.cancel()
	c.components.Wait()
}

// Package zkbase builds what the gateway and the controller both start
// from: a metrics registry, the ZooKeeper session made from the zookeeper
// section, its ACL check (README.md, Security) and the registry and marks
// caches. Each daemon adds what differs (listeners, presence, jobs).
package zkbase

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/zkgate/zkgate/internal/component"
	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/zkacl"
	"github.com/zkgate/zkgate/internal/zksession"
)

// Options adjust the base beyond the configuration.
type Options struct {
	Logger *slog.Logger
	// Dialer, when set, makes the ZooKeeper connections (partition tests).
	Dialer zk.Dialer
	// DropEvent injects lost watch events (tests).
	DropEvent func(zk.Event) bool
	// ACLTargets are the nodes that must be zkgate's alone to change when
	// the configuration has credentials.
	ACLTargets []zkacl.Target
	// Services restricts the registry cache (registry.Options.Services);
	// nil follows every service.
	Services []string
	// PendingMarks publishes a mark's event before the mark is read
	// (marks.Options.Pending): a gateway takes the address out of
	// rotation one read round trip sooner.
	PendingMarks bool
}

// Base is the session, the caches and the metrics registry they report to.
type Base struct {
	Metrics  *prometheus.Registry
	Session  *zksession.Session
	Registry *registry.Cache
	Marks    *marks.Cache
	// aclLater is zkacl.AtStart's later: nil unless credentials are set
	// and ZooKeeper was not reachable at start.
	aclLater func(context.Context) error
}

// Start connects the session (it does not wait for ZooKeeper: static
// stability), checks the ACLs and makes the caches; Go runs them. On error
// nothing is left open.
func Start(ctx context.Context, cfg *config.Config, opts Options) (*Base, error) {
	b := &Base{Metrics: prometheus.NewRegistry()}
	b.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	scfg, err := SessionConfig(cfg, opts.Logger)
	if err != nil {
		return nil, err
	}
	scfg.Dialer, scfg.DropEvent = opts.Dialer, opts.DropEvent
	parser, err := registry.ParserFor(cfg.Registry.Format)
	if err != nil {
		return nil, err
	}
	sess, err := zksession.Connect(scfg)
	if err != nil {
		return nil, err
	}
	if err := sess.RegisterMetrics(b.Metrics); err != nil {
		sess.Close()
		return nil, fmt.Errorf("registering session metrics: %w", err)
	}
	if a := cfg.ZooKeeper.Auth; a != nil {
		b.aclLater, err = zkacl.AtStart(ctx, sess, zkacl.DigestPolicy(a.Username, a.Password),
			opts.ACLTargets, cfg.ZooKeeper.SessionTimeout, opts.Logger)
		if err != nil {
			sess.Close()
			return nil, err
		}
	}
	b.Session = sess
	b.Registry = registry.NewCache(sess, registry.Options{
		Root: cfg.Registry.Root, Parser: parser, Watch: *cfg.Registry.Watch,
		ResyncInterval: cfg.Registry.ResyncInterval, Services: opts.Services, Logger: opts.Logger, Registerer: b.Metrics,
	})
	b.Marks = marks.NewCache(sess, marks.Options{
		ZKRoot: cfg.ZooKeeper.Root, ResyncInterval: cfg.Registry.ResyncInterval, Pending: opts.PendingMarks,
		Logger: opts.Logger, Registerer: b.Metrics,
	})
	return b, nil
}

// Go runs the ACL check (when it is pending), the registry and the marks
// caches in g until ctx ends.
func (b *Base) Go(ctx context.Context, g *component.Group) {
	if b.aclLater != nil {
		g.Go("acl check", func() error { return b.aclLater(ctx) })
	}
	g.Go("registry", func() error { return b.Registry.Run(ctx) })
	g.Go("marks", func() error { return b.Marks.Run(ctx) })
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

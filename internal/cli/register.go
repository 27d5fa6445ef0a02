package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/zkbase"
	"github.com/zkgate/zkgate/register"
)

// registerCommand is `zkgate register`, the sidecar that registers an instance
// that cannot register itself:
//
//	zkgate register --config FILE --service S --address host:port
//	    [--id ID] [--metadata k=v]... [--health URL [--health-interval 10s]]
//	    [--controller URL --token T] [--drain-timeout 30s]
//
// It keeps an ephemeral Curator (Spring Cloud Zookeeper) registration of
// the address until ctx ends (SIGTERM or SIGINT), then drains the instance
// through the controller when one is configured (--controller or
// $ZKGATE_CONTROLLER; --token or $ZKGATE_TOKEN), waits for the confirmed
// drain at most --drain-timeout, deletes the node and exits 0. A drain that
// is not confirmed is logged and does not stop the deregistration. It exits
// 1 when it cannot register at start (within --start-timeout).
//
// With --pre-stop (for a Kubernetes preStop hook) it only drains through the
// controller and waits for the confirmation, at most --drain-timeout: exit 0
// drained, 2 not confirmed, 1 error. The sidecar's own SIGTERM handling
// then finds the instance drained already.
func registerCommand(c *invocation) func(context.Context) int {
	cfgPath := c.configFlag("configuration file (zookeeper and registry sections); not read with --pre-stop")
	service := c.fs.String("service", "", "service name (required)")
	address := c.fs.String("address", "", "instance address host:port, as the gateways reach it (required)")
	id := c.fs.String("id", "", "registration id and node name (default: a random UUID, as Curator makes)")
	name := c.fs.String("name", "", "payload id (Spring's application context id; default: the service name)")
	metadata := metadataFlag{}
	c.fs.Var(metadata, "metadata", "payload metadata `key=value` (repeatable); instance_status defaults to UP")
	health := c.fs.String("health", "", "HTTP health check URL: deregister while it fails, register again when it passes")
	healthInterval := c.fs.Duration("health-interval", register.DefaultHealthInterval, "time between health checks")
	healthTimeout := c.fs.Duration("health-timeout", 0, "bound of one health check (default: the smaller of the interval and 5s)")
	healthFailures := c.fs.Int("health-failures", 1, "consecutive failed checks before deregistering")
	healthPasses := c.fs.Int("health-passes", 1, "consecutive passing checks before registering again")
	var ctl controllerFlags
	ctl.register(c.fs, "controller URL(s), comma-separated, for draining (default $ZKGATE_CONTROLLER; none: no drain)", "controller bearer token (default $ZKGATE_TOKEN)")
	drainTimeout := c.fs.Duration("drain-timeout", register.DefaultDrainTimeout, "how long to wait for a confirmed drain")
	reason := c.fs.String("reason", "", "drain reason for the mark and the audit trail (default: shutdown, or pre-stop)")
	ttl := c.fs.Duration("ttl", 0, "mark lifetime (default: the controller's controller.mark_ttl)")
	deployID := c.fs.String("deploy-id", "", "deploy id recorded in the mark and the audit trail")
	startTimeout := c.fs.Duration("start-timeout", time.Minute, "how long to wait for ZooKeeper (and the first registration) at start")
	preStop := c.fs.Bool("pre-stop", false, "only drain through the controller, wait for the confirmation and exit (0 drained, 2 not confirmed, 1 error)")
	logLevel := c.logFlag()
	return func(ctx context.Context) int {
		log, err := c.logger(*logLevel)
		if err != nil {
			return c.fail(err)
		}
		if err := c.required([2]string{"--service", *service}, [2]string{"--address", *address}); err != nil {
			return c.fail(err)
		}
		if *drainTimeout <= 0 || *healthInterval <= 0 || *healthTimeout < 0 || *ttl < 0 || *startTimeout <= 0 {
			return c.fail(errors.New("--drain-timeout, --health-interval and --start-timeout must be positive; --health-timeout and --ttl not negative"))
		}
		drainer, err := newDrainer(ctl, *ttl, *deployID)
		if err != nil {
			return c.fail(err)
		}

		if *preStop {
			if drainer == nil {
				return c.fail(errors.New("--pre-stop needs a controller (--controller or $ZKGATE_CONTROLLER)"))
			}
			if *reason == "" {
				*reason = "pre-stop"
			}
			return preStopDrain(ctx, c, drainer, *service, *address, *reason, *drainTimeout)
		}

		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return c.fail(err)
		}
		opts, err := registerOptions(cfg, log)
		if err != nil {
			return c.fail(err)
		}
		opts.Service, opts.Address, opts.ID, opts.Name = *service, *address, *id, *name
		opts.Metadata = metadata
		opts.Drainer, opts.DrainTimeout, opts.DrainReason = drainer, *drainTimeout, *reason
		if *health != "" {
			opts.Health = &register.HealthCheck{
				URL: *health, Interval: *healthInterval, Timeout: *healthTimeout,
				FailureThreshold: *healthFailures, SuccessThreshold: *healthPasses,
			}
		}
		if drainer == nil {
			log.Warn("no controller configured: the instance will be deregistered without draining")
		}

		sctx, cancel := context.WithTimeout(ctx, *startTimeout)
		reg, err := register.Register(sctx, opts)
		cancel()
		if err != nil {
			return c.startFailed(ctx, err) // stopped while starting: nothing registered
		}
		st := reg.Status()
		log.Info("zkgate register running", "path", st.Path, "registered", st.Registered, "drain", drainer != nil)

		<-ctx.Done()
		log.Info("stopping: drain, then deregister")
		// The drainer may take DrainTimeout plus its HTTP margin; deleting the
		// node and closing the session take little.
		if err := stopWithin(*drainTimeout+30*time.Second, reg.Shutdown); err != nil {
			// The session is closed whatever happened: ZooKeeper has deleted
			// the node. Say what went wrong, but the sidecar did its job.
			log.Warn("shutdown finished with problems", "err", err)
		}
		log.Info("deregistered", "path", st.Path)
		return exitOK
	}
}

// preStopDrain drains through the controller and waits for confirmation.
func preStopDrain(ctx context.Context, c *invocation, d register.Drainer, service, address, reason string, timeout time.Duration) int {
	start := time.Now()
	err := d.Drain(ctx, service, address, reason, timeout)
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case err == nil:
		fmt.Fprintf(c.stdout, "drained %s/%s in %s\n", service, address, took)
		return exitOK
	case errors.Is(err, register.ErrDrainNotConfirmed):
		fmt.Fprintf(c.stderr, "zkgate register: %s/%s not confirmed after %s: %v\n", service, address, took, err)
		return exitUnconfirmed
	default:
		return c.failf("draining %s/%s: %w", service, address, err)
	}
}

// newDrainer returns the controller drainer, or nil when no controller is
// configured.
func newDrainer(ctl controllerFlags, ttl time.Duration, deployID string) (register.Drainer, error) {
	urls, token := ctl.resolve()
	if urls == "" {
		return nil, nil
	}
	return register.NewControllerDrainer(urls, register.ControllerOptions{
		Token: token, Actor: os.Getenv("ZKGATE_ACTOR"), TTL: ttl, DeployID: deployID,
	})
}

// registerOptions fills the ZooKeeper part of register.Options from the
// configuration file.
func registerOptions(cfg *config.Config, log *slog.Logger) (register.Options, error) {
	if cfg.Registry.Format != config.FormatCurator {
		return register.Options{}, fmt.Errorf("registry.format is %q: zkgate registers in the curator format only", cfg.Registry.Format)
	}
	sc, err := zkbase.SessionConfig(cfg, log)
	if err != nil {
		return register.Options{}, err
	}
	return register.Options{
		Servers: sc.Servers, SessionTimeout: sc.SessionTimeout,
		Username: sc.Username, Password: sc.Password, TLS: sc.TLS,
		Root: cfg.Registry.Root, Logger: log,
	}, nil
}

// metadataFlag collects repeated --metadata key=value.
type metadataFlag map[string]string

func (m metadataFlag) String() string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func (m metadataFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("%q is not key=value", s)
	}
	m[strings.TrimSpace(k)] = v
	return nil
}

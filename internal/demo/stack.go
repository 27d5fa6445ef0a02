package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/harness"
	"github.com/zkgate/zkgate/internal/nginxconf"
	"github.com/zkgate/zkgate/internal/procgroup"
	"github.com/zkgate/zkgate/internal/samplebackend"
	"github.com/zkgate/zkgate/internal/version"
	"github.com/zkgate/zkgate/internal/zksession"
)

const (
	// service is the sample service's name; routePrefix its route.
	service     = "demo"
	routePrefix = "/demo/"
	backends    = 4
	// backendSessionTimeout is the backends' ZooKeeper session timeout:
	// it matters only for a backend killed without closing its session.
	backendSessionTimeout = 5 * time.Second
)

// backend is one sample backend: a process of the zkgate binary on a
// fixed address, replaced by a new process at every restart.
type backend struct {
	addr    string
	logPath string
	proc    *harness.Child
}

// stack is one mode's processes: a controller, a gateway or nginx, and the
// backends, with their own ZooKeeper roots.
type stack struct {
	r        *run
	mode     Mode
	dir      string
	zkRoot   string
	regRoot  string
	cfg      *config.Config
	cfgPath  string // the backends' configuration file
	ctl      *controller.Controller
	client   *ctlclient.Client
	gw       *gatewayd.Daemon
	nginx    *procgroup.Proc
	backends []*backend
	// base is the URL prefix the load is sent to, e.g.
	// "http://127.0.0.1:41234/demo/".
	base string

	// obs is a ZooKeeper session of the demo's own (the spring mode sets
	// instance_status with it); opened on first use.
	obs *zksession.Session

	mu sync.Mutex
	// restarts are the restart times, in restart order.
	restarts []time.Duration
}

// newStack starts mode's stack and waits until its proxy routes to every
// backend. On error everything started is stopped.
func (r *run) newStack(ctx context.Context, mode Mode) (s *stack, err error) {
	s = &stack{
		r: r, mode: mode,
		dir:     filepath.Join(r.dir, string(mode)),
		zkRoot:  r.root + "/" + string(mode) + "/zkgate",
		regRoot: r.root + "/" + string(mode) + "/services",
	}
	defer func() {
		if err != nil {
			s.close()
			s = nil
		}
	}()
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", mode, err)
	}
	addrs, err := harness.FreeAddrsBelowEphemeral(backends)
	if err != nil {
		return nil, err
	}
	if err := s.writeConfig(); err != nil {
		return nil, err
	}
	if err := s.startBackends(ctx, addrs); err != nil {
		return nil, err
	}
	s.ctl, err = controller.Start(ctx, s.cfg, controller.Options{
		Logger: r.log.With("mode", string(mode)), ID: "demo-" + string(mode), Version: version.Version,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: starting the controller: %w", mode, err)
	}
	s.client, err = ctlclient.New(s.ctl.URL(), ctlclient.Options{Token: r.token, Actor: "zkgate-demo"})
	if err != nil {
		return nil, err
	}
	if mode == ModeNginx {
		if err := s.startNginx(ctx, addrs); err != nil {
			return nil, err
		}
	} else {
		s.gw, err = gatewayd.Start(ctx, s.cfg, gatewayd.Options{Logger: r.log.With("mode", string(mode)), Version: version.Version})
		if err != nil {
			return nil, fmt.Errorf("%s: starting the gateway: %w", mode, err)
		}
		s.base = "http://" + s.gw.ProxyAddr() + routePrefix
	}
	wctx, cancel := context.WithTimeout(ctx, r.timing.StepTimeout)
	defer cancel()
	if err := s.waitRouting(wctx, addrs); err != nil {
		return nil, err
	}
	if s.gw != nil {
		if err := s.waitPresence(wctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// writeConfig builds the configuration of the controller and the gateway
// and writes the backends' file.
func (s *stack) writeConfig() error {
	t := s.r.timing
	watch := s.mode != ModePoll
	resync := t.ResyncInterval
	if s.mode == ModePoll {
		resync = t.PollInterval
	}
	cfg := &config.Config{}
	cfg.ZooKeeper.Servers = s.r.servers
	cfg.ZooKeeper.Root = s.zkRoot
	cfg.Registry.Root = s.regRoot
	cfg.Registry.Format = config.FormatCurator
	cfg.Registry.ResyncInterval = resync
	cfg.Registry.Watch = &watch
	cfg.Gateway.ID = "demo-" + string(s.mode)
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.AdminListen = "127.0.0.1:0"
	cfg.Gateway.Routes = []config.Route{{Prefix: routePrefix, Service: service, StripPrefix: true}}
	if s.mode == ModeZkgate {
		cfg.Gateway.Warmup = t.Warmup
	}
	cfg.Controller.Listen = "127.0.0.1:0"
	cfg.Controller.Tokens = []string{s.r.token}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s: configuration: %w", s.mode, err)
	}
	s.cfg = cfg
	// The backends read the zookeeper and registry sections only.
	backendCfg := harness.Config{
		Generator: fmt.Sprintf("zkgate demo (%s mode): the sample backends' configuration", s.mode),
		Servers:   s.r.servers, SessionTimeout: backendSessionTimeout, Root: s.zkRoot, RegistryRoot: s.regRoot,
	}
	s.cfgPath = filepath.Join(s.dir, "backend.yaml")
	if err := backendCfg.Write(s.cfgPath); err != nil {
		return fmt.Errorf("%s: %w", s.mode, err)
	}
	return nil
}

// startBackends starts one backend per address, concurrently.
func (s *stack) startBackends(ctx context.Context, addrs []string) error {
	s.backends = make([]*backend, len(addrs))
	for i, a := range addrs {
		s.backends[i] = &backend{addr: a, logPath: filepath.Join(s.dir, fmt.Sprintf("backend-%d.log", i+1))}
	}
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, b := range s.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.startBackend(ctx, b)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startBackend starts b's process and waits until it serves and is
// registered (it prints its address then).
func (s *stack) startBackend(ctx context.Context, b *backend) error {
	args := []string{"sample-backend", "--config", s.cfgPath, "--service", service, "--listen", b.addr,
		"--latency", s.r.load.BackendLatency.String(), "--log-level", "warn"}
	if s.r.backend == BackendJVM {
		args = append(args, "--startup", s.r.startup.String(), "--graceful", "--shutdown-timeout", jvmShutdownTimeout.String())
	}
	p, err := harness.StartChild(s.r.sp, "sample backend "+b.addr, b.logPath, procgroup.Command(s.r.opts.Binary, args...))
	if err != nil {
		return err
	}
	b.proc = p
	wctx, cancel := context.WithTimeout(ctx, s.r.timing.StepTimeout)
	defer cancel()
	line, err := p.WaitLine(wctx, exitTail)
	if err != nil {
		p.Stop(ctx, syscall.SIGKILL, 0)
		return err
	}
	if line != b.addr {
		p.Stop(ctx, syscall.SIGKILL, 0)
		return fmt.Errorf("sample backend on %s reported serving on %q", b.addr, line)
	}
	return nil
}

// jvmShutdownTimeout bounds a jvm backend's graceful shutdown (Spring
// Boot's spring.lifecycle.timeout-per-shutdown-phase defaults to 30 s).
const jvmShutdownTimeout = 30 * time.Second

// stopSignal is how the mode stops a backend. The fast backend stops at
// once on SIGTERM anyway; a jvm backend shuts down gracefully on SIGTERM,
// so the modes without any drain that kill (poll, watch, nginx) send
// SIGKILL: the process dies with what it has in flight and its
// registration stays until its ZooKeeper session expires.
func (s *stack) stopSignal() syscall.Signal {
	if s.r.backend == BackendJVM && (s.mode == ModePoll || s.mode == ModeWatch || s.mode == ModeNginx) {
		return syscall.SIGKILL
	}
	return syscall.SIGTERM
}

// newAddress reports whether a restarted backend comes back on a new
// port, as a pod on Kubernetes does: jvm backends, except under nginx,
// whose static upstream names fixed addresses.
func (s *stack) newAddress() bool {
	return s.r.backend == BackendJVM && s.mode != ModeNginx
}

// shutdownDesc says how the mode stops and restarts a backend.
func (s *stack) shutdownDesc() string {
	var d string
	switch {
	case s.r.backend == BackendFast:
		d = "SIGTERM (stops at once)"
	case s.stopSignal() == syscall.SIGKILL:
		d = "SIGKILL"
	default:
		d = "SIGTERM (graceful)"
	}
	if s.newAddress() {
		return d + ", back on a new port"
	}
	return d + ", back on the same address"
}

// restart stops b's process the mode's way (stopSignal) and starts a new
// one, on a new address when newAddress; it returns once the new one is
// registered, and records the time taken.
func (s *stack) restart(ctx context.Context, b *backend) error {
	t0 := time.Now()
	sig, grace := s.stopSignal(), 10*time.Second
	if sig == syscall.SIGTERM && s.r.backend == BackendJVM {
		grace = jvmShutdownTimeout + 10*time.Second
	}
	if b.proc != nil && !b.proc.Stop(ctx, sig, grace) {
		s.r.log.Warn("sample backend did not stop in time; killed", "addr", b.addr, "signal", sig)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.newAddress() {
		addrs, err := harness.FreeAddrsBelowEphemeral(1)
		if err != nil {
			return err
		}
		s.r.log.Info("sample backend moves to a new address", "mode", s.mode, "from", b.addr, "to", addrs[0])
		b.addr = addrs[0]
	}
	if err := s.startBackend(ctx, b); err != nil {
		return err
	}
	s.mu.Lock()
	s.restarts = append(s.restarts, time.Since(t0))
	s.mu.Unlock()
	return nil
}

// restartTimes returns the recorded restart times.
func (s *stack) restartTimes() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.restarts...)
}

func (s *stack) startNginx(ctx context.Context, addrs []string) error {
	bin := nginxconf.Find()
	if bin == "" {
		return errNoNginx
	}
	listen, err := harness.FreeAddrsBelowEphemeral(1)
	if err != nil {
		return err
	}
	// One process (master_process off): the parent-death signal then
	// covers all of nginx, and 200 requests/s need no more. The upstream
	// block is what users would write in front of four instances: a
	// static list, keep-alive connections, and nginx's defaults for
	// passive health (max_fails=1 fail_timeout=10s) and retries.
	s.nginx, err = harness.StartNginx(ctx, s.r.sp, bin, harness.NginxConfig{
		Generator: "zkgate demo (nginx mode)", Dir: filepath.Join(s.dir, "nginx"), Listen: listen[0],
		Upstream: "demo_backends", Backends: addrs, Prefix: routePrefix, Workers: "1", SingleProcess: true, Keepalive: 32,
	})
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	s.base = "http://" + listen[0] + routePrefix
	return nil
}

// errNoNginx: the nginx mode is skipped.
var errNoNginx = errors.New("nginx is not installed (Debian: apt-get install nginx-light, or scripts/install-deps.sh nginx)")

// waitRouting waits until the proxy has answered from every backend.
func (s *stack) waitRouting(ctx context.Context, addrs []string) error {
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 2 * time.Second}
	seen := map[string]bool{}
	var last string
	for {
		if s.nginx != nil && s.nginx.Exited() {
			return s.nginx.ExitError(exitTail)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"probe", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				seen[resp.Header.Get(samplebackend.HeaderInstance)] = true
			} else {
				last = resp.Status
			}
		} else {
			last = err.Error()
		}
		all := true
		for _, a := range addrs {
			all = all && seen[a]
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: the proxy did not route to all %d backends (%d seen, last: %s): %w", s.mode, len(addrs), len(seen), last, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitPresence waits until the controller sees the gateway: a drain
// waits only for the gateways live when it starts.
func (s *stack) waitPresence(ctx context.Context) error {
	for {
		gws, err := s.client.Gateways(ctx)
		if err == nil {
			for _, g := range gws.Gateways {
				if g.ID == s.gw.ID() {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: the controller did not see the gateway: %w (last error: %v)", s.mode, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// close stops everything the stack started: the proxy first, then the
// backends, then the controller.
func (s *stack) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.gw != nil {
		if err := s.gw.Shutdown(ctx); err != nil {
			s.r.log.Warn("gateway shutdown", "mode", s.mode, "err", err)
		}
	}
	if s.nginx != nil {
		harness.StopNginx(ctx, s.nginx)
	}
	var wg sync.WaitGroup
	for _, b := range s.backends {
		if b.proc == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.proc.Stop(ctx, syscall.SIGTERM, 5*time.Second)
		}()
	}
	wg.Wait()
	if s.ctl != nil {
		s.ctl.Close()
	}
	if s.obs != nil {
		s.obs.Close()
	}
}

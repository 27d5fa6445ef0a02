package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/harness"
	"github.com/zkgate/zkgate/internal/procgroup"
	"github.com/zkgate/zkgate/internal/zktest"
)

// The faults `zkgate bench faults` runs, in this order.
const (
	FaultLeaderKill         = "leader-kill"
	FaultEnsembleOutage     = "ensemble-outage"
	FaultGatewayPause       = "gateway-pause"
	FaultGatewayKill        = "gateway-kill"
	FaultControllerKill     = "controller-kill"
	FaultBackendKill        = "backend-kill"
	FaultSessionFlap        = "session-flap"
	FaultDrainedBackendKill = "drained-backend-kill"
)

// AllFaults lists every fault in the order the suite runs them.
var AllFaults = []string{
	FaultLeaderKill, FaultEnsembleOutage, FaultGatewayPause, FaultGatewayKill,
	FaultControllerKill, FaultBackendKill, FaultSessionFlap, FaultDrainedBackendKill,
}

// ParseFaults reads a comma-separated fault list; the result keeps the
// suite's order and has no duplicates.
func ParseFaults(s string) ([]string, error) {
	return harness.ParseList(s, AllFaults, nil, func(f string) error {
		return fmt.Errorf("unknown fault %q (known: %s)", f, strings.Join(AllFaults, ", "))
	}, errors.New("no fault selected"))
}

// FaultsOptions configure [RunFaults]. Zero values take the documented
// defaults.
type FaultsOptions struct {
	// Binary is the zkgate executable that runs the gateways, the
	// controllers and the sample backends (required).
	Binary string
	// Faults to run, in the suite's order; default AllFaults.
	Faults []string
	// Gateways is the number of gateway processes; default 3 (2 or 3).
	Gateways int
	// Backends is the number of sample backends; default 3 (at least 3:
	// one is out of rotation during a fault and two keep serving).
	Backends int
	// Rate is the load in requests a second; default 200.
	Rate int
	// SessionTimeout of every component's ZooKeeper session; default 4s.
	SessionTimeout time.Duration
	// Outage is how long the whole ensemble is down; default 15s.
	Outage time.Duration
	RunOptions
}

func (o *FaultsOptions) defaults() error {
	withDefaults(o, FaultsOptions{
		Faults: AllFaults, Gateways: 3, Backends: 3, Rate: 200, SessionTimeout: 4 * time.Second, Outage: 15 * time.Second,
		RunOptions: runDefaults(),
	})
	switch {
	case o.Binary == "":
		return errors.New("no zkgate binary")
	case o.Gateways < 2 || o.Gateways > 3:
		return errors.New("--gateways must be 2 or 3")
	case o.Backends < 3 || o.Backends > 10:
		return errors.New("--backends must be between 3 and 10")
	case o.Rate < 10 || o.Rate > 2000:
		return errors.New("--rate must be between 10 and 2000")
	case o.SessionTimeout < 2*time.Second || o.SessionTimeout > 30*time.Second:
		return errors.New("--session-timeout must be between 2s and 30s")
	case o.Outage < time.Second || o.Outage > 5*time.Minute:
		return errors.New("--outage must be between 1s and 5m")
	}
	return nil
}

// Fixed names of a fault run.
const (
	faultsService = "faults"
	faultsActor   = "zkgate-bench-faults"
	faultsSlowMs  = 800
)

// faultEnv is a running fault-suite setup: real processes for everything
// but ZooKeeper's harness and the load.
type faultEnv struct {
	opts  FaultsOptions
	log   *slog.Logger
	dir   string
	sp    *procgroup.Spawner
	zk    *zktest.Cluster
	token string

	gateways    []*faultProc
	controllers []*faultProc
	backends    []*faultProc

	client *ctlclient.Client // every controller, in order
	hc     *http.Client
	load   *faultLoad
}

// faultProc is one zkgate process and how to start it again.
type faultProc struct {
	name   string // gw-1, ctl-1, b1
	args   []string
	addr   string // gateway: listen; controller: listen; backend: its address
	admin  string // gateway: admin address
	url    string // gateway and controller: http://addr
	proc   *procgroup.Proc
	starts int
}

// freeAddr returns one free loopback address (see [harness.FreeAddrs]).
func freeAddr() (string, error) {
	a, err := harness.FreeAddrs(1)
	if err != nil {
		return "", err
	}
	return a[0], nil
}

// writeConfig writes the configuration every process of the run reads
// (each controller gets its own listen address, each gateway its id and
// addresses).
func (e *faultEnv) writeConfig(name, gwID, listen, admin, ctlListen string) (string, error) {
	c := harness.Config{
		Generator: "zkgate bench faults", Servers: e.zk.Servers(), SessionTimeout: e.opts.SessionTimeout,
		RegistryRoot: registryRoot, ResyncInterval: 10 * time.Second,
	}
	if gwID != "" {
		c.Gateway = &harness.GatewayConfig{
			ID: gwID, Listen: listen, AdminListen: admin, ShutdownTimeout: 5 * time.Second,
			Routes: []harness.Route{{Prefix: faultsPrefix, Service: faultsService}},
		}
	}
	if ctlListen != "" {
		c.Controller = &harness.ControllerConfig{Listen: ctlListen, Tokens: []string{e.token}, ReconcileInterval: 5 * time.Second}
	}
	p := filepath.Join(e.dir, name+".yaml")
	return p, c.Write(p)
}

// start (re)starts p; its log is appended to <dir>/<name>.log.
func (e *faultEnv) start(ctx context.Context, p *faultProc) error {
	logPath := filepath.Join(e.dir, p.name+".log")
	f, err := harness.AppendLog(p.name, logPath)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(f, "==== start %d at %s\n", p.starts, time.Now().Format(time.RFC3339Nano))
	cmd := command(ctx, e.opts.Binary, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	proc, err := e.sp.Spawn(p.name, cmd, logPath, f)
	if err != nil {
		return err
	}
	p.proc = proc
	return nil
}

// kill sends SIGKILL to p and waits until it has been reaped.
func (e *faultEnv) kill(p *faultProc) {
	if p.proc == nil || p.proc.Exited() {
		return
	}
	p.proc.Signal(syscall.SIGKILL)
	<-p.proc.Done()
}

// setup starts ZooKeeper, the backends, the controllers and the gateways
// and waits until every gateway routes to every backend.
func (e *faultEnv) setup(ctx context.Context) error {
	log := e.log
	log.Info("starting ZooKeeper", "servers", 3)
	var err error
	e.zk, err = zktest.New(ctx, zktest.Config{
		Size: 3, Dir: filepath.Join(e.dir, "zookeeper"),
		Logf: func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return fmt.Errorf("starting ZooKeeper: %w", err)
	}
	e.token = randomToken()
	var urls []string
	for i := range 2 {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("ctl-%d", i+1)
		cfg, err := e.writeConfig(name, "", "", "", addr)
		if err != nil {
			return err
		}
		p := &faultProc{name: name, addr: addr, url: "http://" + addr,
			args: []string{"controller", "--config", cfg, "--id", name, "--log-level", "info"}}
		e.controllers = append(e.controllers, p)
		urls = append(urls, p.url)
	}
	e.client, err = ctlclient.New(strings.Join(urls, ","), ctlclient.Options{Token: e.token, Actor: faultsActor})
	if err != nil {
		return err
	}
	bcfg, err := e.writeConfig("backend", "", "", "", "")
	if err != nil {
		return err
	}
	for i := range e.opts.Backends {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("b%d", i+1)
		e.backends = append(e.backends, &faultProc{name: name, addr: addr,
			args: []string{"sample-backend", "--config", bcfg, "--service", faultsService, "--listen", addr, "--name", name, "--log-level", "warn"}})
	}
	var gws []string
	for i := range e.opts.Gateways {
		listen, err := freeAddr()
		if err != nil {
			return err
		}
		admin, err := freeAddr()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("gw-%d", i+1)
		cfg, err := e.writeConfig(name, name, listen, admin, "")
		if err != nil {
			return err
		}
		p := &faultProc{name: name, addr: listen, admin: admin, url: "http://" + listen,
			args: []string{"gateway", "--config", cfg, "--log-level", "info"}}
		e.gateways = append(e.gateways, p)
		gws = append(gws, p.url)
	}
	for _, group := range [][]*faultProc{e.backends, e.controllers, e.gateways} {
		for _, p := range group {
			if err := e.start(ctx, p); err != nil {
				return err
			}
		}
	}
	e.load = newFaultLoad(gws, e.opts.Rate, faultsSlowMs)
	if err := e.waitSettled(ctx, readyTimeout*2); err != nil {
		return err
	}
	log.Info("everything ready", "gateways", len(e.gateways), "controllers", len(e.controllers), "backends", len(e.backends))
	return nil
}

// settledState says what is not as it should be between faults: every
// process running, every gateway ready and seen by the controllers,
// every backend registered and serving, no mark.
func (e *faultEnv) settledState(ctx context.Context) string {
	for _, group := range [][]*faultProc{e.backends, e.controllers, e.gateways} {
		for _, p := range group {
			if p.proc.Exited() {
				return p.proc.ExitError(exitTail).Error()
			}
		}
	}
	for _, g := range e.gateways {
		if why := e.gatewayReady(ctx, g); why != "" {
			return why
		}
	}
	for _, c := range e.controllers {
		if code, err := e.get(ctx, c.url+"/readyz"); err != nil || code != http.StatusOK {
			return fmt.Sprintf("controller %s not ready (%d, %v)", c.name, code, err)
		}
	}
	gws, err := e.client.Gateways(ctx)
	if err != nil {
		return "controller: " + err.Error()
	}
	if len(gws.Gateways) != len(e.gateways) {
		return fmt.Sprintf("the controller sees %d of %d gateways", len(gws.Gateways), len(e.gateways))
	}
	svc, err := e.client.Service(ctx, faultsService)
	if err != nil {
		return "controller: " + err.Error()
	}
	serving := 0
	for _, in := range svc.Instances {
		if in.State == ctlclient.StateServing {
			serving++
		}
	}
	if serving != len(e.backends) || len(svc.Instances) != len(e.backends) {
		return fmt.Sprintf("%d of %d backends serving (%d listed)", serving, len(e.backends), len(svc.Instances))
	}
	return ""
}

func (e *faultEnv) gatewayReady(ctx context.Context, g *faultProc) string {
	if code, err := e.get(ctx, "http://"+g.admin+"/readyz"); err != nil || code != http.StatusOK {
		return fmt.Sprintf("gateway %s not ready (%d, %v)", g.name, code, err)
	}
	return ""
}

// waitSettled waits until settledState is empty.
func (e *faultEnv) waitSettled(ctx context.Context, bound time.Duration) error {
	return e.waitFor(ctx, bound, func() string { return e.settledState(ctx) })
}

// waitFor polls cond every 50 ms until it answers "" or bound passes.
func (e *faultEnv) waitFor(ctx context.Context, bound time.Duration, cond func() string) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		why := cond()
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %s: %s", bound, why)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (e *faultEnv) get(ctx context.Context, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// close stops the load and every process, then ZooKeeper.
func (e *faultEnv) close() {
	if e.load != nil {
		e.load.close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	for _, group := range [][]*faultProc{e.gateways, e.controllers, e.backends} {
		for _, p := range group {
			if p.proc != nil {
				p.proc.Signal(syscall.SIGCONT)
				p.proc.Stop(ctx, syscall.SIGTERM, 3*time.Second)
			}
		}
	}
	if e.zk != nil {
		if err := e.zk.Close(); err != nil {
			e.log.Debug("stopping ZooKeeper", "err", err)
		}
	}
	e.sp.Close()
}

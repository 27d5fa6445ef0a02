package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zkgate/zkgate/internal/component"
	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/harness"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/register"
)

// Targets of docs/benchmarks.md#targets that the propagation benchmark checks.
const (
	// TargetAllGatewaysP99 bounds p99 of "drain API call → every gateway
	// applied the mark".
	TargetAllGatewaysP99 = 10 * time.Millisecond
	// TargetConfirmedDrain bounds a confirmed drain of an idle instance
	// (100 ms plus the longest request in flight, which is zero here).
	TargetConfirmedDrain = 100 * time.Millisecond
	// TargetWritesPerCycle bounds the ZooKeeper writes (transactions) of
	// one drain/undrain cycle with TargetWritesGateways gateways (strictly
	// fewer).
	TargetWritesPerCycle = 20
	TargetWritesGateways = 10
)

// PropagationOptions configure [RunPropagation]. Zero values take the
// documented defaults.
type PropagationOptions struct {
	// Gateways is the number of gateways; default 10.
	Gateways int
	// Drains is the number of measured drain/undrain cycles; default 200.
	Drains int
	// Warmup is how long unmeasured cycles run first (at least 5 of
	// them), while the ZooKeeper JVMs compile their hot paths; default
	// 20s.
	Warmup time.Duration
	// Ensemble is the number of ZooKeeper servers; default 3.
	Ensemble int
	// Instances is the number of registered backend instances the drains
	// rotate over; default 3 (at least 2, so a drained instance never
	// leaves its service without an instance in rotation).
	Instances int
	// Pause separates cycles; default 10ms.
	Pause time.Duration
	// DrainTimeout bounds each confirmed drain and each wait for the
	// gateways; default 10s.
	DrainTimeout time.Duration
	// SessionTimeout is the ZooKeeper session timeout of every component;
	// default 10s.
	SessionTimeout time.Duration
	// CPUProfile, when set, records a CPU profile of the bench process
	// (the gateways, the controller and the bench's clients) during the
	// measured cycles into this file.
	CPUProfile string
	RunOptions
}

func (o *PropagationOptions) defaults() error {
	withDefaults(o, PropagationOptions{
		Gateways: 10, Drains: 200, Warmup: 20 * time.Second, Ensemble: 3, Instances: 3, Pause: 10 * time.Millisecond,
		DrainTimeout: 10 * time.Second, SessionTimeout: 10 * time.Second, RunOptions: runDefaults(),
	})
	switch {
	case o.Gateways < 1 || o.Gateways > 100:
		return errors.New("--gateways must be between 1 and 100")
	case o.Drains < 1 || o.Drains > 100000:
		return errors.New("--drains must be between 1 and 100000")
	case o.Warmup < 0:
		return errors.New("--warmup must not be negative")
	case o.Warmup > time.Hour:
		return errors.New("--warmup must be at most 1h")
	case o.Ensemble < 1 || o.Ensemble > 7:
		return errors.New("--ensemble must be between 1 and 7")
	case o.Instances < 2 || o.Instances > 100:
		return errors.New("--instances must be between 2 and 100")
	case o.Pause < 0 || o.DrainTimeout < 0 || o.SessionTimeout < 0:
		return errors.New("durations must not be negative")
	}
	return nil
}

// The fixed names of a propagation run.
const (
	propService = "bench"
	propActor   = "zkgate-bench"
	opDrain     = "drain"
	opUndrain   = "undrain"
)

// RunPropagation measures how fast a drain reaches every gateway: it
// starts a ZooKeeper ensemble, one controller and K gateways, all real
// (the controller and the gateways in this process, each with its own
// ZooKeeper session and listeners), registers a few idle backend
// instances, and runs drain/undrain cycles through the controller's API.
func RunPropagation(ctx context.Context, opts PropagationOptions) (*PropagationReport, error) {
	if err := opts.defaults(); err != nil {
		return nil, &OptionsError{Err: err}
	}
	log := opts.Logger
	rep := &PropagationReport{
		RunHeader: newRunHeader(PropagationReportSchema, opts.Command, opts.Version),
		Setup: PropagationSetup{
			Gateways: opts.Gateways, Drains: opts.Drains, WarmupText: opts.Warmup.String(), Ensemble: opts.Ensemble,
			Instances: opts.Instances, PauseText: opts.Pause.String(), DrainTimeoutText: opts.DrainTimeout.String(),
			SessionTimeoutText: opts.SessionTimeout.String(),
			Processes: "the gateways and the controller run in the bench's process (gatewayd.Start, controller.Start), " +
				"each with its own ZooKeeper session and its own listeners, as separate processes would have; " +
				"they share one Go runtime. Each ZooKeeper server is a separate JVM.",
			Instance: "idle in-process HTTP listeners registered as ephemeral Curator nodes; no request is in flight during a drain",
		},
	}
	rep.Tools.ZooKeeper = fmt.Sprintf("Debian zookeeper package, %d-server ensemble on loopback, started by the bench", opts.Ensemble)
	rep.Tools.Java = toolVersion(ctx, "java", "-version")

	dir, cleanup, err := harness.WorkDir(opts.Dir, "zkgate-bench-propagation-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	compLogFile, err := os.Create(filepath.Join(dir, "components.log"))
	if err != nil {
		return nil, fmt.Errorf("components log: %w", err)
	}
	defer compLogFile.Close()
	compLog := slog.New(slog.NewTextHandler(compLogFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	e := &propEnv{opts: opts, log: log, compLog: compLog}
	defer e.close()

	log.Info("starting ZooKeeper", "servers", opts.Ensemble)
	e.zk, err = zktest.New(ctx, zktest.Config{
		Size: opts.Ensemble, Dir: filepath.Join(dir, "zookeeper"),
		Logf: func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return nil, fmt.Errorf("starting ZooKeeper: %w", err)
	}
	rep.Setup.ZooKeeperServers = e.zk.Servers()
	if err := e.startInstances(ctx); err != nil {
		return nil, err
	}
	if err := e.startController(ctx); err != nil {
		return nil, err
	}
	if err := e.startGateways(ctx); err != nil {
		return nil, err
	}
	if err := e.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := e.startObserver(ctx); err != nil {
		return nil, err
	}

	// Warm-up: unmeasured cycles until opts.Warmup has passed. The
	// ZooKeeper JVMs compile their hot paths meanwhile: a fresh ensemble
	// spends about twice the CPU per request, which shows in every figure.
	log.Info("warming up", "for", opts.Warmup)
	c := 0
	for warm := time.Now(); c < minWarmupCycles || time.Since(warm) < opts.Warmup; c++ {
		if _, err := e.cycle(ctx, c, e.instances[c%len(e.instances)].addr); err != nil {
			return nil, fmt.Errorf("warm-up cycle %d: %w", c+1, err)
		}
		if err := component.Sleep(ctx, opts.Pause); err != nil {
			return nil, err
		}
	}
	rep.Setup.WarmupCycles = c
	log.Info("warm-up done; measuring", "warmup_cycles", c, "drains", opts.Drains)
	if opts.CPUProfile != "" {
		prof, err := harness.StartCPUProfile(opts.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer prof.Stop()
	}
	cpu0, start, zk0, calls0 := e.cpuNow(), time.Now(), e.zkCounters(ctx), e.gatewayCalls()
	for n := range opts.Drains {
		s, err := e.cycle(ctx, c, e.instances[c%len(e.instances)].addr)
		if err != nil {
			return nil, fmt.Errorf("cycle %d: %w", n+1, err)
		}
		c++
		s.Cycle = n + 1
		rep.Samples = append(rep.Samples, s)
		if n+1 == opts.Drains || (n+1)%50 == 0 {
			log.Info("progress", "drains", n+1, "of", opts.Drains)
		}
		if err := component.Sleep(ctx, opts.Pause); err != nil {
			return nil, err
		}
	}
	rep.CPU = e.cpuSince(cpu0, time.Since(start))
	calls1 := e.gatewayCalls()
	rep.ZooKeeper = zkActivity(zk0, e.zkCounters(ctx), opts.Drains, rep.CPU)
	if rep.ZooKeeper != nil {
		var watches int
		for _, d := range e.gateways {
			watches += d.Session().Watches()
		}
		n := float64(len(e.gateways))
		rep.ZooKeeper.GatewayRequestsPerCycle = round(float64(calls1-calls0)/n/float64(opts.Drains), 2)
		rep.ZooKeeper.GatewayWatches = round1(float64(watches) / n)
	}
	if opts.CPUProfile != "" {
		rep.Profile = opts.CPUProfile
	}
	rep.GatewayIDs = e.gatewayIDs()
	rep.summarize()
	return rep, nil
}

// gatewayCalls is the requests all gateways' sessions sent so far.
func (e *propEnv) gatewayCalls() uint64 {
	var n uint64
	for _, d := range e.gateways {
		n += d.Session().Calls()
	}
	return n
}

// minWarmupCycles is the least number of warm-up cycles.
const minWarmupCycles = 5

// zkCount is what ZooKeeper's srvr answers count: the packets each
// server received and the last transaction id.
type zkCount struct {
	received int64
	zxid     int64
	ok       bool
}

// zkCounters reads srvr on every server (ok false when one did not
// answer).
func (e *propEnv) zkCounters(ctx context.Context) zkCount {
	var c zkCount
	for i := range e.zk.Size() {
		out, err := zktest.FourLetterWord(ctx, e.zk.Addr(i), "srvr")
		if err != nil {
			return zkCount{}
		}
		recv, zxid, err := parseSrvr(out)
		if err != nil {
			return zkCount{}
		}
		c.received += recv
		c.zxid = max(c.zxid, zxid)
	}
	c.ok = true
	return c
}

// parseSrvr reads "Received:" and "Zxid:" of a srvr answer.
func parseSrvr(out string) (received, zxid int64, err error) {
	var gotR, gotZ bool
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "Received":
			received, err = strconv.ParseInt(v, 10, 64)
			gotR = err == nil
		case "Zxid":
			zxid, err = strconv.ParseInt(strings.TrimPrefix(v, "0x"), 16, 64)
			gotZ = err == nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("srvr: %q: %w", line, err)
		}
	}
	if !gotR || !gotZ {
		return 0, 0, errors.New("srvr: no Received or Zxid line")
	}
	return received, zxid, nil
}

// zkActivity is what ZooKeeper did between two readings, per cycle.
func zkActivity(a, b zkCount, cycles int, cpu *RunCPU) *ZooKeeperActivity {
	if !a.ok || !b.ok || cycles == 0 {
		return nil
	}
	z := &ZooKeeperActivity{
		Transactions: b.zxid - a.zxid, Requests: b.received - a.received,
	}
	// A new leader epoch restarts the counter (the high 32 bits change).
	if b.zxid>>32 != a.zxid>>32 {
		z.Transactions = b.zxid & 0xffffffff
	}
	z.TransactionsPerCycle = round1(float64(z.Transactions) / float64(cycles))
	z.RequestsPerCycle = round1(float64(z.Requests) / float64(cycles))
	if cpu != nil && z.Requests > 0 {
		z.CPUPerRequestUS = round1(cpu.ZooKeeperSec * 1e6 / float64(z.Requests))
	}
	return z
}

// propEnv is a running propagation setup.
type propEnv struct {
	opts    PropagationOptions
	log     *slog.Logger
	compLog *slog.Logger

	zk        *zktest.Cluster
	regSess   *zksession.Session
	instances []*idleInstance
	ctl       *controller.Controller
	client    *ctlclient.Client
	gateways  []*gatewayd.Daemon
	tracker   *applyTracker
	observer  *zksession.Session
	obsHints  *zksession.Hints
	obsDone   chan struct{}
}

// idleInstance is a registered backend instance nobody sends requests to.
type idleInstance struct {
	addr string
	srv  *http.Server
}

func (e *propEnv) servers() string {
	return `["` + strings.Join(e.zk.Servers(), `", "`) + `"]`
}

// config renders one component's configuration.
func (e *propEnv) config(gatewayID, token string) (*config.Config, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "zookeeper:\n  servers: %s\n  session_timeout: %s\n", e.servers(), e.opts.SessionTimeout)
	b.WriteString("registry:\n  format: curator\n  root: " + registryRoot + "\n")
	fmt.Fprintf(&b, "gateway:\n  id: %q\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  shutdown_timeout: 5s\n", gatewayID)
	fmt.Fprintf(&b, "  routes:\n    - prefix: %s\n      service: %s\n      strip_prefix: true\n", benchPrefix, propService)
	fmt.Fprintf(&b, "controller:\n  listen: 127.0.0.1:0\n  tokens: [%q]\n", token)
	cfg, err := config.Parse([]byte(b.String()))
	if err != nil {
		return nil, fmt.Errorf("bench configuration: %w", err)
	}
	return cfg, nil
}

// connect opens a ZooKeeper session of the bench itself and waits (at
// most readyTimeout) until it is connected; errors start with what. On
// error the session is closed.
func (e *propEnv) connect(ctx context.Context, what string) (*zksession.Session, error) {
	sess, err := zksession.Connect(zksession.Config{Servers: e.zk.Servers(), SessionTimeout: e.opts.SessionTimeout, Logger: e.compLog})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	cctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := sess.WaitConnected(cctx); err != nil {
		sess.Close()
		return nil, fmt.Errorf("%s: connecting to ZooKeeper: %w", what, err)
	}
	return sess, nil
}

// startInstances starts the idle backends and registers them as ephemeral
// Curator nodes.
func (e *propEnv) startInstances(ctx context.Context) error {
	sess, err := e.connect(ctx, "registering instances")
	if err != nil {
		return err
	}
	e.regSess = sess
	cctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	dir := registryRoot + "/" + propService
	if err := sess.EnsurePath(cctx, dir, nil); err != nil {
		return fmt.Errorf("registering instances: %w", err)
	}
	for range e.opts.Instances {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("instance listener: %w", err)
		}
		srv := &http.Server{
			Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }),
			ReadHeaderTimeout: 10 * time.Second,
		}
		go srv.Serve(ln)
		in := &idleInstance{addr: ln.Addr().String(), srv: srv}
		e.instances = append(e.instances, in)
		id, err := register.NewUUID()
		if err != nil {
			return err
		}
		data, err := curatorJSON(propService, id, in.addr, time.Now())
		if err != nil {
			return err
		}
		if _, err := sess.Create(cctx, dir+"/"+id, data, zksession.FlagEphemeral, nil); err != nil {
			return fmt.Errorf("registering %s: %w", in.addr, err)
		}
	}
	e.log.Info("instances registered", "count", len(e.instances))
	return nil
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (e *propEnv) startController(ctx context.Context) error {
	token := randomToken()
	cfg, err := e.config("", token)
	if err != nil {
		return err
	}
	e.ctl, err = controller.Start(ctx, cfg, controller.Options{Logger: e.compLog, ID: "bench-controller", Version: e.opts.Version})
	if err != nil {
		return fmt.Errorf("starting the controller: %w", err)
	}
	e.client, err = ctlclient.New(e.ctl.URL(), ctlclient.Options{Token: token, Actor: propActor})
	if err != nil {
		return err
	}
	e.log.Info("controller started", "url", e.ctl.URL())
	return nil
}

func (e *propEnv) startGateways(ctx context.Context) error {
	e.tracker = newApplyTracker(e.opts.Gateways)
	for i := range e.opts.Gateways {
		cfg, err := e.config(fmt.Sprintf("bench-gw-%02d", i+1), "unused")
		if err != nil {
			return err
		}
		d, err := gatewayd.Start(ctx, cfg, gatewayd.Options{
			Logger: e.compLog, Version: e.opts.Version,
			OnApply: func(_ *registry.Snapshot, mk *marks.Snapshot) { e.tracker.onApply(i, mk) },
		})
		if err != nil {
			return fmt.Errorf("starting gateway %d: %w", i+1, err)
		}
		e.gateways = append(e.gateways, d)
	}
	e.log.Info("gateways started", "count", len(e.gateways))
	return nil
}

// waitReady waits until every gateway routes to every instance and the
// controller is ready and sees every gateway's presence.
func (e *propEnv) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		why := e.notReady(ctx, hc)
		if why == "" {
			e.log.Info("everything ready", "gateways", len(e.gateways))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s: %s", readyTimeout, why)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (e *propEnv) notReady(ctx context.Context, hc *http.Client) string {
	for _, d := range e.gateways {
		if err := d.Err(); err != nil {
			return fmt.Sprintf("gateway %s failed: %v", d.ID(), err)
		}
		if rd := d.Gateway().Ready(); !rd.Ready {
			return fmt.Sprintf("gateway %s: %s", d.ID(), rd.Reason)
		}
		n := 0
		for _, st := range d.Gateway().InstanceStates() {
			if st.Service == propService && st.Weight > 0 {
				n++
			}
		}
		if n != len(e.instances) {
			return fmt.Sprintf("gateway %s routes to %d of %d instances", d.ID(), n, len(e.instances))
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.ctl.URL()+"/readyz", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "controller: " + err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "controller /readyz: " + resp.Status
	}
	gws, err := e.client.Gateways(ctx)
	if err != nil {
		return "controller: " + err.Error()
	}
	if len(gws.Gateways) != len(e.gateways) {
		return fmt.Sprintf("the controller sees %d of %d gateways", len(gws.Gateways), len(e.gateways))
	}
	return ""
}

// startObserver connects a plain ZooKeeper client that watches each mark
// node: when its watch fires is when ZooKeeper told a client of the write,
// which splits the propagation into "controller + ZooKeeper" and "gateway".
func (e *propEnv) startObserver(ctx context.Context) error {
	sess, err := e.connect(ctx, "observer")
	if err != nil {
		return err
	}
	e.observer = sess
	e.obsHints = sess.Hints(marks.Dir(config.DefaultZKRoot))
	e.obsDone = make(chan struct{})
	go func() {
		defer close(e.obsDone)
		for range e.obsHints.C() {
			now := time.Now()
			for p := range e.obsHints.Take().Paths {
				e.tracker.onWatch(p, now)
			}
		}
	}()
	return nil
}

// cycle drains addr with wait=true, waits until every gateway applied the
// mark, undrains it and waits until every gateway applied the removal.
func (e *propEnv) cycle(ctx context.Context, n int, addr string) (DrainSample, error) {
	s := DrainSample{Addr: addr}
	markPath := marks.Path(config.DefaultZKRoot, propService, addr)
	wctx, cancel := context.WithTimeout(ctx, e.opts.DrainTimeout+5*time.Second)
	defer cancel()

	// Drain.
	if _, _, err := e.observer.ExistsW(wctx, markPath); err != nil {
		return s, fmt.Errorf("observer watch: %w", err)
	}
	start := e.tracker.begin(opDrain, propService, addr, markPath)
	resp, err := e.client.Drain(wctx, propService, addr, ctlclient.DrainRequest{
		Reason: fmt.Sprintf("zkgate bench propagation, cycle %d", n+1), Wait: true, Timeout: e.opts.DrainTimeout.String(),
	})
	apiDone := time.Now()
	if err != nil {
		return s, fmt.Errorf("drain %s: %w", addr, err)
	}
	s.DrainStatus = resp.Status
	s.DrainAPIMS = ms(apiDone.Sub(start))
	for _, g := range resp.Gateways {
		s.CtlAppliedMS = max(s.CtlAppliedMS, float64(g.AppliedMs))
	}
	res, err := e.tracker.wait(wctx)
	if err != nil {
		return s, fmt.Errorf("drain %s: waiting for every gateway to apply the mark: %w (applied: %s)", addr, err, res.describe(e.gatewayIDs()))
	}
	s.DrainGatewayMS, s.DrainAllMS, s.DrainWatchMS = res.relative(start)
	s.AppliedBeforeAnswer = !res.last().After(apiDone)

	// Undrain.
	if _, _, err := e.observer.ExistsW(wctx, markPath); err != nil {
		return s, fmt.Errorf("observer watch: %w", err)
	}
	start = e.tracker.begin(opUndrain, propService, addr, markPath)
	if _, err := e.client.Undrain(wctx, propService, addr, "zkgate bench propagation"); err != nil {
		return s, fmt.Errorf("undrain %s: %w", addr, err)
	}
	s.UndrainAPIMS = ms(time.Since(start))
	res, err = e.tracker.wait(wctx)
	if err != nil {
		return s, fmt.Errorf("undrain %s: waiting for every gateway to apply the removal: %w (applied: %s)", addr, err, res.describe(e.gatewayIDs()))
	}
	s.UndrainGatewayMS, s.UndrainAllMS, s.UndrainWatchMS = res.relative(start)
	return s, nil
}

func (e *propEnv) gatewayIDs() []string {
	ids := make([]string, len(e.gateways))
	for i, d := range e.gateways {
		ids[i] = d.ID()
	}
	return ids
}

// cpuUse is CPU time so far of the bench process and of the ZooKeeper
// servers, and of the whole machine.
type cpuUse struct {
	bench, zk time.Duration
	sys       sysCPU
	ok        bool
}

func (e *propEnv) cpuNow() cpuUse {
	var u cpuUse
	var err error
	if u.sys, err = readSysCPU(); err != nil {
		return u
	}
	if u.bench, err = groupCPU(os.Getpid()); err != nil {
		// The bench may not lead its process group: read its own stat.
		b, rerr := os.ReadFile("/proc/self/stat")
		if rerr != nil {
			return u
		}
		if _, u.bench, err = statCPU(string(b)); err != nil {
			return u
		}
	}
	for i := range e.zk.Size() {
		if pid := e.zk.PID(i); pid > 0 {
			c, err := groupCPU(pid)
			if err != nil {
				return u
			}
			u.zk += c
		}
	}
	u.ok = true
	return u
}

func (e *propEnv) cpuSince(c0 cpuUse, wall time.Duration) *RunCPU {
	c1 := e.cpuNow()
	if !c0.ok || !c1.ok {
		return nil
	}
	busy := (c1.sys.Tasks - c0.sys.Tasks) + (c1.sys.Interrupts - c0.sys.Interrupts)
	bench, zk := c1.bench-c0.bench, c1.zk-c0.zk
	return &RunCPU{
		WallSec:      round(wall.Seconds(), 2),
		AvailableSec: round(float64(runtime.NumCPU())*wall.Seconds(), 2),
		BenchSec:     round(bench.Seconds(), 2),
		ZooKeeperSec: round(zk.Seconds(), 2),
		OtherSec:     round(max(busy-bench-zk, 0).Seconds(), 2),
	}
}

// close stops everything in order: observer, gateways, controller, the
// registrations, the instances, ZooKeeper.
func (e *propEnv) close() {
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	if e.observer != nil {
		e.observer.RemoveHints(e.obsHints)
		e.observer.Close()
		if e.obsDone != nil {
			<-e.obsDone
		}
	}
	var wg sync.WaitGroup
	for _, d := range e.gateways {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Shutdown(ctx); err != nil {
				e.log.Debug("gateway shutdown", "gateway", d.ID(), "err", err)
			}
		}()
	}
	wg.Wait()
	if e.ctl != nil {
		if err := e.ctl.Shutdown(ctx); err != nil {
			e.log.Debug("controller shutdown", "err", err)
		}
	}
	if e.regSess != nil {
		e.regSess.Close()
	}
	for _, in := range e.instances {
		in.srv.Close()
	}
	if e.zk != nil {
		if err := e.zk.Close(); err != nil {
			e.log.Debug("stopping ZooKeeper", "err", err)
		}
	}
}

// applyTracker records when each gateway applied the operation in
// progress: for a drain, the first routing table built with the mark; for
// an undrain, the first built without it. It also records when the
// observer's watch on the mark node fired.
type applyTracker struct {
	mu       sync.Mutex
	op       string
	service  string
	addr     string
	markPath string
	start    time.Time
	applied  []time.Time
	watch    time.Time
	left     int
	done     chan struct{}
}

func newApplyTracker(gateways int) *applyTracker {
	return &applyTracker{applied: make([]time.Time, gateways)}
}

// begin starts tracking op on service/addr and returns the start time,
// taken last: the caller makes the API call right after.
func (t *applyTracker) begin(op, service, addr, markPath string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.op, t.service, t.addr, t.markPath = op, service, addr, markPath
	clear(t.applied)
	t.watch = time.Time{}
	t.left = len(t.applied)
	t.done = make(chan struct{})
	t.start = time.Now()
	return t.start
}

// onApply is gatewayd.Options.OnApply of gateway i.
func (t *applyTracker) onApply(i int, mk *marks.Snapshot) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.op == "" || !t.applied[i].IsZero() {
		return
	}
	// A drain is applied from the table that stops picking the address:
	// the mark read, or only its event seen (pending, marks.Snapshot);
	// an undrain from the first table with neither.
	_, has := mk.Get(t.service, t.addr)
	if excluded := has || mk.IsPending(t.service, t.addr); excluded != (t.op == opDrain) {
		return
	}
	t.applied[i] = now
	if t.left--; t.left == 0 {
		close(t.done)
	}
}

func (t *applyTracker) onWatch(p string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p == t.markPath && t.watch.IsZero() && t.op != "" {
		t.watch = now
	}
}

// trackResult is what one operation's tracking recorded.
type trackResult struct {
	applied []time.Time
	watch   time.Time
}

// wait waits until every gateway applied the operation, then stops
// tracking it. On error the result holds what was recorded so far.
func (t *applyTracker) wait(ctx context.Context) (trackResult, error) {
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r := trackResult{applied: append([]time.Time(nil), t.applied...), watch: t.watch}
	t.op = ""
	return r, err
}

// relative returns each gateway's time, the slowest one's and the
// watch's, in ms after start (the watch -1 when it did not fire).
func (r trackResult) relative(start time.Time) (perGateway []float64, all, watch float64) {
	perGateway = make([]float64, len(r.applied))
	for i, a := range r.applied {
		perGateway[i] = ms(a.Sub(start))
		all = max(all, perGateway[i])
	}
	watch = -1
	if !r.watch.IsZero() {
		watch = ms(r.watch.Sub(start))
	}
	return perGateway, all, watch
}

func (r trackResult) last() time.Time {
	var l time.Time
	for _, a := range r.applied {
		if a.After(l) {
			l = a
		}
	}
	return l
}

func (r trackResult) describe(ids []string) string {
	var done, pending []string
	for i, a := range r.applied {
		id := fmt.Sprint(i)
		if i < len(ids) {
			id = ids[i]
		}
		if a.IsZero() {
			pending = append(pending, id)
		} else {
			done = append(done, id)
		}
	}
	return fmt.Sprintf("%d done, pending: %s", len(done), strings.Join(pending, ", "))
}

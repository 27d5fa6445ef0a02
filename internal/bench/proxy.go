package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/zkgate/zkgate/internal/harness"
	"github.com/zkgate/zkgate/internal/nginxconf"
	"github.com/zkgate/zkgate/internal/procgroup"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/register"
)

// Fixed names of the run.
const (
	benchService  = "bench"
	benchPrefix   = "/bench/"
	benchPath     = "hello"
	registryRoot  = "/services"
	readyTimeout  = 30 * time.Second
	stopGrace     = 10 * time.Second
	maxErrorShare = 0.01 // more failed responses than this invalidate a run
	otherCPUShare = 0.10 // more CPU used by others than this is noted
)

// ProxyOptions configure [RunProxy]. Zero values take the documented
// defaults.
type ProxyOptions struct {
	// Binary is the zkgate executable that runs the backend
	// (`zkgate bench backend`) and the gateway (`zkgate gateway`).
	Binary string
	// Wrk is the wrk binary; default wrk from PATH.
	Wrk string
	// Nginx is the nginx binary; default nginx from PATH or /usr/sbin.
	// When none is found the nginx target is skipped with a note.
	Nginx string
	// NoNginx skips the nginx target.
	NoNginx bool
	// Baseline adds the bare httputil.ReverseProxy target (see
	// BareProxyHandler).
	Baseline bool
	// Load is wrk's load; default 2 threads, 64 connections, 10 s, 2 s
	// request timeout. Its threads and connections are those of every
	// scenario but latency1 (-t1 -c1).
	Load Load
	// Scenarios names the scenarios to run (see AllScenarios, the
	// default); they run in the order of AllScenarios.
	Scenarios []string
	// Warmup is an unmeasured wrk run before every measured one (zero:
	// none).
	Warmup time.Duration
	// Rounds repeats every scenario on direct, gateway, nginx this many
	// times; default 1.
	Rounds int
	// BodySize is the backend's response body in bytes (every scenario
	// but get64k); default 64.
	BodySize int
	// NginxWorkers is nginx's worker_processes; default "auto".
	NginxWorkers string
	// ZooKeeper lists the servers of an existing ensemble; empty starts a
	// standalone server from the Debian package for the run.
	ZooKeeper []string
	// GatewayEnv adds KEY=VALUE variables to the gateway's environment
	// only (experiments such as GOGC=400), and is recorded in the report.
	GatewayEnv []string
	// GatewaySet adds KEY=VALUE settings, as "KEY: VALUE", to the gateway
	// section of the gateway's configuration (see CheckGatewaySet), and is
	// recorded in the report.
	GatewaySet []string
	// CPUProfile, when set, adds a gateway pass with the CPU profiler on
	// and writes the profile there (the measured runs are not profiled).
	CPUProfile string
	// RegisterHost, when set, registers the backend as RegisterHost:port
	// (a host name that resolves to the backend's loopback address, e.g.
	// localhost) instead of its IP address, as Spring Cloud Zookeeper
	// registers instances by default.
	RegisterHost string
	RunOptions
}

func (o *ProxyOptions) defaults() error {
	if o.Binary == "" {
		return errors.New("the zkgate binary is not set")
	}
	withDefaults(o, ProxyOptions{
		Load:   Load{Threads: 2, Connections: 64, Duration: 10 * time.Second, Timeout: 2 * time.Second},
		Rounds: 1, BodySize: 64, NginxWorkers: "auto", RunOptions: runDefaults(),
	})
	if len(o.Scenarios) == 0 {
		o.Scenarios = AllScenarios
	}
	scenarios, err := ParseScenarios(strings.Join(o.Scenarios, ","))
	if err != nil {
		return err
	}
	o.Scenarios = scenarios
	if err := CheckGatewaySet(o.GatewaySet); err != nil {
		return fmt.Errorf("--gateway-set: %w", err)
	}
	switch {
	case o.Load.Threads < 1 || o.Load.Connections < o.Load.Threads:
		return errors.New("--threads must be at least 1 and --connections at least --threads")
	case o.Load.Duration < time.Second || o.Load.Duration%time.Millisecond != 0:
		return errors.New("--duration must be at least 1s, in whole milliseconds")
	case o.Warmup < 0 || o.Load.Timeout < 0:
		return errors.New("--warmup and --timeout must not be negative")
	case !validEnv(o.GatewayEnv):
		return errors.New("--gateway-env takes KEY=VALUE")
	case o.Rounds < 1 || o.Rounds > 20:
		return errors.New("--rounds must be between 1 and 20")
	case o.BodySize < 0 || o.BodySize > 16<<20:
		return errors.New("--size must be between 0 and 16 MiB")
	case o.RegisterHost != "" && !validHostName(o.RegisterHost):
		return fmt.Errorf("--register-host: %q is not a host name", o.RegisterHost)
	}
	return nil
}

// validHostName reports whether s is a DNS host name: dot-separated labels
// of letters, digits and inner hyphens.
func validHostName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// env is the running setup: every process the run started.
type env struct {
	opts    ProxyOptions
	log     *slog.Logger
	dir     string
	sp      *procgroup.Spawner
	wrk     *wrkRunner
	http    *http.Client
	backend *procgroup.Proc
	gateway *procgroup.Proc
	nginx   *procgroup.Proc
	bare    *procgroup.Proc
	// addresses
	backendAddr, gatewayAddr, adminAddr, pprofAddr, nginxAddr, bareAddr string
}

// RunProxy runs the proxy benchmark: it starts ZooKeeper (unless
// opts.ZooKeeper is set), the backend, the gateway and nginx, loads each
// target with wrk in turn and returns the report. Every process it
// started is stopped before it returns, also when ctx is cancelled.
func RunProxy(ctx context.Context, opts ProxyOptions) (*ProxyReport, error) {
	if err := opts.defaults(); err != nil {
		return nil, &OptionsError{Err: err}
	}
	log := opts.Logger
	rep := &ProxyReport{
		RunHeader: newRunHeader(ProxyReportSchema, opts.Command, opts.Version),
		Setup: Setup{
			Load: opts.Load, DurationText: opts.Load.Duration.String(), WarmupText: opts.Warmup.String(), TimeoutText: opts.Load.Timeout.String(),
			Rounds: opts.Rounds, BodyBytes: opts.BodySize, NginxWorkers: opts.NginxWorkers,
			Backend:    "zkgate bench backend (Go net/http, separate process)",
			GatewayEnv: opts.GatewayEnv, GatewaySet: opts.GatewaySet, Scenarios: opts.Scenarios,
		},
	}
	for _, name := range opts.Scenarios {
		sc, err := newScenario(name, opts.Load, opts.BodySize)
		if err != nil {
			return nil, err
		}
		rep.Scenarios = append(rep.Scenarios, ScenarioResult{Scenario: sc})
	}

	wrkBin := opts.Wrk
	if wrkBin == "" {
		wrkBin = "wrk"
	}
	wrkPath, err := exec.LookPath(wrkBin)
	if err != nil {
		return nil, fmt.Errorf("wrk not found (install Debian's wrk: scripts/install-deps.sh wrk): %w", err)
	}
	rep.Tools.Wrk = toolVersion(ctx, wrkPath, "-v")
	nginxBin := ""
	switch {
	case opts.NoNginx:
		rep.Notes = append(rep.Notes, "nginx target skipped (--no-nginx)")
	default:
		if nginxBin = opts.Nginx; nginxBin == "" {
			nginxBin = nginxconf.Find()
		}
		if nginxBin == "" {
			rep.Notes = append(rep.Notes, "nginx target skipped: nginx is not installed (scripts/install-deps.sh nginx installs Debian's nginx-light)")
		} else {
			rep.Tools.Nginx = toolVersion(ctx, nginxBin, "-v")
		}
	}

	e := &env{opts: opts, log: log, sp: procgroup.NewSpawner(), http: &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}}
	defer e.sp.Close()
	var cleanup func()
	if e.dir, cleanup, err = harness.WorkDir(opts.Dir, "zkgate-bench-"); err != nil {
		return nil, err
	}
	defer cleanup()
	// Stop in order: the proxies and the backend, then the registration,
	// then ZooKeeper (the gateway would otherwise log a lost session).
	var zkc *zktest.Cluster
	var sess *zksession.Session
	defer func() {
		e.stopAll()
		if sess != nil {
			sess.Close()
		}
		if zkc != nil {
			zkc.Close()
		}
	}()
	if e.wrk, err = newWrkRunner(e.sp, wrkPath, e.dir); err != nil {
		return nil, err
	}

	servers := opts.ZooKeeper
	rep.Tools.ZooKeeper = "external: " + strings.Join(servers, ",")
	if len(servers) == 0 {
		log.Info("starting ZooKeeper")
		if zkc, err = zktest.New(ctx, zktest.Config{Size: 1}); err != nil {
			return nil, fmt.Errorf("starting ZooKeeper: %w", err)
		}
		servers = zkc.Servers()
		rep.Tools.ZooKeeper = "Debian zookeeper package, standalone, started by the bench"
	}

	if err := e.startBackend(ctx); err != nil {
		return nil, err
	}
	rep.Setup.Backend += " at " + e.backendAddr
	registered := e.backendAddr
	if opts.RegisterHost != "" {
		_, port, _ := net.SplitHostPort(e.backendAddr)
		registered = net.JoinHostPort(opts.RegisterHost, port)
		rep.Setup.Backend += ", registered as " + registered
	}
	if sess, err = registerBackend(ctx, servers, registered, log); err != nil {
		return nil, err
	}
	if err := e.startGateway(ctx, servers); err != nil {
		return nil, err
	}
	if nginxBin != "" {
		if err := e.startNginx(ctx, nginxBin); err != nil {
			return nil, err
		}
	}

	targets := []string{TargetDirect, TargetGateway}
	if e.nginx != nil {
		targets = append(targets, TargetNginx)
	}
	if opts.Baseline {
		if err := e.startBare(ctx); err != nil {
			return nil, err
		}
		targets = append(targets, TargetBare)
	}
	// Round by round, scenario by scenario, the targets back to back: the
	// ratios within a round compare runs that shared the machine's state.
	for round := 1; round <= opts.Rounds; round++ {
		for i := range rep.Scenarios {
			sr := &rep.Scenarios[i]
			for _, name := range targets {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				res, err := e.measure(ctx, sr.Scenario, name, round)
				if err != nil {
					return nil, fmt.Errorf("scenario %s, %s: %w", sr.Name, name, err)
				}
				log.Info("measured", "scenario", sr.Name, "target", name, "round", round, "rps", int64(res.RPS),
					"p50_us", res.Wrk.LatencyUS.P50, "p99_us", res.Wrk.LatencyUS.P99, "errors", res.Wrk.Errors.Total())
				sr.Runs = append(sr.Runs, res)
			}
		}
	}
	if opts.CPUProfile != "" {
		sc := rep.Scenarios[0].Scenario
		if s := rep.scenario(ScenarioGet); s != nil {
			sc = s.Scenario
		}
		if rep.Profile, err = e.profile(ctx, sc, opts.CPUProfile); err != nil {
			return nil, err
		}
	}
	rep.summarize()
	rep.Notes = append(rep.Notes, runNotes(rep.Scenarios)...)
	return rep, nil
}

// runNotes are the warnings about single runs: a busy machine, errors,
// responses shorter than the scenario's body.
func runNotes(scenarios []ScenarioResult) []string {
	var notes []string
	for _, s := range scenarios {
		for _, r := range s.Runs {
			what := fmt.Sprintf("%s %s (round %d)", s.Name, r.Name, r.Round)
			if c := r.CPU; c.AvailableCPUSec > 0 && c.Unavailable == "" && c.OtherSec > otherCPUShare*c.AvailableCPUSec {
				notes = append(notes, fmt.Sprintf("%s: %.1f of %.1f CPU-seconds went to other processes or to interrupt work outside the measured ones: the machine may not have been quiet, its req/s may be disturbed",
					what, c.OtherSec, c.AvailableCPUSec))
			}
			if n := r.Wrk.Errors.Total(); n > 0 {
				notes = append(notes, fmt.Sprintf("%s: %d errors in %d requests (connect %d, read %d, write %d, non-2xx %d, timeout %d)",
					what, n, r.Wrk.Requests, r.Wrk.Errors.Connect, r.Wrk.Errors.Read, r.Wrk.Errors.Write, r.Wrk.Errors.Status, r.Wrk.Errors.Timeout))
			}
			if r.Wrk.Requests > 0 && r.Wrk.Bytes/r.Wrk.Requests < int64(s.ResponseBytes) {
				notes = append(notes, fmt.Sprintf("%s: wrk read %d bytes per response, less than the scenario's %d-byte body",
					what, r.Wrk.Bytes/r.Wrk.Requests, s.ResponseBytes))
			}
		}
	}
	return notes
}

// Failed reports whether a run had more failed responses than 1% of its
// requests: its throughput would not be comparable.
func (r *ProxyReport) Failed() bool {
	for _, t := range r.allRuns() {
		if t.Wrk.Requests == 0 || float64(t.Wrk.Errors.Total()) > maxErrorShare*float64(t.Wrk.Requests) {
			return true
		}
	}
	return false
}

func validEnv(vars []string) bool {
	for _, v := range vars {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return false
		}
	}
	return true
}

// url is the target's URL, with the query that selects a scenario's
// response size when one is given.
func (e *env) url(target, query string) string {
	var u string
	switch target {
	case TargetGateway:
		u = "http://" + e.gatewayAddr + benchPrefix + benchPath
	case TargetNginx:
		u = "http://" + e.nginxAddr + benchPrefix + benchPath
	case TargetBare:
		u = "http://" + e.bareAddr + benchPrefix + benchPath
	default:
		u = "http://" + e.backendAddr + "/" + benchPath
	}
	if query != "" {
		u += "?" + query
	}
	return u
}

func (e *env) proxyProc(target string) *procgroup.Proc {
	switch target {
	case TargetGateway:
		return e.gateway
	case TargetNginx:
		return e.nginx
	case TargetBare:
		return e.bare
	}
	return nil
}

// measure checks one request of the scenario, then runs the warm-up and
// the measured wrk run against one target, with the CPU time of every
// process and the gateway's runtime counters taken around the measured
// run.
func (e *env) measure(ctx context.Context, sc Scenario, target string, rnd int) (TargetResult, error) {
	url := e.url(target, sc.Query)
	if err := e.probe(ctx, sc, url); err != nil {
		return TargetResult{}, err
	}
	if e.opts.Warmup > 0 {
		e.log.Info("warming up", "scenario", sc.Name, "target", target, "for", e.opts.Warmup)
		if _, _, err := e.wrk.run(ctx, sc, e.opts.Load.Timeout, e.opts.Warmup, url); err != nil {
			return TargetResult{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	if err := e.checkAlive(); err != nil {
		return TargetResult{}, err
	}
	proxy := e.proxyProc(target)
	var mBefore map[string]float64
	if target == TargetGateway {
		mBefore = e.runtimeMetrics(ctx)
	}
	cpu0, cpuErr := e.cpu(proxy)
	e.log.Info("measuring", "scenario", sc.Name, "target", target, "round", rnd, "url", url, "for", e.opts.Load.Duration)
	res, wrkCPU, err := e.wrk.run(ctx, sc, e.opts.Load.Timeout, e.opts.Load.Duration, url)
	if err != nil {
		return TargetResult{}, err
	}
	cpu1, cpuErr2 := e.cpu(proxy)
	if err := e.checkAlive(); err != nil {
		return TargetResult{}, err
	}
	tr := TargetResult{Name: target, Scenario: sc.Name, Round: rnd, URL: url, RPS: round1(res.RPS()), Wrk: res}
	secs := float64(res.DurationUS) / 1e6
	tr.CPU.AvailableCPUSec = round1(float64(runtime.NumCPU()) * secs)
	perReq := func(d time.Duration) float64 {
		if res.Requests == 0 {
			return 0
		}
		return round1(float64(d.Microseconds()) / float64(res.Requests))
	}
	tr.CPU.WrkSec, tr.CPU.WrkUSPerReq = round(wrkCPU.Seconds(), 2), perReq(wrkCPU)
	if err := errors.Join(cpuErr, cpuErr2); err != nil {
		tr.CPU.Unavailable = err.Error()
	} else {
		tr.CPU.BackendSec, tr.CPU.BackendUSPerReq = round(cpu1.backend.Seconds()-cpu0.backend.Seconds(), 2), perReq(cpu1.backend-cpu0.backend)
		if proxy != nil {
			tr.CPU.ProxySec, tr.CPU.ProxyUSPerReq = round(cpu1.proxy.Seconds()-cpu0.proxy.Seconds(), 2), perReq(cpu1.proxy-cpu0.proxy)
		}
		// A process's CPU time includes the softirq work done in its
		// context, which /proc/stat counts as interrupt time: compare the
		// processes with tasks plus interrupts.
		irq := cpu1.sys.Interrupts - cpu0.sys.Interrupts
		busy := cpu1.sys.Tasks - cpu0.sys.Tasks + irq
		ours := (cpu1.proxy - cpu0.proxy) + (cpu1.backend - cpu0.backend) + wrkCPU
		tr.CPU.InterruptSec = round(irq.Seconds(), 2)
		tr.CPU.StealSec = round((cpu1.sys.Steal - cpu0.sys.Steal).Seconds(), 2)
		tr.CPU.OtherSec = round(max(busy-ours, 0).Seconds(), 2)
	}
	if mBefore != nil && res.Requests > 0 {
		if mAfter := e.runtimeMetrics(ctx); mAfter != nil {
			n := float64(res.Requests)
			tr.Runtime = &RuntimeUse{
				MallocsPerReq:    round1((mAfter["go_memstats_mallocs_total"] - mBefore["go_memstats_mallocs_total"]) / n),
				AllocBytesPerReq: round1((mAfter["go_memstats_alloc_bytes_total"] - mBefore["go_memstats_alloc_bytes_total"]) / n),
				GCCycles:         mAfter["go_gc_duration_seconds_count"] - mBefore["go_gc_duration_seconds_count"],
			}
		}
	}
	return tr, nil
}

func round1(x float64) float64 { return round(x, 1) }

// probe sends one request of the scenario to url and checks that it is
// answered 200 with the scenario's response body, so a target that
// rejects the request or serves another size fails before it is loaded.
func (e *env) probe(ctx context.Context, sc Scenario, url string) error {
	var body io.Reader
	if sc.RequestBytes > 0 {
		body = strings.NewReader(strings.Repeat("x", sc.RequestBytes))
	}
	req, err := http.NewRequestWithContext(ctx, sc.Method, url, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return fmt.Errorf("checking one %s request: %w", sc.Method, err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, int64(sc.ResponseBytes)+1))
	switch {
	case err != nil:
		return fmt.Errorf("checking one %s request: %w", sc.Method, err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("checking one %s request: %s", sc.Method, resp.Status)
	case n != int64(sc.ResponseBytes):
		return fmt.Errorf("checking one %s request: %d-byte response body, want %d", sc.Method, n, sc.ResponseBytes)
	}
	return nil
}

type cpuSample struct {
	proxy, backend time.Duration
	sys            sysCPU
}

func (e *env) cpu(proxy *procgroup.Proc) (cpuSample, error) {
	var s cpuSample
	var err error
	if s.sys, err = readSysCPU(); err != nil {
		return s, err
	}
	if s.backend, err = groupCPU(e.backend.Pid()); err != nil {
		return s, err
	}
	if proxy != nil {
		s.proxy, err = groupCPU(proxy.Pid())
	}
	return s, err
}

// runtimeMetrics reads the gateway's Go runtime counters (nil when
// /metrics does not answer).
func (e *env) runtimeMetrics(ctx context.Context) map[string]float64 {
	body, err := e.get(ctx, "http://"+e.adminAddr+"/metrics")
	if err != nil {
		e.log.Warn("reading the gateway's metrics", "err", err)
		return nil
	}
	m := promValues(body, "go_memstats_mallocs_total", "go_memstats_alloc_bytes_total", "go_gc_duration_seconds_count")
	if len(m) == 0 {
		return nil
	}
	return m
}

func (e *env) checkAlive() error {
	for _, p := range []*procgroup.Proc{e.backend, e.gateway, e.nginx, e.bare} {
		if p != nil && p.Exited() {
			return p.ExitError(exitTail)
		}
	}
	return nil
}

// startHelper runs `zkgate bench NAME ARGS...`, a helper that prints
// "listening ADDR" once it serves, and returns it with its address.
func (e *env) startHelper(ctx context.Context, name string, args ...string) (*procgroup.Proc, string, error) {
	cmd := command(ctx, e.opts.Binary, append([]string{"bench", name}, args...)...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	defer pr.Close()
	cmd.Stdout = pw
	p, err := harness.Start(e.sp, name, cmd, filepath.Join(e.dir, name+".log"))
	pw.Close()
	if err != nil {
		return nil, "", err
	}
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	addr, err := readBackendAddr(rctx, pr)
	if err != nil {
		if p.Exited() {
			return p, "", p.ExitError(exitTail)
		}
		return p, "", fmt.Errorf("%s: %w", name, err)
	}
	e.log.Info(name+" listening", "addr", addr, "pid", p.Pid())
	return p, addr, nil
}

// startBackend runs `zkgate bench backend`.
func (e *env) startBackend(ctx context.Context) error {
	p, addr, err := e.startHelper(ctx, "backend", "--listen", "127.0.0.1:0", "--size", strconv.Itoa(e.opts.BodySize))
	e.backend, e.backendAddr = p, addr
	if err != nil {
		return err
	}
	return e.waitOK(ctx, p, "http://"+addr+"/"+benchPath)
}

// startBare runs `zkgate bench bareproxy` in front of the backend.
func (e *env) startBare(ctx context.Context) error {
	p, addr, err := e.startHelper(ctx, "bareproxy", "--listen", "127.0.0.1:0", "--backend", e.backendAddr, "--prefix", benchPrefix)
	e.bare, e.bareAddr = p, addr
	if err != nil {
		return err
	}
	return e.waitOK(ctx, p, e.url(TargetBare, ""))
}

// registerBackend writes the backend's ephemeral Curator registration.
func registerBackend(ctx context.Context, servers []string, addr string, log *slog.Logger) (*zksession.Session, error) {
	sess, err := zksession.Connect(zksession.Config{Servers: servers, SessionTimeout: 10 * time.Second, Logger: log})
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := sess.WaitConnected(cctx); err != nil {
		sess.Close()
		return nil, fmt.Errorf("connecting to ZooKeeper: %w", err)
	}
	id, err := register.NewUUID()
	if err != nil {
		sess.Close()
		return nil, err
	}
	data, err := curatorJSON(benchService, id, addr, time.Now())
	if err != nil {
		sess.Close()
		return nil, err
	}
	dir := registryRoot + "/" + benchService
	if err := sess.EnsurePath(cctx, dir, nil); err != nil {
		sess.Close()
		return nil, fmt.Errorf("registering the backend: %w", err)
	}
	if _, err := sess.Create(cctx, dir+"/"+id, data, zksession.FlagEphemeral, nil); err != nil {
		sess.Close()
		return nil, fmt.Errorf("registering the backend: %w", err)
	}
	log.Info("backend registered", "path", dir+"/"+id)
	return sess, nil
}

// gatewayYAML renders the gateway's configuration for the run; set adds
// KEY=VALUE settings to its gateway section (see CheckGatewaySet).
func gatewayYAML(servers []string, listen, admin string, set ...string) (string, error) {
	if err := CheckGatewaySet(set); err != nil {
		return "", err
	}
	lines := make([]string, 0, len(set))
	for _, kv := range set {
		k, v, _ := strings.Cut(kv, "=")
		lines = append(lines, k+": "+v)
	}
	return benchGatewayConfig("zkgate bench proxy", servers, 0, &harness.GatewayConfig{
		ID: "bench-gateway", Listen: listen, AdminListen: admin, Settings: lines,
		Routes: []harness.Route{{Prefix: benchPrefix, Service: benchService}},
	}).YAML(), nil
}

// benchGatewayConfig is the configuration of a gateway the bench starts
// on servers: a 10 s session, the bench's registry root (resync every
// resync, when set), and a 5 s shutdown.
func benchGatewayConfig(generator string, servers []string, resync time.Duration, gw *harness.GatewayConfig) harness.Config {
	gw.ShutdownTimeout = 5 * time.Second
	return harness.Config{
		Generator: generator, Servers: servers, SessionTimeout: 10 * time.Second,
		RegistryRoot: registryRoot, ResyncInterval: resync, Gateway: gw,
	}
}

// startGateway runs `zkgate gateway` (or, to take a CPU profile, the same
// gateway behind the hidden `zkgate bench gateway --pprof ADDR`) and
// waits until it routes to the backend.
func (e *env) startGateway(ctx context.Context, servers []string) error {
	ports, err := harness.FreeAddrs(3)
	if err != nil {
		return err
	}
	e.gatewayAddr, e.adminAddr = ports[0], ports[1]
	conf, err := gatewayYAML(servers, e.gatewayAddr, e.adminAddr, e.opts.GatewaySet...)
	if err != nil {
		return err
	}
	confPath := filepath.Join(e.dir, "gateway.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("writing the gateway configuration: %w", err)
	}
	args := []string{"gateway", "--config", confPath, "--log-level", "warn"}
	if e.opts.CPUProfile != "" {
		e.pprofAddr = ports[2]
		args = append([]string{"bench", "gateway", "--pprof", e.pprofAddr, "--"}, args[1:]...)
	}
	cmd := command(ctx, e.opts.Binary, args...)
	cmd.Env = append(cmd.Env, e.opts.GatewayEnv...)
	p, err := harness.Start(e.sp, "gateway", cmd, filepath.Join(e.dir, "gateway.log"))
	if err != nil {
		return err
	}
	e.gateway = p
	e.log.Info("gateway started", "listen", e.gatewayAddr, "admin", e.adminAddr, "pid", p.Pid())
	return e.waitOK(ctx, p, e.url(TargetGateway, ""))
}

func (e *env) startNginx(ctx context.Context, bin string) error {
	addrs, err := harness.FreeAddrs(1)
	if err != nil {
		return err
	}
	e.nginxAddr = addrs[0]
	p, err := harness.StartNginx(ctx, e.sp, bin, harness.NginxConfig{
		Generator: "zkgate bench proxy", Dir: filepath.Join(e.dir, "nginx"), Listen: e.nginxAddr,
		Upstream: "bench_backend", Backends: []string{e.backendAddr}, Prefix: benchPrefix,
		Workers: e.opts.NginxWorkers, Keepalive: 64, KeepaliveRequests: 1000000,
	})
	if err != nil {
		return err
	}
	e.nginx = p
	e.log.Info("nginx started", "listen", e.nginxAddr, "pid", p.Pid())
	return e.waitOK(ctx, p, e.url(TargetNginx, ""))
}

// waitOK polls url until it answers 200, the process exits or
// readyTimeout passes.
func (e *env) waitOK(ctx context.Context, p *procgroup.Proc, url string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last error
	for {
		if p.Exited() {
			return p.ExitError(exitTail)
		}
		_, err := e.get(ctx, url)
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer 200 at %s within %s: %v", p.Name, url, readyTimeout, last)
		case <-p.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// get fetches url and returns its body; a status other than 200 is an
// error.
func (e *env) get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// profile runs one more gateway pass of the scenario while the gateway's
// CPU profiler records it, and writes the profile to path.
func (e *env) profile(ctx context.Context, sc Scenario, path string) (*ProfileRun, error) {
	secs := int(e.opts.Load.Duration.Round(time.Second) / time.Second)
	e.log.Info("profiling the gateway", "for", time.Duration(secs)*time.Second, "file", path)
	type result struct {
		data []byte
		err  error
	}
	ch := make(chan result, 1)
	pctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	go func() {
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", e.pprofAddr, secs)
		req, err := http.NewRequestWithContext(pctx, http.MethodGet, url, nil)
		if err != nil {
			ch <- result{err: err}
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, firstLine(data))
		}
		ch <- result{data: data, err: err}
	}()
	res, _, err := e.wrk.run(ctx, sc, e.opts.Load.Timeout, time.Duration(secs)*time.Second, e.url(TargetGateway, sc.Query))
	if err != nil {
		return nil, fmt.Errorf("profiled pass: %w", err)
	}
	var r result
	select {
	case r = <-ch:
	case <-pctx.Done():
		return nil, fmt.Errorf("gateway CPU profile: %w", pctx.Err())
	}
	if r.err != nil {
		return nil, fmt.Errorf("gateway CPU profile: %w", r.err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("gateway CPU profile: %w", err)
	}
	if err := os.WriteFile(path, r.data, 0o644); err != nil {
		return nil, fmt.Errorf("gateway CPU profile: %w", err)
	}
	return &ProfileRun{File: path, Scenario: sc.Name, RPS: round1(res.RPS()), Hint: "go tool pprof -top " + path}, nil
}

// stopAll stops the proxies, then the backend.
func (e *env) stopAll() {
	if e.bare != nil {
		e.bare.Stop(context.Background(), syscall.SIGTERM, stopGrace)
	}
	if e.nginx != nil {
		harness.StopNginx(context.Background(), e.nginx)
	}
	if e.gateway != nil {
		e.gateway.Stop(context.Background(), syscall.SIGTERM, stopGrace)
	}
	if e.backend != nil {
		e.backend.Stop(context.Background(), syscall.SIGTERM, stopGrace)
	}
}

// gatewayKeysOfTheBench are the gateway keys the generated configuration
// sets itself: --gateway-set cannot change them.
var gatewayKeysOfTheBench = []string{"id", "listen", "admin_listen", "shutdown_timeout", "routes"}

// CheckGatewaySet checks --gateway-set settings: each KEY=VALUE, KEY a
// lower-case YAML key (letters, digits, underscores) named once and not
// one the bench sets itself, VALUE a non-empty single-line YAML value.
// Whether the gateway knows the key is its own check, at start.
func CheckGatewaySet(set []string) error {
	seen := map[string]bool{}
	for _, kv := range set {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok || k == "" || v == "":
			return fmt.Errorf("%q is not KEY=VALUE", kv)
		case !validYAMLKey(k):
			return fmt.Errorf("%q: the key must be lower-case letters, digits and underscores", kv)
		case slices.Contains(gatewayKeysOfTheBench, k):
			return fmt.Errorf("%q: the bench sets gateway.%s itself (%s)", kv, k, strings.Join(gatewayKeysOfTheBench, ", "))
		case strings.ContainsFunc(v, unicode.IsControl):
			return fmt.Errorf("%q: the value must be one line without control characters", kv)
		case seen[k]:
			return fmt.Errorf("%q: gateway.%s set twice", kv, k)
		}
		seen[k] = true
	}
	return nil
}

func validYAMLKey(k string) bool {
	for i, c := range k {
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return k != ""
}

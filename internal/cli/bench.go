package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/bench"
	"github.com/zkgate/zkgate/internal/harness"
	"github.com/zkgate/zkgate/internal/version"
)

const benchUsage = `Usage: zkgate bench BENCHMARK [flags]

Benchmarks (commands, not tests: they start real processes on loopback):
  proxy        requests/s and latency direct to a backend, through the
               gateway and through nginx, with wrk; prints a table and
               writes JSON
  propagation  how fast a drain reaches every gateway: K gateways, a
               3-node ZooKeeper ensemble, one controller, M drains
  registry     a gateway over a large registry (default 100k instances in
               10k services): cold start, memory, one change applied
  faults       a fault suite under load: ZooKeeper leader kill, ensemble
               outage, gateway pause and kill, controller failover
               mid-drain, backend kill, session flap of a drained
               instance; a table of what failed and what was verified

Run zkgate bench BENCHMARK -h for its flags.
`

// RunBench is `zkgate bench BENCHMARK [flags]`. Besides the benchmarks it
// has hidden helpers that the proxy benchmark runs as separate processes:
// `bench backend` (the backend), `bench bareproxy` (a bare
// httputil.ReverseProxy, the reference) and `bench gateway` (the gateway
// with a loopback CPU profiling endpoint).
func RunBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		io.WriteString(stderr, benchUsage)
		return 1
	}
	switch args[0] {
	case "-h", "--help", "help":
		io.WriteString(stdout, benchUsage)
		return 0
	case "proxy":
		return runBenchProxy(ctx, args[1:], stdout, stderr)
	case "propagation":
		return runBenchPropagation(ctx, args[1:], stdout, stderr)
	case "registry":
		return runBenchRegistry(ctx, args[1:], stdout, stderr)
	case "faults":
		return runBenchFaults(ctx, args[1:], stdout, stderr)
	case "backend":
		return runBenchBackend(ctx, args[1:], stdout, stderr)
	case "gateway":
		return runBenchGateway(ctx, args[1:], stdout, stderr)
	case "bareproxy":
		return runBenchBareProxy(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "zkgate bench: unknown benchmark %q (see zkgate bench help)\n", args[0])
	return 1
}

func runBenchProxy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newBenchCommand("proxy", `Usage: zkgate bench proxy [flags]

Loads one backend three ways with wrk, one after the other in one run:
direct, through zkgate gateway (routed through a ZooKeeper registry) and
through nginx (skipped with a note when nginx is not installed), plus a
bare httputil.ReverseProxy as a reference (--baseline=false skips it).

Scenarios (--scenarios; each round runs every scenario on every target,
the targets of a scenario back to back):
  get       GET, --size response (64 bytes), --threads/--connections (-t2 -c64)
  post4k    POST with a 4 KiB body the backend reads whole, --size response
  get64k    GET with a 64 KiB response
  latency1  GET, --size response, one connection (-t1 -c1): the latency a
            proxy adds to one request

For each scenario it prints requests/s, latency p50/p90/p99, added p50
latency, CPU per request, the gateway's allocations per request and the
ratios gateway/nginx and gateway/direct; then the proxy targets as met or
not met; and writes JSON.

Flags:
`, "the run's configurations and logs", "zkgate binary that runs the backend and the gateway (default: this executable)", stderr)
	fs := c.fs
	threads := fs.Int("threads", 2, "wrk threads (-t) of every scenario but latency1")
	conns := fs.Int("connections", 64, "wrk connections (-c) of every scenario but latency1")
	scenarios := fs.String("scenarios", strings.Join(bench.AllScenarios, ","), "comma-separated scenarios to run (they run in this order)")
	duration := fs.Duration("duration", 10*time.Second, "measured run per target (-d)")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured warm-up before each measured run (0: none)")
	timeout := fs.Duration("timeout", 2*time.Second, "wrk request timeout")
	rounds := fs.Int("rounds", 1, "run every scenario on direct, gateway, nginx this many times; the median run of each is reported")
	size := fs.Int("size", 64, "response body size in bytes of every scenario but get64k")
	cpuProfile := fs.String("cpuprofile", "", "also run one profiled gateway pass and write the gateway's CPU profile here")
	nginxBin := fs.String("nginx", "", "nginx binary (default nginx from PATH or /usr/sbin/nginx)")
	noNginx := fs.Bool("no-nginx", false, "skip the nginx target")
	baseline := fs.Bool("baseline", true, "also measure a bare httputil.ReverseProxy (Go's standard library without zkgate's logic) as a reference")
	nginxWorkers := fs.String("nginx-workers", "auto", "nginx worker_processes")
	wrkBin := fs.String("wrk", "wrk", "wrk binary")
	zkServers := fs.String("zookeeper", "", "host:port,... of an existing ZooKeeper (default: start one from the Debian package)")
	registerHost := fs.String("register-host", "", "register the backend as `NAME`:port instead of its IP address (NAME must resolve to 127.0.0.1, e.g. localhost), as Spring Cloud Zookeeper registers host names")
	gatewayEnv := gatewayEnvFlag(fs, "GOGC=400")
	var gatewaySet []string
	fs.Func("gateway-set", "KEY=VALUE written as \"KEY: VALUE\" into the gateway section of the gateway's configuration, e.g. balancer=round_robin (repeatable)", func(v string) error {
		if err := bench.CheckGatewaySet(append(slices.Clone(gatewaySet), v)); err != nil {
			return err
		}
		gatewaySet = append(gatewaySet, v)
		return nil
	})
	if code, ok := c.parse(args); !ok {
		return code
	}
	scenarioList, err := bench.ParseScenarios(*scenarios)
	if err != nil {
		return c.fail(fmt.Errorf("--scenarios: %w", err))
	}
	// Zero means "default" in bench.ProxyOptions: reject it here.
	switch {
	case *threads < 1 || *conns < 1:
		return c.fail(errors.New("--threads and --connections must be at least 1"))
	case *rounds < 1:
		return c.fail(errors.New("--rounds must be at least 1"))
	case *duration <= 0 || *timeout <= 0:
		return c.fail(errors.New("--duration and --timeout must be positive"))
	case *size < 1:
		return c.fail(errors.New("--size must be at least 1 byte"))
	}
	var servers []string
	if *zkServers != "" {
		for _, s := range strings.Split(*zkServers, ",") {
			if _, _, err := net.SplitHostPort(strings.TrimSpace(s)); err != nil {
				return c.fail(fmt.Errorf("--zookeeper: %q is not host:port", s))
			}
			servers = append(servers, strings.TrimSpace(s))
		}
	}
	run, code, ok := c.setup(args)
	if !ok {
		return code
	}
	rep, err := bench.RunProxy(ctx, bench.ProxyOptions{
		Binary: run.bin, Wrk: *wrkBin, Nginx: *nginxBin, NoNginx: *noNginx, Baseline: *baseline,
		Load:      bench.Load{Threads: *threads, Connections: *conns, Duration: *duration, Timeout: *timeout},
		Scenarios: scenarioList, Warmup: *warmup, Rounds: *rounds, BodySize: *size, NginxWorkers: *nginxWorkers,
		ZooKeeper: servers, GatewayEnv: *gatewayEnv, GatewaySet: gatewaySet, CPUProfile: *cpuProfile, RegisterHost: *registerHost,
		RunOptions: run.options,
	})
	return c.finish(ctx, stdout, rep, err, "a run had more than 1% failed responses: its figures are not comparable (see the notes)")
}

func runBenchPropagation(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newBenchCommand("propagation", `Usage: zkgate bench propagation [flags]

Starts a ZooKeeper ensemble, one controller and K gateways (in this
process, each with its own ZooKeeper session and listeners), registers a
few idle instances and runs M drain/undrain cycles through the controller
API. Reports, from the API call: when every gateway applied the mark (and
each gateway), when a confirmed drain (wait=true) was answered, and the
same for undrains; checks the docs/benchmarks.md#targets targets; writes JSON.

Flags:
`, "ZooKeeper's files and the components' log", "", stderr)
	fs := c.fs
	gateways := fs.Int("gateways", 10, "gateways (K)")
	drains := fs.Int("drains", 200, "measured drain/undrain cycles (M)")
	warmup := fs.Duration("warmup", 20*time.Second, "run unmeasured cycles this long first (at least 5), while the ZooKeeper JVMs warm up")
	ensemble := fs.Int("ensemble", 3, "ZooKeeper servers")
	instances := fs.Int("instances", 3, "registered instances the drains rotate over (at least 2)")
	pause := fs.Duration("pause", 10*time.Millisecond, "pause between cycles")
	drainTimeout := fs.Duration("drain-timeout", 10*time.Second, "bound of each confirmed drain")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process (the gateways and the controller) during the measured cycles")
	if code, ok := c.parse(args); !ok {
		return code
	}
	// Zero means "default" in bench.PropagationOptions: reject it here.
	switch {
	case *gateways < 1 || *drains < 1 || *ensemble < 1:
		return c.fail(errors.New("--gateways, --drains and --ensemble must be at least 1"))
	case *instances < 2:
		return c.fail(errors.New("--instances must be at least 2"))
	case *pause < 0 || *drainTimeout <= 0 || *warmup < 0:
		return c.fail(errors.New("--pause and --warmup must not be negative and --drain-timeout must be positive"))
	}
	run, code, ok := c.setup(args)
	if !ok {
		return code
	}
	if *warmup == 0 {
		*warmup = time.Nanosecond // the minimum number of cycles only
	}
	rep, err := bench.RunPropagation(ctx, bench.PropagationOptions{
		Gateways: *gateways, Drains: *drains, Warmup: *warmup, Ensemble: *ensemble, Instances: *instances,
		Pause: *pause, DrainTimeout: *drainTimeout, CPUProfile: *cpuProfile, RunOptions: run.options,
	})
	return c.finish(ctx, stdout, rep, err, "some drains were not confirmed (see the notes)")
}

func runBenchRegistry(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newBenchCommand("registry", `Usage: zkgate bench registry [flags]

Populates a standalone ZooKeeper with a large Curator registry, starts
zkgate gateway on it as a separate process (several times) and measures:
cold start to ready with the full registry, the gateway's RSS and heap once
loaded, and single changes (add, change data, delete an instance) from the
ZooKeeper write to the gateway's applied routing table. Checks the
docs/benchmarks.md#targets targets; writes JSON. --profile DIR adds a profiled run.

Flags:
`, "the run's configuration, logs and ZooKeeper's data", "zkgate binary that runs the gateway (default: this executable)", stderr)
	fs := c.fs
	services := fs.Int("services", 10000, "services in the registry")
	instances := fs.Int("instances", 100000, "instances in the registry, spread evenly over the services")
	routes := fs.Int("routes", 10, "services the gateway routes to (a gateway follows only those)")
	coldStarts := fs.Int("cold-starts", 3, "gateway starts measured")
	changes := fs.Int("changes", 300, "single changes measured (add, change data, delete in turn)")
	pause := fs.Duration("pause", 20*time.Millisecond, "pause between changes")
	poll := fs.Duration("poll", 250*time.Microsecond, "pause between two reads of the gateway's /readyz while a change is awaited (0: back to back)")
	settle := fs.Duration("settle", 5*time.Second, "time the loaded gateway runs before its memory is read")
	batch := fs.Int("batch", 500, "operations per multi request while populating")
	writers := fs.Int("writers", 8, "multi requests in flight while populating")
	zkHeap := fs.String("zk-heap", "1g", "ZooKeeper's -Xmx")
	profileDir := fs.String("profile", "", "also run a profiled gateway and write its profiles (cold start CPU, heap, allocations, changes CPU) into this directory")
	gatewayEnv := gatewayEnvFlag(fs, "GOGC=50")
	if code, ok := c.parse(args); !ok {
		return code
	}
	// Zero means "default" in bench.RegistryOptions: reject it here.
	switch {
	case *services < 1 || *instances < 1 || *routes < 1 || *coldStarts < 1 || *changes < 3:
		return c.fail(errors.New("--services, --instances, --routes and --cold-starts must be at least 1, --changes at least 3"))
	case *pause < 0 || *poll < 0 || *settle <= 0:
		return c.fail(errors.New("--pause and --poll must not be negative, --settle must be positive"))
	case *batch < 1 || *writers < 1:
		return c.fail(errors.New("--batch and --writers must be at least 1"))
	}
	run, code, ok := c.setup(args)
	if !ok {
		return code
	}
	if *poll == 0 {
		*poll = -1 // back to back
	}
	rep, err := bench.RunRegistry(ctx, bench.RegistryOptions{
		Binary: run.bin, Services: *services, Instances: *instances, Routes: *routes, ColdStarts: *coldStarts,
		Changes: *changes, Pause: *pause, Poll: *poll, Settle: *settle, Batch: *batch, Writers: *writers,
		ZKHeap: *zkHeap, GatewayEnv: *gatewayEnv, ProfileDir: *profileDir, RunOptions: run.options,
	})
	return c.finish(ctx, stdout, rep, err, "the gateway did not show the full load or a change (see the notes)")
}

// benchCommand is what every benchmark subcommand shares: its flag set
// with the flags every benchmark has (--json, --dir, --log-level, and
// --zkgate when it starts zkgate processes), the checks after parsing,
// and the tail that runs the benchmark's report out (finish). A
// subcommand defines its own flags on fs between newBenchCommand and
// parse.
type benchCommand struct {
	// name is the command as errors name it, e.g. "bench proxy"; kind is
	// the benchmark, e.g. "proxy".
	name, kind string
	fs         *flag.FlagSet
	stderr     io.Writer
	jsonPath   *string
	keepDir    *string
	logLevel   *string
	// zkgateBin is nil when the benchmark starts no zkgate process.
	zkgateBin *string
	// out is the results path, set by setup.
	out string
}

// newBenchCommand makes the flag set of `zkgate bench KIND`: usage is its
// whole help text before the flag list, dirHelp what --dir keeps, and
// zkgateHelp the help of --zkgate ("" when the benchmark has no such
// flag).
func newBenchCommand(kind, usage, dirHelp, zkgateHelp string, stderr io.Writer) *benchCommand {
	c := &benchCommand{name: "bench " + kind, kind: kind, stderr: stderr}
	c.fs = flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.fs.SetOutput(stderr)
	c.fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		c.fs.PrintDefaults()
	}
	c.jsonPath = c.fs.String("json", "", "results file (default bench-results/"+kind+"-<date>.json)")
	c.keepDir = c.fs.String("dir", "", "keep "+dirHelp+" in this directory (default: a temporary one, removed)")
	c.logLevel = c.fs.String("log-level", "info", "progress log level: debug, info, warn or error")
	if zkgateHelp != "" {
		c.zkgateBin = c.fs.String("zkgate", "", zkgateHelp)
	}
	return c
}

// parse parses args and refuses arguments left over; when ok is false
// the command ends with code (0 after -h).
func (c *benchCommand) parse(args []string) (code int, ok bool) {
	if err := c.fs.Parse(args); err != nil {
		return flagExit(err), false
	}
	if c.fs.NArg() > 0 {
		return c.fail(fmt.Errorf("unexpected argument %q", c.fs.Arg(0))), false
	}
	return 0, true
}

// fail prints err as the command's one line and returns exit code 1.
func (c *benchCommand) fail(err error) int { return fail(c.stderr, c.name, err) }

// benchRun is what a benchmark needs from the common flags.
type benchRun struct {
	// bin is the zkgate binary ("" when the benchmark has no --zkgate).
	bin string
	// options are --dir, the command line, this version and the logger.
	options bench.RunOptions
}

// setup makes the logger, finds the zkgate binary and the results path;
// when ok is false the command ends with code.
func (c *benchCommand) setup(args []string) (r benchRun, code int, ok bool) {
	log, err := newLogger(c.stderr, *c.logLevel)
	if err != nil {
		return r, c.fail(err), false
	}
	r = benchRun{options: bench.RunOptions{Dir: *c.keepDir, Command: commandLine("zkgate "+c.name, args), Version: version.Version, Logger: log}}
	if c.zkgateBin != nil {
		if r.bin, err = zkgateBinary(*c.zkgateBin); err != nil {
			return r, c.fail(err), false
		}
	}
	c.out = resultsPath(*c.jsonPath, c.kind)
	return r, 0, true
}

// zkgateBinary is the zkgate binary a benchmark starts its processes
// with: --zkgate, else this one.
func zkgateBinary(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	bin, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the zkgate binary (set --zkgate): %w", err)
	}
	return bin, nil
}

// resultsPath is where a benchmark writes its JSON: --json, else
// bench-results/KIND-<date>.json.
func resultsPath(flagValue, kind string) string {
	if flagValue != "" {
		return flagValue
	}
	return bench.ResultPath(kind, time.Now())
}

// benchReport is what every benchmark's report does.
type benchReport interface {
	WriteTable(w io.Writer) error
	WriteJSON(path string) error
	Failed() bool
}

// finish ends a benchmark command after setup: the error of its run (an
// interruption, or a failure with where its logs are), else the table on
// stdout, the JSON at the results path, and a non-zero exit with
// failedMsg when the report says a check failed.
func (c *benchCommand) finish(ctx context.Context, stdout io.Writer, rep benchReport, err error, failedMsg string) int {
	if err != nil {
		if ctx.Err() != nil {
			return c.fail(fmt.Errorf("interrupted: %w", ctx.Err()))
		}
		return c.fail(withDirHint(err, *c.keepDir))
	}
	if err := rep.WriteTable(stdout); err != nil {
		return c.fail(err)
	}
	if err := rep.WriteJSON(c.out); err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(stdout, "results: %s\n", c.out)
	if rep.Failed() {
		return c.fail(errors.New(failedMsg))
	}
	return 0
}

// gatewayEnvFlag defines the repeatable --gateway-env KEY=VALUE flag.
func gatewayEnvFlag(fs *flag.FlagSet, example string) *[]string {
	var env []string
	fs.Func("gateway-env", "KEY=VALUE added to the gateway's environment only, for experiments such as "+example+" (repeatable)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("%q is not KEY=VALUE", v)
		}
		env = append(env, v)
		return nil
	})
	return &env
}

// withDirHint adds to a failed run's error that --dir keeps its logs,
// unless they were kept.
func withDirHint(err error, dir string) error {
	var refused *bench.OptionsError
	if errors.As(err, &refused) {
		return err // nothing ran: no logs
	}
	if dir != "" {
		return fmt.Errorf("%w (logs in %s)", err, dir)
	}
	return fmt.Errorf("%w (run again with --dir DIR to keep the logs)", err)
}

// commandLine renders a command for the record, quoting arguments with
// spaces or shell characters.
func commandLine(prefix string, args []string) string {
	parts := []string{prefix}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\;&|<>*?()") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// runBenchHelper runs a hidden helper process of the proxy benchmark,
// which serves on --listen (default: a free loopback port) and prints
// its address: flags defines its other flags and returns what serves.
func runBenchHelper(name string, args []string, stderr io.Writer, flags func(fs *flag.FlagSet) func(listen string) error) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	serve := flags(fs)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if err := serve(*listen); err != nil {
		return fail(stderr, name, err)
	}
	return 0
}

// runBenchBackend is the hidden `zkgate bench backend`: the proxy
// benchmark's backend, a separate process so it never shares the Go
// runtime with the gateway.
func runBenchBackend(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runBenchHelper("bench backend", args, stderr, func(fs *flag.FlagSet) func(string) error {
		size := fs.Int("size", 64, "response body size in bytes")
		return func(listen string) error { return bench.RunBackend(ctx, listen, *size, stdout) }
	})
}

// runBenchBareProxy is the hidden `zkgate bench bareproxy`: the
// reference proxy (a bare httputil.ReverseProxy to one backend).
func runBenchBareProxy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runBenchHelper("bench bareproxy", args, stderr, func(fs *flag.FlagSet) func(string) error {
		backend := fs.String("backend", "", "backend host:port")
		prefix := fs.String("prefix", "/bench/", "path prefix to strip")
		return func(listen string) error { return bench.RunBareProxy(ctx, listen, *backend, *prefix, stdout) }
	})
}

// runBenchGateway is the hidden `zkgate bench gateway --pprof ADDR --
// GATEWAY-FLAGS`: `zkgate gateway` plus a CPU/heap profiling endpoint on
// a loopback address, for the proxy benchmark's --cpuprofile.
func runBenchGateway(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "bench gateway"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("pprof", "", "loopback host:port for /debug/pprof/profile?seconds=N and /debug/pprof/{heap,allocs,goroutine}")
	startup := fs.String("startup-cpuprofile", "", "profile the CPU from the start into this file, until GET /debug/pprof/startup/stop or the exit")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fail(stderr, name, fmt.Errorf("--pprof: %q is not a loopback host:port", *addr))
	}
	// The registry benchmark's cold start: profiled from the process
	// start.
	var sp *harness.CPUProfile
	if *startup != "" {
		if sp, err = harness.StartCPUProfile(*startup); err != nil {
			return fail(stderr, name, fmt.Errorf("--startup-cpuprofile: %w", err))
		}
		defer sp.Stop()
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fail(stderr, name, fmt.Errorf("--pprof: %w", err))
	}
	srv := &http.Server{Handler: profileHandler(sp), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	return RunGateway(ctx, fs.Args(), stdout, stderr)
}

// profileHandler serves CPU and runtime profiles in pprof's format
// without net/http/pprof (which registers itself on the default mux).
// /debug/pprof/heap?gc=1 collects garbage first; with a startup profile,
// /debug/pprof/startup/stop ends it.
func profileHandler(startup *harness.CPUProfile) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/startup/stop", func(w http.ResponseWriter, r *http.Request) {
		if startup == nil {
			http.Error(w, "no startup profile (--startup-cpuprofile)", http.StatusNotFound)
			return
		}
		if err := startup.Stop(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "stopped\n")
	})
	mux.HandleFunc("GET /debug/pprof/profile", func(w http.ResponseWriter, r *http.Request) {
		secs, err := strconv.Atoi(r.URL.Query().Get("seconds"))
		if err != nil || secs < 1 || secs > 600 {
			http.Error(w, "seconds must be between 1 and 600", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if err := pprof.StartCPUProfile(w); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		select {
		case <-time.After(time.Duration(secs) * time.Second):
		case <-r.Context().Done():
		}
		pprof.StopCPUProfile()
	})
	mux.HandleFunc("GET /debug/pprof/{name}", func(w http.ResponseWriter, r *http.Request) {
		p := pprof.Lookup(r.PathValue("name"))
		if p == nil {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("gc") == "1" {
			runtime.GC()
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		p.WriteTo(w, 0)
	})
	return mux
}

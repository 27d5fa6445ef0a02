package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/internal/harness"
	"github.com/zkgate/zkgate/internal/procgroup"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/register"
)

// Targets of docs/benchmarks.md#targets that the registry benchmark checks.
const (
	TargetColdStart = 3 * time.Second
	// TargetRSS is 200 MB (decimal, as docs/benchmarks.md#targets writes it).
	TargetRSS           = 200_000_000
	TargetChangeApplied = 10 * time.Millisecond
)

// RegistryOptions configure [RunRegistry]. Zero values take the
// documented defaults.
type RegistryOptions struct {
	// Binary is the zkgate executable that runs the gateway.
	Binary string
	// Services and Instances size the registry; default 10,000 and
	// 100,000.
	Services, Instances int
	// Routes is the number of services the gateway routes to (and so
	// follows); default 10, a realistic handful.
	Routes int
	// ColdStarts is how many times the gateway is started on the loaded
	// registry; default 3.
	ColdStarts int
	// Changes is the number of single changes measured; default 300
	// (add, change data, delete in turn).
	Changes int
	// Pause separates changes; default 20ms.
	Pause time.Duration
	// Poll is the pause between two reads of the gateway's /readyz while
	// a change is awaited; default 250µs (timers may round it up: about
	// 1.1 ms on the Firecracker VM of docs/benchmarks.md); negative polls
	// back to back.
	Poll time.Duration
	// Settle is how long the gateway runs after its last cold start
	// before its memory is read; default 5s.
	Settle time.Duration
	// Batch bounds the operations of one multi request while populating;
	// default 500. Writers is how many are in flight at once; default 8.
	Batch, Writers int
	// ZKHeap is ZooKeeper's -Xmx; default 1g.
	ZKHeap string
	// GatewayEnv adds KEY=VALUE variables to the gateway's environment
	// only (experiments such as GOGC=50), and is recorded in the report.
	GatewayEnv []string
	// ProfileDir, when set, adds one profiled gateway run and writes its
	// CPU profile of the cold start, heap and allocation profiles after
	// the load and a CPU profile of a series of changes there.
	ProfileDir string
	RunOptions
}

func (o *RegistryOptions) defaults() error {
	if o.Binary == "" {
		return errors.New("the zkgate binary is not set")
	}
	withDefaults(o, RegistryOptions{
		Services: 10000, Instances: 100000, Routes: 10, ColdStarts: 3, Changes: 300, Pause: 20 * time.Millisecond,
		Poll: 250 * time.Microsecond, Settle: 5 * time.Second, Batch: 500, Writers: 8, ZKHeap: "1g", RunOptions: runDefaults(),
	})
	switch {
	case o.Services < 1 || o.Services > 65536:
		return errors.New("--services must be between 1 and 65536")
	case o.Instances < o.Services || o.Instances > 250000*o.Services:
		return errors.New("--instances must be at least --services")
	case o.Routes < 1 || o.Routes > o.Services:
		return errors.New("--routes must be between 1 and --services")
	case o.ColdStarts < 1 || o.ColdStarts > 20:
		return errors.New("--cold-starts must be between 1 and 20")
	case o.Changes < 3 || o.Changes > 100000:
		return errors.New("--changes must be between 3 and 100000")
	case o.Pause < 0 || o.Settle < 0:
		return errors.New("durations must not be negative")
	case o.Batch < 1 || o.Batch > 10000 || o.Writers < 1 || o.Writers > 64:
		return errors.New("--batch must be between 1 and 10000 and --writers between 1 and 64")
	case !validEnv(o.GatewayEnv):
		return errors.New("--gateway-env takes KEY=VALUE")
	}
	return nil
}

// Change kinds, applied in turn to one new instance node.
const (
	ChangeAdd    = "add"
	ChangeData   = "data"
	ChangeDelete = "delete"
)

// outOfService is what a data change writes: Spring's OUT_OF_SERVICE,
// which takes the instance out of rotation.
const outOfService = "OUT_OF_SERVICE"

// RunRegistry measures a gateway over a large registry: it populates a
// standalone ZooKeeper, starts `zkgate gateway` as a separate process
// (several times, for the cold start), reads its memory once loaded, and
// times single changes from the ZooKeeper write to the gateway's applied
// routing table.
func RunRegistry(ctx context.Context, opts RegistryOptions) (*RegistryReport, error) {
	if err := opts.defaults(); err != nil {
		return nil, &OptionsError{Err: err}
	}
	log := opts.Logger
	l := layout{services: opts.Services, instances: opts.Instances}
	rep := &RegistryReport{
		RunHeader: newRunHeader(RegistryReportSchema, opts.Command, opts.Version),
		Setup: RegistrySetup{
			Services: opts.Services, Instances: opts.Instances, ColdStarts: opts.ColdStarts, Changes: opts.Changes,
			PauseText: opts.Pause.String(), PollText: opts.Poll.String(), SettleText: opts.Settle.String(),
			Batch: opts.Batch, Writers: opts.Writers, ZKHeap: opts.ZKHeap, GatewayEnv: opts.GatewayEnv,
			ResyncIntervalText: registryResync.String(),
			Gateway:            "zkgate gateway --config FILE, a separate process (this binary), log level warn",
			Nodes: "persistent Curator ServiceInstance JSON nodes written by the bench (a real registry's are ephemeral; " +
				"the gateway reads both alike), uniform: every service has instances/services instances",
		},
	}
	for i := range opts.Routes {
		rep.Setup.Routes = append(rep.Setup.Routes, l.serviceName(i*opts.Services/opts.Routes))
	}
	rep.Tools.ZooKeeper = "Debian zookeeper package, standalone, -Xmx" + opts.ZKHeap + ", started by the bench"
	rep.Tools.Java = toolVersion(ctx, "java", "-version")

	e := &regEnv{opts: opts, log: log, layout: l, routes: rep.Setup.Routes, sp: procgroup.NewSpawner(),
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}},
	}
	defer e.sp.Close()
	var err error
	var cleanup func()
	if e.dir, cleanup, err = harness.WorkDir(opts.Dir, "zkgate-bench-registry-"); err != nil {
		return nil, err
	}
	defer cleanup()
	defer e.close()

	log.Info("starting ZooKeeper", "heap", opts.ZKHeap)
	e.zk, err = zktest.New(ctx, zktest.Config{
		Size: 1, Dir: filepath.Join(e.dir, "zookeeper"), JVMFlags: []string{"-Xmx" + opts.ZKHeap},
		Logf: func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return nil, fmt.Errorf("starting ZooKeeper: %w", err)
	}
	if e.writer, err = zksession.Connect(zksession.Config{Servers: e.zk.Servers(), SessionTimeout: 30 * time.Second, Logger: log}); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, readyTimeout)
	err = e.writer.WaitConnected(cctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("connecting to ZooKeeper: %w", err)
	}

	log.Info("populating the registry", "services", opts.Services, "instances", opts.Instances)
	pop, err := populate(ctx, e.writer, registryRoot, l, opts.Batch, opts.Writers, time.Now())
	if err != nil {
		return nil, err
	}
	rep.Populate = PopulateFigures{
		Nodes: pop.Nodes, DataBytes: pop.DataBytes, Seconds: round(pop.Took.Seconds(), 2),
		NodesPerSec: round1(float64(pop.Nodes) / pop.Took.Seconds()),
	}
	rep.Populate.ZooKeeper = e.zkStats(ctx)
	log.Info("registry populated", "nodes", pop.Nodes, "took", pop.Took.Round(time.Millisecond),
		"zk_znodes", rep.Populate.ZooKeeper.ZNodes, "zk_rss_mib", int64(rep.Populate.ZooKeeper.RSSBytes)>>20)

	for run := 1; run <= opts.ColdStarts; run++ {
		cs, err := e.coldStart(ctx, run, false)
		if err != nil {
			return nil, fmt.Errorf("cold start %d: %w", run, err)
		}
		rep.ColdStarts = append(rep.ColdStarts, cs)
		log.Info("cold start", "run", run, "ready_ms", cs.ReadyMS, "peak_rss_mib", int64(cs.PeakRSSBytes)>>20)
		if run < opts.ColdStarts {
			e.stopGateway()
		}
	}

	log.Info("letting the gateway settle", "for", opts.Settle)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(opts.Settle):
	}
	if rep.Memory, err = e.memory(ctx); err != nil {
		return nil, err
	}
	rep.Memory.PerInstanceBytes = round1(rep.Memory.HeapInuseBytes / float64(opts.Instances))
	rep.Memory.ZooKeeper = e.zkStats(ctx)

	log.Info("measuring single changes", "changes", opts.Changes)
	series := time.Now()
	if rep.Samples, err = e.changes(ctx, opts.Changes); err != nil {
		return nil, err
	}
	perChange := time.Since(series) / time.Duration(opts.Changes)
	e.stopGateway()

	if opts.ProfileDir != "" {
		if rep.Profiles, err = e.profiled(ctx, perChange); err != nil {
			return nil, err
		}
	}
	rep.summarize()
	return rep, nil
}

// unroutedWindow is how long the bench watches the gateway's revision
// after a change to a service it does not route: a gateway that follows
// only its routes' services publishes nothing.
const unroutedWindow = 50 * time.Millisecond

// registryResync is the gateway's resync interval during the benchmark:
// long, so that no periodic full re-read falls inside a measurement (a
// re-read publishes a new revision, which would look like an applied
// change). Its cost is the cold start's full read.
const registryResync = time.Hour

// regEnv is a running registry benchmark.
type regEnv struct {
	opts   RegistryOptions
	log    *slog.Logger
	layout layout
	routes []string
	sp     *procgroup.Spawner
	http   *http.Client
	dir    string

	zk     *zktest.Cluster
	writer *zksession.Session

	gateway   *procgroup.Proc
	admin     string
	pprofAddr string
	runs      int
}

// startGateway starts the gateway process (profiled: behind `zkgate bench
// gateway` with its CPU profiler on from the start) and returns when the
// process was started.
func (e *regEnv) startGateway(ctx context.Context, profiled bool) (time.Time, error) {
	ports, err := harness.FreeAddrs(3)
	if err != nil {
		return time.Time{}, err
	}
	e.admin, e.pprofAddr = ports[1], ports[2]
	gw := &harness.GatewayConfig{ID: "bench-registry-gateway", Listen: ports[0], AdminListen: e.admin}
	for _, svc := range e.routes {
		gw.Routes = append(gw.Routes, harness.Route{Prefix: "/" + svc + "/", Service: svc})
	}
	confPath := filepath.Join(e.dir, "gateway.yaml")
	if err := benchGatewayConfig("zkgate bench registry", e.zk.Servers(), registryResync, gw).Write(confPath); err != nil {
		return time.Time{}, err
	}
	e.runs++
	args := []string{"gateway", "--config", confPath, "--log-level", "warn"}
	if profiled {
		args = append([]string{"bench", "gateway", "--pprof", e.pprofAddr,
			"--startup-cpuprofile", filepath.Join(e.opts.ProfileDir, "coldstart.cpu.pprof"), "--"}, args[1:]...)
	}
	cmd := command(ctx, e.opts.Binary, args...)
	cmd.Env = append(cmd.Env, e.opts.GatewayEnv...)
	start := time.Now()
	p, err := harness.Start(e.sp, "gateway", cmd, filepath.Join(e.dir, fmt.Sprintf("gateway-%d.log", e.runs)))
	if err != nil {
		return start, err
	}
	e.gateway = p
	return start, nil
}

func (e *regEnv) stopGateway() {
	if e.gateway != nil {
		e.gateway.Stop(context.Background(), syscall.SIGTERM, stopGrace)
		e.gateway = nil
	}
}

// coldStart starts a gateway and measures: process start → admin listener
// answers → /readyz 200 (the first routing table, built from the first
// full read of the registry, is applied), then checks the load.
func (e *regEnv) coldStart(ctx context.Context, run int, profiled bool) (ColdStart, error) {
	cs := ColdStart{Run: run}
	zk0, zkErr := groupCPU(e.zk.PID(0))
	sys0, sysErr := readSysCPU()
	start, err := e.startGateway(ctx, profiled)
	if err != nil {
		return cs, err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var listening bool
	for {
		if e.gateway.Exited() {
			return cs, e.gateway.ExitError(exitTail)
		}
		rd, code, err := e.readyz(ctx)
		now := time.Since(start)
		if err == nil && !listening {
			listening = true
			cs.ListenMS = ms(now)
		}
		// Revision 0 with 200 would be a table without the registry: wait
		// for the first full read's.
		if err == nil && code == http.StatusOK && rd.RegistryRevision > 0 {
			cs.ReadyMS = ms(now)
			cs.Revision = rd.RegistryRevision
			break
		}
		select {
		case <-ctx.Done():
			return cs, fmt.Errorf("the gateway was not ready within %s (last: %v %v)", readyTimeout, code, err)
		case <-time.After(2 * time.Millisecond):
		}
	}
	if st, err := procStatus(e.gateway.Pid()); err == nil {
		cs.PeakRSSBytes, cs.ReadyRSSBytes = float64(st.hwm), float64(st.rss)
	}
	// CPU time during the start: the gateway's (all of it is the start's),
	// ZooKeeper's, and the rest of the machine's.
	gw, gwErr := groupCPU(e.gateway.Pid())
	zk1, zkErr2 := groupCPU(e.zk.PID(0))
	sys1, sysErr2 := readSysCPU()
	if errors.Join(zkErr, sysErr, gwErr, zkErr2, sysErr2) == nil {
		busy := sys1.Tasks - sys0.Tasks + sys1.Interrupts - sys0.Interrupts
		cs.CPU = &StartCPU{
			GatewaySec: round(gw.Seconds(), 2), ZooKeeperSec: round((zk1 - zk0).Seconds(), 2),
			OtherSec:     round(max(busy-gw-(zk1-zk0), 0).Seconds(), 2),
			AvailableSec: round(float64(runtime.NumCPU())*time.Since(start).Seconds(), 2),
		}
	}
	m, err := e.metrics(ctx)
	if err != nil {
		return cs, err
	}
	cs.FullReadMS = round(1000*m["zkgate_registry_resync_duration_seconds_sum"], 3)
	cs.Watches = m["zkgate_zookeeper_watches"]
	cs.HeapInuseBytes = m["go_memstats_heap_inuse_bytes"]
	cs.Malformed = m["zkgate_registry_malformed_nodes"]
	if !e.verifies() {
		// The first routing table comes from the first full read.
		cs.LoadVerified = cs.Revision == 1
		cs.LoadCheck = fmt.Sprintf("skipped (%d routes: /admin/instances would list every instance and distort memory and CPU); registry revision %d at ready", len(e.routes), cs.Revision)
		return cs, nil
	}
	got, err := e.routedCounts(ctx)
	if err != nil {
		return cs, err
	}
	cs.RoutedInstances = got
	cs.LoadVerified = true
	cs.LoadCheck = "every routed service showed all its instances in /admin/instances"
	for i, svc := range e.routes {
		if want := e.layout.perService(e.serviceIndex(svc)); got[i] != want {
			cs.LoadVerified = false
			cs.LoadCheck = "some routed service did not show all its instances in /admin/instances"
		}
	}
	return cs, nil
}

// maxVerifiedRoutes bounds the routes for which the bench reads
// /admin/instances (which lists every routed instance) to check the load
// and each change.
const maxVerifiedRoutes = 50

func (e *regEnv) verifies() bool { return len(e.routes) <= maxVerifiedRoutes }

// serviceIndex inverts layout.serviceName.
func (e *regEnv) serviceIndex(name string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(name, "svc-"))
	return n
}

type readiness struct {
	Ready            bool   `json:"ready"`
	Reason           string `json:"reason"`
	RegistryRevision uint64 `json:"registry_revision"`
}

// readyz reads the gateway's /readyz (err only when it did not answer).
func (e *regEnv) readyz(ctx context.Context) (readiness, int, error) {
	var rd readiness
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.admin+"/readyz", nil)
	if err != nil {
		return rd, 0, err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return rd, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return rd, 0, err
	}
	if err := json.Unmarshal(body, &rd); err != nil {
		return rd, resp.StatusCode, fmt.Errorf("/readyz: %w", err)
	}
	return rd, resp.StatusCode, nil
}

// adminGet fetches a path of the gateway's admin listener.
func (e *regEnv) adminGet(ctx context.Context, p string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.admin+p, nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", p, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", p, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("gateway %s: %s", p, resp.Status)
	}
	return body, nil
}

func (e *regEnv) metrics(ctx context.Context) (map[string]float64, error) {
	body, err := e.adminGet(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	return promValues(string(body), "zkgate_registry_resync_duration_seconds_sum", "zkgate_registry_revision", "zkgate_zookeeper_watches",
		"zkgate_registry_malformed_nodes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_alloc_bytes",
		"go_memstats_sys_bytes", "go_memstats_heap_sys_bytes", "go_goroutines", "process_resident_memory_bytes",
		"go_gc_duration_seconds_count"), nil
}

// adminInstances is the part of /admin/instances the bench reads.
type adminInstances struct {
	RegistryRevision uint64 `json:"registry_revision"`
	Services         map[string][]struct {
		Addr   string `json:"addr"`
		State  string `json:"state"`
		Status string `json:"status"`
	} `json:"services"`
}

func (e *regEnv) instances(ctx context.Context) (adminInstances, error) {
	var out adminInstances
	body, err := e.adminGet(ctx, "/admin/instances")
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return out, fmt.Errorf("/admin/instances: %w", err)
	}
	return out, nil
}

// routedCounts returns the number of instances of each routed service.
func (e *regEnv) routedCounts(ctx context.Context) ([]int, error) {
	in, err := e.instances(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]int, len(e.routes))
	for i, svc := range e.routes {
		out[i] = len(in.Services[svc])
	}
	return out, nil
}

// memory reads the settled gateway's memory.
func (e *regEnv) memory(ctx context.Context) (MemoryFigures, error) {
	var mf MemoryFigures
	st, err := procStatus(e.gateway.Pid())
	if err != nil {
		return mf, err
	}
	mf.RSSBytes, mf.PeakRSSBytes = float64(st.rss), float64(st.hwm)
	m, err := e.metrics(ctx)
	if err != nil {
		return mf, err
	}
	mf.HeapInuseBytes, mf.HeapAllocBytes = m["go_memstats_heap_inuse_bytes"], m["go_memstats_heap_alloc_bytes"]
	mf.HeapSysBytes, mf.GoSysBytes = m["go_memstats_heap_sys_bytes"], m["go_memstats_sys_bytes"]
	mf.Goroutines, mf.GCCycles = m["go_goroutines"], m["go_gc_duration_seconds_count"]
	mf.GatewayWatches = m["zkgate_zookeeper_watches"]
	return mf, nil
}

// zkStats reads ZooKeeper's node count and memory.
func (e *regEnv) zkStats(ctx context.Context) ZooKeeperFigures {
	var z ZooKeeperFigures
	if out, err := zktest.FourLetterWord(ctx, e.zk.Addr(0), "mntr"); err == nil {
		v := mntrValues(out)
		z.ZNodes, z.Watches, z.DataBytes = v["zk_znode_count"], v["zk_watch_count"], v["zk_approximate_data_size"]
	}
	if pid := e.zk.PID(0); pid > 0 {
		if st, err := procStatus(pid); err == nil {
			z.RSSBytes = float64(st.rss)
		}
	}
	return z
}

// mntrValues parses the numeric lines of ZooKeeper's mntr answer.
func mntrValues(s string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			out[strings.TrimSpace(k)] = f
		}
	}
	return out
}

// changes runs n single changes against the running gateway.
func (e *regEnv) changes(ctx context.Context, n int) ([]ChangeSample, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	routed := make(map[string]bool, len(e.routes))
	for _, r := range e.routes {
		routed[r] = true
	}
	// unrouted picks a service no route leads to ("" when every service
	// is routed).
	unrouted := func() string {
		if len(routed) >= e.layout.services {
			return ""
		}
		for {
			if svc := e.layout.serviceName(rng.IntN(e.layout.services)); !routed[svc] {
				return svc
			}
		}
	}
	var out []ChangeSample
	var node, addr, svc string
	var isRouted bool
	for k := range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		kind := []string{ChangeAdd, ChangeData, ChangeDelete}[k%3]
		if kind == ChangeAdd {
			// Even series change a routed service, odd ones any other.
			series := k / 3
			svc, isRouted = "", series%2 == 0
			if !isRouted {
				svc = unrouted()
			}
			if svc == "" {
				svc, isRouted = e.routes[(series/2)%len(e.routes)], true
			}
			id, err := register.NewUUID()
			if err != nil {
				return nil, err
			}
			node = path.Join(registryRoot, svc, id)
			addr = fmt.Sprintf("10.255.%d.%d:9%03d", (k/250)%250, k%250+1, k%1000)
		}
		// The baseline is read just before the write: a change that took
		// more than one revision has had the pause to finish.
		rd, _, err := e.readyz(ctx)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 {
			last := &out[len(out)-1]
			last.ExtraRevisions = int(rd.RegistryRevision - last.Revision)
		}
		s, err := e.change(ctx, kind, svc, node, addr, isRouted, rd.RegistryRevision)
		if err != nil {
			return nil, fmt.Errorf("change %d (%s %s): %w", k+1, kind, node, err)
		}
		s.N = k + 1
		out = append(out, s)
		if len(out)%100 == 0 {
			e.log.Info("progress", "changes", len(out), "of", n)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(e.opts.Pause):
		}
	}
	if rd, _, err := e.readyz(ctx); err == nil && len(out) > 0 {
		last := &out[len(out)-1]
		last.ExtraRevisions = int(rd.RegistryRevision - last.Revision)
	}
	return out, nil
}

// change makes one change and polls /readyz until the gateway's applied
// registry revision passes rev; for a routed service it then checks that
// /admin/instances shows the change.
func (e *regEnv) change(ctx context.Context, kind, svc, node, addr string, routed bool, rev uint64) (ChangeSample, error) {
	s := ChangeSample{Kind: kind, Service: svc, Routed: routed}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var data []byte
	var err error
	if kind != ChangeDelete {
		data, err = curatorJSON(svc, path.Base(node), addr, time.Now())
		if err != nil {
			return s, err
		}
		if kind == ChangeData {
			data = []byte(strings.Replace(string(data), `"instance_status":"UP"`, `"instance_status":"`+outOfService+`"`, 1))
		}
	}
	issued := time.Now()
	switch kind {
	case ChangeAdd:
		_, err = e.writer.Create(wctx, node, data, zksession.FlagPersistent, nil)
	case ChangeData:
		_, err = e.writer.Set(wctx, node, data, -1)
	case ChangeDelete:
		err = e.writer.Delete(wctx, node, -1)
	}
	written := time.Now()
	if err != nil {
		return s, err
	}
	s.WriteMS = ms(written.Sub(issued))
	prev := written
	var ignoreBy time.Time
	if !routed {
		// A gateway follows only the services its routes name: a change
		// elsewhere must publish nothing. One that shows within
		// unroutedWindow (a gateway that follows everything) is timed.
		ignoreBy = written.Add(unroutedWindow)
	}
	for {
		if e.gateway.Exited() {
			return s, e.gateway.ExitError(exitTail)
		}
		t0 := time.Now()
		rd, _, err := e.readyz(wctx)
		t1 := time.Now()
		if err != nil {
			return s, err
		}
		s.Polls++
		if rd.RegistryRevision > rev {
			s.AppliedMS = ms(t1.Sub(written))
			s.FromIssueMS = ms(t1.Sub(issued))
			s.ResolutionMS = ms(t1.Sub(prev))
			s.LastPollMS = ms(t1.Sub(t0))
			s.Revision = rd.RegistryRevision
			break
		}
		prev = t0
		if !ignoreBy.IsZero() && t1.After(ignoreBy) {
			s.Ignored, s.Revision = true, rd.RegistryRevision
			return s, nil
		}
		if err := wctx.Err(); err != nil {
			return s, fmt.Errorf("the gateway did not apply the change within 10s (revision still %d): %w", rd.RegistryRevision, err)
		}
		if e.opts.Poll > 0 { // negative: back to back
			select {
			case <-wctx.Done():
			case <-time.After(e.opts.Poll):
			}
		}
	}
	if routed && e.verifies() {
		in, err := e.instances(wctx)
		if err != nil {
			return s, err
		}
		s.Checked, s.Verified = true, verifyChange(kind, addr, in.Services[svc])
	}
	return s, nil
}

// verifyChange checks that a routed service's instances show the change.
func verifyChange(kind, addr string, ins []struct {
	Addr   string `json:"addr"`
	State  string `json:"state"`
	Status string `json:"status"`
}) bool {
	for _, in := range ins {
		if in.Addr != addr {
			continue
		}
		switch kind {
		case ChangeAdd:
			return strings.EqualFold(in.Status, "UP")
		case ChangeData:
			return strings.EqualFold(in.Status, outOfService)
		default:
			return false
		}
	}
	return kind == ChangeDelete
}

// profiled runs one more gateway with its profiler on: the CPU profile of
// the cold start, heap and allocation profiles after the load, and a CPU
// profile over a series of changes.
func (e *regEnv) profiled(ctx context.Context, perChange time.Duration) (*RegistryProfiles, error) {
	dir := e.opts.ProfileDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("profile directory: %w", err)
	}
	e.log.Info("profiled run", "dir", dir)
	cs, err := e.coldStart(ctx, 0, true)
	if err != nil {
		return nil, fmt.Errorf("profiled cold start: %w", err)
	}
	pr := &RegistryProfiles{Dir: dir, ColdStartReadyMS: cs.ReadyMS}
	// The startup profile runs until the bench stops it, just after ready.
	if _, err := e.pprofGet(ctx, "/debug/pprof/startup/stop", ""); err != nil {
		return nil, err
	}
	pr.ColdStartCPU = filepath.Join(dir, "coldstart.cpu.pprof")
	if pr.Heap, err = e.pprofGet(ctx, "/debug/pprof/heap?gc=1", filepath.Join(dir, "heap.pprof")); err != nil {
		return nil, err
	}
	if pr.Allocs, err = e.pprofGet(ctx, "/debug/pprof/allocs", filepath.Join(dir, "allocs.pprof")); err != nil {
		return nil, err
	}
	n := min(e.opts.Changes, 150)
	// Cover the whole series: the main run's time per change, plus room.
	secs := max(1, int(math.Ceil(1.5*float64(n)*perChange.Seconds()))+1)
	type result struct {
		file string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		f, err := e.pprofGet(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), filepath.Join(dir, "changes.cpu.pprof"))
		ch <- result{f, err}
	}()
	samples, err := e.changes(ctx, n)
	if err != nil {
		return nil, err
	}
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	pr.ChangesCPU, pr.ProfiledChanges = r.file, len(samples)
	e.stopGateway()
	pr.Hint = "go tool pprof -top " + pr.ColdStartCPU + "; go tool pprof -sample_index=inuse_space -top " + pr.Heap
	return pr, nil
}

// pprofGet fetches a profile from the profiled gateway into file (or
// discards the body when file is empty) and returns file.
func (e *regEnv) pprofGet(ctx context.Context, p, file string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.pprofAddr+p, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("gateway profile %s: %w", p, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", resp.Status, firstLine(data))
	}
	if err != nil {
		return "", fmt.Errorf("gateway profile %s: %w", p, err)
	}
	if file == "" {
		return "", nil
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		return "", fmt.Errorf("gateway profile: %w", err)
	}
	return file, nil
}

// close stops the gateway, the writer session and ZooKeeper.
func (e *regEnv) close() {
	e.stopGateway()
	if e.writer != nil {
		e.writer.Close()
	}
	if e.zk != nil {
		if err := e.zk.Close(); err != nil {
			e.log.Debug("stopping ZooKeeper", "err", err)
		}
	}
}

// procMem is a process's resident memory from /proc/PID/status.
type procMem struct{ rss, hwm int64 }

func procStatus(pid int) (procMem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMem{}, fmt.Errorf("reading memory of process %d: %w", pid, err)
	}
	return parseProcStatus(string(b))
}

// parseProcStatus reads VmRSS and VmHWM (peak RSS) of /proc/PID/status.
func parseProcStatus(s string) (procMem, error) {
	var m procMem
	var found int
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("/proc status: unexpected %s line %q", k, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("/proc status: %w", err)
		}
		if k == "VmRSS" {
			m.rss = kb << 10
		} else {
			m.hwm = kb << 10
		}
		found++
	}
	if found != 2 {
		return m, errors.New("/proc status: no VmRSS/VmHWM")
	}
	return m, nil
}

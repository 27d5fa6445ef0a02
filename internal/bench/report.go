package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zkgate/zkgate/internal/harness"
)

// Target names.
const (
	TargetDirect  = "direct"
	TargetGateway = "gateway"
	TargetNginx   = "nginx"
	// TargetBare is a bare httputil.ReverseProxy (BareProxyHandler).
	TargetBare = "httputil"
)

// ProxyReport is the result of one proxy benchmark run (the JSON file).
type ProxyReport struct {
	RunHeader
	Tools Tools `json:"tools"`
	Setup Setup `json:"setup"`
	// Targets, Runs, Ratios and AddedP50US are those of the get scenario
	// (the default load; the layout of reports from before scenarios),
	// empty when it was not run. Scenarios holds every scenario's.
	//
	// Targets holds one summary per measured target, in run order: the
	// run with the median requests per second when there were several
	// rounds.
	Targets []TargetResult `json:"targets"`
	// Runs holds every measured run, in order.
	Runs   []TargetResult `json:"runs"`
	Ratios Ratios         `json:"ratios"`
	// AddedP50US is each proxy's p50 minus the direct p50, in
	// microseconds.
	AddedP50US map[string]float64 `json:"added_p50_us,omitempty"`
	// Scenarios holds the results of every scenario, in run order.
	Scenarios []ScenarioResult `json:"scenarios,omitempty"`
	// Checks compare the figures with the proxy targets.
	Checks []ProxyCheck `json:"checks,omitempty"`
	// Profile is the gateway's CPU profile pass, when one was taken.
	Profile *ProfileRun `json:"profile,omitempty"`
	// Notes are skipped targets and warnings.
	Notes []string `json:"notes,omitempty"`
}

// RunHeader is how a benchmark report's JSON starts: what ran, when,
// and where. A report embeds it, so its keys stay at the top level.
type RunHeader struct {
	Schema  string    `json:"schema"`
	Date    time.Time `json:"date"`
	Command string    `json:"command"`
	Version string    `json:"zkgate_version"`
	Machine Machine   `json:"machine"`
}

// newRunHeader describes a run starting now on this machine.
func newRunHeader(schema, command, version string) RunHeader {
	return RunHeader{Schema: schema, Date: time.Now(), Command: command, Version: version, Machine: readMachine()}
}

// writeHead starts a report's table: the benchmark and the date, then
// the machine and what shares its CPUs.
func (h RunHeader) writeHead(b *strings.Builder, benchmark, shares string) {
	fmt.Fprintf(b, "zkgate bench %s — %s\n", benchmark, h.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(b, "machine: %d CPUs (%s), %s RAM, %s/%s; %s\n",
		h.Machine.NProc, h.Machine.CPUModel, humanBytes(h.Machine.MemTotal), h.Machine.OS, h.Machine.Arch, shares)
}

// writeGatewayEnv prints the --gateway-env variables, when there are.
func writeGatewayEnv(b *strings.Builder, env []string) {
	if len(env) > 0 {
		fmt.Fprintf(b, "gateway environment: %s\n", strings.Join(env, " "))
	}
}

// writeTargets prints the target checks under their heading.
func writeTargets(b *strings.Builder, targets []TargetCheck) {
	b.WriteString("\ntargets (docs/benchmarks.md#targets):\n")
	for _, t := range targets {
		fmt.Fprintf(b, "  %s\n", t)
	}
}

// writeNotes prints one "note:" line per note.
func writeNotes(b *strings.Builder, notes []string) {
	for _, n := range notes {
		fmt.Fprintf(b, "note: %s\n", n)
	}
}

// newDistTable starts a right-aligned table of distributions; distRow
// adds one.
func newDistTable(b *strings.Builder, head string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, head)
	return tw
}

// distRow adds name's n, p50, p90, p99 and max; an empty distribution
// gets dashes, or no row when skipEmpty.
func distRow(tw *tabwriter.Writer, name string, d Dist, skipEmpty bool) {
	switch {
	case d.N > 0:
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", name, d.N, fmtMS(d.P50MS), fmtMS(d.P90MS), fmtMS(d.P99MS), fmtMS(d.MaxMS))
	case !skipEmpty:
		fmt.Fprintf(tw, "%s\t0\t—\t—\t—\t—\t\n", name)
	}
}

// ProxyReportSchema names the JSON layout.
const ProxyReportSchema = "zkgate.bench.proxy/v1"

// Machine describes where the benchmark ran.
type Machine struct {
	NProc     int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	MemTotal  int64  `json:"mem_total_bytes"`
	Kernel    string `json:"kernel,omitempty"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	GoVersion string `json:"go_version"`
}

// Tools are the versions of the external programs.
type Tools struct {
	Wrk       string `json:"wrk"`
	Nginx     string `json:"nginx,omitempty"`
	ZooKeeper string `json:"zookeeper"`
}

// Setup is the fixed part of the run.
type Setup struct {
	Load
	DurationText string   `json:"duration"`
	WarmupText   string   `json:"warmup"`
	TimeoutText  string   `json:"timeout"`
	Rounds       int      `json:"rounds"`
	BodyBytes    int      `json:"body_bytes"`
	NginxWorkers string   `json:"nginx_workers"`
	Backend      string   `json:"backend"`
	GatewayEnv   []string `json:"gateway_env,omitempty"`
	// GatewaySet are the KEY=VALUE settings added to the gateway section
	// of the gateway's configuration (--gateway-set).
	GatewaySet []string `json:"gateway_set,omitempty"`
	// Scenarios names the scenarios run, in run order.
	Scenarios []string `json:"scenarios,omitempty"`
}

// ScenarioResult is one scenario's runs and their summary.
type ScenarioResult struct {
	Scenario
	// Targets holds the run with the median requests per second of each
	// target.
	Targets []TargetResult `json:"targets"`
	// Runs holds every measured run of the scenario, in order.
	Runs []TargetResult `json:"runs"`
	// Ratios has the per-round ratios and their medians also for a single
	// round (unlike the report's top-level ratios).
	Ratios     Ratios             `json:"ratios"`
	AddedP50US map[string]float64 `json:"added_p50_us,omitempty"`
}

// ProxyCheck compares one figure with its target.
type ProxyCheck struct {
	What     string `json:"what"`
	Scenario string `json:"scenario"`
	Target   string `json:"target"`
	// Value is the figure compared: a ratio, microseconds or allocations
	// per request.
	Value float64 `json:"value"`
	// Figures renders the value with what it is compared with.
	Figures string `json:"figures"`
	Met     bool   `json:"met"`
	// Unmeasured says why there is no figure (the check is then not met).
	Unmeasured string `json:"unmeasured,omitempty"`
}

// TargetResult is one measured run of one target.
type TargetResult struct {
	Name string `json:"name"`
	// Scenario names the load (empty in reports from before scenarios:
	// get).
	Scenario string    `json:"scenario,omitempty"`
	Round    int       `json:"round"`
	URL      string    `json:"url"`
	RPS      float64   `json:"rps"`
	Wrk      WrkResult `json:"wrk"`
	// CPU is the CPU time each process used during the measured window
	// (seconds), and per request (microseconds).
	CPU CPUUse `json:"cpu"`
	// Runtime is the gateway's Go runtime activity during the window.
	Runtime *RuntimeUse `json:"go_runtime,omitempty"`
}

// CPUUse is CPU time used by the processes of one run.
type CPUUse struct {
	ProxySec        float64 `json:"proxy_s,omitempty"`
	BackendSec      float64 `json:"backend_s"`
	WrkSec          float64 `json:"wrk_s"`
	ProxyUSPerReq   float64 `json:"proxy_us_per_req,omitempty"`
	BackendUSPerReq float64 `json:"backend_us_per_req"`
	WrkUSPerReq     float64 `json:"wrk_us_per_req"`
	AvailableCPUSec float64 `json:"available_cpu_s"`
	// OtherSec is CPU time the machine was busy during the run outside
	// wrk, the proxy and the backend: other processes (ZooKeeper's
	// included) and interrupt work not done in their context.
	// InterruptSec is the irq/softirq time of the whole machine (on
	// loopback, part of TCP's receive path runs there); StealSec is time
	// the hypervisor gave to other machines.
	OtherSec     float64 `json:"other_s"`
	InterruptSec float64 `json:"interrupt_s"`
	StealSec     float64 `json:"steal_s"`
	Unavailable  string  `json:"unavailable,omitempty"`
}

// RuntimeUse is read from the gateway's /metrics before and after a run.
type RuntimeUse struct {
	MallocsPerReq    float64 `json:"mallocs_per_req"`
	AllocBytesPerReq float64 `json:"alloc_bytes_per_req"`
	GCCycles         float64 `json:"gc_cycles"`
}

// Ratios compare requests per second (0 when a side is missing).
type Ratios struct {
	GatewayNginx  float64 `json:"gateway_nginx_rps,omitempty"`
	GatewayDirect float64 `json:"gateway_direct_rps,omitempty"`
	NginxDirect   float64 `json:"nginx_direct_rps,omitempty"`
	// GatewayBare compares the gateway with a bare httputil.ReverseProxy.
	GatewayBare float64 `json:"gateway_httputil_rps,omitempty"`
	BareNginx   float64 `json:"httputil_nginx_rps,omitempty"`
	// GatewayNginxCPU compares the proxies' CPU time per request.
	GatewayNginxCPU float64 `json:"gateway_nginx_cpu_per_req,omitempty"`
	// With several rounds, the ratios within each round (targets measured
	// back to back share the machine's state) and their medians: less
	// sensitive to a noisy machine than the ratios of the median runs.
	PerRound              []RoundRatios `json:"per_round,omitempty"`
	GatewayNginxMedian    float64       `json:"gateway_nginx_rps_round_median,omitempty"`
	GatewayDirectMedian   float64       `json:"gateway_direct_rps_round_median,omitempty"`
	GatewayNginxCPUMedian float64       `json:"gateway_nginx_cpu_per_req_round_median,omitempty"`
}

// RoundRatios are the req/s ratios of one round.
type RoundRatios struct {
	Round         int     `json:"round"`
	GatewayNginx  float64 `json:"gateway_nginx_rps,omitempty"`
	GatewayDirect float64 `json:"gateway_direct_rps,omitempty"`
	// GatewayNginxCPU compares the proxies' CPU time per request.
	GatewayNginxCPU float64 `json:"gateway_nginx_cpu_per_req,omitempty"`
}

// ProfileRun is the extra gateway pass taken with the CPU profiler on.
type ProfileRun struct {
	File     string  `json:"file"`
	Scenario string  `json:"scenario,omitempty"`
	RPS      float64 `json:"rps"`
	Hint     string  `json:"hint"`
}

// median returns the run with the median requests per second of each
// target (the lower middle for an even count), in first-run order.
func medianByTarget(runs []TargetResult) []TargetResult {
	var order []string
	by := map[string][]TargetResult{}
	for _, r := range runs {
		if _, ok := by[r.Name]; !ok {
			order = append(order, r.Name)
		}
		by[r.Name] = append(by[r.Name], r)
	}
	out := make([]TargetResult, 0, len(order))
	for _, n := range order {
		rs := append([]TargetResult(nil), by[n]...)
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].RPS < rs[j].RPS })
		out = append(out, rs[(len(rs)-1)/2])
	}
	return out
}

// summarize fills, from each scenario's Runs, its Targets, Ratios and
// AddedP50US, the report's top-level fields from the get scenario, and
// the checks. A report with Runs and no Scenarios (one load) is taken as
// the get scenario.
func (r *ProxyReport) summarize() {
	if len(r.Scenarios) == 0 && len(r.Runs) > 0 {
		r.Scenarios = []ScenarioResult{{
			Scenario: Scenario{Name: ScenarioGet, Load: Load{Threads: r.Setup.Threads, Connections: r.Setup.Connections}, Method: "GET", ResponseBytes: r.Setup.BodyBytes},
			Runs:     r.Runs,
		}}
	}
	// Empty lists rather than null when get was not run.
	r.Targets, r.Runs, r.Ratios, r.AddedP50US = []TargetResult{}, []TargetResult{}, Ratios{}, nil
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		s.Targets, s.Ratios, s.AddedP50US = summarizeRuns(s.Runs, 1)
		if s.Name == ScenarioGet {
			// Per-round ratios only with several rounds, as before.
			r.Targets, r.Ratios, r.AddedP50US = summarizeRuns(s.Runs, 2)
			r.Runs = s.Runs
		}
	}
	r.Checks = r.checks()
}

// allRuns returns the runs of every scenario (Runs when there are no
// scenarios).
func (r *ProxyReport) allRuns() []TargetResult {
	if len(r.Scenarios) == 0 {
		return r.Runs
	}
	var out []TargetResult
	for _, s := range r.Scenarios {
		out = append(out, s.Runs...)
	}
	return out
}

// scenario returns the named scenario's results, nil when it was not run.
func (r *ProxyReport) scenario(name string) *ScenarioResult {
	for i := range r.Scenarios {
		if r.Scenarios[i].Name == name {
			return &r.Scenarios[i]
		}
	}
	return nil
}

// find returns the named target's result, nil when absent.
func find(ts []TargetResult, name string) *TargetResult {
	for i := range ts {
		if ts[i].Name == name {
			return &ts[i]
		}
	}
	return nil
}

// summarizeRuns returns the median run of each target, the ratios and
// each proxy's added p50 of one load's runs. The per-round ratios are
// filled when there are at least minRounds rounds.
func summarizeRuns(runs []TargetResult, minRounds int) ([]TargetResult, Ratios, map[string]float64) {
	targets := medianByTarget(runs)
	d, g, n, b := find(targets, TargetDirect), find(targets, TargetGateway), find(targets, TargetNginx), find(targets, TargetBare)
	ratios := Ratios{
		GatewayNginx: rpsRatio(g, n), GatewayDirect: rpsRatio(g, d), NginxDirect: rpsRatio(n, d),
		GatewayBare: rpsRatio(g, b), BareNginx: rpsRatio(b, n), GatewayNginxCPU: cpuRatio(g, n),
	}
	roundRatios(&ratios, runs, minRounds)
	var added map[string]float64
	if d != nil {
		for _, t := range []*TargetResult{g, n, b} {
			if t == nil {
				continue
			}
			if added == nil {
				added = map[string]float64{}
			}
			added[t.Name] = t.Wrk.LatencyUS.P50 - d.Wrk.LatencyUS.P50
		}
	}
	return targets, ratios, added
}

// rpsRatio is a's req/s over b's (0 when one is missing).
func rpsRatio(a, b *TargetResult) float64 {
	if a == nil || b == nil || b.RPS == 0 {
		return 0
	}
	return round(a.RPS/b.RPS, 3)
}

// cpuRatio is a's proxy CPU per request over b's (0 when one is
// missing).
func cpuRatio(a, b *TargetResult) float64 {
	if a == nil || b == nil || a.CPU.ProxyUSPerReq <= 0 || b.CPU.ProxyUSPerReq <= 0 {
		return 0
	}
	return round(a.CPU.ProxyUSPerReq/b.CPU.ProxyUSPerReq, 3)
}

// roundRatios fills the per-round ratios and their medians when runs has
// at least minRounds rounds: targets measured back to back in a round
// share the machine's state.
func roundRatios(x *Ratios, runs []TargetResult, minRounds int) {
	by := map[int][]TargetResult{}
	var rounds []int
	for _, t := range runs {
		if by[t.Round] == nil {
			rounds = append(rounds, t.Round)
		}
		by[t.Round] = append(by[t.Round], t)
	}
	if len(rounds) < max(minRounds, 1) {
		return
	}
	var gn, gd, cpu []float64
	for _, n := range rounds {
		ts := by[n]
		g := find(ts, TargetGateway)
		rr := RoundRatios{
			Round: n, GatewayNginx: rpsRatio(g, find(ts, TargetNginx)), GatewayDirect: rpsRatio(g, find(ts, TargetDirect)),
			GatewayNginxCPU: cpuRatio(g, find(ts, TargetNginx)),
		}
		x.PerRound = append(x.PerRound, rr)
		if rr.GatewayNginx > 0 {
			gn = append(gn, rr.GatewayNginx)
		}
		if rr.GatewayDirect > 0 {
			gd = append(gd, rr.GatewayDirect)
		}
		if rr.GatewayNginxCPU > 0 {
			cpu = append(cpu, rr.GatewayNginxCPU)
		}
	}
	x.GatewayNginxMedian, x.GatewayDirectMedian, x.GatewayNginxCPUMedian = median(gn), median(gd), median(cpu)
}

// median of xs (the mean of the middle two for an even count), 0 when
// empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return round((s[m-1]+s[m])/2, 3)
}

func round(x float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(x*p) / p
}

// WriteTable prints the human summary: one table per scenario with its
// ratios, then the checks and the notes.
func (r *ProxyReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	s := r.Setup
	r.writeHead(&b, "proxy", "wrk, proxy and backend share the CPUs")
	writeGatewayEnv(&b, s.GatewayEnv)
	if len(s.GatewaySet) > 0 {
		fmt.Fprintf(&b, "gateway configuration: %s\n", strings.Join(s.GatewaySet, " "))
	}
	fmt.Fprintf(&b, "load: wrk -d%s per run (after a %s warm-up), keep-alive; %d round(s)%s; in each round every scenario loads the targets back to back\n",
		s.DurationText, s.WarmupText, s.Rounds, medianNote(s.Rounds))
	b.WriteString("CPU columns: µs of CPU per request (proxy, backend, wrk); other CPU: the machine's CPU used outside them; allocs, bytes: the gateway's Go allocations per request\n")
	for _, sc := range r.Scenarios {
		b.WriteString("\n")
		if err := writeScenario(&b, sc, s.DurationText); err != nil {
			return err
		}
	}
	if len(r.Checks) > 0 {
		b.WriteString("\ntargets:\n")
		for _, c := range r.Checks {
			fmt.Fprintf(&b, "  %s\n", c)
		}
	}
	if p := r.Profile; p != nil {
		fmt.Fprintf(&b, "gateway CPU profile: %s (profiled %s pass %s req/s); %s\n", p.File, p.Scenario, thousands(p.RPS), p.Hint)
	}
	writeNotes(&b, r.Notes)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeScenario prints one scenario's table and ratios.
func writeScenario(b *strings.Builder, sc ScenarioResult, duration string) error {
	fmt.Fprintf(b, "%s: %s\n", sc.Name, sc.Describe())
	tw := newDistTable(b, "target\treq/s\tp50\tp90\tp99\t+p50 vs direct\terrors\tproxy CPU\tbackend CPU\twrk CPU\tother CPU\tallocs\tbytes\t")
	for _, t := range sc.Targets {
		added := "—"
		if v, ok := sc.AddedP50US[t.Name]; ok {
			added = signedMicros(v)
		}
		other := "—"
		if t.CPU.AvailableCPUSec > 0 && t.CPU.Unavailable == "" {
			other = fmt.Sprintf("%.0f%%", 100*max(t.CPU.OtherSec, 0)/t.CPU.AvailableCPUSec)
		}
		allocs, bytes := "—", "—"
		if t.Runtime != nil {
			allocs, bytes = fmt.Sprintf("%.1f", t.Runtime.MallocsPerReq), thousands(t.Runtime.AllocBytesPerReq)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			t.Name, thousands(t.RPS), micros(t.Wrk.LatencyUS.P50), micros(t.Wrk.LatencyUS.P90), micros(t.Wrk.LatencyUS.P99),
			added, t.Wrk.Errors.Total(), cpuPerReq(t.CPU.ProxyUSPerReq), cpuPerReq(t.CPU.BackendUSPerReq),
			cpuPerReq(t.CPU.WrkUSPerReq), other, allocs, bytes)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	x := sc.Ratios
	if x.GatewayNginx > 0 || x.GatewayDirect > 0 {
		b.WriteString("ratios (req/s):")
		writeRatios(b, "  ", ratio{"gateway/nginx", x.GatewayNginx}, ratio{"gateway/direct", x.GatewayDirect},
			ratio{"nginx/direct", x.NginxDirect}, ratio{"gateway/httputil", x.GatewayBare}, ratio{"httputil/nginx", x.BareNginx})
		writeRatios(b, "; ", ratio{"CPU per request gateway/nginx", x.GatewayNginxCPU})
		b.WriteString("\n")
	}
	if len(x.PerRound) > 1 && (x.GatewayNginxMedian > 0 || x.GatewayDirectMedian > 0) {
		b.WriteString("ratios within each round:")
		for _, rr := range x.PerRound {
			fmt.Fprintf(b, "  #%d", rr.Round)
			writeRatios(b, " ", ratio{"gateway/nginx", rr.GatewayNginx}, ratio{"gateway/direct", rr.GatewayDirect})
		}
		b.WriteString("\n  median of the rounds:")
		writeRatios(b, " ", ratio{"gateway/nginx", x.GatewayNginxMedian}, ratio{"gateway/direct", x.GatewayDirectMedian})
		writeRatios(b, "; ", ratio{"CPU per request gateway/nginx", x.GatewayNginxCPUMedian})
		b.WriteString("\n")
	}
	if g := find(sc.Targets, TargetGateway); g != nil && g.Runtime != nil {
		fmt.Fprintf(b, "gateway GC: %.0f cycles in %s\n", g.Runtime.GCCycles, duration)
	}
	return nil
}

// ratio is one named ratio of a table's ratio lines.
type ratio struct {
	name  string
	value float64
}

// writeRatios writes sep, the name and the value of each ratio above 0.
func writeRatios(b *strings.Builder, sep string, ratios ...ratio) {
	for _, r := range ratios {
		if r.value > 0 {
			fmt.Fprintf(b, "%s%s %.2f×", sep, r.name, r.value)
		}
	}
}

func medianNote(rounds int) string {
	if rounds > 1 {
		return ", median run of each target shown"
	}
	return ""
}

func cpuPerReq(us float64) string {
	if us <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.1fµs", us)
}

// micros formats microseconds as µs below 1 ms, else ms.
func micros(us float64) string {
	if us < 1000 {
		return fmt.Sprintf("%.0fµs", us)
	}
	return fmt.Sprintf("%.2fms", us/1000)
}

func signedMicros(us float64) string {
	if us < 0 {
		return "-" + micros(-us)
	}
	return "+" + micros(us)
}

// thousands formats a rate with thousands separators.
func thousands(x float64) string { return harness.Thousands(int64(math.Round(x))) }

func humanBytes(n int64) string {
	if n <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// WriteJSON writes the report to path atomically (via path.tmp),
// creating its directory.
func (r *ProxyReport) WriteJSON(path string) error { return harness.WriteJSONFile(path, r) }

// readMachine describes this machine (see [harness.ReadHost]).
func readMachine() Machine {
	h := harness.ReadHost()
	return Machine{NProc: h.CPUs, CPUModel: h.CPUModel, MemTotal: h.MemBytes, Kernel: h.Kernel, OS: h.OS, Arch: h.Arch, GoVersion: h.GoVersion}
}

// promValues reads unlabelled samples of the named metrics from a
// Prometheus text exposition.
func promValues(text string, names ...string) map[string]float64 {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || !want[f[0]] {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}

// The proxy targets the checks compare with.
const (
	targetGetRatio   = 1.0 // default GET req/s, gateway/nginx
	targetOtherRatio = 0.9 // POST 4 KiB and GET 64 KiB req/s, gateway/nginx
	targetAllocs     = 10  // gateway allocations per request, default GET
)

// checks compares the figures with the proxy targets: throughput against
// nginx's (median of the per-round ratios), the gateway's CPU and
// allocations per request on the default GET, and the p50 it adds on one
// connection against nginx's.
func (r *ProxyReport) checks() []ProxyCheck {
	var out []ProxyCheck
	throughput := func(scenario, what string, target float64) {
		c := ProxyCheck{What: what, Scenario: scenario, Target: fmt.Sprintf("≥ %.1f× nginx's req/s", target)}
		s := r.scenario(scenario)
		switch {
		case s == nil:
			c.Unmeasured = "scenario " + scenario + " not run"
		case s.Ratios.GatewayNginxMedian <= 0:
			c.Unmeasured = "no gateway and nginx runs to compare"
		default:
			c.Value = s.Ratios.GatewayNginxMedian
			c.Met = c.Value >= target
			c.Figures = fmt.Sprintf("gateway/nginx %.2f×%s", c.Value, roundsText(len(s.Ratios.PerRound)))
		}
		out = append(out, c)
	}
	throughput(ScenarioGet, "default GET throughput", targetGetRatio)
	throughput(ScenarioPost4K, "POST 4 KiB throughput", targetOtherRatio)
	throughput(ScenarioGet64K, "GET 64 KiB throughput", targetOtherRatio)

	cpu := ProxyCheck{What: "gateway CPU per request", Scenario: ScenarioGet, Target: "≤ nginx's"}
	allocs := ProxyCheck{What: "gateway allocations per request", Scenario: ScenarioGet, Target: fmt.Sprintf("≤ %d", targetAllocs)}
	if s := r.scenario(ScenarioGet); s == nil {
		cpu.Unmeasured, allocs.Unmeasured = "scenario get not run", "scenario get not run"
	} else {
		g, n := find(s.Targets, TargetGateway), find(s.Targets, TargetNginx)
		switch {
		case g == nil || n == nil || s.Ratios.GatewayNginxCPUMedian <= 0:
			cpu.Unmeasured = "no gateway and nginx CPU figures to compare"
		default:
			cpu.Value = s.Ratios.GatewayNginxCPUMedian
			cpu.Met = cpu.Value <= 1
			runs := ""
			if len(s.Ratios.PerRound) > 1 {
				runs = " in the median runs"
			}
			cpu.Figures = fmt.Sprintf("gateway/nginx %.2f×%s (%.1fµs vs nginx %.1fµs%s)",
				cpu.Value, roundsText(len(s.Ratios.PerRound)), g.CPU.ProxyUSPerReq, n.CPU.ProxyUSPerReq, runs)
		}
		switch {
		case g == nil || g.Runtime == nil:
			allocs.Unmeasured = "no gateway runtime figures"
		default:
			allocs.Value = g.Runtime.MallocsPerReq
			allocs.Met = allocs.Value <= targetAllocs
			allocs.Figures = fmt.Sprintf("%.1f (%s bytes)", allocs.Value, thousands(g.Runtime.AllocBytesPerReq))
		}
	}
	out = append(out, cpu, allocs)

	lat := ProxyCheck{What: "added p50 at one connection", Scenario: ScenarioLatency1, Target: "≤ nginx's"}
	s := r.scenario(ScenarioLatency1)
	if s == nil {
		lat.Unmeasured = "scenario latency1 not run"
	} else {
		g, okG := s.AddedP50US[TargetGateway]
		n, okN := s.AddedP50US[TargetNginx]
		if !okG || !okN {
			lat.Unmeasured = "no direct, gateway and nginx runs to compare"
		} else {
			lat.Value = g
			lat.Met = g <= n
			lat.Figures = fmt.Sprintf("%s vs nginx %s", signedMicros(g), signedMicros(n))
		}
	}
	return append(out, lat)
}

// roundsText names the rounds a median was taken over ("" for one).
func roundsText(n int) string {
	if n > 1 {
		return fmt.Sprintf(", median of %d rounds", n)
	}
	return ""
}

// String renders the check for the table.
func (c ProxyCheck) String() string {
	if c.Unmeasured != "" {
		return fmt.Sprintf("%s %s (%s): not measured, %s", c.What, c.Target, c.Scenario, c.Unmeasured)
	}
	v := "not met"
	if c.Met {
		v = "met"
	}
	return fmt.Sprintf("%s %s (%s): %s — %s", c.What, c.Target, c.Scenario, c.Figures, v)
}

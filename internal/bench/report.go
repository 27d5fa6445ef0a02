package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
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
	Schema  string    `json:"schema"`
	Date    time.Time `json:"date"`
	Command string    `json:"command"`
	Version string    `json:"zkgate_version"`
	Machine Machine   `json:"machine"`
	Tools   Tools     `json:"tools"`
	Setup   Setup     `json:"setup"`
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
	// Profile is the gateway's CPU profile pass, when one was taken.
	Profile *ProfileRun `json:"profile,omitempty"`
	// Notes are skipped targets and warnings.
	Notes []string `json:"notes,omitempty"`
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
}

// TargetResult is one measured run of one target.
type TargetResult struct {
	Name  string    `json:"name"`
	Round int       `json:"round"`
	URL   string    `json:"url"`
	RPS   float64   `json:"rps"`
	Wrk   WrkResult `json:"wrk"`
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
	// With several rounds, the ratios within each round (targets measured
	// back to back share the machine's state) and their medians: less
	// sensitive to a noisy machine than the ratios of the median runs.
	PerRound            []RoundRatios `json:"per_round,omitempty"`
	GatewayNginxMedian  float64       `json:"gateway_nginx_rps_round_median,omitempty"`
	GatewayDirectMedian float64       `json:"gateway_direct_rps_round_median,omitempty"`
}

// RoundRatios are the req/s ratios of one round.
type RoundRatios struct {
	Round         int     `json:"round"`
	GatewayNginx  float64 `json:"gateway_nginx_rps,omitempty"`
	GatewayDirect float64 `json:"gateway_direct_rps,omitempty"`
}

// ProfileRun is the extra gateway pass taken with the CPU profiler on.
type ProfileRun struct {
	File string  `json:"file"`
	RPS  float64 `json:"rps"`
	Hint string  `json:"hint"`
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

// summarize fills Targets, Ratios and AddedP50US from Runs.
func (r *ProxyReport) summarize() {
	r.Targets = medianByTarget(r.Runs)
	get := func(name string) *TargetResult {
		for i := range r.Targets {
			if r.Targets[i].Name == name {
				return &r.Targets[i]
			}
		}
		return nil
	}
	ratio := func(a, b *TargetResult) float64 {
		if a == nil || b == nil || b.RPS == 0 {
			return 0
		}
		return round(a.RPS/b.RPS, 3)
	}
	d, g, n, b := get(TargetDirect), get(TargetGateway), get(TargetNginx), get(TargetBare)
	r.Ratios = Ratios{
		GatewayNginx: ratio(g, n), GatewayDirect: ratio(g, d), NginxDirect: ratio(n, d),
		GatewayBare: ratio(g, b), BareNginx: ratio(b, n),
	}
	r.roundRatios()
	r.AddedP50US = nil
	if d != nil {
		for _, t := range []*TargetResult{g, n, b} {
			if t == nil {
				continue
			}
			if r.AddedP50US == nil {
				r.AddedP50US = map[string]float64{}
			}
			r.AddedP50US[t.Name] = t.Wrk.LatencyUS.P50 - d.Wrk.LatencyUS.P50
		}
	}
}

// roundRatios fills the per-round ratios when there were several rounds.
func (r *ProxyReport) roundRatios() {
	rps := map[int]map[string]float64{}
	var rounds []int
	for _, t := range r.Runs {
		if rps[t.Round] == nil {
			rps[t.Round] = map[string]float64{}
			rounds = append(rounds, t.Round)
		}
		rps[t.Round][t.Name] = t.RPS
	}
	if len(rounds) < 2 {
		return
	}
	ratio := func(m map[string]float64, a, b string) float64 {
		if m[a] == 0 || m[b] == 0 {
			return 0
		}
		return round(m[a]/m[b], 3)
	}
	var gn, gd []float64
	for _, n := range rounds {
		rr := RoundRatios{Round: n, GatewayNginx: ratio(rps[n], TargetGateway, TargetNginx), GatewayDirect: ratio(rps[n], TargetGateway, TargetDirect)}
		r.Ratios.PerRound = append(r.Ratios.PerRound, rr)
		if rr.GatewayNginx > 0 {
			gn = append(gn, rr.GatewayNginx)
		}
		if rr.GatewayDirect > 0 {
			gd = append(gd, rr.GatewayDirect)
		}
	}
	r.Ratios.GatewayNginxMedian, r.Ratios.GatewayDirectMedian = median(gn), median(gd)
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

// WriteTable prints the human summary.
func (r *ProxyReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	s := r.Setup
	fmt.Fprintf(&b, "zkgate bench proxy — %s\n", r.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "machine: %d CPUs (%s), %s RAM, %s/%s; wrk, proxy and backend share the CPUs\n",
		r.Machine.NProc, r.Machine.CPUModel, humanBytes(r.Machine.MemTotal), r.Machine.OS, r.Machine.Arch)
	if len(s.GatewayEnv) > 0 {
		fmt.Fprintf(&b, "gateway environment: %s\n", strings.Join(s.GatewayEnv, " "))
	}
	fmt.Fprintf(&b, "load: wrk -t%d -c%d -d%s (after a %s warm-up), GET, %d-byte body, keep-alive; %d round(s)%s\n\n",
		s.Threads, s.Connections, s.DurationText, s.WarmupText, s.BodyBytes, s.Rounds, medianNote(s.Rounds))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s\tp50\tp90\tp99\tmax\t+p50 vs direct\terrors\tproxy CPU/req\tbackend CPU/req\twrk CPU/req\tother CPU\t")
	for _, t := range r.Targets {
		added := "—"
		if v, ok := r.AddedP50US[t.Name]; ok {
			added = signedMicros(v)
		}
		proxyCPU := "—"
		if t.CPU.ProxyUSPerReq > 0 {
			proxyCPU = fmt.Sprintf("%.1fµs", t.CPU.ProxyUSPerReq)
		}
		other := "—"
		if t.CPU.AvailableCPUSec > 0 && t.CPU.Unavailable == "" {
			other = fmt.Sprintf("%.0f%%", 100*max(t.CPU.OtherSec, 0)/t.CPU.AvailableCPUSec)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n",
			t.Name, thousands(t.RPS), micros(t.Wrk.LatencyUS.P50), micros(t.Wrk.LatencyUS.P90),
			micros(t.Wrk.LatencyUS.P99), micros(t.Wrk.LatencyUS.Max), added, t.Wrk.Errors.Total(),
			proxyCPU, cpuPerReq(t.CPU.BackendUSPerReq), cpuPerReq(t.CPU.WrkUSPerReq), other)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\n")
	if x := r.Ratios; x.GatewayNginx > 0 || x.GatewayDirect > 0 {
		b.WriteString("ratios (req/s):")
		if x.GatewayNginx > 0 {
			fmt.Fprintf(&b, "  gateway/nginx %.2f×", x.GatewayNginx)
		}
		if x.GatewayDirect > 0 {
			fmt.Fprintf(&b, "  gateway/direct %.2f×", x.GatewayDirect)
		}
		if x.NginxDirect > 0 {
			fmt.Fprintf(&b, "  nginx/direct %.2f×", x.NginxDirect)
		}
		if x.GatewayBare > 0 {
			fmt.Fprintf(&b, "  gateway/httputil %.2f×", x.GatewayBare)
		}
		if x.BareNginx > 0 {
			fmt.Fprintf(&b, "  httputil/nginx %.2f×", x.BareNginx)
		}
		b.WriteString("\n")
	}
	if x := r.Ratios; len(x.PerRound) > 0 && (x.GatewayNginxMedian > 0 || x.GatewayDirectMedian > 0) {
		b.WriteString("ratios within each round:")
		for _, rr := range x.PerRound {
			fmt.Fprintf(&b, "  #%d", rr.Round)
			if rr.GatewayNginx > 0 {
				fmt.Fprintf(&b, " gateway/nginx %.2f×", rr.GatewayNginx)
			}
			if rr.GatewayDirect > 0 {
				fmt.Fprintf(&b, " gateway/direct %.2f×", rr.GatewayDirect)
			}
		}
		b.WriteString("\n  median of the rounds:")
		if x.GatewayNginxMedian > 0 {
			fmt.Fprintf(&b, " gateway/nginx %.2f×", x.GatewayNginxMedian)
		}
		if x.GatewayDirectMedian > 0 {
			fmt.Fprintf(&b, " gateway/direct %.2f×", x.GatewayDirectMedian)
		}
		b.WriteString("\n")
	}
	for _, t := range r.Targets {
		if t.Runtime != nil {
			fmt.Fprintf(&b, "gateway Go runtime: %.1f allocations and %.0f bytes allocated per request, %.0f GC cycles in %s\n",
				t.Runtime.MallocsPerReq, t.Runtime.AllocBytesPerReq, t.Runtime.GCCycles, s.DurationText)
		}
	}
	if p := r.Profile; p != nil {
		fmt.Fprintf(&b, "gateway CPU profile: %s (profiled pass %s req/s); %s\n", p.File, thousands(p.RPS), p.Hint)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
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
func thousands(x float64) string {
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func humanBytes(n int64) string {
	if n <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// WriteJSON writes the report to path atomically (via path.tmp),
// creating its directory.
func (r *ProxyReport) WriteJSON(path string) error { return writeJSONFile(path, r) }

// DefaultJSONPath is where results go unless --json says otherwise.
func DefaultJSONPath(now time.Time) string { return ResultPath("proxy", now) }

// readMachine describes this machine from /proc (fields stay empty where
// /proc is missing).
func readMachine() Machine {
	m := Machine{NProc: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemTotal = memTotal(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel(cpuinfo string) string {
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// memTotal returns MemTotal of /proc/meminfo in bytes.
func memTotal(meminfo string) int64 {
	sc := bufio.NewScanner(strings.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
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

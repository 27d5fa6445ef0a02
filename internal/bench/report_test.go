package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/harness/harnesstest"
)

func run(name string, round int, rps, p50 float64) TargetResult {
	return TargetResult{Name: name, Round: round, RPS: rps, Wrk: WrkResult{Requests: int64(rps * 10), DurationUS: 10e6, LatencyUS: Latency{P50: p50, P99: 2 * p50}}}
}

func TestSummarize(t *testing.T) {
	r := &ProxyReport{Runs: []TargetResult{
		run(TargetDirect, 1, 100000, 500), run(TargetGateway, 1, 30000, 1900), run(TargetNginx, 1, 50000, 1200),
		run(TargetDirect, 2, 90000, 600), run(TargetGateway, 2, 36000, 1700), run(TargetNginx, 2, 52000, 1150),
		run(TargetDirect, 3, 95000, 550), run(TargetGateway, 3, 33000, 1800), run(TargetNginx, 3, 60000, 1000),
	}}
	r.summarize()
	if len(r.Targets) != 3 || r.Targets[0].Name != TargetDirect || r.Targets[1].Name != TargetGateway || r.Targets[2].Name != TargetNginx {
		t.Fatalf("targets %+v", r.Targets)
	}
	if r.Targets[0].RPS != 95000 || r.Targets[1].RPS != 33000 || r.Targets[2].RPS != 52000 {
		t.Fatalf("not the median runs: %v %v %v", r.Targets[0].RPS, r.Targets[1].RPS, r.Targets[2].RPS)
	}
	want := Ratios{
		GatewayNginx: 0.635, GatewayDirect: 0.347, NginxDirect: 0.547,
		PerRound: []RoundRatios{
			{Round: 1, GatewayNginx: 0.6, GatewayDirect: 0.3},
			{Round: 2, GatewayNginx: 0.692, GatewayDirect: 0.4},
			{Round: 3, GatewayNginx: 0.55, GatewayDirect: 0.347},
		},
		GatewayNginxMedian: 0.6, GatewayDirectMedian: 0.347,
	}
	if !reflect.DeepEqual(r.Ratios, want) {
		t.Errorf("ratios %+v, want %+v", r.Ratios, want)
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "median of the rounds: gateway/nginx 0.60× gateway/direct 0.35×") {
		t.Errorf("table lacks the round medians:\n%s", b.String())
	}
	if r.AddedP50US[TargetGateway] != 1250 || r.AddedP50US[TargetNginx] != 600 {
		t.Errorf("added p50 %v", r.AddedP50US)
	}
}

func TestSummarizeWithoutNginx(t *testing.T) {
	r := &ProxyReport{Runs: []TargetResult{run(TargetDirect, 1, 1000, 100), run(TargetGateway, 1, 500, 300)}}
	r.summarize()
	if r.Ratios.GatewayNginx != 0 || r.Ratios.GatewayDirect != 0.5 || r.Ratios.PerRound != nil {
		t.Errorf("ratios %+v", r.Ratios)
	}
	r.Notes = []string{"nginx target skipped: nginx is not installed"}
	out := harnesstest.Table(t, r)
	harnesstest.Contains(t, "table", out, "gateway/direct 0.50×", "note: nginx target skipped", "+200µs")
	if strings.Contains(out, "gateway/nginx") {
		t.Errorf("table has a gateway/nginx ratio without nginx:\n%s", out)
	}
}

func TestFailed(t *testing.T) {
	ok := run(TargetGateway, 1, 1000, 100)
	ok.Wrk.Errors.Read = 5 // 0.05%
	bad := run(TargetGateway, 1, 1000, 100)
	bad.Wrk.Errors.Status = 500
	if (&ProxyReport{Runs: []TargetResult{ok}}).Failed() {
		t.Error("0.05% errors failed the run")
	}
	if !(&ProxyReport{Runs: []TargetResult{ok, bad}}).Failed() {
		t.Error("5% errors did not fail the run")
	}
}

func TestWriteJSON(t *testing.T) {
	r := &ProxyReport{RunHeader: RunHeader{Schema: ProxyReportSchema, Date: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}, Runs: []TargetResult{run(TargetDirect, 1, 1000, 100)}}
	r.summarize()
	path := filepath.Join(t.TempDir(), "sub", "proxy.json")
	var back ProxyReport
	if err := json.Unmarshal(harnesstest.JSONFile(t, r, path), &back); err != nil {
		t.Fatal(err)
	}
	if back.Schema != ProxyReportSchema || len(back.Targets) != 1 || back.Targets[0].RPS != 1000 {
		t.Errorf("round trip: %+v", back)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Error("temporary file left behind")
	}
	if got := ResultPath("proxy", r.Date); got != filepath.Join("bench-results", "proxy-2025-01-02-030405.json") {
		t.Errorf("ResultPath = %s", got)
	}
}

func TestMedian(t *testing.T) {
	if median(nil) != 0 || median([]float64{3, 1, 2}) != 2 || median([]float64{4, 1, 2, 3}) != 2.5 {
		t.Error("median")
	}
}

func TestFormatting(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 57500.4: "57,500", 1234567: "1,234,567"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %s, want %s", in, got, want)
		}
	}
	if micros(850) != "850µs" || micros(1234) != "1.23ms" || signedMicros(-120) != "-120µs" {
		t.Errorf("micros: %s %s %s", micros(850), micros(1234), signedMicros(-120))
	}
}

func TestPromValues(t *testing.T) {
	text := "# HELP go_memstats_mallocs_total Total number of mallocs.\n# TYPE go_memstats_mallocs_total counter\n" +
		"go_memstats_mallocs_total 1.234e+06\ngo_gc_duration_seconds{quantile=\"0.5\"} 0.0001\ngo_gc_duration_seconds_count 42\n"
	got := promValues(text, "go_memstats_mallocs_total", "go_gc_duration_seconds_count", "absent")
	if got["go_memstats_mallocs_total"] != 1.234e6 || got["go_gc_duration_seconds_count"] != 42 || len(got) != 2 {
		t.Errorf("promValues = %v", got)
	}
}

func TestStatCPU(t *testing.T) {
	// The command name may contain spaces and parentheses.
	line := "4242 (nginx: worker (x)) S 4240 4240 4240 0 -1 4194624 100 0 0 0 250 130 0 0 20 0 1 0 1000 1000000 200 18446744073709551615"
	pgrp, cpu, err := statCPU(line)
	if err != nil {
		t.Fatal(err)
	}
	if pgrp != 4240 || cpu != 3800*time.Millisecond {
		t.Errorf("pgrp %d cpu %v", pgrp, cpu)
	}
	if _, _, err := statCPU("4242 (x) S 1"); err == nil {
		t.Error("no error for a short line")
	}
}

func TestGroupCPUSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	pgrp, _, err := statCPU(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := groupCPU(pgrp); err != nil {
		t.Fatal(err)
	}
}

func TestGatewayYAMLIsValid(t *testing.T) {
	y, err := gatewayYAML([]string{"127.0.0.1:2181", "127.0.0.1:2182"}, "127.0.0.1:4100", "127.0.0.1:4101")
	if err != nil {
		t.Fatal(err)
	}
	cfg := harnesstest.GatewayConfig(t, y)
	if len(cfg.ZooKeeper.Servers) != 2 || cfg.Gateway.Listen != "127.0.0.1:4100" || cfg.Gateway.AdminListen != "127.0.0.1:4101" {
		t.Errorf("parsed %+v", cfg)
	}
	rt := cfg.Gateway.Routes
	if len(rt) != 1 || rt[0].Prefix != "/bench/" || rt[0].Service != "bench" || !rt[0].StripPrefix {
		t.Errorf("routes %+v", rt)
	}
}

func TestProxyOptionsDefaults(t *testing.T) {
	o := ProxyOptions{Binary: "/bin/zkgate"}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if o.Load.Threads != 2 || o.Load.Connections != 64 || o.Load.Duration != 10*time.Second || o.Rounds != 1 || o.BodySize != 64 || o.Warmup != 0 {
		t.Errorf("defaults %+v", o)
	}
	for _, bad := range []ProxyOptions{
		{},
		{Binary: "x", Load: Load{Threads: 4, Connections: 2}},
		{Binary: "x", Load: Load{Duration: 500 * time.Millisecond}},
		{Binary: "x", Rounds: 50},
		{Binary: "x", Warmup: -time.Second},
	} {
		if err := bad.defaults(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	got, err := parseProcStat("cpu  72164 10 33437 224894 442 5 8511 41 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
	if err != nil {
		t.Fatal(err)
	}
	want := sysCPU{Tasks: 105611 * 10 * time.Millisecond, Interrupts: 8516 * 10 * time.Millisecond, Steal: 410 * time.Millisecond}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := parseProcStat("intr 1 2 3"); err == nil {
		t.Error("no error without a cpu line")
	}
}

// runCPU is a run with the proxy's CPU per request and, for the gateway,
// its allocations per request.
func runCPU(scenario, name string, round int, rps, p50, proxyUS, mallocs float64) TargetResult {
	t := run(name, round, rps, p50)
	t.Scenario = scenario
	t.Wrk.Bytes = t.Wrk.Requests * 200
	t.CPU = CPUUse{ProxyUSPerReq: proxyUS, BackendUSPerReq: 20, WrkUSPerReq: 10, AvailableCPUSec: 20}
	if name == TargetGateway {
		t.Runtime = &RuntimeUse{MallocsPerReq: mallocs, AllocBytesPerReq: 7100, GCCycles: 230}
	}
	return t
}

// scenarioReport has every scenario, three rounds of get and one of the
// others.
func scenarioReport() *ProxyReport {
	sc := func(name string) Scenario {
		s, err := newScenario(name, Load{Threads: 2, Connections: 64}, 64)
		if err != nil {
			panic(err)
		}
		return s
	}
	r := &ProxyReport{Setup: Setup{DurationText: "10s", WarmupText: "2s", Rounds: 3, GatewaySet: []string{"balancer=round_robin"}}}
	get := ScenarioResult{Scenario: sc(ScenarioGet)}
	for i, x := range []struct{ g, n, gCPU, nCPU float64 }{{30000, 50000, 48, 20}, {36000, 40000, 44, 22}, {33000, 60000, 50, 19}} {
		get.Runs = append(get.Runs,
			runCPU(ScenarioGet, TargetDirect, i+1, 90000, 500, 0, 0),
			runCPU(ScenarioGet, TargetGateway, i+1, x.g, 1900, x.gCPU, 72),
			runCPU(ScenarioGet, TargetNginx, i+1, x.n, 1200, x.nCPU, 0))
	}
	post := ScenarioResult{Scenario: sc(ScenarioPost4K), Runs: []TargetResult{
		runCPU(ScenarioPost4K, TargetDirect, 1, 80000, 600, 0, 0),
		runCPU(ScenarioPost4K, TargetGateway, 1, 45000, 1500, 30, 9),
		runCPU(ScenarioPost4K, TargetNginx, 1, 50000, 1300, 25, 0),
	}}
	big := ScenarioResult{Scenario: sc(ScenarioGet64K), Runs: []TargetResult{
		runCPU(ScenarioGet64K, TargetDirect, 1, 30000, 1300, 0, 0),
		runCPU(ScenarioGet64K, TargetGateway, 1, 8000, 8000, 90, 70),
		runCPU(ScenarioGet64K, TargetNginx, 1, 10000, 6000, 70, 0),
	}}
	lat := ScenarioResult{Scenario: sc(ScenarioLatency1), Runs: []TargetResult{
		runCPU(ScenarioLatency1, TargetDirect, 1, 20000, 42, 0, 0),
		runCPU(ScenarioLatency1, TargetGateway, 1, 7000, 110, 100, 72),
		runCPU(ScenarioLatency1, TargetNginx, 1, 7500, 123, 47, 0),
	}}
	r.Scenarios = []ScenarioResult{get, post, big, lat}
	return r
}

func TestSummarizeScenarios(t *testing.T) {
	r := scenarioReport()
	r.summarize()
	get := r.scenario(ScenarioGet)
	// Per-round req/s ratios 0.6, 0.9, 0.55; CPU ratios 2.4, 2, 2.632.
	// The median runs: direct round 2, gateway round 3, nginx round 1.
	wantGet := Ratios{
		GatewayNginx: 0.66, GatewayDirect: 0.367, NginxDirect: 0.556, GatewayNginxCPU: 2.5, // the median runs: 50 / 20
		PerRound: []RoundRatios{
			{Round: 1, GatewayNginx: 0.6, GatewayDirect: 0.333, GatewayNginxCPU: 2.4},
			{Round: 2, GatewayNginx: 0.9, GatewayDirect: 0.4, GatewayNginxCPU: 2},
			{Round: 3, GatewayNginx: 0.55, GatewayDirect: 0.367, GatewayNginxCPU: 2.632},
		},
		GatewayNginxMedian: 0.6, GatewayDirectMedian: 0.367, GatewayNginxCPUMedian: 2.4,
	}
	if !reflect.DeepEqual(get.Ratios, wantGet) {
		t.Errorf("get ratios %+v\nwant %+v", get.Ratios, wantGet)
	}
	// The top level is the get scenario's, as before scenarios.
	if !reflect.DeepEqual(r.Ratios, wantGet) || !reflect.DeepEqual(r.Targets, get.Targets) || len(r.Runs) != 9 || r.AddedP50US[TargetGateway] != 1400 {
		t.Errorf("top level is not the get scenario: %+v %+v %d %v", r.Ratios, r.Targets, len(r.Runs), r.AddedP50US)
	}
	// One round: a scenario still has its per-round ratio and median.
	post := r.scenario(ScenarioPost4K)
	if len(post.Ratios.PerRound) != 1 || post.Ratios.GatewayNginxMedian != 0.9 || post.Ratios.GatewayNginxCPUMedian != 1.2 {
		t.Errorf("post4k ratios %+v", post.Ratios)
	}
	if got := len(r.allRuns()); got != 18 {
		t.Errorf("allRuns: %d runs, want 18", got)
	}

	type check struct {
		scenario string
		value    float64
		met      bool
		figures  string
	}
	want := []check{
		{ScenarioGet, 0.6, false, "gateway/nginx 0.60×, median of 3 rounds"},
		{ScenarioPost4K, 0.9, true, "gateway/nginx 0.90×"},
		{ScenarioGet64K, 0.8, false, "gateway/nginx 0.80×"},
		{ScenarioGet, 2.4, false, "gateway/nginx 2.40×, median of 3 rounds (50.0µs vs nginx 20.0µs in the median runs)"},
		{ScenarioGet, 72, false, "72.0 (7,100 bytes)"},
		{ScenarioLatency1, 68, true, "+68µs vs nginx +81µs"},
	}
	if len(r.Checks) != len(want) {
		t.Fatalf("checks %+v", r.Checks)
	}
	for i, c := range r.Checks {
		if got := (check{c.Scenario, c.Value, c.Met, c.Figures}); got != want[i] || c.Unmeasured != "" {
			t.Errorf("check %d (%s): %+v, want %+v", i, c.What, got, want[i])
		}
	}

	out := harnesstest.Table(t, r)
	harnesstest.Contains(t, "table", out,
		"gateway configuration: balancer=round_robin\n",
		"\nget: GET, 64-byte response, wrk -t2 -c64\n",
		"\npost4k: POST with a 4 KiB body, 64-byte response, wrk -t2 -c64\n",
		"\nget64k: GET, 64 KiB response, wrk -t2 -c64\n",
		"\nlatency1: GET, 64-byte response, wrk -t1 -c1 (one connection)\n",
		"+p50 vs direct  errors  proxy CPU  backend CPU  wrk CPU  other CPU  allocs  bytes",
		"median of the rounds: gateway/nginx 0.60× gateway/direct 0.37×; CPU per request gateway/nginx 2.40×\n",
		"ratios (req/s):  gateway/nginx 0.90×  gateway/direct 0.56×  nginx/direct 0.62×; CPU per request gateway/nginx 1.20×\n",
		"gateway GC: 230 cycles in 10s\n",
		"\ntargets:\n",
		"  default GET throughput ≥ 1.0× nginx's req/s (get): gateway/nginx 0.60×, median of 3 rounds — not met\n",
		"  POST 4 KiB throughput ≥ 0.9× nginx's req/s (post4k): gateway/nginx 0.90× — met\n",
		"  GET 64 KiB throughput ≥ 0.9× nginx's req/s (get64k): gateway/nginx 0.80× — not met\n",
		"  gateway CPU per request ≤ nginx's (get): gateway/nginx 2.40×, median of 3 rounds (50.0µs vs nginx 20.0µs in the median runs) — not met\n",
		"ratios (req/s):  gateway/nginx 0.66×  gateway/direct 0.37×  nginx/direct 0.56×; CPU per request gateway/nginx 2.50×\n",
		"  gateway allocations per request ≤ 10 (get): 72.0 (7,100 bytes) — not met\n",
		"  added p50 at one connection ≤ nginx's (latency1): +68µs vs nginx +81µs — met\n",
	)
	// The gateway's row has its allocations; one round shows no per-round
	// line.
	if !regexp.MustCompile(`(?m)^ +gateway +33,000 .* 50\.0µs +20\.0µs +10\.0µs +0% +72\.0 +7,100$`).MatchString(out) {
		t.Errorf("gateway row of get:\n%s", out)
	}
	if strings.Count(out, "ratios within each round") != 1 {
		t.Errorf("per-round lines for single rounds:\n%s", out)
	}

	// JSON: the scenarios with their per-round ratios, the checks.
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	scs := back["scenarios"].([]any)
	if len(scs) != 4 {
		t.Fatalf("%d scenarios in JSON", len(scs))
	}
	s3 := scs[2].(map[string]any)
	if s3["name"] != "get64k" || s3["response_body_bytes"] != 65536.0 || s3["query"] != "size=65536" || s3["threads"] != 2.0 {
		t.Errorf("get64k in JSON: %v", s3)
	}
	rr := s3["ratios"].(map[string]any)
	if rr["gateway_nginx_rps_round_median"] != 0.8 || len(rr["per_round"].([]any)) != 1 {
		t.Errorf("get64k ratios in JSON: %v", rr)
	}
	if len(back["checks"].([]any)) != 6 || back["ratios"].(map[string]any)["gateway_nginx_rps_round_median"] != 0.6 {
		t.Errorf("checks or top-level ratios in JSON: %v %v", back["checks"], back["ratios"])
	}
}

func TestChecksUnmeasured(t *testing.T) {
	// Only latency1, without nginx.
	sc, _ := newScenario(ScenarioLatency1, Load{}, 64)
	r := &ProxyReport{Scenarios: []ScenarioResult{{Scenario: sc, Runs: []TargetResult{
		runCPU(ScenarioLatency1, TargetDirect, 1, 20000, 42, 0, 0),
		runCPU(ScenarioLatency1, TargetGateway, 1, 7000, 110, 100, 72),
	}}}}
	r.summarize()
	if len(r.Targets) != 0 || len(r.Runs) != 0 || r.Targets == nil || r.Runs == nil {
		t.Errorf("top level without get: %+v %+v", r.Targets, r.Runs)
	}
	for _, c := range r.Checks {
		if c.Met || c.Unmeasured == "" {
			t.Errorf("%s: %+v, want unmeasured", c.What, c)
		}
	}
	out := harnesstest.Table(t, r)
	harnesstest.Contains(t, "table", out,
		"default GET throughput ≥ 1.0× nginx's req/s (get): not measured, scenario get not run\n",
		"added p50 at one connection ≤ nginx's (latency1): not measured, no direct, gateway and nginx runs to compare\n",
	)
	if strings.Contains(out, "gateway/nginx") {
		t.Errorf("table has a gateway/nginx ratio without nginx:\n%s", out)
	}
}

func TestRunNotes(t *testing.T) {
	sc, _ := newScenario(ScenarioGet64K, Load{Threads: 2, Connections: 64}, 64)
	ok := runCPU(ScenarioGet64K, TargetDirect, 1, 1000, 100, 0, 0)
	ok.Wrk.Bytes = ok.Wrk.Requests * 65700
	short := runCPU(ScenarioGet64K, TargetGateway, 2, 1000, 100, 0, 0) // 200 bytes per response
	busy := ok
	busy.Name, busy.CPU.OtherSec = TargetNginx, 5
	failed := ok
	failed.Name, failed.Wrk.Errors.Status = TargetBare, 3
	notes := runNotes([]ScenarioResult{{Scenario: sc, Runs: []TargetResult{ok, short, busy, failed}}})
	want := []string{
		"get64k gateway (round 2): wrk read 200 bytes per response, less than the scenario's 65536-byte body",
		"get64k nginx (round 1): 5.0 of 20.0 CPU-seconds went to other processes",
		"get64k httputil (round 1): 3 errors in 10000 requests (connect 0, read 0, write 0, non-2xx 3, timeout 0)",
	}
	if len(notes) != len(want) {
		t.Fatalf("notes %q", notes)
	}
	for i, n := range notes {
		if !strings.HasPrefix(n, want[i]) {
			t.Errorf("note %d: %q, want it to start with %q", i, n, want[i])
		}
	}
	if (&ProxyReport{Scenarios: []ScenarioResult{{Scenario: sc, Runs: []TargetResult{ok, failed}}}}).Failed() {
		t.Error("0.03% errors failed the run")
	}
	bad := failed
	bad.Wrk.Errors.Status = 500
	if !(&ProxyReport{Scenarios: []ScenarioResult{{Scenario: sc, Runs: []TargetResult{ok, bad}}}}).Failed() {
		t.Error("5% errors in a scenario's run did not fail the report")
	}
}

func TestGatewayYAMLWithSet(t *testing.T) {
	y, err := gatewayYAML([]string{"127.0.0.1:2181"}, "127.0.0.1:4100", "127.0.0.1:4101", "balancer=round_robin", "retries=0", "dial_timeout=1500ms")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(y, "  shutdown_timeout: 5s\n  balancer: round_robin\n  retries: 0\n  dial_timeout: 1500ms\n  routes:\n") {
		t.Errorf("settings not in the gateway section:\n%s", y)
	}
	cfg := harnesstest.GatewayConfig(t, y)
	g := cfg.Gateway
	if g.Balancer != "round_robin" || g.Retries == nil || *g.Retries != 0 || g.DialTimeout != 1500*time.Millisecond || len(g.Routes) != 1 {
		t.Errorf("parsed %+v", g)
	}
	// Without settings the configuration is unchanged.
	plain, _ := gatewayYAML([]string{"127.0.0.1:2181"}, "127.0.0.1:4100", "127.0.0.1:4101")
	if !strings.Contains(plain, "  shutdown_timeout: 5s\n  routes:\n") {
		t.Errorf("plain configuration:\n%s", plain)
	}
	// A key the gateway does not know passes the bench's check and fails
	// the gateway's own (as engine=nethttp will until the key exists).
	y, err = gatewayYAML([]string{"127.0.0.1:2181"}, "127.0.0.1:4100", "127.0.0.1:4101", "no_such_key=x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse([]byte(y)); err == nil || !strings.Contains(err.Error(), "no_such_key") {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := gatewayYAML(nil, "a", "b", "listen=x"); err == nil {
		t.Error("gatewayYAML accepted a key the bench sets")
	}
}

func TestCheckGatewaySet(t *testing.T) {
	if err := CheckGatewaySet([]string{"engine=nethttp", "balancer=round_robin", "max_idle_conns_per_host=512", "dial_timeout=a=b"}); err != nil {
		t.Errorf("valid settings: %v", err)
	}
	for in, want := range map[string]string{
		"noequals":           "is not KEY=VALUE",
		"=x":                 "is not KEY=VALUE",
		"balancer=":          "is not KEY=VALUE",
		"Balancer=x":         "lower-case letters",
		"9lives=x":           "lower-case letters",
		"a.b=x":              "lower-case letters",
		"listen=127.0.0.1:1": "the bench sets gateway.listen itself",
		"routes=[]":          "the bench sets gateway.routes itself",
		"balancer=x\ny: z":   "one line",
	} {
		if err := CheckGatewaySet([]string{in}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", in, err, want)
		}
	}
	if err := CheckGatewaySet([]string{"retries=1", "retries=2"}); err == nil || !strings.Contains(err.Error(), "set twice") {
		t.Errorf("a key set twice: %v", err)
	}
}

func TestProxyOptionsScenariosAndSet(t *testing.T) {
	o := ProxyOptions{Binary: "/bin/zkgate"}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.Scenarios, AllScenarios) {
		t.Errorf("default scenarios %q", o.Scenarios)
	}
	o = ProxyOptions{Binary: "/bin/zkgate", Scenarios: []string{ScenarioLatency1, ScenarioGet}, GatewaySet: []string{"balancer=round_robin"}}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.Scenarios, []string{ScenarioGet, ScenarioLatency1}) {
		t.Errorf("scenarios %q, want run order", o.Scenarios)
	}
	for _, bad := range []ProxyOptions{
		{Binary: "x", Scenarios: []string{"nope"}},
		{Binary: "x", Scenarios: []string{ScenarioGet, ScenarioGet}},
		{Binary: "x", GatewaySet: []string{"id=x"}},
	} {
		if err := bad.defaults(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
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
	var b bytes.Buffer
	r.Notes = []string{"nginx target skipped: nginx is not installed"}
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"gateway/direct 0.50×", "note: nginx target skipped", "+200µs"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
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
	r := &ProxyReport{Schema: ProxyReportSchema, Date: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Runs: []TargetResult{run(TargetDirect, 1, 1000, 100)}}
	r.summarize()
	path := filepath.Join(t.TempDir(), "sub", "proxy.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back ProxyReport
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Schema != ProxyReportSchema || len(back.Targets) != 1 || back.Targets[0].RPS != 1000 {
		t.Errorf("round trip: %+v", back)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Error("temporary file left behind")
	}
	if got := DefaultJSONPath(r.Date); got != filepath.Join("bench-results", "proxy-2025-01-02-030405.json") {
		t.Errorf("DefaultJSONPath = %s", got)
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

func TestMachineParsing(t *testing.T) {
	cpuinfo := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got := cpuModel(cpuinfo); got != "AMD EPYC 7B13" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := memTotal("MemTotal:       24684084 kB\nMemFree: 1 kB\n"); got != 24684084*1024 {
		t.Errorf("memTotal = %d", got)
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
	cfg, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	if err := cfg.ValidateGateway(); err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
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

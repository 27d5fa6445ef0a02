package bench

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseScenarios(t *testing.T) {
	cases := map[string][]string{
		"get,post4k,get64k,latency1": AllScenarios,
		"latency1":                   {ScenarioLatency1},
		// Run order, whatever the order named; spaces are trimmed.
		" latency1 , get": {ScenarioGet, ScenarioLatency1},
		"get64k,post4k":   {ScenarioPost4K, ScenarioGet64K},
	}
	for in, want := range cases {
		got, err := ParseScenarios(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseScenarios(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":                   "empty scenario name",
		"get,":               "empty scenario name",
		"get,put":            `unknown scenario "put" (known: get, post4k, get64k, latency1)`,
		"GET":                `unknown scenario "GET"`,
		"get,get":            `scenario "get" named twice`,
		"latency1, latency1": "named twice",
	} {
		if _, err := ParseScenarios(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseScenarios(%q): error %v, want one containing %q", in, err, want)
		}
	}
}

func TestNewScenario(t *testing.T) {
	load := Load{Threads: 2, Connections: 64}
	want := map[string]Scenario{
		ScenarioGet:      {Name: "get", Load: load, Method: "GET", ResponseBytes: 64},
		ScenarioPost4K:   {Name: "post4k", Load: load, Method: "POST", RequestBytes: 4096, ResponseBytes: 64},
		ScenarioGet64K:   {Name: "get64k", Load: load, Method: "GET", ResponseBytes: 65536, Query: "size=65536"},
		ScenarioLatency1: {Name: "latency1", Load: Load{Threads: 1, Connections: 1}, Method: "GET", ResponseBytes: 64},
	}
	descr := map[string]string{
		ScenarioGet:      "GET, 64-byte response, wrk -t2 -c64",
		ScenarioPost4K:   "POST with a 4 KiB body, 64-byte response, wrk -t2 -c64",
		ScenarioGet64K:   "GET, 64 KiB response, wrk -t2 -c64",
		ScenarioLatency1: "GET, 64-byte response, wrk -t1 -c1 (one connection)",
	}
	for _, name := range AllScenarios {
		// The run's duration and timeout are not the scenario's.
		got, err := newScenario(name, Load{Threads: 2, Connections: 64, Duration: 10e9, Timeout: 2e9}, 64)
		if err != nil {
			t.Fatal(err)
		}
		if got != want[name] {
			t.Errorf("%s: %+v, want %+v", name, got, want[name])
		}
		if d := got.Describe(); d != descr[name] {
			t.Errorf("%s: Describe() = %q, want %q", name, d, descr[name])
		}
	}
	// With --size 65536 the backend's default body is already 64 KiB.
	if sc, _ := newScenario(ScenarioGet64K, load, 65536); sc.Query != "" || sc.ResponseBytes != 65536 {
		t.Errorf("get64k with --size 65536: %+v", sc)
	}
	if _, err := newScenario("nope", load, 64); err == nil {
		t.Error("no error for an unknown scenario")
	}
	if sizeText(1000) != "1000-byte" || sizeText(2<<20) != "2 MiB" {
		t.Errorf("sizeText: %s %s", sizeText(1000), sizeText(2<<20))
	}
}

func TestWrkScriptFor(t *testing.T) {
	get, _ := newScenario(ScenarioGet, Load{Threads: 2, Connections: 64}, 64)
	if got := wrkScriptFor(get); got != wrkScript {
		t.Errorf("a GET scenario's script is not the plain result script:\n%s", got)
	}
	post, _ := newScenario(ScenarioPost4K, Load{Threads: 2, Connections: 64}, 64)
	got := wrkScriptFor(post)
	for _, want := range []string{
		"wrk.method = \"POST\"\n",
		"wrk.body = string.rep(\"x\", 4096)\n",
		"wrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("POST script lacks %q:\n%s", want, got)
		}
	}
	// The request is set up before the result script's done().
	if !strings.HasSuffix(got, wrkScript) {
		t.Errorf("POST script does not end with the result script:\n%s", got)
	}

	// The runner writes each scenario's script once, in its directory.
	dir := t.TempDir()
	w, err := newWrkRunner(nil, "wrk", dir) // script() starts nothing
	if err != nil {
		t.Fatal(err)
	}
	p1, err := w.script(post)
	if err != nil {
		t.Fatal(err)
	}
	if p2, _ := w.script(post); p2 != p1 || !strings.HasPrefix(p1, dir) {
		t.Errorf("script paths %s, %s", p1, p2)
	}
	if data, err := os.ReadFile(p1); err != nil || string(data) != got {
		t.Errorf("script file: %v\n%s", err, data)
	}
}

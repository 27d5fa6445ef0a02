package bench

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// A real wrk 4.1 output with the script's line (latencies in µs).
const wrkOutput = `Running 10s test @ http://127.0.0.1:40001/bench/hello
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.12ms  402.11us  12.50ms   80.00%
    Req/Sec    28.91k     1.20k   31.00k    70.00%
  575123 requests in 10.00s, 74.59MB read
Requests/sec:  57500.12
Transfer/sec:      7.46MB
ZKGATE_WRK {"requests":575123,"duration_us":10001234,"bytes":78216728,"errors":{"connect":0,"read":2,"write":0,"status":1,"timeout":3},"latency_us":{"min":45,"mean":1120.4,"stdev":402.1,"p50":1050,"p90":1510,"p99":2705,"p999":5400,"max":12500}}
`

func TestParseWrkOutput(t *testing.T) {
	got, err := parseWrkOutput([]byte(wrkOutput))
	if err != nil {
		t.Fatal(err)
	}
	want := WrkResult{
		Requests: 575123, DurationUS: 10001234, Bytes: 78216728,
		Errors:    WrkErrors{Read: 2, Status: 1, Timeout: 3},
		LatencyUS: Latency{Min: 45, Mean: 1120.4, Stdev: 402.1, P50: 1050, P90: 1510, P99: 2705, P999: 5400, Max: 12500},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got.Errors.Total() != 6 {
		t.Errorf("Total() = %d, want 6", got.Errors.Total())
	}
	if rps := got.RPS(); rps < 57505 || rps > 57506 {
		t.Errorf("RPS() = %f, want about 57505.2", rps)
	}
}

func TestParseWrkOutputErrors(t *testing.T) {
	for name, out := range map[string]string{
		"no line":       "unable to connect to 127.0.0.1:1 Connection refused\n",
		"empty":         "",
		"bad json":      "ZKGATE_WRK {\"requests\":\n",
		"unknown field": `ZKGATE_WRK {"requests":1,"duration_us":1,"rps":3}` + "\n",
		"no duration":   `ZKGATE_WRK {"requests":1,"duration_us":0}` + "\n",
	} {
		if _, err := parseWrkOutput([]byte(out)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	_, err := parseWrkOutput([]byte("unable to connect to 127.0.0.1:1 Connection refused\nmore"))
	if err == nil || !strings.Contains(err.Error(), "unable to connect") {
		t.Errorf("error should quote wrk's first line, got %v", err)
	}
}

func TestWrkArgs(t *testing.T) {
	got := wrkArgs(Load{Threads: 2, Connections: 64, Timeout: 2 * time.Second}, 1500*time.Millisecond, "/tmp/r.lua", "http://h/x")
	want := []string{"-t2", "-c64", "-d1500ms", "--timeout", "2s", "-s", "/tmp/r.lua", "http://h/x"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestWrkScriptPrintsMarker(t *testing.T) {
	if !strings.Contains(wrkScript, "'"+wrkMarker+"{") || !strings.Contains(wrkScript, "done = function(summary, latency, requests)") {
		t.Fatal("the Lua script does not print the marker line from done()")
	}
	// Every field the script prints is one the parser knows (it rejects
	// unknown fields).
	for _, f := range []string{`"requests"`, `"duration_us"`, `"bytes"`, `"errors"`, `"connect"`, `"status"`, `"timeout"`, `"latency_us"`, `"p50"`, `"p99"`, `"p999"`, `"max"`} {
		if !strings.Contains(wrkScript, f) {
			t.Errorf("script lacks %s", f)
		}
	}
}

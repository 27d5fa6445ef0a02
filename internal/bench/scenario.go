package bench

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Scenario names.
const (
	// ScenarioGet is the default load: GET, small response (--size, 64
	// bytes by default), --threads and --connections (-t2 -c64).
	ScenarioGet = "get"
	// ScenarioPost4K is a POST with a 4 KiB request body, which the proxy
	// forwards and the backend reads whole; small response.
	ScenarioPost4K = "post4k"
	// ScenarioGet64K is a GET with a 64 KiB response body.
	ScenarioGet64K = "get64k"
	// ScenarioLatency1 is a GET on one connection (-t1 -c1): nothing
	// queues, so p50 is the time of one exchange and the "+p50 vs direct"
	// is the latency a proxy adds to one request.
	ScenarioLatency1 = "latency1"
)

// AllScenarios lists every scenario in the order a round runs them.
var AllScenarios = []string{ScenarioGet, ScenarioPost4K, ScenarioGet64K, ScenarioLatency1}

// Sizes of the scenarios' bodies.
const (
	post4KBodyBytes    = 4 << 10
	get64KResponseSize = 64 << 10
)

// Scenario is one load the benchmark puts on every target.
type Scenario struct {
	Name string `json:"name"`
	// Load holds wrk's threads and connections (the duration and the
	// timeout are the run's).
	Load
	Method string `json:"method"`
	// RequestBytes is the request body (0: none).
	RequestBytes int `json:"request_body_bytes,omitempty"`
	// ResponseBytes is the response body the backend serves.
	ResponseBytes int `json:"response_body_bytes"`
	// Query is added to every target's URL: the backend serves the body
	// size it names ("size=N"). Empty for the backend's default size.
	Query string `json:"query,omitempty"`
}

// ParseScenarios reads a comma-separated list of scenario names
// (--scenarios) and returns them in the order a round runs them.
func ParseScenarios(list string) ([]string, error) {
	seen := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		switch {
		case n == "":
			return nil, errors.New("empty scenario name")
		case !slices.Contains(AllScenarios, n):
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", n, strings.Join(AllScenarios, ", "))
		case seen[n]:
			return nil, fmt.Errorf("scenario %q named twice", n)
		}
		seen[n] = true
	}
	var out []string
	for _, n := range AllScenarios {
		if seen[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// newScenario builds the named scenario: load gives the threads and
// connections of every scenario but latency1, size the small response
// body (every scenario but get64k).
func newScenario(name string, load Load, size int) (Scenario, error) {
	sc := Scenario{Name: name, Load: Load{Threads: load.Threads, Connections: load.Connections}, Method: "GET", ResponseBytes: size}
	switch name {
	case ScenarioGet:
	case ScenarioPost4K:
		sc.Method, sc.RequestBytes = "POST", post4KBodyBytes
	case ScenarioGet64K:
		sc.ResponseBytes = get64KResponseSize
		if size != get64KResponseSize {
			sc.Query = "size=" + strconv.Itoa(get64KResponseSize)
		}
	case ScenarioLatency1:
		sc.Threads, sc.Connections = 1, 1
	default:
		return Scenario{}, fmt.Errorf("unknown scenario %q", name)
	}
	return sc, nil
}

// Describe renders the scenario for the table, e.g. "POST with a 4 KiB
// body, 64-byte response, wrk -t2 -c64".
func (s Scenario) Describe() string {
	var b strings.Builder
	b.WriteString(s.Method)
	if s.RequestBytes > 0 {
		fmt.Fprintf(&b, " with a %s body", sizeText(s.RequestBytes))
	}
	fmt.Fprintf(&b, ", %s response, wrk -t%d -c%d", sizeText(s.ResponseBytes), s.Threads, s.Connections)
	if s.Connections == 1 {
		b.WriteString(" (one connection)")
	}
	return b.String()
}

// sizeText renders a body size: "64-byte", "4 KiB", "64 KiB".
func sizeText(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d-byte", n)
}

// wrkScriptFor is the wrk script of a scenario: the request it makes
// (method and body; wrk adds Content-Length) and the result line.
func wrkScriptFor(s Scenario) string {
	var b strings.Builder
	if s.Method != "" && s.Method != "GET" {
		fmt.Fprintf(&b, "wrk.method = %q\n", s.Method)
	}
	if s.RequestBytes > 0 {
		fmt.Fprintf(&b, "wrk.body = string.rep(\"x\", %d)\n", s.RequestBytes)
		b.WriteString("wrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n")
	}
	b.WriteString(wrkScript)
	return b.String()
}

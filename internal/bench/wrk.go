package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/harness"
	"github.com/zkgate/zkgate/internal/procgroup"
)

// Load is the fixed load every target gets.
type Load struct {
	Threads     int           `json:"threads"`
	Connections int           `json:"connections"`
	Duration    time.Duration `json:"-"`
	// Timeout is wrk's per-request timeout (a slower response counts as a
	// timeout error).
	Timeout time.Duration `json:"-"`
}

// wrkMarker starts the one line the Lua script's done() prints.
const wrkMarker = "ZKGATE_WRK "

// wrkScript is written next to the run and passed with -s: done() prints
// the totals and the latency percentiles (microseconds) as one JSON line.
const wrkScript = `-- zkgate bench: report wrk's results as one JSON line.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '` + wrkMarker + `{"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f},' ..
    '"latency_us":{"min":%.0f,"mean":%.1f,"stdev":%.1f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f,"max":%.0f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
`

// WrkErrors are wrk's error counters. Status counts responses that were
// not 2xx or 3xx.
type WrkErrors struct {
	Connect int64 `json:"connect"`
	Read    int64 `json:"read"`
	Write   int64 `json:"write"`
	Status  int64 `json:"status"`
	Timeout int64 `json:"timeout"`
}

// Total is the sum of every error counter.
func (e WrkErrors) Total() int64 { return e.Connect + e.Read + e.Write + e.Status + e.Timeout }

// Latency is a latency distribution in microseconds.
type Latency struct {
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	Stdev float64 `json:"stdev"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// WrkResult is one wrk run.
type WrkResult struct {
	Requests   int64     `json:"requests"`
	DurationUS int64     `json:"duration_us"`
	Bytes      int64     `json:"bytes"`
	Errors     WrkErrors `json:"errors"`
	LatencyUS  Latency   `json:"latency_us"`
}

// RPS is completed requests per second.
func (r WrkResult) RPS() float64 {
	if r.DurationUS <= 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

// parseWrkOutput finds the script's JSON line in wrk's output.
func parseWrkOutput(out []byte) (WrkResult, error) {
	var res WrkResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, wrkMarker)
		if !ok {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(rest))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&res); err != nil {
			return res, fmt.Errorf("wrk result line: %w", err)
		}
		if res.DurationUS <= 0 {
			return res, errors.New("wrk result line: no duration")
		}
		return res, nil
	}
	return res, fmt.Errorf("wrk printed no result line (%s)", firstLine(out))
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return "no output"
	}
	return s
}

// wrkArgs is wrk's command line for one run.
func wrkArgs(l Load, d time.Duration, script, url string) []string {
	args := []string{
		"-t" + strconv.Itoa(l.Threads),
		"-c" + strconv.Itoa(l.Connections),
		"-d" + wrkDuration(d),
	}
	if l.Timeout > 0 {
		args = append(args, "--timeout", wrkDuration(l.Timeout))
	}
	return append(args, "-s", script, url)
}

// wrkDuration formats d in wrk's units (whole seconds or milliseconds).
func wrkDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
}

// wrkRunner runs wrk with a scenario's script (see wrkScriptFor).
type wrkRunner struct {
	bin     string
	dir     string
	sp      *procgroup.Spawner
	scripts map[string]string // scenario name → script path
}

func newWrkRunner(sp *procgroup.Spawner, bin, dir string) (*wrkRunner, error) {
	return &wrkRunner{bin: bin, dir: dir, sp: sp, scripts: map[string]string{}}, nil
}

// script writes the scenario's script once and returns its path.
func (w *wrkRunner) script(s Scenario) (string, error) {
	if p, ok := w.scripts[s.Name]; ok {
		return p, nil
	}
	p := filepath.Join(w.dir, "wrk-"+s.Name+".lua")
	if err := os.WriteFile(p, []byte(wrkScriptFor(s)), 0o644); err != nil {
		return "", fmt.Errorf("writing wrk script: %w", err)
	}
	w.scripts[s.Name] = p
	return p, nil
}

// run loads url for d with the scenario's request and load and returns
// wrk's result and the CPU time wrk used.
func (w *wrkRunner) run(ctx context.Context, s Scenario, timeout, d time.Duration, url string) (WrkResult, time.Duration, error) {
	script, err := w.script(s)
	if err != nil {
		return WrkResult{}, 0, err
	}
	l := Load{Threads: s.Threads, Connections: s.Connections, Timeout: timeout}
	// Bounded: wrk stops by itself after d; the margin covers start-up
	// and the last requests' timeout.
	ctx, cancel := context.WithTimeout(ctx, d+l.Timeout+30*time.Second)
	defer cancel()
	cmd := command(ctx, w.bin, wrkArgs(l, d, script, url)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	p, err := harness.Start(w.sp, "wrk", cmd, "")
	if err != nil {
		return WrkResult{}, 0, err
	}
	<-p.Done()
	var cpu time.Duration
	if st := cmd.ProcessState; st != nil {
		cpu = st.UserTime() + st.SystemTime()
	}
	if err := ctx.Err(); err != nil {
		return WrkResult{}, cpu, fmt.Errorf("wrk %s: %w", url, err)
	}
	if p.Err() != nil {
		var ee *exec.ExitError
		if errors.As(p.Err(), &ee) {
			return WrkResult{}, cpu, fmt.Errorf("wrk %s: %v: %s", url, p.Err(), firstLine(out.Bytes()))
		}
		return WrkResult{}, cpu, fmt.Errorf("wrk %s: %w", url, p.Err())
	}
	res, err := parseWrkOutput(out.Bytes())
	if err != nil {
		return res, cpu, fmt.Errorf("wrk %s: %w", url, err)
	}
	return res, cpu, nil
}

// toolVersion returns the first line a tool prints about its version.
func toolVersion(ctx context.Context, bin string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return firstLine(out)
}

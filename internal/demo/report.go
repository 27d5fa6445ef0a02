package demo

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zkgate/zkgate/internal/harness"
)

// ModeResult is one mode's row. The JSON keys mode, requests, failed,
// failure_rate, p50_ms, p99_ms and rollout_seconds are a contract (scripts
// read them); others may be added.
type ModeResult struct {
	Mode string `json:"mode"`
	// Description says what the mode does, with its timings.
	Description string `json:"description"`
	Requests    int64  `json:"requests"`
	OK          int64  `json:"ok"`
	Failed      int64  `json:"failed"`
	// FailedByKind splits Failed.
	FailedByKind Failures    `json:"failed_by_kind"`
	GET          MethodCount `json:"get"`
	POST         MethodCount `json:"post"`
	// FailureRate is Failed / Requests (0..1).
	FailureRate float64 `json:"failure_rate"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	// RolloutSeconds is from the first instance's first step to the last
	// instance back in service.
	RolloutSeconds float64 `json:"rollout_seconds"`
	// InstanceSeconds is each instance's time, in restart order, from its
	// first step (drain or kill) to back in service (registered; in zkgate
	// mode: every gateway routing to it).
	InstanceSeconds []float64 `json:"instance_seconds"`
	// RestartSeconds is each backend's restart time, in restart order:
	// from the stop signal to the new process registered (its old one
	// stopped, the new one started).
	RestartSeconds []float64 `json:"restart_seconds"`
	// Shutdown says how the mode stops a backend (e.g. "SIGTERM
	// (graceful)", "SIGKILL").
	Shutdown string `json:"shutdown,omitempty"`
	// MeasuredSeconds is the length of the load window the counts cover.
	MeasuredSeconds float64 `json:"measured_seconds"`
	// Note qualifies the row (e.g. shortened timings with --quick).
	Note string `json:"note,omitempty"`
	// Error is set when the mode's rollout did not complete; its counts
	// cover the load until then.
	Error string `json:"error,omitempty"`
}

// Skipped is a mode that could not run here.
type Skipped struct {
	Mode   string `json:"mode"`
	Reason string `json:"reason"`
}

// Machine describes where the demo ran.
type Machine struct {
	OS     string `json:"os"`
	Arch   string `json:"arch"`
	CPUs   int    `json:"cpus"`
	CPU    string `json:"cpu,omitempty"`
	MemMB  int64  `json:"mem_mb,omitempty"`
	Kernel string `json:"kernel,omitempty"`
}

// Report is the whole run; WriteJSON writes it.
type Report struct {
	Date    time.Time `json:"date"`
	Quick   bool      `json:"quick"`
	Machine Machine   `json:"machine"`
	Load    LoadSpec  `json:"load"`
	// Backend is how the sample backends behave (jvm or fast), and
	// BackendStartupSeconds the jvm backends' start-up time.
	Backend               string  `json:"backend"`
	BackendStartupSeconds float64 `json:"backend_startup_seconds"`
	// PreRollSeconds and TailSeconds: the load runs this long before the
	// first restart and after the last; both are measured.
	PreRollSeconds float64      `json:"pre_roll_seconds"`
	TailSeconds    float64      `json:"tail_seconds"`
	Modes          []ModeResult `json:"modes"`
	Skipped        []Skipped    `json:"skipped,omitempty"`
}

// newModeResult fills a row from the load summary and the rollout times.
func newModeResult(mode Mode, desc string, s LoadSummary, measured time.Duration, total time.Duration, perInstance []time.Duration) ModeResult {
	r := ModeResult{
		Mode: string(mode), Description: desc,
		Requests: s.Requests, OK: s.OK, Failed: s.Failed.Total(), FailedByKind: s.Failed,
		GET: s.GET, POST: s.POST,
		P50Ms: ms(s.P50), P99Ms: ms(s.P99),
		RolloutSeconds:  seconds(total),
		MeasuredSeconds: seconds(measured),
		InstanceSeconds: []float64{},
		RestartSeconds:  []float64{},
	}
	if s.Requests > 0 {
		r.FailureRate = math.Round(float64(r.Failed)/float64(s.Requests)*1e6) / 1e6
	}
	for _, d := range perInstance {
		r.InstanceSeconds = append(r.InstanceSeconds, seconds(d))
	}
	return r
}

func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

// WriteJSON writes the report to path (indented, with a final newline;
// see [harness.WriteJSONFile]).
func (r *Report) WriteJSON(path string) error { return harness.WriteJSONFile(path, r) }

// WriteTable prints the side-by-side table with its header and notes.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "zkgate demo: rolling restart of 4 backends under load, %s\n", r.Date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "machine: %s\n", r.Machine.String())
	fmt.Fprintf(&b, "load:    %s\n", r.Load.Describe())
	fmt.Fprintf(&b, "backend: %s\n", describeBackend(r.Backend, r.BackendStartupSeconds))
	if r.Quick {
		b.WriteString("run:     --quick (shortened timings, see notes)\n")
	}
	b.WriteString("\n")
	rows := [][]string{{"mode", "requests", "failed", "refused", "reset", "5xx", "timeout", "other", "failure rate", "p50", "p99", "restart", "per instance", "rollout"}}
	for _, m := range r.Modes {
		mode := m.Mode
		if m.Error != "" {
			mode += " (!)"
		}
		k := m.FailedByKind
		rows = append(rows, []string{mode, harness.Thousands(m.Requests), harness.Thousands(m.Failed),
			harness.Thousands(k.Refused), harness.Thousands(k.Reset), harness.Thousands(k.HTTP5xx), harness.Thousands(k.Timeout), harness.Thousands(k.Other),
			rate(m.FailureRate), millis(m.P50Ms), millis(m.P99Ms), perInstance(m.RestartSeconds), perInstance(m.InstanceSeconds), secs(m.RolloutSeconds)})
	}
	writeColumns(&b, rows)
	out := b.String()
	var notes []string
	for _, m := range r.Modes {
		desc := m.Description
		if m.Shutdown != "" {
			desc += "; stop: " + m.Shutdown
		}
		notes = append(notes, fmt.Sprintf("%-7s %s", m.Mode+":", desc))
		if m.Note != "" {
			notes = append(notes, fmt.Sprintf("%-7s %s", "", m.Note))
		}
		if m.Error != "" {
			notes = append(notes, fmt.Sprintf("%-7s (!) did not complete: %s", "", m.Error))
		}
	}
	for _, s := range r.Skipped {
		notes = append(notes, fmt.Sprintf("%-7s skipped: %s", s.Mode+":", s.Reason))
	}
	out += "\n" + strings.Join(notes, "\n") + "\n"
	out += "\nrestart: mean time from the stop signal to the new process registered; per instance: from its first step (drain, status, kill) to back in service.\n" +
		"Failures are what the clients saw: through a proxy, a connection cut by a dying backend arrives as a 502 (5xx).\n" +
		fmt.Sprintf("Requests and p50/p99 cover the whole measurement (%s s before the first restart to %s s after the last), failed requests included.\n",
			strconv.FormatFloat(r.PreRollSeconds, 'f', -1, 64), strconv.FormatFloat(r.TailSeconds, 'f', -1, 64))
	_, err := io.WriteString(w, out)
	return err
}

// describeBackend is the table's line about the backends.
func describeBackend(b string, startup float64) string {
	switch b {
	case string(BackendJVM):
		return fmt.Sprintf("jvm (like Spring Boot on Kubernetes): %s s to start before registering; SIGTERM = graceful shutdown (stop accepting, finish in flight, deregister last); SIGKILL = dies at once, registration left until its session expires (%s); back on a new port with a new registration id",
			strconv.FormatFloat(startup, 'f', -1, 64), backendSessionTimeout)
	case string(BackendFast):
		return "fast: starts in milliseconds, stops at once on SIGTERM (cutting what it has in flight), back on the same address"
	}
	return b
}

// writeColumns writes rows as columns two spaces apart: the first column
// aligned left, the others right.
func writeColumns(b *strings.Builder, rows [][]string) {
	var widths []int
	for _, row := range rows {
		for i, c := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			switch {
			case i == 0:
				line.WriteString(c + pad)
			default:
				line.WriteString("  " + pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

func (m Machine) String() string {
	var parts []string
	parts = append(parts, m.OS+"/"+m.Arch)
	cpus := fmt.Sprintf("%d CPUs", m.CPUs)
	if m.CPU != "" {
		cpus += " (" + m.CPU + ")"
	}
	parts = append(parts, cpus)
	if m.MemMB > 0 {
		parts = append(parts, fmt.Sprintf("%.1f GB RAM", float64(m.MemMB)/1024))
	}
	if m.Kernel != "" {
		parts = append(parts, "kernel "+m.Kernel)
	}
	return strings.Join(parts, ", ")
}

// readMachine describes this machine (see [harness.ReadHost]).
func readMachine() Machine {
	h := harness.ReadHost()
	return Machine{OS: h.OS, Arch: h.Arch, CPUs: h.CPUs, CPU: h.CPUModel, MemMB: h.MemBytes >> 20, Kernel: h.Kernel}
}

// thousands formats n with thousands separators.

func rate(r float64) string {
	switch {
	case r == 0:
		return "0%"
	case r < 0.0001:
		return "<0.01%"
	}
	return strconv.FormatFloat(r*100, 'f', 2, 64) + "%"
}

func millis(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
}

func secs(v float64) string {
	if v >= 10 {
		return strconv.FormatFloat(v, 'f', 1, 64) + " s"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + " s"
}

// perInstance is the mean time per instance.
func perInstance(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return secs(sum / float64(len(v)))
}

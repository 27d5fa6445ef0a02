package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zkgate/zkgate/internal/harness"
)

// FaultsReportSchema names the JSON layout of [FaultsReport].
const FaultsReportSchema = "zkgate.bench.faults/v1"

// FaultsReport is what `zkgate bench faults` prints and writes. It does
// not embed RunHeader as the other reports do: its schema (v1) spells the
// version key "version", not "zkgate_version", and scripts read it.
type FaultsReport struct {
	Schema  string        `json:"schema"`
	Date    time.Time     `json:"date"`
	Command string        `json:"command"`
	Version string        `json:"version"`
	Machine Machine       `json:"machine"`
	Setup   FaultsSetup   `json:"setup"`
	Results []FaultResult `json:"results"`
	// Passed: every fault ran and every check passed.
	Passed bool `json:"passed"`
	// StoppedEarly: the setup did not settle after a fault, the faults
	// after it did not run (see Notes).
	StoppedEarly bool `json:"stopped_early,omitempty"`
	// NotSent counts the load's ticks that sent nothing (too many
	// requests in flight, or no gateway in rotation).
	NotSent int      `json:"load_not_sent"`
	WallSec float64  `json:"wall_s"`
	Notes   []string `json:"notes,omitempty"`
}

// FaultsSetup describes the run.
type FaultsSetup struct {
	Ensemble           int    `json:"zookeeper_servers"`
	TickTimeMS         int    `json:"zookeeper_tick_ms"`
	Controllers        int    `json:"controllers"`
	Gateways           int    `json:"gateways"`
	Backends           int    `json:"backends"`
	Rate               int    `json:"rate_per_s"`
	SessionTimeoutText string `json:"session_timeout"`
	OutageText         string `json:"outage"`
	MustHeldText       string `json:"max_drain_held_by_crashed_gateway"`
	Load               string `json:"load"`
	Processes          string `json:"processes"`
}

// FaultResult is one fault's row.
type FaultResult struct {
	Fault    string `json:"fault"`
	What     string `json:"what"`
	Instance string `json:"instance"`
	// Sent and Failed count the load's requests started in the fault's
	// window (WindowSec long, from the injection to the end of its checks).
	Sent          int            `json:"sent"`
	Failed        int            `json:"failed"`
	FailedReasons map[string]int `json:"failed_reasons,omitempty"`
	WindowSec     float64        `json:"window_s"`
	// RecoverySec is the time Recovery names (what it measures depends on
	// the fault).
	RecoverySec float64 `json:"recovery_s"`
	Recovery    string  `json:"recovery_what"`
	// Confirmed counts the drains confirmed during the fault;
	// FalseConfirmations those after which a request still reached the
	// instance.
	Confirmed          int `json:"drains_confirmed"`
	FalseConfirmations int `json:"false_confirmations"`
	// DrainHeldSec is, for gateway-kill, how long the drain waited after
	// the kill.
	DrainHeldSec *float64     `json:"drain_held_s,omitempty"`
	Checks       []FaultCheck `json:"checks"`
	// Observations are what was seen besides the checks (no verdict).
	Observations []string `json:"observations,omitempty"`
	Error        string   `json:"error,omitempty"`
	Passed       bool     `json:"passed"`
}

// FaultCheck is one verified state.
type FaultCheck struct {
	What   string `json:"what"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

func (r *FaultsReport) summarize() {
	r.Passed = len(r.Results) > 0 && !r.StoppedEarly
	for _, f := range r.Results {
		r.Passed = r.Passed && f.Passed
	}
}

// Failed reports whether a "must" failed: a fault that did not run to
// its end, a failed check (failed requests where the instance was drained
// first, a false confirmation, a crashed gateway holding a drain too long,
// a state not restored), or a suite stopped early.
func (r *FaultsReport) Failed() bool { return !r.Passed }

// WriteJSON writes the report to path.
func (r *FaultsReport) WriteJSON(path string) error { return harness.WriteJSONFile(path, r) }

// WriteTable prints the table (one row per fault) and, under it, every
// check with its outcome.
func (r *FaultsReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "zkgate bench faults — %s, %d vCPUs (%s), ZooKeeper 3 servers (tick 500ms), %d controllers, %d gateways, %d backends, session_timeout %s, ~%d req/s\n\n",
		r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Machine.NProc, r.Machine.CPUModel, r.Setup.Controllers, r.Setup.Gateways,
		r.Setup.Backends, r.Setup.SessionTimeoutText, r.Setup.Rate)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "fault\tsent\tfailed\trecovery\tstate verified\tfalse confirmations\tresult")
	for _, f := range r.Results {
		ok := 0
		for _, c := range f.Checks {
			if c.OK {
				ok++
			}
		}
		verdict := "pass"
		if !f.Passed {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2fs\t%d/%d checks\t%d of %d\t%s\n", f.Fault, f.Sent, f.Failed, f.RecoverySec,
			ok, len(f.Checks), f.FalseConfirmations, f.Confirmed, verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range r.Results {
		fmt.Fprintf(&b, "\n%s: %s\n", f.Fault, f.What)
		fmt.Fprintf(&b, "  recovery %.2fs: %s\n", f.RecoverySec, f.Recovery)
		if f.Failed > 0 {
			fmt.Fprintf(&b, "  failed requests: %s\n", reasons(f.FailedReasons))
		}
		for _, c := range f.Checks {
			mark := "ok  "
			if !c.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(&b, "  %s %s%s\n", mark, c.What, prefixed(" — ", c.Detail))
		}
		for _, o := range f.Observations {
			fmt.Fprintf(&b, "  note %s\n", o)
		}
		if f.Error != "" {
			fmt.Fprintf(&b, "  FAIL did not complete: %s\n", f.Error)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nnote: %s\n", n)
	}
	verdict := "every check passed"
	if r.Failed() {
		verdict = "SOME CHECKS FAILED"
	}
	fmt.Fprintf(&b, "\n%s (%d faults in %.0fs)\n", verdict, len(r.Results), r.WallSec)
	_, err := io.WriteString(w, b.String())
	return err
}

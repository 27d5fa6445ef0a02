package bench

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/harness"
)

// PropagationReportSchema names the JSON layout of [PropagationReport].
const PropagationReportSchema = "zkgate.bench.propagation/v1"

// PropagationReport is the result of one propagation benchmark run (the
// JSON file). Every latency is measured from the moment just before the
// bench made the API call.
type PropagationReport struct {
	RunHeader
	Tools   ClusterTools     `json:"tools"`
	Setup   PropagationSetup `json:"setup"`
	Drain   DrainFigures     `json:"drain"`
	Undrain UndrainFigures   `json:"undrain"`
	// PerGateway breaks the "each gateway" figures down by gateway.
	PerGateway []GatewayFigures `json:"per_gateway"`
	Targets    []TargetCheck    `json:"targets"`
	// CPU is the CPU time used during the measured cycles.
	CPU *RunCPU `json:"cpu,omitempty"`
	// ZooKeeper is what the ensemble did during the measured cycles.
	ZooKeeper *ZooKeeperActivity `json:"zookeeper,omitempty"`
	// GatewayIDs names the gateways in the order of the per-gateway
	// arrays of Samples.
	GatewayIDs []string `json:"gateway_ids"`
	// Profile is the CPU profile of the bench process during the measured
	// cycles, when one was taken.
	Profile string `json:"cpu_profile,omitempty"`
	// Samples holds every measured cycle.
	Samples []DrainSample `json:"samples"`
	Notes   []string      `json:"notes,omitempty"`
}

// ClusterTools are the versions of the external programs.
type ClusterTools struct {
	ZooKeeper string `json:"zookeeper"`
	Java      string `json:"java,omitempty"`
}

// PropagationSetup is the fixed part of a propagation run.
type PropagationSetup struct {
	Gateways           int      `json:"gateways"`
	Drains             int      `json:"drains"`
	WarmupText         string   `json:"warmup"`
	WarmupCycles       int      `json:"warmup_cycles"`
	Ensemble           int      `json:"zookeeper_servers"`
	ZooKeeperServers   []string `json:"zookeeper_addrs,omitempty"`
	Instances          int      `json:"instances"`
	PauseText          string   `json:"pause"`
	DrainTimeoutText   string   `json:"drain_timeout"`
	SessionTimeoutText string   `json:"session_timeout"`
	Processes          string   `json:"processes"`
	Instance           string   `json:"instance"`
}

// DrainFigures summarize the drains.
type DrainFigures struct {
	// AllGateways: API call → the last gateway applied a routing table
	// with the mark (the docs/benchmarks.md#targets "every gateway stops picking").
	AllGateways Dist `json:"all_gateways"`
	// EachGateway: API call → one gateway applied it; one sample per
	// drain and gateway.
	EachGateway Dist `json:"each_gateway"`
	// Watch: API call → a plain ZooKeeper client's watch on the mark node
	// fired (the controller's write plus ZooKeeper's notification).
	Watch Dist `json:"zookeeper_watch"`
	// Confirmed: API call (wait=true) → the API answered "drained"; only
	// drains that were confirmed.
	Confirmed Dist `json:"confirmed"`
	// ControllerSawAll: when the controller saw the last gateway's
	// presence report acknowledge the mark, as the API answer says (whole
	// milliseconds, measured by the controller from its own start of the
	// request).
	ControllerSawAll Dist `json:"controller_saw_all_applied"`
	// NotConfirmed counts drains answered with a status other than
	// "drained" (timeout, lost, superseded).
	NotConfirmed int `json:"not_confirmed"`
	// AnsweredEarly counts drains answered "drained" before the bench
	// had seen every gateway apply the mark (it should be 0: a
	// confirmation implies that every gateway applied it).
	AnsweredEarly int `json:"answered_before_all_applied"`
}

// UndrainFigures summarize the undrains (DELETE …/drain; the API answers
// once the mark is deleted, without waiting for the gateways).
type UndrainFigures struct {
	AllGateways Dist `json:"all_gateways"`
	EachGateway Dist `json:"each_gateway"`
	Watch       Dist `json:"zookeeper_watch"`
	API         Dist `json:"api"`
}

// GatewayFigures are one gateway's apply times.
type GatewayFigures struct {
	ID      string `json:"id"`
	Drain   Dist   `json:"drain"`
	Undrain Dist   `json:"undrain"`
}

// TargetCheck compares a figure with its docs/benchmarks.md#targets target.
type TargetCheck struct {
	What   string  `json:"what"`
	Target string  `json:"target"`
	Value  float64 `json:"value"`
	// Unit is "ms" or "bytes".
	Unit string `json:"unit"`
	Met  bool   `json:"met"`
}

// String renders the check for tables.
func (t TargetCheck) String() string {
	v := fmt.Sprint(t.Value)
	switch t.Unit {
	case "ms":
		v = fmtMS(t.Value)
	case "bytes":
		v = mib(t.Value)
	}
	return fmt.Sprintf("%s: %s (target %s) — %s", t.What, v, t.Target, verdict(t.Met))
}

// RunCPU is the CPU time used during the measured part of a run.
type RunCPU struct {
	WallSec      float64 `json:"wall_s"`
	AvailableSec float64 `json:"available_cpu_s"`
	// BenchSec is the bench process: the gateways, the controller and the
	// bench's own clients.
	BenchSec     float64 `json:"bench_process_s"`
	ZooKeeperSec float64 `json:"zookeeper_s"`
	// OtherSec is everything else the machine did (other processes and
	// interrupt work outside these).
	OtherSec float64 `json:"other_s"`
}

// ZooKeeperActivity is what the ensemble did during the measured cycles,
// from its srvr counters: transactions (writes: the leader's zxid
// advance) and requests (packets received by all servers: every client
// call, pings included).
type ZooKeeperActivity struct {
	Transactions         int64   `json:"transactions"`
	Requests             int64   `json:"requests"`
	TransactionsPerCycle float64 `json:"transactions_per_cycle"`
	RequestsPerCycle     float64 `json:"requests_per_cycle"`
	// CPUPerRequestUS is the ensemble's CPU time divided by the requests.
	CPUPerRequestUS float64 `json:"cpu_per_request_us,omitempty"`
	// GatewayRequestsPerCycle is the requests one gateway's session sent
	// per cycle (mean over the gateways; reads and presence writes).
	GatewayRequestsPerCycle float64 `json:"gateway_requests_per_cycle"`
	// GatewayWatches is the watches one gateway's session holds after
	// the cycles (mean over the gateways).
	GatewayWatches float64 `json:"gateway_watches"`
}

// DrainSample is one measured drain/undrain cycle, in ms after the API
// call (a watch time of -1: the watch did not fire).
type DrainSample struct {
	Cycle          int       `json:"cycle"`
	Addr           string    `json:"addr"`
	DrainStatus    string    `json:"drain_status"`
	DrainAPIMS     float64   `json:"drain_api_ms"`
	DrainAllMS     float64   `json:"drain_all_gateways_ms"`
	DrainWatchMS   float64   `json:"drain_watch_ms"`
	DrainGatewayMS []float64 `json:"drain_gateway_ms"`
	CtlAppliedMS   float64   `json:"drain_controller_saw_all_ms"`
	// AppliedBeforeAnswer: every gateway had applied the mark when the
	// API answered.
	AppliedBeforeAnswer bool      `json:"applied_before_answer"`
	UndrainAPIMS        float64   `json:"undrain_api_ms"`
	UndrainAllMS        float64   `json:"undrain_all_gateways_ms"`
	UndrainWatchMS      float64   `json:"undrain_watch_ms"`
	UndrainGatewayMS    []float64 `json:"undrain_gateway_ms"`
}

func msDur(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// summarize fills the figures, the per-gateway breakdown and the target
// checks from Samples (GatewayIDs names the gateways).
func (r *PropagationReport) summarize() {
	var dAll, dEach, dWatch, dConf, dCtl, uAll, uEach, uWatch, uAPI []time.Duration
	perDrain := make([][]time.Duration, len(r.GatewayIDs))
	perUndrain := make([][]time.Duration, len(r.GatewayIDs))
	r.Drain.NotConfirmed, r.Drain.AnsweredEarly = 0, 0
	for _, s := range r.Samples {
		dAll = append(dAll, msDur(s.DrainAllMS))
		uAll = append(uAll, msDur(s.UndrainAllMS))
		uAPI = append(uAPI, msDur(s.UndrainAPIMS))
		if s.DrainWatchMS >= 0 {
			dWatch = append(dWatch, msDur(s.DrainWatchMS))
		}
		if s.UndrainWatchMS >= 0 {
			uWatch = append(uWatch, msDur(s.UndrainWatchMS))
		}
		if s.DrainStatus == ctlclient.StatusDrained {
			dConf = append(dConf, msDur(s.DrainAPIMS))
			dCtl = append(dCtl, msDur(s.CtlAppliedMS))
			if !s.AppliedBeforeAnswer {
				r.Drain.AnsweredEarly++
			}
		} else {
			r.Drain.NotConfirmed++
		}
		for i, v := range s.DrainGatewayMS {
			dEach = append(dEach, msDur(v))
			if i < len(perDrain) {
				perDrain[i] = append(perDrain[i], msDur(v))
			}
		}
		for i, v := range s.UndrainGatewayMS {
			uEach = append(uEach, msDur(v))
			if i < len(perUndrain) {
				perUndrain[i] = append(perUndrain[i], msDur(v))
			}
		}
	}
	r.Drain.AllGateways, r.Drain.EachGateway, r.Drain.Watch = distOf(dAll), distOf(dEach), distOf(dWatch)
	r.Drain.Confirmed, r.Drain.ControllerSawAll = distOf(dConf), distOf(dCtl)
	r.Undrain = UndrainFigures{AllGateways: distOf(uAll), EachGateway: distOf(uEach), Watch: distOf(uWatch), API: distOf(uAPI)}
	r.PerGateway = r.PerGateway[:0]
	for i, id := range r.GatewayIDs {
		r.PerGateway = append(r.PerGateway, GatewayFigures{ID: id, Drain: distOf(perDrain[i]), Undrain: distOf(perUndrain[i])})
	}
	r.Targets = []TargetCheck{
		{
			What:   "drain → every gateway applied the mark, p99",
			Target: "≤ " + TargetAllGatewaysP99.String(),
			Value:  r.Drain.AllGateways.P99MS,
			Unit:   "ms",
			Met:    len(dAll) > 0 && r.Drain.AllGateways.P99MS <= ms(TargetAllGatewaysP99),
		},
		{
			What:   "confirmed drain of an idle instance, p99",
			Target: "≤ " + TargetConfirmedDrain.String() + " + longest request in flight (0 here)",
			Value:  r.Drain.Confirmed.P99MS,
			Unit:   "ms",
			Met:    len(dConf) > 0 && r.Drain.NotConfirmed == 0 && r.Drain.Confirmed.P99MS <= ms(TargetConfirmedDrain),
		},
		{
			What: "drain → every gateway applied the mark, p99 (p50 " + fmtMS(r.Drain.AllGateways.P50MS) + ")",
			Target: fmt.Sprintf("p50 and p99 ≤ 2× the plain ZooKeeper watch's: ≤ %s and ≤ %s",
				fmtMS(2*r.Drain.Watch.P50MS), fmtMS(2*r.Drain.Watch.P99MS)),
			Value: r.Drain.AllGateways.P99MS,
			Unit:  "ms",
			Met: len(dAll) > 0 && len(dWatch) > 0 && r.Drain.AllGateways.P50MS <= 2*r.Drain.Watch.P50MS &&
				r.Drain.AllGateways.P99MS <= 2*r.Drain.Watch.P99MS,
		},
	}
	if z := r.ZooKeeper; z != nil && r.Setup.Gateways <= TargetWritesGateways {
		r.Targets = append(r.Targets, TargetCheck{
			What:   fmt.Sprintf("ZooKeeper writes per drain/undrain cycle (%d gateways)", r.Setup.Gateways),
			Target: fmt.Sprintf("< %d with %d gateways", TargetWritesPerCycle, TargetWritesGateways),
			Value:  z.TransactionsPerCycle,
			Met:    z.Transactions > 0 && z.TransactionsPerCycle < TargetWritesPerCycle,
		})
	}
	if r.Drain.NotConfirmed > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d of %d drains were not confirmed (see samples' drain_status)", r.Drain.NotConfirmed, len(r.Samples)))
	}
	if r.Drain.AnsweredEarly > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d drains were answered \"drained\" before the bench saw every gateway apply the mark", r.Drain.AnsweredEarly))
	}
	if r.CPU != nil && r.CPU.AvailableSec > 0 && r.CPU.OtherSec > otherCPUShare*r.CPU.AvailableSec {
		r.Notes = append(r.Notes, fmt.Sprintf("%.1f of %.1f CPU-seconds went to other processes: the machine was not quiet", r.CPU.OtherSec, r.CPU.AvailableSec))
	}
}

// Failed reports whether some drain was not confirmed.
func (r *PropagationReport) Failed() bool { return r.Drain.NotConfirmed > 0 }

// WriteTable prints the human summary.
func (r *PropagationReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	s := r.Setup
	r.writeHead(&b, "propagation", fmt.Sprintf("the %d gateways, the controller and the %d ZooKeeper JVMs share the CPUs", s.Gateways, s.Ensemble))
	fmt.Fprintf(&b, "setup: %d-server ZooKeeper ensemble, 1 controller, %d gateways in-process (one ZooKeeper session each), %d idle instances; %d drain/undrain cycles after %d unmeasured ones (%s warm-up), drains with wait=true\n\n",
		s.Ensemble, s.Gateways, s.Instances, s.Drains, s.WarmupCycles, s.WarmupText)
	tw := newDistTable(&b, "from the API call to …\tn\tp50\tp90\tp99\tmax\t")
	row := func(name string, d Dist) { distRow(tw, name, d, false) }
	row("drain: ZooKeeper watch fired (plain client)", r.Drain.Watch)
	row("drain: each gateway applied the mark", r.Drain.EachGateway)
	row("drain: every gateway applied the mark", r.Drain.AllGateways)
	row("drain: controller saw every gateway's ack", r.Drain.ControllerSawAll)
	row("drain: API answered \"drained\" (confirmed)", r.Drain.Confirmed)
	row("undrain: API answered", r.Undrain.API)
	row("undrain: ZooKeeper watch fired (plain client)", r.Undrain.Watch)
	row("undrain: each gateway applied the removal", r.Undrain.EachGateway)
	row("undrain: every gateway applied the removal", r.Undrain.AllGateways)
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\nper gateway (drain → mark applied):\n")
	tw = newDistTable(&b, "gateway\tp50\tp99\tmax\tundrain p50\tundrain p99\t")
	for _, g := range r.PerGateway {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", g.ID, fmtMS(g.Drain.P50MS), fmtMS(g.Drain.P99MS), fmtMS(g.Drain.MaxMS),
			fmtMS(g.Undrain.P50MS), fmtMS(g.Undrain.P99MS))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	writeTargets(&b, r.Targets)
	if c := r.CPU; c != nil {
		fmt.Fprintf(&b, "CPU during the measured cycles (%.1f s wall, %.1f CPU-s available): bench process (gateways + controller) %.1f s, ZooKeeper %.1f s, other %.1f s\n",
			c.WallSec, c.AvailableSec, c.BenchSec, c.ZooKeeperSec, c.OtherSec)
	}
	if z := r.ZooKeeper; z != nil {
		fmt.Fprintf(&b, "ZooKeeper per drain/undrain cycle: %.1f transactions (writes), %.1f requests received by the ensemble; %.0f µs of ensemble CPU per request\n",
			z.TransactionsPerCycle, z.RequestsPerCycle, z.CPUPerRequestUS)
		fmt.Fprintf(&b, "per gateway: %.2f ZooKeeper requests per cycle, %.0f watches held\n", z.GatewayRequestsPerCycle, z.GatewayWatches)
	}
	if r.Profile != "" {
		fmt.Fprintf(&b, "CPU profile of the bench process (gateways + controller): %s; go tool pprof -top %s\n", r.Profile, r.Profile)
	}
	writeNotes(&b, r.Notes)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report to path atomically, creating its directory.
func (r *PropagationReport) WriteJSON(path string) error { return harness.WriteJSONFile(path, r) }

package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/harness"
)

// RegistryReportSchema names the JSON layout of [RegistryReport].
const RegistryReportSchema = "zkgate.bench.registry/v1"

// RegistryReport is the result of one registry benchmark run (the JSON
// file).
type RegistryReport struct {
	RunHeader
	Tools ClusterTools  `json:"tools"`
	Setup RegistrySetup `json:"setup"`
	// Populate is how the registry was written.
	Populate PopulateFigures `json:"populate"`
	// ColdStarts holds every measured start of the gateway, in order.
	ColdStarts []ColdStart `json:"cold_starts"`
	// ColdStart summarizes them.
	ColdStart ColdStartSummary `json:"cold_start"`
	// Memory is the gateway's memory after the last cold start settled.
	Memory  MemoryFigures `json:"memory"`
	Changes ChangeFigures `json:"changes"`
	Targets []TargetCheck `json:"targets"`
	// Profiles are the profiled run's files, when one was asked for.
	Profiles *RegistryProfiles `json:"profiles,omitempty"`
	// Samples holds every measured change.
	Samples []ChangeSample `json:"samples"`
	Notes   []string       `json:"notes,omitempty"`
}

// RegistrySetup is the fixed part of a registry run.
type RegistrySetup struct {
	Services           int      `json:"services"`
	Instances          int      `json:"instances"`
	Routes             []string `json:"routed_services"`
	ColdStarts         int      `json:"cold_starts"`
	Changes            int      `json:"changes"`
	PauseText          string   `json:"pause"`
	PollText           string   `json:"poll"`
	SettleText         string   `json:"settle"`
	Batch              int      `json:"populate_batch"`
	Writers            int      `json:"populate_writers"`
	ZKHeap             string   `json:"zookeeper_heap"`
	ResyncIntervalText string   `json:"gateway_resync_interval"`
	GatewayEnv         []string `json:"gateway_env,omitempty"`
	Gateway            string   `json:"gateway"`
	Nodes              string   `json:"nodes"`
}

// PopulateFigures describe the registry's population.
type PopulateFigures struct {
	Nodes       int              `json:"nodes"`
	DataBytes   int64            `json:"data_bytes"`
	Seconds     float64          `json:"seconds"`
	NodesPerSec float64          `json:"nodes_per_s"`
	ZooKeeper   ZooKeeperFigures `json:"zookeeper"`
}

// ZooKeeperFigures are read from ZooKeeper's mntr and /proc.
type ZooKeeperFigures struct {
	ZNodes    float64 `json:"znodes"`
	Watches   float64 `json:"watches"`
	DataBytes float64 `json:"approximate_data_bytes"`
	RSSBytes  float64 `json:"rss_bytes"`
}

// ColdStart is one start of the gateway on the loaded registry, in ms
// after the process was started.
type ColdStart struct {
	Run int `json:"run"`
	// ListenMS: the admin listener answered for the first time.
	ListenMS float64 `json:"listen_ms"`
	// ReadyMS: /readyz answered 200: the first routing table, built from
	// the first full read of the registry, was applied.
	ReadyMS float64 `json:"ready_ms"`
	// FullReadMS is the gateway's own measure of its first full read
	// (zkgate_registry_resync_duration_seconds_sum).
	FullReadMS float64 `json:"full_read_ms"`
	// Revision is the applied registry revision at ready (1: the first
	// full read).
	Revision uint64 `json:"registry_revision"`
	// Watches is the number of watches the gateway's session holds at
	// ready (its zkgate_zookeeper_watches; 0 from a binary without it).
	Watches float64 `json:"gateway_watches"`
	// RoutedInstances are the instances /admin/instances showed for each
	// routed service (with up to 50 routes); LoadVerified says they were
	// all there (with more routes: that the revision was the first full
	// read's); LoadCheck says which check ran.
	RoutedInstances []int   `json:"routed_instances,omitempty"`
	LoadVerified    bool    `json:"load_verified"`
	LoadCheck       string  `json:"load_check"`
	Malformed       float64 `json:"malformed_nodes"`
	// PeakRSSBytes is VmHWM at ready (the peak during the load);
	// ReadyRSSBytes is VmRSS then.
	PeakRSSBytes   float64 `json:"peak_rss_bytes"`
	ReadyRSSBytes  float64 `json:"ready_rss_bytes"`
	HeapInuseBytes float64 `json:"heap_inuse_bytes"`
	// CPU is the CPU time used from the process start to ready.
	CPU *StartCPU `json:"cpu,omitempty"`
}

// StartCPU is the CPU time of a cold start, in seconds.
type StartCPU struct {
	GatewaySec   float64 `json:"gateway_s"`
	ZooKeeperSec float64 `json:"zookeeper_s"`
	// OtherSec is the rest of the machine (the bench's polling, other
	// processes, interrupt work).
	OtherSec     float64 `json:"other_s"`
	AvailableSec float64 `json:"available_cpu_s"`
}

// ColdStartSummary summarizes the cold starts.
type ColdStartSummary struct {
	ReadyMedianMS float64 `json:"ready_median_ms"`
	ReadyMaxMS    float64 `json:"ready_max_ms"`
	PeakRSSMax    float64 `json:"peak_rss_max_bytes"`
}

// MemoryFigures are the settled gateway's memory.
type MemoryFigures struct {
	RSSBytes       float64 `json:"rss_bytes"`
	PeakRSSBytes   float64 `json:"peak_rss_bytes"`
	HeapInuseBytes float64 `json:"heap_inuse_bytes"`
	HeapAllocBytes float64 `json:"heap_alloc_bytes"`
	HeapSysBytes   float64 `json:"heap_sys_bytes"`
	GoSysBytes     float64 `json:"go_sys_bytes"`
	Goroutines     float64 `json:"goroutines"`
	GCCycles       float64 `json:"gc_cycles"`
	// GatewayWatches is the number of watches the gateway's session holds
	// (zkgate_zookeeper_watches); ZooKeeper.Watches is the server's count.
	GatewayWatches float64 `json:"gateway_watches"`
	// PerInstanceBytes is heap in use divided by the instances.
	PerInstanceBytes float64          `json:"heap_per_instance_bytes"`
	ZooKeeper        ZooKeeperFigures `json:"zookeeper"`
}

// ChangeFigures summarize the single changes. Applied is measured from
// the moment the ZooKeeper write returned to the end of the first
// /readyz answer showing a newer applied registry revision (an upper
// bound: the gateway applied it between the previous poll's start and
// that answer, see Resolution).
type ChangeFigures struct {
	Applied Dist `json:"applied"`
	// FromIssue is measured from just before the write was issued.
	FromIssue Dist `json:"applied_from_issue"`
	// Write is the ZooKeeper write's own round trip.
	Write Dist `json:"write"`
	// Resolution is the width of the window in which each change was
	// applied: from the start of the last poll that did not show it (or
	// the write's return) to the end of the first that did.
	Resolution Dist `json:"resolution"`
	// LastPoll is the duration of the /readyz read that showed the change.
	LastPoll Dist            `json:"last_poll"`
	ByKind   map[string]Dist `json:"applied_by_kind"`
	Routed   Dist            `json:"applied_routed"`
	Unrouted Dist            `json:"applied_unrouted"`
	// Ignored counts the changes to unrouted services the gateway did not
	// publish (it follows only its routes' services); they are in no
	// distribution.
	Ignored int `json:"unrouted_ignored"`
	// VerifyFailures counts changes to routed services that
	// /admin/instances did not show once the revision had moved.
	VerifyFailures int `json:"verify_failures"`
	// ExtraRevisions counts revisions beyond one per change (a periodic
	// resync or a change published in two steps would show here), and
	// SplitByKind the changes of each kind that took more than one.
	ExtraRevisions int            `json:"extra_revisions"`
	SplitByKind    map[string]int `json:"split_by_kind,omitempty"`
}

// ChangeSample is one measured change.
type ChangeSample struct {
	N            int     `json:"n"`
	Kind         string  `json:"kind"`
	Service      string  `json:"service"`
	Routed       bool    `json:"routed"`
	WriteMS      float64 `json:"write_ms"`
	AppliedMS    float64 `json:"applied_ms"`
	FromIssueMS  float64 `json:"applied_from_issue_ms"`
	ResolutionMS float64 `json:"resolution_ms"`
	// Polls is the number of /readyz reads it took; LastPollMS the
	// duration of the one that showed the change.
	Polls      int     `json:"polls"`
	LastPollMS float64 `json:"last_poll_ms"`
	Revision   uint64  `json:"registry_revision"`
	// ExtraRevisions is how many more revisions the gateway applied after
	// the one that showed the change, before the next change (a delete
	// fires a data and a child watch, which may be re-read separately).
	ExtraRevisions int `json:"extra_revisions,omitempty"`
	// Ignored: a change to an unrouted service that the gateway did not
	// publish within 50 ms (it does not follow the service); no latency.
	Ignored bool `json:"ignored,omitempty"`
	// Checked: /admin/instances was read after the change (routed
	// services, up to 50 routes); Verified: it showed the change.
	Checked  bool `json:"checked,omitempty"`
	Verified bool `json:"verified,omitempty"`
}

// RegistryProfiles are the profiled run's files.
type RegistryProfiles struct {
	Dir              string  `json:"dir"`
	ColdStartReadyMS float64 `json:"cold_start_ready_ms"`
	ColdStartCPU     string  `json:"cold_start_cpu"`
	Heap             string  `json:"heap"`
	Allocs           string  `json:"allocs"`
	ChangesCPU       string  `json:"changes_cpu"`
	ProfiledChanges  int     `json:"profiled_changes"`
	Hint             string  `json:"hint"`
}

// summarize fills ColdStart, Changes and Targets.
func (r *RegistryReport) summarize() {
	var ready []time.Duration
	r.ColdStart = ColdStartSummary{}
	for _, c := range r.ColdStarts {
		ready = append(ready, msDur(c.ReadyMS))
		r.ColdStart.PeakRSSMax = max(r.ColdStart.PeakRSSMax, c.PeakRSSBytes)
		if !c.LoadVerified {
			r.Notes = append(r.Notes, fmt.Sprintf("cold start %d: the full load was not confirmed at ready: %s %v", c.Run, c.LoadCheck, c.RoutedInstances))
		}
		if c.Revision != 1 {
			r.Notes = append(r.Notes, fmt.Sprintf("cold start %d: registry revision %d at ready (expected 1, the first full read)", c.Run, c.Revision))
		}
	}
	if d := distOf(ready); d.N > 0 {
		r.ColdStart.ReadyMedianMS = ms(medianDur(ready))
		r.ColdStart.ReadyMaxMS = d.MaxMS
	}

	var all, issue, write, res, lastPoll, routed, unrouted []time.Duration
	byKind := map[string][]time.Duration{}
	c := ChangeFigures{ByKind: map[string]Dist{}}
	for _, s := range r.Samples {
		if s.Ignored {
			c.Ignored++
			continue
		}
		d := msDur(s.AppliedMS)
		all = append(all, d)
		issue = append(issue, msDur(s.FromIssueMS))
		write = append(write, msDur(s.WriteMS))
		res = append(res, msDur(s.ResolutionMS))
		lastPoll = append(lastPoll, msDur(s.LastPollMS))
		byKind[s.Kind] = append(byKind[s.Kind], d)
		if s.Routed {
			routed = append(routed, d)
			if s.Checked && !s.Verified {
				c.VerifyFailures++
			}
		} else {
			unrouted = append(unrouted, d)
		}
		if s.ExtraRevisions > 0 {
			c.ExtraRevisions += s.ExtraRevisions
			if c.SplitByKind == nil {
				c.SplitByKind = map[string]int{}
			}
			c.SplitByKind[s.Kind]++
		}
	}
	c.Applied, c.FromIssue, c.Write, c.Resolution = distOf(all), distOf(issue), distOf(write), distOf(res)
	c.LastPoll = distOf(lastPoll)
	c.Routed, c.Unrouted = distOf(routed), distOf(unrouted)
	for k, v := range byKind {
		c.ByKind[k] = distOf(v)
	}
	r.Changes = c
	if c.VerifyFailures > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d changes to routed services were not visible in /admin/instances once the revision moved", c.VerifyFailures))
	}
	if c.ExtraRevisions > 0 {
		var kinds []string
		for _, k := range []string{ChangeAdd, ChangeData, ChangeDelete} {
			if n := c.SplitByKind[k]; n > 0 {
				kinds = append(kinds, fmt.Sprintf("%s %d of %d", k, n, len(byKind[k])))
			}
		}
		r.Notes = append(r.Notes, fmt.Sprintf("the gateway published %d more registry revisions than changes (changes published more than once: %s); "+
			"latencies are to the first revision, which showed the change", c.ExtraRevisions, strings.Join(kinds, ", ")))
	}
	r.Targets = []TargetCheck{
		{
			What: "cold start to ready with the full registry, median of the runs", Target: "≤ " + TargetColdStart.String(),
			Value: r.ColdStart.ReadyMedianMS, Unit: "ms",
			Met: len(ready) > 0 && r.ColdStart.ReadyMedianMS <= ms(TargetColdStart),
		},
		{
			What: "gateway RSS after the load settled", Target: "≤ 200 MB (" + mib(TargetRSS) + ")",
			Value: r.Memory.RSSBytes, Unit: "bytes",
			Met: r.Memory.RSSBytes > 0 && r.Memory.RSSBytes <= TargetRSS,
		},
		{
			What: "gateway peak RSS (VmHWM) during the cold starts", Target: "≤ 200 MB (" + mib(TargetRSS) + ")",
			Value: r.ColdStart.PeakRSSMax, Unit: "bytes",
			Met: r.ColdStart.PeakRSSMax > 0 && r.ColdStart.PeakRSSMax <= TargetRSS,
		},
		{
			What: "a change to a routed service applied, p99", Target: "≤ " + TargetChangeApplied.String(),
			Value: c.Routed.P99MS, Unit: "ms",
			Met: len(routed) > 0 && c.Routed.P99MS <= ms(TargetChangeApplied),
		},
	}
}

// medianDur is the median (the lower middle for an even count).
func medianDur(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// Failed reports whether the run's results are not trustworthy: a cold
// start without the full load or changes the gateway did not show.
func (r *RegistryReport) Failed() bool {
	for _, c := range r.ColdStarts {
		if !c.LoadVerified {
			return true
		}
	}
	return r.Changes.VerifyFailures > 0
}

// WriteTable prints the human summary.
func (r *RegistryReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	s := r.Setup
	r.writeHead(&b, "registry", "ZooKeeper, the gateway and the bench share the CPUs")
	writeGatewayEnv(&b, s.GatewayEnv)
	p := r.Populate
	fmt.Fprintf(&b, "registry: %s instances in %s services (%d nodes, %.1f MiB of JSON) written in %.1f s (%s nodes/s); ZooKeeper: %s znodes, RSS %s\n",
		thousands(float64(s.Instances)), thousands(float64(s.Services)), p.Nodes, float64(p.DataBytes)/(1<<20), p.Seconds,
		thousands(p.NodesPerSec), thousands(p.ZooKeeper.ZNodes), mib(p.ZooKeeper.RSSBytes))
	routes := strings.Join(s.Routes, ", ")
	if len(s.Routes) > 5 {
		routes = fmt.Sprintf("%d services (%s, …, %s)", len(s.Routes), strings.Join(s.Routes[:3], ", "), s.Routes[len(s.Routes)-1])
	}
	fmt.Fprintf(&b, "gateway: separate process, routes to %s\n\n", routes)

	b.WriteString("cold start (process start → …):\n")
	tw := newDistTable(&b, "run\tadmin answers\tready (full load)\tfirst full read\tgateway CPU\tZooKeeper CPU\tother CPU\tpeak RSS\tRSS at ready\theap in use\twatches\tload verified\t")
	for _, c := range r.ColdStarts {
		gw, zk, other := "—", "—", "—"
		if c.CPU != nil {
			gw, zk, other = fmt.Sprintf("%.2fs", c.CPU.GatewaySec), fmt.Sprintf("%.2fs", c.CPU.ZooKeeperSec), fmt.Sprintf("%.2fs", c.CPU.OtherSec)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t\n", c.Run, fmtMS(c.ListenMS), fmtMS(c.ReadyMS), fmtMS(c.FullReadMS),
			gw, zk, other, mib(c.PeakRSSBytes), mib(c.ReadyRSSBytes), mib(c.HeapInuseBytes), thousands(c.Watches), c.LoadVerified)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	m := r.Memory
	fmt.Fprintf(&b, "\nmemory after %s settled: RSS %s (peak %s), heap in use %s (%.0f bytes per instance), heap sys %s, Go sys %s, %.0f goroutines; gateway holds %s watches; ZooKeeper RSS %s, %s watches\n\n",
		s.SettleText, mib(m.RSSBytes), mib(m.PeakRSSBytes), mib(m.HeapInuseBytes), m.PerInstanceBytes, mib(m.HeapSysBytes),
		mib(m.GoSysBytes), m.Goroutines, thousands(m.GatewayWatches), mib(m.ZooKeeper.RSSBytes), thousands(m.ZooKeeper.Watches))

	fmt.Fprintf(&b, "single changes (ZooKeeper write returned → gateway's applied registry revision moved; /readyz polled every %s):\n", s.PollText)
	tw = newDistTable(&b, "\tn\tp50\tp90\tp99\tmax\t")
	row := func(name string, d Dist) { distRow(tw, name, d, true) }
	c := r.Changes
	row("applied (all)", c.Applied)
	for _, k := range []string{ChangeAdd, ChangeData, ChangeDelete} {
		row("  "+k+" an instance", c.ByKind[k])
	}
	row("  routed service", c.Routed)
	row("  unrouted service", c.Unrouted)
	if c.Ignored > 0 {
		fmt.Fprintf(tw, "  unrouted service, not published (not followed)\t%d\t\t\t\t\t\n", c.Ignored)
	}
	row("applied, from the write's issue", c.FromIssue)
	row("ZooKeeper write round trip", c.Write)
	row("measurement window", c.Resolution)
	row("the /readyz read that showed it", c.LastPoll)
	if err := tw.Flush(); err != nil {
		return err
	}
	writeTargets(&b, r.Targets)
	if pr := r.Profiles; pr != nil {
		fmt.Fprintf(&b, "profiles (a separate run, ready in %s): %s\n  %s\n", fmtMS(pr.ColdStartReadyMS), pr.Dir, pr.Hint)
	}
	writeNotes(&b, r.Notes)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report to path atomically, creating its directory.
func (r *RegistryReport) WriteJSON(path string) error { return harness.WriteJSONFile(path, r) }

package bench

import (
	"testing"

	"github.com/zkgate/zkgate/internal/harness/harnesstest"
)

func TestLayout(t *testing.T) {
	l := layout{services: 7, instances: 100}
	total := 0
	seen := map[string]bool{}
	for s := range l.services {
		n := l.perService(s)
		if n != 14 && n != 15 {
			t.Errorf("service %d has %d instances", s, n)
		}
		total += n
		for j := range n {
			a := l.addr(s, j)
			if seen[a] {
				t.Fatalf("address %s twice", a)
			}
			seen[a] = true
		}
	}
	if total != 100 {
		t.Errorf("%d instances, want 100", total)
	}
	if l.serviceName(42) != "svc-00042" {
		t.Errorf("serviceName = %s", l.serviceName(42))
	}
	big := layout{services: 10000, instances: 100000}
	if a, b := big.addr(9999, 0), big.addr(9743, 0); a == b {
		t.Errorf("services 9999 and 9743 share %s", a)
	}
	if a := big.addr(300, 260); a != "10.1.44.11:8001" {
		t.Errorf("addr(300, 260) = %s", a)
	}
}

func TestParseProcStatus(t *testing.T) {
	st := "Name:\tzkgate\nVmPeak:\t 1300000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  153600 kB\nThreads:\t9\n"
	m, err := parseProcStatus(st)
	if err != nil || m.rss != 150<<20 || m.hwm != 200<<20 {
		t.Fatalf("parseProcStatus = %+v, %v", m, err)
	}
	if _, err := parseProcStatus("Name:\tx\n"); err == nil {
		t.Error("no error without VmRSS")
	}
	if _, err := parseProcStatus("VmRSS:\t12 MB\nVmHWM:\t1 kB\n"); err == nil {
		t.Error("no error for an unexpected unit")
	}
}

func TestMntrValues(t *testing.T) {
	out := "zk_version\t3.8.0-debian--1, built on 2022\nzk_znode_count\t110006\nzk_watch_count\t110002\nzk_approximate_data_size\t54000000\n"
	v := mntrValues(out)
	if v["zk_znode_count"] != 110006 || v["zk_watch_count"] != 110002 || v["zk_approximate_data_size"] != 54e6 {
		t.Errorf("mntrValues = %v", v)
	}
	if _, ok := v["zk_version"]; ok {
		t.Error("a non-numeric value was parsed")
	}
}

type inst = struct {
	Addr   string `json:"addr"`
	State  string `json:"state"`
	Status string `json:"status"`
}

func TestVerifyChange(t *testing.T) {
	ins := []inst{{Addr: "a:1", Status: "UP"}, {Addr: "b:1", Status: "OUT_OF_SERVICE"}}
	cases := []struct {
		kind, addr string
		want       bool
	}{
		{ChangeAdd, "a:1", true}, {ChangeAdd, "b:1", false}, {ChangeAdd, "c:1", false},
		{ChangeData, "b:1", true}, {ChangeData, "a:1", false},
		{ChangeDelete, "c:1", true}, {ChangeDelete, "a:1", false},
	}
	for _, c := range cases {
		if got := verifyChange(c.kind, c.addr, ins); got != c.want {
			t.Errorf("verifyChange(%s, %s) = %v", c.kind, c.addr, got)
		}
	}
}

func TestRegistrySummarize(t *testing.T) {
	r := &RegistryReport{RunHeader: RunHeader{Schema: RegistryReportSchema}, Setup: RegistrySetup{Services: 10, Instances: 100, SettleText: "5s", PollText: "250µs"}}
	r.ColdStarts = []ColdStart{
		{Run: 1, ReadyMS: 4000, PeakRSSBytes: 150 << 20, Revision: 1, LoadVerified: true, CPU: &StartCPU{GatewaySec: 1.5}},
		{Run: 2, ReadyMS: 2000, PeakRSSBytes: 210 << 20, Revision: 1, LoadVerified: true},
		{Run: 3, ReadyMS: 2500, PeakRSSBytes: 140 << 20, Revision: 2, LoadVerified: true},
	}
	r.Memory = MemoryFigures{RSSBytes: 180 << 20}
	kinds := []string{ChangeAdd, ChangeData, ChangeDelete}
	for i := range 99 {
		r.Samples = append(r.Samples, ChangeSample{
			N: i + 1, Kind: kinds[i%3], Routed: i%2 == 0, Checked: i%2 == 0, Verified: true,
			AppliedMS: float64(i%11 + 1), FromIssueMS: float64(i%11 + 2), WriteMS: 1, ResolutionMS: 0.5, LastPollMS: 0.2,
		})
	}
	r.Samples[5].ExtraRevisions = 2 // a delete
	// Changes to unrouted services the gateway did not follow: no latency.
	for i := range 4 {
		r.Samples = append(r.Samples, ChangeSample{N: 100 + i, Kind: kinds[i%3], Ignored: true, WriteMS: 1})
	}
	r.summarize()
	if r.ColdStart.ReadyMedianMS != 2500 || r.ColdStart.ReadyMaxMS != 4000 || r.ColdStart.PeakRSSMax != 210<<20 {
		t.Errorf("cold start %+v", r.ColdStart)
	}
	c := r.Changes
	if c.Applied.N != 99 || c.Applied.MaxMS != 11 || c.ByKind[ChangeData].N != 33 || c.Routed.N != 50 || c.Unrouted.N != 49 {
		t.Errorf("changes %+v", c)
	}
	if c.Ignored != 4 {
		t.Errorf("ignored %d, want 4", c.Ignored)
	}
	if c.ExtraRevisions != 2 || c.SplitByKind[ChangeDelete] != 1 || c.VerifyFailures != 0 {
		t.Errorf("extra %d split %v verify %d", c.ExtraRevisions, c.SplitByKind, c.VerifyFailures)
	}
	met := map[string]bool{}
	for _, tc := range r.Targets {
		met[tc.What] = tc.Met
	}
	if !met["cold start to ready with the full registry, median of the runs"] || !met["gateway RSS after the load settled"] ||
		met["gateway peak RSS (VmHWM) during the cold starts"] || met["a change to a routed service applied, p99"] {
		t.Errorf("targets %+v", r.Targets)
	}
	if r.Failed() {
		t.Error("Failed with every load verified")
	}
	out := harnesstest.Table(t, r)
	harnesstest.Contains(t, "table", out,
		"cold start 3: registry revision 2 at ready", "delete 1 of 33", "1.50s", "a change to a routed service applied, p99: 11.00ms (target ≤ 10ms) — MISSED",
		"data an instance", "not published (not followed)",
	)
	r.ColdStarts[0].LoadVerified = false
	if !r.Failed() {
		t.Error("not Failed with a cold start that did not show the full load")
	}
}

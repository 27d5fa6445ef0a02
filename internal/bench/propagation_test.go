package bench

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/harness/harnesstest"
	"github.com/zkgate/zkgate/internal/marks"
)

func marksWith(service, addr string) *marks.Snapshot {
	return &marks.Snapshot{Marks: map[string]map[string]marks.Mark{service: {addr: {Service: service, Addr: addr, Mzxid: 9}}}}
}

func TestApplyTracker(t *testing.T) {
	tr := newApplyTracker(3)
	none, marked := &marks.Snapshot{}, marksWith("s", "a:1")
	tr.onApply(0, marked) // no operation in progress: ignored
	start := tr.begin(opDrain, "s", "a:1", "/zkgate/marks/s/a:1")
	tr.onApply(0, none) // not yet
	tr.onApply(0, marked)
	tr.onApply(1, marksWith("s", "b:1")) // another address
	tr.onWatch("/zkgate/marks/s/a:1", start.Add(time.Millisecond))
	tr.onWatch("/zkgate/marks/s/a:1", start.Add(time.Hour)) // only the first counts
	tr.onApply(1, marked)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	res, err := tr.wait(ctx)
	cancel()
	if err == nil {
		t.Fatal("wait returned before gateway 2 applied the mark")
	}
	if !strings.Contains(res.describe([]string{"g1", "g2", "g3"}), "2 done, pending: g3") {
		t.Errorf("describe = %q", res.describe([]string{"g1", "g2", "g3"}))
	}

	start = tr.begin(opDrain, "s", "a:1", "/zkgate/marks/s/a:1")
	for i := range 3 {
		tr.onApply(i, marked)
	}
	tr.onApply(0, marked) // a later table: the first one counts
	res, err = tr.wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	per, all, watch := res.relative(start)
	if len(per) != 3 || all < per[0] || all < per[2] || watch != -1 {
		t.Errorf("relative = %v %v %v", per, all, watch)
	}
	if res.last().Before(start) {
		t.Error("last apply before the start")
	}

	// Undrain: the first table without the mark.
	tr.begin(opUndrain, "s", "a:1", "/zkgate/marks/s/a:1")
	for i := range 3 {
		tr.onApply(i, marked)
	}
	select {
	case <-tr.done:
		t.Fatal("an undrain counted tables that still had the mark")
	default:
	}
	for i := range 3 {
		tr.onApply(i, none)
	}
	if _, err := tr.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func sample(cycle int, drainAll, confirmed float64, status string) DrainSample {
	return DrainSample{
		Cycle: cycle, Addr: "127.0.0.1:1", DrainStatus: status,
		DrainAPIMS: confirmed, DrainAllMS: drainAll, DrainWatchMS: drainAll / 2,
		DrainGatewayMS: []float64{drainAll / 2, drainAll}, CtlAppliedMS: confirmed - 1, AppliedBeforeAnswer: true,
		UndrainAPIMS: 2, UndrainAllMS: drainAll, UndrainWatchMS: -1, UndrainGatewayMS: []float64{drainAll, drainAll / 4},
	}
}

func TestPropagationSummarize(t *testing.T) {
	r := &PropagationReport{RunHeader: RunHeader{Schema: PropagationReportSchema}, GatewayIDs: []string{"gw-1", "gw-2"}, Setup: PropagationSetup{Gateways: 10},
		ZooKeeper: &ZooKeeperActivity{Transactions: 1400, TransactionsPerCycle: 14, GatewayRequestsPerCycle: 3.5, GatewayWatches: 9}}
	for i := 1; i <= 100; i++ {
		r.Samples = append(r.Samples, sample(i, float64(i)/10, float64(i)/2, ctlclient.StatusDrained))
	}
	r.summarize()
	if d := r.Drain.AllGateways; d.N != 100 || d.P50MS != 5 || d.P99MS != 9.9 || d.MaxMS != 10 {
		t.Errorf("all gateways %+v", d)
	}
	if d := r.Drain.EachGateway; d.N != 200 || d.MaxMS != 10 {
		t.Errorf("each gateway %+v", d)
	}
	if d := r.Undrain.Watch; d.N != 0 {
		t.Errorf("undrain watch should have no samples: %+v", d)
	}
	if len(r.PerGateway) != 2 || r.PerGateway[0].ID != "gw-1" || r.PerGateway[0].Drain.MaxMS != 5 || r.PerGateway[1].Undrain.MaxMS != 2.5 {
		t.Errorf("per gateway %+v", r.PerGateway)
	}
	// All gateways p99 9.9ms ≤ 10ms, confirmed p99 49.5ms ≤ 100ms, all
	// gateways twice the watch's, 14 writes per cycle < 20.
	if len(r.Targets) != 4 || !r.Targets[0].Met || !r.Targets[1].Met || r.Targets[1].Value != 49.5 ||
		!r.Targets[2].Met || !r.Targets[3].Met || r.Targets[3].Value != 14 {
		t.Errorf("targets %+v", r.Targets)
	}
	r.ZooKeeper.TransactionsPerCycle = 24.1
	for i := range r.Samples {
		r.Samples[i].DrainWatchMS = r.Samples[i].DrainAllMS / 3
	}
	r.summarize()
	if r.Targets[2].Met || r.Targets[3].Met {
		t.Errorf("targets met with 3× the watch's latency and 24.1 writes per cycle: %+v", r.Targets)
	}
	r.ZooKeeper.TransactionsPerCycle = 14
	for i := range r.Samples {
		r.Samples[i].DrainWatchMS = r.Samples[i].DrainAllMS / 2
	}
	if r.Failed() {
		t.Error("Failed with every drain confirmed")
	}

	r.Samples = append(r.Samples, sample(101, 50, 10000, ctlclient.StatusTimeout), sample(102, 50, 10000, ctlclient.StatusLost))
	r.Notes = nil
	r.summarize()
	if r.Drain.NotConfirmed != 2 || !r.Failed() || r.Drain.Confirmed.N != 100 {
		t.Errorf("not confirmed %d, confirmed %+v", r.Drain.NotConfirmed, r.Drain.Confirmed)
	}
	if r.Targets[0].Met || r.Targets[1].Met {
		t.Errorf("targets met with a 50ms propagation and a timed-out drain: %+v", r.Targets)
	}

	out := harnesstest.Table(t, r)
	harnesstest.Contains(t, "table", out,
		"every gateway applied the mark", "API answered \"drained\" (confirmed)", "gw-2",
		"drain → every gateway applied the mark, p99: 50.00ms (target ≤ 10ms) — MISSED",
		"note: 2 of 102 drains were not confirmed",
	)

	var back PropagationReport
	if err := json.Unmarshal(harnesstest.JSONFile(t, r, ""), &back); err != nil {
		t.Fatal(err)
	}
	if back.Schema != PropagationReportSchema || len(back.Samples) != 102 || back.Drain.AllGateways != r.Drain.AllGateways {
		t.Errorf("round trip: %+v", back.Drain)
	}
}

func TestParseSrvr(t *testing.T) {
	out := "Zookeeper version: 3.8.0-debian--1, built on 2022-08-16 13:45 UTC\nLatency min/avg/max: 0/0.4/12\nReceived: 1234\nSent: 1230\nConnections: 5\nOutstanding: 0\nZxid: 0x10000002a\nMode: leader\nNode count: 20\n"
	recv, zxid, err := parseSrvr(out)
	if err != nil || recv != 1234 || zxid != 0x10000002a {
		t.Fatalf("parseSrvr = %d %#x %v", recv, zxid, err)
	}
	if _, _, err := parseSrvr("This ZooKeeper instance is not currently serving requests\n"); err == nil {
		t.Error("no error without counters")
	}
	a, b := zkCount{received: 1000, zxid: 0x100000010, ok: true}, zkCount{received: 3000, zxid: 0x100000074, ok: true}
	z := zkActivity(a, b, 10, &RunCPU{ZooKeeperSec: 0.5})
	if z == nil || z.Transactions != 100 || z.RequestsPerCycle != 200 || z.TransactionsPerCycle != 10 || z.CPUPerRequestUS != 250 {
		t.Errorf("zkActivity = %+v", z)
	}
	// A leader change starts a new epoch.
	if z := zkActivity(a, zkCount{received: 3000, zxid: 0x200000005, ok: true}, 10, nil); z == nil || z.Transactions != 5 {
		t.Errorf("zkActivity across epochs = %+v", z)
	}
	if zkActivity(zkCount{}, b, 10, nil) != nil {
		t.Error("activity without a first reading")
	}
}

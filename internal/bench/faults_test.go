package bench

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/harness/harnesstest"
	"github.com/zkgate/zkgate/internal/samplebackend"
	"github.com/zkgate/zkgate/internal/zktest"
)

func TestParseFaults(t *testing.T) {
	got, err := ParseFaults(" drained-backend-kill,leader-kill ,leader-kill")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "leader-kill,drained-backend-kill" {
		t.Errorf("got %v, want the suite's order without duplicates", got)
	}
	for _, bad := range []string{"", ",", "leader-kil", "leader-kill,nope"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Errorf("ParseFaults(%q) accepted", bad)
		}
	}
}

// The false-confirmation check must see requests that reach an instance
// after its drain was "confirmed", both through the load's answers and
// through the backend's own counter, and see none when none arrive.
func TestConfirmGuardCountsRequestsAfterTheConfirmation(t *testing.T) {
	ctx := context.Background()
	b, err := samplebackend.Start(ctx, samplebackend.Options{Name: "b1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Kill()
	p := &faultProc{name: "b1", addr: b.Addr()}
	hc := &http.Client{Timeout: 2 * time.Second}
	// The load goes straight to the backend: a "gateway" that never
	// stopped routing to it.
	load := newFaultLoad([]string{"http://" + b.Addr()}, 200, 10)
	e := &faultEnv{hc: hc, load: load}

	quiet := &faultRow{e: e, start: time.Now()}
	g := quiet.confirmed(ctx, p)
	if g.seq0 < 1 {
		t.Fatalf("probe seq = %d", g.seq0)
	}
	quiet.verify(ctx, g)
	if quiet.r.FalseConfirmations != 0 || !quiet.r.Checks[0].OK {
		t.Fatalf("no request reached the backend, yet: %+v", quiet.r)
	}

	row := &faultRow{e: e, start: time.Now()}
	g = row.confirmed(ctx, p)
	load.start()
	time.Sleep(300 * time.Millisecond)
	load.close()
	// One request straight to the backend that the load did not see.
	resp, err := hc.Get("http://" + b.Addr() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	viaLoad := load.reachedAfter("b1", g.at)
	if viaLoad == 0 {
		t.Fatal("the load sent nothing")
	}
	row.verify(ctx, g)
	if row.r.FalseConfirmations != 1 || row.r.Checks[0].OK {
		t.Fatalf("requests after the confirmation not counted: %+v", row.r)
	}
	if want := "the backend counted"; !strings.Contains(row.r.Checks[0].Detail, want) {
		t.Errorf("detail %q lacks %q", row.r.Checks[0].Detail, want)
	}
	row.finish(time.Now())
	if row.r.Passed || row.r.Sent != viaLoad || row.r.Failed != 0 {
		t.Errorf("row = %+v, want not passed, %d sent, none failed", row.r, viaLoad)
	}
}

// A drained-first fault with a failed request fails the row; so does a
// failed check, and the report then fails.
func TestFaultRowVerdict(t *testing.T) {
	load := newFaultLoad([]string{"http://127.0.0.1:1"}, 10, 10)
	now := time.Now()
	load.recs = []loadRec{
		{Start: now.Add(time.Millisecond), End: now.Add(2 * time.Millisecond), OK: true},
		{Start: now.Add(time.Millisecond), End: now.Add(2 * time.Millisecond), Why: "status 502"},
	}
	row := &faultRow{e: &faultEnv{load: load}, start: now, drainedFirst: true}
	row.check("state", true, "")
	row.finish(now.Add(time.Second))
	if row.r.Passed || row.r.Sent != 2 || row.r.Failed != 1 || row.r.FailedReasons["status 502"] != 1 {
		t.Fatalf("row = %+v", row.r)
	}
	other := &faultRow{e: &faultEnv{load: load}, start: now}
	other.check("state", true, "")
	other.finish(now.Add(time.Second))
	if !other.r.Passed {
		t.Fatalf("a failed request where nothing was drained first is reported, not a must: %+v", other.r)
	}
	rep := &FaultsReport{Results: []FaultResult{other.r}}
	rep.summarize()
	if rep.Failed() {
		t.Fatal("report failed")
	}
	rep = &FaultsReport{Results: []FaultResult{other.r, row.r}}
	rep.summarize()
	if !rep.Failed() {
		t.Fatal("report passed with a failed row")
	}
	harnesstest.Contains(t, "table", harnesstest.Table(t, rep), "FAIL no request failed", "SOME CHECKS FAILED")
}

// The suite runs end to end on real processes: a short subset, so that it
// cannot rot.
func TestFaultSuiteEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a ZooKeeper ensemble and 8 zkgate processes")
	}
	zktest.RequireZooKeeper(t)
	bin := harnesstest.BuildZkgate(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := RunFaults(ctx, FaultsOptions{
		Binary: bin, Faults: []string{FaultLeaderKill, FaultDrainedBackendKill},
		RunOptions: RunOptions{Dir: dir, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", harnesstest.Table(t, rep))
	if len(rep.Results) != 2 || rep.Results[0].Fault != FaultLeaderKill || rep.Results[1].Fault != FaultDrainedBackendKill {
		t.Fatalf("results: %+v", rep.Results)
	}
	for _, r := range rep.Results {
		if r.Sent < 100 || r.Confirmed < 1 || r.FalseConfirmations != 0 || len(r.Checks) < 4 || !r.Passed {
			t.Errorf("%s: %d sent, %d confirmed, %d false, %d checks, passed %v", r.Fault, r.Sent, r.Confirmed, r.FalseConfirmations, len(r.Checks), r.Passed)
		}
	}
	if rep.Results[1].Failed != 0 {
		t.Errorf("drained-backend-kill: %d requests failed", rep.Results[1].Failed)
	}
	if rep.Failed() {
		t.Error("the report says a check failed")
	}
	data := harnesstest.JSONFile(t, rep, filepath.Join(dir, "out.json"))
	var back map[string]any
	if err := json.Unmarshal(data, &back); err != nil || back["schema"] != FaultsReportSchema {
		t.Errorf("JSON schema %v (%v)", back["schema"], err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// A setup that fails after making the load (a gateway that cannot bind)
// closes a load that never started: close must not wait for it.
func TestFaultLoadCloseNeverStarted(t *testing.T) {
	l := newFaultLoad([]string{"127.0.0.1:1"}, 10, faultsSlowMs)
	closed := make(chan struct{})
	go func() {
		l.close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("close of a load never started did not return")
	}
}

package demo

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/harness/harnesstest"
	"github.com/zkgate/zkgate/internal/procgroup"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/register"
)

// TestDemoWatchZkgate runs `zkgate demo --quick --modes
// watch,spring,zkgate --zk …` end to end (with shorter pre-roll, tail,
// sleep and start-up) against a real ZooKeeper, with the default jvm
// backends as real processes of a freshly built zkgate binary: each
// restart takes at least the start-up time, the zkgate and spring modes
// lose nothing although every backend comes back on a new port, and the
// run's subtree is gone afterwards.
func TestDemoWatchZkgate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper and processes")
	}
	zktest.RequireZooKeeper(t)
	bin := harnesstest.BuildZkgate(t)
	zkc := zktest.Start(t)
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "demo.json")
	timing := QuickTiming()
	timing.PreRoll, timing.Tail = 500*time.Millisecond, 500*time.Millisecond
	timing.StepTimeout = 30 * time.Second
	timing.Sleep = time.Second
	const startup = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, prog testutil.SyncBuffer
	start := time.Now()
	rep, err := Run(ctx, Options{
		ZooKeeper: zkc.Servers(), Quick: true, Modes: []Mode{ModeWatch, ModeSpring, ModeZkgate}, JSONPath: jsonPath,
		BackendStartup: startup,
		Binary:         bin, Dir: filepath.Join(dir, "run"), Out: &out, Progress: &prog, Timing: &timing,
	})
	t.Logf("demo took %s; progress:\n%s", time.Since(start).Round(time.Millisecond), prog.String())
	if err != nil {
		t.Fatalf("Run: %v\nlog tail: %s", err, procgroup.LogTail(filepath.Join(dir, "run", "demo.log"), 20))
	}
	t.Logf("table:\n%s", out.String())
	if len(rep.Modes) != 3 || rep.Backend != string(BackendJVM) || rep.BackendStartupSeconds != 1 {
		t.Fatalf("backend %q (%v s), modes: %+v", rep.Backend, rep.BackendStartupSeconds, rep.Modes)
	}
	for _, m := range rep.Modes {
		if m.Error != "" || m.Requests < 100 || len(m.InstanceSeconds) != backends || m.RolloutSeconds <= 0 ||
			len(m.RestartSeconds) != backends || !strings.Contains(m.Shutdown, "new port") {
			t.Errorf("mode %s: %+v", m.Mode, m)
		}
		for _, r := range m.RestartSeconds {
			if r < startup.Seconds() {
				t.Errorf("mode %s: a restart took %v s, less than the start-up time", m.Mode, r)
			}
		}
	}
	if w := rep.Modes[0]; !strings.HasPrefix(w.Shutdown, "SIGKILL") {
		t.Errorf("watch mode stops with %q, want SIGKILL", w.Shutdown)
	}
	if sp := rep.Modes[1]; sp.Mode != string(ModeSpring) || sp.Failed != 0 || !strings.HasPrefix(sp.Shutdown, "SIGTERM (graceful)") {
		t.Errorf("spring mode: %+v", sp)
	}
	zk := rep.Modes[2]
	if zk.Mode != string(ModeZkgate) || zk.Failed != 0 {
		t.Errorf("zkgate mode lost requests: %+v", zk)
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	rows := checkContract(t, data, 3)
	if rows["zkgate"]["failed"] != 0.0 || rows["zkgate"]["requests"] != float64(zk.Requests) {
		t.Errorf("JSON zkgate row: %v", rows["zkgate"])
	}
	if !strings.Contains(out.String(), "zkgate") || !strings.Contains(out.String(), "JSON report: "+jsonPath) {
		t.Errorf("table:\n%s", out.String())
	}
	sess, err := zksession.Connect(zksession.Config{Servers: zkc.Servers(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if ok, _, err := sess.Exists(ctx, demoRoot); err != nil || ok {
		t.Errorf("%s still exists after the run (err %v)", demoRoot, err)
	}
	if kids := children(t, zkc.PID(0)); len(kids) > 0 {
		t.Errorf("child processes left running: %v", kids)
	}
}

// children lists the live child processes of this process but except
// (Linux; nil elsewhere).
func children(t *testing.T, except int) []string {
	t.Helper()
	if runtime.GOOS != "linux" {
		return nil
	}
	procs, err := testutil.LiveProcs()
	if err != nil {
		t.Fatalf("listing processes: %v", err)
	}
	var out []string
	for _, p := range procs {
		if p.PPID == os.Getpid() && p.PID != except {
			out = append(out, strconv.Itoa(p.PID)+" "+p.Head)
		}
	}
	return out
}

// TestSetStatusOutOfService: the spring mode's step changes
// instance_status in a real registration node (written by package
// register, in Curator's format) and nothing else, and reports an address
// that is not registered.
func TestSetStatusOutOfService(t *testing.T) {
	zktest.RequireZooKeeper(t)
	zkc := zktest.Start(t)
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg, err := register.Register(ctx, register.Options{
		Servers: zkc.Servers(), Root: "/services", Service: service, Address: "127.0.0.1:20123", Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	s := &stack{r: &run{servers: zkc.Servers(), log: log, timing: QuickTiming()}, regRoot: "/services"}
	defer s.close()
	if err := s.setStatus(ctx, "127.0.0.1:20999", statusOutOfService); err == nil || !strings.Contains(err.Error(), "no registration of 127.0.0.1:20999") {
		t.Errorf("setStatus of an unregistered address: %v", err)
	}
	if err := s.setStatus(ctx, "127.0.0.1:20123", statusOutOfService); err != nil {
		t.Fatal(err)
	}
	data, _, err := s.obs.Get(ctx, reg.Path())
	if err != nil {
		t.Fatal(err)
	}
	var inst struct {
		Address string `json:"address"`
		Port    int    `json:"port"`
		Payload struct {
			Metadata map[string]string `json:"metadata"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(data, &inst); err != nil {
		t.Fatal(err)
	}
	if inst.Payload.Metadata["instance_status"] != statusOutOfService || inst.Address != "127.0.0.1" || inst.Port != 20123 {
		t.Errorf("node after setStatus: %s", data)
	}
}

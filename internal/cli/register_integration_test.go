package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/harness"
	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/samplebackend"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
)

const testToken = "t0ken"

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// writeTestConfig writes a configuration for one gateway and one
// controller on free ports, following the ensemble at servers.
func writeTestConfig(t *testing.T, servers []string) (string, *config.Config) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "zkgate.yaml")
	if err := harness.StackConfig(servers, "gw-test", testToken).Write(p); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, cfg
}

// eventually waits at most 30 s until cond returns nil; a test that times
// out says cond's last error.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	testutil.EventuallyNil(t, 30*time.Second, what, cond)
}

// observe connects a session to the ensemble, closed when the test ends,
// and creates /services/orders: a registry in use has its root already.
// (Started on an empty ensemble, a gateway's cache may miss the root's
// creation until its next resync: zktree's watchRootCreation ignores a
// root that appeared between its list and its ExistsW.)
func observe(t *testing.T, ctx context.Context, servers []string) *zksession.Session {
	t.Helper()
	obs := zktest.Session(t, zksession.Config{Servers: servers, Logger: quietLogger()})
	if err := obs.EnsurePath(ctx, "/services/orders", nil); err != nil {
		t.Fatal(err)
	}
	return obs
}

// startController starts a controller on cfg, closed when the test ends.
func startController(t *testing.T, ctx context.Context, cfg *config.Config) *controller.Controller {
	t.Helper()
	ctl, err := controller.Start(ctx, cfg, controller.Options{Logger: quietLogger(), ID: "ctl-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Close)
	return ctl
}

// findRegistration returns the registration of addr in service orders as
// obs sees it (ok false: none).
func findRegistration(ctx context.Context, obs *zksession.Session, addr string) (in registry.Instance, ok bool, err error) {
	kids, _, err := obs.Children(ctx, "/services/orders")
	if err != nil {
		return in, false, err
	}
	for _, k := range kids {
		data, st, err := obs.Get(ctx, "/services/orders/"+k)
		if err != nil {
			continue // deleted meanwhile
		}
		if in, err := (registry.CuratorParser{}).Parse("orders", k, data, registry.NodeStat{Czxid: st.Czxid}); err == nil && in.Addr == addr {
			return in, true, nil
		}
	}
	return in, false, nil
}

// TestRegisterSidecarDrainsThenDeregisters runs the whole service side
// against real ZooKeeper, a real controller and a real gateway: two sample
// backends behind `zkgate register` sidecars; one sidecar is told to stop
// while a slow request to its instance is in flight and GET and POST load
// runs through the gateway. The traffic proves the sequence: the slow
// request completes, no request fails, and the registration disappears only
// once the gateway has nothing in flight to the instance.
func TestRegisterSidecarDrainsThenDeregisters(t *testing.T) {
	zk := zktest.Start(t)
	cfgPath, cfg := writeTestConfig(t, zk.Servers())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	log := quietLogger()

	// Follow a's registration the way a gateway would, and note what was
	// in flight to a when it disappeared.
	obs := observe(t, ctx, zk.Servers())
	ctl := startController(t, ctx, cfg)
	gw, err := gatewayd.Start(ctx, cfg, gatewayd.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		_ = gw.Shutdown(sctx)
	}()

	backends := map[string]*samplebackend.Backend{}
	for _, name := range []string{"a", "b"} {
		b, err := samplebackend.Start(ctx, samplebackend.Options{Name: name, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Kill()
		backends[name] = b
	}
	a, b := backends["a"], backends["b"]

	type sidecar struct {
		stop   context.CancelFunc
		exited chan struct{}
		code   int
		errb   *testutil.SyncBuffer
	}
	sidecars := map[string]*sidecar{}
	for name, be := range backends {
		sctx, stop := context.WithCancel(ctx)
		sc := &sidecar{stop: stop, exited: make(chan struct{}), errb: &testutil.SyncBuffer{}}
		go func() {
			defer close(sc.exited)
			sc.code = cmd("register")(sctx, []string{"--config", cfgPath, "--service", "orders", "--address", be.Addr(),
				"--metadata", "zone=" + name, "--controller", ctl.URL(), "--token", testToken, "--drain-timeout", "20s"},
				io.Discard, sc.errb)
		}()
		sidecars[name] = sc
	}
	defer func() {
		// Before the controller and the gateway go away.
		for _, sc := range sidecars {
			sc.stop()
			<-sc.exited
		}
	}()

	client := &http.Client{Timeout: 30 * time.Second}
	base := "http://" + gw.ProxyAddr() + "/orders"
	get := func(path string) (string, error) {
		resp, err := client.Get(base + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return resp.Header.Get(samplebackend.HeaderInstance), nil
	}

	// The gateway reads both sidecars' registrations and routes to both.
	seen := map[string]bool{}
	eventually(t, "the gateway to route to both registered instances", func() error {
		name, err := get("/hello")
		if err != nil {
			return err
		}
		seen[name] = true
		if !seen["a"] || !seen["b"] {
			return fmt.Errorf("seen %v", seen)
		}
		return nil
	})

	// Park a slow request on a. Least-requests balancing sends a second
	// concurrent request to the other instance, so a few suffice.
	var slowWG sync.WaitGroup
	slowErrs := make(chan error, 16)
	var slowAtA atomic.Int64
	for i := 0; a.InFlight() == 0; i++ {
		if i == 8 {
			t.Fatal("could not get a slow request in flight to instance a")
		}
		before := a.InFlight() + b.InFlight()
		slowWG.Add(1)
		go func() {
			defer slowWG.Done()
			name, err := get("/slow?latency=1500ms")
			if err != nil {
				slowErrs <- err
			}
			if name == "a" {
				slowAtA.Add(1)
			}
		}()
		eventually(t, "the slow request to arrive", func() error {
			if a.InFlight()+b.InFlight() <= before {
				return fmt.Errorf("in flight a=%d b=%d", a.InFlight(), b.InFlight())
			}
			return nil
		})
	}
	parkedOnA := a.InFlight()

	// GET and POST load through the gateway for the whole sequence.
	var ok, failed atomic.Int64
	var failMu sync.Mutex
	var failures []string
	stopLoad := make(chan struct{})
	var loadWG sync.WaitGroup
	for w := 0; w < 2; w++ {
		loadWG.Add(1)
		go func() {
			defer loadWG.Done()
			for i := 0; ; i++ {
				select {
				case <-stopLoad:
					return
				default:
				}
				var err error
				if i%2 == 0 {
					_, err = get(fmt.Sprintf("/load/%d", i))
				} else {
					err = postCheck(client, base+"/load", fmt.Sprintf("payload %d %s", i, strings.Repeat("x", i%1000)))
				}
				if err != nil {
					failed.Add(1)
					failMu.Lock()
					failures = append(failures, err.Error())
					failMu.Unlock()
				} else {
					ok.Add(1)
				}
			}
		}()
	}

	registered := func(addr string) (bool, error) {
		_, ok, err := findRegistration(ctx, obs, addr)
		return ok, err
	}
	if r, err := registered(a.Addr()); err != nil || !r {
		t.Fatalf("a not registered before the stop: %v", err)
	}

	// SIGTERM to a's sidecar.
	sidecars["a"].stop()
	var inFlightAtDeletion, requestsAtDeletion int64 = -1, -1
	eventually(t, "a's registration to disappear", func() error {
		r, err := registered(a.Addr())
		if err != nil {
			return err
		}
		if r {
			return fmt.Errorf("still registered (a in flight %d)", a.InFlight())
		}
		inFlightAtDeletion, requestsAtDeletion = a.InFlight(), a.Requests()
		return nil
	})
	select {
	case <-sidecars["a"].exited:
		if code := sidecars["a"].code; code != 0 {
			t.Fatalf("sidecar a exited %d: %s", code, sidecars["a"].errb)
		}
	case <-ctx.Done():
		t.Fatal("sidecar a did not exit")
	}
	slowWG.Wait()

	// The orchestrator now kills the process; the load goes on.
	a.Kill()
	target := ok.Load() + 100
	eventually(t, "more load after a was killed", func() error {
		if ok.Load() < target {
			return fmt.Errorf("%d ok", ok.Load())
		}
		return nil
	})
	close(stopLoad)
	loadWG.Wait()
	close(slowErrs)

	for err := range slowErrs {
		t.Errorf("slow request failed: %v", err)
	}
	if slowAtA.Load() != parkedOnA {
		t.Errorf("%d slow request(s) were parked on a, %d completed there", parkedOnA, slowAtA.Load())
	}
	if inFlightAtDeletion != 0 {
		t.Errorf("a's registration was deleted with %d request(s) in flight to a: deregistered before the drain finished", inFlightAtDeletion)
	}
	if got := a.Requests(); got != requestsAtDeletion {
		t.Errorf("a received %d request(s) after its registration was deleted", got-requestsAtDeletion)
	}
	if n := failed.Load(); n > 0 {
		failMu.Lock()
		t.Errorf("%d of %d load requests failed, e.g. %q", n, n+ok.Load(), failures[0])
		failMu.Unlock()
	}
	t.Logf("load: %d requests ok; %d slow request(s) on a completed during the drain", ok.Load(), slowAtA.Load())
	if st := sidecars["a"].errb.String(); !strings.Contains(st, "drain confirmed") {
		t.Errorf("sidecar a's log does not show a confirmed drain:\n%s", st)
	}
}

// postCheck POSTs body and checks the backend received it intact.
func postCheck(c *http.Client, url, body string) error {
	resp, err := c.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST: %s", resp.Status)
	}
	var rep samplebackend.Reply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return fmt.Errorf("POST: decoding reply: %w", err)
	}
	if rep.Bytes != int64(len(body)) {
		return fmt.Errorf("POST: backend got %d bytes, sent %d", rep.Bytes, len(body))
	}
	return nil
}

func TestSampleBackendCommand(t *testing.T) {
	zk := zktest.Start(t)
	cfgPath, _ := writeTestConfig(t, zk.Servers())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	obs := observe(t, ctx, zk.Servers())

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var out, errb testutil.SyncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- cmd("sample-backend")(runCtx, []string{"--config", cfgPath, "--service", "orders", "--name", "sb-1",
			"--latency", "1ms", "--metadata", "zone=z", "--log-level", "error"}, &out, &errb)
	}()
	var addr string
	eventually(t, "the address on stdout", func() error {
		addr = strings.TrimSpace(out.String())
		if addr == "" {
			return fmt.Errorf("nothing yet (stderr %q)", errb.String())
		}
		return nil
	})
	resp, err := http.Get("http://" + addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(samplebackend.HeaderInstance) != "sb-1" {
		t.Fatalf("GET: %s %v", resp.Status, resp.Header)
	}
	find := func() (registry.Instance, bool) {
		in, ok, _ := findRegistration(ctx, obs, addr)
		return in, ok
	}
	in, ok := find()
	if !ok || in.Metadata["zone"] != "z" || in.Metadata["sample_backend"] != "sb-1" {
		t.Fatalf("registration %+v (found %v)", in, ok)
	}
	stop()
	if code := <-exited; code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	eventually(t, "the registration to go with the session", func() error {
		if _, ok := find(); ok {
			return fmt.Errorf("still registered")
		}
		return nil
	})
}

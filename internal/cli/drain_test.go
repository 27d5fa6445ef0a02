package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/zktest"
)

// fakeController answers drains with the given status and records the
// requests.
type fakeController struct {
	*httptest.Server
	mu       sync.Mutex
	requests []ctlclient.DrainRequest
	auth     []string
	status   string
}

func newFakeController(t *testing.T, status string) *fakeController {
	t.Helper()
	f := &fakeController{status: status}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/services/{service}/instances/{addr}/drain", func(w http.ResponseWriter, r *http.Request) {
		var req ctlclient.DrainRequest
		json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		f.requests = append(f.requests, req)
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(ctlclient.ErrorResponse{Error: "this token is not allowed to do this"})
			return
		}
		third := ctlclient.GatewayDrain{ID: "gw-3", State: "lost"}
		if f.status == ctlclient.StatusDrained {
			// A confirmed drain never has a lost gateway; a gone one
			// (crashed, shut down) is listed but was not waited for.
			third.State = ctlclient.GatewayGone
		}
		resp := ctlclient.DrainResponse{
			Service: r.PathValue("service"), Addr: r.PathValue("addr"), Status: f.status,
			Confirmed: f.status == ctlclient.StatusDrained, ElapsedMs: 43,
			Gateways: []ctlclient.GatewayDrain{{ID: "gw-1", State: "drained"}, {ID: "gw-2", State: "drained"}, third},
			Message:  "not confirmed: gateway(s) gw-3 lost their ZooKeeper session during the drain",
		}
		json.NewEncoder(w).Encode(resp)
	})
	mux.HandleFunc("DELETE /v1/services/{service}/instances/{addr}/drain", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(ctlclient.UndrainResponse{Service: r.PathValue("service"), Addr: r.PathValue("addr"), Removed: r.PathValue("addr") == "10.0.0.5:8080"})
	})
	mux.HandleFunc("GET /v1/gateways", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(ctlclient.GatewaysResponse{
			Gateways: []ctlclient.GatewayView{
				{ID: "gw-1", Listen: "10.0.1.1:8080", Version: "v1", ProbeReady: true, UpdatedMs: time.Now().UnixMilli()},
				{ID: "gw-2", Listen: "10.0.1.2:8080", Version: "v1", ProbeNote: `gateway "gw-1" names the same admin address 127.0.0.1:9080`},
			},
			Departed: []ctlclient.DepartedGateway{{ID: "gw-3", DepartedMs: time.Now().Add(-5 * time.Second).UnixMilli(), Probe: "not probed: never seen"}},
		})
	})
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(ctlclient.ServicesResponse{Services: []ctlclient.ServiceSummary{{Name: "orders", Instances: 2}}})
	})
	mux.HandleFunc("GET /v1/services/{service}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("service") != "orders" {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(ctlclient.ErrorResponse{Error: "service \"nope\" has no instances and no marks"})
			return
		}
		json.NewEncoder(w).Encode(ctlclient.ServiceResponse{Service: "orders", Instances: []ctlclient.InstanceView{
			{Service: "orders", Addr: "10.0.0.5:8080", State: "drained", Registered: true, Status: "UP", Marked: true,
				Mark:     &ctlclient.MarkView{Reason: "release 4711", By: "ci", ExpiresMs: time.Now().Add(10 * time.Minute).UnixMilli()},
				Gateways: []ctlclient.GatewayInstance{{ID: "gw-1", State: "drained"}, {ID: "gw-2", State: "draining", InFlight: 3}}},
			{Service: "orders", Addr: "10.0.0.6:8080", State: "serving", Registered: true, Status: "UP"},
		}})
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

// runCtl runs the command name with args.
func runCtl(name string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cmd(name)(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func assertOneLine(t *testing.T, what, s string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") {
		t.Errorf("%s: want exactly one line, got %q", what, s)
	}
}

func TestDrainExitCodesAndLines(t *testing.T) {
	drained := newFakeController(t, ctlclient.StatusDrained)
	base := []string{"--service", "orders", "--instance", "10.0.0.5:8080", "--reason", "release 4711", "--token", "tok"}

	code, out, errs := runCtl("drain", append(base, "--controller", drained.URL, "--min-wait", "2s", "--ttl", "5m")...)
	if code != 0 || !regexp.MustCompile(`^drained orders/10\.0\.0\.5:8080 in \d+ms \(2 gateways; gone, not waited for: gw-3\)\n$`).MatchString(out) || errs != "" {
		// gw-3 is gone: listed, not counted among the gateways waited for.
		t.Fatalf("drained: code %d out %q err %q", code, out, errs)
	}
	req := drained.requests[0]
	if !req.Wait || req.Timeout != "2m0s" || req.MinWait != "2s" || req.TTL != "5m0s" || req.Reason != "release 4711" {
		t.Errorf("request %+v", req)
	}

	lost := newFakeController(t, ctlclient.StatusLost)
	code, out, errs = runCtl("drain", append(base, "--controller", lost.URL)...)
	if code != 2 || out != "" || !strings.Contains(errs, "gw-3 lost") {
		t.Fatalf("lost: code %d out %q err %q", code, out, errs)
	}
	assertOneLine(t, "lost", errs)

	timeout := newFakeController(t, ctlclient.StatusTimeout)
	code, out, _ = runCtl("drain", append(base, "--controller", timeout.URL, "--json")...)
	if code != 2 {
		t.Fatalf("timeout: code %d", code)
	}
	var resp ctlclient.DrainResponse
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Status != ctlclient.StatusTimeout {
		t.Fatalf("--json output %q: %v", out, err)
	}

	marked := newFakeController(t, ctlclient.StatusMarked)
	code, out, _ = runCtl("drain", append(base, "--controller", marked.URL, "--wait=false")...)
	if code != 0 || !strings.HasPrefix(out, "marked orders/10.0.0.5:8080") || marked.requests[0].Wait || marked.requests[0].Timeout != "" {
		t.Fatalf("no wait: code %d out %q req %+v", code, out, marked.requests[0])
	}

	// Address and token from the environment.
	t.Setenv("ZKGATE_CONTROLLER", drained.URL)
	t.Setenv("ZKGATE_TOKEN", "tok")
	code, _, errs = runCtl("drain", "--service", "orders", "--instance", "10.0.0.5:8080", "--reason", "env")
	if code != 0 || drained.auth[len(drained.auth)-1] != "Bearer tok" {
		t.Fatalf("env: code %d err %q", code, errs)
	}
}

func TestUndrainAndStatus(t *testing.T) {
	f := newFakeController(t, ctlclient.StatusDrained)
	code, out, _ := runCtl("undrain", "--controller", f.URL, "--service", "orders", "--instance", "10.0.0.5:8080")
	if code != 0 || out != "undrained orders/10.0.0.5:8080\n" {
		t.Fatalf("undrain: %d %q", code, out)
	}
	code, out, _ = runCtl("undrain", "--controller", f.URL, "--service", "orders", "--instance", "10.0.0.9:8080")
	if code != 0 || out != "orders/10.0.0.9:8080 was not drained\n" {
		t.Fatalf("undrain unmarked: %d %q", code, out)
	}
	for _, args := range [][]string{{"--controller", f.URL}, {"--controller", f.URL, "--service", "orders"}} {
		code, out, errs := runCtl("status", args...)
		if code != 0 {
			t.Fatalf("status %v: %d %q", args, code, errs)
		}
		services, gateways, all := strings.Cut(out, "\n\n")
		if all != (len(args) == 2) {
			t.Fatalf("status %v: a gateways table %v, want it only without --service:\n%s", args, all, out)
		}
		if all {
			g := strings.Split(strings.TrimSpace(gateways), "\n")
			if len(g) != 4 || !strings.HasPrefix(g[0], "GATEWAY") || !strings.Contains(g[1], "gw-1") || !strings.HasSuffix(g[1], "ready") ||
				!strings.Contains(g[2], `no: gateway "gw-1" names the same admin address`) ||
				!strings.Contains(g[3], "departed gw-3 5s ago: may still route by its last state") || !strings.Contains(g[3], "not probed") {
				t.Fatalf("gateways table:\n%s", gateways)
			}
		}
		lines := strings.Split(strings.TrimSpace(services), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "SERVICE") ||
			!strings.Contains(lines[1], "10.0.0.5:8080") || !strings.Contains(lines[1], "release 4711 (by ci)") ||
			!strings.Contains(lines[1], "gw-2:draining(3)") || !strings.Contains(lines[2], "serving") {
			t.Fatalf("status table:\n%s", out)
		}
	}
}

// End to end: `zkgate controller` against a real ZooKeeper, then drain,
// status and undrain through the CLI, then a clean shutdown.
func TestControllerCommandEndToEnd(t *testing.T) {
	zc := zktest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := filepath.Join(t.TempDir(), "zkgate.yaml")
	yaml := "zookeeper:\n  servers: [" + strings.Join(zc.Servers(), ",") + "]\n  session_timeout: 4s\n" +
		"controller:\n  listen: " + addr + "\n  tokens: [tok]\n"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var logs bytes.Buffer
	var logMu sync.Mutex
	go func() {
		done <- cmd("controller")(ctx, []string{"--config", p, "--id", "ctl-e2e"}, discardWriter{}, lockedBuffer{&logMu, &logs})
	}()
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("controller never became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// An instance registered by host name, as Spring Cloud Zookeeper does.
	conn, _, err := zk.Connect(zc.Servers(), 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, p := range []string{"/services", "/services/orders"} {
		if _, err := conn.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && err != zk.ErrNodeExists {
			t.Fatal(err)
		}
	}
	if _, err := conn.Create("/services/orders/u-1", []byte(`{"name":"orders","id":"u-1","address":"localhost","port":18084,"registrationTimeUTC":1}`),
		zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	// An address no registration has: refused in one line naming the
	// registered ones, nothing written.
	code, out, errs := runCtl("drain", "--controller", url, "--token", "tok", "--service", "orders", "--instance", "10.0.0.5:8080", "--reason", "e2e", "--timeout", "20s")
	if code != 1 || out != "" || !strings.Contains(errs, "10.0.0.5:8080 is not registered") || !strings.Contains(errs, "registered: localhost:18084") {
		t.Fatalf("drain of an unregistered address: %d %q %q", code, out, errs)
	}
	assertOneLine(t, "refused drain", errs)
	if ok, _, _ := conn.Exists("/zkgate/marks/orders/10.0.0.5:8080"); ok {
		t.Fatal("a refused drain wrote a mark")
	}
	// The registered instance, spelled by IP: drained under its name.
	code, out, errs = runCtl("drain", "--controller", url, "--token", "tok", "--service", "orders", "--instance", "127.0.0.1:18084", "--reason", "e2e", "--timeout", "20s")
	if code != 0 || !strings.HasPrefix(out, "drained orders/localhost:18084 in ") {
		t.Fatalf("drain by IP: %d %q %q", code, out, errs)
	}
	code, out, errs = runCtl("drain", "--controller", url, "--token", "tok", "--service", "orders", "--instance", "10.0.0.5:8080", "--reason", "e2e", "--timeout", "20s", "--allow-absent")
	if code != 0 || !strings.HasPrefix(out, "drained orders/10.0.0.5:8080 in ") || !strings.Contains(out, "(0 gateways)") ||
		!strings.Contains(errs, "warning: 10.0.0.5:8080 is not registered") {
		t.Fatalf("drain: %d %q %q", code, out, errs)
	}
	code, out, errs = runCtl("status", "--controller", url)
	if code != 0 || !strings.Contains(out, "10.0.0.5:8080") || !strings.Contains(out, "absent") || !strings.Contains(out, "e2e") {
		t.Fatalf("status: %d %q %q", code, out, errs)
	}
	code, out, _ = runCtl("undrain", "--controller", url, "--token", "tok", "--service", "orders", "--instance", "10.0.0.5:8080")
	if code != 0 || out != "undrained orders/10.0.0.5:8080\n" {
		t.Fatalf("undrain: %d %q", code, out)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			logMu.Lock()
			t.Fatalf("controller exited %d:\n%s", code, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("controller did not stop")
	}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

type lockedBuffer struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A drain or undrain whose outcome the controller cannot tell exits 1 with
// one line saying so.
func TestDrainOutcomeUnknown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(ctlclient.ErrorResponse{
			Error:   "outcome unknown: the mark of orders/10.0.0.5:8080 may or may not be written (writing the mark)",
			Outcome: ctlclient.OutcomeUnknown,
		})
	}))
	defer srv.Close()
	code, out, errs := runCtl("drain", "--controller", srv.URL, "--service", "orders", "--instance", "10.0.0.5:8080", "--reason", "r")
	if code != 1 || out != "" || !strings.HasPrefix(errs, "zkgate drain: outcome unknown: orders/10.0.0.5:8080 may or may not be marked") {
		t.Fatalf("drain: code %d out %q err %q", code, out, errs)
	}
	assertOneLine(t, "drain outcome unknown", errs)
	code, out, errs = runCtl("undrain", "--controller", srv.URL, "--service", "orders", "--instance", "10.0.0.5:8080")
	if code != 1 || out != "" || !strings.HasPrefix(errs, "zkgate undrain: outcome unknown:") {
		t.Fatalf("undrain: code %d out %q err %q", code, out, errs)
	}
	assertOneLine(t, "undrain outcome unknown", errs)
}

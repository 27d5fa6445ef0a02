package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
)

// drainStub answers the controller's drain endpoint with a fixed status.
type drainStub struct {
	status string
	code   int // HTTP status when not 200

	mu    sync.Mutex
	paths []string
	reqs  []ctlclient.DrainRequest
	auth  []string
}

func (d *drainStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req ctlclient.DrainRequest
	_ = json.NewDecoder(r.Body).Decode(&req)
	d.mu.Lock()
	d.paths = append(d.paths, r.Method+" "+r.URL.EscapedPath())
	d.reqs = append(d.reqs, req)
	d.auth = append(d.auth, r.Header.Get("Authorization"))
	d.mu.Unlock()
	if d.code != 0 {
		w.WriteHeader(d.code)
		json.NewEncoder(w).Encode(ctlclient.ErrorResponse{Error: "no such thing"})
		return
	}
	json.NewEncoder(w).Encode(ctlclient.DrainResponse{Status: d.status, Confirmed: d.status == ctlclient.StatusDrained, Message: "because"})
}

func runRegister(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := cmd("register")(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRegisterPreStopExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stub   *drainStub
		code   int
		output string
	}{
		{"drained", &drainStub{status: ctlclient.StatusDrained}, 0, "drained orders/10.0.0.7:8080"},
		{"timeout", &drainStub{status: ctlclient.StatusTimeout}, 2, "not confirmed"},
		{"lost", &drainStub{status: ctlclient.StatusLost}, 2, "not confirmed"},
		{"error", &drainStub{code: http.StatusNotFound}, 1, "404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.stub)
			defer srv.Close()
			t.Setenv("ZKGATE_TOKEN", "from-env")
			code, out, errOut := runRegister(t, "--pre-stop", "--service", "orders", "--address", "10.0.0.7:8080",
				"--controller", srv.URL, "--drain-timeout", "5s", "--log-level", "error")
			if code != tc.code || !strings.Contains(out+errOut, tc.output) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d mentioning %q", code, out, errOut, tc.code, tc.output)
			}
			if tc.code == 1 && strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Fatalf("error is not one line: %q", errOut)
			}
			tc.stub.mu.Lock()
			defer tc.stub.mu.Unlock()
			if len(tc.stub.paths) != 1 || tc.stub.paths[0] != "PUT /v1/services/orders/instances/10.0.0.7:8080/drain" {
				t.Fatalf("controller calls %q", tc.stub.paths)
			}
			r := tc.stub.reqs[0]
			if !r.Wait || r.Timeout != "5s" || r.Reason != "pre-stop" || tc.stub.auth[0] != "Bearer from-env" {
				t.Fatalf("drain request %+v auth %q", r, tc.stub.auth[0])
			}
		})
	}
}

func TestMetadataFlag(t *testing.T) {
	m := metadataFlag{}
	for _, s := range []string{"zone=a", "version=1.2=beta", " team = x"} {
		if err := m.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if m["zone"] != "a" || m["version"] != "1.2=beta" || m["team"] != " x" || m.String() != "team= x,version=1.2=beta,zone=a" {
		t.Fatalf("metadata %v", m)
	}
}

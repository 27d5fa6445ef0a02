package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/harness/harnesstest"
)

func TestPlanMix(t *testing.T) {
	s := DefaultLoad()
	var posts, slow, slowPosts int
	sizes := map[int]bool{}
	const n = 10_000
	for i := int64(0); i < n; i++ {
		p := s.plan(i)
		if p != s.plan(i) {
			t.Fatalf("plan(%d) is not deterministic", i)
		}
		if p.Post {
			posts++
			if p.BodySize < s.BodyMin || p.BodySize > s.BodyMax {
				t.Fatalf("plan(%d): body size %d outside [%d, %d]", i, p.BodySize, s.BodyMin, s.BodyMax)
			}
			sizes[p.BodySize] = true
		} else if p.BodySize != 0 {
			t.Fatalf("plan(%d): a GET with a body", i)
		}
		if p.Slow {
			slow++
			if p.Post {
				slowPosts++
			}
		}
	}
	if posts != n*s.PostPercent/100 {
		t.Errorf("POSTs: %d of %d, want exactly %d%%", posts, n, s.PostPercent)
	}
	if slow != n*s.SlowPercent/100 {
		t.Errorf("slow: %d of %d, want exactly %d%%", slow, n, s.SlowPercent)
	}
	if slowPosts == 0 || slowPosts == slow {
		t.Errorf("slow requests should be GETs and POSTs alike: %d of %d are POSTs", slowPosts, slow)
	}
	if len(sizes) < 50 {
		t.Errorf("only %d distinct body sizes", len(sizes))
	}
	// Every window of 100 requests has the same mix.
	for start := int64(0); start < 300; start += 37 {
		var p, sl int
		for i := start; i < start+100; i++ {
			pl := s.plan(i)
			if pl.Post {
				p++
			}
			if pl.Slow {
				sl++
			}
		}
		if p != s.PostPercent || sl != s.SlowPercent {
			t.Errorf("window at %d: %d POSTs, %d slow; want %d, %d", start, p, sl, s.PostPercent, s.SlowPercent)
		}
	}
}

func TestClassify(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	reset := &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
	for _, tc := range []struct {
		name   string
		status int
		err    error
		want   Kind
	}{
		{"ok", 200, nil, KindOK},
		{"502", 502, nil, Kind5xx},
		{"503", 503, nil, Kind5xx},
		{"504", 504, nil, Kind5xx},
		{"404", 404, nil, KindOther},
		{"201 is not what the backend answers", 201, nil, KindOther},
		{"refused", 0, refused, KindRefused},
		{"reset", 0, reset, KindReset},
		{"broken pipe", 0, fmt.Errorf("write: %w", syscall.EPIPE), KindReset},
		{"EOF", 0, &url.Error{Op: "Post", URL: "http://x", Err: io.EOF}, KindReset},
		{"cut body", 200, io.ErrUnexpectedEOF, KindReset},
		{"deadline", 0, &url.Error{Op: "Get", URL: "http://x", Err: context.DeadlineExceeded}, KindTimeout},
		{"net timeout", 0, &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, KindTimeout},
		{"mismatch", 0, errMismatch, KindOther},
		{"other", 0, errors.New("something"), KindOther},
	} {
		if got := Classify(tc.status, tc.err); got != tc.want {
			t.Errorf("%s: Classify = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRecorderAccounting(t *testing.T) {
	r := &recorder{}
	kinds := []Kind{KindOK, KindOK, KindRefused, KindReset, Kind5xx, Kind5xx, KindTimeout, KindOther, KindOK}
	for i, k := range kinds {
		r.record(i%3 == 0, k, time.Duration(i+1)*time.Millisecond)
	}
	s := r.summary()
	if s.Requests != int64(len(kinds)) || s.OK != 3 {
		t.Fatalf("requests %d ok %d, want %d and 3", s.Requests, s.OK, len(kinds))
	}
	want := Failures{Refused: 1, Reset: 1, HTTP5xx: 2, Timeout: 1, Other: 1}
	if s.Failed != want || s.Failed.Total() != 6 {
		t.Errorf("failures %+v, want %+v", s.Failed, want)
	}
	if s.GET.Requests+s.POST.Requests != s.Requests || s.GET.Failed+s.POST.Failed != s.Failed.Total() {
		t.Errorf("methods do not add up: GET %+v POST %+v", s.GET, s.POST)
	}
	if s.POST.Requests != 3 { // i = 0, 3, 6
		t.Errorf("POST requests %d, want 3", s.POST.Requests)
	}
	if s.P50 != 5*time.Millisecond || s.P99 != 9*time.Millisecond {
		t.Errorf("p50 %v p99 %v, want 5ms and 9ms", s.P50, s.P99)
	}
	if req, failed := r.counts(); req != 9 || failed != 6 {
		t.Errorf("counts %d/%d, want 9/6", req, failed)
	}
}

func TestPercentile(t *testing.T) {
	if percentile(nil, 0.5) != 0 {
		t.Error("empty")
	}
	v := make([]time.Duration, 100)
	for i := range v {
		v[i] = time.Duration(i + 1)
	}
	if p := percentile(v, 0.5); p != 50 {
		t.Errorf("p50 = %d", p)
	}
	if p := percentile(v, 0.99); p != 99 {
		t.Errorf("p99 = %d", p)
	}
	if p := percentile(v[:1], 0.99); p != 1 {
		t.Errorf("one value: %d", p)
	}
}

// TestLoadGenAgainstServer runs the generator against a local server that
// fails in known ways and checks the accounting.
func TestLoadGenAgainstServer(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost && len(body)%2 == 1 {
			http.Error(w, "odd", http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, `{"method":%q,"bytes":%d}`, r.Method, len(body))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	spec := DefaultLoad()
	spec.Rate = 500
	lg := newLoadGen(spec, "http://"+ln.Addr().String()+"/demo/")
	stop, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	lg.run(stop, context.Background())
	s := lg.rec.summary()
	if s.Requests < 100 {
		t.Fatalf("only %d requests in 400ms at 500/s", s.Requests)
	}
	var oddPosts int64
	for i := int64(0); i < s.Requests; i++ {
		if p := spec.plan(i); p.Post && p.BodySize%2 == 1 {
			oddPosts++
		}
	}
	if s.Failed.HTTP5xx != oddPosts || s.Failed.Total() != oddPosts {
		t.Errorf("failures %+v, want %d 5xx (the odd-sized POSTs)", s.Failed, oddPosts)
	}
	if s.POST.Failed != oddPosts || s.GET.Failed != 0 {
		t.Errorf("GET %+v POST %+v", s.GET, s.POST)
	}
}

func sampleReport() *Report {
	spec := DefaultLoad()
	mk := func(m Mode, failed Failures, total time.Duration, per ...time.Duration) ModeResult {
		s := LoadSummary{Requests: 1000, Failed: failed, P50: 5800 * time.Microsecond, P99: 812 * time.Millisecond}
		s.OK = s.Requests - failed.Total()
		s.GET = MethodCount{Requests: 700, Failed: failed.Total() / 2}
		s.POST = MethodCount{Requests: 300, Failed: failed.Total() - failed.Total()/2}
		desc, note := describe(m, QuickTiming(), true)
		r := newModeResult(m, desc, s, 3*time.Second, total, per)
		r.Note = note
		r.Shutdown = "SIGTERM (graceful), back on a new port"
		r.RestartSeconds = []float64{2.25, 2.35}
		return r
	}
	return &Report{
		Date:    time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
		Quick:   true,
		Machine: Machine{OS: "linux", Arch: "amd64", CPUs: 2, CPU: "AMD EPYC", MemMB: 24105, Kernel: "6.1"},
		Load:    spec, PreRollSeconds: 1, TailSeconds: 1,
		Backend: string(BackendJVM), BackendStartupSeconds: 2,
		Modes: []ModeResult{
			mk(ModeWatch, Failures{HTTP5xx: 5, Reset: 1}, 110*time.Millisecond, 30*time.Millisecond, 25*time.Millisecond),
			mk(ModeZkgate, Failures{}, 1880*time.Millisecond, 470*time.Millisecond, 465*time.Millisecond),
		},
		Skipped: []Skipped{{Mode: "nginx", Reason: "nginx is not installed"}},
	}
}

func TestWriteTable(t *testing.T) {
	out := harnesstest.Table(t, sampleReport())
	harnesstest.Contains(t, "table", out,
		"2026-11-25 10:00 UTC",
		"linux/amd64, 2 CPUs (AMD EPYC), 23.5 GB RAM, kernel 6.1",
		"400 req/s, 70% GET / 30% POST",
		"backend: jvm (like Spring Boot on Kubernetes): 2 s to start before registering",
		"stop: SIGTERM (graceful), back on a new port",
		"--quick",
		"nginx:  skipped: nginx is not installed",
		"(1 s before the first restart to 1 s after the last)",
	)
	if strings.Contains(out, "sleeps") {
		t.Errorf("the notes mention the sleep mode, which did not run:\n%s", out)
	}
	lines := strings.Split(out, "\n")
	var header, watch, zk string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "mode "):
			header = l
		case strings.HasPrefix(l, "watch "):
			watch = l
		case strings.HasPrefix(l, "zkgate "):
			zk = l
		}
	}
	if header == "" || watch == "" || zk == "" {
		t.Fatalf("rows missing:\n%s", out)
	}
	// Right-aligned columns end where their headers end.
	for _, col := range []string{"requests", "failed", "5xx", "failure rate", "p99", "restart", "rollout"} {
		end := strings.Index(header, col) + len(col)
		if end > len(watch) || watch[end-1] == ' ' || (end < len(watch) && watch[end] != ' ') {
			t.Errorf("column %q misaligned:\n%s\n%s", col, header, watch)
		}
	}
	for _, want := range []string{"1,000", "0.60%", "5.8 ms", "812 ms", "2.30 s", "0.03 s", "0.11 s"} {
		if !strings.Contains(watch, want) {
			t.Errorf("watch row lacks %q: %s", want, watch)
		}
	}
	if f := strings.Fields(zk); f[2] != "0" || f[8] != "0%" || f[len(f)-2] != "1.88" {
		t.Errorf("zkgate row: %q", zk)
	}
}

func TestJSONContract(t *testing.T) {
	data := harnesstest.JSONFile(t, sampleReport(), filepath.Join(t.TempDir(), "sub", "demo.json"))
	checkContract(t, data, 2)
	var doc struct {
		Modes []struct {
			Mode         string         `json:"mode"`
			FailedByKind map[string]int `json:"failed_by_kind"`
		} `json:"modes"`
		Skipped []Skipped `json:"skipped"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if k := doc.Modes[0].FailedByKind; k["5xx"] != 5 || k["reset"] != 1 || len(k) != 5 {
		t.Errorf("failed_by_kind %v", k)
	}
	if len(doc.Skipped) != 1 || doc.Skipped[0].Mode != "nginx" {
		t.Errorf("skipped %+v", doc.Skipped)
	}
}

// checkContract checks the --json contract: modes[] with these keys, of
// these JSON types.
func checkContract(t *testing.T, data []byte, wantModes int) map[string]map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, data)
	}
	modes, ok := doc["modes"].([]any)
	if !ok || len(modes) != wantModes {
		t.Fatalf("modes: %v", doc["modes"])
	}
	out := map[string]map[string]any{}
	for _, m := range modes {
		row := m.(map[string]any)
		if _, ok := row["mode"].(string); !ok {
			t.Errorf("mode is not a string: %v", row)
		}
		for _, k := range []string{"requests", "failed", "failure_rate", "p50_ms", "p99_ms", "rollout_seconds"} {
			if _, ok := row[k].(float64); !ok {
				t.Errorf("mode %v: key %q missing or not a number", row["mode"], k)
			}
		}
		out[row["mode"].(string)] = row
	}
	return out
}

func TestParseModes(t *testing.T) {
	got, err := ParseModes("zkgate, watch,ZKGATE,nginx")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[watch zkgate nginx]" {
		t.Errorf("got %v, want run order without duplicates", got)
	}
	for _, bad := range []string{"", ",", "watch,bogus"} {
		if _, err := ParseModes(bad); err == nil {
			t.Errorf("ParseModes(%q): no error", bad)
		}
	}
}

func TestProgressPlain(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, false)
	p.startMode(ModeWatch, 4, func() (int64, int64) { return 1234, 5 })
	p.step(1, "127.0.0.1:2", "killing and restarting")
	p.instanceDone(1, "127.0.0.1:2", 250*time.Millisecond)
	io.WriteString(p.lineWriter(), "rollout line one\nrollout ")
	p.endMode("done")
	out := b.String()
	harnesstest.Contains(t, "progress", out,
		"watch: [2/4] killing and restarting 127.0.0.1:2\n",
		"watch: [2/4] 127.0.0.1:2 back in service after 0.25 s (1,234 requests, 5 failed so far)\n",
		"watch: rollout line one\n",
		"watch: done\n",
	)
	if strings.Contains(out, "\r") || strings.Contains(out, "\x1b") {
		t.Errorf("plain progress has terminal controls: %q", out)
	}
	var nilP *progress
	nilP.step(0, "x", "y") // no panic
}

func TestBarLine(t *testing.T) {
	l := barLine(ModeZkgate, 2, 4, "draining 127.0.0.1:1", 1500*time.Millisecond, 2345, 0)
	if !strings.Contains(l, "████████░░░░░░░░ 2/4") || !strings.Contains(l, "2,345 req  0 failed  draining 127.0.0.1:1") {
		t.Errorf("bar line %q", l)
	}
}

func TestRate(t *testing.T) {
	for r, want := range map[float64]string{0: "0%", 0.00001: "<0.01%", 0.0142: "1.42%", 1: "100.00%"} {
		if got := rate(r); got != want {
			t.Errorf("rate(%v) = %q", r, got)
		}
	}
}

func TestParseBackend(t *testing.T) {
	for in, want := range map[string]Backend{"jvm": BackendJVM, " FAST ": BackendFast} {
		if got, err := ParseBackend(in); err != nil || got != want {
			t.Errorf("ParseBackend(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "tomcat"} {
		if _, err := ParseBackend(bad); err == nil {
			t.Errorf("ParseBackend(%q): no error", bad)
		}
	}
}

// TestWithStatus: the spring mode changes instance_status in the Curator
// JSON of the given address only, keeping the other fields as they were.
func TestWithStatus(t *testing.T) {
	in := []byte(`{"name":"demo","id":"6c9d2c3e","address":"127.0.0.1","port":20123,"sslPort":null,` +
		`"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance","id":"demo","name":"demo","metadata":{"instance_status":"UP","zone":"a"}},` +
		`"registrationTimeUTC":1764982000123,"serviceType":"DYNAMIC","uriSpec":{"parts":[]}}`)
	if _, ok, err := withStatus(in, "127.0.0.1:20124", statusOutOfService); ok || err != nil {
		t.Fatalf("another address matched (err %v)", err)
	}
	out, ok, err := withStatus(in, "127.0.0.1:20123", statusOutOfService)
	if !ok || err != nil {
		t.Fatalf("ok %v err %v", ok, err)
	}
	for _, want := range []string{`"instance_status":"OUT_OF_SERVICE"`, `"zone":"a"`, `"registrationTimeUTC":1764982000123`,
		`"sslPort":null`, `"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance"`, `"id":"6c9d2c3e"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("result lacks %s: %s", want, out)
		}
	}
	if _, _, err := withStatus([]byte("not json"), "127.0.0.1:1", statusOutOfService); err == nil {
		t.Error("bad JSON: no error")
	}
}

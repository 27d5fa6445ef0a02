package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zktree"
)

// waitFor is the generous deadline of every wait in these tests: they
// never assert timing, they only give up eventually.
const waitFor = 15 * time.Second

// backend is a real upstream instance.
type backend struct {
	*httptest.Server
	name string
	hits atomic.Int64
}

// newBackend starts an instance. With h nil it answers 200 with its name
// in X-Backend and the body "<name> <path>?<query>".
func newBackend(t testing.TB, name string, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{name: name}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", name)
			io.WriteString(w, name+" "+r.URL.RequestURI())
		}
	}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) addr() string { return b.Listener.Addr().String() }

// deadAddr returns a loopback address nobody listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func inst(service, addr string, czxid int64) registry.Instance {
	host, ps, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(ps)
	return registry.Instance{
		Service: service, Addr: addr, Host: host, Port: port,
		ID: "id-" + addr, Node: "node-" + addr,
		Czxid: czxid, Mzxid: czxid,
		Registered: time.Unix(1_600_000_000, 0),
		Status:     registry.StatusUp,
	}
}

func regSnap(rev uint64, ins ...registry.Instance) *registry.Snapshot {
	s := &registry.Snapshot{Info: zktree.Info{Revision: rev, Time: time.Now()}, Services: map[string][]registry.Instance{}}
	for _, in := range ins {
		s.Services[in.Service] = append(s.Services[in.Service], in)
	}
	for _, v := range s.Services {
		sort.Slice(v, func(a, b int) bool { return v[a].Addr < v[b].Addr })
	}
	return s
}

func mark(service, addr string, mzxid int64) marks.Mark {
	return marks.Mark{Reason: "deploy", By: "test", CreatedMs: 1, DeployID: "d1", Service: service, Addr: addr, Mzxid: mzxid}
}

func markSnap(rev uint64, ms ...marks.Mark) *marks.Snapshot {
	s := &marks.Snapshot{Info: zktree.Info{Revision: rev}, Marks: map[string]map[string]marks.Mark{}}
	for _, m := range ms {
		if s.Marks[m.Service] == nil {
			s.Marks[m.Service] = map[string]marks.Mark{}
		}
		s.Marks[m.Service][m.Addr] = m
	}
	return s
}

// fakeClock is Options.Now for tests that move time.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type fakeSync struct {
	ns       atomic.Int64
	detached atomic.Pointer[string]
}

func (s *fakeSync) Detached() string {
	if p := s.detached.Load(); p != nil {
		return *p
	}
	return ""
}

func (s *fakeSync) detach(why string) { s.detached.Store(&why) }

func (s *fakeSync) LastContact() time.Time {
	if n := s.ns.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

func rte(prefix, service string) config.Route {
	return config.Route{Prefix: prefix, Service: service}
}

// testGateway is a gateway serving a real loopback listener (Serve), with
// its own metrics registry.
type testGateway struct {
	*Gateway
	front *frontServer
	admin *httptest.Server
	reg   *prometheus.Registry
}

// frontServer is the gateway's proxy listener in a test.
type frontServer struct {
	URL  string // http://127.0.0.1:port
	Addr string // 127.0.0.1:port
	done chan error
}

func newTestGateway(t testing.TB, cfg config.Gateway, opts Options) *testGateway {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	if cfg.Engine == "" {
		// scripts/test.sh runs this package once per engine.
		cfg.Engine = os.Getenv("ZKGATE_TEST_ENGINE")
	}
	g, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	tg := &testGateway{Gateway: g, reg: reg}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg.front = &frontServer{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { tg.front.done <- g.Serve(ln) }()
	tg.admin = httptest.NewServer(g.AdminHandler())
	t.Cleanup(func() {
		g.Close()
		tg.admin.Close()
		select {
		case err := <-tg.front.done:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("Serve returned %v, want ErrClosed", err)
			}
		case <-time.After(waitFor):
			t.Error("Serve did not return after Close")
		}
	})
	return tg
}

// client is an HTTP client that never reuses connections across tests.
func client() *http.Client {
	return &http.Client{Timeout: waitFor, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

type result struct {
	code   int
	body   string
	header http.Header
	err    error
}

// goGet runs a GET in a goroutine (no t.Fatal there) and delivers its
// result.
func goGet(c *http.Client, url string) <-chan result {
	return goSend(func() (*http.Response, error) { return c.Get(url) })
}

// goPost runs a POST in a goroutine (no t.Fatal there) and delivers its
// result. A POST is never sent again after a cut, so each cut counts once.
func goPost(c *http.Client, url, body string) <-chan result {
	return goSend(func() (*http.Response, error) { return c.Post(url, "text/plain", strings.NewReader(body)) })
}

// goSend runs send in a goroutine and delivers the response it got, body
// read.
func goSend(send func() (*http.Response, error)) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := send()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- result{resp.StatusCode, string(b), resp.Header, err}
	}()
	return ch
}

func do(t testing.TB, c *http.Client, req *http.Request) result {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", req.URL, err)
	}
	return result{resp.StatusCode, string(b), resp.Header, nil}
}

func get(t testing.TB, c *http.Client, url string) result {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, c, req)
}

func post(t testing.TB, c *http.Client, url string, body string) result {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return do(t, c, req)
}

func decodeJSON(t testing.TB, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decoding %q: %v", s, err)
	}
}

func (tg *testGateway) status(t testing.TB, addr string) InstanceStatus {
	t.Helper()
	for _, st := range tg.InstanceStates() {
		if st.Addr == addr {
			return st
		}
	}
	return InstanceStatus{}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, waitFor, what, cond)
}

// drainChanges empties the Updates channel.
func drainChanges(g *Gateway) {
	select {
	case <-g.Updates():
	default:
	}
}

func waitChange(t testing.TB, g *Gateway) {
	t.Helper()
	select {
	case <-g.Updates():
	case <-time.After(waitFor):
		t.Fatal("Updates did not fire")
	}
}

// gate is a handler that blocks until released, and tells when a request
// arrived.
type gate struct {
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate(t testing.TB) *gate {
	g := &gate{arrived: make(chan struct{}, 100), release: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

// newGatedPair starts the usual setting of the drain tests: instance a,
// whose /svc/slow requests wait for gt, instance b, and a gateway routing
// /svc/ to service s (its table not set yet).
func newGatedPair(t testing.TB) (gt *gate, a, b *backend, tg *testGateway) {
	t.Helper()
	gt = newGate(t)
	a = newBackend(t, "a", gt.handler("a"))
	b = newBackend(t, "b", nil)
	tg = newTestGateway(t, config.Gateway{Routes: []config.Route{rte("/svc/", "s")}}, Options{})
	return gt, a, b, tg
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) handler(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/svc/slow") {
			g.arrived <- struct{}{}
			select {
			case <-g.release:
			case <-r.Context().Done():
			}
		}
		w.Header().Set("X-Backend", name)
		io.WriteString(w, name)
	}
}

func (g *gate) waitArrived(t testing.TB) {
	t.Helper()
	select {
	case <-g.arrived:
	case <-time.After(waitFor):
		t.Fatal("request did not reach the backend")
	}
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// WithLabelValues returns the current value of f's series of service (and
// kind), as a counter for counterValue.
func (f *counterFamily) WithLabelValues(lvs ...string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "snapshot"})
	for _, s := range f.g.services {
		if s.name != lvs[0] {
			continue
		}
		k := 0
		if len(lvs) > 1 {
			k = slices.Index(f.kinds, lvs[1])
		}
		c.Add(float64(f.of(&s.metrics, k).n.Load()))
	}
	return c
}

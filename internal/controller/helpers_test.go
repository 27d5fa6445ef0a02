package controller_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zktest"
)

// waitFor is the generous deadline of every eventually: tests assert
// outcomes, never timings.
const waitFor = 30 * time.Second

const token = "s3cret-token"

// One ZooKeeper server serves every test of the package; each test works
// under its own roots so tests never see each other's nodes.
var shared struct {
	once    sync.Once
	cluster *zktest.Cluster
	err     error
	seq     atomic.Int64
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.cluster != nil {
		shared.cluster.Close()
	}
	os.Exit(code)
}

func zkServers(t *testing.T) []string {
	t.Helper()
	zktest.RequireZooKeeper(t)
	shared.once.Do(func() {
		shared.cluster, shared.err = zktest.New(context.Background(), zktest.Config{})
	})
	if shared.err != nil {
		t.Fatalf("starting ZooKeeper: %v", shared.err)
	}
	return shared.cluster.Servers()
}

// env is one test's world: its own zkgate root and registry root on the
// shared server, and a plain client that plays the services.
type env struct {
	t        *testing.T
	servers  []string
	zkRoot   string
	regRoot  string
	conn     *zk.Conn
	log      *slog.Logger
	nextPort atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	servers := zkServers(t)
	n := shared.seq.Add(1)
	e := &env{
		t: t, servers: servers,
		zkRoot:  fmt.Sprintf("/zkgate-t%d", n),
		regRoot: fmt.Sprintf("/services-t%d", n),
		log:     slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	conn := zktest.Connect(t, servers, 10*time.Second)
	e.conn = conn
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// config returns a parsed configuration for this env's roots; extra is
// YAML merged into the controller and gateway sections.
func (e *env) config(controllerYAML, gatewayYAML string, sessionTimeout time.Duration) *config.Config {
	e.t.Helper()
	if sessionTimeout == 0 {
		sessionTimeout = 4 * time.Second
	}
	var b strings.Builder
	fmt.Fprintf(&b, "zookeeper:\n  servers: [%s]\n  session_timeout: %s\n  root: %s\n", strings.Join(e.servers, ","), sessionTimeout, e.zkRoot)
	fmt.Fprintf(&b, "registry:\n  root: %s\n", e.regRoot)
	b.WriteString("gateway:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  routes:\n    - prefix: /orders/\n      service: orders\n      strip_prefix: true\n")
	b.WriteString(indent(gatewayYAML, "  "))
	fmt.Fprintf(&b, "controller:\n  listen: 127.0.0.1:0\n  tokens: [%q]\n", token)
	b.WriteString(indent(controllerYAML, "  "))
	cfg, err := config.Parse([]byte(b.String()))
	if err != nil {
		e.t.Fatalf("config: %v\n%s", err, b.String())
	}
	return cfg
}

func indent(s, pre string) string {
	if s == "" {
		return ""
	}
	var out strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		out.WriteString(pre + l + "\n")
	}
	return out.String()
}

// startController starts a controller replica and waits until it is ready.
func (e *env) startController(id string, cfg *config.Config, opts controller.Options) *controller.Controller {
	e.t.Helper()
	opts.ID = id
	opts.Logger = e.log
	c, err := controller.Start(context.Background(), cfg, opts)
	if err != nil {
		e.t.Fatalf("starting controller %s: %v", id, err)
	}
	testutil.StopAtCleanup(e.t, 5*time.Second, c.Shutdown)
	eventually(e.t, "controller "+id+" ready", func() bool {
		resp, err := http.Get(c.URL() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return c
}

// startGateway starts an in-process gateway routing /orders/ to orders.
func (e *env) startGateway(id string, sessionTimeout time.Duration, opts gatewayd.Options) *gatewayd.Daemon {
	e.t.Helper()
	cfg := e.config("", "id: "+id+"\n", sessionTimeout)
	opts.Logger = e.log
	d, err := gatewayd.Start(context.Background(), cfg, opts)
	if err != nil {
		e.t.Fatalf("starting gateway %s: %v", id, err)
	}
	testutil.StopAtCleanup(e.t, 5*time.Second, d.Shutdown)
	return d
}

// partitionWorld is the setting of the partition tests: backends a and b
// registered in orders, a controller, gateway gw-1, and gateway gw-2 whose
// ZooKeeper connections go through part, both routing to a and b and both
// present in the controller's view.
type partitionWorld struct {
	a, b   *backend
	ctl    *controller.Controller
	g1, g2 *gatewayd.Daemon
	part   *zktest.Partitioner
	cl     *ctlclient.Client
}

// startPartitionWorld builds a partitionWorld; the backends announce /slow
// requests on started (may be nil), and gw-2 asks for g2Session.
func (e *env) startPartitionWorld(started chan string, g2Session time.Duration) partitionWorld {
	e.t.Helper()
	w := partitionWorld{a: newBackend(e.t, "a", started), b: newBackend(e.t, "b", started)}
	e.register("orders", "a-1", w.a)
	e.register("orders", "b-1", w.b)
	w.ctl = e.startController("c1", e.config("", "", 0), controller.Options{})
	w.g1 = e.startGateway("gw-1", 0, gatewayd.Options{})
	w.part = zktest.NewPartitioner()
	e.t.Cleanup(w.part.Restore)
	w.g2 = e.startGateway("gw-2", g2Session, gatewayd.Options{Dialer: w.part.Dialer()})
	waitRoutes(e.t, w.g1.ProxyAddr(), "a", "b")
	waitRoutes(e.t, w.g2.ProxyAddr(), "a", "b")
	w.cl = client(e.t, w.ctl.URL())
	// Present, and their admin addresses seen answering as them: a crash
	// of either is then probed.
	eventually(e.t, "both gateways present, ready to be probed", func() bool {
		g, err := w.cl.Gateways(context.Background())
		return err == nil && len(g.Gateways) == 2 && g.Gateways[0].ProbeReady && g.Gateways[1].ProbeReady
	})
	return w
}

// backend is a real HTTP instance that answers with its name; /slow
// requests announce themselves on started and block until release.
type backend struct {
	name    string
	srv     *httptest.Server
	addr    string
	host    string
	port    int
	started chan string
	release chan struct{}
	once    sync.Once
}

func newBackend(t *testing.T, name string, started chan string) *backend {
	t.Helper()
	b := &backend{name: name, started: started, release: make(chan struct{})}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			if b.started != nil {
				b.started <- b.name
			}
			select {
			case <-b.release:
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, b.name)
	}))
	t.Cleanup(func() { b.Release(); b.srv.Close() })
	b.addr = b.srv.Listener.Addr().String()
	host, port, _ := net.SplitHostPort(b.addr)
	b.host = host
	b.port, _ = strconv.Atoi(port)
	return b
}

// Release lets every /slow request finish.
func (b *backend) Release() { b.once.Do(func() { close(b.release) }) }

func curatorJSON(service, id, host string, port int) []byte {
	return fmt.Appendf(nil, `{"name":%q,"id":%q,"address":%q,"port":%d,"sslPort":null,`+
		`"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance","id":"app","name":%q,"metadata":{"instance_status":"UP"}},`+
		`"registrationTimeUTC":1651140425239,"serviceType":"DYNAMIC"}`, service, id, host, port, service)
}

// ensure creates p and its parents.
func (e *env) ensure(p string) {
	e.t.Helper()
	cur := ""
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		cur += "/" + part
		if _, err := e.conn.Create(cur, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && err != zk.ErrNodeExists {
			e.t.Fatalf("creating %s: %v", cur, err)
		}
	}
}

// register registers b in service under id as an ephemeral Curator node of
// the test client's session and returns the node path.
func (e *env) register(service, id string, b *backend) string {
	e.t.Helper()
	dir := e.regRoot + "/" + service
	e.ensure(dir)
	p := dir + "/" + id
	if _, err := e.conn.Create(p, curatorJSON(service, id, b.host, b.port), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		e.t.Fatalf("registering %s: %v", p, err)
	}
	return p
}

func (e *env) deregister(p string) {
	e.t.Helper()
	if err := e.conn.Delete(p, -1); err != nil && err != zk.ErrNoNode {
		e.t.Fatalf("deleting %s: %v", p, err)
	}
}

func (e *env) markPath(service, addr string) string {
	return e.zkRoot + "/marks/" + service + "/" + addr
}

func (e *env) markExists(service, addr string) bool {
	e.t.Helper()
	ok, _, err := e.conn.Exists(e.markPath(service, addr))
	if err != nil {
		e.t.Fatalf("stat mark: %v", err)
	}
	return ok
}

// get sends one request through a gateway and returns the answering
// backend's name ("" on failure).
func get(proxyAddr, path string) (string, int) {
	resp, err := http.Get("http://" + proxyAddr + path)
	if err != nil {
		return "", 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body), resp.StatusCode
}

// waitRoutes waits until the gateway has sent requests to every backend.
func waitRoutes(t *testing.T, proxyAddr string, names ...string) {
	t.Helper()
	eventually(t, "gateway "+proxyAddr+" routing to "+strings.Join(names, ","), func() bool {
		seen := map[string]bool{}
		for i := 0; i < 20; i++ {
			n, code := get(proxyAddr, "/orders/")
			if code == http.StatusOK {
				seen[n] = true
			}
		}
		for _, n := range names {
			if !seen[n] {
				return false
			}
		}
		return true
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, waitFor, what, cond)
}

// api calls the controller and returns the status code and body.
func api(t *testing.T, method, url, tok string, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func decode[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	return v
}

func client(t *testing.T, urls ...string) *ctlclient.Client {
	t.Helper()
	c, err := ctlclient.New(strings.Join(urls, ","), ctlclient.Options{Token: token, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// drainAsync starts a waiting drain and returns where its answer arrives.
type drainResult struct {
	resp *ctlclient.DrainResponse
	err  error
}

func drainAsync(c *ctlclient.Client, service, addr string, req ctlclient.DrainRequest) <-chan drainResult {
	ch := make(chan drainResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
		defer cancel()
		r, err := c.Drain(ctx, service, addr, req)
		ch <- drainResult{r, err}
	}()
	return ch
}

// expectGw2Lost checks the answer of a drain that gw-1 applied while gw-2
// was cut off: lost, not confirmed, gw-2 named lost and gw-1 drained.
func expectGw2Lost(t *testing.T, r drainResult) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("drain: %v", r.err)
	}
	if r.resp.Confirmed || r.resp.Status != ctlclient.StatusLost {
		t.Fatalf("drain with gw-2 lost answered %+v", r.resp)
	}
	states := map[string]string{}
	for _, g := range r.resp.Gateways {
		states[g.ID] = g.State
	}
	if states["gw-1"] != ctlclient.GatewayDrained || states["gw-2"] != ctlclient.GatewayLost {
		t.Fatalf("per-gateway states %v", states)
	}
	if !strings.Contains(r.resp.Message, "gw-2") {
		t.Errorf("message %q does not name the lost gateway", r.resp.Message)
	}
}

// instance returns the controller's view of service/addr.
func instance(t *testing.T, c *ctlclient.Client, service, addr string) (ctlclient.InstanceView, bool) {
	t.Helper()
	v, err := c.Service(context.Background(), service)
	if err != nil {
		return ctlclient.InstanceView{}, false
	}
	for _, in := range v.Instances {
		if in.Addr == addr {
			return in, true
		}
	}
	return ctlclient.InstanceView{}, false
}

// gatewayState returns gateway id's state and in-flight count for a marked
// instance in the controller's view.
func gatewayState(in ctlclient.InstanceView, id string) (string, int64) {
	for _, g := range in.Gateways {
		if g.ID == id {
			return g.State, g.InFlight
		}
	}
	return "", 0
}

// startSlow sends a /slow request through the gateway and returns which
// backend took it and where its result arrives.
func startSlow(t *testing.T, proxyAddr string, started chan string) (string, <-chan string) {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		n, code := get(proxyAddr, "/orders/slow")
		done <- fmt.Sprintf("%d %s", code, n)
	}()
	select {
	case name := <-started:
		return name, done
	case <-time.After(waitFor):
		t.Fatal("the slow request never reached a backend")
	}
	return "", nil
}

// auditEventually returns the audit trail once ok accepts it: a job writes
// its entry after the change it records, so a test that saw the change may
// read the trail before the entry is there.
func auditEventually(t *testing.T, c *ctlclient.Client, what string, ok func([]ctlclient.AuditEntry) bool) []ctlclient.AuditEntry {
	t.Helper()
	var entries []ctlclient.AuditEntry
	eventually(t, what, func() bool { entries = audit(t, c); return ok(entries) })
	return entries
}

func audit(t *testing.T, c *ctlclient.Client) []ctlclient.AuditEntry {
	t.Helper()
	a, err := c.Audit(context.Background(), "", 0)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	return a.Entries
}

func hasAudit(entries []ctlclient.AuditEntry, action, addr string) bool {
	for _, e := range entries {
		if e.Action == action && e.Addr == addr {
			return true
		}
	}
	return false
}

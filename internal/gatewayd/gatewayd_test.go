package gatewayd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/presence"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zktest"
)

const waitFor = 20 * time.Second

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, waitFor, what, cond)
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func startGateway(t *testing.T, servers []string, mutate func(*config.Config)) *gatewayd.Daemon {
	t.Helper()
	return startGatewayWith(t, servers, mutate, gatewayd.Options{})
}

func startGatewayWith(t *testing.T, servers []string, mutate func(*config.Config), opts gatewayd.Options) *gatewayd.Daemon {
	t.Helper()
	yaml := fmt.Sprintf(`
zookeeper:
  servers: [%s]
  session_timeout: 2s
registry:
  resync_interval: 1s
gateway:
  id: gw-test
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  stale_after: 1s
  routes:
    - prefix: /orders/
      service: orders
      strip_prefix: true
`, `"`+strings.Join(servers, `","`)+`"`)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	log := slog.New(slog.NewTextHandler(testLog{t}, nil))
	opts.Logger, opts.Version = log, "test"
	d, err := gatewayd.Start(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	testutil.StopAtCleanup(t, 5*time.Second, d.Shutdown)
	return d
}

func backend(t *testing.T, name string) (host string, port int) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	p, _ := strconv.Atoi(u.Port())
	return u.Hostname(), p
}

func register(t *testing.T, conn *zk.Conn, service, id, host string, port int) string {
	t.Helper()
	for _, p := range []string{"/services", "/services/" + service} {
		if _, err := conn.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && err != zk.ErrNodeExists {
			t.Fatal(err)
		}
	}
	data := fmt.Sprintf(`{"name":%q,"id":%q,"address":%q,"port":%d,"sslPort":null,"payload":null}`, service, id, host, port)
	p := "/services/" + service + "/" + id
	if _, err := conn.Create(p, []byte(data), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	return p
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestGatewayFollowsRegistryAndSurvivesOutage(t *testing.T) {
	zc := zktest.Start(t)
	conn := connect(t, zc)
	d := startGateway(t, zc.Servers(), nil)
	proxy := "http://" + d.ProxyAddr()
	admin := "http://" + d.AdminAddr()

	eventually(t, "readiness after the first snapshot", func() bool { c, _ := get(admin + "/readyz"); return c == 200 })
	if c, body := get(proxy + "/orders/x"); c != http.StatusServiceUnavailable || !strings.Contains(body, `"error"`) {
		t.Fatalf("no instance: got %d %q, want 503 with a JSON error", c, body)
	}

	h, p := backend(t, "a")
	node := register(t, conn, "orders", "a", h, p)
	eventually(t, "a registration to be routed", func() bool { c, b := get(proxy + "/orders/x"); return c == 200 && b == "a /x" })

	// The presence node reports the gateway.
	eventually(t, "the presence node", func() bool {
		data, _, err := conn.Get(presence.Dir("/zkgate") + "/gw-test")
		if err != nil {
			return false
		}
		var r presence.Report
		// admin_listen names its host: nothing else is advertised.
		return json.Unmarshal(data, &r) == nil && r.Listen == d.ProxyAddr() && r.RegistryRevision > 0 &&
			r.AdminListen == d.AdminAddr() && r.AdminAddr == ""
	})

	if err := conn.Delete(node, -1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a removal to leave the routing", func() bool { c, _ := get(proxy + "/orders/x"); return c == http.StatusServiceUnavailable })

	h2, p2 := backend(t, "b")
	register(t, conn, "orders", "b", h2, p2)
	eventually(t, "the second instance", func() bool { c, b := get(proxy + "/orders/y"); return c == 200 && b == "b /y" })

	// Whole ensemble down: keep routing on the last state, report staleness.
	if err := zc.StopAll(); err != nil {
		t.Fatal(err)
	}
	// Closing the writer now (it cannot reach the servers) leaves its
	// session to expire on the servers once they are back.
	conn.Close()
	eventually(t, "readiness to report staleness", func() bool { c, _ := get(admin + "/readyz"); return c == http.StatusServiceUnavailable })
	if c, b := get(proxy + "/orders/z"); c != 200 || b != "b /z" {
		t.Fatalf("with ZooKeeper down: got %d %q, want the last known routing", c, b)
	}
	if c, _ := get(admin + "/healthz"); c != 200 {
		t.Fatalf("healthz = %d with ZooKeeper down", c)
	}
	if err := zc.StartAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "readiness after ZooKeeper returns", func() bool { c, _ := get(admin + "/readyz"); return c == 200 })
	// The session expired during the outage, so instance b's ephemeral node
	// (owned by the closed writer) is gone, and the resync must see that.
	eventually(t, "the resync after the outage", func() bool { c, _ := get(proxy + "/orders/z"); return c == http.StatusServiceUnavailable })
}

func TestGatewayConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"gateway:\n  routes: []\n", "at least one route"},
		{"gateway:\n  routes:\n    - prefix: orders\n      service: orders\n", "must start with /"},
		{"gateway:\n  balancer: random\n  routes:\n    - prefix: /\n      service: s\n", "balancer"},
		{"gateway:\n  admin_advertise: 0.0.0.0:9080\n  routes:\n    - prefix: /\n      service: s\n", "admin_advertise"},
		{"gateway:\n  admin_advertise: gw1.example\n  routes:\n    - prefix: /\n      service: s\n", "admin_advertise"},
		{"gateway:\n  admin_advertise: gw1.example:0\n  routes:\n    - prefix: /\n      service: s\n", "admin_advertise"},
	} {
		cfg, err := config.Parse([]byte(tc.yaml))
		if err == nil {
			_, err = gatewayd.Start(context.Background(), cfg, gatewayd.Options{})
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: error %v, want it to mention %q", tc.yaml, err, tc.want)
		}
	}
}

// gateway.admin_advertise is what the presence node gives controllers to
// ask (crash probes, traffic polls).
func TestGatewayAdvertisesAdminAddress(t *testing.T) {
	zc := zktest.Start(t)
	conn := connect(t, zc)
	startGateway(t, zc.Servers(), func(c *config.Config) { c.Gateway.AdminAdvertise = "gw1.example:9443" })
	eventually(t, "the presence node with the advertised admin address", func() bool {
		data, _, err := conn.Get(presence.Dir("/zkgate") + "/gw-test")
		var r presence.Report
		return err == nil && json.Unmarshal(data, &r) == nil && r.AdminAddr == "gw1.example:9443"
	})
}

// A gateway reads and watches only the services its routes name: a
// registry of other services costs it nothing, changes to them publish no
// table, and a routed service registered after the start is followed.
func TestGatewayFollowsOnlyRoutedServices(t *testing.T) {
	zc := zktest.Start(t)
	conn := connect(t, zc)
	h, p := backend(t, "a")
	for s := range 30 {
		for i := range 3 {
			register(t, conn, fmt.Sprintf("other-%02d", s), fmt.Sprintf("i%d", i), h, p+i+1)
		}
	}
	register(t, conn, "orders", "a", h, p)
	d := startGateway(t, zc.Servers(), func(c *config.Config) {
		// A second route to orders, and one to a service registered later.
		c.Gateway.Routes = append(c.Gateway.Routes,
			config.Route{Prefix: "/o2/", Service: "orders"}, config.Route{Prefix: "/billing/", Service: "billing"})
	})
	eventually(t, "ready", func() bool { c, _ := get("http://" + d.AdminAddr() + "/readyz"); return c == 200 })
	snap := d.Registry().Snapshot()
	if len(snap.Services) != 1 || len(snap.Instances("orders")) != 1 {
		t.Fatalf("registry snapshot has services %v, want only orders", slices.Sorted(maps.Keys(snap.Services)))
	}
	// The root's child watch, a persistent watch on orders (billing does
	// not exist yet) and one on the marks directory; none for the 90
	// other registrations.
	if got := d.Session().Watches(); got > 3 {
		t.Fatalf("the gateway holds %d watches, want at most 3", got)
	}
	// A change to an unrouted service, then one to a routed service: the
	// second is the only new table.
	register(t, conn, "other-00", "late", h, p+100)
	register(t, conn, "orders", "a2", h, p+101)
	eventually(t, "a second orders instance", func() bool { return len(d.Registry().Snapshot().Instances("orders")) == 2 })
	snap2 := d.Registry().Snapshot()
	if got := snap2.Revision - snap.Revision; got != 1 || len(snap2.Services) != 1 {
		t.Fatalf("after a change to an unrouted service and one to a routed one: %d new revisions, services %v; want 1 and orders",
			got, slices.Sorted(maps.Keys(snap2.Services)))
	}
	hb, pb := backend(t, "b")
	register(t, conn, "billing", "b", hb, pb)
	eventually(t, "a routed service registered after the start", func() bool {
		c, b := get("http://" + d.ProxyAddr() + "/billing/x")
		return c == 200 && b == "b /billing/x"
	})
}

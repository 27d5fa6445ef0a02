package gatewayd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/gateway"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/presence"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zktest"
)

func connect(t *testing.T, zc *zktest.Cluster) *zk.Conn {
	t.Helper()
	return zktest.Connect(t, zc.Servers(), 5*time.Second)
}

// startPartitionable starts a server with instance a of orders registered
// and a gateway (configured by mutate) whose ZooKeeper connections go
// through part.
func startPartitionable(t *testing.T, mutate func(*config.Config)) (conn *zk.Conn, part *zktest.Partitioner, d *gatewayd.Daemon) {
	t.Helper()
	zc := zktest.Start(t)
	conn = connect(t, zc)
	h, p := backend(t, "a")
	register(t, conn, "orders", "a", h, p)
	part = zktest.NewPartitioner()
	t.Cleanup(part.Restore)
	d = startGatewayWith(t, zc.Servers(), mutate, gatewayd.Options{Dialer: part.Dialer()})
	return conn, part, d
}

func readyz(d *gatewayd.Daemon) (int, gateway.Readiness) {
	resp, err := http.Get("http://" + d.AdminAddr() + "/readyz")
	if err != nil {
		return 0, gateway.Readiness{Reason: err.Error()}
	}
	defer resp.Body.Close()
	var rd gateway.Readiness
	json.NewDecoder(resp.Body).Decode(&rd)
	return resp.StatusCode, rd
}

func presencePath(d *gatewayd.Daemon) string { return presence.Dir("/zkgate") + "/" + d.ID() }

func readPresence(conn *zk.Conn, d *gatewayd.Daemon) (presence.Report, *zk.Stat, error) {
	data, st, err := conn.Get(presencePath(d))
	if err != nil {
		return presence.Report{}, nil, err
	}
	var r presence.Report
	err = json.Unmarshal(data, &r)
	return r, st, err
}

// putMark writes a drain mark the way the controller does.
func putMark(t *testing.T, conn *zk.Conn, service, addr string) {
	t.Helper()
	p := marks.Path("/zkgate", service, addr)
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i := 1; i < len(parts); i++ {
		if _, err := conn.Create("/"+strings.Join(parts[:i], "/"), nil, 0, zk.WorldACL(zk.PermAll)); err != nil && err != zk.ErrNodeExists {
			t.Fatal(err)
		}
	}
	m := marks.Mark{Reason: "test", By: "test", CreatedMs: time.Now().UnixMilli()}
	if _, err := conn.Create(p, m.Encode(), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
}

// By default a gateway cut off from ZooKeeper stays ready on its last
// state until stale_after (static stability): the controller, not the
// gateway's readiness, keeps drains unconfirmed meanwhile.
func TestStaysReadyWhenDetachedByDefault(t *testing.T) {
	conn, part, d := startPartitionable(t, func(c *config.Config) {
		c.ZooKeeper.SessionTimeout = 2 * time.Second
		c.Gateway.StaleAfter = config.DefaultStaleAfter // startGatewayWith shortens it
		c.Gateway.UnreadyWhenDetached = false
	})
	if d := config.DefaultStaleAfter; d < 30*time.Second {
		t.Fatalf("default stale_after %s: a 30 s ensemble outage would make every gateway unready", d)
	}
	eventually(t, "ready", func() bool { c, _ := readyz(d); return c == 200 })
	part.Cut()
	eventually(t, "the presence node to expire", func() bool {
		ok, _, err := conn.Exists(presencePath(d))
		return err == nil && !ok
	})
	// Past the session timeout (and its quarter): still ready by default.
	if c, rd := readyz(d); c != 200 {
		t.Fatalf("readyz %d (%s) with the default stale_after and unready_when_detached", c, rd.Reason)
	}
	if c, b := get("http://" + d.ProxyAddr() + "/orders/y"); c != 200 || b != "a /y" {
		t.Fatalf("routing while partitioned: %d %q", c, b)
	}
}

// With gateway.unready_when_detached, readiness fails before the servers
// can have deleted the presence node.
func TestNotReadyBeforePresenceCanExpire(t *testing.T) {
	for _, mode := range []string{"cut", "blackhole"} {
		t.Run(mode, func(t *testing.T) {
			conn, part, d := startPartitionable(t, func(c *config.Config) {
				c.ZooKeeper.SessionTimeout = 3 * time.Second
				c.Gateway.StaleAfter = time.Hour
				c.Gateway.UnreadyWhenDetached = true
			})
			proxy := "http://" + d.ProxyAddr()
			eventually(t, "ready", func() bool { c, _ := readyz(d); return c == 200 })
			if c, b := get(proxy + "/orders/x"); c != 200 || b != "a /x" {
				t.Fatalf("routing: %d %q", c, b)
			}
			if _, _, err := readPresence(conn, d); err != nil {
				t.Fatalf("presence node: %v", err)
			}

			cutAt := time.Now()
			if mode == "cut" {
				part.Cut()
			} else {
				part.Blackhole()
			}
			var notReadyAt time.Time
			eventually(t, "the presence node to expire", func() bool {
				ok, _, err := conn.Exists(presencePath(d))
				if err != nil {
					t.Fatal(err)
				}
				code, rd := readyz(d)
				if code != 200 && notReadyAt.IsZero() {
					notReadyAt = time.Now()
					t.Logf("not ready after %v: %s", notReadyAt.Sub(cutAt), rd.Reason)
				}
				if !ok {
					t.Logf("presence node gone after %v", time.Since(cutAt))
					if code == 200 {
						t.Fatalf("the presence node is gone (the controller stopped counting the gateway) and /readyz still says ready")
					}
					return true
				}
				return false
			})
			// Static stability: routing goes on.
			if c, b := get(proxy + "/orders/y"); c != 200 || b != "a /y" {
				t.Fatalf("routing while partitioned: %d %q", c, b)
			}

			part.Restore()
			eventually(t, "ready again", func() bool { c, _ := readyz(d); return c == 200 })
			r, st, err := readPresence(conn, d)
			if err != nil || r.Listen != d.ProxyAddr() || st.EphemeralOwner != d.Session().SessionID() {
				t.Fatalf("presence after the new session: %+v %+v %v", r, st, err)
			}
		})
	}
}

// wsBackend answers an upgrade with 101 and echoes what it reads.
func wsBackend(t *testing.T) (host string, port int) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		testutil.EchoUpgraded(w)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	p, _ := strconv.Atoi(u.Port())
	return u.Hostname(), p
}

func echo(conn net.Conn, br *bufio.Reader, msg string) error {
	if _, err := io.WriteString(conn, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		return err
	}
	if string(got) != msg {
		return errors.New("echo mismatch: " + string(got))
	}
	return nil
}

// Shutdown reports not ready first, waits for an upgraded (WebSocket)
// connection in flight, then leaves the presence node with a last report
// marked leaving before deleting it.
func TestShutdownWaitsForUpgradesAndLeaves(t *testing.T) {
	zc := zktest.Start(t)
	conn := connect(t, zc)
	h, p := wsBackend(t)
	register(t, conn, "orders", "ws", h, p)
	d := startGateway(t, zc.Servers(), nil)
	eventually(t, "ready", func() bool { c, _ := readyz(d); return c == 200 })
	eventually(t, "the presence node", func() bool { _, _, err := readPresence(conn, d); return err == nil })

	var ws net.Conn
	var br *bufio.Reader
	eventually(t, "the upgrade to be routed", func() bool {
		c, r, resp, err := testutil.DialUpgrade(d.ProxyAddr(), "/orders/ws", waitFor)
		if err != nil {
			return false
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			c.Close()
			return false
		}
		ws, br = c, r
		return true
	})
	defer ws.Close()
	if err := echo(ws, br, "hello"); err != nil {
		t.Fatal(err)
	}

	// Watch the presence node from the side: collect every report read.
	leavingSeen := make(chan struct{})
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go func() {
		for {
			select {
			case <-stopWatch:
				return
			default:
			}
			if r, _, err := readPresence(conn, d); err == nil && r.Leaving {
				close(leavingSeen)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		shut <- d.Shutdown(ctx)
	}()
	eventually(t, "/readyz to fail", func() bool {
		c, rd := readyz(d)
		return c == http.StatusServiceUnavailable && strings.Contains(rd.Reason, "shutting down")
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with an upgraded connection open", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := echo(ws, br, "still there"); err != nil {
		t.Fatalf("upgraded connection during shutdown: %v", err)
	}
	if r, _, err := readPresence(conn, d); err != nil || r.Leaving {
		t.Fatalf("presence while requests are in flight: %+v %v", r, err)
	}
	ws.Close()
	if err := testutil.Receive(t, waitFor, "Shutdown to return after the upgraded connection closed", shut); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-leavingSeen:
	default:
		t.Fatal("no report with leaving was seen before the node was deleted")
	}
	if ok, _, err := conn.Exists(presencePath(d)); err != nil || ok {
		t.Fatalf("presence node after Shutdown: exists=%v %v", ok, err)
	}
}

// When the registry loads before the marks, the gateway routes nothing
// (it would route to drained instances) until the marks are loaded too.
func TestNoRoutingBeforeMarksLoaded(t *testing.T) {
	zc := zktest.Start(t)
	conn := connect(t, zc)
	ha, pa := backend(t, "a")
	hb, pb := backend(t, "b")
	register(t, conn, "orders", "a", ha, pa)
	register(t, conn, "orders", "b", hb, pb)
	putMark(t, conn, "orders", net.JoinHostPort(ha, strconv.Itoa(pa)))
	// Make the marks unreadable to the gateway for now.
	if err := conn.AddAuth("digest", []byte("admin:secret")); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.SetACL(marks.Dir("/zkgate"), zk.DigestACL(zk.PermAll, "admin", "secret"), -1); err != nil {
		t.Fatal(err)
	}

	d := startGateway(t, zc.Servers(), nil)
	proxy := "http://" + d.ProxyAddr()
	eventually(t, "the registry to load", func() bool { return d.Registry().Snapshot() != nil })
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if c, b := get(proxy + "/orders/x"); c == 200 {
			t.Fatalf("routed (%q) with the marks not loaded", b)
		}
		if c, _ := readyz(d); c == 200 {
			t.Fatal("ready with the marks not loaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d.Marks().Snapshot() != nil {
		t.Fatal("setup: the marks loaded")
	}

	if _, err := conn.SetACL(marks.Dir("/zkgate"), zk.WorldACL(zk.PermAll), -1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ready", func() bool { c, _ := readyz(d); return c == 200 })
	for i := 0; i < 20; i++ {
		if c, b := get(proxy + "/orders/x"); c != 200 || b != "b /x" {
			t.Fatalf("with the marks loaded: %d %q, want b", c, b)
		}
	}
}

// The presence node is written when its content changes, not for every
// table applied (a change of a service without marks) nor for
// every request to an instance the gateway fails open to.
func TestPresenceWrittenOnlyOnChange(t *testing.T) {
	zc := zktest.Start(t)
	conn := connect(t, zc)
	ha, pa := backend(t, "a")
	register(t, conn, "orders", "a", ha, pa)
	// billing is routed but has no mark: its tables change nothing in the
	// report.
	d := startGateway(t, zc.Servers(), func(c *config.Config) {
		c.Gateway.Routes = append(c.Gateway.Routes, config.Route{Prefix: "/billing/", Service: "billing"})
	})
	proxy := "http://" + d.ProxyAddr()
	eventually(t, "ready", func() bool { c, _ := readyz(d); return c == 200 })
	addrA := net.JoinHostPort(ha, strconv.Itoa(pa))

	// The only instance is marked: the gateway fails open to it.
	putMark(t, conn, "orders", addrA)
	eventually(t, "the fail-open report", func() bool {
		r, _, err := readPresence(conn, d)
		if err != nil {
			return false
		}
		am, ok := r.Find("orders", addrA)
		return ok && am.State == presence.StateFailOpen
	})
	time.Sleep(50 * time.Millisecond) // let a write in the pipeline land
	_, st0, err := readPresence(conn, d)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if c, _ := get(proxy + "/orders/x"); c != 200 {
			t.Fatalf("fail-open request: %d", c)
		}
	}
	// Tables for a service without a mark.
	hx, px := backend(t, "x")
	for i := 0; i < 10; i++ {
		node := register(t, conn, "billing", "x"+strconv.Itoa(i), hx, px)
		eventually(t, "the registration", func() bool {
			return len(d.Registry().Snapshot().Instances("billing")) == 1
		})
		if err := conn.Delete(node, -1); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the removal", func() bool {
			return len(d.Registry().Snapshot().Instances("billing")) == 0
		})
	}
	time.Sleep(50 * time.Millisecond)
	_, st1, err := readPresence(conn, d)
	if err != nil {
		t.Fatal(err)
	}
	// One heartbeat may fall in the window.
	if n := st1.Version - st0.Version; n > 1 {
		t.Fatalf("the presence node was written %d times for nothing new", n)
	}
}

// Without gateway.id, the id names the bound proxy address: two gateways
// of one host listening on port 0 get distinct ids.
func TestDefaultIDUsesBoundAddress(t *testing.T) {
	zc := zktest.Start(t)
	noID := func(c *config.Config) { c.Gateway.ID = "" }
	d1 := startGateway(t, zc.Servers(), noID)
	d2 := startGateway(t, zc.Servers(), noID)
	if d1.ID() == d2.ID() || !strings.HasSuffix(d1.ID(), d1.ProxyAddr()) || !strings.HasSuffix(d2.ID(), d2.ProxyAddr()) {
		t.Fatalf("ids %q and %q for %s and %s", d1.ID(), d2.ID(), d1.ProxyAddr(), d2.ProxyAddr())
	}
}

// Two gateways with one id: the second never takes over the first's
// presence node (that would hide the first from the controller); it says
// so and is not ready, until the first leaves.
func TestDuplicateIDNotOverwritten(t *testing.T) {
	zc := zktest.Start(t)
	conn := connect(t, zc)
	d1 := startGateway(t, zc.Servers(), nil)
	eventually(t, "the first ready", func() bool { c, _ := readyz(d1); return c == 200 })
	d2 := startGateway(t, zc.Servers(), nil)
	if d1.ID() != d2.ID() {
		t.Fatalf("setup: ids %q %q", d1.ID(), d2.ID())
	}
	eventually(t, "the second to report the conflict", func() bool {
		c, rd := readyz(d2)
		return c == http.StatusServiceUnavailable && strings.Contains(rd.Reason, "used twice")
	})
	for i := 0; i < 10; i++ {
		r, st, err := readPresence(conn, d1)
		if err != nil || r.Listen != d1.ProxyAddr() || st.EphemeralOwner != d1.Session().SessionID() {
			t.Fatalf("the first gateway's node was taken over: %+v %+v %v", r, st, err)
		}
		if c, _ := readyz(d1); c != 200 {
			t.Fatal("the first gateway stopped being ready")
		}
		time.Sleep(50 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := d1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second to take the free node", func() bool { c, _ := readyz(d2); return c == 200 })
	if r, st, err := readPresence(conn, d2); err != nil || r.Listen != d2.ProxyAddr() || st.EphemeralOwner != d2.Session().SessionID() {
		t.Fatalf("the second gateway's node: %+v %+v %v", r, st, err)
	}
}

// The README's account of readiness during a ZooKeeper outage matches the
// defaults: ready by default until stale_after (static stability), sooner
// only with unready_when_detached; departed_window covers stale_after.
func TestReadmeReadinessAgreesWithDefaults(t *testing.T) {
	cfg, err := config.Parse([]byte("gateway:\n  routes: [{prefix: /, service: s}]\ncontroller:\n  tokens: [t]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.UnreadyWhenDetached || cfg.Gateway.StaleAfter != config.DefaultStaleAfter ||
		cfg.Controller.DepartedWindow < cfg.Gateway.StaleAfter {
		t.Fatalf("defaults: unready_when_detached %v, stale_after %s, departed_window %s",
			cfg.Gateway.UnreadyWhenDetached, cfg.Gateway.StaleAfter, cfg.Controller.DepartedWindow)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(readme)), " ")
	i := strings.Index(text, "When ZooKeeper is unreachable the gateway")
	if i < 0 {
		t.Fatal("README: the Gateway section no longer says what happens when ZooKeeper is unreachable")
	}
	bullet := text[i:]
	if j := strings.Index(bullet, " - "); j > 0 {
		bullet = bullet[:j]
	}
	for _, want := range []string{"by default, stays ready", fmt.Sprintf("`stale_after` (default %d s)", int(config.DefaultStaleAfter.Seconds())), "With `unready_when_detached: true`"} {
		if !strings.Contains(bullet, want) {
			t.Errorf("README readiness bullet lacks %q:\n%s", want, bullet)
		}
	}
	if k := strings.Index(bullet, "a quarter of"); k >= 0 && !strings.Contains(bullet[:k], "unready_when_detached") {
		t.Errorf("README says readiness fails a quarter of the session timeout after a disconnection without naming unready_when_detached (off by default):\n%s", bullet)
	}
}

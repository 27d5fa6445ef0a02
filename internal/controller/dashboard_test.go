package controller_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/testutil"
)

// chromium returns the headless browser, skipping the test when it is not
// installed outside CI (CI installs it: see scripts/test.sh).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" || os.Getenv("ZKGATE_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium on PATH (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH; the dashboard browser test needs it")
	return ""
}

// renderedDOM loads url in headless Chromium, lets its scripts run and
// returns the resulting DOM.
func renderedDOM(t *testing.T, browser, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(),
		"--virtual-time-budget=10000", "--dump-dom", url)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v", url, err)
	}
	return string(out)
}

func TestDashboardInBrowser(t *testing.T) {
	browser := chromium(t)
	e := newEnv(t)
	ctl := e.startController("c1", e.config("", "", 0), controller.Options{})
	// A gateway with a warm-up, so that a returning instance shows warming.
	gw, err := gatewayd.Start(context.Background(), e.config("", "id: gw-ui\nwarmup: 3s\n", 0), gatewayd.Options{Logger: e.log})
	if err != nil {
		t.Fatal(err)
	}
	testutil.StopAtCleanup(t, 5*time.Second, gw.Shutdown)
	gw2 := e.startGateway("gw-ui-2", 0, gatewayd.Options{})
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	c := newBackend(t, "c", nil)
	e.register("orders", "a", a)
	bNode := e.register("orders", "b", b)
	e.register("orders", "c", c)
	// A registry service whose name the API refuses (issue 11): skipped,
	// counted and shown escaped; it must not keep the others from rendering.
	const badName = `<img src=x onerror=alert(1)>`
	e.register(badName, "x", a)
	waitRoutes(t, gw.ProxyAddr(), "a", "b", "c")
	waitRoutes(t, gw2.ProxyAddr(), "a", "b", "c")
	cl := client(t, ctl.URL())
	eventually(t, "the refused service to be listed as skipped", func() bool {
		l, err := cl.Services(context.Background())
		return err == nil && len(l.Skipped) == 1 && l.Skipped[0] == badName
	})

	// Under load (which starts the traffic view), b goes through a whole
	// deploy: drained, deregistered, registered again (a new process),
	// warming, serving. c is drained and stays so.
	l := startLoad(t, 4, gw.ProxyAddr(), gw2.ProxyAddr())
	trafficOf := func(v *ctlclient.ServiceResponse, addr string) *ctlclient.InstanceView {
		for i := range v.Instances {
			if v.Instances[i].Addr == addr {
				return &v.Instances[i]
			}
		}
		return &ctlclient.InstanceView{}
	}
	eventually(t, "traffic figures for every instance", func() bool {
		v, err := cl.Service(context.Background(), "orders")
		if err != nil {
			return false
		}
		for _, x := range []*backend{a, b, c} {
			if in := trafficOf(v, x.addr); in.Traffic == nil || in.Traffic.RPS <= 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(4 * time.Second) // some history before the deploy
	if r, err := cl.Drain(context.Background(), "orders", b.addr, ctlclient.DrainRequest{Reason: "release 4711", Wait: true, Timeout: "20s", DeployID: "deploy-42"}); err != nil || r.Status != ctlclient.StatusDrained {
		t.Fatalf("drain b: %+v %v", r, err)
	}
	time.Sleep(1500 * time.Millisecond)
	e.deregister(bNode)
	time.Sleep(1500 * time.Millisecond)
	e.register("orders", "b-restarted", b)
	if _, err := cl.Drain(context.Background(), "orders", c.addr, ctlclient.DrainRequest{Reason: "ui test", Wait: true, Timeout: "20s", DeployID: "deploy-42"}); err != nil {
		t.Fatal(err)
	}
	var lastSeen string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last seen: %s", lastSeen)
		}
	})
	eventually(t, "b's timeline to end serving and c to get no traffic", func() bool {
		v, err := cl.Service(context.Background(), "orders")
		if err != nil {
			return false
		}
		var states []string
		for _, en := range trafficOf(v, b.addr).Timeline {
			states = append(states, en.State)
		}
		in := trafficOf(v, c.addr)
		lastSeen = fmt.Sprintf("b: %v; c: %+v", trafficOf(v, b.addr).Timeline, in.Traffic)
		return strings.Join(states, ",") == "draining,drained,gone,warming,serving" && in.Traffic != nil && in.Traffic.RPS == 0
	})
	time.Sleep(2 * time.Second) // the chart shows c at 0 for a while
	if n := l.failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed during the deploy", n, l.sent.Load())
	}

	// The page and its assets are served with a strict CSP.
	resp, err := http.Get(ctl.URL() + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "app.js") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("GET /ui/: %d %q csp=%q", resp.StatusCode, page, resp.Header.Get("Content-Security-Policy"))
	}
	// No other page may frame it (clickjacking of the drain buttons).
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("GET /ui/: frameable: csp=%q x-frame-options=%q", csp, resp.Header.Get("X-Frame-Options"))
	}

	dom := renderedDOM(t, browser, ctl.URL()+"/ui/")
	for _, want := range []string{
		`data-loaded="true"`,
		`data-service="orders"`,
		`data-instance="orders/` + a.addr + `"`,
		`data-instance="orders/` + b.addr + `"`,
		`data-gateway="gw-ui"`,
		`data-state="drained"`,                                  // c, at gateway gw-ui
		`data-state="serving"`,                                  // a
		`data-timeline="draining,drained,gone,warming,serving"`, // b's deploy
		`data-timeline="draining,drained"`,                      // c
		`data-gateway-ack="gw-ui-2"`,
		`data-probe-ready="true"`,          // its admin address answered as gw-ui
		`data-deploy="deploy-42"`,          // c's mark
		`data-deploy-progress="deploy-42"`, // the rollout's progress
		"release 4711",                     // in the audit
		"ui test",                          // the mark's reason
		`data-skipped="1"`,                 // the refused service, counted
		`&lt;img src=x`,                    // and shown as text
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered dashboard lacks %s", want)
		}
	}
	if strings.Contains(dom, "<img") {
		t.Error("a registry service name became markup")
	}
	// Charts with points, and rates: c at 0, a above.
	if !regexp.MustCompile(`data-chart="([2-9]|[1-9][0-9]+)"`).MatchString(dom) {
		t.Error("no chart with at least two points")
	}
	if !strings.Contains(dom, `data-rps="0"`) || !regexp.MustCompile(`data-rps="[1-9]`).MatchString(dom) {
		t.Error("the rates of the drained and serving instances are not shown")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
	// The screenshot (the README shows one: docs/dashboard.png). Set
	// ZKGATE_UI_SCREENSHOT=/path.png to keep it.
	shot := os.Getenv("ZKGATE_UI_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "dashboard.png")
	}
	out, err := exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--hide-scrollbars", "--user-data-dir="+t.TempDir(), "--window-size=1400,1000", "--virtual-time-budget=10000",
		"--screenshot="+shot, ctl.URL()+"/ui/").CombinedOutput()
	if err != nil {
		t.Fatalf("screenshot: %v %s", err, out)
	}
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 20000 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot %s: %d bytes, %v", shot, len(png), err)
	}
	l.stop()
}

package controller_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gatewayd"
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
	gw := e.startGateway("gw-ui", 0, gatewayd.Options{})
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	e.register("orders", "a", a)
	e.register("orders", "b", b)
	// A registry service whose name the API refuses (issue 11): skipped,
	// counted and shown escaped; it must not keep the others from rendering.
	const badName = `<img src=x onerror=alert(1)>`
	e.register(badName, "x", a)
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	cl := client(t, ctl.URL())
	eventually(t, "the refused service to be listed as skipped", func() bool {
		l, err := cl.Services(context.Background())
		return err == nil && len(l.Skipped) == 1 && l.Skipped[0] == badName
	})
	if _, err := cl.Drain(context.Background(), "orders", b.addr, ctlclient.DrainRequest{Reason: "ui test", Wait: true, Timeout: "20s"}); err != nil {
		t.Fatal(err)
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
		`data-state="drained"`, // b, at gateway gw-ui
		`data-state="serving"`, // a
		"ui test",              // the mark's reason
		`data-skipped="1"`,     // the refused service, counted
		`&lt;img src=x`,        // and shown as text
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered dashboard lacks %s", want)
		}
	}
	if strings.Contains(dom, "<img") {
		t.Error("a registry service name became markup")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
	// For looking at the page: ZKGATE_UI_SCREENSHOT=/tmp/ui.png go test -run Dashboard
	if shot := os.Getenv("ZKGATE_UI_SCREENSHOT"); shot != "" {
		out, err := exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
			"--user-data-dir="+t.TempDir(), "--window-size=1280,800", "--virtual-time-budget=10000",
			"--screenshot="+shot, ctl.URL()+"/ui/").CombinedOutput()
		if err != nil {
			t.Fatalf("screenshot: %v %s", err, out)
		}
	}
}

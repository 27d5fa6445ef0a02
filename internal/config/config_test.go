package config

import (
	"strings"
	"testing"
	"time"
)

func TestDepartedWindow(t *testing.T) {
	c, err := Parse([]byte("controller:\n  tokens: [t]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Controller.DepartedWindow != DefaultDepartedWindow || DefaultDepartedWindow != DefaultStaleAfter {
		t.Errorf("default departed_window %v, want %v (the gateways' default stale_after)", c.Controller.DepartedWindow, DefaultStaleAfter)
	}
	if c.Controller.ProbeDeparted == nil || !*c.Controller.ProbeDeparted {
		t.Errorf("probe_departed defaults to %v, want true", c.Controller.ProbeDeparted)
	}
	c, err = Parse([]byte("controller:\n  tokens: [t]\n  departed_window: 90s\n  probe_departed: false\n"))
	if err != nil || *c.Controller.ProbeDeparted {
		t.Fatalf("probe_departed: false: %v %v", c, err)
	}
	c, err = Parse([]byte("controller:\n  tokens: [t]\n  departed_window: 90s\n"))
	if err != nil || c.Controller.DepartedWindow != 90*time.Second || c.ValidateController() != nil {
		t.Fatalf("departed_window 90s: %v %v", c, err)
	}
	c, err = Parse([]byte("controller:\n  tokens: [t]\n  departed_window: -1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateController(); err == nil || !strings.Contains(err.Error(), "departed_window") {
		t.Errorf("negative departed_window: %v", err)
	}
}

// A YAML error is one line (README: "one readable line on stderr"), even
// when the decoder reports several problems.
func TestYAMLErrorIsOneLine(t *testing.T) {
	for _, in := range []string{
		"zookeeper:\n  servers: [\"127.0.0.1:2181\"]\n  bogus: 1\n",
		"zookeeper:\n  bogus: 1\ngateway:\n  nope: 2\n",
		"zookeeper:\n  servers: [a\n",
		"zookeeper:\n  session_timeout: [1, 2]\n",
	} {
		_, err := Parse([]byte(in))
		if err == nil {
			t.Fatalf("%q: no error", in)
		}
		if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || !strings.HasPrefix(msg, "parsing YAML: ") {
			t.Errorf("%q: error %q is not one line starting with \"parsing YAML: \"", in, msg)
		}
	}
	_, err := Parse([]byte("zookeeper:\n  bogus: 1\ngateway:\n  nope: 2\n"))
	if msg := err.Error(); !strings.Contains(msg, "line 2: field bogus") || !strings.Contains(msg, "line 4: field nope") {
		t.Errorf("both unknown keys should be named: %q", msg)
	}
}

func TestDNSRefresh(t *testing.T) {
	var g Gateway
	g.ApplyDefaults()
	if g.DNSRefresh != DefaultDNSRefresh || DefaultDNSRefresh != 30*time.Second {
		t.Errorf("default dns_refresh %v, want 30s", g.DNSRefresh)
	}
	c, err := Parse([]byte("gateway:\n  routes: [{prefix: /, service: s}]\n  dns_refresh: 5s\n"))
	if err != nil || c.Gateway.DNSRefresh != 5*time.Second {
		t.Fatalf("dns_refresh: 5s: %v %v", c, err)
	}
	g = Gateway{DNSRefresh: -time.Second, Routes: []Route{{Prefix: "/", Service: "s"}}}
	g.ApplyDefaults()
	if err := g.Validate(); err == nil {
		t.Error("a negative dns_refresh passed Validate")
	}
}

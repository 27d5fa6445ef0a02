package gatewayd

import "testing"

// The admin address a gateway advertises when its admin listener names no
// host: the admin port on the address its ZooKeeper connection leaves
// from, unless gateway.admin_advertise says otherwise.
func TestAdvertisedAdmin(t *testing.T) {
	for _, c := range []struct{ advertise, bound, zkLocal, want string }{
		{"", "127.0.0.1:9080", "127.0.0.1:51234", ""},
		{"", "10.0.0.5:9080", "10.0.0.5:51234", ""},
		{"", "0.0.0.0:9080", "10.0.0.5:51234", "10.0.0.5:9080"},
		{"", "[::]:9080", "[fd00::5]:51234", "[fd00::5]:9080"},
		{"", "[::]:9080", "", ""}, // not connected yet
		{"gw1.example:9443", "0.0.0.0:9080", "10.0.0.5:51234", "gw1.example:9443"},
		{"gw1.example:9443", "127.0.0.1:9080", "", "gw1.example:9443"},
	} {
		if got := advertisedAdmin(c.advertise, c.bound, c.zkLocal); got != c.want {
			t.Errorf("advertisedAdmin(%q, %q, %q) = %q, want %q", c.advertise, c.bound, c.zkLocal, got, c.want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9080":   true,
		"[::1]:9080":       true,
		"10.0.0.5:9080":    false,
		"gw1.example:9080": false,
		"":                 false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

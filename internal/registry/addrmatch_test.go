package registry

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// mapResolver resolves from a table; names not in it block until ctx ends.
type mapResolver map[string][]string

func (m mapResolver) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	ips, ok := m[host]
	if !ok {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if len(ips) == 0 {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, s := range ips {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func TestCanonicalAddr(t *testing.T) {
	for in, want := range map[string]string{
		"[0:0:0:0:0:0:0:1]:80":   "[::1]:80",
		"[::1]:80":               "[::1]:80",
		"[::FFFF:10.0.0.1]:8080": "10.0.0.1:8080",
		"VM.Example.COM.:8080":   "vm.example.com:8080",
		"10.0.0.5:08080":         "10.0.0.5:8080",
		"[2001:DB8::0:1]:443":    "[2001:db8::1]:443",
	} {
		got, err := CanonicalAddr(in)
		if err != nil || got != want {
			t.Errorf("CanonicalAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := CanonicalAddr("no-port"); err == nil {
		t.Error("CanonicalAddr accepted an address without a port")
	}
}

func TestMatchAddr(t *testing.T) {
	r := mapResolver{
		"vm":          {"::ffff:127.0.0.1"}, // as Go's resolver answers from /etc/hosts
		"db.internal": {"10.0.0.7", "fd00::7"},
		"gone":        {},
	}
	registered := []string{"vm:18084", "10.0.0.8:18084", "DB.internal:8080", "[::1]:9000", "localhost:9100", "gone:18084"}
	for _, tc := range []struct {
		want  string
		match []string
	}{
		{"vm:18084", []string{"vm:18084"}},                          // as registered
		{"VM:18084", []string{"vm:18084"}},                          // case
		{"127.0.0.1:18084", []string{"vm:18084"}},                   // name vs the IP it resolves to
		{"[::ffff:127.0.0.1]:18084", []string{"vm:18084"}},          // IPv4-mapped
		{"10.0.0.7:8080", []string{"DB.internal:8080"}},             // one of several IPs
		{"[fd00:0:0:0:0:0:0:7]:8080", []string{"DB.internal:8080"}}, // IPv6 spelled long
		{"[0:0:0:0:0:0:0:1]:9000", []string{"[::1]:9000"}},          // IPv6 spellings
		{"localhost:9000", []string{"[::1]:9000"}},                  // localhost without a lookup
		{"[::1]:9100", []string{"localhost:9100"}},
		{"127.0.0.1:9100", []string{"localhost:9100"}},
		{"127.0.0.2:18084", nil}, // no such address
		{"10.0.0.7:18084", nil},  // other port
		{"vm:8080", nil},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, _, err := MatchAddr(ctx, r, tc.want, registered)
		cancel()
		if err != nil || !slices.Equal(got, tc.match) {
			t.Errorf("MatchAddr(%q) = %q, %v; want %q", tc.want, got, err, tc.match)
		}
	}
	// A name that does not answer in time matches nothing and is reported.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	got, failed, err := MatchAddr(ctx, r, "127.0.0.1:7000", []string{"slow:7000", "10.0.0.1:7000"})
	if err != nil || got != nil || len(failed) != 1 || !strings.HasPrefix(failed[0], "slow (") {
		t.Errorf("slow name: matches %q, failed %q, err %v", got, failed, err)
	}
	if _, _, err := MatchAddr(ctx, r, "not an address", registered); err == nil {
		t.Error("MatchAddr accepted a malformed address")
	}
}

func TestIncarnation(t *testing.T) {
	st := NodeStat{Czxid: 7}
	cur := func(body string) Instance {
		t.Helper()
		in, err := CuratorParser{}.Parse("orders", "node-1", []byte(body), st)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	for body, want := range map[string]string{
		`{"id":"u-1","address":"h","port":1,"registrationTimeUTC":1651140425239}`:   "u-1@1651140425239",
		`{"id":"u-1","address":"h","port":1,"registrationTimeUTC":"1651140425239"}`: "u-1@1651140425239",
		`{"id":"u-1","address":"h","port":1,"registrationTimeUTC":null}`:            "u-1",
		`{"id":"u-1","address":"h","port":1}`:                                       "u-1",
		`{"address":"h","port":1,"registrationTimeUTC":5}`:                          "node-1@5",
		`{"id":"u-1","address":"h","port":1,"registrationTimeUTC":1.5e3}`:           "u-1",
	} {
		if got := cur(body).Incarnation; got != want {
			t.Errorf("%s: incarnation %q, want %q", body, got, want)
		}
	}
	hp := func(data string) string {
		t.Helper()
		in, err := HostPortParser{}.Parse("orders", "10.0.0.1:80", []byte(data), st)
		if err != nil {
			t.Fatal(err)
		}
		return in.Incarnation
	}
	if hp("") != "" || hp("  \n") != "" {
		t.Error("a hostport node without data has an incarnation")
	}
	if a, b := hp("started 1"), hp("started 2"); a == "" || a == b || a != hp("started 1\n") {
		t.Errorf("hostport incarnations %q %q", a, b)
	}
}

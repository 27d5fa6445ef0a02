package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/gatewayd"
)

// registerAs registers b in service under id with host as the address
// (the backend listens on 127.0.0.1; host is another spelling of it).
func (e *env) registerAs(service, id, host string, b *backend) string {
	e.t.Helper()
	dir := e.regRoot + "/" + service
	e.ensure(dir)
	p := dir + "/" + id
	if _, err := e.conn.Create(p, curatorJSON(service, id, host, b.port), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		e.t.Fatalf("registering %s: %v", p, err)
	}
	return p
}

// drainAnswer is the part of a drain's answer (or error) the tests read.
type drainAnswer struct {
	Status     string   `json:"status"`
	Addr       string   `json:"addr"`
	Warning    string   `json:"warning"`
	Error      string   `json:"error"`
	Registered []string `json:"registered"`
}

// A drain names the instance however the caller spells it: the mark is
// written for the address as registered, so the gateway stops routing to
// it. An address no registration has is refused (404 with the registered
// addresses, nothing written) unless allow_absent. README.md, "A deploy
// with zkgate".
func TestDrainMatchesTheRegisteredAddress(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	e.registerAs("orders", "a-1", "localhost", a) // registered by name
	e.register("orders", "b-1", b)
	c1 := e.startController("c1", e.config("", "", 0), controller.Options{})
	gw := e.startGateway("gw-1", 0, gatewayd.Options{})
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	drainURL := func(addr string) string {
		return c1.URL() + "/v1/services/orders/instances/" + addr + "/drain"
	}
	drain := func(addr, body string) (int, drainAnswer) {
		t.Helper()
		code, data := api(t, http.MethodPut, drainURL(addr), token, body)
		var ans drainAnswer
		if err := json.Unmarshal(data, &ans); err != nil {
			t.Fatalf("drain %s: %d %s", addr, code, data)
		}
		return code, ans
	}
	aName := net.JoinHostPort("localhost", strconv.Itoa(a.port))

	// 127.0.0.1 is what "localhost" resolves to.
	code, ans := drain(a.addr, `{"reason":"deploy","wait":true,"timeout":"20s"}`)
	if code != http.StatusOK || ans.Status != "drained" || ans.Addr != aName {
		t.Fatalf("drain %s: %d %+v", a.addr, code, ans)
	}
	if !e.markExists("orders", aName) || e.markExists("orders", a.addr) {
		t.Fatalf("the mark is not (only) at the registered address %s", aName)
	}
	routesOnly(t, gw.ProxyAddr(), "b")
	// Undrain matches the same way.
	code, data := api(t, http.MethodDelete, drainURL(a.addr), token, "")
	if code != http.StatusOK || e.markExists("orders", aName) {
		t.Fatalf("undrain %s: %d %s", a.addr, code, data)
	}
	waitRoutes(t, gw.ProxyAddr(), "a", "b")

	// An address nobody registered: refused, nothing written.
	other := fmt.Sprintf("127.0.0.2:%d", a.port)
	code, ans = drain(other, `{"reason":"deploy","wait":true,"timeout":"5s"}`)
	if code != http.StatusNotFound || !slices.Contains(ans.Registered, aName) || !slices.Contains(ans.Registered, b.addr) {
		t.Fatalf("drain of an unregistered address: %d %+v", code, ans)
	}
	if e.markExists("orders", other) {
		t.Fatal("a refused drain wrote a mark")
	}
	// Unless the caller allows it (before the instance registers).
	code, ans = drain(other, `{"reason":"pre-registration","allow_absent":true}`)
	if code != http.StatusOK || ans.Status != "marked" || !e.markExists("orders", other) {
		t.Fatalf("drain with allow_absent: %d %+v", code, ans)
	}
	code, data = api(t, http.MethodPut, drainURL(fmt.Sprintf("127.0.0.3:%d", a.port))+"?allow_absent=true", token, `{"reason":"pre-registration"}`)
	if code != http.StatusOK || !e.markExists("orders", fmt.Sprintf("127.0.0.3:%d", a.port)) {
		t.Fatalf("drain with ?allow_absent=true: %d %s", code, data)
	}

	// The machine's own host name, in capitals, as Spring registers it.
	host, _ := os.Hostname()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	cancel()
	loopback := slices.ContainsFunc(ips, func(ip netip.Addr) bool { return ip.Unmap() == netip.MustParseAddr("127.0.0.1") })
	if err != nil || !loopback {
		t.Logf("host name %q does not resolve to 127.0.0.1 here (%v %v): skipping that part", host, ips, err)
		return
	}
	c := newBackend(t, "c", nil)
	e.registerAs("orders", "c-1", host, c)
	cName := net.JoinHostPort(host, strconv.Itoa(c.port))
	waitRoutes(t, gw.ProxyAddr(), "a", "b", "c")
	code, ans = drain(fmt.Sprintf("[::ffff:127.0.0.1]:%d", c.port), `{"reason":"deploy","wait":true,"timeout":"20s"}`)
	if code != http.StatusOK || ans.Status != "drained" || ans.Addr != cName {
		t.Fatalf("drain of %s by IP: %d %+v", cName, code, ans)
	}
	routesOnly(t, gw.ProxyAddr(), "a", "b")
}

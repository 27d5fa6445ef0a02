package gateway

import (
	"net/http"
	"testing"

	"github.com/zkgate/zkgate/internal/config"
)

func TestRouteMatch(t *testing.T) {
	rs, err := newRouteSet([]config.Route{
		{Prefix: "/", Service: "root"},
		{Prefix: "/orders/", Service: "orders"},
		{Prefix: "/orders/special/", Service: "special"},
		{Prefix: "/orders/", Host: "API.example.com", Service: "api-orders"},
		{Prefix: "/api", Service: "api"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ url, host, want string }{
		{"/orders/1", "x", "orders"},
		{"/orders/1", "api.example.com:8080", "api-orders"},
		{"/orders/1", "API.EXAMPLE.COM", "api-orders"},
		{"/orders/1", "api.example.com.", "api-orders"},
		{"/orders/special/2", "x", "special"},
		{"/orders/special/2", "api.example.com", "special"}, // longer prefix beats host
		{"/orders", "x", "orders"},                          // prefix without its trailing slash
		{"/ordersX", "x", "root"},
		{"/other", "api.example.com", "root"},
		{"/api/v1", "x", "api"},
		{"/apix", "x", "api"},
		{"/", "[::1]:80", "root"},
	} {
		rt := rs.matchBytes([]byte(c.url), []byte(c.host))
		if rt == nil || rt.service != c.want {
			got := "<nil>"
			if rt != nil {
				got = rt.service
			}
			t.Errorf("%s %s: routed to %s, want %s", c.host, c.url, got, c.want)
		}
	}

	rs, _ = newRouteSet([]config.Route{{Prefix: "/a/", Service: "a"}})
	if rt := rs.matchBytes([]byte("/b"), []byte("gw")); rt != nil {
		t.Errorf("/b matched %s", rt.service)
	}
}

func TestRouteConfigErrors(t *testing.T) {
	for _, routes := range [][]config.Route{
		nil,
		{{Prefix: "orders/", Service: "a"}},
		{{Prefix: "/a/", Service: ""}},
		{{Prefix: "/a/", Service: "x/y"}},
		{{Prefix: "/a/", Service: "a"}, {Prefix: "/a/", Service: "b"}},
	} {
		if _, err := New(config.Gateway{Routes: routes}, Options{}); err == nil {
			t.Errorf("routes %+v: no error", routes)
		}
	}
	if _, err := New(config.Gateway{Routes: []config.Route{rte("/", "a")}, Balancer: "random"}, Options{}); err == nil {
		t.Error("unknown balancer accepted")
	}
}

func TestStripPrefixAndHostRouting(t *testing.T) {
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.RequestURI))
	})
	other := newBackend(t, "other", nil)
	tg := newTestGateway(t, config.Gateway{Routes: []config.Route{
		{Prefix: "/orders/", Service: "orders", StripPrefix: true},
		{Prefix: "/api", Service: "orders", StripPrefix: true},
		{Prefix: "/keep/", Service: "orders"},
		{Prefix: "/keep/", Host: "other.example", Service: "other"},
	}}, Options{})
	tg.Update(regSnap(1, inst("orders", b.addr(), 1), inst("other", other.addr(), 1)), nil)
	c := client()
	for path, want := range map[string]string{
		"/orders/a/b?x=1": "/a/b?x=1",
		"/orders/":        "/",
		"/orders":         "/",
		"/orders/a%2Fb":   "/a%2Fb",
		"/api/v1":         "/v1",
		"/apix":           "/x",
		"/api":            "/",
		"/keep/z?q":       "/keep/z?q",
	} {
		if r := get(t, c, tg.front.URL+path); r.code != 200 || r.body != want {
			t.Errorf("%s: got %d %q, want %q", path, r.code, r.body, want)
		}
	}
	req, _ := http.NewRequest("GET", tg.front.URL+"/keep/z", nil)
	req.Host = "Other.Example:8080"
	if r := do(t, c, req); r.body != "other /keep/z" {
		t.Errorf("host route: got %q", r.body)
	}
}

package bench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBareProxyHandler(t *testing.T) {
	var gotPath, gotXFF, gotHost string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotXFF, gotHost = r.URL.Path, r.Header.Get("X-Forwarded-For"), r.Host
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	h, err := BareProxyHandler(strings.TrimPrefix(backend.URL, "http://"), "/bench/")
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(h)
	defer proxy.Close()
	resp, err := http.Get(proxy.URL + "/bench/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" || gotPath != "/hello" || gotXFF != "127.0.0.1" || gotHost != strings.TrimPrefix(proxy.URL, "http://") {
		t.Errorf("body %q path %q X-Forwarded-For %q host %q", body, gotPath, gotXFF, gotHost)
	}
	for _, bad := range [][2]string{{"nohost", "/p/"}, {"127.0.0.1:1", "p/"}, {"127.0.0.1:1", "/p"}} {
		if _, err := BareProxyHandler(bad[0], bad[1]); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

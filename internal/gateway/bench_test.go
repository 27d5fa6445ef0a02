package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/registry"
)

// discardWriter is the cheapest ResponseWriter: the benchmarks measure the
// gateway, not httptest.ResponseRecorder.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func benchGateway(b *testing.B, instances int) *testGateway {
	tg := newTestGateway(b, config.Gateway{Routes: []config.Route{
		{Prefix: "/other/", Service: "other"},
		{Prefix: "/svc/", Service: "s", StripPrefix: true},
	}}, Options{})
	backend := newBackend(b, "b", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
	})
	snap := regSnap(1, inst("s", backend.addr(), 1))
	for i := 1; i < instances; i++ {
		other := newBackend(b, "b", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "ok")
		})
		snap = regSnap(1, append(snap.Services["s"], inst("s", other.addr(), int64(i+1)))...)
	}
	tg.Update(snap, nil)
	return tg
}

// BenchmarkProxy: ServeHTTP against a real httptest instance over
// loopback. allocs/op include the instance's server side (same process).
func BenchmarkProxy(b *testing.B) {
	tg := benchGateway(b, 1)
	req := httptest.NewRequest("GET", "http://gw/svc/orders/1?x=1", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		tg.ServeHTTP(w, req)
		if w.code != 200 {
			b.Fatalf("code %d", w.code)
		}
	}
}

func BenchmarkProxyParallel(b *testing.B) {
	tg := benchGateway(b, 3)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "http://gw/svc/orders/1?x=1", nil)
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			tg.ServeHTTP(w, req)
			if w.code != 200 {
				b.Errorf("code %d", w.code)
				return
			}
		}
	})
}

// BenchmarkProxyPOST sends a small body (the request-body wrapper's cost).
func BenchmarkProxyPOST(b *testing.B) {
	tg := benchGateway(b, 1)
	w := &discardWriter{h: http.Header{}}
	body := strings.NewReader(`{"item":42}`)
	req := httptest.NewRequest("POST", "http://gw/svc/orders", body)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body.Seek(0, io.SeekStart)
		req.Body = io.NopCloser(body)
		clear(w.h)
		tg.ServeHTTP(w, req)
		if w.code != 200 {
			b.Fatalf("code %d", w.code)
		}
	}
}

// stubTransport answers without any network: BenchmarkGatewayOverhead
// measures the gateway and httputil.ReverseProxy alone. The stub itself
// allocates 4 objects per request (Response, Header, its value slice and
// the body).
type stubTransport struct{}

type stubBody struct{ done bool }

func (b *stubBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	b.done = true
	return copy(p, "ok"), nil
}
func (b *stubBody) Close() error { return nil }

func (stubTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Length": {"2"}},
		Body:          &stubBody{},
		ContentLength: 2,
		Request:       r,
	}, nil
}

func BenchmarkGatewayOverhead(b *testing.B) {
	tg := benchGateway(b, 1)
	tg.transport = stubTransport{}
	req := httptest.NewRequest("GET", "http://gw/svc/orders/1?x=1", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		tg.ServeHTTP(w, req)
		if w.code != 200 {
			b.Fatalf("code %d", w.code)
		}
	}
}

// BenchmarkDirectBackend is the baseline: the same request straight to
// the instance with an http.Transport, no gateway.
func BenchmarkDirectBackend(b *testing.B) {
	tg := benchGateway(b, 1)
	addr := tg.status(b, "").Addr
	for _, st := range tg.InstanceStates() {
		addr = st.Addr
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+addr+"/orders/1?x=1", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkUpdate: building and swapping a table for a registry of 100k
// instances in 10k services, 200 of them routed (only routed services are
// built), with 1000 marks.
func BenchmarkUpdate(b *testing.B) {
	var routes []config.Route
	for i := 0; i < 200; i++ {
		routes = append(routes, config.Route{Prefix: fmt.Sprintf("/s%d/", i), Service: fmt.Sprintf("s%d", i)})
	}
	g, err := New(config.Gateway{Routes: routes}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	reg := &registry.Snapshot{Revision: 1, Services: map[string][]registry.Instance{}}
	var ms []marks.Mark
	for s := 0; s < 10000; s++ {
		name := fmt.Sprintf("s%d", s)
		for i := 0; i < 10; i++ {
			in := inst(name, fmt.Sprintf("10.%d.%d.%d:8080", s/256, s%256, i), int64(s*10+i))
			reg.Services[name] = append(reg.Services[name], in)
			if i == 0 && s%10 == 0 {
				ms = append(ms, mark(name, in.Addr, 1<<40))
			}
		}
	}
	mk := markSnap(1, ms...)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g.Update(reg, mk)
	}
}

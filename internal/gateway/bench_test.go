package gateway

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/zktree"
)

func benchGateway(b *testing.B, instances int) *testGateway {
	tg := newTestGateway(b, config.Gateway{Routes: []config.Route{
		{Prefix: "/other/", Service: "other"},
		{Prefix: "/svc/", Service: "s", StripPrefix: true},
	}}, Options{})
	var ins []registry.Instance
	for i := 0; i < instances; i++ {
		be := newBackend(b, "b", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "ok")
		})
		ins = append(ins, inst("s", be.addr(), int64(i+1)))
	}
	tg.Update(regSnap(1, ins...), nil)
	return tg
}

// rawClient sends requests over one keep-alive connection and reads the
// (Content-Length framed) responses, allocating nothing per request: the
// benchmarks measure the gateway, not a client.
type rawClient struct {
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(b *testing.B, addr string) *rawClient {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	return &rawClient{nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawClient) do(b *testing.B, req []byte) {
	if _, err := c.nc.Write(req); err != nil {
		b.Fatal(err)
	}
	cl := -1
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && (line[0] == 'C' || line[0] == 'c') && strings.EqualFold(string(line[:15]), "content-length:") {
			cl = 0
			for _, ch := range line[15:] {
				if '0' <= ch && ch <= '9' {
					cl = cl*10 + int(ch-'0')
				}
			}
		}
	}
	if cl < 0 {
		b.Fatal("response without Content-Length")
	}
	if _, err := c.br.Discard(cl); err != nil {
		b.Fatal(err)
	}
}

// benchSerial sends req b.N times over one keep-alive connection to addr.
func benchSerial(b *testing.B, addr string, req []byte) {
	c := dialRaw(b, addr)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.do(b, req)
	}
}

// BenchmarkProxy: one keep-alive connection through the gateway to a real
// httptest instance over loopback. allocs/op include the instance's
// net/http server (same process): compare with BenchmarkDirectBackend.
func BenchmarkProxy(b *testing.B) {
	tg := benchGateway(b, 1)
	req := []byte("GET /svc/orders/1?x=1 HTTP/1.1\r\nHost: gw\r\nUser-Agent: bench\r\n\r\n")
	benchSerial(b, tg.front.Addr, req)
}

// BenchmarkProxyPOST: as BenchmarkProxy with a 4 KiB body.
func BenchmarkProxyPOST(b *testing.B) {
	tg := benchGateway(b, 1)
	body := strings.Repeat("x", 4096)
	req := []byte("POST /svc/orders HTTP/1.1\r\nHost: gw\r\nContent-Length: 4096\r\n\r\n" + body)
	benchSerial(b, tg.front.Addr, req)
}

// BenchmarkProxyParallel: several connections, several instances.
func BenchmarkProxyParallel(b *testing.B) {
	tg := benchGateway(b, 4)
	req := []byte("GET /svc/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := dialRaw(b, tg.front.Addr)
		for pb.Next() {
			c.do(b, req)
		}
	})
}

// BenchmarkDirectBackend is the baseline: the same request straight to
// the instance, no gateway.
func BenchmarkDirectBackend(b *testing.B) {
	tg := benchGateway(b, 1)
	var addr string
	for _, st := range tg.InstanceStates() {
		addr = st.Addr
	}
	req := []byte("GET /orders/1?x=1 HTTP/1.1\r\nHost: gw\r\n\r\n")
	benchSerial(b, addr, req)
}

// routedGateway is a gateway with routes /s<i>/ to the services s0 to
// s<n-1> of bigRegistry.
func routedGateway(b *testing.B, n int) *Gateway {
	b.Helper()
	var routes []config.Route
	for i := range n {
		routes = append(routes, config.Route{Prefix: fmt.Sprintf("/s%d/", i), Service: fmt.Sprintf("s%d", i)})
	}
	g, err := New(config.Gateway{Routes: routes}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// bigRegistry is a registry of 100k instances in 10k services s0 to
// s9999, and marks of the first instance of every tenth service.
func bigRegistry() (*registry.Snapshot, *marks.Snapshot) {
	reg := &registry.Snapshot{Info: zktree.Info{Revision: 1}, Services: map[string][]registry.Instance{}}
	var ms []marks.Mark
	for s := range 10000 {
		name := fmt.Sprintf("s%d", s)
		for i := range 10 {
			in := inst(name, fmt.Sprintf("10.%d.%d.%d:8080", s/256, s%256, i), int64(s*10+i))
			reg.Services[name] = append(reg.Services[name], in)
			if i == 0 && s%10 == 0 {
				ms = append(ms, mark(name, in.Addr, 1<<40))
			}
		}
	}
	return reg, markSnap(1, ms...)
}

// BenchmarkUpdate: building and swapping a table for a registry of 100k
// instances in 10k services, 200 of them routed (only routed services are
// built), with 1000 marks.
func BenchmarkUpdate(b *testing.B) {
	g := routedGateway(b, 200)
	reg, mk := bigRegistry()
	// Two copies with slices of their own, in turn: every Update builds
	// every routed pool (an unchanged slice would be shared).
	regs := [2]*registry.Snapshot{reg, {Info: reg.Info, Services: map[string][]registry.Instance{}}}
	for name, ins := range reg.Services {
		regs[1].Services[name] = slices.Clone(ins)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g.Update(regs[i%2], mk)
	}
}

// BenchmarkUpdateOneService: a gateway routing to all 10k services of a
// registry of 100k instances, 1000 of them marked; each Update is one
// service's change, as the registry cache publishes it (the other
// services' slices shared with the previous snapshot).
func BenchmarkUpdateOneService(b *testing.B) {
	g := routedGateway(b, 10000)
	reg, mk := bigRegistry()
	g.Update(reg, mk)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer() // the registry cache's part
		name := fmt.Sprintf("s%d", i%10000)
		next := &registry.Snapshot{Info: zktree.Info{Revision: reg.Revision + 1}, Services: maps.Clone(reg.Services)}
		ins := slices.Clone(reg.Services[name])
		ins[0].Czxid += 100000 // re-registered
		next.Services[name] = ins
		b.StartTimer()
		g.Update(next, mk)
		reg = next
	}
}

package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/register"
)

func TestBackendHandler(t *testing.T) {
	srv := httptest.NewServer(BackendHandler(64))
	defer srv.Close()
	for i := 0; i < 3; i++ { // the shared header slices stay intact
		resp, err := http.Get(srv.URL + "/anything")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) != 64 || resp.ContentLength != 64 || body[63] != '\n' {
			t.Fatalf("status %d, %d bytes (Content-Length %d)", resp.StatusCode, len(body), resp.ContentLength)
		}
		if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD, POST, PUT" {
		t.Errorf("DELETE: status %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// countingReader counts what the handler read of a request body.
type countingReader struct {
	r   io.Reader
	n   int
	err error // returned once r is exhausted, instead of io.EOF
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if err == io.EOF && c.err != nil {
		err = c.err
	}
	return n, err
}

func TestBackendConsumesRequestBodies(t *testing.T) {
	h := BackendHandler(64)
	for _, method := range []string{http.MethodPost, http.MethodPut} {
		body := &countingReader{r: strings.NewReader(strings.Repeat("x", 4096))}
		req := httptest.NewRequest(method, "/hello", body)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Body.Len() != 64 || body.n != 4096 {
			t.Errorf("%s: status %d, %d response bytes, %d of 4096 body bytes read", method, rec.Code, rec.Body.Len(), body.n)
		}
	}
	// A body that breaks off is a bad request, not a 200.
	req := httptest.NewRequest(http.MethodPost, "/hello", &countingReader{r: strings.NewReader("xx"), err: io.ErrUnexpectedEOF})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("truncated body: status %d", rec.Code)
	}
}

func TestBackendSizeQuery(t *testing.T) {
	srv := httptest.NewServer(BackendHandler(64))
	defer srv.Close()
	get := func(path string) (int, []byte, int64) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body, resp.ContentLength
	}
	for range 2 { // built once, then served from the cache
		code, body, cl := get("/hello?size=65536")
		if code != 200 || len(body) != 65536 || cl != 65536 || body[65535] != '\n' {
			t.Fatalf("size=65536: status %d, %d bytes (Content-Length %d)", code, len(body), cl)
		}
	}
	if code, body, _ := get("/hello?size=0"); code != 200 || len(body) != 0 {
		t.Errorf("size=0: status %d, %d bytes", code, len(body))
	}
	if code, body, _ := get("/hello"); code != 200 || len(body) != 64 {
		t.Errorf("default: status %d, %d bytes", code, len(body))
	}
	for _, q := range []string{"?size=-1", "?size=x", "?other=1", "?size=99999999999"} {
		if code, _, _ := get("/hello" + q); code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, code)
		}
	}
	// The sizes kept are bounded.
	f := BackendHandler(1).(*fixedBody)
	for i := range maxBackendSizes {
		if _, err := f.sized("size=" + strconv.Itoa(i+2)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.sized("size=1000"); err == nil {
		t.Error("no error beyond the bound of sizes")
	}
	if _, err := f.sized("size=2"); err != nil {
		t.Errorf("a kept size: %v", err)
	}
}

func TestRunBackendPrintsAddress(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() { errc <- RunBackend(ctx, "127.0.0.1:0", 10, pw); pw.Close() }()
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	addr, err := readBackendAddr(rctx, pr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(body) != 10 {
		t.Errorf("body %q", body)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestReadBackendAddrEOF(t *testing.T) {
	if _, err := readBackendAddr(context.Background(), strings.NewReader("panic: oops\n")); err == nil {
		t.Fatal("no error when the backend exits without listening")
	}
}

func TestCuratorJSONParses(t *testing.T) {
	id, err := register.NewUUID()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Fatalf("not a v4 UUID: %s", id)
	}
	data, err := curatorJSON("bench", id, "127.0.0.1:4321", time.UnixMilli(1651140425239))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"sslPort":null`, `"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance"`, `"registrationTimeUTC":1651140425239`, `"serviceType":"DYNAMIC"`, `"uriSpec":{"parts":[`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("registration lacks %s: %s", want, data)
		}
	}
	ins, err := registry.CuratorParser{}.Parse("bench", id, data, registry.NodeStat{Czxid: 5})
	if err != nil {
		t.Fatal(err)
	}
	if ins.Addr != "127.0.0.1:4321" || ins.ID != id || !ins.Up() {
		t.Errorf("parsed %+v", ins)
	}
	if _, err := curatorJSON("bench", id, "no-port", time.Now()); err == nil {
		t.Error("no error for an address without port")
	}
}

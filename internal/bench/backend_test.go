package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/registry"
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
	resp, err := http.Post(srv.URL, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", resp.StatusCode)
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
	id := newUUID()
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

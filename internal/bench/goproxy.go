package bench

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// BareProxyHandler is the reference proxy of the benchmark: a plain
// httputil.ReverseProxy to one backend, with the same transport settings,
// copy-buffer pool and request rewriting as the gateway (strip prefix,
// X-Forwarded-*) and nothing else: no registry, routing table, balancer,
// in-flight accounting or metrics. Comparing it with the gateway separates
// the cost of Go's net/http from the cost of zkgate's own logic.
func BareProxyHandler(backend, prefix string) (http.Handler, error) {
	if _, _, err := net.SplitHostPort(backend); err != nil {
		return nil, fmt.Errorf("backend: %q is not host:port", backend)
	}
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("prefix: %q must start and end with /", prefix)
	}
	target := &url.URL{Scheme: "http", Host: backend}
	strip := strings.TrimSuffix(prefix, "/")
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Path = strings.TrimPrefix(pr.Out.URL.Path, strip)
			pr.Out.URL.RawPath = ""
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		},
		// Without a pool ReverseProxy allocates a 32 KiB copy buffer per
		// request; the gateway pools them too.
		BufferPool: &copyBufferPool{},
		ErrorLog:   log.New(io.Discard, "", 0),
	}, nil
}

// copyBufferPool recycles ReverseProxy's copy buffers.
type copyBufferPool struct{ p sync.Pool }

type copyBuffer [32 << 10]byte

func (bp *copyBufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*copyBuffer); ok {
		return b[:]
	}
	return new(copyBuffer)[:]
}

func (bp *copyBufferPool) Put(b []byte) {
	if len(b) == len(copyBuffer{}) {
		bp.p.Put((*copyBuffer)(b))
	}
}

// RunBareProxy serves BareProxyHandler on listen until ctx ends. Once it
// accepts connections it prints "listening HOST:PORT" on stdout.
func RunBareProxy(ctx context.Context, listen, backend, prefix string, stdout io.Writer) error {
	h, err := BareProxyHandler(backend, prefix)
	if err != nil {
		return err
	}
	return serveHelper(ctx, "bare proxy", listen, &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}, stdout)
}

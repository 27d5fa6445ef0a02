package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zkgate/zkgate/register"
)

// backendReadyPrefix starts the line the backend prints on stdout once it
// accepts connections.
const backendReadyPrefix = "listening "

// fixedBody answers every request with a fixed body and keep-alive: the
// cheapest backend net/http allows, so the benchmark measures the proxy.
// GET and HEAD get the default body; POST and PUT read the whole request
// body first (the POST scenario makes the proxy forward it). A query
// "size=N" asks for a body of N bytes instead of the default (the 64 KiB
// scenario): each size is built once and kept.
type fixedBody struct {
	def   *sizedBody
	mu    sync.Mutex // serializes adding sizes
	sizes sync.Map   // int → *sizedBody
	count int        // sizes kept besides the default, under mu
}

// sizedBody is one response body with its header values.
type sizedBody struct {
	body        []byte
	contentType []string
	length      []string
}

// Bounds of the bodies the backend builds on request.
const (
	maxBackendBody  = 16 << 20
	maxBackendSizes = 16
)

func newSizedBody(size int) *sizedBody {
	body := make([]byte, size)
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := range body {
		body[i] = alphabet[i%len(alphabet)]
	}
	if size > 0 {
		body[size-1] = '\n'
	}
	return &sizedBody{
		body:        body,
		contentType: []string{"text/plain; charset=utf-8"},
		length:      []string{strconv.Itoa(size)},
	}
}

// BackendHandler returns the backend's handler: by default a body of
// size bytes (see fixedBody for the query that asks for another size).
func BackendHandler(size int) http.Handler {
	return &fixedBody{def: newSizedBody(size)}
}

// sized returns the body asked for by the query ("size=N"), the default
// one without a query.
func (f *fixedBody) sized(rawQuery string) (*sizedBody, error) {
	if rawQuery == "" {
		return f.def, nil
	}
	v, ok := strings.CutPrefix(rawQuery, "size=")
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n < 0 || n > maxBackendBody {
		return nil, fmt.Errorf("the query must be size=N with 0 ≤ N ≤ %d", maxBackendBody)
	}
	if b, ok := f.sizes.Load(n); ok {
		return b.(*sizedBody), nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.sizes.Load(n); ok {
		return b.(*sizedBody), nil
	}
	if f.count >= maxBackendSizes {
		return nil, fmt.Errorf("at most %d distinct sizes", maxBackendSizes)
	}
	b := newSizedBody(n)
	f.sizes.Store(n, b)
	f.count++
	return b, nil
}

func (f *fixedBody) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost, http.MethodPut:
		// Read the whole body, as a real handler would (io.Discard reads
		// with pooled buffers: no allocation per request).
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
			return
		}
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	b, err := f.sized(r.URL.RawQuery)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := w.Header()
	// Shared slices: net/http only reads header values.
	h["Content-Type"] = b.contentType
	h["Content-Length"] = b.length
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b.body)
	}
}

// RunBackend serves BackendHandler(size) on listen until ctx ends. Once
// it accepts connections it prints "listening HOST:PORT" on stdout.
func RunBackend(ctx context.Context, listen string, size int, stdout io.Writer) error {
	if size < 0 {
		return errors.New("--size must not be negative")
	}
	return serveHelper(ctx, "backend", listen, &http.Server{Handler: BackendHandler(size), ReadHeaderTimeout: 10 * time.Second}, stdout)
}

// serveHelper serves srv on listen until ctx ends, then shuts it down
// (at most 2 s). Once it accepts connections it prints "listening
// HOST:PORT" on stdout, which readBackendAddr reads. Errors name what.
func serveHelper(ctx context.Context, what, listen string, srv *http.Server, stdout io.Writer) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "%s%s\n", backendReadyPrefix, ln.Addr())
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("%s: %w", what, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

// readBackendAddr waits for the backend's "listening" line on r.
func readBackendAddr(ctx context.Context, r io.Reader) (string, error) {
	type result struct {
		addr string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), backendReadyPrefix); ok {
				ch <- result{addr: strings.TrimSpace(a)}
				// Keep draining so the backend never blocks on stdout.
				for sc.Scan() {
				}
				return
			}
		}
		ch <- result{err: errors.New("backend exited before listening")}
	}()
	select {
	case r := <-ch:
		return r.addr, r.err
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for the backend to listen: %w", ctx.Err())
	}
}

// curatorJSON renders a registration of service's instance id at addr
// (host:port) in the format Spring Cloud Zookeeper writes
// (docs/architecture.md#zookeeper-layout), via register.EncodeInstance.
func curatorJSON(service, id, addr string, now time.Time) ([]byte, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("instance address: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("instance port: %w", err)
	}
	return register.EncodeInstance(service, id, "application-1", host, port, nil, now.UnixMilli()), nil
}

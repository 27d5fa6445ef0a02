// Package samplebackend is a small HTTP service for demos and tests: it
// registers itself in ZooKeeper (package register, without drain), answers
// GET and POST after a configurable latency with a body and a header naming
// the instance, and stops the way many real services do: at once, cutting
// the requests in flight, its registration vanishing only when its
// ZooKeeper session closes. So demos show the problem, and the cure,
// honestly.
//
// It can also behave like a JVM service (Spring Boot on Tomcat):
// Options.StartupDelay makes it take seconds before it listens and
// registers, and Shutdown stops it the way Spring Boot's graceful shutdown
// does: stop accepting, finish the requests in flight, and only then
// deregister ("deregister late") and close the session.
//
// # HTTP interface
//
//   - GET or HEAD on any path: 200 with a JSON Reply.
//   - POST or PUT on any path: the body is read whole; 200 with a JSON
//     Reply carrying its length and SHA-256, so a client can check the
//     body arrived intact.
//   - Every answer carries the header X-Zkgate-Instance: <name>.
//   - Query knobs: latency=DURATION replaces the configured latency for the
//     request; status=CODE answers with that status (still a Reply).
//   - /healthz: GET answers 200 "ok" while healthy, 503 otherwise; POST
//     /healthz?state=down|up flips it (for health-check demos).
package samplebackend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zkgate/zkgate/register"
)

// HeaderInstance names the instance in every answer.
const HeaderInstance = "X-Zkgate-Instance"

// Reply is the JSON body of every answer but /healthz.
type Reply struct {
	Instance string `json:"instance"`
	Addr     string `json:"addr"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	// Bytes and SHA256 describe the request body (POST/PUT).
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256,omitempty"`
	// Seq numbers the requests this instance has answered, from 1.
	Seq int64 `json:"seq"`
}

// Options configure a Backend.
type Options struct {
	// Listen is the address to listen on; default 127.0.0.1:0.
	Listen string
	// Name names the instance in answers; default its address.
	Name string
	// Latency is added to every request but /healthz.
	Latency time.Duration
	// Register, when set, registers the backend. Its Address defaults to
	// the listener's address (which must then not be 0.0.0.0 or ::); its
	// Drainer is ignored: a sample backend stops without grace.
	Register *register.Options
	// StartupDelay is waited (ctx permitting) before listening and
	// registering, as a JVM service takes seconds to start.
	StartupDelay time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Backend is a running sample backend.
type Backend struct {
	name    string
	addr    string
	latency time.Duration
	log     *slog.Logger
	ln      net.Listener
	srv     *http.Server
	reg     *register.Registration

	seq      atomic.Int64
	inFlight atomic.Int64
	healthy  atomic.Bool

	killOnce sync.Once
	done     chan struct{}
}

// Start listens, starts serving and, when configured, registers. ctx
// bounds only the registration; the backend runs until Kill.
func Start(ctx context.Context, opts Options) (*Backend, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Latency < 0 || opts.StartupDelay < 0 {
		return nil, errors.New("sample backend: latency and start-up delay must not be negative")
	}
	if opts.StartupDelay > 0 {
		t := time.NewTimer(opts.StartupDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("sample backend: starting: %w", ctx.Err())
		case <-t.C:
		}
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("sample backend: listening: %w", err)
	}
	b := &Backend{
		name:    opts.Name,
		addr:    ln.Addr().String(),
		latency: opts.Latency,
		ln:      ln,
		done:    make(chan struct{}),
	}
	if b.name == "" {
		b.name = b.addr
	}
	b.log = opts.Logger.With("component", "sample-backend", "instance", b.name)
	b.healthy.Store(true)
	b.srv = &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(b.done)
		if err := b.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("serving", "err", err)
		}
	}()
	if opts.Register != nil {
		ro := *opts.Register
		if ro.Address == "" {
			if ip := ln.Addr().(*net.TCPAddr).IP; ip.IsUnspecified() {
				b.srv.Close()
				<-b.done
				return nil, fmt.Errorf("sample backend: listening on all interfaces (%s): give the address to register", opts.Listen)
			}
			ro.Address = b.addr
		}
		ro.Drainer = nil
		if ro.Logger == nil {
			ro.Logger = opts.Logger
		}
		b.reg, err = register.Register(ctx, ro)
		if err != nil {
			b.srv.Close()
			<-b.done
			return nil, fmt.Errorf("sample backend: %w", err)
		}
	}
	b.log.Info("sample backend serving", "addr", b.addr, "latency", b.latency, "registered", b.reg != nil)
	return b, nil
}

// Addr is the listener's address.
func (b *Backend) Addr() string { return b.addr }

// Name is the instance name in answers.
func (b *Backend) Name() string { return b.name }

// Registration is the backend's registration, nil when not registering.
func (b *Backend) Registration() *register.Registration { return b.reg }

// Requests counts the requests answered or in progress (not /healthz).
func (b *Backend) Requests() int64 { return b.seq.Load() }

// InFlight is the number of requests being served now.
func (b *Backend) InFlight() int64 { return b.inFlight.Load() }

// SetHealthy sets what /healthz answers.
func (b *Backend) SetHealthy(ok bool) { b.healthy.Store(ok) }

// Kill stops the backend at once, with no grace: the listener and every
// connection are closed (requests in flight are cut), then the ZooKeeper
// session is closed, which is when the registration disappears. Kill is
// idempotent.
func (b *Backend) Kill() {
	b.killOnce.Do(func() {
		b.log.Info("sample backend stopping at once", "in_flight", b.inFlight.Load())
		b.srv.Close()
		<-b.done
		if b.reg != nil {
			b.reg.Close()
		}
	})
}

// Shutdown stops the backend gracefully, as Spring Boot's graceful shutdown
// does: the listener closes (new connections are refused) and idle
// connections with it, the requests in flight finish (ctx bounds the wait;
// those still running then are cut), and only then is the node deleted and
// the session closed. Shutdown after Kill or Shutdown does nothing.
func (b *Backend) Shutdown(ctx context.Context) error {
	var err error
	b.killOnce.Do(func() {
		b.log.Info("sample backend shutting down gracefully", "in_flight", b.inFlight.Load())
		if err = b.srv.Shutdown(ctx); err != nil {
			b.srv.Close()
			err = fmt.Errorf("sample backend: finishing the requests in flight: %w", err)
		}
		<-b.done
		if b.reg != nil {
			// A fresh bound: deregistering is worth doing even when the
			// wait for the requests in flight used up ctx.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if rerr := b.reg.Shutdown(dctx); rerr != nil {
				err = errors.Join(err, fmt.Errorf("sample backend: deregistering: %w", rerr))
			}
		}
	})
	return err
}

// ServeHTTP implements http.Handler.
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(HeaderInstance, b.name)
	if r.URL.Path == "/healthz" {
		b.serveHealth(w, r)
		return
	}
	b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	seq := b.seq.Add(1)
	q := r.URL.Query()
	latency := b.latency
	if v := q.Get("latency"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			http.Error(w, "latency: not a duration", http.StatusBadRequest)
			return
		}
		latency = d
	}
	status := http.StatusOK
	if v := q.Get("status"); v != "" {
		c, err := strconv.Atoi(v)
		if err != nil || c < 200 || c > 599 {
			http.Error(w, "status: not an HTTP status", http.StatusBadRequest)
			return
		}
		status = c
	}
	rep := Reply{Instance: b.name, Addr: b.addr, Method: r.Method, Path: r.URL.Path, Seq: seq}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost, http.MethodPut:
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		rep.Bytes, rep.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return // cut (Kill, or the client went away)
		}
	}
	body, _ := json.Marshal(rep)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(append(body, '\n'))
	}
}

func (b *Backend) serveHealth(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		switch r.URL.Query().Get("state") {
		case "down":
			b.healthy.Store(false)
		case "up":
			b.healthy.Store(true)
		default:
			http.Error(w, "state must be up or down", http.StatusBadRequest)
			return
		}
	case http.MethodGet, http.MethodHead:
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !b.healthy.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok\n")
}

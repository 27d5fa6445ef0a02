package samplebackend_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/samplebackend"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/register"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t *testing.T, opts samplebackend.Options) *samplebackend.Backend {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := samplebackend.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Kill)
	return b
}

func do(t *testing.T, method, url, body string) (*http.Response, samplebackend.Reply) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep samplebackend.Reply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatalf("%s %s: decoding reply: %v", method, url, err)
	}
	return resp, rep
}

func TestGetAndPost(t *testing.T) {
	b := start(t, samplebackend.Options{Name: "orders-1", Latency: time.Millisecond})
	base := "http://" + b.Addr()

	resp, rep := do(t, http.MethodGet, base+"/orders/42", "")
	if resp.StatusCode != 200 || resp.Header.Get(samplebackend.HeaderInstance) != "orders-1" ||
		rep.Instance != "orders-1" || rep.Addr != b.Addr() || rep.Path != "/orders/42" || rep.Method != "GET" || rep.Seq != 1 {
		t.Fatalf("GET: %d %v %+v", resp.StatusCode, resp.Header, rep)
	}

	body := strings.Repeat("zkgate ", 10000)
	sum := sha256.Sum256([]byte(body))
	resp, rep = do(t, http.MethodPost, base+"/orders", body)
	if resp.StatusCode != 200 || rep.Bytes != int64(len(body)) || rep.SHA256 != hex.EncodeToString(sum[:]) || rep.Seq != 2 {
		t.Fatalf("POST: %d %+v", resp.StatusCode, rep)
	}

	resp, rep = do(t, http.MethodGet, base+"/x?status=503&latency=0s", "")
	if resp.StatusCode != 503 || rep.Instance != "orders-1" {
		t.Fatalf("status knob: %d %+v", resp.StatusCode, rep)
	}
	if b.Requests() != 3 {
		t.Fatalf("Requests = %d", b.Requests())
	}
}

func TestHealthz(t *testing.T) {
	b := start(t, samplebackend.Options{})
	url := "http://" + b.Addr() + "/healthz"
	get := func() int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if get() != 200 {
		t.Fatal("not healthy at start")
	}
	resp, err := http.Post(url+"?state=down", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if get() != 503 {
		t.Fatal("still healthy after state=down")
	}
	b.SetHealthy(true)
	if get() != 200 {
		t.Fatal("not healthy after SetHealthy(true)")
	}
	if b.Requests() != 0 {
		t.Fatalf("/healthz counted as requests: %d", b.Requests())
	}
}

func TestKillCutsRequestsInFlight(t *testing.T) {
	b := start(t, samplebackend.Options{Latency: time.Hour})
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + b.Addr() + "/slow")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				err = errors.New("answered " + resp.Status)
			}
		}
		errc <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for b.InFlight() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("request never arrived")
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Kill()
	if err := <-errc; err == nil || strings.HasPrefix(err.Error(), "answered") {
		t.Fatalf("request in flight was not cut: %v", err)
	}
	if _, err := http.Get("http://" + b.Addr() + "/"); err == nil {
		t.Fatal("still accepting after Kill")
	}
}

func TestRegistersAndVanishesOnKill(t *testing.T) {
	c := zktest.Start(t)
	b := start(t, samplebackend.Options{
		Name:     "orders-a",
		Register: &register.Options{Servers: c.Servers(), Service: "orders", Logger: quiet()},
	})
	reg := b.Registration()
	if reg == nil || reg.Addr() != b.Addr() || !reg.Status().Registered {
		t.Fatalf("registration %+v", reg)
	}
	obs := zktest.Session(t, zksession.Config{Servers: c.Servers(), Logger: quiet()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ok, _, err := obs.Exists(ctx, reg.Path()); err != nil || !ok {
		t.Fatalf("node missing: %v", err)
	}
	b.Kill()
	testutil.Eventually(t, 30*time.Second, "the node to go with the killed backend's session", func() bool {
		ok, _, err := obs.Exists(ctx, reg.Path())
		return err == nil && !ok
	})
}

func TestUnspecifiedListenNeedsAnAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := samplebackend.Start(ctx, samplebackend.Options{
		Listen: "0.0.0.0:0", Logger: quiet(),
		Register: &register.Options{Servers: []string{"127.0.0.1:1"}, Service: "orders"},
	})
	if err == nil || !strings.Contains(err.Error(), "address to register") {
		t.Fatalf("Start = %v, want an error about the unroutable address", err)
	}
}

// TestGracefulShutdownDeregistersLate: Shutdown refuses new connections at
// once, lets the request in flight finish, and deletes the node only after
// it (Spring Boot's graceful shutdown, then the registry's deregistration).
func TestGracefulShutdownDeregistersLate(t *testing.T) {
	c := zktest.Start(t)
	t0 := time.Now()
	b := start(t, samplebackend.Options{
		Latency: 10 * time.Millisecond, StartupDelay: 300 * time.Millisecond,
		Register: &register.Options{Servers: c.Servers(), Service: "orders", Logger: quiet()},
	})
	if took := time.Since(t0); took < 300*time.Millisecond {
		t.Fatalf("started in %s, before its start-up delay", took)
	}
	reg := b.Registration()
	obs := zktest.Session(t, zksession.Config{Servers: c.Servers(), Logger: quiet()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		status int
		err    error
	}
	resc := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + b.Addr() + "/slow?latency=1500ms")
		if err != nil {
			resc <- result{err: err}
			return
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		resc <- result{status: resp.StatusCode, err: err}
	}()
	for deadline := time.Now().Add(30 * time.Second); b.InFlight() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("request never arrived")
		}
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- b.Shutdown(ctx) }()
	// While the slow request runs: new connections refused, node still there.
	time.Sleep(300 * time.Millisecond)
	if resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + b.Addr() + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("a new connection was accepted during the graceful shutdown")
	}
	if ok, _, err := obs.Exists(ctx, reg.Path()); err != nil || !ok {
		t.Fatalf("deregistered before the request in flight finished (exists %v, err %v)", ok, err)
	}
	if r := <-resc; r.err != nil || r.status != http.StatusOK {
		t.Fatalf("request in flight: status %d, err %v; want it finished", r.status, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if ok, _, err := obs.Exists(ctx, reg.Path()); err != nil || ok {
		t.Fatalf("node still there after Shutdown (exists %v, err %v)", ok, err)
	}
}

package ctlclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestNewParsesAddresses(t *testing.T) {
	c, err := New(" 127.0.0.1:7070 , https://ctl.example/ ", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.urls, ","); got != "http://127.0.0.1:7070,https://ctl.example" {
		t.Errorf("urls %q", got)
	}
	for _, bad := range []string{"", " , ", "ftp://x", "http://"} {
		if _, err := New(bad, Options{}); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

func TestRequestsCarryCredentialsAndDecodeErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("X-Zkgate-Actor") != "me@host" {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(ErrorResponse{Error: "who are you"})
			return
		}
		if r.URL.EscapedPath() != "/v1/services/orders/instances/%5B::1%5D:80/drain" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		var req DrainRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || req.Reason == "" {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(ErrorResponse{Error: "reason is required"})
			return
		}
		json.NewEncoder(w).Encode(DrainResponse{Service: "orders", Addr: "[::1]:80", Status: StatusMarked})
	}))
	defer srv.Close()
	ctx := context.Background()
	c, _ := New(srv.URL, Options{Token: "tok", Actor: "me@host"})
	r, err := c.Drain(ctx, "orders", "[::1]:80", DrainRequest{Reason: "x"})
	if err != nil || r.Status != StatusMarked {
		t.Fatalf("drain %+v %v", r, err)
	}
	_, err = c.Drain(ctx, "orders", "[::1]:80", DrainRequest{})
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Message != "reason is required" {
		t.Fatalf("error %v", err)
	}
	bad, _ := New(srv.URL, Options{Token: "nope"})
	if _, err := bad.Services(ctx); !errors.As(err, &ae) || ae.StatusCode != 401 || !strings.Contains(err.Error(), "who are you") {
		t.Fatalf("unauthorized error %v", err)
	}
}

// A replica that cannot be reached, answers 503, or drops a waiting drain
// is replaced by the next one; the wait continues with what remains.
func TestFailover(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	var calls503 atomic.Int64
	unavailable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls503.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(ErrorResponse{Error: "lost session"})
	}))
	defer unavailable.Close()
	// dropper accepts a waiting drain, then drops the connection.
	dropper := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		conn.Close()
	}))
	defer dropper.Close()
	var gotTimeout atomic.Value
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req DrainRequest
		if r.Body != nil && r.Method == http.MethodPut {
			json.NewDecoder(r.Body).Decode(&req)
			gotTimeout.Store(req.Timeout)
			json.NewEncoder(w).Encode(DrainResponse{Status: StatusDrained, Confirmed: true})
			return
		}
		json.NewEncoder(w).Encode(ServicesResponse{Services: []ServiceSummary{{Name: "orders"}}})
	}))
	defer good.Close()
	ctx := context.Background()

	c, _ := New(downURL+","+unavailable.URL+","+good.URL, Options{})
	s, err := c.Services(ctx)
	if err != nil || len(s.Services) != 1 {
		t.Fatalf("services via failover: %+v %v", s, err)
	}
	if calls503.Load() != 1 {
		t.Errorf("503 replica called %d times", calls503.Load())
	}

	c, _ = New(dropper.URL+","+good.URL, Options{})
	r, err := c.Drain(ctx, "orders", "10.0.0.1:80", DrainRequest{Reason: "x", Wait: true, Timeout: "10s"})
	if err != nil || r.Status != StatusDrained {
		t.Fatalf("drain via failover: %+v %v", r, err)
	}
	left, err := time.ParseDuration(gotTimeout.Load().(string))
	if err != nil || left >= 10*time.Second || left < 5*time.Second {
		t.Fatalf("the next replica was asked to wait %v (%v), want what remains of 10s", left, err)
	}

	// Client errors are not retried.
	var calls atomic.Int64
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte("plain text"))
	}))
	defer bad.Close()
	c, _ = New(bad.URL+","+good.URL, Options{})
	_, err = c.Services(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Message != "plain text" || calls.Load() != 1 {
		t.Fatalf("400: %v (calls %d)", err, calls.Load())
	}
}

// A 503 with "outcome": "unknown" is told apart from other failures: it is
// retried like any 503 (the calls are idempotent), and the error that
// remains says the outcome is unknown.
func TestOutcomeUnknown(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(ErrorResponse{Error: "outcome unknown: the mark may or may not be written", Outcome: OutcomeUnknown})
	}))
	defer srv.Close()
	c, _ := New(srv.URL, Options{})
	_, err := c.Drain(context.Background(), "orders", "10.0.0.5:8080", DrainRequest{Reason: "x"})
	var ae *APIError
	if !IsOutcomeUnknown(err) || !errors.As(err, &ae) || ae.StatusCode != 503 || ae.Outcome != OutcomeUnknown ||
		!strings.Contains(err.Error(), "outcome unknown") {
		t.Fatalf("error %v (%+v)", err, ae)
	}
	if calls.Load() != 2 {
		t.Errorf("%d calls, want the 503 retried once", calls.Load())
	}
	_, err = c.Undrain(context.Background(), "orders", "10.0.0.5:8080", "")
	if !IsOutcomeUnknown(err) {
		t.Fatalf("undrain error %v", err)
	}
	// Other 503s are not "outcome unknown".
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(ErrorResponse{Error: "lost session"})
	}))
	defer plain.Close()
	c, _ = New(plain.URL, Options{})
	// (A drain tries a plain 503 again until its timeout.)
	if _, err := c.Drain(context.Background(), "orders", "10.0.0.5:8080", DrainRequest{Reason: "x", Timeout: "1s"}); err == nil || IsOutcomeUnknown(err) {
		t.Fatalf("plain 503: %v", err)
	}
}

// With several replicas unreachable, the error names every replica's
// failure on one line, not only the last one's.
func TestAllReplicasFailingAreEachNamed(t *testing.T) {
	var urls []string
	for i := 0; i < 3; i++ {
		srv := httptest.NewServer(http.NotFoundHandler())
		urls = append(urls, srv.URL)
		srv.Close() // nothing listens there any more: connection refused
	}
	unavailable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(ErrorResponse{Error: "no ZooKeeper session"})
	}))
	defer unavailable.Close()
	urls = append(urls, unavailable.URL)
	c, err := New(strings.Join(urls, ","), Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Services(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, u := range urls {
		if !strings.Contains(msg, u) {
			t.Errorf("error %q does not name %s", msg, u)
		}
	}
	if !strings.Contains(msg, "no ZooKeeper session") || !strings.Contains(msg, "connection refused") {
		t.Errorf("error %q does not say what each replica did", msg)
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("the 503 is not reachable with errors.As: %v", err)
	}
}

// A drain keeps trying replicas that answer 503 (no ZooKeeper session,
// as during a ZooKeeper leader election) for as long as its timeout, not
// only two rounds: the pipeline gets its answer once a replica is back.
func TestDrainRetriesUnavailableForItsTimeout(t *testing.T) {
	var calls atomic.Int64
	var back atomic.Int64 // unix ns the replica has a session again
	back.Store(time.Now().Add(1500 * time.Millisecond).UnixNano())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if time.Now().UnixNano() < back.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":"not connected to ZooKeeper (session suspended)"}`))
			return
		}
		json.NewEncoder(w).Encode(DrainResponse{Status: StatusDrained, Service: "s", Addr: "a:1"})
	}))
	defer srv.Close()
	c, err := New(srv.URL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Drain(context.Background(), "s", "a:1", DrainRequest{Wait: true, Timeout: "20s"})
	if err != nil {
		t.Fatalf("drain failed after %d calls: %v", calls.Load(), err)
	}
	if resp.Status != StatusDrained || calls.Load() <= 2 {
		t.Fatalf("status %q after %d calls", resp.Status, calls.Load())
	}
	// Other calls still give up after two rounds.
	back.Store(time.Now().Add(time.Hour).UnixNano())
	calls.Store(0)
	if _, err := c.Leader(context.Background()); err == nil || calls.Load() != 2 {
		t.Fatalf("Leader: %v after %d calls, want an error after 2", err, calls.Load())
	}
}

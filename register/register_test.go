package register_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/register"
)

// Generous bounds: the machine is shared; nothing here asserts timing.
const (
	waitBound = 30 * time.Second
	testAddr  = "127.0.0.1:18080"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	t.Cleanup(cancel)
	return ctx
}

// mustRegister registers as opts say, failing the test if it cannot.
func mustRegister(t *testing.T, ctx context.Context, opts register.Options) *register.Registration {
	t.Helper()
	reg, err := register.Register(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// startServer starts a ZooKeeper server for the test and returns it, an
// observer session on it, and the test's context.
func startServer(t *testing.T) (*zktest.Cluster, *zksession.Session, context.Context) {
	t.Helper()
	c := zktest.Start(t)
	return c, observer(t, c), testContext(t)
}

// observer is a second client that looks at ZooKeeper the way a gateway
// does.
func observer(t *testing.T, c *zktest.Cluster) *zksession.Session {
	t.Helper()
	return zktest.Session(t, zksession.Config{Servers: c.Servers(), SessionTimeout: 10 * time.Second, Logger: testLogger(t)})
}

func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	testutil.EventuallyNil(t, waitBound, what, cond)
}

func baseOptions(t *testing.T, c *zktest.Cluster) register.Options {
	return register.Options{
		Servers:        c.Servers(),
		SessionTimeout: 4 * time.Second,
		Service:        "orders",
		Address:        testAddr,
		Metadata:       map[string]string{"zone": "a"},
		Logger:         testLogger(t),
	}
}

// node reads the registration node (nil stat when absent).
func node(t *testing.T, obs *zksession.Session, p string) ([]byte, *zksession.Stat) {
	t.Helper()
	data, st, err := obs.Get(testContext(t), p)
	if errors.Is(err, zksession.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		t.Fatalf("reading %s: %v", p, err)
	}
	return data, st
}

// nodeGone waits until the node is absent.
func nodeGone(t *testing.T, obs *zksession.Session, p string) {
	t.Helper()
	waitFor(t, p+" deleted", func() error {
		if _, st := node(t, obs, p); st != nil {
			return fmt.Errorf("still there (czxid %d, owner 0x%x)", st.Czxid, st.EphemeralOwner)
		}
		return nil
	})
}

// nodeNewer waits until the node exists with a czxid larger than after and
// returns its stat.
func nodeNewer(t *testing.T, obs *zksession.Session, p string, after int64) *zksession.Stat {
	t.Helper()
	var got *zksession.Stat
	waitFor(t, fmt.Sprintf("%s created after czxid %d", p, after), func() error {
		_, st := node(t, obs, p)
		if st == nil {
			return errors.New("absent")
		}
		if st.Czxid <= after {
			return fmt.Errorf("czxid %d", st.Czxid)
		}
		got = st
		return nil
	})
	return got
}

func TestRegistrationIsReadByTheRegistryCache(t *testing.T) {
	c, obs, ctx := startServer(t)

	reg := mustRegister(t, ctx, baseOptions(t, c))
	st := reg.Status()
	if !st.Registered || st.Registrations != 1 || !strings.HasPrefix(st.Path, "/services/orders/") || st.Addr != testAddr {
		t.Fatalf("status after Register: %+v", st)
	}

	data, zst := node(t, obs, reg.Path())
	if zst == nil {
		t.Fatal("node missing")
	}
	if zst.EphemeralOwner == 0 || zst.EphemeralOwner != st.SessionID || zst.Czxid != st.Czxid {
		t.Fatalf("node stat %+v, status %+v: want ephemeral owned by the registration's session", zst, st)
	}
	in, err := registry.CuratorParser{}.Parse("orders", path.Base(reg.Path()), data, registry.NodeStat{Czxid: zst.Czxid})
	if err != nil {
		t.Fatalf("CuratorParser rejects the registration: %v\n%s", err, data)
	}
	if in.Addr != testAddr || !in.Up() || in.Metadata["zone"] != "a" || in.ID != path.Base(reg.Path()) {
		t.Fatalf("parsed %+v", in)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	payload, _ := raw["payload"].(map[string]any)
	if raw["serviceType"] != "DYNAMIC" || payload["@class"] != register.PayloadClass || payload["name"] != "orders" {
		t.Fatalf("not Spring Cloud Zookeeper's shape: %s", data)
	}

	cache := registry.NewCache(obs, registry.Options{Watch: true, ResyncInterval: time.Minute, Logger: testLogger(t)})
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cache.Run(cctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the cache to list the instance", func() error {
		if in, ok := cache.Snapshot().Lookup("orders", testAddr); !ok || in.Czxid != st.Czxid {
			return errors.New("not listed")
		}
		return nil
	})

	if err := reg.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Shutdown deletes the node before it returns.
	if _, zst := node(t, obs, reg.Path()); zst != nil {
		t.Fatal("node still exists after Shutdown returned")
	}
	waitFor(t, "the cache to drop the instance", func() error {
		if _, ok := cache.Snapshot().Lookup("orders", testAddr); ok {
			return errors.New("still listed")
		}
		return nil
	})
	if err := reg.Shutdown(ctx); !errors.Is(err, register.ErrClosed) {
		t.Fatalf("second Shutdown = %v, want ErrClosed", err)
	}
}

func TestRegistrationSurvivesSessionExpiry(t *testing.T) {
	c, obs, ctx := startServer(t)
	p := zktest.NewPartitioner()
	opts := baseOptions(t, c)
	opts.SessionTimeout = 2 * time.Second
	opts.Dialer = p.Dial

	// A clock that moves: the re-created node must still carry the first
	// registrationTimeUTC (a flap is the same incarnation, README.md).
	var clock atomic.Int64
	clock.Store(1_700_000_000_000)
	opts.Now = func() time.Time { return time.UnixMilli(clock.Add(1000)) }
	reg := mustRegister(t, ctx, opts)
	defer reg.Close()
	first := reg.Status()
	firstData, _ := node(t, obs, reg.Path())

	// A partition longer than the session timeout: the servers expire the
	// session and delete the node.
	p.Blackhole()
	nodeGone(t, obs, reg.Path())
	waitFor(t, "the registration to see its session lost", func() error {
		if reg.Status().Registered {
			return errors.New("still believes it is registered")
		}
		return nil
	})
	p.Restore()

	zst := nodeNewer(t, obs, reg.Path(), first.Czxid)
	if zst.EphemeralOwner == first.SessionID {
		t.Fatalf("re-created node owned by the expired session 0x%x", first.SessionID)
	}
	if again, _ := node(t, obs, reg.Path()); string(again) != string(firstData) {
		t.Fatalf("the re-created node differs from the first one (same id and registrationTimeUTC expected):\n%s\n%s", firstData, again)
	}
	waitFor(t, "status to show the new registration", func() error {
		st := reg.Status()
		if !st.Registered || st.Czxid != zst.Czxid || st.SessionID != zst.EphemeralOwner || st.Registrations != 2 {
			return fmt.Errorf("status %+v, node czxid %d owner 0x%x", st, zst.Czxid, zst.EphemeralOwner)
		}
		return nil
	})
}

func TestRegistrationReplacesTheNodeOfAPreviousProcess(t *testing.T) {
	c, obs, ctx := startServer(t)

	// The previous process hangs with its session still alive on the
	// servers (its network is gone, the session has not expired yet).
	p := zktest.NewPartitioner()
	prevOpts := baseOptions(t, c)
	prevOpts.ID = "fixed-id"
	prevOpts.SessionTimeout = 20 * time.Second
	prevOpts.Dialer = p.Dial
	prev := mustRegister(t, ctx, prevOpts)
	old := prev.Status()
	p.Blackhole()

	opts := baseOptions(t, c)
	opts.ID = "fixed-id"
	reg, err := register.Register(ctx, opts)
	if err != nil {
		t.Fatalf("Register over the previous session's node: %v", err)
	}
	defer reg.Close()
	st := reg.Status()
	_, zst := node(t, obs, reg.Path())
	if zst == nil || zst.EphemeralOwner != st.SessionID || zst.EphemeralOwner == old.SessionID || zst.Czxid <= old.Czxid {
		t.Fatalf("node %+v; previous czxid %d session 0x%x; new status %+v", zst, old.Czxid, old.SessionID, st)
	}

	// The previous session ending does not take the new node with it.
	p.Restore()
	prev.Close()
	if _, zst2 := node(t, obs, reg.Path()); zst2 == nil || zst2.Czxid != zst.Czxid {
		t.Fatalf("node after the previous session closed: %+v", zst2)
	}

	// Another instance (another address) configured with the same id is
	// not replaced: the two would fight.
	clash := baseOptions(t, c)
	clash.ID = "fixed-id"
	clash.Address = "127.0.0.1:18081"
	if r, err := register.Register(ctx, clash); err == nil {
		r.Close()
		t.Fatal("Register replaced the node of another address")
	} else if !strings.Contains(err.Error(), "another instance") {
		t.Fatalf("clash error: %v", err)
	}
	if _, zst3 := node(t, obs, reg.Path()); zst3 == nil || zst3.Czxid != zst.Czxid {
		t.Fatalf("node after the clash: %+v", zst3)
	}
}

func TestDeletedNodeIsRecreatedAndCloseDeregisters(t *testing.T) {
	c, obs, ctx := startServer(t)
	reg := mustRegister(t, ctx, baseOptions(t, c))
	first := reg.Status()
	if err := obs.Delete(ctx, reg.Path(), -1); err != nil {
		t.Fatal(err)
	}
	nodeNewer(t, obs, reg.Path(), first.Czxid)

	reg.Close()
	nodeGone(t, obs, reg.Path())
}

func TestHealthCheckDeregistersAndRegistersAgain(t *testing.T) {
	c, obs, ctx := startServer(t)
	var healthy atomic.Bool
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			http.Error(w, "DOWN", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"status":"UP"}`)
	}))
	defer hs.Close()

	opts := baseOptions(t, c)
	opts.Health = &register.HealthCheck{URL: hs.URL + "/actuator/health", Interval: 50 * time.Millisecond}
	reg := mustRegister(t, ctx, opts)
	defer reg.Close()
	if st := reg.Status(); st.Registered || st.Healthy {
		t.Fatalf("registered while unhealthy: %+v", st)
	}
	if _, zst := node(t, obs, reg.Path()); zst != nil {
		t.Fatal("node created while unhealthy")
	}

	healthy.Store(true)
	first := nodeNewer(t, obs, reg.Path(), 0)

	healthy.Store(false)
	nodeGone(t, obs, reg.Path())
	waitFor(t, "status unhealthy", func() error {
		if st := reg.Status(); st.Registered || st.Healthy {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})

	healthy.Store(true)
	again := nodeNewer(t, obs, reg.Path(), first.Czxid)
	waitFor(t, "status registered", func() error {
		if st := reg.Status(); !st.Registered || !st.Healthy || st.Czxid != again.Czxid || st.Registrations != 2 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
}

func TestShutdownDrainsBeforeDeregistering(t *testing.T) {
	c, obs, ctx := startServer(t)

	type call struct {
		service, addr, reason string
		timeout               time.Duration
		registered            bool
	}
	calls := make(chan call, 1)
	release := make(chan struct{})
	var regPath string
	opts := baseOptions(t, c)
	opts.DrainTimeout = 7 * time.Second
	opts.Drainer = register.DrainerFunc(func(dctx context.Context, service, addr, reason string, timeout time.Duration) error {
		_, zst := node(t, obs, regPath)
		calls <- call{service, addr, reason, timeout, zst != nil}
		select {
		case <-release:
			return nil
		case <-dctx.Done():
			return dctx.Err()
		}
	})
	reg := mustRegister(t, ctx, opts)
	regPath = reg.Path()

	shut := make(chan error, 1)
	go func() { shut <- reg.Shutdown(ctx) }()
	var got call
	select {
	case got = <-calls:
	case <-ctx.Done():
		t.Fatal("Shutdown never drained")
	}
	if got.service != "orders" || got.addr != testAddr || got.reason != register.DefaultDrainReason || got.timeout != 7*time.Second {
		t.Fatalf("drain call %+v", got)
	}
	if !got.registered {
		t.Fatal("the node was gone when the drain started: deregistered before draining")
	}
	// While the drain is unconfirmed the node stays and Shutdown waits.
	if _, zst := node(t, obs, reg.Path()); zst == nil {
		t.Fatal("node deleted before the drain was confirmed")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned before the drain was confirmed: %v", err)
	default:
	}
	close(release)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, zst := node(t, obs, reg.Path()); zst != nil {
		t.Fatal("node still exists after Shutdown")
	}
}

// fakeController implements the controller's drain endpoint and records,
// for each drain, whether the instance was still registered.
type fakeController struct {
	obs    *zksession.Session
	token  string
	status string // answered status

	mu     sync.Mutex
	events []string
	bodies []ctlclient.DrainRequest
	path   string // registration node to look at
}

func (f *fakeController) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(ctlclient.ErrorResponse{Error: "bad token"})
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	if r.Method != http.MethodPut || len(parts) != 6 || parts[0] != "v1" || parts[1] != "services" || parts[3] != "instances" || parts[5] != "drain" {
		http.NotFound(w, r)
		return
	}
	service, _ := url.PathUnescape(parts[2])
	addr, _ := url.PathUnescape(parts[4])
	var req ctlclient.DrainRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	p := f.path
	f.mu.Unlock()
	_, _, err := f.obs.Get(r.Context(), p)
	state := "registered"
	if err != nil {
		state = "absent"
	}
	f.mu.Lock()
	f.events = append(f.events, "drain "+service+" "+addr+" while "+state)
	f.bodies = append(f.bodies, req)
	f.mu.Unlock()
	json.NewEncoder(w).Encode(ctlclient.DrainResponse{
		Service: service, Addr: addr, Status: f.status, Confirmed: f.status == ctlclient.StatusDrained,
	})
}

func TestShutdownDrainsThroughTheController(t *testing.T) {
	c, obs, ctx := startServer(t)

	for _, status := range []string{ctlclient.StatusDrained, ctlclient.StatusTimeout} {
		t.Run(status, func(t *testing.T) {
			fc := &fakeController{obs: obs, token: "s3cret", status: status}
			srv := httptest.NewServer(fc)
			defer srv.Close()
			d, err := register.NewControllerDrainer(srv.URL, register.ControllerOptions{Token: "s3cret", TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			opts := baseOptions(t, c)
			opts.Drainer = d
			opts.DrainTimeout = 3 * time.Second
			reg := mustRegister(t, ctx, opts)
			fc.mu.Lock()
			fc.path = reg.Path()
			fc.mu.Unlock()

			err = reg.Shutdown(ctx)
			if status == ctlclient.StatusDrained && err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if status == ctlclient.StatusTimeout && !errors.Is(err, register.ErrDrainNotConfirmed) {
				t.Fatalf("Shutdown = %v, want ErrDrainNotConfirmed", err)
			}
			if _, zst := node(t, obs, reg.Path()); zst != nil {
				t.Fatal("node still exists after Shutdown")
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			want := "drain orders " + testAddr + " while registered"
			if len(fc.events) != 1 || fc.events[0] != want {
				t.Fatalf("controller saw %q, want [%q]", fc.events, want)
			}
			b := fc.bodies[0]
			if !b.Wait || b.Reason != register.DefaultDrainReason || b.Timeout != "3s" || b.TTL != "1m0s" {
				t.Fatalf("drain request %+v", b)
			}
		})
	}
}

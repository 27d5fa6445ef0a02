package registry_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
)

const waitFor = 20 * time.Second

func curatorJSON(service, id, host string, port int, status string) []byte {
	return fmt.Appendf(nil, `{"name":%q,"id":%q,"address":%q,"port":%d,"sslPort":null,`+
		`"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance","id":"app","name":%q,"metadata":{"instance_status":%q}},`+
		`"registrationTimeUTC":1651140425239,"serviceType":"DYNAMIC"}`, service, id, host, port, service, status)
}

// writer is a plain client that plays the services registering themselves.
type writer struct{ *zktest.Writer }

func newWriter(t *testing.T, servers []string) *writer {
	t.Helper()
	return &writer{zktest.NewWriter(t, servers)}
}

// register creates the ephemeral node of service instance id with data
// and returns its path.
func (w *writer) register(service, id string, data []byte) string {
	p := "/services/" + service + "/" + id
	w.CreateEphemeral(p, data)
	return p
}

// registerUp registers service instance id at 127.0.0.1:port, UP, in
// Curator's format, and returns the node path.
func (w *writer) registerUp(service, id string, port int) string {
	return w.register(service, id, curatorJSON(service, id, "127.0.0.1", port, "UP"))
}

type harness struct {
	sess  *zksession.Session
	cache *registry.Cache
	reg   *prometheus.Registry
}

func startCache(t *testing.T, cfg zksession.Config, opts registry.Options) *harness {
	t.Helper()
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = 4 * time.Second
	}
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sess, err := zksession.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	opts.Logger = cfg.Logger
	if opts.Root == "" {
		opts.Root = "/services"
	}
	c := registry.NewCache(sess, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; sess.Close() })
	return &harness{sess: sess, cache: c, reg: reg}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, waitFor, what, cond)
}

func addrs(s *registry.Snapshot, service string) string {
	var out []string
	for _, in := range s.Instances(service) {
		out = append(out, in.Addr)
	}
	return strings.Join(out, ",")
}

func hasAddrs(c *registry.Cache, service, want string) func() bool {
	return func() bool { s := c.Snapshot(); return s != nil && addrs(s, service) == want }
}

func TestCacheFollowsRegistrations(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.Ensure("/services")
	h := startCache(t, zksession.Config{Servers: zc.Servers()}, registry.Options{Watch: true, ResyncInterval: time.Hour})

	eventually(t, "first snapshot", func() bool { return h.cache.Snapshot() != nil })
	p1 := w.registerUp("orders", "a1", 9001)
	eventually(t, "a registration to appear", hasAddrs(h.cache, "orders", "127.0.0.1:9001"))

	p2 := w.registerUp("orders", "a2", 9002)
	w.registerUp("payment", "b1", 9100)
	eventually(t, "a second instance", hasAddrs(h.cache, "orders", "127.0.0.1:9001,127.0.0.1:9002"))
	eventually(t, "a new service found under the root", hasAddrs(h.cache, "payment", "127.0.0.1:9100"))

	// The same address registering again under a new id: newest czxid wins.
	w.registerUp("orders", "a1-restarted", 9001)
	eventually(t, "the newest registration of an address to win", func() bool {
		in, ok := h.cache.Snapshot().Lookup("orders", "127.0.0.1:9001")
		return ok && in.ID == "a1-restarted"
	})
	w.Remove(p1)
	w.Remove(p2)
	eventually(t, "removals to disappear", hasAddrs(h.cache, "orders", "127.0.0.1:9001"))

	// A data change (Spring's OUT_OF_SERVICE) is seen through the data watch.
	if _, err := w.Conn.Set("/services/payment/b1", curatorJSON("payment", "b1", "127.0.0.1", 9100, "OUT_OF_SERVICE"), -1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "instance_status to be followed", func() bool {
		in, ok := h.cache.Snapshot().Lookup("payment", "127.0.0.1:9100")
		return ok && !in.Up()
	})
}

func TestCacheSkipsMalformedNodes(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.registerUp("orders", "good", 9001)
	w.register("orders", "bad-json", []byte(`{"address":`))
	w.register("orders", "no-port", []byte(`{"address":"127.0.0.1"}`))
	w.register("orders", "empty", nil)
	// Valid JSON whose address has ESC and BEL (a JSON \u escape).
	w.register("orders", "esc", []byte(`{"name":"orders","id":"esc","address":"127.0.0.1\u001b[2J\u0007","port":9003}`))
	h := startCache(t, zksession.Config{Servers: zc.Servers()}, registry.Options{Watch: true, ResyncInterval: 300 * time.Millisecond})

	eventually(t, "the good instance to load", hasAddrs(h.cache, "orders", "127.0.0.1:9001"))
	if m := h.cache.Snapshot().Malformed; m != 4 {
		t.Fatalf("Malformed = %d, want 4", m)
	}
	// Resyncs keep re-reading them, but each node version is reported once.
	time.Sleep(time.Second)
	if got := counter(t, h.reg, "zkgate_registry_malformed_total"); got != 4 {
		t.Fatalf("zkgate_registry_malformed_total = %v, want 4 (once per node version)", got)
	}
	w.registerUp("orders", "good2", 9002)
	eventually(t, "later good nodes to load", hasAddrs(h.cache, "orders", "127.0.0.1:9001,127.0.0.1:9002"))
}

// The malformed count is kept up to date per changed service, not
// recounted over the whole registry at every change: it must follow
// malformed nodes that appear, get fixed and go away, through watches
// alone (no periodic resync).
func TestCacheMalformedCountFollowsChanges(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.registerUp("orders", "good", 9001)
	bad := w.register("orders", "bad", []byte(`{"address":`))
	h := startCache(t, zksession.Config{Servers: zc.Servers()}, registry.Options{Watch: true, ResyncInterval: time.Hour})
	malformed := func(want int) func() bool {
		return func() bool { s := h.cache.Snapshot(); return s != nil && s.Malformed == want }
	}
	eventually(t, "one malformed node", malformed(1))

	// A new service (root child event) with a malformed node.
	bad2 := w.register("payment", "bad", nil)
	w.registerUp("payment", "good", 9100)
	eventually(t, "the new service's malformed node to count", malformed(2))
	eventually(t, "the new service's good node", hasAddrs(h.cache, "payment", "127.0.0.1:9100"))

	// Fixed in place (data event).
	if _, err := w.Conn.Set(bad, curatorJSON("orders", "bad", "127.0.0.1", 9002, "UP"), -1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a fixed node to stop counting", malformed(1))
	eventually(t, "the fixed node to load", hasAddrs(h.cache, "orders", "127.0.0.1:9001,127.0.0.1:9002"))

	// Deleted (child and data events), then a new malformed node (child event).
	w.Remove(bad2)
	eventually(t, "a deleted malformed node to stop counting", malformed(0))
	w.register("orders", "bad-again", []byte(`[]`))
	eventually(t, "a new malformed node in a known service", malformed(1))
	if got := counter(t, h.reg, "zkgate_registry_malformed_nodes"); got != 1 {
		t.Fatalf("zkgate_registry_malformed_nodes = %v, want 1", got)
	}
}

func TestCacheHostPortFormat(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.register("echo", "127.0.0.1:7001", []byte("whatever"))
	w.register("echo", "not-an-address", nil)
	h := startCache(t, zksession.Config{Servers: zc.Servers()}, registry.Options{Watch: true, Parser: registry.HostPortParser{}, ResyncInterval: time.Hour})
	eventually(t, "host:port node to load", hasAddrs(h.cache, "echo", "127.0.0.1:7001"))
	if m := h.cache.Snapshot().Malformed; m != 1 {
		t.Fatalf("Malformed = %d, want 1", m)
	}
}

func TestCacheRepairsDroppedWatchEvent(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.registerUp("orders", "a1", 9001)
	var dropping atomic.Bool
	var dropped atomic.Int32
	h := startCache(t, zksession.Config{
		Servers: zc.Servers(),
		DropEvent: func(ev zk.Event) bool {
			if dropping.Load() && strings.HasPrefix(ev.Path, "/services/orders") {
				dropped.Add(1)
				return true
			}
			return false
		},
	}, registry.Options{Watch: true, ResyncInterval: 2 * time.Second})
	eventually(t, "first load", hasAddrs(h.cache, "orders", "127.0.0.1:9001"))

	dropping.Store(true)
	w.registerUp("orders", "a2", 9002)
	eventually(t, "the event to be dropped", func() bool { return dropped.Load() > 0 })
	if got := addrs(h.cache.Snapshot(), "orders"); got != "127.0.0.1:9001" {
		t.Fatalf("instance appeared although its event was dropped (%s): the test injects nothing", got)
	}
	dropping.Store(false)
	eventually(t, "resync to repair the dropped event", hasAddrs(h.cache, "orders", "127.0.0.1:9001,127.0.0.1:9002"))
	if got := counterLabel(t, h.reg, "zkgate_registry_resync_divergence_total", "kind", "added"); got < 1 {
		t.Fatalf("divergence added = %v, want ≥ 1", got)
	}
}

func TestCachePollingMode(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.registerUp("orders", "a1", 9001)
	h := startCache(t, zksession.Config{Servers: zc.Servers()}, registry.Options{Watch: false, ResyncInterval: time.Second})
	eventually(t, "first load", hasAddrs(h.cache, "orders", "127.0.0.1:9001"))
	w.registerUp("orders", "a2", 9002)
	eventually(t, "the poll to find it", hasAddrs(h.cache, "orders", "127.0.0.1:9001,127.0.0.1:9002"))
}

func TestCacheSurvivesLeaderLoss(t *testing.T) {
	zc := zktest.StartEnsemble(t, 3)
	w := newWriter(t, zc.Servers())
	w.registerUp("orders", "a1", 9001)
	h := startCache(t, zksession.Config{Servers: zc.Servers(), SessionTimeout: 6 * time.Second}, registry.Options{Watch: true, ResyncInterval: time.Hour})
	eventually(t, "first load", hasAddrs(h.cache, "orders", "127.0.0.1:9001"))

	leader, err := zc.Leader()
	if err != nil {
		t.Fatal(err)
	}
	if err := zc.Kill(leader); err != nil {
		t.Fatal(err)
	}
	w.registerUp("orders", "a2", 9002)
	eventually(t, "the cache to follow after leader loss", hasAddrs(h.cache, "orders", "127.0.0.1:9001,127.0.0.1:9002"))
	w.Remove("/services/orders/a1")
	eventually(t, "removals after leader loss", hasAddrs(h.cache, "orders", "127.0.0.1:9002"))
}

func TestCachePartitionLongerThanSessionTimeout(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.registerUp("orders", "a1", 9001)
	w.registerUp("orders", "a2", 9002)
	part := zktest.NewPartitioner()
	h := startCache(t, zksession.Config{Servers: zc.Servers(), SessionTimeout: 2 * time.Second, Dialer: part.Dialer()},
		registry.Options{Watch: true, ResyncInterval: time.Hour})
	eventually(t, "first load", hasAddrs(h.cache, "orders", "127.0.0.1:9001,127.0.0.1:9002"))
	gen := h.sess.Generation()

	part.Cut()
	eventually(t, "the session to be lost", func() bool { st, _ := h.sess.State(); return st == zksession.StateLost })
	// While partitioned: static stability, the last snapshot stays.
	if got := addrs(h.cache.Snapshot(), "orders"); got != "127.0.0.1:9001,127.0.0.1:9002" {
		t.Fatalf("snapshot changed while partitioned: %s", got)
	}
	if age := time.Since(h.cache.LastContact()); age < time.Second {
		t.Fatalf("LastContact is only %v old while partitioned", age)
	}
	w.Remove("/services/orders/a1")
	w.registerUp("orders", "a3", 9003)
	part.Restore()

	eventually(t, "a new session", func() bool { return h.sess.Generation() > gen })
	eventually(t, "a full resync with nothing stale", hasAddrs(h.cache, "orders", "127.0.0.1:9002,127.0.0.1:9003"))
	// Watches are re-armed on the new session.
	w.registerUp("orders", "a4", 9004)
	eventually(t, "watches re-armed", hasAddrs(h.cache, "orders", "127.0.0.1:9002,127.0.0.1:9003,127.0.0.1:9004"))
}

func TestCacheWholeEnsembleDown(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.registerUp("orders", "a1", 9001)
	h := startCache(t, zksession.Config{Servers: zc.Servers(), SessionTimeout: 2 * time.Second},
		registry.Options{Watch: true, ResyncInterval: 500 * time.Millisecond})
	eventually(t, "first load", hasAddrs(h.cache, "orders", "127.0.0.1:9001"))
	if err := zc.StopAll(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session to be lost", func() bool { st, _ := h.sess.State(); return st == zksession.StateLost })
	time.Sleep(time.Second) // several resync intervals with nothing to read
	if got := addrs(h.cache.Snapshot(), "orders"); got != "127.0.0.1:9001" {
		t.Fatalf("snapshot lost while ZooKeeper is down: %q", got)
	}
	if age := time.Since(h.cache.LastContact()); age < time.Second {
		t.Fatalf("LastContact is only %v old with ZooKeeper down", age)
	}
}

func counter(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	return counterLabel(t, g, name, "", "")
}

func counterLabel(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	return testutil.MetricValue(t, g, name, label, value)
}

package zktree_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/internal/zktree"
)

// batchFlag sets Options.Batch of every tree startTree starts (before the
// test's own adjustments): `go test ./internal/zktree -args
// -zktree.batch=1` runs the tests with one request per node, the default
// with multiRead batches.
var batchFlag = flag.Int("zktree.batch", 0, "Options.Batch of the test trees (0: the default)")

// waitFor bounds every wait: generous, since the machine is shared and a
// ZooKeeper session may take a few seconds to come back.
const waitFor = 30 * time.Second

// The test trees hold items whose data is "v=<value>"; anything else is
// malformed. A group's built value is its items' values, sorted and joined
// with commas; a group without a well-formed item is left out of the
// snapshot (Build's ok false).
type item struct {
	group, name, value string
	mzxid              int64
}

func parse(group, name string, data []byte, st *zksession.Stat) (item, error) {
	v, ok := strings.CutPrefix(string(data), "v=")
	if !ok {
		return item{}, fmt.Errorf("no v= prefix in %q", data)
	}
	return item{group: group, name: name, value: v, mzxid: st.Mzxid}, nil
}

func build(_ string, items []item) (string, bool) {
	if len(items) == 0 {
		return "", false
	}
	vals := make([]string, 0, len(items))
	for _, it := range items {
		vals = append(vals, it.name+"="+it.value)
	}
	slices.Sort(vals)
	return strings.Join(vals, ","), true
}

// logCounter is a slog handler that counts messages by message and path
// attribute (and passes every record on to the test log).
type logCounter struct {
	t     *testing.T
	mu    *sync.Mutex
	count map[string]int // "msg path" → times logged
	attrs []slog.Attr
}

func newLogCounter(t *testing.T) *logCounter {
	return &logCounter{t: t, mu: &sync.Mutex{}, count: map[string]int{}}
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	p := ""
	add := func(a slog.Attr) bool {
		if a.Key == "path" {
			p = a.Value.String()
		}
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.mu.Lock()
	h.count[r.Message+" "+p]++
	h.mu.Unlock()
	h.t.Log(b.String())
	return nil
}

func (h *logCounter) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(slices.Clone(h.attrs), as...)
	return &c
}

func (h *logCounter) WithGroup(string) slog.Handler { return h }

// logged returns how many times msg was logged with path p.
func (h *logCounter) logged(msg, p string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count[msg+" "+p]
}

// follower is a running Tree with its session and metrics.
type follower struct {
	t    *testing.T
	sess *zksession.Session
	tree *zktree.Tree[item, string]
	reg  *prometheus.Registry
	logs *logCounter
	// done is closed when Run returned; err is what it returned.
	done chan struct{}
	err  error
	stop context.CancelFunc
}

type setup struct {
	session zksession.Config
	opts    zktree.Options[item, string]
}

// startTree connects a session and runs a tree over it until the test ends.
// Defaults: watches on, no periodic resync (an hour), metrics prefix
// zkgate_test.
func startTree(t *testing.T, servers []string, root string, adjust ...func(*setup)) *follower {
	t.Helper()
	logs := newLogCounter(t)
	log := slog.New(logs)
	s := setup{
		session: zksession.Config{Servers: servers, SessionTimeout: 4 * time.Second, Logger: log},
		opts: zktree.Options[item, string]{
			Root: root, Parse: parse, Build: build, Watch: true,
			ResyncInterval: time.Hour, MetricsPrefix: "zkgate_test", Logger: log,
			Batch: *batchFlag,
		},
	}
	for _, f := range adjust {
		f(&s)
	}
	sess, err := zksession.Connect(s.session)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s.opts.Registerer = reg
	f := &follower{t: t, sess: sess, reg: reg, logs: logs, done: make(chan struct{})}
	f.tree = zktree.New(sess, s.opts)
	ctx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	go func() { defer close(f.done); f.err = f.tree.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(waitFor):
			t.Errorf("Run did not return %v after its context was cancelled", waitFor)
		}
		sess.Close()
	})
	return f
}

// reconnect restarts zc's (standalone) server and waits for the full
// re-read that follows the reconnection, which must keep the session.
func (f *follower) reconnect(zc *zktest.Cluster) {
	f.t.Helper()
	sid, resyncs := f.sess.SessionID(), f.resyncs()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := zc.Restart(ctx, 0); err != nil {
		f.t.Fatal(err)
	}
	eventually(f.t, "a full re-read after the reconnection", func() bool { return f.resyncs() > resyncs }, nil)
	if f.sess.SessionID() != sid {
		f.t.Fatal("a new session: the test is about a reconnection to the same one")
	}
}

// groups returns the latest snapshot's groups ("" before the first).
func (f *follower) groups() map[string]string {
	s := f.tree.Snapshot()
	if s == nil {
		return nil
	}
	return s.Groups
}

// waitGroups waits until the snapshot's groups are exactly want.
func (f *follower) waitGroups(what string, want map[string]string) *zktree.Snapshot[string] {
	f.t.Helper()
	var last map[string]string
	var snap *zktree.Snapshot[string]
	eventually(f.t, what, func() bool {
		snap = f.tree.Snapshot()
		if snap == nil {
			return false
		}
		last = snap.Groups
		return mapsEqual(last, want)
	}, func() string { return fmt.Sprintf("groups %v, want %v", last, want) })
	return snap
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// counter returns the value of the tree's metric name (a counter or a
// gauge), restricted to label kind=value when kind is not empty.
func (f *follower) counter(name, kind string) float64 {
	f.t.Helper()
	if kind == "" {
		return testutil.MetricValue(f.t, f.reg, name, "", "")
	}
	return testutil.MetricValue(f.t, f.reg, name, "kind", kind)
}

func (f *follower) divergence() (added, removed, changed float64) {
	f.t.Helper()
	return f.counter("zkgate_test_resync_divergence_total", "added"),
		f.counter("zkgate_test_resync_divergence_total", "removed"),
		f.counter("zkgate_test_resync_divergence_total", "changed")
}

// resyncs returns how many full re-reads the tree completed.
func (f *follower) resyncs() float64 {
	f.t.Helper()
	return f.counter("zkgate_test_resyncs_total", "")
}

// fullResync asks for a full re-read and waits until one more completed
// (no periodic resync runs in these tests unless they set one).
func (f *follower) fullResync() {
	f.t.Helper()
	before := f.resyncs()
	f.tree.Resync()
	eventually(f.t, "a full re-read", func() bool { return f.resyncs() > before }, nil)
}

// resyncExpect runs a full re-read (see fullResync) and checks that the
// groups are then want (unless nil) and that the divergence counted so far
// is added/removed/changed: 0/0/0 when the watches missed nothing.
func (f *follower) resyncExpect(want map[string]string, added, removed, changed float64) {
	f.t.Helper()
	f.fullResync()
	if got := f.groups(); want != nil && !mapsEqual(got, want) {
		f.t.Fatalf("after a full re-read: %v, want %v", got, want)
	}
	if a, r, c := f.divergence(); a != added || r != removed || c != changed {
		f.t.Fatalf("divergence added/removed/changed = %v/%v/%v, want %v/%v/%v", a, r, c, added, removed, changed)
	}
}

// eventually polls cond until it holds or waitFor passes; detail, when set,
// says what was seen last.
func eventually(t *testing.T, what string, cond func() bool, detail func() string) {
	t.Helper()
	testutil.EventuallyNil(t, waitFor, what, func() error {
		switch {
		case cond():
			return nil
		case detail != nil:
			return errors.New(detail())
		}
		return errors.New("not yet")
	})
}

// writer is a plain client that plays whoever writes the tree.
type writer struct{ *zktest.Writer }

func newWriter(t *testing.T, servers []string) *writer {
	t.Helper()
	return &writer{zktest.NewWriter(t, servers)}
}

// put creates p (and its missing parents) with data, or overwrites it.
func (w *writer) put(p, data string) { w.Put(p, []byte(data)) }

package zktree_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktree"
)

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
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := kind == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "kind" && lp.GetValue() == kind {
					match = true
				}
			}
			if !match {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	f.t.Fatalf("metric %s{kind=%q} not found", name, kind)
	return 0
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

// eventually polls cond until it holds or waitFor passes; detail, when set,
// says what was seen last.
func eventually(t *testing.T, what string, cond func() bool, detail func() string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	if detail != nil {
		t.Fatalf("timed out waiting for %s: %s", what, detail())
	}
	t.Fatalf("timed out waiting for %s", what)
}

// writer is a plain client that plays whoever writes the tree.
type writer struct {
	t    *testing.T
	conn *zk.Conn
}

func newWriter(t *testing.T, servers []string) *writer {
	t.Helper()
	conn, _, err := zk.Connect(servers, 5*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatalf("connecting writer: %v", err)
	}
	t.Cleanup(conn.Close)
	return &writer{t: t, conn: conn}
}

// retry repeats f while the server may be unreachable for a moment.
func (w *writer) retry(what string, f func() error) {
	w.t.Helper()
	var err error
	for range 100 {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.t.Fatalf("%s: %v", what, err)
}

// put creates p (and its missing parents) with data, or overwrites it.
func (w *writer) put(p, data string) {
	w.t.Helper()
	w.ensure(path.Dir(p))
	w.retry("put "+p, func() error {
		_, err := w.conn.Create(p, []byte(data), 0, zk.WorldACL(zk.PermAll))
		if errors.Is(err, zk.ErrNodeExists) {
			_, err = w.conn.Set(p, []byte(data), -1)
		}
		return err
	})
}

// ensure creates p and its missing parents without data.
func (w *writer) ensure(p string) {
	w.t.Helper()
	cur := ""
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		if part == "" {
			continue
		}
		cur += "/" + part
		w.retry("create "+cur, func() error {
			_, err := w.conn.Create(cur, nil, 0, zk.WorldACL(zk.PermAll))
			if errors.Is(err, zk.ErrNodeExists) {
				return nil
			}
			return err
		})
	}
}

// remove deletes p and everything under it.
func (w *writer) remove(p string) {
	w.t.Helper()
	var kids []string
	w.retry("list "+p, func() error {
		var err error
		kids, _, err = w.conn.Children(p)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		return err
	})
	for _, k := range kids {
		w.remove(path.Join(p, k))
	}
	w.retry("delete "+p, func() error {
		if err := w.conn.Delete(p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		return nil
	})
}

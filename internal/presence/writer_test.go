package presence_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/presence"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
)

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, what, cond)
}

// writerEnv runs a Writer whose report the test sets.
type writerEnv struct {
	conn *zk.Conn
	sess *zksession.Session
	w    *presence.Writer
	log  *testutil.SyncBuffer
	mu   sync.Mutex
	rep  presence.Report
	stop func()
}

func newWriterEnv(t *testing.T) *writerEnv {
	t.Helper()
	zc := zktest.Start(t)
	conn := zktest.Connect(t, zc.Servers(), 5*time.Second)
	e := &writerEnv{conn: conn, log: &testutil.SyncBuffer{}}
	log := slog.New(slog.NewTextHandler(e.log, nil))
	var err error
	e.sess, err = zksession.Connect(zksession.Config{Servers: zc.Servers(), SessionTimeout: 5 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.sess.Close)
	e.w = presence.NewWriter(e.sess, presence.WriterOptions{
		ZKRoot: "/zkgate", ID: "gw-1", Logger: log, Heartbeat: time.Hour,
		Report: func() presence.Report { e.mu.Lock(); defer e.mu.Unlock(); return e.rep },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.w.Run(ctx) }()
	e.stop = func() { cancel(); <-done }
	t.Cleanup(e.stop)
	waitUntil(t, "the node", func() bool { return e.w.Detached() == "" })
	return e
}

func (e *writerEnv) set(f func(r *presence.Report)) {
	e.mu.Lock()
	f(&e.rep)
	e.mu.Unlock()
	e.w.Notify()
}

func (e *writerEnv) read(t *testing.T) (presence.Report, *zk.Stat) {
	t.Helper()
	data, st, err := e.conn.Get(e.w.Path())
	if err != nil {
		t.Fatal(err)
	}
	var r presence.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r, st
}

// A notification is written only when the report's content changed,
// revisions and updated_ms aside.
func TestWriterWritesOnlyChanges(t *testing.T) {
	e := newWriterEnv(t)
	e.set(func(r *presence.Report) { r.Listen = "127.0.0.1:1" })
	// The node is read as written before the writer counts the write:
	// wait until the count agrees with the node's version (one create,
	// then Version sets).
	waitUntil(t, "the listen address, written and counted", func() bool {
		r, st := e.read(t)
		return r.Listen == "127.0.0.1:1" && e.w.Writes() == int64(st.Version)+1
	})
	writes := e.w.Writes()
	for i := 0; i < 20; i++ {
		e.set(func(r *presence.Report) { r.RegistryRevision++; r.MarksRevision++ })
		time.Sleep(7 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := e.w.Writes() - writes; n != 0 || e.w.Skipped() == 0 {
		t.Fatalf("%d writes for revisions only (%d skipped)", n, e.w.Skipped())
	}
	e.set(func(r *presence.Report) {
		r.Marks = []presence.AppliedMark{{Service: "s", Addr: "10.0.0.1:80", Mzxid: 3, State: "drained"}}
	})
	waitUntil(t, "the mark", func() bool { r, _ := e.read(t); return len(r.Marks) == 1 })
	if r, _ := e.read(t); r.RegistryRevision != 20 {
		t.Fatalf("a write carries the current revisions: %+v", r)
	}
}

// Someone else writing the node is a conflict, logged as an error; the
// writer checks the node (still its own session's) and writes its report
// again.
func TestWriterConflictingWrite(t *testing.T) {
	e := newWriterEnv(t)
	e.set(func(r *presence.Report) { r.Listen = "127.0.0.1:1" })
	waitUntil(t, "the report", func() bool { r, _ := e.read(t); return r.Listen == "127.0.0.1:1" })
	if _, err := e.conn.Set(e.w.Path(), []byte(`{"id":"gw-1","listen":"elsewhere"}`), -1); err != nil {
		t.Fatal(err)
	}
	e.set(func(r *presence.Report) { r.Version = "2" })
	waitUntil(t, "our report back", func() bool { r, _ := e.read(t); return r.Listen == "127.0.0.1:1" && r.Version == "2" })
	if !strings.Contains(e.log.String(), "level=ERROR") || !strings.Contains(e.log.String(), "used twice") {
		t.Fatalf("the conflict was not logged as an error:\n%s", e.log.String())
	}
	waitUntil(t, "held again", func() bool { return e.w.Detached() == "" })
}

// Leave writes a last report with leaving set, keeps it a moment, deletes
// the node and stops Run.
func TestWriterLeave(t *testing.T) {
	e := newWriterEnv(t)
	_, stat, _ := e.conn.Get(e.w.Path())
	_, _, ch, err := e.conn.GetW(e.w.Path())
	if err != nil {
		t.Fatal(err)
	}
	left := make(chan error, 1)
	go func() { left <- e.w.Leave(context.Background()) }()
	select {
	case ev := <-ch:
		if ev.Type != zk.EventNodeDataChanged {
			t.Fatalf("first event %v, want the leaving report", ev.Type)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no write")
	}
	r, st := e.read(t)
	if !r.Leaving || st.Version != stat.Version+1 {
		t.Fatalf("leaving report %+v (version %d)", r, st.Version)
	}
	if err := <-left; err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := e.conn.Exists(e.w.Path()); ok {
		t.Fatal("node still there after Leave")
	}
	if err := e.w.Leave(context.Background()); err != nil {
		t.Fatalf("Leave after Run returned: %v", err)
	}
}

// A write prepared in one session and carried out after the servers
// expired it and the client got a new one (a gateway paused past its
// session timeout wakes up with a heartbeat due) finds the node gone with
// the old session: that is not "deleted by someone else" (a warning that
// suggests tampering or a duplicate gateway), and the node is re-created.
func TestWriterAfterOwnSessionExpired(t *testing.T) {
	zc := zktest.Start(t)
	conn := zktest.Connect(t, zc.Servers(), 5*time.Second)
	part := zktest.NewPartitioner()
	t.Cleanup(part.Restore)
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	sess, err := zksession.Connect(zksession.Config{Servers: zc.Servers(), SessionTimeout: 2 * time.Second, Logger: log, Dialer: part.Dialer()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	var (
		mu      sync.Mutex
		version = "1"
		pause   chan struct{} // while set, Report waits on it (the writer is "paused")
		paused  = make(chan struct{}, 1)
	)
	w := presence.NewWriter(sess, presence.WriterOptions{
		ZKRoot: "/zkgate", ID: "gw-1", Logger: log, Heartbeat: time.Hour,
		Report: func() presence.Report {
			mu.Lock()
			p, v := pause, version
			mu.Unlock()
			if p != nil {
				select {
				case paused <- struct{}{}:
				default:
				}
				<-p
			}
			return presence.Report{Listen: "127.0.0.1:1", Version: v}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, "the node", func() bool { return w.Detached() == "" })
	_, st, err := conn.Get(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	oldOwner, gen := st.EphemeralOwner, sess.Generation()

	// The writer starts a write and is paused in the middle of it.
	release := make(chan struct{})
	mu.Lock()
	pause, version = release, "2"
	mu.Unlock()
	w.Notify()
	<-paused
	mu.Lock()
	pause = nil
	mu.Unlock()
	// Meanwhile the servers expire its session and the client gets a new one.
	part.Cut()
	waitUntil(t, "the servers to expire the session", func() bool {
		ok, _, err := conn.Exists(w.Path())
		return err == nil && !ok
	})
	part.Restore()
	waitUntil(t, "a new session", func() bool {
		s, _ := sess.State()
		return s == zksession.StateConnected && sess.Generation() > gen
	})
	close(release)
	waitUntil(t, "the node back with the new session and the new report", func() bool {
		data, st, err := conn.Get(w.Path())
		return err == nil && st.EphemeralOwner != oldOwner && st.EphemeralOwner == sess.SessionID() &&
			strings.Contains(string(data), `"version":"2"`) && w.Detached() == ""
	})
	if out := logs.String(); strings.Contains(out, "deleted by someone else") {
		t.Fatalf("the writer blamed someone else for the node its own expired session took:\n%s", out)
	}
}

// A report that lost marks and changed nothing else is not written at
// once: nothing waits for a removal. The next change carries it; a mark
// that comes back (a newer version) or changes state is written at once.
func TestWriterDefersRemovals(t *testing.T) {
	e := newWriterEnv(t)
	a := presence.AppliedMark{Service: "s", Addr: "10.0.0.1:80", Mzxid: 3, State: "drained"}
	b := presence.AppliedMark{Service: "s", Addr: "10.0.0.2:80", Mzxid: 4, State: "drained"}
	e.set(func(r *presence.Report) { r.Marks = []presence.AppliedMark{a, b} })
	waitUntil(t, "two marks", func() bool { r, _ := e.read(t); return len(r.Marks) == 2 })

	e.set(func(r *presence.Report) { r.Marks = []presence.AppliedMark{a}; r.MarksRevision++ })
	waitUntil(t, "the removal to be deferred", func() bool { return e.w.Deferred() == 1 })
	// Counted only now: the writer counts a write after ZooKeeper answered
	// it, which may be after the test read the node; it decides on the
	// removal only after that.
	writes := e.w.Writes()
	time.Sleep(20 * time.Millisecond)
	if r, _ := e.read(t); len(r.Marks) != 2 || e.w.Writes() != writes {
		t.Fatalf("a removal alone was written: %d writes, marks %+v", e.w.Writes()-writes, r.Marks)
	}

	// The next change carries the removal.
	e.set(func(r *presence.Report) { r.Marks[0].InFlight = 1; r.Marks[0].State = "draining" })
	waitUntil(t, "the next change", func() bool {
		r, _ := e.read(t)
		return len(r.Marks) == 1 && r.Marks[0].InFlight == 1
	})

	// A removal together with a new mark version is written at once.
	b.Mzxid = 9
	e.set(func(r *presence.Report) { r.Marks = []presence.AppliedMark{b} })
	waitUntil(t, "a new version of a mark", func() bool {
		r, _ := e.read(t)
		return len(r.Marks) == 1 && r.Marks[0].Mzxid == 9
	})
	if e.w.Deferred() != 1 {
		t.Fatalf("%d deferrals, want 1", e.w.Deferred())
	}
}

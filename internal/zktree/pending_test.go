package zktree_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
)

// TestPendingItems checks Options.Pending: an item's creation or change is
// published as pending before the item is read (here the read is held up
// by Parse), and the read's snapshot clears it; a deletion is never
// pending; without the option nothing is.
func TestPendingItems(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.Ensure("/pend/b") // an item in a group created with it is read as the group is listed
	w.put("/pend/a/x", "v=1")

	// Parse blocks on a value "hold..." until the test lets it go.
	release := make(chan struct{})
	released := false
	f := startTree(t, zc.Servers(), "/pend", func(s *setup) {
		s.opts.Persistent, s.opts.Pending = true, true
		s.session.SessionTimeout = 10 * time.Second
		s.opts.Parse = func(group, name string, data []byte, st *zksession.Stat) (item, error) {
			if strings.HasPrefix(string(data), "v=hold") {
				<-release
			}
			return parse(group, name, data, st)
		}
	})
	// (Registered after startTree's, so it runs first: Run must not be
	// stuck in Parse when the tree is stopped.)
	t.Cleanup(func() {
		if !released {
			close(release)
		}
	})
	f.waitGroups("the first snapshot", map[string]string{"a": "x=1"})
	if p := f.tree.Snapshot().Pending; p != nil {
		t.Fatalf("pending %v after the full read, want none", p)
	}

	pendingIs := func(what, want string) {
		t.Helper()
		var got string
		eventually(t, what, func() bool {
			got = fmt.Sprint(f.tree.Snapshot().Pending)
			return got == want
		}, func() string { return "pending " + got + ", want " + want })
	}

	// A change, then a creation in a second group, each held in its read.
	for _, c := range []struct{ path, data, groups string }{
		{"/pend/a/x", "v=hold1", "map[a:x=hold1]"},
		{"/pend/b/y", "v=hold2", "map[a:x=hold1 b:y=hold2]"},
	} {
		before := fmt.Sprint(f.groups())
		w.put(c.path, c.data)
		group, name, _ := strings.Cut(strings.TrimPrefix(c.path, "/pend/"), "/")
		pendingIs("the event of "+c.path+" published as pending", fmt.Sprintf("map[%s:map[%s:{}]]", group, name))
		if got := fmt.Sprint(f.groups()); got != before {
			t.Fatalf("groups %s while %s is pending, want %s (not read yet)", got, c.path, before)
		}
		release <- struct{}{}
		pendingIs("the read of "+c.path+" clearing it", "map[]")
		if got := fmt.Sprint(f.groups()); got != c.groups {
			t.Fatalf("groups %s after the read, want %s", got, c.groups)
		}
	}

	// A deletion is applied without a read and never pending.
	rev := f.tree.Snapshot().Revision
	w.Remove("/pend/b/y")
	eventually(t, "the deletion applied", func() bool { return f.groups()["b"] == "" }, func() string { return fmt.Sprint(f.groups()) })
	if s := f.tree.Snapshot(); s.Revision != rev+1 || s.Pending != nil {
		t.Fatalf("after a deletion: revision %d (was %d), pending %v; want one snapshot, nothing pending", s.Revision, rev, s.Pending)
	}
	close(release)
	released = true

	// Without the option: the read is held, and nothing is published
	// before it.
	hold := make(chan struct{})
	g := startTree(t, zc.Servers(), "/pend", func(s *setup) {
		s.opts.Persistent = true
		s.opts.Parse = func(group, name string, data []byte, st *zksession.Stat) (item, error) {
			if string(data) == "v=late" {
				<-hold
			}
			return parse(group, name, data, st)
		}
	})
	held := true
	t.Cleanup(func() {
		if held {
			close(hold)
		}
	})
	g.waitGroups("the first snapshot", f.groups())
	rev = g.tree.Snapshot().Revision
	w.put("/pend/a/z", "v=late")
	time.Sleep(200 * time.Millisecond)
	if s := g.tree.Snapshot(); s.Revision != rev || s.Pending != nil {
		t.Fatalf("without Pending: revision %d (was %d), pending %v while the read is held; want no new snapshot", s.Revision, rev, s.Pending)
	}
	close(hold)
	held = false
	eventually(t, "the held read published", func() bool { return strings.Contains(g.groups()["a"], "z=late") }, func() string { return fmt.Sprint(g.groups()) })
}

// An item whose read fails after its event was published as pending (the
// connection is cut the moment the event arrives, and the session is lost)
// stays pending, with the last snapshot's groups, until a new session's
// full re-read clears it, here one that finds nothing to change (the item
// is deleted again meanwhile).
func TestPendingAcrossLostConnection(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.put("/pend/a/x", "v=1")
	part := zktest.NewPartitioner()
	var cutOnEvent atomic.Bool
	f := startTree(t, zc.Servers(), "/pend", func(s *setup) {
		s.opts.Persistent, s.opts.Pending = true, true
		s.session.SessionTimeout = 2 * time.Second
		s.session.Dialer = part.Dialer()
		s.session.DropEvent = func(ev zk.Event) bool {
			// Runs before the event is delivered: the read the event
			// causes finds the connection cut.
			if ev.Path == "/pend/a/y" && cutOnEvent.CompareAndSwap(true, false) {
				part.Cut()
			}
			return false
		}
	})
	f.waitGroups("the first snapshot", map[string]string{"a": "x=1"})
	resyncs := f.resyncs()

	cutOnEvent.Store(true)
	w.put("/pend/a/y", "v=2")
	want := "map[a:map[y:{}]]"
	eventually(t, "the creation published as pending", func() bool { return fmt.Sprint(f.tree.Snapshot().Pending) == want },
		func() string { return fmt.Sprint(f.tree.Snapshot().Pending) })
	if !part.Partitioned() {
		t.Fatal("the connection was not cut when the event arrived")
	}
	w.Remove("/pend/a/y")
	eventually(t, "the session to be lost", func() bool { st, _ := f.sess.State(); return st == zksession.StateLost }, nil)
	if s := f.tree.Snapshot(); fmt.Sprint(s.Pending) != want || !mapsEqual(f.groups(), map[string]string{"a": "x=1"}) {
		t.Fatalf("while cut: pending %v, groups %v; want %s and the last snapshot's groups", s.Pending, f.groups(), want)
	}

	part.Restore()
	eventually(t, "the new session's full re-read", func() bool { return f.resyncs() > resyncs }, nil)
	eventually(t, "the re-read clearing the pending item", func() bool { return f.tree.Snapshot().Pending == nil },
		func() string { return fmt.Sprint(f.tree.Snapshot().Pending) })
	if got := f.groups(); !mapsEqual(got, map[string]string{"a": "x=1"}) {
		t.Fatalf("groups %v after the re-read, want a: x=1", got)
	}
	w.put("/pend/a/x", "v=3")
	f.waitGroups("watches working after the cut", map[string]string{"a": "x=3"})
}

package zktree_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/internal/zktree"
)

// Groups and items appear and vanish through watches alone: no periodic
// resync runs, and a full re-read at the end finds nothing the watches
// had missed.
func TestChildrenAppearAndVanish(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.Ensure("/tree")
	f := startTree(t, zc.Servers(), "/tree")
	f.waitGroups("the first, empty snapshot", map[string]string{})

	w.put("/tree/a/x", "v=1")
	f.waitGroups("an item in a new group", map[string]string{"a": "x=1"})
	w.put("/tree/a/y", "v=2")
	f.waitGroups("a second item", map[string]string{"a": "x=1,y=2"})
	w.put("/tree/b/z", "v=3")
	f.waitGroups("a second group", map[string]string{"a": "x=1,y=2", "b": "z=3"})

	// A group without items is followed but left out (Build says so).
	w.Ensure("/tree/c")
	w.put("/tree/c/q", "v=4")
	f.waitGroups("an item in a group created empty", map[string]string{"a": "x=1,y=2", "b": "z=3", "c": "q=4"})

	w.Remove("/tree/a/x")
	f.waitGroups("an item removed", map[string]string{"a": "y=2", "b": "z=3", "c": "q=4"})
	w.Remove("/tree/a/y")
	f.waitGroups("the last item of a group removed", map[string]string{"b": "z=3", "c": "q=4"})
	w.Remove("/tree/b")
	f.waitGroups("a group removed", map[string]string{"c": "q=4"})
	w.put("/tree/a/x", "v=5")
	f.waitGroups("an item in a group emptied before", map[string]string{"a": "x=5", "c": "q=4"})

	f.resyncExpect(map[string]string{"a": "x=5", "c": "q=4"}, 0, 0, 0)
}

// Data changes are re-read through the items' data watches; a rewrite
// with the same content is a new version and is published too, and of
// several quick changes the last one wins.
func TestDataChanges(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.put("/tree/a/x", "v=1")
	w.put("/tree/a/y", "v=1")
	f := startTree(t, zc.Servers(), "/tree")
	f.waitGroups("the first load", map[string]string{"a": "x=1,y=1"})

	w.put("/tree/a/x", "v=2")
	snap := f.waitGroups("a data change", map[string]string{"a": "x=2,y=1"})

	w.put("/tree/a/x", "v=2")
	eventually(t, "a rewrite with the same content to be published", func() bool {
		return f.tree.Snapshot().Revision > snap.Revision
	}, nil)
	if got := f.groups(); !mapsEqual(got, map[string]string{"a": "x=2,y=1"}) {
		t.Fatalf("after a same-content rewrite: %v", got)
	}

	for i := 3; i <= 9; i++ {
		w.put("/tree/a/y", fmt.Sprintf("v=%d", i))
	}
	f.waitGroups("the last of several quick changes", map[string]string{"a": "x=2,y=9"})
}

// A root that does not exist yet is watched for its creation; so is a
// root deleted later.
func TestRootCreatedLate(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())

	t.Run("nested", func(t *testing.T) {
		f := startTree(t, zc.Servers(), "/late/registry")
		f.waitGroups("an empty snapshot without a root", map[string]string{})
		if f.tree.LastContact().IsZero() {
			t.Fatal("LastContact is zero although a snapshot was published")
		}
		w.put("/late/registry/a/x", "v=1")
		f.waitGroups("the tree under a root created late", map[string]string{"a": "x=1"})
		w.put("/late/registry/b/y", "v=2")
		f.waitGroups("a second group", map[string]string{"a": "x=1", "b": "y=2"})

		w.Remove("/late/registry")
		f.waitGroups("the root deleted", map[string]string{})
		w.put("/late/registry/c/z", "v=3")
		f.waitGroups("the root created again", map[string]string{"c": "z=3"})
	})

	t.Run("flat", func(t *testing.T) {
		f := startTree(t, zc.Servers(), "/late/gateways", func(s *setup) { s.opts.Flat = true })
		f.waitGroups("an empty snapshot without a root", map[string]string{})
		w.put("/late/gateways/gw-1", "v=1")
		f.waitGroups("an item under a root created late", map[string]string{"": "gw-1=1"})
		w.put("/late/gateways/gw-2", "v=2")
		f.waitGroups("a second item", map[string]string{"": "gw-1=1,gw-2=2"})
		w.put("/late/gateways/gw-1", "v=3")
		f.waitGroups("a data change", map[string]string{"": "gw-1=3,gw-2=2"})
		w.Remove("/late/gateways/gw-2")
		f.waitGroups("an item removed", map[string]string{"": "gw-1=3"})

		w.Remove("/late/gateways")
		f.waitGroups("the root deleted", map[string]string{})
		w.put("/late/gateways/gw-3", "v=4")
		f.waitGroups("the root created again", map[string]string{"": "gw-3=4"})
	})
}

// Malformed items are skipped and counted, logged and counted once per
// node version however often they are re-read, and never keep the other
// items out.
func TestMalformedItems(t *testing.T) {
	const msg = "skipping malformed node"
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.put("/tree/a/good", "v=1")
	w.put("/tree/a/bad", "junk")
	w.put("/tree/b/bad", "") // b has no well-formed item: left out
	f := startTree(t, zc.Servers(), "/tree")
	snap := f.waitGroups("the well-formed item", map[string]string{"a": "good=1"})
	check := func(when string, malformed int, total float64, logsA, logsB int) {
		t.Helper()
		if s := f.tree.Snapshot(); s.Malformed != malformed {
			t.Errorf("%s: Snapshot.Malformed = %d, want %d", when, s.Malformed, malformed)
		}
		if got := f.counter("zkgate_test_malformed_nodes", ""); got != float64(malformed) {
			t.Errorf("%s: zkgate_test_malformed_nodes = %v, want %d", when, got, malformed)
		}
		if got := f.counter("zkgate_test_malformed_total", ""); got != total {
			t.Errorf("%s: zkgate_test_malformed_total = %v, want %v (once per node version)", when, got, total)
		}
		if got := f.logs.logged(msg, "/tree/a/bad"); got != logsA {
			t.Errorf("%s: /tree/a/bad logged %d times, want %d", when, got, logsA)
		}
		if got := f.logs.logged(msg, "/tree/b/bad"); got != logsB {
			t.Errorf("%s: /tree/b/bad logged %d times, want %d", when, got, logsB)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	if snap.Malformed != 2 {
		t.Fatalf("Malformed = %d, want 2", snap.Malformed)
	}
	check("first load", 2, 2, 1, 1)

	f.fullResync()
	f.fullResync()
	check("after two more full re-reads", 2, 2, 1, 1)

	// A new version of a malformed node is reported again.
	w.put("/tree/a/bad", "still junk")
	eventually(t, "the new malformed version to be counted", func() bool {
		return f.counter("zkgate_test_malformed_total", "") == 3
	}, nil)
	check("after a malformed rewrite", 2, 3, 2, 1)

	// Fixed in place: the group appears.
	w.put("/tree/b/bad", "v=2")
	f.waitGroups("a fixed item", map[string]string{"a": "good=1", "b": "bad=2"})
	check("after a fix", 1, 3, 2, 1)

	w.Remove("/tree/a/bad")
	eventually(t, "a removed malformed item to stop counting", func() bool { return f.tree.Snapshot().Malformed == 0 }, nil)
	check("after the removal", 0, 3, 2, 1)
	w.put("/tree/a/new", "[]")
	eventually(t, "a new malformed item in a known group", func() bool { return f.tree.Snapshot().Malformed == 1 }, nil)
	if got := f.groups(); !mapsEqual(got, map[string]string{"a": "good=1", "b": "bad=2"}) {
		t.Fatalf("groups %v: a malformed item changed what is published", got)
	}
}

// Every published snapshot has a larger revision than the one before and
// never changes afterwards; Updates is signalled for the new ones.
func TestSnapshotsImmutableWithIncreasingRevisions(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.Ensure("/tree")
	f := startTree(t, zc.Servers(), "/tree")

	type seen struct {
		snap   *zktree.Snapshot[string]
		groups map[string]string // copied when seen
		rev    uint64
	}
	var mu sync.Mutex
	var all []seen
	ctx, cancel := context.WithCancel(context.Background())
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for {
			select {
			case <-ctx.Done():
				return
			case <-f.tree.Updates():
			}
			s := f.tree.Snapshot()
			mu.Lock()
			all = append(all, seen{s, maps.Clone(s.Groups), s.Revision})
			mu.Unlock()
		}
	}()
	defer func() { cancel(); <-consumed }()

	f.waitGroups("the first snapshot", map[string]string{})
	want := map[string]string{}
	for i := range 12 {
		g := fmt.Sprintf("g%d", i%3)
		n := fmt.Sprintf("i%02d", i)
		w.put("/tree/"+g+"/"+n, fmt.Sprintf("v=%d", i))
		if want[g] == "" {
			want[g] = fmt.Sprintf("%s=%d", n, i)
		} else {
			want[g] += fmt.Sprintf(",%s=%d", n, i)
		}
		f.waitGroups("change "+n, want)
	}
	w.Remove("/tree/g1")
	delete(want, "g1")
	f.waitGroups("a group removed", want)
	f.fullResync()
	last := f.tree.Snapshot()
	eventually(t, "the consumer to see the last snapshot", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(all) > 0 && all[len(all)-1].snap == last
	}, nil)

	mu.Lock()
	defer mu.Unlock()
	if len(all) < 3 {
		t.Fatalf("Updates signalled only %d times over 14 changes", len(all))
	}
	for i, s := range all {
		if i > 0 && s.rev <= all[i-1].rev {
			t.Errorf("snapshot %d: revision %d after %d", i, s.rev, all[i-1].rev)
		}
		if s.snap.Revision != s.rev || !mapsEqual(s.snap.Groups, s.groups) {
			t.Errorf("snapshot of revision %d changed after it was published: %v, was %v", s.rev, s.snap.Groups, s.groups)
		}
	}
	if last.Revision < uint64(len(all)) {
		t.Errorf("last revision %d, but %d distinct snapshots were seen", last.Revision, len(all))
	}
}

// A full re-read counts what the watches missed: here every watch event
// under the root is dropped (as if lost), so only re-reads see changes.
func TestResyncCountsDivergence(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.put("/tree/a/x", "v=1")
	w.put("/tree/a/y", "v=2")
	var dropping atomic.Bool
	var mu sync.Mutex
	dropped := map[string]bool{}
	f := startTree(t, zc.Servers(), "/tree", func(s *setup) {
		s.session.DropEvent = func(ev zk.Event) bool {
			if !dropping.Load() || !strings.HasPrefix(ev.Path, "/tree") {
				return false
			}
			mu.Lock()
			dropped[ev.Path] = true
			mu.Unlock()
			return true
		}
	})
	f.waitGroups("the first load", map[string]string{"a": "x=1,y=2"})

	dropping.Store(true)
	w.put("/tree/a/z", "v=3") // added (child event of /tree/a)
	w.put("/tree/a/x", "v=9") // changed (data event of /tree/a/x)
	w.Remove("/tree/a/y")     // removed (data event of /tree/a/y)
	w.put("/tree/b/q", "v=5") // added in a new group (child event of /tree)
	eventually(t, "the watch events to be dropped", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return dropped["/tree"] && dropped["/tree/a"] && dropped["/tree/a/x"] && dropped["/tree/a/y"]
	}, func() string { mu.Lock(); defer mu.Unlock(); return fmt.Sprint(dropped) })
	if got := f.groups(); !mapsEqual(got, map[string]string{"a": "x=1,y=2"}) {
		t.Fatalf("the tree changed although every event was dropped (%v): the test injects nothing", got)
	}

	f.resyncExpect(map[string]string{"a": "x=9,z=3", "b": "q=5"}, 2, 1, 1)
	// A second re-read with nothing missed counts no divergence.
	f.resyncExpect(nil, 2, 1, 1)
}

// A partition longer than the session timeout: the session is lost, the
// last snapshot stays (static stability), and the new session's full
// re-read finds what changed meanwhile and re-arms the watches.
func TestSessionLostAndResync(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.put("/tree/a/x", "v=1")
	w.put("/tree/a/y", "v=2")
	part := zktest.NewPartitioner()
	f := startTree(t, zc.Servers(), "/tree", func(s *setup) {
		s.session.SessionTimeout = 2 * time.Second
		s.session.Dialer = part.Dialer()
	})
	f.waitGroups("the first load", map[string]string{"a": "x=1,y=2"})
	gen := f.sess.Generation()
	resyncs := f.resyncs()

	part.Cut()
	eventually(t, "the session to be lost", func() bool { st, _ := f.sess.State(); return st == zksession.StateLost }, nil)
	eventually(t, "the tree to count the loss", func() bool { return f.counter("zkgate_test_session_lost_total", "") >= 1 }, nil)
	if got := f.groups(); !mapsEqual(got, map[string]string{"a": "x=1,y=2"}) {
		t.Fatalf("snapshot changed while partitioned: %v", got)
	}
	lc := f.tree.LastContact()
	if lc.IsZero() || !lc.Before(time.Now()) {
		t.Fatalf("LastContact %v while partitioned: want a moment in the past", lc)
	}
	time.Sleep(50 * time.Millisecond)
	if again := f.tree.LastContact(); !again.Equal(lc) {
		t.Fatalf("LastContact moved from %v to %v while partitioned", lc, again)
	}

	w.Remove("/tree/a/x")
	w.put("/tree/a/y", "v=7")
	w.put("/tree/b/q", "v=5")
	part.Restore()

	eventually(t, "a new session", func() bool { return f.sess.Generation() > gen }, nil)
	f.waitGroups("the new session's full re-read", map[string]string{"a": "y=7", "b": "q=5"})
	if got := f.resyncs(); got <= resyncs {
		t.Fatalf("no full re-read after the new session (resyncs %v, before %v)", got, resyncs)
	}
	if a, r, c := f.divergence(); a < 1 || r < 1 || c < 1 {
		t.Fatalf("divergence added/removed/changed = %v/%v/%v, want each ≥ 1", a, r, c)
	}
	w.put("/tree/b/r", "v=6")
	f.waitGroups("watches re-armed on the new session", map[string]string{"a": "y=7", "b": "q=5,r=6"})
	w.put("/tree/a/y", "v=8")
	f.waitGroups("data watches re-armed on the new session", map[string]string{"a": "y=8", "b": "q=5,r=6"})
}

// The server goes away and comes back: the tree keeps its snapshot
// meanwhile and re-reads everything after the reconnection.
func TestServerRestartResyncs(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.put("/tree/a/x", "v=1")
	f := startTree(t, zc.Servers(), "/tree", func(s *setup) { s.session.SessionTimeout = 10 * time.Second })
	f.waitGroups("the first load", map[string]string{"a": "x=1"})
	resyncs := f.resyncs()

	if err := zc.StopAll(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session to notice", func() bool { st, _ := f.sess.State(); return st != zksession.StateConnected }, nil)
	if got := f.groups(); !mapsEqual(got, map[string]string{"a": "x=1"}) {
		t.Fatalf("snapshot changed with the server down: %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := zc.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a full re-read after the reconnection", func() bool { return f.resyncs() > resyncs }, nil)
	w.put("/tree/a/y", "v=2")
	f.waitGroups("watches after the reconnection", map[string]string{"a": "x=1,y=2"})
}

// Run returns when its context ends (following, or still waiting for a
// first connection), and when the session closes.
func TestRunEnds(t *testing.T) {
	t.Run("context cancelled while following", func(t *testing.T) {
		zc := zktest.Start(t)
		newWriter(t, zc.Servers()).put("/tree/a/x", "v=1")
		f := startTree(t, zc.Servers(), "/tree")
		f.waitGroups("the first load", map[string]string{"a": "x=1"})
		f.stop()
		f.waitDone(t)
		if !errors.Is(f.err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", f.err)
		}
		if got := f.groups(); !mapsEqual(got, map[string]string{"a": "x=1"}) {
			t.Fatalf("the last snapshot changed when Run ended: %v", got)
		}
	})

	t.Run("context cancelled before any connection", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there: the session never connects
		f := startTree(t, []string{addr}, "/tree")
		time.Sleep(100 * time.Millisecond)
		if f.tree.Snapshot() != nil || !f.tree.LastContact().IsZero() {
			t.Fatal("a snapshot without ever connecting")
		}
		f.stop()
		f.waitDone(t)
		if !errors.Is(f.err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", f.err)
		}
	})

	t.Run("session closed", func(t *testing.T) {
		zc := zktest.Start(t)
		newWriter(t, zc.Servers()).put("/tree/a/x", "v=1")
		f := startTree(t, zc.Servers(), "/tree")
		f.waitGroups("the first load", map[string]string{"a": "x=1"})
		f.sess.Close()
		f.waitDone(t)
		if !errors.Is(f.err, zksession.ErrClosed) {
			t.Fatalf("Run returned %v, want zksession.ErrClosed", f.err)
		}
	})
}

func (f *follower) waitDone(t *testing.T) {
	t.Helper()
	select {
	case <-f.done:
	case <-time.After(waitFor):
		t.Fatalf("Run did not return within %v", waitFor)
	}
}

// Without watches the tree is re-read every ResyncInterval only; a full
// read of many groups with little concurrency reads them all.
func TestPollingAndBoundedConcurrency(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	want := map[string]string{}
	for g := range 20 {
		name := fmt.Sprintf("g%02d", g)
		var vals []string
		for i := range 3 {
			w.put(fmt.Sprintf("/tree/%s/i%d", name, i), fmt.Sprintf("v=%d", g*10+i))
			vals = append(vals, fmt.Sprintf("i%d=%d", i, g*10+i))
		}
		want[name] = strings.Join(vals, ",")
	}
	f := startTree(t, zc.Servers(), "/tree", func(s *setup) {
		s.opts.Watch = false
		s.opts.ResyncInterval = 200 * time.Millisecond
		s.opts.Concurrency = 2
	})
	f.waitGroups("a full read of 20 groups", want)

	w.put("/tree/g00/new", "v=new")
	w.Remove("/tree/g19")
	want["g00"] += ",new=new"
	delete(want, "g19")
	f.waitGroups("the next polls to find the changes", want)
}

// Snapshots say whether a full re-read published them, and Resync's
// tickets tell a caller when a re-read that began after its call has
// been published — a re-read already running when it called does not
// count.
func TestResyncTickets(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.put("/tree/a/x", "v=1")
	var blocking atomic.Bool
	entered, release, end := make(chan struct{}), make(chan struct{}), make(chan struct{})
	f := startTree(t, zc.Servers(), "/tree", func(s *setup) {
		s.opts.Parse = func(group, name string, data []byte, st *zksession.Stat) (item, error) {
			if blocking.Load() && name == "x" {
				select {
				case entered <- struct{}{}:
				case <-end:
				}
				select {
				case <-release:
				case <-end:
				}
			}
			return parse(group, name, data, st)
		}
	})
	t.Cleanup(func() { close(end) }) // runs before startTree's cleanup
	first := f.waitGroups("the first load", map[string]string{"a": "x=1"})
	if !first.FullResync || first.Resyncs != 1 || first.ResyncTicket != 0 {
		t.Fatalf("first snapshot: FullResync %v, Resyncs %d, ResyncTicket %d; want true, 1, 0",
			first.FullResync, first.Resyncs, first.ResyncTicket)
	}

	w.put("/tree/a/y", "v=2")
	watched := f.waitGroups("a watch event", map[string]string{"a": "x=1,y=2"})
	if watched.FullResync || watched.Resyncs != 1 || watched.ResyncTicket != 0 {
		t.Fatalf("snapshot of a watch event: FullResync %v, Resyncs %d, ResyncTicket %d; want false, 1, 0",
			watched.FullResync, watched.Resyncs, watched.ResyncTicket)
	}

	t1 := f.tree.Resync()
	eventually(t, "the re-read of ticket 1", func() bool { return f.tree.Snapshot().ResyncTicket >= t1 }, nil)
	s := f.tree.Snapshot()
	if t1 != 1 || !s.FullResync || s.Resyncs != 2 || s.Revision <= watched.Revision {
		t.Fatalf("after Resync: ticket %d, FullResync %v, Resyncs %d, revision %d (before %d)",
			t1, s.FullResync, s.Resyncs, s.Revision, watched.Revision)
	}

	// A re-read is running (held in Parse) when the second ticket is
	// taken: its snapshot covers the first ticket only.
	blocking.Store(true)
	t2 := f.tree.Resync()
	<-entered
	t3 := f.tree.Resync()
	if t3 != t2+1 {
		t.Fatalf("tickets %d then %d", t2, t3)
	}
	release <- struct{}{}
	<-entered // the next re-read runs: the one before is published
	s = f.tree.Snapshot()
	if !s.FullResync || s.ResyncTicket != t2 {
		t.Fatalf("the re-read that was running: FullResync %v, ResyncTicket %d; want true, %d (not %d)",
			s.FullResync, s.ResyncTicket, t2, t3)
	}
	blocking.Store(false)
	release <- struct{}{}
	eventually(t, "a re-read begun after the last ticket", func() bool { return f.tree.Snapshot().ResyncTicket >= t3 }, nil)
	if s := f.tree.Snapshot(); !s.FullResync || s.Resyncs != 4 {
		t.Fatalf("last re-read: FullResync %v, Resyncs %d; want true, 4", s.FullResync, s.Resyncs)
	}
	if got := f.resyncs(); got != 4 {
		t.Fatalf("zkgate_test_resyncs_total = %v, want 4 (as Snapshot.Resyncs)", got)
	}
}

// With a group filter the tree reads and watches only the accepted
// groups: the others never appear, their changes publish nothing and
// hold no watch, and an accepted group created later is read as soon as
// it appears.
func TestGroupFilter(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	for g := range 20 {
		for i := range 5 {
			w.put(fmt.Sprintf("/tree/g%02d/i%d", g, i), fmt.Sprintf("v=%d", i))
		}
	}
	accept := map[string]bool{"g03": true, "g07": true, "late": true}
	f := startTree(t, zc.Servers(), "/tree", func(s *setup) {
		s.opts.Groups = func(name string) bool { return accept[name] }
	})
	snap := f.waitGroups("only the accepted groups", map[string]string{
		"g03": "i0=0,i1=1,i2=2,i3=3,i4=4", "g07": "i0=0,i1=1,i2=2,i3=3,i4=4",
	})
	// The root's child watch, two group child watches, ten item data watches.
	if got := f.sess.Watches(); got != 13 {
		t.Fatalf("the session holds %d watches, want 13 (root, 2 groups, 10 items)", got)
	}

	// Changes to groups the tree does not follow publish nothing.
	w.put("/tree/g05/i0", "v=9")
	w.put("/tree/g05/new", "v=9")
	w.Remove("/tree/g06")
	w.put("/tree/other/x", "v=1")
	// An accepted group's change after them: once it is published, the
	// others would have been too.
	w.put("/tree/g03/i0", "v=7")
	f.waitGroups("a change to an accepted group", map[string]string{
		"g03": "i0=7,i1=1,i2=2,i3=3,i4=4", "g07": "i0=0,i1=1,i2=2,i3=3,i4=4",
	})
	if got := f.tree.Snapshot().Revision; got != snap.Revision+1 {
		t.Fatalf("revision %d after one change to a followed group, want %d: changes to other groups were published", got, snap.Revision+1)
	}

	// An accepted group that appears later is followed.
	w.put("/tree/late/x", "v=1")
	f.waitGroups("an accepted group created late", map[string]string{
		"g03": "i0=7,i1=1,i2=2,i3=3,i4=4", "g07": "i0=0,i1=1,i2=2,i3=3,i4=4", "late": "x=1",
	})
	w.Remove("/tree/g07")
	f.waitGroups("an accepted group removed", map[string]string{
		"g03": "i0=7,i1=1,i2=2,i3=3,i4=4", "late": "x=1",
	})

	f.resyncExpect(map[string]string{"g03": "i0=7,i1=1,i2=2,i3=3,i4=4", "late": "x=1"}, 0, 0, 0)
}

// A deleted item costs one read, the re-listing of its group (which its
// group's child event asks for anyway), not also a read of the item; an
// item deleted and created again at once is still found.
func TestDeletedItemNotReRead(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	const n = 20
	for i := range n {
		w.put(fmt.Sprintf("/tree/a/x%02d", i), "v=1")
	}
	w.put("/tree/a/y", "v=2")
	f := startTree(t, zc.Servers(), "/tree")
	f.waitGroups("the first load", map[string]string{"a": build2(n, 0)})

	calls := f.sess.Calls()
	for i := range n {
		w.Remove(fmt.Sprintf("/tree/a/x%02d", i))
		f.waitGroups("a deletion", map[string]string{"a": build2(n, i+1)})
		eventually(t, "the group's child watch to be armed again", func() bool { return f.sess.Watches() == n+3-(i+1) }, nil)
	}
	// The deleted item's data event and its group's child event come in
	// one batch (one re-listing) or, on a busy machine, in two (two
	// re-listings); reading the deleted item as well cost exactly two.
	if got := f.sess.Calls() - calls; got >= 2*n {
		t.Fatalf("%d deletions cost %d requests, want fewer than %d (one re-listing each, no read of the deleted item)", n, got, 2*n)
	} else {
		t.Logf("%d deletions cost %d requests", n, got)
	}

	for i := range 30 {
		w.Remove("/tree/a/y")
		w.put("/tree/a/y", fmt.Sprintf("v=%d", i))
	}
	f.waitGroups("an item deleted and created again", map[string]string{"a": "y=29"})
	f.resyncExpect(nil, 0, 0, 0)
}

// build2 is the group value of items x<deleted>…x<n-1> (v=1) and y (v=2).
func build2(n, deleted int) string {
	var parts []string
	for i := deleted; i < n; i++ {
		parts = append(parts, fmt.Sprintf("x%02d=1", i))
	}
	parts = append(parts, "y=2")
	return strings.Join(parts, ",")
}

// With persistent recursive watches the tree follows the same changes;
// a new item costs one read and a deleted one none; the watches are
// added again after a reconnection to the same session.
func TestPersistentWatches(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	persistent := func(s *setup) { s.opts.Persistent = true; s.session.SessionTimeout = 10 * time.Second }

	t.Run("changes", func(t *testing.T) {
		w.Ensure("/p1")
		f := startTree(t, zc.Servers(), "/p1", persistent)
		f.waitGroups("the first, empty snapshot", map[string]string{})
		if got := f.sess.Watches(); got != 1 {
			t.Fatalf("%d watches, want the one persistent watch on the root", got)
		}
		w.put("/p1/a/x", "v=1")
		f.waitGroups("an item in a new group", map[string]string{"a": "x=1"})
		w.put("/p1/a/y", "v=2")
		f.waitGroups("a second item", map[string]string{"a": "x=1,y=2"})
		w.put("/p1/a/x", "v=3")
		f.waitGroups("a data change", map[string]string{"a": "x=3,y=2"})
		w.put("/p1/b/z", "v=4")
		f.waitGroups("a second group", map[string]string{"a": "x=3,y=2", "b": "z=4"})

		calls := f.sess.Calls()
		w.put("/p1/a/n", "v=5")
		f.waitGroups("a new item", map[string]string{"a": "n=5,x=3,y=2", "b": "z=4"})
		if got := f.sess.Calls() - calls; got != 1 {
			t.Fatalf("a new item cost %d requests, want 1 (its read)", got)
		}
		calls = f.sess.Calls()
		w.Remove("/p1/a/n")
		f.waitGroups("an item removed", map[string]string{"a": "x=3,y=2", "b": "z=4"})
		time.Sleep(50 * time.Millisecond)
		if got := f.sess.Calls() - calls; got != 0 {
			t.Fatalf("a deleted item cost %d requests, want 0", got)
		}
		for i := range 30 {
			w.Remove("/p1/a/y")
			w.put("/p1/a/y", fmt.Sprintf("v=%d", i))
		}
		f.waitGroups("an item deleted and created again", map[string]string{"a": "x=3,y=29", "b": "z=4"})
		w.Remove("/p1/b")
		f.waitGroups("a group removed", map[string]string{"a": "x=3,y=29"})
		w.Remove("/p1")
		f.waitGroups("the root removed", map[string]string{})
		w.put("/p1/c/q", "v=6")
		f.waitGroups("the root created again", map[string]string{"c": "q=6"})

		f.resyncExpect(nil, 0, 0, 0)
		if got := f.sess.Watches(); got != 1 {
			t.Fatalf("%d watches, want 1", got)
		}
	})

	t.Run("groups", func(t *testing.T) {
		w.put("/p2/a/x", "v=1")
		w.put("/p2/b/x", "v=1")
		f := startTree(t, zc.Servers(), "/p2", persistent, func(s *setup) {
			s.opts.Groups = func(name string) bool { return name == "a" || name == "late" }
		})
		f.waitGroups("the accepted group", map[string]string{"a": "x=1"})
		// The root's child watch and persistent watches on a and on late,
		// which does not exist yet but is armed once it appears.
		if got := f.sess.Watches(); got != 2 {
			t.Fatalf("%d watches, want 2 (the root's child watch, a's persistent watch)", got)
		}
		w.put("/p2/b/y", "v=2")
		w.put("/p2/a/y", "v=2")
		f.waitGroups("a new item", map[string]string{"a": "x=1,y=2"})
		w.put("/p2/late/z", "v=3")
		f.waitGroups("an accepted group created late", map[string]string{"a": "x=1,y=2", "late": "z=3"})
		w.put("/p2/late/z", "v=4")
		f.waitGroups("a change in it", map[string]string{"a": "x=1,y=2", "late": "z=4"})
		w.Remove("/p2/a")
		f.waitGroups("a group removed", map[string]string{"late": "z=4"})
		w.put("/p2/a/q", "v=5")
		f.waitGroups("the group created again", map[string]string{"a": "q=5", "late": "z=4"})
	})

	t.Run("nearly all groups", func(t *testing.T) {
		// 10 groups, 9 accepted (90%): one persistent watch on the root
		// instead of 9, the other group's events ignored.
		want := map[string]string{}
		for g := range 10 {
			w.put(fmt.Sprintf("/p4/g%d/x", g), "v=1")
			if g > 0 {
				want[fmt.Sprintf("g%d", g)] = "x=1"
			}
		}
		f := startTree(t, zc.Servers(), "/p4", persistent, func(s *setup) {
			s.opts.Groups = func(name string) bool { return name != "g0" && name != "other" }
		})
		f.waitGroups("the accepted groups", want)
		watches := func(when string) {
			t.Helper()
			// The persistent watch on the root and, at most, the child
			// watch the first listing of the root armed.
			if got := f.sess.Watches(); got > 2 {
				t.Fatalf("%s: %d watches, want the root's (one per group without the switch)", when, got)
			}
		}
		watches("after the first load")
		w.put("/p4/g1/y", "v=2")
		want["g1"] = "x=1,y=2"
		f.waitGroups("a new item", want)
		w.put("/p4/g2/x", "v=3")
		want["g2"] = "x=3"
		f.waitGroups("a data change", want)
		w.Remove("/p4/g3/x")
		delete(want, "g3")
		f.waitGroups("an item removed", want)
		calls := f.sess.Calls()
		w.put("/p4/g0/y", "v=9") // not followed
		w.put("/p4/g1/z", "v=7")
		want["g1"] = "x=1,y=2,z=7"
		f.waitGroups("a new item after one in a group not followed", want)
		if got := f.sess.Calls() - calls; got != 1 {
			t.Errorf("a new item cost %d requests, want 1 (its read; nothing for the group not followed)", got)
		}
		w.put("/p4/other/y", "v=9")
		w.put("/p4/late/z", "v=4")
		want["late"] = "z=4"
		f.waitGroups("an accepted group created late", want)
		w.Remove("/p4/g4")
		delete(want, "g4")
		f.waitGroups("a group removed", want)
		f.resyncExpect(want, 0, 0, 0)
		watches("after a full re-read")

		f.reconnect(zc)
		w.put("/p4/g5/y", "v=5")
		want["g5"] = "x=1,y=5"
		f.waitGroups("a change after the reconnection", want)
		watches("after the reconnection")
	})

	t.Run("reconnection", func(t *testing.T) {
		w.put("/p3/a/x", "v=1")
		f := startTree(t, zc.Servers(), "/p3", persistent)
		f.waitGroups("the first load", map[string]string{"a": "x=1"})
		f.reconnect(zc)
		w.put("/p3/a/y", "v=2")
		f.waitGroups("a change after the reconnection", map[string]string{"a": "x=1,y=2"})
		w.put("/p3/a/x", "v=3")
		f.waitGroups("a data change after the reconnection", map[string]string{"a": "x=3,y=2"})
	})
}

// A full re-read builds again only the groups it finds changed; the
// others keep the values of the previous snapshot (a consumer compares
// them to find what changed: the gateway rebuilds only those services'
// pools). What changed without a watch event is still published.
func TestResyncBuildsOnlyChangedGroups(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.put("/tree/a/x", "v=1")
	w.put("/tree/b/x", "v=2")
	w.put("/tree/c/x", "v=3")
	var mu sync.Mutex
	builds := map[string]int{}
	f := startTree(t, zc.Servers(), "/tree", func(s *setup) {
		s.opts.Watch = false // only full re-reads see changes
		s.opts.Build = func(name string, items []item) (string, bool) {
			mu.Lock()
			builds[name]++
			mu.Unlock()
			return build(name, items)
		}
	})
	f.waitGroups("the first load", map[string]string{"a": "x=1", "b": "x=2", "c": "x=3"})
	counts := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(builds)
	}
	if got := counts(); !maps.Equal(got, map[string]int{"a": 1, "b": 1, "c": 1}) {
		t.Fatalf("builds of the first load: %v", got)
	}

	f.fullResync()
	if got := counts(); !maps.Equal(got, map[string]int{"a": 1, "b": 1, "c": 1}) {
		t.Fatalf("a re-read that found nothing changed built %v (each group once before)", got)
	}
	if s := f.tree.Snapshot(); !s.FullResync || !mapsEqual(s.Groups, map[string]string{"a": "x=1", "b": "x=2", "c": "x=3"}) {
		t.Fatalf("after a re-read that found nothing: FullResync %v, groups %v", s.FullResync, s.Groups)
	}

	w.put("/tree/b/x", "v=9") // changed
	w.put("/tree/d/y", "v=4") // a new group
	w.Remove("/tree/c/x")     // c loses its only item
	f.fullResync()
	if got := counts(); !maps.Equal(got, map[string]int{"a": 1, "b": 2, "c": 2, "d": 1}) {
		t.Fatalf("builds after changes to b, c and d: %v", got)
	}
	f.waitGroups("the changes", map[string]string{"a": "x=1", "b": "x=9", "d": "y=4"})
}

// A Typed tree converts each snapshot once: until the next one, Snapshot
// returns the same pointer.
func TestTypedConvertsOnce(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.put("/typed/a/x", "v=1")
	sess, err := zksession.Connect(zksession.Config{Servers: zc.Servers(), SessionTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	var converts atomic.Int64
	ty := zktree.NewTyped(sess, func(s *zktree.Snapshot[string]) *map[string]string {
		converts.Add(1)
		return &s.Groups
	}, zktree.Options[item, string]{Root: "/typed", Parse: parse, Build: build, Watch: true, ResyncInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ty.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	eventually(t, "the first snapshot", func() bool { return ty.Snapshot() != nil }, nil)
	first, n := ty.Snapshot(), converts.Load()
	for range 3 {
		if ty.Snapshot() != first {
			t.Fatal("Snapshot returned another pointer without a new snapshot")
		}
	}
	if converts.Load() != n {
		t.Fatalf("%d conversions of one snapshot", converts.Load()-n+1)
	}
	w.put("/typed/a/x", "v=2")
	eventually(t, "the change converted", func() bool { s := ty.Snapshot(); return s != first && (*s)["a"] == "x=2" }, nil)
}

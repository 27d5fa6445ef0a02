package zktree_test

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zktest"
)

// TestBatchedFullRead checks that a full read in multiRead batches (which
// span groups) publishes what a read of one request per node publishes
// (values, malformed items skipped and counted, empty groups), with the
// persistent watches and polling, with multiRead and with its fallback
// of one request per operation, and that it sends far fewer requests.
func TestBatchedFullRead(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	const groups, items = 30, 12
	for g := range groups {
		for i := range items {
			data := fmt.Sprintf("v=%d", g*100+i)
			if (g+i)%17 == 0 {
				data = "junk" // malformed
			}
			w.put(fmt.Sprintf("/tree/g%02d/i%02d", g, i), data)
		}
	}
	w.put("/tree/empty/x", "v=0")
	w.Remove("/tree/empty/x")
	w.put("/tree/onlybad/x", "junk")

	type result struct {
		groups    map[string]string
		malformed int
		calls     uint64
	}
	read := func(batch int, persistent, noMultiRead bool) result {
		f := startTree(t, zc.Servers(), "/tree", func(s *setup) {
			s.opts.Batch = batch
			s.opts.Persistent = persistent
			s.opts.Watch = persistent // else polling
			s.session.NoMultiRead = noMultiRead
		})
		eventually(t, "the first full read", func() bool { return f.tree.Snapshot() != nil }, func() string { return "no snapshot" })
		s := f.tree.Snapshot()
		return result{groups: s.Groups, malformed: s.Malformed, calls: f.sess.Calls()}
	}
	for _, persistent := range []bool{true, false} {
		one := read(1, persistent, false)
		if len(one.groups) != groups || one.malformed == 0 {
			t.Fatalf("persistent %v, one request per node: %d groups, %d malformed", persistent, len(one.groups), one.malformed)
		}
		for _, noMulti := range []bool{false, true} {
			got := read(7, persistent, noMulti)
			if !maps.Equal(got.groups, one.groups) || got.malformed != one.malformed {
				t.Errorf("persistent %v, batches of 7 (NoMultiRead %v): %d malformed, groups %v; one request per node: %d malformed, groups %v",
					persistent, noMulti, got.malformed, got.groups, one.malformed, one.groups)
			}
			// (30 groups and 360 items: 5 listings and 52 item batches
			// instead of 390 requests.)
			if got.calls*3 > one.calls {
				t.Errorf("persistent %v, batches of 7 (NoMultiRead %v): %d requests, one request per node %d", persistent, noMulti, got.calls, one.calls)
			}
		}
	}
}

// TestBatchedReadItemsDeletedMeanwhile: items deleted between a group's
// listing and the batch that reads them are left out, not a failed read.
// A writer deletes and re-creates items while a polling tree re-reads
// everything every few milliseconds; no full read may fail and the tree
// ends with what ZooKeeper holds.
func TestBatchedReadItemsDeletedMeanwhile(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	want := map[string]string{}
	for g := range 5 {
		var vals []string
		for i := range 40 {
			w.put(fmt.Sprintf("/tree/g%d/i%02d", g, i), fmt.Sprintf("v=%d", i))
			vals = append(vals, fmt.Sprintf("i%02d=%d", i, i))
		}
		want[fmt.Sprintf("g%d", g)] = strings.Join(vals, ",")
	}
	f := startTree(t, zc.Servers(), "/tree", func(s *setup) {
		s.opts.Watch = false
		s.opts.Batch = 16
		s.opts.ResyncInterval = 5 * time.Millisecond
	})
	f.waitGroups("the first load", want)
	start := f.resyncs()
	deadline := time.Now().Add(3 * time.Second)
	for n := 0; time.Now().Before(deadline) || f.resyncs() < start+20; n++ {
		p := fmt.Sprintf("/tree/g%d/i%02d", n%5, n%40)
		w.Remove(p)
		w.put(p, fmt.Sprintf("v=%d", n%40))
	}
	f.waitGroups("the final content", want)
	if got := f.logs.logged("full resync failed; retrying", ""); got != 0 {
		t.Errorf("%d full reads failed while items were deleted and re-created", got)
	}
}

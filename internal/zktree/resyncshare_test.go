package zktree_test

import (
	"maps"
	"sync"
	"testing"

	"github.com/zkgate/zkgate/internal/zktest"
)

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

// Package zktree follows a two-level ZooKeeper tree, root/<group>/<item>,
// and publishes it as immutable snapshots. The service registry
// (/services/<service>/<instance>) and the drain marks
// (/zkgate/marks/<service>/<host:port>) are both such trees.
//
// The tree is level-triggered: a watch event is only a hint that something
// under a path changed; the tree then re-reads that path and publishes a new
// snapshot. A full re-read runs after every reconnect, after every new
// session and every resync interval, and whatever it finds that the watches
// had missed is counted (the divergence metric). While ZooKeeper is
// unreachable the last snapshot stays (static stability).
package zktree

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/zksession"
)

// Options configure a Tree. Parse and Build are required.
type Options[T, G any] struct {
	// Root is the tree's root path, e.g. /services.
	Root string
	// Parse turns one item node into a value, or says why it is malformed.
	// Malformed nodes are skipped, counted and logged once per node
	// version. Parse must not panic.
	Parse func(group, item string, data []byte, st *zksession.Stat) (T, error)
	// Build makes a group's published value from its well-formed items.
	// It is called only for groups that changed. ok false leaves the group
	// out of the snapshot.
	Build func(group string, items []T) (g G, ok bool)
	// Flat follows root/<item> instead: every child of Root is an item of
	// the single group "".
	Flat bool
	// Groups, when set, restricts the tree to the groups it accepts (a
	// gateway follows only the services its routes name): the others are
	// neither read nor watched and never appear in a snapshot. The root's
	// children stay watched, so an accepted group that appears later is
	// read as soon as it is created. Nil follows every group. Ignored when
	// Flat.
	Groups func(name string) bool
	// Watch arms watches and follows their hints. When false the tree is
	// re-read only every ResyncInterval (a polling baseline).
	Watch bool
	// Persistent (with Watch) arms ZooKeeper 3.6+ persistent recursive
	// watches instead of one-shot ones: one on Root, or, with Groups, one
	// on each accepted group (Root then keeps a one-shot child watch, for
	// accepted groups that appear later). A new item then costs one read
	// (no re-listing of its group), a deleted one none, and no change can
	// fall between an event and the read that would re-arm a one-shot
	// watch. The watches are added again after every reconnection, before
	// the full re-read. When a full read finds that Groups accepts nearly
	// all (wideShare) of Root's children, the tree arms one watch on Root
	// instead, from then on, and ignores the events of the other groups:
	// one request instead of one per group (a gateway that routes to every
	// service; see docs/benchmarks.md).
	Persistent bool
	// Pending (with Persistent) publishes a snapshot naming the items
	// whose creation or change an event just reported, before they are
	// read (Snapshot.Pending), so that a consumer can act on the event
	// itself: a gateway stops picking a drained address one read round
	// trip sooner. The snapshot of the read clears them; until a read
	// succeeds (a lost connection, say) they stay pending.
	Pending bool
	// ResyncInterval is how often everything is re-read even if no watch
	// fired. Default 30s.
	ResyncInterval time.Duration
	// Concurrency bounds the reads in flight during a full resync.
	// Default 64.
	Concurrency int
	// Batch is how many nodes a full re-read reads per request when its
	// reads arm no one-shot watch (Persistent, or not Watch): group
	// listings and items go in ZooKeeper 3.6+ multiRead requests of up to
	// Batch operations (zksession.MultiRead, which sends one request per
	// operation to older servers), at most Concurrency/8 (at least 2) in
	// flight. Default DefaultBatch; 1 reads each node with its own
	// request, Concurrency at a time. See docs/benchmarks.md, "A gateway
	// that routes to every service".
	Batch int
	// MetricsPrefix names the metrics, e.g. "zkgate_registry".
	MetricsPrefix string
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

// wideShare: when Options.Groups accepts at least this share of Root's
// children, a persistent tree watches Root instead of each group.
const wideShare = 0.9

// DefaultBatch is the default Options.Batch.
const DefaultBatch = 250

// Info is what a snapshot tells besides its content: its revision, what
// was skipped, when and how it was published. The typed snapshots of the
// caches built on a Tree (registry, marks) embed it as it is.
type Info struct {
	// Revision increases by one with every published snapshot.
	Revision uint64
	// Malformed counts item nodes skipped because Parse failed.
	Malformed int
	// Time is when the snapshot was published.
	Time time.Time

	// FullResync is true when a full re-read published this snapshot
	// (after a new session or a reconnection, every ResyncInterval, or
	// after Resync), false when watch events did. Like the progress
	// notification of an etcd watch, it tells a consumer that the snapshot
	// is what ZooKeeper held when the re-read ran, not merely what the
	// watches reported.
	FullResync bool
	// Resyncs counts the full re-reads completed up to this snapshot; it
	// carries over to the snapshots that watch events publish after it.
	Resyncs uint64
	// ResyncTicket is the newest ticket (see Tree.Resync) handed out before
	// the latest full re-read up to this snapshot began. A snapshot whose
	// ResyncTicket is at least the ticket of a Resync call reflects a full
	// re-read that started after that call (plus whatever watch events
	// added since).
	ResyncTicket uint64
}

// Snapshot is an immutable view of the tree. Never modify it.
type Snapshot[G any] struct {
	Info
	// Groups maps a group name to its built value.
	Groups map[string]G
	// Pending maps a group to the items an event reported created or
	// changed that are not read yet (only with Options.Pending; nil when
	// there are none). Groups does not have their new content yet.
	Pending map[string]map[string]struct{}
}

// Tree follows root/<group>/<item>. One goroutine (Run) owns the state;
// readers call Snapshot at any time.
type Tree[T, G any] struct {
	sess    *zksession.Session
	opts    Options[T, G]
	log     *slog.Logger
	metrics *metrics

	snap    atomic.Pointer[Snapshot[G]]
	updates chan struct{}
	kick    chan struct{}
	// tickets is the last ticket Resync handed out.
	tickets atomic.Uint64
	// lastSync is when the last full re-read completed (unix nanos).
	lastSync atomic.Int64
	loaded   atomic.Bool
	// oneShot is set when the servers refused persistent watches (before
	// ZooKeeper 3.6): the tree falls back to one-shot watches.
	oneShot atomic.Bool
	// rootWide is set (for good) when a full read found that Groups
	// accepts nearly all of Root's children: one persistent recursive
	// watch on Root replaces the watches on each group.
	rootWide atomic.Bool

	// Owned by Run.
	groups   map[string]*group[T]
	revision uint64
	resyncs  uint64 // full re-reads completed
	covered  uint64 // the ticket the last completed full re-read covers
	// unpublished: re-reading after watch events failed part way, so
	// groups may hold changes no snapshot carries; the next full re-read
	// builds every group instead of the ones it finds changed.
	unpublished bool
	// badByGroup counts each group's malformed items as of the last
	// publish, and malformed their sum, so that publishing one changed
	// group costs O(that group), not O(tree).
	badByGroup map[string]int
	malformed  int

	malMu       sync.Mutex
	malReported map[string]int64 // node path → mzxid already reported
}

type group[T any] struct {
	items map[string]item[T]
}

type item[T any] struct {
	mzxid int64
	czxid int64
	val   T
	bad   bool // malformed: skipped
}

// New returns a tree over sess. Call Run to fill it.
func New[T, G any](sess *zksession.Session, opts Options[T, G]) *Tree[T, G] {
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = 30 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MetricsPrefix == "" {
		opts.MetricsPrefix = "zkgate_tree"
	}
	return &Tree[T, G]{
		sess:        sess,
		opts:        opts,
		log:         opts.Logger.With("component", "zktree", "root", opts.Root),
		metrics:     newMetrics(opts.MetricsPrefix, opts.Registerer),
		updates:     make(chan struct{}, 1),
		kick:        make(chan struct{}, 1),
		groups:      map[string]*group[T]{},
		badByGroup:  map[string]int{},
		malReported: map[string]int64{},
	}
}

// Snapshot returns the latest snapshot, or nil before the first full read.
func (t *Tree[T, G]) Snapshot() *Snapshot[G] { return t.snap.Load() }

// Typed is a Tree whose Snapshot is a package's own snapshot type S (the
// registry's, the marks'), made from the tree's by convert.
type Typed[T, G, S any] struct {
	*Tree[T, G]
	convert func(*Snapshot[G]) *S
	last    atomic.Pointer[converted[G, S]]
}

// converted is a snapshot and its conversion.
type converted[G, S any] struct {
	from *Snapshot[G]
	to   *S
}

// NewTyped returns a Typed over New(sess, opts). convert must not modify
// the snapshot it is given.
func NewTyped[T, G, S any](sess *zksession.Session, convert func(*Snapshot[G]) *S, opts Options[T, G]) *Typed[T, G, S] {
	return &Typed[T, G, S]{Tree: New(sess, opts), convert: convert}
}

// Snapshot returns the latest snapshot converted, or nil before the first
// full read. A snapshot is converted once: until the next is published,
// every call returns the same pointer (so a consumer can tell "unchanged"
// by comparing pointers).
func (t *Typed[T, G, S]) Snapshot() *S {
	ts := t.Tree.Snapshot()
	if ts == nil {
		return nil
	}
	if c := t.last.Load(); c != nil && c.from == ts {
		return c.to
	}
	out := t.convert(ts)
	t.last.Store(&converted[G, S]{from: ts, to: out})
	return out
}

// Updates is signalled (capacity one, never closed) after each new snapshot
// is published; read Snapshot for the content (its FullResync says whether
// a full re-read published it).
func (t *Tree[T, G]) Updates() <-chan struct{} { return t.updates }

// LastContact returns when the tree was last known to match ZooKeeper: now
// while the session is connected and the tree loaded, the moment the
// connection was lost (or the last full re-read, if later) otherwise, zero
// before the first full read.
func (t *Tree[T, G]) LastContact() time.Time {
	if !t.loaded.Load() {
		return time.Time{}
	}
	last := time.Unix(0, t.lastSync.Load())
	if conn := t.sess.LastConnected(); conn.After(last) {
		return conn
	}
	return last
}

// Resync asks Run for a full re-read at once (used by reconcilers that
// distrust what they see) and returns a ticket: the first snapshot whose
// ResyncTicket is at least the ticket comes from a full re-read that began
// after this call. It does not wait. Tickets start at 1 and increase with
// every call.
func (t *Tree[T, G]) Resync() uint64 {
	ticket := t.tickets.Add(1)
	select {
	case t.kick <- struct{}{}:
	default:
		// A re-read is already requested and has not begun: it will
		// cover this ticket too.
	}
	return ticket
}

// Run follows the tree until ctx ends. It returns ctx's error, or
// zksession.ErrClosed when the session closes.
func (t *Tree[T, G]) Run(ctx context.Context) error {
	hints := t.sess.Hints(t.opts.Root)
	defer t.sess.RemoveHints(hints)
	ticker := time.NewTicker(t.opts.ResyncInterval)
	defer ticker.Stop()

	needFull := true
	for {
		if needFull {
			if err := t.sess.WaitConnected(ctx); err != nil {
				return err
			}
			// Hints that arrived before the re-read are covered by it.
			hints.Take()
			if err := t.fullResync(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, errRootAppeared) {
					continue
				}
				t.log.Warn("full resync failed; retrying", "err", err)
				select {
				case <-time.After(500 * time.Millisecond):
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			needFull = false
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-hints.C():
			if !ok {
				return zksession.ErrClosed
			}
			b := hints.Take()
			if b.Reconnected || b.NewSession {
				needFull = true
				continue
			}
			if b.Lost {
				// Keep the last snapshot (static stability); the next
				// session triggers a full resync.
				t.metrics.lost.Inc()
				continue
			}
			if !t.opts.Watch {
				continue
			}
			if t.opts.Pending && t.persistent() {
				t.publishPending(b.Paths, b.Deleted)
			}
			if err := t.applyHints(ctx, b.Paths, b.Deleted); errors.Is(err, errRootAppeared) {
				needFull = true
			} else if err != nil {
				t.log.Warn("re-reading after watch events failed; scheduling full resync", "err", err)
				needFull = true
			}
		case <-ticker.C:
			needFull = true
		case <-t.kick:
			needFull = true
		}
	}
}

// fullResync re-reads everything and publishes the result, counting what
// differs from the state the watches had produced.
func (t *Tree[T, G]) fullResync(ctx context.Context) error {
	start := time.Now()
	// Every Resync call that returned this ticket or an older one was made
	// before the re-read below begins.
	ticket := t.tickets.Load()
	if t.rootRecursive() {
		// Armed before anything is read: every later change is reported.
		if err := t.addRecursive(ctx, t.opts.Root); err != nil {
			return fmt.Errorf("watching %s: %w", t.opts.Root, err)
		}
	}
	names := []string{""}
	if !t.opts.Flat {
		var err error
		names, err = t.listRoot(ctx)
		if errors.Is(err, zksession.ErrNoNode) {
			names, err = nil, t.watchRootCreation(ctx)
		}
		if err != nil {
			return fmt.Errorf("listing %s: %w", t.opts.Root, err)
		}
		all := len(names)
		names = t.accepted(names)
		if t.groupRecursive() && all > 0 && float64(len(names)) >= wideShare*float64(all) {
			// Armed before any group is listed (the listing above armed a
			// child watch on Root: a group created since is reported too).
			if err := t.addRecursive(ctx, t.opts.Root); err != nil {
				return fmt.Errorf("watching %s: %w", t.opts.Root, err)
			}
			t.rootWide.Store(true)
			t.log.Info("following nearly every group: one persistent watch on the root instead of one per group",
				"groups", len(names), "of", all)
		}
	}
	fresh, err := t.readAll(ctx, names)
	if err != nil {
		return err
	}
	// The groups the re-read found as they were are not built again: the
	// snapshot shares their values with the previous one, as a snapshot
	// of watch events does (a consumer compares them to find what
	// changed, e.g. the gateway's pools).
	var changed map[string]bool // nil: build every group
	if t.Snapshot() != nil {
		changed = t.countDivergence(fresh)
		if t.unpublished {
			changed = nil
		}
	}
	t.groups = fresh
	t.unpublished = false
	t.resyncs++
	t.covered = ticket
	t.publish(changed, true)
	t.lastSync.Store(time.Now().UnixNano())
	t.metrics.resyncs.Inc()
	t.metrics.resyncSeconds.Observe(time.Since(start).Seconds())
	t.log.Debug("full resync", "groups", len(fresh), "took", time.Since(start))
	return nil
}

// accepted returns the names of the groups the tree follows (all unless
// Options.Groups is set). It may reuse names.
func (t *Tree[T, G]) accepted(names []string) []string {
	if t.opts.Groups == nil || t.opts.Flat {
		return names
	}
	out := names[:0]
	for _, n := range names {
		if t.opts.Groups(n) {
			out = append(out, n)
		}
	}
	return out
}

// follows reports whether the tree follows the group name.
func (t *Tree[T, G]) follows(name string) bool {
	return t.opts.Groups == nil || t.opts.Flat || t.opts.Groups(name)
}

// readAll reads the named groups, in two phases each with up to
// Concurrency calls in flight: first every group's item list, then every
// item. (Listing a group only after the previous group's items were
// queued made every listing wait behind up to Concurrency reads: a full
// read of 10,000 groups took about three times as long.) When its reads
// arm no one-shot watch (batched), both phases read Batch nodes per
// request (multiRead); the persistent watches on the groups are then all
// added before the first listing.
func (t *Tree[T, G]) readAll(ctx context.Context, names []string) (map[string]*group[T], error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
	}
	wide := make(chan struct{}, t.opts.Concurrency)
	narrow := make(chan struct{}, max(2, t.opts.Concurrency/8)) // batches
	var wg sync.WaitGroup
	run := func(sem chan struct{}, f func()) bool {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f()
		}()
		return true
	}
	// wait waits for every run and returns the first failure, if any.
	wait := func() error {
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
		return ctx.Err()
	}
	batched := t.batched()

	itemNames := make([][]string, len(names))
	listed := make([]bool, len(names))
	if batched && t.groupRecursive() {
		// Armed before the groups are listed: every later change is
		// reported.
		for _, name := range names {
			if !run(wide, func() {
				p := path.Join(t.opts.Root, name)
				if err := t.addRecursive(ctx, p); err != nil {
					fail(fmt.Errorf("watching %s: %w", p, err))
				}
			}) {
				break
			}
		}
		if err := wait(); err != nil {
			return nil, err
		}
	}
	if batched {
		for lo := 0; lo < len(names); lo += t.opts.Batch {
			hi := min(lo+t.opts.Batch, len(names))
			if !run(narrow, func() {
				ops := make([]zksession.ReadOp, hi-lo)
				for i := lo; i < hi; i++ {
					ops[i-lo] = zksession.ReadOp{Path: path.Join(t.opts.Root, names[i]), Children: true}
				}
				res, err := t.sess.MultiRead(ctx, ops)
				if err != nil {
					fail(fmt.Errorf("listing %d groups of %s: %w", len(ops), t.opts.Root, err))
					return
				}
				for i, r := range res {
					if errors.Is(r.Error, zksession.ErrNoNode) {
						continue // gone meanwhile (or, flat, the root is missing)
					}
					if r.Error != nil {
						fail(fmt.Errorf("listing %s: %w", ops[i].Path, r.Error))
						return
					}
					itemNames[lo+i], listed[lo+i] = r.Children, true
				}
			}) {
				break
			}
		}
	} else {
		for i, name := range names {
			ok := run(wide, func() {
				ns, err := t.listGroup(ctx, name)
				if errors.Is(err, zksession.ErrNoNode) {
					return // gone meanwhile (or, flat, the root is missing)
				}
				if err != nil {
					fail(fmt.Errorf("listing %s/%s: %w", t.opts.Root, name, err))
					return
				}
				itemNames[i], listed[i] = ns, true
			})
			if !ok {
				break
			}
		}
	}
	if err := wait(); err != nil {
		return nil, err
	}
	if t.opts.Flat && !listed[0] {
		if err := t.watchRootCreation(ctx); err != nil {
			return nil, err
		}
	}

	fresh := make(map[string]*group[T], len(names))
	var batch []itemRef[T]
	flush := func() bool {
		refs := batch
		batch = nil
		return run(narrow, func() {
			if err := t.readItems(ctx, refs, &mu); err != nil {
				fail(err)
			}
		})
	}
items:
	for i, name := range names {
		if !listed[i] {
			continue
		}
		g := &group[T]{items: make(map[string]item[T], len(itemNames[i]))}
		fresh[name] = g
		for _, n := range itemNames[i] {
			if batched {
				batch = append(batch, itemRef[T]{g: g, group: name, name: n})
				if len(batch) == t.opts.Batch && !flush() {
					break items
				}
				continue
			}
			ok := run(wide, func() {
				it, ok, err := t.readItem(ctx, name, n)
				if err != nil {
					fail(err)
					return
				}
				if ok {
					mu.Lock()
					g.items[n] = it
					mu.Unlock()
				}
			})
			if !ok {
				break items
			}
		}
	}
	if len(batch) > 0 {
		flush()
	}
	if err := wait(); err != nil {
		return nil, err
	}
	return fresh, nil
}

// batched reports whether a full re-read reads several nodes per request:
// its reads arm no one-shot watch (multiRead arms none) and Batch > 1.
func (t *Tree[T, G]) batched() bool {
	return t.opts.Batch > 1 && !(t.opts.Watch && !t.persistent())
}

// itemRef names an item to read into group g.
type itemRef[T any] struct {
	g           *group[T]
	group, name string
}

// readItems reads and parses refs in one multiRead and adds them to their
// groups under mu. An item gone meanwhile is left out (as readItem does).
func (t *Tree[T, G]) readItems(ctx context.Context, refs []itemRef[T], mu *sync.Mutex) error {
	ops := make([]zksession.ReadOp, len(refs))
	for i, r := range refs {
		ops[i] = zksession.ReadOp{Path: path.Join(t.opts.Root, r.group, r.name)}
	}
	res, err := t.sess.MultiRead(ctx, ops)
	if err != nil {
		return fmt.Errorf("reading %d items of %s: %w", len(ops), t.opts.Root, err)
	}
	its := make([]item[T], len(refs))
	for i, r := range res {
		if r.Error != nil && !errors.Is(r.Error, zksession.ErrNoNode) {
			return fmt.Errorf("reading %s: %w", ops[i].Path, r.Error)
		}
		if r.Error == nil {
			its[i] = t.parseItem(refs[i].group, refs[i].name, ops[i].Path, r.Data, r.Stat)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, r := range res {
		if r.Error == nil {
			refs[i].g.items[refs[i].name] = its[i]
		}
	}
	return nil
}

// errRootAppeared says the root was created between listing it and arming
// the creation watch: list again.
var errRootAppeared = errors.New("root created while arming its creation watch")

// watchRootCreation arms a watch for the creation of a missing root. If the
// root exists by then, the watch armed is a data watch that would not
// report its children, so it returns errRootAppeared and the caller lists
// again.
func (t *Tree[T, G]) watchRootCreation(ctx context.Context) error {
	if !t.opts.Watch || t.rootRecursive() {
		return nil // the persistent watch on Root reports its creation
	}
	ok, _, err := t.sess.ExistsW(ctx, t.opts.Root)
	if err == nil && ok {
		return errRootAppeared
	}
	return err
}

// countDivergence counts (and logs) what a full re-read found, fresh,
// that differs from the groups the watches had produced, and returns the
// groups that differ: an item added, removed or changed (by mzxid or
// czxid), or the group itself appeared or went away.
func (t *Tree[T, G]) countDivergence(fresh map[string]*group[T]) (changed map[string]bool) {
	changed = map[string]bool{}
	report := func(kind, name, n string) {
		t.metrics.divergence.WithLabelValues(kind).Inc()
		t.log.Info("resync found what the watches missed", "kind", kind, "group", name, "item", n)
		changed[name] = true
	}
	for name, g := range fresh {
		old := t.groups[name]
		if old == nil {
			changed[name] = true // (an empty group appeared: no item to report)
		}
		for n, it := range g.items {
			var prev item[T]
			var ok bool
			if old != nil {
				prev, ok = old.items[n]
			}
			switch {
			case !ok:
				report("added", name, n)
			case prev.mzxid != it.mzxid || prev.czxid != it.czxid:
				report("changed", name, n)
			}
		}
	}
	for name, old := range t.groups {
		g := fresh[name]
		if g == nil {
			changed[name] = true
		}
		for n := range old.items {
			if g == nil {
				report("removed", name, n)
			} else if _, ok := g.items[n]; !ok {
				report("removed", name, n)
			}
		}
	}
	return changed
}

// applyHints re-reads the paths that had watch events and publishes the
// result if anything changed. An item whose latest event was its deletion
// (in deleted) is dropped without being read. With one-shot watches its
// group is re-listed (as the group's own child event asks anyway): an
// item re-created after the deletion is found there, even when the
// group's child event came in an earlier batch and its re-listing, seeing
// the item still known, did not read it. With persistent watches the
// re-creation has its own event.
func (t *Tree[T, G]) applyHints(ctx context.Context, paths, deleted map[string]struct{}) (err error) {
	defer func() {
		if err != nil {
			t.unpublished = true
		}
	}()
	dirty := map[string]bool{}
	relist := map[string]bool{}
	rootChanged := false
	for p := range paths {
		if p == t.opts.Root {
			rootChanged = true
			continue
		}
		parts := t.split(p)
		if !t.follows(parts[0]) {
			continue // a hint for a path the tree does not follow
		}
		switch len(parts) {
		case 1:
			relist[parts[0]] = true
		case 2:
			if _, gone := deleted[p]; gone {
				if g := t.groups[parts[0]]; g != nil {
					if _, had := g.items[parts[1]]; had {
						delete(g.items, parts[1])
						dirty[parts[0]] = true
					}
				}
				if !t.persistent() {
					// With persistent watches a re-creation is reported
					// on the item's own path.
					relist[parts[0]] = true
				}
				continue
			}
			changed, err := t.rereadItem(ctx, parts[0], parts[1])
			if err != nil {
				return err
			}
			if changed {
				dirty[parts[0]] = true
			}
		}
	}
	for name := range relist {
		changed, err := t.relistGroup(ctx, name)
		if err != nil {
			return err
		}
		if changed {
			dirty[name] = true
		}
	}
	if rootChanged && t.opts.Flat {
		if !relist[""] { // else re-listed above
			changed, err := t.relistGroup(ctx, "")
			if err != nil {
				return err
			}
			if changed {
				dirty[""] = true
			}
		}
	} else if rootChanged {
		names, err := t.listRoot(ctx)
		if errors.Is(err, zksession.ErrNoNode) {
			names, err = nil, t.watchRootCreation(ctx)
		}
		if err != nil {
			return err
		}
		names = t.accepted(names)
		present := map[string]bool{}
		for _, n := range names {
			present[n] = true
			if _, ok := t.groups[n]; !ok {
				if _, err := t.relistGroup(ctx, n); err != nil {
					return err
				}
				dirty[n] = true
			}
		}
		for n := range t.groups {
			if !present[n] {
				delete(t.groups, n)
				dirty[n] = true
			}
		}
	}
	if prev := t.snap.Load(); len(dirty) > 0 || prev != nil && prev.Pending != nil {
		// (A snapshot naming pending items is replaced even when the
		// reads changed nothing.)
		t.publish(dirty, false)
	}
	return nil
}

// split returns the group and item names of p, a path below Root: one
// element for a group, two for an item ("" is the group of a Flat tree).
func (t *Tree[T, G]) split(p string) []string {
	parts := strings.Split(strings.TrimPrefix(p, strings.TrimSuffix(t.opts.Root, "/")+"/"), "/")
	if t.opts.Flat {
		parts = append([]string{""}, parts...)
	}
	return parts
}

// publishPending publishes the current groups with the items of paths
// (not deleted, of a followed group) as Snapshot.Pending, if there are any.
func (t *Tree[T, G]) publishPending(paths, deleted map[string]struct{}) {
	prev := t.snap.Load()
	if prev == nil {
		return
	}
	var pending map[string]map[string]struct{}
	for p := range paths {
		if _, gone := deleted[p]; gone || p == t.opts.Root {
			continue
		}
		parts := t.split(p)
		if len(parts) != 2 || !t.follows(parts[0]) {
			continue // not an item, or not followed
		}
		name, n := parts[0], parts[1]
		if pending == nil {
			pending = map[string]map[string]struct{}{}
		}
		if pending[name] == nil {
			pending[name] = map[string]struct{}{}
		}
		pending[name][n] = struct{}{}
	}
	if pending == nil {
		return
	}
	snap := *prev
	snap.Pending, snap.Time, snap.FullResync = pending, time.Now(), false
	t.revision++
	snap.Revision = t.revision
	t.snap.Store(&snap)
	t.metrics.revision.Set(float64(t.revision))
	t.signal()
}

// relistGroup re-lists one group's items, reading the new ones. It
// reports whether the group changed: it appeared or disappeared, or items
// were added or removed (the data watches of the items already known
// report their changes).
func (t *Tree[T, G]) relistGroup(ctx context.Context, name string) (bool, error) {
	itemNames, err := t.listGroup(ctx, name)
	if errors.Is(err, zksession.ErrNoNode) {
		_, had := t.groups[name]
		delete(t.groups, name)
		if t.opts.Flat {
			return had, t.watchRootCreation(ctx)
		}
		return had, nil
	}
	if err != nil {
		return false, err
	}
	changed := false
	g := t.groups[name]
	if g == nil {
		g = &group[T]{items: map[string]item[T]{}}
		t.groups[name] = g
		changed = true
	}
	present := make(map[string]bool, len(itemNames))
	for _, n := range itemNames {
		present[n] = true
		if _, ok := g.items[n]; ok {
			continue // its data watch reports changes
		}
		it, ok, err := t.readItem(ctx, name, n)
		if err != nil {
			return changed, err
		}
		if ok {
			g.items[n] = it
			changed = true
		}
	}
	for n := range g.items {
		if !present[n] {
			delete(g.items, n)
			changed = true
		}
	}
	return changed, nil
}

// rereadItem re-reads one item after a data event.
func (t *Tree[T, G]) rereadItem(ctx context.Context, name, n string) (bool, error) {
	g := t.groups[name]
	it, ok, err := t.readItem(ctx, name, n)
	if err != nil {
		return false, err
	}
	if !ok {
		if g != nil {
			if _, had := g.items[n]; had {
				delete(g.items, n)
				return true, nil
			}
		}
		return false, nil
	}
	if g == nil {
		// An item of a group not listed yet: list the group.
		_, err := t.relistGroup(ctx, name)
		return true, err
	}
	prev, had := g.items[n]
	g.items[n] = it
	return !had || prev.mzxid != it.mzxid || prev.czxid != it.czxid, nil
}

// readItem reads and parses one item. ok is false when the node is gone.
func (t *Tree[T, G]) readItem(ctx context.Context, name, n string) (item[T], bool, error) {
	p := path.Join(t.opts.Root, name, n)
	var data []byte
	var st *zksession.Stat
	var err error
	if t.opts.Watch && !t.persistent() {
		data, st, err = t.sess.GetW(ctx, p)
	} else {
		data, st, err = t.sess.Get(ctx, p)
	}
	if errors.Is(err, zksession.ErrNoNode) {
		return item[T]{}, false, nil
	}
	if err != nil {
		return item[T]{}, false, err
	}
	return t.parseItem(name, n, p, data, st), true, nil
}

// parseItem parses an item read at path p, reporting it if malformed.
func (t *Tree[T, G]) parseItem(name, n, p string, data []byte, st *zksession.Stat) item[T] {
	it := item[T]{mzxid: st.Mzxid, czxid: st.Czxid}
	val, perr := t.opts.Parse(name, n, data, st)
	if perr != nil {
		it.bad = true
		t.reportMalformed(p, st.Mzxid, perr)
		return it
	}
	it.val = val
	return it
}

// reportMalformed logs and counts a malformed node once per node version.
func (t *Tree[T, G]) reportMalformed(p string, mzxid int64, err error) {
	t.malMu.Lock()
	defer t.malMu.Unlock()
	if t.malReported[p] == mzxid {
		return
	}
	t.malReported[p] = mzxid
	t.metrics.malformed.Inc()
	t.log.Warn("skipping malformed node", "path", p, "mzxid", mzxid, "err", err)
}

// persistent reports whether the tree follows persistent recursive
// watches; rootRecursive that one is armed on Root, groupRecursive that
// one is armed on each accepted group.
func (t *Tree[T, G]) persistent() bool {
	return t.opts.Watch && t.opts.Persistent && !t.oneShot.Load()
}

// addRecursive arms a persistent recursive watch on p. When the servers
// do not know the request (ZooKeeper before 3.6) the tree falls back to
// one-shot watches for good, and the error (which fails the current
// read) makes Run re-read everything with them.
func (t *Tree[T, G]) addRecursive(ctx context.Context, p string) error {
	err := t.sess.AddWatchRecursive(ctx, p)
	if errors.Is(err, zksession.ErrUnimplemented) && t.oneShot.CompareAndSwap(false, true) {
		t.log.Warn("the ZooKeeper servers do not support persistent watches (3.6+); using one-shot watches", "err", err)
	}
	return err
}

func (t *Tree[T, G]) rootRecursive() bool {
	return t.persistent() && (t.opts.Flat || t.opts.Groups == nil || t.rootWide.Load())
}

func (t *Tree[T, G]) groupRecursive() bool {
	return t.persistent() && !t.opts.Flat && t.opts.Groups != nil && !t.rootWide.Load()
}

// listRoot lists Root's children, arming a child watch unless a
// persistent watch on Root reports them.
func (t *Tree[T, G]) listRoot(ctx context.Context) ([]string, error) {
	return t.children(ctx, t.opts.Root, t.opts.Watch && !t.rootRecursive())
}

// listGroup lists a group's items (Root's children when Flat), arming
// what reports later changes: a persistent recursive watch on the group
// (groupRecursive, armed before the listing) or a child watch.
func (t *Tree[T, G]) listGroup(ctx context.Context, name string) ([]string, error) {
	if t.opts.Flat {
		return t.listRoot(ctx)
	}
	p := path.Join(t.opts.Root, name)
	if t.groupRecursive() {
		if err := t.addRecursive(ctx, p); err != nil {
			return nil, err
		}
	}
	return t.children(ctx, p, t.opts.Watch && !t.persistent())
}

func (t *Tree[T, G]) children(ctx context.Context, p string, watch bool) ([]string, error) {
	var names []string
	var err error
	if watch {
		names, _, err = t.sess.ChildrenW(ctx, p)
	} else {
		names, _, err = t.sess.Children(ctx, p)
	}
	return names, err
}

// publish builds and stores a new snapshot. dirty names the groups that
// changed; nil means all. full says a full re-read publishes it.
func (t *Tree[T, G]) publish(dirty map[string]bool, full bool) {
	prev := t.snap.Load()
	var groups map[string]G
	if prev == nil || dirty == nil {
		groups = make(map[string]G, len(t.groups))
		for name, g := range t.groups {
			if v, ok := t.build(name, g); ok {
				groups[name] = v
			}
		}
	} else {
		groups = maps.Clone(prev.Groups)
		for name := range dirty {
			g := t.groups[name]
			if g == nil {
				delete(groups, name)
				continue
			}
			if v, ok := t.build(name, g); ok {
				groups[name] = v
			} else {
				delete(groups, name)
			}
		}
	}
	t.countMalformed(dirty)
	t.revision++
	t.snap.Store(&Snapshot[G]{Info: Info{
		Revision: t.revision, Malformed: t.malformed, Time: time.Now(),
		FullResync: full, Resyncs: t.resyncs, ResyncTicket: t.covered,
	}, Groups: groups})
	t.loaded.Store(true)
	t.metrics.revision.Set(float64(t.revision))
	t.metrics.malformedNow.Set(float64(t.malformed))
	t.signal()
}

// signal wakes the reader of Updates without blocking.
func (t *Tree[T, G]) signal() {
	select {
	case t.updates <- struct{}{}:
	default:
	}
}

// countMalformed brings the malformed counts up to date for the dirty
// groups (nil: all). Every change to t.groups is followed by a publish
// naming the changed groups, or by a full resync, so the counts of the
// other groups still hold.
func (t *Tree[T, G]) countMalformed(dirty map[string]bool) {
	count := func(g *group[T]) int {
		n := 0
		for _, it := range g.items {
			if it.bad {
				n++
			}
		}
		return n
	}
	if dirty == nil {
		clear(t.badByGroup)
		t.malformed = 0
		for name, g := range t.groups {
			if n := count(g); n > 0 {
				t.badByGroup[name] = n
				t.malformed += n
			}
		}
		return
	}
	for name := range dirty {
		t.malformed -= t.badByGroup[name]
		delete(t.badByGroup, name)
		if g := t.groups[name]; g != nil {
			if n := count(g); n > 0 {
				t.badByGroup[name] = n
				t.malformed += n
			}
		}
	}
}

func (t *Tree[T, G]) build(name string, g *group[T]) (G, bool) {
	vals := make([]T, 0, len(g.items))
	for _, it := range g.items {
		if !it.bad {
			vals = append(vals, it.val)
		}
	}
	return t.opts.Build(name, vals)
}

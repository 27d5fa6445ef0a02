package registry

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

// Options configure a Cache.
type Options struct {
	// Root is the registry root, e.g. /services.
	Root string
	// Parser reads one node; default CuratorParser.
	Parser Parser
	// Watch arms watches and follows their hints. When false the cache
	// re-reads the registry only every ResyncInterval (a polling baseline).
	Watch bool
	// ResyncInterval is how often everything is re-read even if no watch
	// fired. Default 30s.
	ResyncInterval time.Duration
	// Concurrency bounds the reads in flight during a full resync.
	// Default 64.
	Concurrency int
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
}

// Cache follows the registry under Root and publishes immutable snapshots.
// One goroutine (Run) owns the state; readers call Snapshot at any time.
type Cache struct {
	sess    *zksession.Session
	opts    Options
	log     *slog.Logger
	metrics *cacheMetrics

	snap    atomic.Pointer[Snapshot]
	updates chan struct{}

	// Owned by Run.
	services  map[string]*service
	revision  uint64
	lastSync  atomic.Int64 // unix nanos of the last completed full resync
	loadedAt  atomic.Int64
	malMu     sync.Mutex
	malformed map[string]int64 // node path → mzxid already reported
}

type service struct {
	nodes map[string]node // node name → parsed registration
}

type node struct {
	mzxid int64
	czxid int64
	inst  Instance
	bad   bool // malformed: skipped
}

// NewCache returns a cache over sess. Call Run to fill it.
func NewCache(sess *zksession.Session, opts Options) *Cache {
	if opts.Root == "" {
		opts.Root = "/services"
	}
	if opts.Parser == nil {
		opts.Parser = CuratorParser{}
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = 30 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Cache{
		sess:      sess,
		opts:      opts,
		log:       opts.Logger.With("component", "registry", "root", opts.Root),
		metrics:   newCacheMetrics(opts.Registerer),
		updates:   make(chan struct{}, 1),
		services:  map[string]*service{},
		malformed: map[string]int64{},
	}
}

// Snapshot returns the latest snapshot, or nil before the first full read.
func (c *Cache) Snapshot() *Snapshot { return c.snap.Load() }

// Updates is signalled (capacity one, never closed) after each new snapshot
// is published; read Snapshot for the content.
func (c *Cache) Updates() <-chan struct{} { return c.updates }

// LastContact returns when the cache was last known to match ZooKeeper:
// now while the session is connected and the cache loaded, the moment the
// connection was lost otherwise, zero before the first full read.
func (c *Cache) LastContact() time.Time {
	loaded := c.loadedAt.Load()
	if loaded == 0 {
		return time.Time{}
	}
	st, since := c.sess.State()
	if st == zksession.StateConnected {
		return time.Now()
	}
	last := time.Unix(0, c.lastSync.Load())
	if since.After(last) {
		return since
	}
	return last
}

// Run follows the registry until ctx ends. It returns ctx's error, or
// ErrClosed when the session closes.
func (c *Cache) Run(ctx context.Context) error {
	hints := c.sess.Hints(c.opts.Root)
	defer c.sess.RemoveHints(hints)
	ticker := time.NewTicker(c.opts.ResyncInterval)
	defer ticker.Stop()

	needFull := true
	for {
		if needFull {
			if err := c.sess.WaitConnected(ctx); err != nil {
				return err
			}
			// Drop hints that arrived before the re-read: it covers them.
			hints.Take()
			if err := c.fullResync(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				c.log.Warn("full registry resync failed; retrying", "err", err)
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
				// Keep routing on the last snapshot (static stability);
				// the next session triggers a full resync.
				c.metrics.lost.Inc()
				continue
			}
			if !c.opts.Watch {
				continue
			}
			if err := c.applyHints(ctx, b.Paths); err != nil {
				c.log.Warn("re-reading after watch events failed; scheduling full resync", "err", err)
				needFull = true
			}
		case <-ticker.C:
			needFull = true
		}
	}
}

// fullResync re-reads everything and publishes the result, counting what
// differs from the state the watches had produced.
func (c *Cache) fullResync(ctx context.Context) error {
	start := time.Now()
	names, _, err := c.children(ctx, c.opts.Root)
	if errors.Is(err, zksession.ErrNoNode) {
		names, err = nil, c.watchRootCreation(ctx)
	}
	if err != nil {
		return fmt.Errorf("listing services: %w", err)
	}
	fresh := make(map[string]*service, len(names))
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, c.opts.Concurrency)
	var wg sync.WaitGroup
	for _, name := range names {
		svcPath := path.Join(c.opts.Root, name)
		nodes, _, err := c.children(ctx, svcPath)
		if errors.Is(err, zksession.ErrNoNode) {
			continue
		}
		if err != nil {
			return fmt.Errorf("listing service %s: %w", name, err)
		}
		svc := &service{nodes: make(map[string]node, len(nodes))}
		fresh[name] = svc
		for _, n := range nodes {
			sem <- struct{}{}
			wg.Add(1)
			go func(name, n string) {
				defer func() { <-sem; wg.Done() }()
				nd, ok, err := c.readNode(ctx, name, n)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				if ok {
					svc.nodes[n] = nd
				}
			}(name, n)
		}
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if c.Snapshot() != nil {
		c.countDivergence(fresh)
	}
	c.services = fresh
	c.publish(nil)
	c.lastSync.Store(time.Now().UnixNano())
	c.metrics.resyncs.Inc()
	c.metrics.resyncSeconds.Observe(time.Since(start).Seconds())
	c.log.Debug("full registry resync", "services", len(fresh), "took", time.Since(start))
	return nil
}

// watchRootCreation arms a watch for the creation of a missing root.
func (c *Cache) watchRootCreation(ctx context.Context) error {
	if !c.opts.Watch {
		return nil
	}
	_, _, err := c.sess.ExistsW(ctx, c.opts.Root)
	return err
}

func (c *Cache) countDivergence(fresh map[string]*service) {
	for name, svc := range fresh {
		old := c.services[name]
		for n, nd := range svc.nodes {
			var prev node
			var ok bool
			if old != nil {
				prev, ok = old.nodes[n]
			}
			switch {
			case !ok:
				c.metrics.divergence.WithLabelValues("added").Inc()
				c.log.Info("resync found a registration the watches missed", "service", name, "node", n)
			case prev.mzxid != nd.mzxid || prev.czxid != nd.czxid:
				c.metrics.divergence.WithLabelValues("changed").Inc()
				c.log.Info("resync found a change the watches missed", "service", name, "node", n)
			}
		}
	}
	for name, old := range c.services {
		svc := fresh[name]
		for n := range old.nodes {
			if svc == nil {
				c.metrics.divergence.WithLabelValues("removed").Inc()
				c.log.Info("resync found a removal the watches missed", "service", name, "node", n)
				continue
			}
			if _, ok := svc.nodes[n]; !ok {
				c.metrics.divergence.WithLabelValues("removed").Inc()
				c.log.Info("resync found a removal the watches missed", "service", name, "node", n)
			}
		}
	}
}

// applyHints re-reads the paths that had watch events and publishes the
// result if anything changed.
func (c *Cache) applyHints(ctx context.Context, paths map[string]struct{}) error {
	dirty := map[string]bool{}
	rootChanged := false
	for p := range paths {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, c.opts.Root), "/")
		if p == c.opts.Root {
			rootChanged = true
			continue
		}
		parts := strings.Split(rel, "/")
		switch len(parts) {
		case 1:
			if err := c.relistService(ctx, parts[0]); err != nil {
				return err
			}
			dirty[parts[0]] = true
		case 2:
			changed, err := c.rereadNode(ctx, parts[0], parts[1])
			if err != nil {
				return err
			}
			if changed {
				dirty[parts[0]] = true
			}
		}
	}
	if rootChanged {
		names, _, err := c.children(ctx, c.opts.Root)
		if errors.Is(err, zksession.ErrNoNode) {
			names, err = nil, c.watchRootCreation(ctx)
		}
		if err != nil {
			return err
		}
		present := map[string]bool{}
		for _, n := range names {
			present[n] = true
			if _, ok := c.services[n]; !ok {
				if err := c.relistService(ctx, n); err != nil {
					return err
				}
				dirty[n] = true
			}
		}
		for n := range c.services {
			if !present[n] {
				delete(c.services, n)
				dirty[n] = true
			}
		}
	}
	if len(dirty) > 0 {
		c.publish(dirty)
	}
	return nil
}

// relistService re-lists one service's nodes, reading the new ones.
func (c *Cache) relistService(ctx context.Context, name string) error {
	svcPath := path.Join(c.opts.Root, name)
	nodes, _, err := c.children(ctx, svcPath)
	if errors.Is(err, zksession.ErrNoNode) {
		delete(c.services, name)
		return nil
	}
	if err != nil {
		return err
	}
	svc := c.services[name]
	if svc == nil {
		svc = &service{nodes: map[string]node{}}
		c.services[name] = svc
	}
	present := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		present[n] = true
		if _, ok := svc.nodes[n]; ok {
			continue // its data watch reports changes
		}
		nd, ok, err := c.readNode(ctx, name, n)
		if err != nil {
			return err
		}
		if ok {
			svc.nodes[n] = nd
		}
	}
	for n := range svc.nodes {
		if !present[n] {
			delete(svc.nodes, n)
		}
	}
	return nil
}

// rereadNode re-reads one node after a data event.
func (c *Cache) rereadNode(ctx context.Context, name, n string) (bool, error) {
	svc := c.services[name]
	nd, ok, err := c.readNode(ctx, name, n)
	if err != nil {
		return false, err
	}
	if !ok {
		if svc != nil {
			if _, had := svc.nodes[n]; had {
				delete(svc.nodes, n)
				return true, nil
			}
		}
		return false, nil
	}
	if svc == nil {
		// A node of a service we have not listed yet: list the service.
		return true, c.relistService(ctx, name)
	}
	prev, had := svc.nodes[n]
	svc.nodes[n] = nd
	return !had || prev.mzxid != nd.mzxid || prev.czxid != nd.czxid, nil
}

// readNode reads and parses one registration. ok is false when the node is
// gone.
func (c *Cache) readNode(ctx context.Context, name, n string) (node, bool, error) {
	p := path.Join(c.opts.Root, name, n)
	var data []byte
	var st *zksession.Stat
	var err error
	if c.opts.Watch {
		data, st, err = c.sess.GetW(ctx, p)
	} else {
		data, st, err = c.sess.Get(ctx, p)
	}
	if errors.Is(err, zksession.ErrNoNode) {
		return node{}, false, nil
	}
	if err != nil {
		return node{}, false, err
	}
	nd := node{mzxid: st.Mzxid, czxid: st.Czxid}
	inst, perr := c.opts.Parser.Parse(name, n, data, NodeStat{
		Czxid: st.Czxid, Mzxid: st.Mzxid, Ctime: st.Ctime, EphemeralOwner: st.EphemeralOwner,
	})
	if perr != nil {
		nd.bad = true
		c.reportMalformed(p, st.Mzxid, perr)
		return nd, true, nil
	}
	nd.inst = inst
	return nd, true, nil
}

// reportMalformed logs and counts a malformed node once per node version.
func (c *Cache) reportMalformed(p string, mzxid int64, err error) {
	c.malMu.Lock()
	defer c.malMu.Unlock()
	if c.malformed[p] == mzxid {
		return
	}
	c.malformed[p] = mzxid
	c.metrics.malformed.Inc()
	c.log.Warn("skipping malformed registry node", "path", p, "mzxid", mzxid, "err", err)
}

func (c *Cache) children(ctx context.Context, p string) ([]string, *zksession.Stat, error) {
	if c.opts.Watch {
		return c.sess.ChildrenW(ctx, p)
	}
	return c.sess.Children(ctx, p)
}

// publish builds and stores a new snapshot. dirty names the services that
// changed; nil means all.
func (c *Cache) publish(dirty map[string]bool) {
	prev := c.snap.Load()
	var services map[string][]Instance
	if prev == nil || dirty == nil {
		services = make(map[string][]Instance, len(c.services))
		for name, svc := range c.services {
			if ins := svc.instances(); len(ins) > 0 {
				services[name] = ins
			}
		}
	} else {
		services = maps.Clone(prev.Services)
		for name := range dirty {
			svc := c.services[name]
			if svc == nil {
				delete(services, name)
				continue
			}
			if ins := svc.instances(); len(ins) > 0 {
				services[name] = ins
			} else {
				delete(services, name)
			}
		}
	}
	malformed := 0
	for _, svc := range c.services {
		for _, nd := range svc.nodes {
			if nd.bad {
				malformed++
			}
		}
	}
	c.revision++
	now := time.Now()
	c.snap.Store(&Snapshot{
		Revision:  c.revision,
		Services:  services,
		Malformed: malformed,
		Time:      now,
		Synced:    now,
	})
	c.loadedAt.CompareAndSwap(0, now.UnixNano())
	c.metrics.revision.Set(float64(c.revision))
	c.metrics.malformedNow.Set(float64(malformed))
	select {
	case c.updates <- struct{}{}:
	default:
	}
}

func (s *service) instances() []Instance {
	ins := make([]Instance, 0, len(s.nodes))
	for _, nd := range s.nodes {
		if !nd.bad {
			ins = append(ins, nd.inst)
		}
	}
	return Dedupe(ins)
}

package registry

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktree"
)

// Options configure a Cache.
type Options struct {
	// Root is the registry root; default /services.
	Root string
	// Parser reads one node; default CuratorParser.
	Parser Parser
	// Watch arms watches and follows their hints. When false the registry
	// is re-read only every ResyncInterval (the polling baseline).
	Watch bool
	// ResyncInterval is how often everything is re-read even if no watch
	// fired. Default 30s.
	ResyncInterval time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
}

// Cache follows the registry and publishes Snapshots. Its metrics are named
// zkgate_registry_… (resyncs, resync divergence, malformed nodes).
type Cache struct {
	tree *zktree.Tree[Instance, []Instance]
}

// NewCache returns a cache over sess. Call Run to fill it.
func NewCache(sess *zksession.Session, opts Options) *Cache {
	if opts.Root == "" {
		opts.Root = "/services"
	}
	parser := opts.Parser
	if parser == nil {
		parser = CuratorParser{}
	}
	return &Cache{tree: zktree.New(sess, zktree.Options[Instance, []Instance]{
		Root: opts.Root,
		Parse: func(service, node string, data []byte, st *zksession.Stat) (Instance, error) {
			return parser.Parse(service, node, data, NodeStat{
				Czxid: st.Czxid, Mzxid: st.Mzxid, Ctime: st.Ctime, EphemeralOwner: st.EphemeralOwner,
			})
		},
		Build: func(_ string, ins []Instance) ([]Instance, bool) {
			return Dedupe(ins), len(ins) > 0
		},
		Watch:          opts.Watch,
		ResyncInterval: opts.ResyncInterval,
		MetricsPrefix:  "zkgate_registry",
		Logger:         opts.Logger,
		Registerer:     opts.Registerer,
	})}
}

// Run follows the registry until ctx ends (see zktree.Tree.Run).
func (c *Cache) Run(ctx context.Context) error { return c.tree.Run(ctx) }

// Snapshot returns the latest snapshot, or nil before the first full read.
func (c *Cache) Snapshot() *Snapshot {
	ts := c.tree.Snapshot()
	if ts == nil {
		return nil
	}
	return &Snapshot{Revision: ts.Revision, Services: ts.Groups, Malformed: ts.Malformed, Time: ts.Time}
}

// Updates is signalled (capacity one, never closed) after each new snapshot.
func (c *Cache) Updates() <-chan struct{} { return c.tree.Updates() }

// LastContact returns when the cache was last known to match ZooKeeper
// (see zktree.Tree.LastContact).
func (c *Cache) LastContact() time.Time { return c.tree.LastContact() }

// Resync asks for a full re-read at once.
func (c *Cache) Resync() { c.tree.Resync() }

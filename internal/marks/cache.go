package marks

import (
	"log/slog"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktree"
)

// Dir returns the marks directory under zkgate's root, e.g. /zkgate/marks.
func Dir(zkRoot string) string { return path.Join(zkRoot, "marks") }

// Path returns the node path of the mark for service/addr.
func Path(zkRoot, service, addr string) string { return path.Join(Dir(zkRoot), service, addr) }

// Options configure a Cache.
type Options struct {
	// ZKRoot is zkgate's root, e.g. /zkgate; marks live under ZKRoot/marks.
	ZKRoot string
	// ResyncInterval is how often every mark is re-read even if no watch
	// fired. Default 30s.
	ResyncInterval time.Duration
	// Pending publishes a mark's creation or change as soon as its event
	// arrives, before the mark is read (Snapshot.Pending): a gateway
	// stops picking the address one read round trip sooner.
	Pending    bool
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// tree is the follower a Cache is made of.
type tree = zktree.Tree[Mark, map[string]Mark]

// Cache follows every mark and publishes Snapshots. Its metrics are named
// zkgate_marks_….
// Run, Updates, LastContact and Resync are zktree.Tree's.
type Cache struct {
	*tree
}

// NewCache returns a cache over sess. Call Run to fill it.
func NewCache(sess *zksession.Session, opts Options) *Cache {
	return &Cache{zktree.New(sess, zktree.Options[Mark, map[string]Mark]{
		Root: Dir(opts.ZKRoot),
		Parse: func(service, addr string, data []byte, st *zksession.Stat) (Mark, error) {
			return Decode(service, addr, data, st.Mzxid)
		},
		Build: func(_ string, ms []Mark) (map[string]Mark, bool) {
			out := make(map[string]Mark, len(ms))
			for _, m := range ms {
				out[m.Addr] = m
			}
			return out, len(out) > 0
		},
		Watch: true,
		// One persistent recursive watch on the marks directory: a new
		// mark costs each gateway one read, a deleted one none.
		Persistent:     true,
		Pending:        opts.Pending,
		ResyncInterval: opts.ResyncInterval,
		MetricsPrefix:  "zkgate_marks",
		Logger:         opts.Logger,
		Registerer:     opts.Registerer,
	})}
}

// Snapshot returns the latest snapshot, or nil before the first full read.
func (c *Cache) Snapshot() *Snapshot {
	ts := c.tree.Snapshot()
	if ts == nil {
		return nil
	}
	return &Snapshot{
		Revision: ts.Revision, Marks: ts.Groups, Malformed: ts.Malformed, Pending: ts.Pending,
		FullResync: ts.FullResync, Resyncs: ts.Resyncs, ResyncTicket: ts.ResyncTicket,
	}
}

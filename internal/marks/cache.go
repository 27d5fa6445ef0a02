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
type tree = zktree.Typed[Mark, map[string]Mark, Snapshot]

// Cache follows every mark and publishes Snapshots. Its metrics are named
// zkgate_marks_….
// Snapshot, Run, Updates, LastContact and Resync are zktree.Typed's.
type Cache struct {
	*tree
}

// NewCache returns a cache over sess. Call Run to fill it.
func NewCache(sess *zksession.Session, opts Options) *Cache {
	return &Cache{zktree.NewTyped(sess, snapshotOf, zktree.Options[Mark, map[string]Mark]{
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

// snapshotOf is the Snapshot of a tree snapshot.
func snapshotOf(ts *zktree.Snapshot[map[string]Mark]) *Snapshot {
	return &Snapshot{Info: ts.Info, Marks: ts.Groups, Pending: ts.Pending}
}

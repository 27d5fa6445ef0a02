package registry

import (
	"encoding/binary"
	"log/slog"
	"slices"
	"sync"
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
	// Services, when not nil, restricts the cache to these services (a
	// gateway follows only the services its routes name): the others are
	// neither read nor watched and never appear in a snapshot; a listed
	// service registered later appears as soon as its node is created.
	// Nil follows every service (the controller).
	Services   []string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// tree is the follower a Cache is made of.
type tree = zktree.Typed[Instance, []Instance, Snapshot]

// Cache follows the registry and publishes Snapshots. Its metrics are named
// zkgate_registry_… (resyncs, resync divergence, malformed nodes).
// Snapshot, Run, Updates, LastContact and Resync are zktree.Typed's.
type Cache struct {
	*tree
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
	metadata := newInterner()
	var groups func(string) bool
	if opts.Services != nil {
		follow := make(map[string]bool, len(opts.Services))
		for _, s := range opts.Services {
			follow[s] = true
		}
		groups = func(service string) bool { return follow[service] }
	}
	return &Cache{zktree.NewTyped(sess, snapshotOf, zktree.Options[Instance, []Instance]{
		Root:   opts.Root,
		Groups: groups,
		Parse: func(service, node string, data []byte, st *zksession.Stat) (Instance, error) {
			in, err := parser.Parse(service, node, data, NodeStat{
				Czxid: st.Czxid, Mzxid: st.Mzxid, Ctime: st.Ctime, EphemeralOwner: st.EphemeralOwner,
			})
			if err == nil {
				in.Metadata = metadata.intern(in.Metadata)
				if in.ID == node {
					in.ID = node // share the string
				}
			}
			return in, err
		},
		Build: func(_ string, ins []Instance) ([]Instance, bool) {
			return Dedupe(ins), len(ins) > 0
		},
		Watch: opts.Watch,
		// One persistent recursive watch on the root (or on each followed
		// service) instead of one per node: ZooKeeper 3.6+, with a
		// fallback to one-shot watches.
		Persistent:     true,
		ResyncInterval: opts.ResyncInterval,
		MetricsPrefix:  "zkgate_registry",
		Logger:         opts.Logger,
		Registerer:     opts.Registerer,
	})}
}

// snapshotOf is the Snapshot of a tree snapshot.
func snapshotOf(ts *zktree.Snapshot[[]Instance]) *Snapshot {
	return &Snapshot{Info: ts.Info, Services: ts.Groups}
}

// maxInterned bounds the distinct metadata maps an interner keeps.
const maxInterned = 4096

// interner shares one map between instances whose metadata is the same
// (most registrations of a service carry the same few entries, typically
// just instance_status): at 100,000 instances the per-instance maps were a
// quarter of a gateway's heap. Snapshots are immutable, so sharing is
// safe. It keeps at most maxInterned maps (never evicted): metadata with
// per-instance values is simply not shared once the table is full.
type interner struct {
	mu sync.Mutex
	m  map[string]map[string]string
}

func newInterner() *interner { return &interner{m: map[string]map[string]string{}} }

// intern returns a shared map equal to md, or md itself.
func (n *interner) intern(md map[string]string) map[string]string {
	if len(md) == 0 || len(md) > 16 {
		return md
	}
	keys := make([]string, 0, len(md))
	size := 0
	for k, v := range md {
		keys = append(keys, k)
		size += len(k) + len(v)
	}
	slices.Sort(keys)
	// Length-prefixed, so that no two different maps share a key.
	b := make([]byte, 0, size+8*len(md))
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(md[k])))
		b = append(b, md[k]...)
	}
	key := string(b)
	n.mu.Lock()
	defer n.mu.Unlock()
	if shared, ok := n.m[key]; ok {
		return shared
	}
	if len(n.m) < maxInterned {
		n.m[key] = md
	}
	return md
}

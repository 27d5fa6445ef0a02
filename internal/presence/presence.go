// Package presence is how gateways tell the controller what they have
// applied: each gateway keeps an ephemeral node /zkgate/gateways/<id> whose
// content is a Report, rewritten promptly (at a bounded rate) whenever the
// marks it applies or the in-flight counts of marked instances change. The
// controller follows every report to confirm drains.
package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktree"
)

// Dir returns the presence directory under zkgate's root.
func Dir(zkRoot string) string { return path.Join(zkRoot, "gateways") }

// Report is the content of a gateway's presence node (a contract between
// gateway and controller versions: add fields, never change these).
type Report struct {
	ID          string `json:"id"`
	Listen      string `json:"listen"`
	AdminListen string `json:"admin_listen"`
	Version     string `json:"version"`
	StartedMs   int64  `json:"started_ms"`
	UpdatedMs   int64  `json:"updated_ms"`
	// RegistryRevision and MarksRevision are the gateway's local revisions
	// of the snapshots it routes by (for display: they are not comparable
	// across gateways).
	RegistryRevision uint64 `json:"registry_revision"`
	MarksRevision    uint64 `json:"marks_revision"`
	// Marks lists every mark the gateway has applied, with the in-flight
	// count of its instance at this gateway.
	Marks []AppliedMark `json:"marks"`

	// Session is the presence node's ephemeral owner (from its stat, not
	// its content).
	Session int64 `json:"-"`
}

// AppliedMark is one mark as a gateway applies it.
type AppliedMark struct {
	Service string `json:"service"`
	Addr    string `json:"addr"`
	// Mzxid identifies the version of the mark applied.
	Mzxid int64 `json:"mzxid"`
	// InFlight is the number of requests to the instance still in flight
	// at this gateway.
	InFlight int64 `json:"in_flight"`
	// State is the instance's state at this gateway:
	//   - draining or drained while the mark applies;
	//   - fail_open (StateFailOpen) while the mark applies but every
	//     instance of the service is marked, so the gateway still sends
	//     the instance new requests (gateway.fail_open);
	//   - unrouted (StateUnrouted) when the gateway has no route for the
	//     mark's service: it never sends the instance anything;
	//   - absent (StateAbsent) when the gateway routes the service but has
	//     no registration of the address (none seen yet, or gone);
	//   - otherwise the instance's own state (warming, serving, down,
	//     ejected): the mark does not apply there, e.g. because the gateway
	//     has seen a registration of the address newer than the mark.
	//
	// The controller confirms a drain when every gateway reports the mark
	// with nothing in flight (draining/drained/absent/unrouted), and
	// removes a mark superseded by a re-registration once every gateway
	// reports it in a state other than draining, drained or absent.
	State string `json:"state"`
}

// AppliedMark states beyond the gateway's instance states.
const (
	// StateAbsent: the gateway routes the service but has no registration
	// of the address.
	StateAbsent = "absent"
	// StateUnrouted: the gateway has no route for the service.
	StateUnrouted = "unrouted"
	// StateFailOpen: the mark applies, but the gateway still sends the
	// instance new requests because every instance of the service is
	// marked. A drain is not confirmed at such a gateway.
	StateFailOpen = "fail_open"
)

// Quiesced reports whether a gateway in state sends the instance nothing
// new because of the mark: it applies it (drained or draining), or never
// routes the address (absent, unrouted).
func Quiesced(state string) bool {
	switch state {
	case "draining", "drained", StateAbsent, StateUnrouted:
		return true
	}
	return false
}

// Find returns the applied mark for service/addr.
func (r *Report) Find(service, addr string) (AppliedMark, bool) {
	for _, m := range r.Marks {
		if m.Service == service && m.Addr == addr {
			return m, true
		}
	}
	return AppliedMark{}, false
}

// WriterOptions configure a Writer.
type WriterOptions struct {
	// ZKRoot is zkgate's root; the node is ZKRoot/gateways/<ID>.
	ZKRoot string
	ID     string
	// Report returns the current report; it is called for every write.
	Report func() Report
	// MinInterval bounds the write rate: at most one write per interval;
	// a change inside the interval is written at its end. Default 5ms.
	MinInterval time.Duration
	// Heartbeat rewrites the report this often even without changes, so
	// its updated_ms tells the controller the gateway is alive. Default 10s.
	Heartbeat time.Duration
	Logger    *slog.Logger
}

// Writer keeps a gateway's presence node up to date.
type Writer struct {
	sess   *zksession.Session
	opts   WriterOptions
	log    *slog.Logger
	notify chan struct{}

	mu     sync.Mutex
	writes int64
}

// NewWriter returns a writer; call Run.
func NewWriter(sess *zksession.Session, opts WriterOptions) *Writer {
	if opts.MinInterval <= 0 {
		opts.MinInterval = 5 * time.Millisecond
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Writer{
		sess:   sess,
		opts:   opts,
		log:    opts.Logger.With("component", "presence", "gateway", opts.ID),
		notify: make(chan struct{}, 1),
	}
}

// Path is the writer's presence node.
func (w *Writer) Path() string { return path.Join(Dir(w.opts.ZKRoot), w.opts.ID) }

// Notify says the report changed; it never blocks.
func (w *Writer) Notify() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// Writes returns how many times the node was written.
func (w *Writer) Writes() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes
}

// Run keeps the node until ctx ends, re-creating it after every new
// session. On return it deletes the node (best effort) so the controller
// stops waiting for this gateway at once.
func (w *Writer) Run(ctx context.Context) error {
	hints := w.sess.Hints(w.Path())
	defer w.sess.RemoveHints(hints)
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = w.sess.Delete(dctx, w.Path(), -1)
	}()
	heartbeat := time.NewTicker(w.opts.Heartbeat)
	defer heartbeat.Stop()
	needCreate := true
	var last time.Time
	for {
		if needCreate {
			if err := w.sess.WaitConnected(ctx); err != nil {
				return err
			}
			hints.Take()
			if err := w.create(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				w.log.Warn("creating presence node failed; retrying", "err", err)
				select {
				case <-time.After(250 * time.Millisecond):
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			needCreate = false
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-hints.C():
			if !ok {
				return zksession.ErrClosed
			}
			// Session changes only: the node itself is not watched (our own
			// writes would wake us). A node deleted by someone else is
			// re-created when the next write fails.
			if b := hints.Take(); b.NewSession || b.Lost || b.Reconnected {
				needCreate = true
			}
		case <-w.notify:
			if wait := w.opts.MinInterval - time.Since(last); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if err := w.write(ctx); err != nil {
				w.log.Warn("writing presence failed", "err", err)
				needCreate = true
			}
			last = time.Now()
		case <-heartbeat.C:
			if err := w.write(ctx); err != nil {
				w.log.Warn("writing presence failed", "err", err)
				needCreate = true
			}
			last = time.Now()
		}
	}
}

func (w *Writer) encode() []byte {
	r := w.opts.Report()
	r.ID = w.opts.ID
	r.UpdatedMs = time.Now().UnixMilli()
	b, _ := json.Marshal(r) // plain data: cannot fail
	return b
}

// create makes the ephemeral node for the current session, replacing a
// node left by an older session of this gateway.
func (w *Writer) create(ctx context.Context) error {
	acl := w.sess.ACL()
	if err := w.sess.EnsurePath(ctx, Dir(w.opts.ZKRoot), acl); err != nil {
		return fmt.Errorf("creating presence directory: %w", err)
	}
	for attempt := 0; attempt < 3; attempt++ {
		ok, st, err := w.sess.Exists(ctx, w.Path())
		if err != nil {
			return err
		}
		if ok && st.EphemeralOwner == w.sess.SessionID() {
			return w.write(ctx)
		}
		if ok {
			// Left by an older session that has not expired yet.
			if err := w.sess.Delete(ctx, w.Path(), st.Version); err != nil && !errors.Is(err, zksession.ErrNoNode) && !errors.Is(err, zksession.ErrBadVersion) {
				return err
			}
			continue
		}
		_, err = w.sess.Create(ctx, w.Path(), w.encode(), zksession.FlagEphemeral, acl)
		if errors.Is(err, zksession.ErrNodeExists) {
			continue
		}
		if err != nil {
			return err
		}
		w.count()
		w.log.Info("presence node created", "path", w.Path())
		return nil
	}
	return fmt.Errorf("presence node %s keeps being replaced by another session: is gateway id %q used twice?", w.Path(), w.opts.ID)
}

func (w *Writer) write(ctx context.Context) error {
	_, err := w.sess.Set(ctx, w.Path(), w.encode(), -1)
	if err == nil {
		w.count()
	}
	return err
}

func (w *Writer) count() {
	w.mu.Lock()
	w.writes++
	w.mu.Unlock()
}

// Watcher follows every gateway's presence report (controller side).
type Watcher struct {
	tree *zktree.Tree[Report, map[string]Report]
}

// WatcherOptions configure a Watcher.
type WatcherOptions struct {
	ZKRoot         string
	ResyncInterval time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
}

// NewWatcher returns a watcher; call Run.
func NewWatcher(sess *zksession.Session, opts WatcherOptions) *Watcher {
	return &Watcher{tree: zktree.New(sess, zktree.Options[Report, map[string]Report]{
		Root: Dir(opts.ZKRoot),
		Flat: true,
		Parse: func(_, id string, data []byte, st *zksession.Stat) (Report, error) {
			var r Report
			if err := json.Unmarshal(data, &r); err != nil {
				return Report{}, fmt.Errorf("decoding presence of gateway %s: %w", id, err)
			}
			r.ID = id
			r.Session = st.EphemeralOwner
			return r, nil
		},
		Build: func(_ string, rs []Report) (map[string]Report, bool) {
			out := make(map[string]Report, len(rs))
			for _, r := range rs {
				out[r.ID] = r
			}
			return out, true
		},
		Watch:          true,
		ResyncInterval: opts.ResyncInterval,
		MetricsPrefix:  "zkgate_presence",
		Logger:         opts.Logger,
		Registerer:     opts.Registerer,
	})}
}

// Run follows the reports until ctx ends.
func (w *Watcher) Run(ctx context.Context) error { return w.tree.Run(ctx) }

// Gateways returns the live gateways' reports by id (nil before the first
// read).
func (w *Watcher) Gateways() map[string]Report {
	s := w.tree.Snapshot()
	if s == nil {
		return nil
	}
	return s.Groups[""]
}

// Loaded reports whether the first full read completed.
func (w *Watcher) Loaded() bool { return w.tree.Snapshot() != nil }

// Updates is signalled after every new snapshot of the reports.
func (w *Watcher) Updates() <-chan struct{} { return w.tree.Updates() }

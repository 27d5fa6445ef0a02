package presence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zkgate/zkgate/internal/zksession"
)

// WriterOptions configure a Writer.
type WriterOptions struct {
	// ZKRoot is zkgate's root; the node is ZKRoot/gateways/<ID>.
	ZKRoot string
	ID     string
	// Report returns the current report; it is called for every write and
	// for every Notify (to tell whether anything changed). It must be safe
	// to call from the writer's goroutine at any time.
	Report func() Report
	// MinInterval bounds the write rate: at most one write per interval;
	// a change inside the interval is written at its end. Default 5ms.
	MinInterval time.Duration
	// Heartbeat rewrites the report this often even without changes, so
	// its updated_ms tells the controller the gateway is alive. Default 10s.
	Heartbeat time.Duration
	// LeaveLinger is how long Leave keeps the leaving report before it
	// deletes the node, so that the controller, whose watch fires on the
	// write, can read it (a node deleted at once may be gone before the
	// controller reads it). Default 100ms; bounded by Leave's context.
	LeaveLinger time.Duration
	Logger      *slog.Logger
}

// Retry intervals of the writer: after a failed create, and while another
// session holds the node.
const (
	createRetry   = 250 * time.Millisecond
	conflictRetry = time.Second
)

// Writer keeps a gateway's presence node up to date.
//
// Every write is conditional on the node's version as of the writer's
// previous write, and the node is created only when it does not exist, or
// when it is left by an earlier session of this writer. A node of another
// session (two gateways configured with the same id, or a previous process
// of this gateway that died less than a session timeout ago) is never
// overwritten or deleted: the writer logs the conflict as an error, reports
// it through Detached, and looks again every second until the node is free.
type Writer struct {
	sess   *zksession.Session
	opts   WriterOptions
	log    *slog.Logger
	notify chan struct{}
	leave  chan leaveRequest
	done   chan struct{} // closed when Run returns

	// heldGen is the session generation + 1 in which the writer last
	// created or wrote its node; 0 when it does not hold it.
	heldGen atomic.Uint64

	// Run's own state.
	version  int32          // the node's version after our last write
	lastKey  []byte         // the last report written, time and revisions aside
	lastRep  Report         // the last report written
	owned    map[int64]bool // sessions in which we created the node
	conflict int64          // owner of the node while another session holds it

	// Counters, read by the metrics and tests.
	writes, skipped, deferred atomic.Int64

	mu       sync.Mutex
	detached string // why the node is not held, when known
}

type leaveRequest struct {
	ctx context.Context
	res chan error
}

// NewWriter returns a writer; call Run.
func NewWriter(sess *zksession.Session, opts WriterOptions) *Writer {
	if opts.MinInterval <= 0 {
		opts.MinInterval = 5 * time.Millisecond
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 10 * time.Second
	}
	if opts.LeaveLinger <= 0 {
		opts.LeaveLinger = 100 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Writer{
		sess:   sess,
		opts:   opts,
		log:    opts.Logger.With("component", "presence", "gateway", opts.ID),
		notify: make(chan struct{}, 1),
		leave:  make(chan leaveRequest),
		done:   make(chan struct{}),
		owned:  map[int64]bool{},
	}
}

// Path is the writer's presence node.
func (w *Writer) Path() string { return path.Join(Dir(w.opts.ZKRoot), w.opts.ID) }

// Notify says the report may have changed; it never blocks. The writer
// rewrites the node (at most once per MinInterval) only when the report's
// content differs from the last one written, updated_ms and the revisions
// aside: those change with every table the gateway applies, even for
// services it does not route, and the heartbeat keeps updated_ms fresh.
//
// A report that differs from the last one written only by marks that
// left it (an undrain, an expired or cleared mark) is not written at once
// either: nothing waits for a mark's removal, and an entry left for a
// mark that no longer exists can confirm nothing (the controller counts
// only entries of the mark's current mzxid or newer, and a mark written
// again gets a newer one). The next write carries the removal: the next
// change, or the heartbeat. This halves the presence writes of a
// drain/undrain cycle.
func (w *Writer) Notify() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// Writes returns how many times the node was written (created included).
func (w *Writer) Writes() int64 { return w.writes.Load() }

// Deferred returns how many notifications found only marks removed since
// the last write, and so left the write to the next change or heartbeat.
func (w *Writer) Deferred() int64 { return w.deferred.Load() }

// Skipped returns how many notifications found nothing new to write.
func (w *Writer) Skipped() int64 { return w.skipped.Load() }

// Detached returns "" while the writer holds its node in the current
// session (it created or wrote it in this session and has not learnt
// since that it is gone), otherwise why not. It does not look at the
// session state: a lost session is the caller's to check.
func (w *Writer) Detached() string {
	if g := w.heldGen.Load(); g != 0 && g == w.sess.Generation()+1 {
		return ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.detached != "" {
		return w.detached
	}
	return "presence node " + w.Path() + " not written in the current ZooKeeper session yet"
}

func (w *Writer) setHeld(gen uint64) {
	w.heldGen.Store(gen + 1)
	w.mu.Lock()
	w.detached = ""
	w.mu.Unlock()
	if w.conflict != 0 {
		w.log.Info("presence node conflict resolved", "path", w.Path())
		w.conflict = 0
	}
}

func (w *Writer) setDetached(why string) {
	w.heldGen.Store(0)
	w.mu.Lock()
	w.detached = why
	w.mu.Unlock()
}

// Run keeps the node until ctx ends or Leave is called, re-creating it
// after every new session. When ctx ends it deletes the node (best
// effort, only a node it holds) so the controller stops waiting for this
// gateway at once; Leave also writes a last report with Leaving set first.
func (w *Writer) Run(ctx context.Context) error {
	defer close(w.done)
	hints := w.sess.Hints(w.Path())
	defer w.sess.RemoveHints(hints)
	heartbeat := time.NewTicker(w.opts.Heartbeat)
	defer heartbeat.Stop()
	needCreate := true
	var last time.Time
	var flush, retry <-chan time.Time // a delayed write; the next create attempt
	for {
		var changed <-chan struct{}
		if needCreate && retry == nil {
			changed = w.sess.Changed()
			switch st, _ := w.sess.State(); st {
			case zksession.StateClosed:
				w.setDetached("ZooKeeper session closed")
				return zksession.ErrClosed
			case zksession.StateConnected:
				changed = nil
				// Hints that arrived before the create are covered by it.
				hints.Take()
				if err := w.create(ctx); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					retry = time.After(w.createFailed(err))
				} else {
					needCreate, flush, last = false, nil, time.Now()
				}
			}
		}
		select {
		case <-ctx.Done():
			w.deleteHeld()
			return ctx.Err()
		case req := <-w.leave:
			req.res <- w.leaveNow(req.ctx, needCreate)
			return nil
		case <-changed:
		case <-retry:
			retry = nil
		case _, ok := <-hints.C():
			if !ok {
				w.setDetached("ZooKeeper session closed")
				return zksession.ErrClosed
			}
			// Session changes only: the node itself is not watched (our own
			// writes would wake us). A node deleted or changed by someone
			// else is noticed when the next write fails.
			b := hints.Take()
			if b.Lost {
				w.setDetached("ZooKeeper session lost: the presence node may be gone")
			}
			if b.NewSession || b.Lost || b.Reconnected {
				needCreate = true
			}
		case <-w.notify:
			if needCreate || flush != nil {
				continue // the create, or the write already due, takes it
			}
			if wait := w.opts.MinInterval - time.Since(last); wait > 0 {
				flush = time.After(wait)
				continue
			}
			if !w.update(ctx, false) {
				needCreate = true
			}
			last = time.Now()
		case <-flush:
			flush = nil
			if needCreate {
				continue
			}
			if !w.update(ctx, false) {
				needCreate = true
			}
			last = time.Now()
		case <-heartbeat.C:
			if needCreate {
				continue
			}
			if !w.update(ctx, true) {
				needCreate = true
			}
			last = time.Now()
		}
	}
}

// Leave ends Run gracefully: it writes a last report with Leaving set,
// keeps it for LeaveLinger, deletes the node and makes Run return (nil).
// When the writer does not hold its node (not created yet, session lost,
// another session holds it) it writes and deletes nothing. It returns
// once Run has done so, or when ctx ends; after Run has returned it
// returns nil at once.
func (w *Writer) Leave(ctx context.Context) error {
	req := leaveRequest{ctx: ctx, res: make(chan error, 1)}
	select {
	case w.leave <- req:
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *Writer) leaveNow(ctx context.Context, needCreate bool) error {
	if needCreate || w.heldGen.Load() == 0 {
		return nil
	}
	defer w.setDetached("the gateway left")
	st, err := w.sess.Set(ctx, w.Path(), w.encode(true).data, w.version)
	if err != nil {
		return fmt.Errorf("writing the leaving report: %w", err)
	}
	w.writes.Add(1)
	t := time.NewTimer(w.opts.LeaveLinger)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := w.sess.Delete(ctx, w.Path(), st.Version); err != nil && !errors.Is(err, zksession.ErrNoNode) {
		return fmt.Errorf("deleting the presence node: %w", err)
	}
	w.log.Info("presence node deleted: the gateway left", "path", w.Path())
	return nil
}

// deleteHeld deletes the node, if the writer holds it, as of its last
// write.
func (w *Writer) deleteHeld() {
	if w.heldGen.Load() == 0 {
		return
	}
	w.setDetached("the presence writer stopped")
	dctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = w.sess.Delete(dctx, w.Path(), w.version)
}

// encoded is a report ready to write.
type encoded struct {
	rep  Report
	data []byte
	key  []byte // the content without updated_ms and the revisions
}

// encode returns the report to write, and its content without updated_ms
// and the revisions (to compare with the last one written).
func (w *Writer) encode(leaving bool) encoded {
	r := w.opts.Report()
	r.ID = w.opts.ID
	r.Leaving = leaving
	key := reportKey(r)
	r.UpdatedMs = time.Now().UnixMilli()
	data, _ := json.Marshal(r) // plain data: cannot fail
	return encoded{rep: r, data: data, key: key}
}

// reportKey is r's content without updated_ms and the revisions.
func reportKey(r Report) []byte {
	r.UpdatedMs, r.RegistryRevision, r.MarksRevision = 0, 0, 0
	key, _ := json.Marshal(r) // plain data: cannot fail
	return key
}

// onlyRemoved reports whether cur differs from last only by marks that
// left it: every mark of cur is in last, identical, and the rest of the
// content is the same.
func onlyRemoved(last Report, lastKey []byte, cur Report) bool {
	if len(cur.Marks) >= len(last.Marks) {
		return false
	}
	type id struct{ service, addr string }
	had := make(map[id]AppliedMark, len(last.Marks))
	for _, m := range last.Marks {
		had[id{m.Service, m.Addr}] = m
	}
	for _, m := range cur.Marks {
		if prev, ok := had[id{m.Service, m.Addr}]; !ok || prev != m {
			return false
		}
	}
	cur.Marks = last.Marks
	return bytes.Equal(reportKey(cur), lastKey)
}

// update writes the current report, unless (force false) its content is
// the last one written, or differs from it only by marks removed (see
// Notify). It reports false when the node must be checked (and
// re-created) before the next write.
func (w *Writer) update(ctx context.Context, force bool) bool {
	enc := w.encode(false)
	if !force && bytes.Equal(enc.key, w.lastKey) {
		w.skipped.Add(1)
		return true
	}
	if !force && w.lastKey != nil && onlyRemoved(w.lastRep, w.lastKey, enc.rep) {
		w.deferred.Add(1)
		return true
	}
	held := w.heldGen.Load()
	if held == 0 || held-1 != w.sess.Generation() {
		// The session changed since the node was written (its hint is
		// not taken yet): the node went with the old session.
		w.setDetached("ZooKeeper session expired: the presence node went with it")
		return false
	}
	err := w.write(ctx, enc)
	switch {
	case err == nil:
		return true
	case errors.Is(err, zksession.ErrNoNode) && held-1 != w.sess.Generation():
		// The write was sent in the old session and carried out in a new
		// one: the servers deleted the node when they expired the old
		// session. Nobody else is involved.
		w.log.Info("presence node went with the expired ZooKeeper session; re-creating it", "path", w.Path())
		w.setDetached("ZooKeeper session expired: the presence node went with it")
	case errors.Is(err, zksession.ErrBadVersion):
		w.log.Error("presence node was changed by another writer: is gateway id "+w.opts.ID+" used twice? Checking who holds it",
			"path", w.Path())
		w.setDetached("presence node " + w.Path() + " was changed by another writer")
	case errors.Is(err, zksession.ErrNoNode):
		w.log.Warn("presence node was deleted by someone else; re-creating it", "path", w.Path())
		w.setDetached("presence node " + w.Path() + " was deleted")
	default:
		// The session may be fine (a connection blip): the node stays
		// held until the check says otherwise.
		w.log.Warn("writing presence failed; checking the node", "err", err)
	}
	return false
}

// write sets the node's content, conditional on the version of our last
// write.
func (w *Writer) write(ctx context.Context, enc encoded) error {
	st, err := w.sess.Set(ctx, w.Path(), enc.data, w.version)
	if err != nil {
		return err
	}
	w.version, w.lastKey, w.lastRep = st.Version, enc.key, enc.rep
	w.writes.Add(1)
	return nil
}

// conflictError: another session holds the node.
type conflictError struct {
	path  string
	owner int64
}

func (e *conflictError) Error() string {
	return fmt.Sprintf("presence node %s is held by another ZooKeeper session (0x%x)", e.path, e.owner)
}

// createFailed logs a failed create and returns when to try again.
func (w *Writer) createFailed(err error) time.Duration {
	var ce *conflictError
	if !errors.As(err, &ce) {
		w.log.Warn("creating presence node failed; retrying", "err", err)
		return createRetry
	}
	if ce.owner != w.conflict {
		w.log.Error("presence node held by another ZooKeeper session: gateway id "+w.opts.ID+
			" is used by another gateway, or a previous process of this one died less than a session timeout ago. "+
			"This gateway reports not ready until the node is free",
			"path", w.Path(), "owner", fmt.Sprintf("0x%x", ce.owner))
		w.conflict = ce.owner
	}
	w.setDetached(ce.Error() + ": is gateway id " + w.opts.ID + " used twice?")
	return conflictRetry
}

// create makes sure the node exists, is owned by the current session and
// holds the current report: it adopts a node of the current session,
// replaces one left by an earlier session of this writer, and leaves one
// of any other session alone (a conflictError).
func (w *Writer) create(ctx context.Context) error {
	acl := w.sess.ACL()
	if err := w.sess.EnsurePath(ctx, Dir(w.opts.ZKRoot), acl); err != nil {
		return fmt.Errorf("creating presence directory: %w", err)
	}
	for attempt := 0; attempt < 3; attempt++ {
		// Read before the calls: if the session changes meanwhile, the
		// node is not taken as held in the new one, and the session
		// change (a hint) brings us back here.
		gen, sid := w.sess.Generation(), w.sess.SessionID()
		ok, st, err := w.sess.Exists(ctx, w.Path())
		if err != nil {
			return err
		}
		switch {
		case ok && st.EphemeralOwner == sid:
			// Ours: an earlier write failed, or a create's outcome was
			// unknown. Take its version and write the current report.
			w.version = st.Version
			if err := w.write(ctx, w.encode(false)); err != nil {
				if errors.Is(err, zksession.ErrBadVersion) || errors.Is(err, zksession.ErrNoNode) {
					continue
				}
				return err
			}
			w.setHeld(gen)
			return nil
		case ok && w.owned[st.EphemeralOwner]:
			// Left by an earlier session of ours that the servers have not
			// expired yet.
			if err := w.sess.Delete(ctx, w.Path(), st.Version); err != nil && !errors.Is(err, zksession.ErrNoNode) && !errors.Is(err, zksession.ErrBadVersion) {
				return err
			}
			continue
		case ok:
			return &conflictError{path: w.Path(), owner: st.EphemeralOwner}
		}
		w.owned[sid] = true
		enc := w.encode(false)
		_, err = w.sess.Create(ctx, w.Path(), enc.data, zksession.FlagEphemeral, acl)
		if errors.Is(err, zksession.ErrNodeExists) {
			continue
		}
		if err != nil {
			return err
		}
		w.version, w.lastKey, w.lastRep = 0, enc.key, enc.rep
		w.writes.Add(1)
		w.setHeld(gen)
		w.log.Info("presence node created", "path", w.Path())
		return nil
	}
	return fmt.Errorf("presence node %s keeps changing under us: is gateway id %q used twice?", w.Path(), w.opts.ID)
}

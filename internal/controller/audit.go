package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/zksession"
)

// auditPrefix names audit nodes: <root>/audit/e-<10-digit sequence>.
const auditPrefix = "e-"

// auditLog keeps the audit trail: one persistent sequential node per
// change under <root>/audit. The trail is trimmed in batches, off the API
// path: once it holds more than limit+slack entries (see slack) the oldest
// are deleted down to limit, so it holds at most about limit+slack entries
// and List (which the API caps at limit) still has limit to show.
//
// Whether a trim is due is judged without listing: sequence numbers only
// grow, so a node numbered n, created after a listing of count entries
// whose newest was numbered top, is one of at most count+(n-top) entries
// (the listed ones and those numbered top+1..n). Record only signals the
// trimmer (Run) when that bound passes limit+slack; the trimmer lists, and
// deletes only if the real count does too.
type auditLog struct {
	sess       *zksession.Session
	dir        string
	limit      int
	controller string
	now        func() int64 // unix ms
	log        *slog.Logger
	metrics    *metrics

	trimMu sync.Mutex // one trim at a time in this replica

	baseMu sync.Mutex
	// base is top+1-count of the last listing (see above): an entry
	// numbered n means at most n-base+1 entries. baseKnown is false until
	// a listing found entries.
	base      int64
	baseKnown bool

	kick chan struct{} // a trim is due (buffered, 1)
}

// auditTrimTimeout bounds one trim pass; auditTrimMaxDeletes bounds its
// deletes (a longer backlog, e.g. after audit_limit was lowered, is worked
// off over several passes).
const (
	auditTrimTimeout    = 10 * time.Second
	auditTrimMaxDeletes = 1000
)

func newAuditLog(sess *zksession.Session, root string, limit int, controller string, now func() int64, log *slog.Logger, m *metrics) *auditLog {
	return &auditLog{
		sess: sess, dir: path.Join(root, "audit"), limit: limit, controller: controller,
		now: now, log: log, metrics: m, kick: make(chan struct{}, 1),
	}
}

// slack is how far the trail may grow past limit before it is trimmed.
func (a *auditLog) slack() int { return max(10, a.limit/10) }

// Run trims the trail whenever Record signals that a trim is due, until
// ctx ends. Trimming never delays an API answer.
func (a *auditLog) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.kick:
		}
		tctx, cancel := context.WithTimeout(ctx, auditTrimTimeout)
		err := a.trim(tctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.log.Warn("trimming the audit trail failed", "err", err)
		}
	}
}

// noteCreated judges from the sequence number of a node just created
// whether a trim may be due, and if so signals Run.
func (a *auditLog) noteCreated(created string) {
	seq, ok := zksession.SequenceOf(path.Base(created))
	a.baseMu.Lock()
	due := !ok || !a.baseKnown || seq-a.base+1 > int64(a.limit+a.slack())
	a.baseMu.Unlock()
	if due {
		select {
		case a.kick <- struct{}{}:
		default: // one is pending already
		}
	}
}

// setBase records a listing: count entries, the newest numbered top.
func (a *auditLog) setBase(top int64, count int) {
	a.baseMu.Lock()
	a.base, a.baseKnown = top+1-int64(count), true
	a.baseMu.Unlock()
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Record appends e (TimeMs, Controller and ID are filled in) and, when the
// trail may have grown past limit+slack, signals the trimmer (Run) without
// waiting for it. A failure is logged and counted, never returned: the
// change it describes has already been made. A create whose outcome is
// unknown is re-read (by the entry's ID among the newest entries) before
// it is retried, so an entry is not written twice.
func (a *auditLog) Record(ctx context.Context, e ctlclient.AuditEntry) {
	e.TimeMs = a.now()
	e.Controller = a.controller
	e.ID = newID()
	if err := a.append(ctx, e); err != nil {
		a.metrics.auditFailures.Inc()
		a.log.Error("writing audit entry failed", "action", e.Action, "service", e.Service, "addr", e.Addr, "err", err)
		return
	}
	a.metrics.auditWrites.Inc()
}

func (a *auditLog) append(ctx context.Context, e ctlclient.AuditEntry) error {
	created, err := a.create(ctx, e)
	if err != nil {
		return err
	}
	a.noteCreated(created)
	return nil
}

// create writes e and returns the created node's path ("" when an unknown
// outcome was settled by re-reading).
func (a *auditLog) create(ctx context.Context, e ctlclient.AuditEntry) (string, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("encoding audit entry: %w", err)
	}
	acl := a.sess.ACL()
	var lastErr error
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		if err := retryPause(ctx, attempt); err != nil {
			return "", fmt.Errorf("appending audit entry: %w (last error: %v)", err, lastErr)
		}
		created, err := a.sess.Create(ctx, path.Join(a.dir, auditPrefix), data, zksession.FlagSequence, acl)
		if errors.Is(err, zksession.ErrNoNode) {
			if err := a.sess.EnsurePath(ctx, a.dir, acl); err != nil {
				return "", fmt.Errorf("creating audit directory: %w", err)
			}
			lastErr = err
			continue
		}
		if err == nil {
			return created, nil
		}
		lastErr = err
		if !zksession.IsUnknownOutcome(err) || ctx.Err() != nil {
			return "", fmt.Errorf("appending audit entry: %w", err)
		}
		a.metrics.unknownOutcome.Inc()
		if err := a.sess.WaitConnected(ctx); err != nil {
			return "", fmt.Errorf("appending audit entry: %w", err)
		}
		found, err := a.written(ctx, e.ID)
		if err == nil && found {
			return "", nil
		}
	}
	return "", fmt.Errorf("appending audit entry: giving up: %w", lastErr)
}

// written looks for the entry with id among the newest entries.
func (a *auditLog) written(ctx context.Context, id string) (bool, error) {
	names, err := a.names(ctx)
	if err != nil {
		return false, err
	}
	for i := len(names) - 1; i >= 0 && i >= len(names)-16; i-- {
		data, _, err := a.sess.Get(ctx, path.Join(a.dir, names[i]))
		if err != nil {
			continue
		}
		var e ctlclient.AuditEntry
		if json.Unmarshal(data, &e) == nil && e.ID == id {
			return true, nil
		}
	}
	return false, nil
}

// names lists the audit nodes, oldest first.
func (a *auditLog) names(ctx context.Context) ([]string, error) {
	names, _, err := a.sess.Children(ctx, a.dir)
	if errors.Is(err, zksession.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing audit entries: %w", err)
	}
	return zksession.SortSequential(names, auditPrefix), nil
}

// trim lists the trail once and, when it holds more than limit+slack
// entries, deletes the oldest (by the sequence numbers in their names; no
// entry is read) down to limit, at most auditTrimMaxDeletes of them.
// Replicas may trim concurrently: an entry already deleted is skipped.
func (a *auditLog) trim(ctx context.Context) error {
	a.trimMu.Lock()
	defer a.trimMu.Unlock()
	names, err := a.names(ctx)
	if err != nil {
		return err
	}
	count := len(names)
	if count > 0 {
		top, _ := zksession.SequenceOf(names[count-1])
		defer func() { a.setBase(top, count) }()
	}
	if count <= a.limit+a.slack() {
		return nil
	}
	excess := min(count-a.limit, auditTrimMaxDeletes)
	for _, n := range names[:excess] {
		err := a.sess.Delete(ctx, path.Join(a.dir, n), -1)
		if err != nil && !errors.Is(err, zksession.ErrNoNode) {
			return fmt.Errorf("deleting old audit entry: %w", err)
		}
		count--
	}
	return nil
}

// List returns up to limit entries, newest first, of service when it is not
// empty.
func (a *auditLog) List(ctx context.Context, service string, limit int) ([]ctlclient.AuditEntry, error) {
	names, err := a.names(ctx)
	if err != nil {
		return nil, err
	}
	out := []ctlclient.AuditEntry{}
	for i := len(names) - 1; i >= 0 && len(out) < limit; i-- {
		data, _, err := a.sess.Get(ctx, path.Join(a.dir, names[i]))
		if errors.Is(err, zksession.ErrNoNode) {
			continue // trimmed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("reading audit entry %s: %w", names[i], err)
		}
		var e ctlclient.AuditEntry
		if err := json.Unmarshal(data, &e); err != nil {
			a.log.Warn("skipping malformed audit entry", "node", names[i], "err", err)
			continue
		}
		if service != "" && e.Service != service {
			continue
		}
		e.Seq, _ = zksession.SequenceOf(names[i])
		out = append(out, e)
	}
	return out, nil
}

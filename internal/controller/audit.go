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
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/zksession"
)

// auditPrefix names audit nodes: <root>/audit/e-<10-digit sequence>.
const auditPrefix = "e-"

// auditLog keeps the audit trail: one persistent sequential node per
// change under <root>/audit, at most limit of them (the oldest are deleted).
type auditLog struct {
	sess       *zksession.Session
	dir        string
	limit      int
	controller string
	now        func() int64 // unix ms
	log        *slog.Logger
	metrics    *metrics

	trimMu sync.Mutex // one trim at a time in this replica
}

func newAuditLog(sess *zksession.Session, root string, limit int, controller string, now func() int64, log *slog.Logger, m *metrics) *auditLog {
	return &auditLog{
		sess: sess, dir: path.Join(root, "audit"), limit: limit, controller: controller,
		now: now, log: log, metrics: m,
	}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Record appends e (TimeMs, Controller and ID are filled in) and trims the
// trail to its limit. A failure is logged and counted, never returned: the
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
	if err := a.trim(ctx); err != nil {
		a.log.Warn("trimming the audit trail failed", "err", err)
	}
}

func (a *auditLog) append(ctx context.Context, e ctlclient.AuditEntry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding audit entry: %w", err)
	}
	acl := a.sess.ACL()
	var lastErr error
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		if err := retryPause(ctx, attempt); err != nil {
			return fmt.Errorf("appending audit entry: %w (last error: %v)", err, lastErr)
		}
		_, err := a.sess.Create(ctx, path.Join(a.dir, auditPrefix), data, zksession.FlagSequence, acl)
		if errors.Is(err, zksession.ErrNoNode) {
			if err := a.sess.EnsurePath(ctx, a.dir, acl); err != nil {
				return fmt.Errorf("creating audit directory: %w", err)
			}
			lastErr = err
			continue
		}
		if err == nil {
			return nil
		}
		lastErr = err
		if !zksession.IsUnknownOutcome(err) || ctx.Err() != nil {
			return fmt.Errorf("appending audit entry: %w", err)
		}
		a.metrics.unknownOutcome.Inc()
		if err := a.sess.WaitConnected(ctx); err != nil {
			return fmt.Errorf("appending audit entry: %w", err)
		}
		found, err := a.written(ctx, e.ID)
		if err == nil && found {
			return nil
		}
	}
	return fmt.Errorf("appending audit entry: giving up: %w", lastErr)
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
	out := names[:0]
	for _, n := range names {
		if _, ok := auditSeq(n); ok {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := auditSeq(out[i])
		b, _ := auditSeq(out[j])
		return a < b
	})
	return out, nil
}

func auditSeq(name string) (int64, bool) {
	if !strings.HasPrefix(name, auditPrefix) {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(name, auditPrefix), 10, 64)
	return n, err == nil
}

// trim deletes the oldest entries beyond the limit. Replicas may trim
// concurrently: an entry already deleted is skipped.
func (a *auditLog) trim(ctx context.Context) error {
	a.trimMu.Lock()
	defer a.trimMu.Unlock()
	names, err := a.names(ctx)
	if err != nil {
		return err
	}
	for i := 0; i < len(names)-a.limit; i++ {
		if err := a.sess.Delete(ctx, path.Join(a.dir, names[i]), -1); err != nil && !errors.Is(err, zksession.ErrNoNode) {
			return fmt.Errorf("deleting old audit entry: %w", err)
		}
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
		e.Seq, _ = auditSeq(names[i])
		out = append(out, e)
	}
	return out, nil
}

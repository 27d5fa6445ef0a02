package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/zkgate/zkgate/internal/component"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/zksession"
)

// maxWriteAttempts bounds the retries of one logical write.
const maxWriteAttempts = 5

// store writes marks. Every write is idempotent: a mark is created or
// overwritten with the same content, and a write whose outcome is unknown
// (zksession.IsUnknownOutcome) is re-read before it is retried.
type store struct {
	sess    *zksession.Session
	root    string // zkgate's root, e.g. /zkgate
	metrics *metrics
}

// errChanged says a conditional delete found the mark changed since the
// decision was made; nothing was deleted.
var errChanged = errors.New("mark changed since it was read")

// errOutcomeUnknown says a write was given up without knowing whether
// ZooKeeper applied it (or will: a request already sent may be applied
// after the caller stopped waiting for it), and re-reading did not settle
// it. The API answers 503 with "outcome": "unknown".
var errOutcomeUnknown = errors.New("outcome unknown")

// rereadTimeout bounds the re-read that tries to settle a write whose
// outcome is unknown.
var rereadTimeout = 5 * time.Second

// markWritten re-reads the mark of m's address after a write of m whose
// outcome is unknown. ok is true when the node holds exactly m's content
// (so the write was applied; the returned mark has its Mzxid). Requests on
// one connection are answered in order, so a write sent before the re-read
// on the same connection is seen by it if it was applied at all.
func (s *store) markWritten(ctx context.Context, m marks.Mark) (marks.Mark, bool) {
	got, st, err := s.sess.Get(ctx, marks.Path(s.root, m.Service, m.Addr))
	if err != nil || !bytes.Equal(got, m.Encode()) {
		return m, false
	}
	m.Mzxid = st.Mzxid
	return m, true
}

// markGone re-reads the mark of service/addr after a delete whose outcome
// is unknown: true when there is no mark any more.
func (s *store) markGone(ctx context.Context, service, addr string) bool {
	ok, _, err := s.sess.Exists(ctx, marks.Path(s.root, service, addr))
	return err == nil && !ok
}

// retryPause waits before attempt (1-based), or returns ctx's error.
func retryPause(ctx context.Context, attempt int) error {
	if attempt == 0 {
		return nil
	}
	return component.Sleep(ctx, time.Duration(attempt)*50*time.Millisecond)
}

// putMark writes m at its path (creating the service directory if needed)
// and returns it with the Mzxid of the write. A concurrent overwrite by
// someone else may make the returned Mzxid newer than our own write's,
// never older.
func (s *store) putMark(ctx context.Context, m marks.Mark) (marks.Mark, error) {
	p := marks.Path(s.root, m.Service, m.Addr)
	data := m.Encode()
	acl := s.sess.ACL()
	var lastErr error
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		if err := retryPause(ctx, attempt); err != nil {
			return m, fmt.Errorf("writing mark %s: %w (last error: %v)", p, err, lastErr)
		}
		st, err := s.createOrSet(ctx, p, data, acl)
		if err == nil {
			m.Mzxid = st.Mzxid
			return m, nil
		}
		lastErr = err
		if !zksession.IsUnknownOutcome(err) || ctx.Err() != nil {
			return m, fmt.Errorf("writing mark %s: %w", p, err)
		}
		// The write may or may not have been applied: look before retrying.
		s.metrics.unknownOutcome.Inc()
		if err := s.sess.WaitConnected(ctx); err != nil {
			return m, fmt.Errorf("writing mark %s: %w", p, err)
		}
		got, st, rerr := s.sess.Get(ctx, p)
		if rerr == nil && bytes.Equal(got, data) {
			m.Mzxid = st.Mzxid
			return m, nil
		}
	}
	return m, fmt.Errorf("writing mark %s: giving up after %d attempts: %w", p, maxWriteAttempts, lastErr)
}

// createOrSet creates p with data, or overwrites it when it exists, and
// returns the node's stat after the write.
func (s *store) createOrSet(ctx context.Context, p string, data []byte, acl []zksession.ACL) (*zksession.Stat, error) {
	for i := 0; i < 3; i++ {
		_, err := s.sess.Create(ctx, p, data, zksession.FlagPersistent, acl)
		switch {
		case err == nil:
			_, st, err := s.sess.Exists(ctx, p)
			if err != nil {
				return nil, err
			}
			if st == nil {
				continue // deleted at once by someone else: write again
			}
			return st, nil
		case errors.Is(err, zksession.ErrNoNode):
			if err := s.sess.EnsurePath(ctx, path.Dir(p), acl); err != nil {
				return nil, err
			}
			continue
		case errors.Is(err, zksession.ErrNodeExists):
			st, err := s.sess.Set(ctx, p, data, -1)
			if errors.Is(err, zksession.ErrNoNode) {
				continue // deleted between our create and set
			}
			return st, err
		default:
			return nil, err
		}
	}
	return nil, fmt.Errorf("mark %s keeps changing under us", p)
}

// getMark reads the mark of service/addr; ok is false when there is none.
func (s *store) getMark(ctx context.Context, service, addr string) (m marks.Mark, version int32, ok bool, err error) {
	p := marks.Path(s.root, service, addr)
	data, st, err := s.sess.Get(ctx, p)
	if errors.Is(err, zksession.ErrNoNode) {
		return marks.Mark{}, 0, false, nil
	}
	if err != nil {
		return marks.Mark{}, 0, false, fmt.Errorf("reading mark %s: %w", p, err)
	}
	m, derr := marks.Decode(service, addr, data, st.Mzxid)
	if derr != nil {
		// A malformed mark is still a node that can be deleted.
		m = marks.Mark{Service: service, Addr: addr, Mzxid: st.Mzxid, Reason: "(malformed mark)"}
	}
	return m, st.Version, true, nil
}

// deleteMark deletes the mark of service/addr. When mzxid is not 0 the
// mark is deleted only if it is still that version (errChanged otherwise).
// It returns the mark that was deleted; ok is false when there was none.
//
// When it gives up after a delete whose outcome is unknown was sent (the
// mark may be deleted after it returned), it returns the mark that delete
// was for with the error; otherwise a zero mark.
func (s *store) deleteMark(ctx context.Context, service, addr string, mzxid int64) (marks.Mark, bool, error) {
	p := marks.Path(s.root, service, addr)
	var lastErr error
	var sent marks.Mark // the mark a delete was sent for
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		if err := retryPause(ctx, attempt); err != nil {
			return sent, false, fmt.Errorf("deleting mark %s: %w (last error: %v)", p, err, lastErr)
		}
		m, version, ok, err := s.getMark(ctx, service, addr)
		if err != nil {
			lastErr = err
			if zksession.IsUnknownOutcome(err) && ctx.Err() == nil {
				continue
			}
			return sent, false, err
		}
		if !ok {
			return marks.Mark{}, false, nil
		}
		if mzxid != 0 && m.Mzxid != mzxid {
			return m, false, errChanged
		}
		err = s.sess.Delete(ctx, p, version)
		if zksession.IsUnknownOutcome(err) {
			sent = m
		}
		switch {
		case err == nil:
			return m, true, nil
		case errors.Is(err, zksession.ErrNoNode):
			return marks.Mark{}, false, nil
		case errors.Is(err, zksession.ErrBadVersion):
			if mzxid != 0 {
				return m, false, errChanged
			}
			continue // rewritten meanwhile: read it again
		case zksession.IsUnknownOutcome(err) && ctx.Err() == nil:
			// Re-read before retrying: gone means our delete went through
			// (or someone else's did: either way the mark is gone).
			s.metrics.unknownOutcome.Inc()
			lastErr = err
			if werr := s.sess.WaitConnected(ctx); werr != nil {
				return sent, false, fmt.Errorf("deleting mark %s: %w", p, werr)
			}
			exists, st, rerr := s.sess.Exists(ctx, p)
			if rerr == nil && !exists {
				return m, true, nil
			}
			if rerr == nil && st.Mzxid != m.Mzxid && mzxid != 0 {
				return m, false, errChanged
			}
			continue
		default:
			return sent, false, fmt.Errorf("deleting mark %s: %w", p, err)
		}
	}
	return sent, false, fmt.Errorf("deleting mark %s: giving up after %d attempts: %w", p, maxWriteAttempts, lastErr)
}

// pruneEmptyServices deletes service directories under the marks root that
// have no marks left. A directory that gains a mark meanwhile is kept
// (ZooKeeper refuses to delete a node with children), and putMark
// re-creates a directory deleted under it.
func (s *store) pruneEmptyServices(ctx context.Context) error {
	dir := marks.Dir(s.root)
	names, _, err := s.sess.Children(ctx, dir)
	if errors.Is(err, zksession.ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, n := range names {
		p := path.Join(dir, n)
		kids, st, err := s.sess.Children(ctx, p)
		if err != nil || len(kids) > 0 {
			continue
		}
		if err := s.sess.Delete(ctx, p, st.Version); err != nil &&
			!errors.Is(err, zksession.ErrNotEmpty) && !errors.Is(err, zksession.ErrNoNode) && !errors.Is(err, zksession.ErrBadVersion) {
			return err
		}
	}
	return nil
}

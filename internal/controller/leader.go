package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zkgate/zkgate/internal/zksession"
)

// elector runs leader election among controller replicas: each replica
// keeps an ephemeral sequential node <root>/leader/n_<token>_<seq>; the
// replica with the lowest sequence leads, every other one watches its
// predecessor only (no herd effect).
//
// A replica leads only while its session is Connected and its node is the
// lowest. It stops acting as leader at once — its lead context is cancelled
// — when the session is suspended (the session may expire on the servers
// before this client can tell), lost or closed, or its node disappears.
// The token in the node name lets a replica find its own node after a
// create whose outcome is unknown.
type elector struct {
	sess *zksession.Session
	dir  string
	id   string
	log  *slog.Logger
	// lead runs while this replica leads; its ctx is cancelled when
	// leadership ends, and the elector waits for lead to return before it
	// may lead again.
	lead    func(ctx context.Context)
	onState func(leading bool)

	leading atomic.Bool
	mu      sync.Mutex
	leader  string // id of the current leader as last seen
}

type leaderData struct {
	ID string `json:"id"`
}

func newElector(sess *zksession.Session, root, id string, log *slog.Logger, lead func(context.Context), onState func(bool)) *elector {
	return &elector{
		sess: sess, dir: path.Join(root, "leader"), id: id,
		log: log.With("component", "election"), lead: lead, onState: onState,
	}
}

// IsLeader reports whether this replica currently leads.
func (e *elector) IsLeader() bool { return e.leading.Load() }

// Leader returns the id of the leader as this replica last saw it.
func (e *elector) Leader() string {
	if e.IsLeader() {
		return e.id
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

func (e *elector) setLeader(id string) {
	e.mu.Lock()
	e.leader = id
	e.mu.Unlock()
}

// electionPrefix starts every election node's name: n_<token>_<sequence>.
const electionPrefix = "n_"

// Run takes part in the election until ctx ends or the session closes.
func (e *elector) Run(ctx context.Context) error {
	hints := e.sess.Hints(e.dir)
	defer e.sess.RemoveHints(hints)
	var (
		mine    string // our node's name, "" when we have none
		token   string
		mineGen uint64
	)
	defer func() {
		if mine != "" {
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = e.sess.Delete(dctx, path.Join(e.dir, mine), -1)
			cancel()
		}
	}()
	pause := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
			return nil
		}
	}
	// retry logs a failed step and pauses before the next attempt; it
	// returns ctx's error once ctx ended.
	retry := func(what string, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.log.Warn(what+" failed; retrying", "err", err)
		return pause()
	}
	for {
		if err := e.sess.WaitConnected(ctx); err != nil {
			return err
		}
		changed := e.sess.Changed()
		if st, _ := e.sess.State(); st != zksession.StateConnected {
			continue
		}
		gen := e.sess.Generation()
		hints.Take()
		if mine == "" || mineGen != gen {
			// A new session: our old node is gone, or going. It may also
			// survive, when the servers kept the session that zksession
			// already reported lost: delete it so that it cannot stand
			// before our new node for ever.
			if mine != "" {
				_ = e.sess.Delete(ctx, path.Join(e.dir, mine), -1)
				mine = ""
			}
			token = newID()
			name, err := e.create(ctx, token)
			if err != nil {
				if err := retry("joining the leader election", err); err != nil {
					return err
				}
				continue
			}
			mine, mineGen = name, gen
		}
		names, _, err := e.sess.Children(ctx, e.dir)
		if err != nil {
			if err := retry("listing leader election nodes", err); err != nil {
				return err
			}
			continue
		}
		cands := zksession.SortSequential(names, electionPrefix)
		idx := -1
		for i, n := range cands {
			if n == mine {
				idx = i
			}
		}
		if idx < 0 {
			e.log.Warn("our leader election node disappeared; joining again", "node", mine)
			mine = ""
			continue
		}
		if idx == 0 {
			if err := e.leadWhileValid(ctx, hints, changed, mine, gen); err != nil {
				return err
			}
			continue
		}
		pred := path.Join(e.dir, cands[idx-1])
		e.readLeader(ctx, path.Join(e.dir, cands[0]))
		if !e.watch(ctx, pred) {
			continue
		}
		e.log.Debug("following", "predecessor", pred)
		// Wait for the predecessor to go, or any session change.
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-changed:
				waiting = false
			case _, ok := <-hints.C():
				if !ok {
					return zksession.ErrClosed
				}
				b := hints.Take()
				if _, hit := b.Paths[pred]; hit || b.Lost || b.NewSession || b.Reconnected {
					waiting = false
				}
				if _, hit := b.Paths[path.Join(e.dir, cands[0])]; hit {
					waiting = false // the leader changed; refresh who it is
				}
			}
		}
	}
}

// leadWhileValid leads until the session changes state, our node goes
// away or ctx ends. It returns only ctx's error or ErrClosed.
func (e *elector) leadWhileValid(ctx context.Context, hints *zksession.Hints, changed <-chan struct{}, mine string, gen uint64) error {
	me := path.Join(e.dir, mine)
	if !e.watch(ctx, me) {
		return nil // look again
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	e.leading.Store(true)
	e.onState(true)
	e.log.Info("leading: running the background jobs", "node", me)
	go func() {
		defer close(done)
		e.lead(lctx)
	}()
	stop := func(why string) {
		e.leading.Store(false)
		cancel()
		e.onState(false)
		e.log.Info("no longer leading", "why", why)
		<-done
	}
	for {
		select {
		case <-ctx.Done():
			stop("shutting down")
			return ctx.Err()
		case <-changed:
			st, _ := e.sess.State()
			stop("session " + st.String())
			return nil
		case _, ok := <-hints.C():
			if !ok {
				stop("session closed")
				return zksession.ErrClosed
			}
			b := hints.Take()
			if b.Lost || b.NewSession || e.sess.Generation() != gen {
				stop("session lost")
				return nil
			}
			if _, hit := b.Paths[me]; hit {
				stop("our election node changed or disappeared")
				return nil
			}
		}
	}
}

// watch makes sure one watch is armed on the election node p and reports
// whether p exists. The loops above come back here after every session
// state change, and the client library adds a watch for every call that
// asks for one, each held until the node changes: GetW arms one only when
// none set through this session is armed on p (and none at all when p does
// not exist, unlike ExistsW, whose watch on a missing sequential node would
// never fire), so watches never pile up on a node that outlives many
// reconnections.
func (e *elector) watch(ctx context.Context, p string) bool {
	_, _, err := e.sess.GetW(ctx, p)
	return err == nil
}

// create makes our election node and returns its name. After a create
// whose outcome is unknown it looks for the node by its token first.
func (e *elector) create(ctx context.Context, token string) (string, error) {
	acl := e.sess.ACL()
	data, _ := json.Marshal(leaderData{ID: e.id}) // plain data: cannot fail
	prefix := electionPrefix + token + "_"
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		if err := retryPause(ctx, attempt); err != nil {
			return "", err
		}
		created, err := e.sess.Create(ctx, path.Join(e.dir, prefix), data, zksession.FlagEphemeral|zksession.FlagSequence, acl)
		if errors.Is(err, zksession.ErrNoNode) {
			if err := e.sess.EnsurePath(ctx, e.dir, acl); err != nil {
				return "", fmt.Errorf("creating %s: %w", e.dir, err)
			}
			continue
		}
		if err == nil {
			return path.Base(created), nil
		}
		if !zksession.IsUnknownOutcome(err) || ctx.Err() != nil {
			return "", fmt.Errorf("creating leader election node: %w", err)
		}
		if err := e.sess.WaitConnected(ctx); err != nil {
			return "", err
		}
		names, _, lerr := e.sess.Children(ctx, e.dir)
		if lerr != nil {
			continue
		}
		for _, n := range names {
			if strings.HasPrefix(n, prefix) {
				return n, nil
			}
		}
	}
	return "", errors.New("creating leader election node: giving up")
}

// readLeader records the id of the replica owning node p.
func (e *elector) readLeader(ctx context.Context, p string) {
	data, _, err := e.sess.Get(ctx, p)
	if err != nil {
		return
	}
	var d leaderData
	if json.Unmarshal(data, &d) == nil {
		e.setLeader(d.ID)
	}
}

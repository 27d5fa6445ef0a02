package zksession

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/go-zookeeper/zk"
)

// Errors re-exported so consumers need not import the client library for
// the common cases.
var (
	ErrNoNode     = zk.ErrNoNode
	ErrNodeExists = zk.ErrNodeExists
	ErrBadVersion = zk.ErrBadVersion
	ErrNotEmpty   = zk.ErrNotEmpty
	// ErrUnimplemented: the server does not know the request (for
	// example AddWatchRecursive on ZooKeeper before 3.6).
	ErrUnimplemented = zk.ErrUnimplemented
)

// Stat is a znode's stat.
type Stat = zk.Stat

// ACL is a znode access control entry.
type ACL = zk.ACL

// Flags for Create.
const (
	FlagPersistent = 0
	FlagEphemeral  = zk.FlagEphemeral
	FlagSequence   = zk.FlagSequence
)

// seqDigits is how many digits ZooKeeper appends to the name of a node
// created with FlagSequence: the parent's counter, zero-padded ("%010d").
const seqDigits = 10

// SequenceOf returns the sequence number ZooKeeper appended to the name
// of a node created with FlagSequence; ok is false when the name does not
// end in one.
func SequenceOf(name string) (seq int64, ok bool) {
	if len(name) < seqDigits {
		return 0, false
	}
	seq, err := strconv.ParseInt(name[len(name)-seqDigits:], 10, 64)
	return seq, err == nil && seq >= 0
}

// SortSequential returns, in a new slice, the names that start with
// prefix and end in a sequence number (see SequenceOf), lowest sequence
// first: the order in which the nodes were created under one parent.
func SortSequential(names []string, prefix string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if _, ok := SequenceOf(n); ok && strings.HasPrefix(n, prefix) && len(n) >= len(prefix)+seqDigits {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		x, _ := SequenceOf(a)
		y, _ := SequenceOf(b)
		return cmp.Compare(x, y)
	})
	return out
}

// IsUnknownOutcome reports whether err leaves the outcome of a write
// unknown: the request may or may not have been applied. Such writes must
// be re-read before they are retried.
func IsUnknownOutcome(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrSessionExpired) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// call runs f, which blocks in the client library, and returns early when
// ctx ends. The library call itself is not cancelled: it completes (or
// fails when the connection drops) in the background.
func call[T any](ctx context.Context, s *Session, f func(*zk.Conn) (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	s.mu.Lock()
	conn, closed := s.conn, s.closed
	s.mu.Unlock()
	if closed {
		return zero, ErrClosed
	}
	s.calls.Add(1)
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f(conn)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// read runs f, a read returning a value and the node's stat (see call);
// op names it in errors.
func read[T any](ctx context.Context, s *Session, op, p string, f func(*zk.Conn) (T, *Stat, error)) (T, *Stat, error) {
	type valueStat struct {
		v    T
		stat *Stat
	}
	r, err := call(ctx, s, func(c *zk.Conn) (valueStat, error) {
		v, st, err := f(c)
		return valueStat{v, st}, err
	})
	return r.v, r.stat, wrap(op, p, err)
}

// readW runs watched, a read that arms a one-shot watch, unless a watch
// with key set through this session is already armed: then it runs plain.
func readW[T any](ctx context.Context, s *Session, op, p string, key watchKey,
	plain func(context.Context, string) (T, *Stat, error), watched func(*zk.Conn) (T, *Stat, error)) (T, *Stat, error) {
	if !s.arm(key) {
		return plain(ctx, p)
	}
	v, st, err := read(ctx, s, op, p, watched)
	if err != nil {
		s.disarm(key)
	}
	return v, st, err
}

// Get reads a node.
func (s *Session) Get(ctx context.Context, p string) ([]byte, *Stat, error) {
	return read(ctx, s, "get", p, func(c *zk.Conn) ([]byte, *Stat, error) { return c.Get(p) })
}

// GetW reads a node and makes sure a data watch is armed on it: any later
// change or deletion produces a hint for the path. If a data watch set
// through this session is already armed, no second one is added.
func (s *Session) GetW(ctx context.Context, p string) ([]byte, *Stat, error) {
	return readW(ctx, s, "get", p, watchKey{path: p}, s.Get, func(c *zk.Conn) ([]byte, *Stat, error) {
		d, st, _, err := c.GetW(p)
		return d, st, err
	})
}

// Children lists a node's children.
func (s *Session) Children(ctx context.Context, p string) ([]string, *Stat, error) {
	return read(ctx, s, "list", p, func(c *zk.Conn) ([]string, *Stat, error) { return c.Children(p) })
}

// ChildrenW lists a node's children and makes sure a child watch is armed
// on it (see GetW).
func (s *Session) ChildrenW(ctx context.Context, p string) ([]string, *Stat, error) {
	return readW(ctx, s, "list", p, watchKey{path: p, child: true}, s.Children, func(c *zk.Conn) ([]string, *Stat, error) {
		ch, st, _, err := c.ChildrenW(p)
		return ch, st, err
	})
}

// AddWatchRecursive makes sure a persistent recursive watch (ZooKeeper
// 3.6+) is armed on p, which need not exist: from then on every creation,
// deletion and data change of p or of any node below it produces a hint
// for that node's path (no child events: a child's creation or deletion
// is reported on the child's path). Unlike one-shot watches it stays
// armed when it fires, so no change between an event and the next read
// goes unreported. It is lost with the connection: after every
// reconnection (a Reconnected hint) the caller must call it again before
// re-reading; until then it is not counted as armed. If one is already
// armed through this session, nothing is sent.
func (s *Session) AddWatchRecursive(ctx context.Context, p string) error {
	k := watchKey{path: p, recursive: true}
	if !s.arm(k) {
		return nil
	}
	_, err := call(ctx, s, func(c *zk.Conn) (struct{}, error) {
		return struct{}{}, c.AddWatch(p, zk.AddWatchModePersistentRecursive)
	})
	if err != nil {
		s.disarm(k)
	}
	return wrap("addWatch", p, err)
}

type existsStat struct {
	ok   bool
	stat *zk.Stat
}

// Exists tells whether a node exists.
func (s *Session) Exists(ctx context.Context, p string) (bool, *Stat, error) {
	r, err := call(ctx, s, func(c *zk.Conn) (existsStat, error) {
		ok, st, err := c.Exists(p)
		return existsStat{ok, st}, err
	})
	return r.ok, r.stat, wrap("stat", p, err)
}

// ExistsW tells whether a node exists and arms a watch that fires when it
// is created, changed or deleted. Unlike GetW it always adds a watch.
func (s *Session) ExistsW(ctx context.Context, p string) (bool, *Stat, error) {
	r, err := call(ctx, s, func(c *zk.Conn) (existsStat, error) {
		ok, st, _, err := c.ExistsW(p)
		return existsStat{ok, st}, err
	})
	return r.ok, r.stat, wrap("stat", p, err)
}

// Create creates a node and returns its actual path (sequential nodes get a
// suffix).
func (s *Session) Create(ctx context.Context, p string, data []byte, flags int32, acl []ACL) (string, error) {
	if acl == nil {
		acl = zk.WorldACL(zk.PermAll)
	}
	created, err := call(ctx, s, func(c *zk.Conn) (string, error) {
		return c.Create(p, data, flags, acl)
	})
	return created, wrap("create", p, err)
}

type aclStat struct {
	acl  []zk.ACL
	stat *zk.Stat
}

// GetACL reads a node's ACL.
func (s *Session) GetACL(ctx context.Context, p string) ([]ACL, *Stat, error) {
	r, err := call(ctx, s, func(c *zk.Conn) (aclStat, error) {
		acl, st, err := c.GetACL(p)
		return aclStat{acl, st}, err
	})
	return r.acl, r.stat, wrap("getACL", p, err)
}

// SetACL replaces a node's ACL; version (the stat's Aversion) -1 matches
// any version. It needs the ADMIN permission on the node.
func (s *Session) SetACL(ctx context.Context, p string, acl []ACL, version int32) (*Stat, error) {
	st, err := call(ctx, s, func(c *zk.Conn) (*zk.Stat, error) {
		return c.SetACL(p, acl, version)
	})
	return st, wrap("setACL", p, err)
}

// Set writes a node's data; version -1 matches any version.
func (s *Session) Set(ctx context.Context, p string, data []byte, version int32) (*Stat, error) {
	st, err := call(ctx, s, func(c *zk.Conn) (*zk.Stat, error) {
		return c.Set(p, data, version)
	})
	return st, wrap("set", p, err)
}

// Delete deletes a node; version -1 matches any version.
func (s *Session) Delete(ctx context.Context, p string, version int32) error {
	_, err := call(ctx, s, func(c *zk.Conn) (struct{}, error) {
		return struct{}{}, c.Delete(p, version)
	})
	return wrap("delete", p, err)
}

// Multi runs operations atomically.
func (s *Session) Multi(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	res, err := call(ctx, s, func(c *zk.Conn) ([]zk.MultiResponse, error) {
		return c.Multi(ops...)
	})
	if err != nil {
		return res, fmt.Errorf("zookeeper multi: %w", err)
	}
	return res, nil
}

// Sync makes the connected server catch up with the leader, so that a
// following read sees every write committed before the Sync.
func (s *Session) Sync(ctx context.Context, p string) error {
	_, err := call(ctx, s, func(c *zk.Conn) (string, error) { return c.Sync(p) })
	return wrap("sync", p, err)
}

// EnsurePath creates p and its missing parents as persistent nodes with acl.
func (s *Session) EnsurePath(ctx context.Context, p string, acl []ACL) error {
	if p == "/" || p == "" {
		return nil
	}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	cur := ""
	for _, part := range parts {
		cur = path.Join(cur, "/"+part)
		ok, _, err := s.Exists(ctx, cur)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		if _, err := s.Create(ctx, cur, nil, FlagPersistent, acl); err != nil && !errors.Is(err, ErrNodeExists) {
			return err
		}
	}
	return nil
}

// Calls returns how many requests the session has sent to ZooKeeper
// through its methods (a multi counts once).
func (s *Session) Calls() uint64 { return s.calls.Load() }

// Watches returns how many watches this session holds through GetW,
// ChildrenW (armed and not fired yet) and AddWatchRecursive; ExistsW
// watches are not counted. Each costs memory in the client and on the
// server.
func (s *Session) Watches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.armed)
}

func (s *Session) arm(k watchKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.armed[k]; ok {
		return false
	}
	s.armed[k] = struct{}{}
	return true
}

func (s *Session) disarm(k watchKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.armed, k)
}

func wrap(op, p string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("zookeeper %s %s: %w", op, p, err)
}

// ReadOp is one read of a MultiRead: Path's data and stat, or, with
// Children, Path's children.
type ReadOp = zk.ReadOp

// ReadResult is the outcome of one ReadOp: its own Error (ErrNoNode when
// the node does not exist), else Data and Stat, or Children.
type ReadResult = zk.ReadResult

// MultiRead runs reads in one request (ZooKeeper 3.6+ multiRead) and
// returns their results in the order of ops; it arms no watch. A failed
// operation does not fail the others: its error is in its result. The
// returned error is the call's (connection lost, ctx ended). Against a
// server before 3.6 (or with Config.NoMultiRead) the reads are sent as
// one request each, all at once, with the same results. The results may
// come from different points in time: like separate Gets, not a
// consistent view.
func (s *Session) MultiRead(ctx context.Context, ops []ReadOp) ([]ReadResult, error) {
	res, err := call(ctx, s, func(c *zk.Conn) ([]ReadResult, error) {
		return c.MultiRead(ops...)
	})
	if err != nil {
		first := ""
		if len(ops) > 0 {
			first = ops[0].Path
		}
		return nil, fmt.Errorf("zookeeper multiRead of %d nodes (first %s): %w", len(ops), first, err)
	}
	return res, nil
}

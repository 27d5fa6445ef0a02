// Package zkacl checks, and repairs, the ACLs of zkgate's own nodes when
// zookeeper.auth is set (README.md, Security). zkgate creates its nodes
// with an ACL that lets only its credentials change them and everyone
// read them, but nodes created before the credentials were configured
// keep the open ACL (world:anyone:cdrwa): anyone could then write a mark
// or forge an audit entry. The controller and the gateways run Repair on
// start, before they write anything.
package zkacl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/zksession"
)

// Nodes is the part of a ZooKeeper session Repair uses. Every method
// blocks until the server answered or ctx ended; errors wrap the client
// library's (zk.ErrNoNode, zk.ErrNoAuth, …).
type Nodes interface {
	// GetACL reads a node's ACL and stat.
	GetACL(ctx context.Context, p string) ([]zksession.ACL, *zksession.Stat, error)
	// SetACL replaces a node's ACL (version -1: any); it needs ADMIN.
	SetACL(ctx context.Context, p string, acl []zksession.ACL, version int32) (*zksession.Stat, error)
	// Children lists a node's children.
	Children(ctx context.Context, p string) ([]string, *zksession.Stat, error)
}

// Target is a node whose ACL Repair checks; with Tree, every node below it
// as well.
type Target struct {
	Path string
	Tree bool
}

// Policy is the ACL zkgate's nodes must have: Want, which gives Self (the
// configured credentials' identity) every permission and everyone else
// read. It matches zksession.Session.ACL.
type Policy struct {
	Want []zksession.ACL
	Self zksession.ACL
}

// DigestPolicy is the policy for digest credentials.
func DigestPolicy(username, password string) Policy {
	self := zk.DigestACL(zk.PermAll, username, password)[0]
	return Policy{Want: []zksession.ACL{self, zk.WorldACL(zk.PermRead)[0]}, Self: self}
}

// Sound reports whether acl is what the policy needs: the credentials may
// do everything, and nobody else more than read.
func (p Policy) Sound(acl []zksession.ACL) bool {
	selfAll := false
	for _, a := range acl {
		if a.Scheme == p.Self.Scheme && a.ID == p.Self.ID {
			selfAll = selfAll || a.Perms&zk.PermAll == zk.PermAll
			continue
		}
		if a.Perms&^zk.PermRead != 0 {
			return false
		}
	}
	return selfAll
}

// Repair checks the ACL of every target (and, for trees, of every node
// below) and sets the policy's ACL on those that are not sound. Missing
// nodes are skipped: zkgate creates them with the right ACL. It returns
// the paths it repaired, and fails, naming the node, when a node cannot
// be read or repaired with the credentials (no ADMIN permission for
// them): a daemon must then refuse to start rather than trust nodes
// others may write.
func Repair(ctx context.Context, n Nodes, pol Policy, targets []Target) ([]string, error) {
	var repaired []string
	var visit func(p string, tree bool) error
	visit = func(p string, tree bool) error {
		acl, _, err := n.GetACL(ctx, p)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return cannot(p, "reading its ACL", err, pol)
		}
		if !pol.Sound(acl) {
			if _, err := n.SetACL(ctx, p, pol.Want, -1); err != nil {
				if errors.Is(err, zk.ErrNoNode) {
					return nil
				}
				return cannot(p, "repairing its ACL "+Format(acl), err, pol)
			}
			repaired = append(repaired, p)
		}
		if !tree {
			return nil
		}
		kids, _, err := n.Children(ctx, p)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return cannot(p, "listing its children", err, pol)
		}
		for _, k := range kids {
			if err := visit(path.Join(p, k), true); err != nil {
				return err
			}
		}
		return nil
	}
	for _, t := range targets {
		if err := visit(t.Path, t.Tree); err != nil {
			return repaired, err
		}
	}
	return repaired, nil
}

func cannot(p, doing string, err error, pol Policy) error {
	if errors.Is(err, zk.ErrNoAuth) {
		return fmt.Errorf("zookeeper node %s: %s: the zookeeper.auth credentials are not allowed to; give it the ACL %s (zkCli setAcl) or remove it", p, doing, Format(pol.Want))
	}
	return fmt.Errorf("zookeeper node %s: %s: %w", p, doing, err)
}

// Format writes an ACL the way zkCli does: scheme:id:perms, comma-separated.
func Format(acl []zksession.ACL) string {
	parts := make([]string, len(acl))
	for i, a := range acl {
		var b strings.Builder
		for _, pc := range []struct {
			p int32
			c byte
		}{{zk.PermCreate, 'c'}, {zk.PermDelete, 'd'}, {zk.PermRead, 'r'}, {zk.PermWrite, 'w'}, {zk.PermAdmin, 'a'}} {
			if a.Perms&pc.p != 0 {
				b.WriteByte(pc.c)
			}
		}
		parts[i] = a.Scheme + ":" + a.ID + ":" + b.String()
	}
	return strings.Join(parts, ",")
}

// Session is what AtStart needs of the session: Nodes, and waiting for it
// to connect.
type Session interface {
	Nodes
	// WaitConnected blocks until the session is connected or ctx ends.
	WaitConnected(ctx context.Context) error
}

// AtStart runs Repair for a daemon that is starting. When the session
// connects within wait it repairs at once and returns Repair's error (the
// daemon refuses to start). Otherwise ZooKeeper is not reachable yet and
// the daemon starts anyway (static stability); later is then non-nil: run
// it as a component, it waits for the connection and repairs, and its
// error stops the daemon.
func AtStart(ctx context.Context, sess Session, pol Policy, targets []Target, wait time.Duration, log *slog.Logger) (later func(context.Context) error, err error) {
	run := func(ctx context.Context) error {
		for {
			repaired, err := Repair(ctx, sess, pol, targets)
			for _, p := range repaired {
				log.Warn("zookeeper node had an ACL letting others than zkgate's credentials change it: repaired", "node", p, "acl", Format(pol.Want))
			}
			if err == nil || ctx.Err() != nil || !zksession.IsUnknownOutcome(err) {
				return err
			}
			// The connection dropped during the walk: again once back.
			if err := sess.WaitConnected(ctx); err != nil {
				return err
			}
		}
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	werr := sess.WaitConnected(wctx)
	cancel()
	if werr == nil {
		return nil, run(ctx)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	log.Warn("ZooKeeper not reachable yet: the ACLs of zkgate's nodes will be checked once it is", "waited", wait)
	return func(ctx context.Context) error {
		if err := sess.WaitConnected(ctx); err != nil {
			return err
		}
		return run(ctx)
	}, nil
}

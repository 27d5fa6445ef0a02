package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/zksession"
)

// The leader's background jobs. They run only while this replica leads
// (see elector) and act on the caches' snapshots, re-checking each mark in
// ZooKeeper before deleting it (a conditional delete on the version that
// was judged):
//
//   - a mark whose address registered again after it (registration czxid >
//     mark mzxid) is deleted once every live gateway has acknowledged the
//     new registration through its presence report: it lists that very
//     version of the mark (applied mzxid == mark mzxid) with the instance in
//     a state other than draining, drained or absent, i.e. it routes by the
//     new registration, or it has no route for the service (see
//     unacknowledged). Gateways whose presence node goes away do not block.
//     So a mark outlives the re-registration until every gateway has seen
//     it, and "the mark is gone" tells a client (zkgate rollout) that every
//     gateway routes to the instance again. If some gateway has not
//     acknowledged within Options.ReregisterAckBound of this leader first
//     seeing the re-registration, the mark is deleted anyway (the zxid rule
//     already puts the instance back wherever the registration was seen),
//     with a warning naming the gateways and the clearing counted as
//     zkgate_controller_marks_cleared_total{why="reregistered_bound"};
//   - a mark whose TTL passed is deleted;
//   - a mark whose address has been absent from the registry for longer
//     than controller.absent_grace (as observed by this leader) is deleted;
//   - every controller.reconcile_interval everything is re-read (Resync on
//     the caches) and the same rules are applied to the fresh state — the
//     snapshots of full re-reads begun after the request, as their Resync
//     tickets tell, not merely newer revisions (see fresh) — which repairs
//     whatever watch events were missed; empty service directories under
//     the marks root are removed and the audit trail is trimmed.

type markKey struct{ service, addr string }

// jobState is one leadership term's memory.
type jobState struct {
	// absentSince is when this leader first saw a marked address absent
	// from the registry.
	absentSince map[markKey]time.Time
	// reregSince is when this leader first saw a marked address registered
	// again after the mark version mzxid.
	reregSince map[markKey]reregSeen
}

type reregSeen struct {
	mzxid int64
	since time.Time
}

// runJobs runs the jobs until ctx ends (leadership lost or shutdown).
func (c *Controller) runJobs(ctx context.Context) {
	st := &jobState{absentSince: map[markKey]time.Time{}, reregSince: map[markKey]reregSeen{}}
	interval := c.cfg.Controller.ReconcileInterval
	reconcile := time.NewTicker(interval)
	defer reconcile.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// A new leader distrusts its caches: start with a reconciliation.
	c.reconcile(ctx, st)
	for {
		wake := c.changed.Wait()
		next, _ := c.applyRules(ctx, st)
		if ctx.Err() != nil {
			return
		}
		wait := time.Hour
		if !next.IsZero() {
			// A little late rather than early: the rules compare with now.
			wait = max(next.Sub(c.now())+5*time.Millisecond, 5*time.Millisecond)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-timer.C:
		case <-reconcile.C:
			c.reconcile(ctx, st)
		}
	}
}

// applyRules applies the rules to the current snapshots once. It returns
// when the rules should be applied again at the latest (zero: no deadline)
// and how many marks were cleared because their address registered again
// and every gateway acknowledged it.
func (c *Controller) applyRules(ctx context.Context, st *jobState) (next time.Time, reregistered int) {
	rs, ms := c.reg.Snapshot(), c.marks.Snapshot()
	if rs == nil || ms == nil {
		return time.Time{}, 0 // not loaded yet
	}
	if s, _ := c.sess.State(); s != zksession.StateConnected {
		return time.Time{}, 0
	}
	gws, gwsLoaded := c.presence.Gateways(), c.presence.Loaded()
	now := c.now()
	grace := c.cfg.Controller.AbsentGrace
	bound := c.opts.ReregisterAckBound
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	seen := map[markKey]bool{}
	for service, byAddr := range ms.Marks {
		for addr, m := range byAddr {
			if ctx.Err() != nil {
				return time.Time{}, reregistered
			}
			k := markKey{service, addr}
			seen[k] = true
			in, registered := rs.Lookup(service, addr)
			// A registration re-created after a session flap (same
			// incarnation as the mark recorded) is not a re-registration.
			rereg := registered && m.EndedBy(in)
			if !rereg {
				delete(st.reregSince, k)
			}
			switch {
			case rereg:
				delete(st.absentSince, k)
				first := st.reregSince[k]
				if first.mzxid != m.Mzxid {
					first = reregSeen{mzxid: m.Mzxid, since: now}
					st.reregSince[k] = first
				}
				waiting := []string{"(the gateways' presence is not loaded yet)"}
				if gwsLoaded {
					waiting = unacknowledged(service, addr, m.Mzxid, gws)
				}
				what := fmt.Sprintf("instance registered again after the mark (registration czxid %d > mark mzxid %d, node %s, incarnation %q, the mark's %q)", in.Czxid, m.Mzxid, in.Node, in.Incarnation, m.Incarnation)
				if len(waiting) == 0 {
					delete(st.reregSince, k)
					if c.clearMark(ctx, m, "reregistered", ctlclient.AuditClearReregistered,
						fmt.Sprintf("%s; every live gateway (%d) acknowledged it", what, len(gws))) {
						reregistered++
					}
					continue
				}
				if now.Sub(first.since) >= bound {
					delete(st.reregSince, k)
					if c.clearMark(ctx, m, "reregistered_bound", ctlclient.AuditClearReregistered,
						fmt.Sprintf("%s; not acknowledged within %s by gateway(s) %s", what, bound, strings.Join(waiting, ", "))) {
						c.log.Warn("mark of a re-registered instance cleared although some gateways never acknowledged the new registration",
							"service", service, "addr", addr, "bound", bound, "unacknowledged", waiting)
					}
					continue
				}
				if m.Expired(now) {
					delete(st.reregSince, k)
					c.clearMark(ctx, m, "expired", ctlclient.AuditExpire,
						fmt.Sprintf("TTL passed (expired at %s)", time.UnixMilli(m.ExpiresMs).UTC().Format(time.RFC3339Nano)))
					continue
				}
				soonest(first.since.Add(bound))
			case m.Expired(now):
				delete(st.absentSince, k)
				c.clearMark(ctx, m, "expired", ctlclient.AuditExpire,
					fmt.Sprintf("TTL passed (expired at %s)", time.UnixMilli(m.ExpiresMs).UTC().Format(time.RFC3339Nano)))
				continue
			case !registered:
				since, ok := st.absentSince[k]
				if !ok {
					since = now
					st.absentSince[k] = since
				}
				if now.Sub(since) >= grace {
					delete(st.absentSince, k)
					c.clearMark(ctx, m, "absent", ctlclient.AuditClearAbsent,
						fmt.Sprintf("address absent from the registry for more than %s", grace))
					continue
				}
				soonest(since.Add(grace))
			default:
				delete(st.absentSince, k)
			}
			if m.ExpiresMs > 0 {
				soonest(time.UnixMilli(m.ExpiresMs))
			}
		}
	}
	for k := range st.absentSince {
		if !seen[k] {
			delete(st.absentSince, k)
		}
	}
	for k := range st.reregSince {
		if !seen[k] {
			delete(st.reregSince, k)
		}
	}
	return next, reregistered
}

// clearMark deletes m if it is still the version judged, records the
// change and reports whether it deleted it.
func (c *Controller) clearMark(ctx context.Context, m marks.Mark, why, action, detail string) bool {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	prev, deleted, err := c.store.deleteMark(wctx, m.Service, m.Addr, m.Mzxid)
	if errors.Is(err, errChanged) {
		c.log.Debug("mark changed before it could be cleared; judging it again", "service", m.Service, "addr", m.Addr)
		return false
	}
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("clearing mark failed", "service", m.Service, "addr", m.Addr, "why", why, "err", err)
		}
		return false
	}
	if !deleted {
		return false
	}
	c.metrics.marksCleared.WithLabelValues(why).Inc()
	c.log.Info("mark cleared", "service", m.Service, "addr", m.Addr, "why", why, "detail", detail)
	actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer acancel()
	c.audit.Record(actx, ctlclient.AuditEntry{
		By: "controller:" + c.id, Action: action, Service: m.Service, Addr: m.Addr,
		Reason: prev.Reason, DeployID: prev.DeployID, Detail: detail,
	})
	return true
}

// reconcile re-reads everything and applies the rules to the fresh state.
func (c *Controller) reconcile(ctx context.Context, st *jobState) {
	c.metrics.reconciles.Inc()
	want := progress{loaded: true, registry: c.reg.Resync(), marks: c.marks.Resync()}
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		wake := c.changed.Wait()
		if fresh(want, c.resyncProgress()) {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			c.log.Warn("reconciliation: the caches did not re-read in time; applying the rules to what they have")
		case <-wake:
			continue
		}
		break
	}
	if _, n := c.applyRules(ctx, st); n > 0 {
		c.metrics.repairs.Add(float64(n))
		c.log.Warn("reconciliation cleared marks whose clearing events were missed", "marks", n)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.store.pruneEmptyServices(wctx); err != nil && ctx.Err() == nil {
		c.log.Warn("pruning empty mark directories failed", "err", err)
	}
	if err := c.audit.trim(wctx); err != nil && ctx.Err() == nil {
		c.log.Warn("trimming the audit trail failed", "err", err)
	}
}

// progress says how far the registry and marks caches are, from their
// snapshots.
type progress struct {
	// loaded: both caches have a snapshot.
	loaded bool
	// registry and marks are the Resync tickets that the caches' latest
	// full re-reads cover (Snapshot.ResyncTicket).
	registry, marks uint64
	// registryResyncs and marksResyncs count the full re-reads completed
	// (Snapshot.Resyncs).
	registryResyncs, marksResyncs uint64
}

// fresh reports whether both caches' snapshots come from full re-reads
// that began after the Resync calls whose tickets want holds (or from
// later changes on top of them). A new revision alone proves nothing:
// watch events publish revisions too, and they repair nothing that was
// missed; nor does a count of completed re-reads, since a re-read already
// running when reconcile asked may complete after the request and still
// miss what changed before it.
func fresh(want, now progress) bool {
	return now.loaded && now.registry >= want.registry && now.marks >= want.marks
}

// resyncProgress reads the caches' progress from their snapshots.
func (c *Controller) resyncProgress() progress {
	rs, ms := c.reg.Snapshot(), c.marks.Snapshot()
	if rs == nil || ms == nil {
		return progress{}
	}
	return progress{
		loaded: true, registry: rs.ResyncTicket, marks: ms.ResyncTicket,
		registryResyncs: rs.Resyncs, marksResyncs: ms.Resyncs,
	}
}

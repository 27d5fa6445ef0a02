package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/presence"
	"github.com/zkgate/zkgate/internal/registry"
	"github.com/zkgate/zkgate/internal/zksession"
)

// errSessionGone says the controller's own ZooKeeper session was lost or
// closed during a wait: its view of the gateways is stale, so it cannot
// confirm anything. The API answers 503 and a client tries another replica.
var errSessionGone = errors.New("the controller lost its ZooKeeper session; ask another replica")

// errStopping says the replica is shutting down during a wait (503).
var errStopping = errors.New("the controller is shutting down; ask another replica")

// tracked is one gateway taking part in a drain: one that was live (had a
// presence node) when the drain started.
type tracked struct {
	id string
	// session is the presence node's owner when the drain started: a node
	// re-created by another session means the gateway lost its session.
	session int64
	lost    bool
	view    ctlclient.GatewayDrain
}

// drainWait follows one drain until it is confirmed.
type drainWait struct {
	service, addr string
	mzxid         int64
	start         time.Time
	gateways      []*tracked
	// markSeen: the marks cache has shown our mark (or a newer version);
	// after that, its absence means the mark was deleted.
	markSeen bool
}

func newDrainWait(service, addr string, mzxid int64, start time.Time, live map[string]presence.Report) *drainWait {
	w := &drainWait{service: service, addr: addr, mzxid: mzxid, start: start}
	ids := make([]string, 0, len(live))
	for id := range live {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		w.gateways = append(w.gateways, &tracked{
			id: id, session: live[id].Session,
			view: ctlclient.GatewayDrain{ID: id, State: ctlclient.GatewayPending},
		})
	}
	return w
}

// observe updates every tracked gateway from the current reports and says
// whether the drain is over and with which status ("" while it goes on).
//
// A gateway is drained when its report lists the mark with an applied
// mzxid ≥ ours (the zxid rule makes a newer version of the mark at least as
// strong) and zero requests in flight, in state draining, drained or
// absent. A gateway whose presence node is gone, or owned by another
// session, is lost for good: it is never counted as acknowledged.
func (w *drainWait) observe(now time.Time, live map[string]presence.Report, reg *registry.Snapshot, mk *marks.Snapshot) string {
	elapsed := now.Sub(w.start).Milliseconds()
	if elapsed <= 0 {
		elapsed = 1 // 0 means "not yet" in the views
	}
	allDone, anyLost := true, false
	for _, g := range w.gateways {
		if g.lost {
			anyLost = true
			continue
		}
		rep, ok := live[g.id]
		if !ok || rep.Session != g.session {
			g.lost = true
			g.view.State = ctlclient.GatewayLost
			anyLost = true
			continue
		}
		am, ok := rep.Find(w.service, w.addr)
		if !ok || am.Mzxid < w.mzxid {
			g.view.State = ctlclient.GatewayPending
			allDone = false
			continue
		}
		g.view.AppliedMzxid = am.Mzxid
		g.view.InFlight = am.InFlight
		if g.view.AppliedMs == 0 {
			g.view.AppliedMs = elapsed
		}
		switch {
		case !presence.Quiesced(am.State):
			// The mark does not keep the instance out there: it registered
			// again after it, the gateway fails open to it, or the mark
			// expired. Not confirmed.
			g.view.State = ctlclient.GatewayServing
			if am.State == presence.StateFailOpen {
				g.view.State = presence.StateFailOpen
			}
			allDone = false
		case am.InFlight > 0:
			g.view.State = ctlclient.GatewayDraining
			allDone = false
		default:
			g.view.State = ctlclient.GatewayDrained
			if g.view.DrainedMs == 0 {
				g.view.DrainedMs = elapsed
			}
		}
	}
	if w.superseded(reg, mk) {
		return ctlclient.StatusSuperseded
	}
	switch {
	case allDone && anyLost:
		return ctlclient.StatusLost
	case allDone:
		return ctlclient.StatusDrained
	}
	return ""
}

// superseded reports whether our mark stopped applying: the instance
// registered again after it, or the mark was deleted after the marks cache
// had shown it.
func (w *drainWait) superseded(reg *registry.Snapshot, mk *marks.Snapshot) bool {
	if in, ok := reg.Lookup(w.service, w.addr); ok && in.Czxid > w.mzxid {
		return true
	}
	if mk == nil {
		return false
	}
	m, ok := mk.Get(w.service, w.addr)
	if ok && m.Mzxid >= w.mzxid {
		w.markSeen = true
		return false
	}
	return w.markSeen && !ok
}

// views returns the per-gateway detail.
func (w *drainWait) views() []ctlclient.GatewayDrain {
	out := make([]ctlclient.GatewayDrain, 0, len(w.gateways))
	for _, g := range w.gateways {
		out = append(out, g.view)
	}
	return out
}

// message explains a status in one line.
func (w *drainWait) message(status string, timeout time.Duration) string {
	var waiting, lost []string
	for _, g := range w.gateways {
		switch g.view.State {
		case ctlclient.GatewayLost:
			lost = append(lost, g.id)
		case ctlclient.GatewayDrained:
		case ctlclient.GatewayDraining:
			waiting = append(waiting, fmt.Sprintf("%s draining (%d in flight)", g.id, g.view.InFlight))
		default:
			waiting = append(waiting, g.id+" "+g.view.State)
		}
	}
	switch status {
	case ctlclient.StatusDrained:
		if len(w.gateways) == 0 {
			return "no gateway is live: nothing to wait for"
		}
		return fmt.Sprintf("every gateway (%d) applied the mark and has nothing in flight", len(w.gateways))
	case ctlclient.StatusLost:
		return fmt.Sprintf("not confirmed: gateway(s) %s lost their ZooKeeper session during the drain", strings.Join(lost, ", "))
	case ctlclient.StatusSuperseded:
		return "the mark no longer applies: it was removed, or the instance registered again after it"
	case ctlclient.StatusTimeout:
		msg := fmt.Sprintf("not confirmed within %s", timeout)
		if len(waiting) > 0 {
			msg += ": " + strings.Join(waiting, ", ")
		}
		if len(lost) > 0 {
			msg += "; lost: " + strings.Join(lost, ", ")
		}
		return msg
	}
	return ""
}

// waitDrained waits until the drain of service/addr at mark version mzxid
// is confirmed, is over otherwise, or timeout passes, and never answers
// "drained" before minWait. It reacts to every cache update (no polling).
func (c *Controller) waitDrained(ctx context.Context, service, addr string, mzxid int64, start time.Time, timeout, minWait time.Duration) (status string, w *drainWait, err error) {
	deadline := time.NewTimer(max(timeout-time.Since(start), 0))
	defer deadline.Stop()
	// The gateways live at the start are those of the presence watcher's
	// first complete view.
	for !c.presence.Loaded() {
		wake := c.changed.Wait()
		if c.presence.Loaded() {
			break
		}
		select {
		case <-ctx.Done():
			return "", nil, ctx.Err()
		case <-c.stopping:
			return "", nil, errStopping
		case <-deadline.C:
			w = newDrainWait(service, addr, mzxid, start, nil)
			return ctlclient.StatusTimeout, w, nil
		case <-wake:
		}
	}
	w = newDrainWait(service, addr, mzxid, start, c.presence.Gateways())
	var minTimer <-chan time.Time
	for {
		wake := c.changed.Wait()
		if s, _ := c.sess.State(); s == zksession.StateLost || s == zksession.StateClosed {
			return "", w, errSessionGone
		}
		status = w.observe(time.Now(), c.presence.Gateways(), c.reg.Snapshot(), c.marks.Snapshot())
		if status == ctlclient.StatusDrained && time.Since(start) < minWait {
			if minTimer == nil {
				minTimer = time.After(minWait - time.Since(start))
			}
			status = ""
		}
		if status != "" {
			return status, w, nil
		}
		select {
		case <-ctx.Done():
			return "", w, ctx.Err()
		case <-c.stopping:
			return "", w, errStopping
		case <-deadline.C:
			if status := w.observe(time.Now(), c.presence.Gateways(), c.reg.Snapshot(), c.marks.Snapshot()); status != "" {
				return status, w, nil
			}
			return ctlclient.StatusTimeout, w, nil
		case <-wake:
		case <-minTimer:
			minTimer = nil
		}
	}
}

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
// presence node) when the drain started, or that had departed without a
// graceful shutdown less than the departed window before.
type tracked struct {
	id   string
	view ctlclient.GatewayDrain
}

// drainWait follows one drain until it is confirmed.
type drainWait struct {
	service, addr string
	mzxid         int64
	// inc is the registration incarnation the mark recorded (marks.Mark):
	// a re-created registration with it does not supersede the drain.
	inc   string
	start time.Time
	// window is the presence watcher's departed window (for messages).
	window   time.Duration
	gateways []*tracked
	// markSeen: the marks cache has shown our mark (or a newer version);
	// after that, its absence means the mark was deleted.
	markSeen bool
	// onlyLost: at the last observe, every tracked gateway was drained or
	// gone except lost ones (and at least one was lost).
	onlyLost bool
}

// blockingDepartures keeps the departures that may still route: those
// without a graceful shutdown whose process was not found gone.
func blockingDepartures(departed map[string]presence.Departure) map[string]presence.Departure {
	out := make(map[string]presence.Departure, len(departed))
	for id, d := range departed {
		if d.MayRoute() {
			out[id] = d
		}
	}
	return out
}

func newDrainWait(service, addr string, mzxid int64, start time.Time, window time.Duration, live map[string]presence.Report, departed map[string]presence.Departure) *drainWait {
	w := &drainWait{service: service, addr: addr, mzxid: mzxid, start: start, window: window}
	seen := map[string]bool{}
	var ids []string
	for id := range live {
		seen[id] = true
		ids = append(ids, id)
	}
	for id := range blockingDepartures(departed) {
		if !seen[id] {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		w.gateways = append(w.gateways, &tracked{
			id:   id,
			view: ctlclient.GatewayDrain{ID: id, State: ctlclient.GatewayPending},
		})
	}
	return w
}

// observe updates every tracked gateway from the current reports and
// departures and says whether the drain is over and with which status (""
// while it goes on; see final for the answer at the deadline).
//
// A live gateway is judged by its current report, whatever its session:
// it is drained when the report lists the mark with an applied mzxid ≥ ours
// (the zxid rule makes a newer version of the mark at least as strong) and
// zero requests in flight, in state draining, drained, absent or unrouted.
// A gateway whose report cannot be decoded stays pending. A gateway whose
// presence node disappeared without a graceful shutdown less than the
// departed window ago is lost: it may still route by its last state, so
// it blocks the confirmation until it comes back (with any session) and
// reports the mark applied, until a probe finds its process gone, or until
// the window passes. A gateway that left gracefully, whose process is
// gone, or that departed longer ago, is gone and not waited for.
func (w *drainWait) observe(now time.Time, live map[string]presence.Report, departed map[string]presence.Departure, reg *registry.Snapshot, mk *marks.Snapshot) string {
	elapsed := now.Sub(w.start).Milliseconds()
	if elapsed <= 0 {
		elapsed = 1 // 0 means "not yet" in the views
	}
	allDone, anyLost := true, false
	for _, g := range w.gateways {
		rep, ok := live[g.id]
		if !ok {
			d, dok := departed[g.id]
			if dok {
				g.view.DepartedMs = d.At.UnixMilli()
			}
			g.view.Error = ""
			g.view.Detail = ""
			if dok {
				g.view.Detail = d.Gone
				if d.MayRoute() {
					g.view.Detail = d.Probe
				}
			}
			if dok && d.MayRoute() {
				g.view.State = ctlclient.GatewayLost
				anyLost = true
			} else {
				g.view.State = ctlclient.GatewayGone
			}
			continue
		}
		g.view.DepartedMs = 0
		g.view.Detail = ""
		g.view.Error = rep.Malformed
		if rep.Malformed != "" {
			g.view.State = ctlclient.GatewayPending
			allDone = false
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
	w.onlyLost = allDone && anyLost
	if w.superseded(reg, mk) {
		return ctlclient.StatusSuperseded
	}
	if allDone && !anyLost {
		return ctlclient.StatusDrained
	}
	return ""
}

// final is the status when the wait ends without a confirmation: lost when
// only lost gateways kept it from being confirmed, timeout otherwise.
func (w *drainWait) final() string {
	if w.onlyLost {
		return ctlclient.StatusLost
	}
	return ctlclient.StatusTimeout
}

// superseded reports whether our mark stopped applying: the instance
// registered anew after it (marks.Reregistered: a session flap that
// re-creates the drained registration does not count), or the mark was deleted after the marks cache
// had shown it.
func (w *drainWait) superseded(reg *registry.Snapshot, mk *marks.Snapshot) bool {
	if in, ok := reg.Lookup(w.service, w.addr); ok && marks.Reregistered(in.Czxid, in.Incarnation, w.mzxid, w.inc) {
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
	var waiting, lost, gone []string
	for _, g := range w.gateways {
		switch g.view.State {
		case ctlclient.GatewayLost:
			lost = append(lost, g.id)
		case ctlclient.GatewayGone:
			gone = append(gone, g.id)
		case ctlclient.GatewayDrained:
		case ctlclient.GatewayDraining:
			waiting = append(waiting, fmt.Sprintf("%s draining (%d in flight)", g.id, g.view.InFlight))
		default:
			what := g.id + " " + g.view.State
			if g.view.Error != "" {
				what += " (" + g.view.Error + ")"
			}
			waiting = append(waiting, what)
		}
	}
	lostWhy := fmt.Sprintf("gateway(s) %s lost their ZooKeeper session without a graceful shutdown less than %s (controller.departed_window) ago and may still route by their last state",
		strings.Join(lost, ", "), w.window)
	switch status {
	case ctlclient.StatusDrained:
		if len(w.gateways) == 0 {
			return "no gateway is live: nothing to wait for"
		}
		msg := fmt.Sprintf("every gateway (%d) applied the mark and has nothing in flight", len(w.gateways)-len(gone))
		if len(gone) > 0 {
			msg += fmt.Sprintf("; gone and not waited for (shut down, process gone, or departed more than %s ago): %s", w.window, strings.Join(gone, ", "))
		}
		return msg
	case ctlclient.StatusLost:
		return fmt.Sprintf("not confirmed within %s: %s; every other gateway applied the mark and has nothing in flight", timeout, lostWhy)
	case ctlclient.StatusSuperseded:
		return "the mark no longer applies: it was removed, or the instance registered again after it"
	case ctlclient.StatusTimeout:
		msg := fmt.Sprintf("not confirmed within %s", timeout)
		if len(waiting) > 0 {
			msg += ": " + strings.Join(waiting, ", ")
		}
		if len(lost) > 0 {
			msg += "; lost: " + lostWhy
		}
		return msg
	}
	return ""
}

// waitDrained waits until the drain of service/addr at mark version mzxid
// (which recorded the registration incarnation inc) is confirmed, is over otherwise, or timeout passes, and never answers
// "drained" before minWait. It reacts to every cache update (no polling),
// and to the end of the departed window of every lost gateway.
func (c *Controller) waitDrained(ctx context.Context, service, addr string, mzxid int64, inc string, start time.Time, timeout, minWait time.Duration) (status string, w *drainWait, err error) {
	deadline := time.NewTimer(max(timeout-time.Since(start), 0))
	defer deadline.Stop()
	window := c.presence.DepartedWindow()
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
			w = newDrainWait(service, addr, mzxid, start, window, nil, nil)
			w.inc = inc
			return ctlclient.StatusTimeout, w, nil
		case <-wake:
		}
	}
	w = newDrainWait(service, addr, mzxid, start, window, c.presence.Gateways(), c.presence.Departed())
	w.inc = inc
	var minTimer <-chan time.Time
	windowTimer := time.NewTimer(time.Hour)
	defer windowTimer.Stop()
	for {
		wake := c.changed.Wait()
		if s, _ := c.sess.State(); s == zksession.StateLost || s == zksession.StateClosed {
			return "", w, errSessionGone
		}
		departed := c.presence.Departed()
		status = w.observe(time.Now(), c.presence.Gateways(), departed, c.reg.Snapshot(), c.marks.Snapshot())
		if status == ctlclient.StatusDrained && time.Since(start) < minWait {
			if minTimer == nil {
				minTimer = time.After(minWait - time.Since(start))
			}
			status = ""
		}
		if status != "" {
			return status, w, nil
		}
		// Look again when the first lost gateway's window ends (no cache
		// changes then).
		resetTimer(windowTimer, c.nextWindowEnd(w, departed))
		select {
		case <-ctx.Done():
			return "", w, ctx.Err()
		case <-c.stopping:
			return "", w, errStopping
		case <-deadline.C:
			if status := w.observe(time.Now(), c.presence.Gateways(), c.presence.Departed(), c.reg.Snapshot(), c.marks.Snapshot()); status != "" {
				return status, w, nil
			}
			return w.final(), w, nil
		case <-wake:
		case <-minTimer:
			minTimer = nil
		case <-windowTimer.C:
		}
	}
}

// nextWindowEnd returns how long until the departed window of the first
// tracked lost gateway ends (an hour when none is lost).
func (c *Controller) nextWindowEnd(w *drainWait, departed map[string]presence.Departure) time.Duration {
	next := time.Hour
	now := c.now()
	for _, g := range w.gateways {
		if g.view.State != ctlclient.GatewayLost {
			continue
		}
		if d, ok := departed[g.id]; ok {
			// A little late rather than early: the watcher compares with now.
			next = min(next, max(d.At.Add(w.window).Sub(now)+5*time.Millisecond, time.Millisecond))
		}
	}
	return next
}

// resetTimer stops t, drains it and arms it for d.
func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

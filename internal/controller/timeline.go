package controller

import (
	"context"
	"sync"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/instancestate"
	"github.com/zkgate/zkgate/internal/marks"
)

// Timelines (README.md, Controller API: timeline): every replica keeps, in
// memory, the state changes of the instances that were marked since it
// started — draining, drained, gone, warming, serving — with the time it
// saw each change. It looks again whenever its registry, marks or presence
// caches change, after every traffic poll and every second. Nothing is
// written to ZooKeeper; a replica that starts later knows less.
const (
	timelineMaxInstances = 5000             // instances with a timeline
	timelineForget       = 30 * time.Minute // a settled timeline unchanged this long is dropped
	timelineTick         = time.Second
	timelineMinGap       = 20 * time.Millisecond // between two looks
)

// Timeline states beyond the API's instance states, spelled as the
// gateway's instance states they echo.
const (
	timelineGone    = instancestate.Gone    // marked and deregistered, or deregistered after a mark
	timelineWarming = instancestate.Warming // registered again, some gateway ramps its weight up
)

type instTimeline struct {
	entries []ctlclient.TimelineEntry
	lastMs  int64 // of the last entry
}

// timelines is the bounded per-instance history.
type timelines struct {
	mu sync.Mutex
	m  map[instKey]*instTimeline
}

func newTimelines() *timelines { return &timelines{m: map[instKey]*instTimeline{}} }

// record appends state to k's timeline when it differs from the last
// entry. An instance gets a timeline only once it is marked. markMs is
// when the mark in force was written (0: none): a drain that went from
// the mark to drained before this replica looked gets its draining entry
// at that time, since the drain began when the mark was written.
func (t *timelines) record(k instKey, state, deployID string, atMs int64, marked bool, markMs int64) {
	tl := t.m[k]
	if tl == nil {
		if !marked {
			return
		}
		if len(t.m) >= timelineMaxInstances {
			t.evictOldest()
		}
		tl = &instTimeline{}
		t.m[k] = tl
	}
	n := len(tl.entries)
	if n > 0 && tl.entries[n-1].State == state {
		return
	}
	if marked && state != ctlclient.StateDraining && markMs > 0 && markMs <= atMs &&
		(n == 0 || (tl.lastMs <= markMs && tl.entries[n-1].State != ctlclient.StateDraining)) {
		t.append(tl, ctlclient.TimelineEntry{State: ctlclient.StateDraining, AtMs: markMs, DeployID: deployID})
	}
	t.append(tl, ctlclient.TimelineEntry{State: state, AtMs: atMs, DeployID: deployID})
}

func (t *timelines) append(tl *instTimeline, e ctlclient.TimelineEntry) {
	tl.entries = append(tl.entries, e)
	if len(tl.entries) > ctlclient.TimelineLimit {
		tl.entries = tl.entries[len(tl.entries)-ctlclient.TimelineLimit:]
	}
	tl.lastMs = e.AtMs
}

func (t *timelines) evictOldest() {
	var oldest instKey
	first := true
	var at int64
	for k, tl := range t.m {
		if first || tl.lastMs < at {
			oldest, at, first = k, tl.lastMs, false
		}
	}
	delete(t.m, oldest)
}

// get returns a copy of k's timeline.
func (t *timelines) get(k instKey) []ctlclient.TimelineEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	tl := t.m[k]
	if tl == nil {
		return nil
	}
	return append([]ctlclient.TimelineEntry(nil), tl.entries...)
}

// returning reports whether k's timeline last showed it out of rotation
// or coming back (t.mu held).
func (t *timelines) returning(k instKey) bool {
	tl := t.m[k]
	if tl == nil || len(tl.entries) == 0 {
		return false
	}
	switch tl.entries[len(tl.entries)-1].State {
	case ctlclient.StateDraining, ctlclient.StateDrained, timelineGone, timelineWarming:
		return true
	}
	return false
}

func allServing(states []string) bool {
	for _, s := range states {
		if s != ctlclient.StateServing {
			return false
		}
	}
	return len(states) > 0
}

// timelineState is the state a timeline shows for v: the API state, with
// a marked address that is not registered shown gone, and an instance
// registered again after its mark shown warming until every live gateway
// acknowledged the new registration and none ramps its weight up any more
// (its presence report for the mark, or its traffic counters, say warming).
func timelineState(v *ctlclient.InstanceView, gwStates []string) string {
	switch v.State {
	case ctlclient.StateDraining, ctlclient.StateDrained:
		return v.State
	case ctlclient.StateAbsent:
		return timelineGone
	case ctlclient.StateServing:
		if v.Mark != nil && v.Registered && !v.Acknowledged &&
			marks.Reregistered(v.Czxid, v.Incarnation, v.Mark.Mzxid, v.Mark.Incarnation) {
			return timelineWarming // back, but not every gateway routes to it yet
		}
		for _, g := range v.Gateways {
			if g.State == timelineWarming {
				return timelineWarming
			}
		}
		for _, s := range gwStates {
			if s == timelineWarming {
				return timelineWarming
			}
		}
	}
	return v.State
}

// recordTimelines looks at every marked instance and every instance with
// a timeline once.
func (c *Controller) recordTimelines() {
	rs, ms := c.reg.Snapshot(), c.marks.Snapshot()
	if rs == nil || ms == nil {
		return
	}
	now := c.now()
	nowMs := now.UnixMilli()
	gws, departed := c.presence.Gateways(), c.presence.Departed()
	gwStates, polling := c.traffic.gatewayStates()
	t := c.timelines
	t.mu.Lock()
	defer t.mu.Unlock()
	services := map[string]bool{}
	for svc, byAddr := range ms.Marks {
		if len(byAddr) > 0 {
			services[svc] = true
		}
	}
	for k := range t.m {
		services[k.service] = true
	}
	for svc := range services {
		seen := map[string]bool{}
		if v, ok := serviceView(svc, rs, ms, gws, departed, now); ok {
			for i := range v.Instances {
				in := &v.Instances[i]
				k := instKey{svc, in.Addr}
				seen[in.Addr] = true
				deployID, markMs := "", int64(0)
				if in.Mark != nil {
					deployID, markMs = in.Mark.DeployID, in.Mark.CreatedMs
				}
				st := timelineState(in, gwStates[k])
				if st == ctlclient.StateServing && polling && t.returning(k) && !allServing(gwStates[k]) {
					// Back after a drain: warming until the gateways' counters
					// (the traffic view, polled while someone watches) show it
					// served at full weight everywhere.
					st = timelineWarming
				}
				t.record(k, st, deployID, nowMs, in.Marked, markMs)
			}
		}
		for k := range t.m {
			if k.service == svc && !seen[k.addr] {
				t.record(k, timelineGone, "", nowMs, false, 0) // neither registered nor marked
			}
		}
	}
	for k, tl := range t.m {
		if nowMs-tl.lastMs > timelineForget.Milliseconds() {
			if _, marked := ms.Marks[k.service][k.addr]; !marked {
				delete(t.m, k)
			}
		}
	}
}

// runTimelines records timelines until ctx ends.
func (c *Controller) runTimelines(ctx context.Context) error {
	tick := time.NewTicker(timelineTick)
	defer tick.Stop()
	for {
		changed := c.changed.Wait()
		c.recordTimelines()
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-c.timelineKick:
		case <-tick.C:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(timelineMinGap):
		}
	}
}

// kickTimelines asks runTimelines to look again (after a traffic poll).
func (c *Controller) kickTimelines() {
	select {
	case c.timelineKick <- struct{}{}:
	default:
	}
}

// fillTimelines sets every instance's timeline in v.
func (c *Controller) fillTimelines(v *ctlclient.ServiceResponse) {
	for i := range v.Instances {
		in := &v.Instances[i]
		in.Timeline = c.timelines.get(instKey{in.Service, in.Addr})
	}
}

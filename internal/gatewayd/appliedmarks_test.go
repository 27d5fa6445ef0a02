package gatewayd

import (
	"testing"

	"github.com/zkgate/zkgate/internal/gateway"
	"github.com/zkgate/zkgate/internal/instancestate"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/presence"
)

// A mark of a service this gateway has no route for is reported unrouted,
// so that absent always means "routes the service, has no registration of
// the address".
func TestAppliedMarksStates(t *testing.T) {
	mk := func(service, addr string) marks.Mark {
		return marks.Mark{Service: service, Addr: addr, Mzxid: 7}
	}
	ms := &marks.Snapshot{Marks: map[string]map[string]marks.Mark{
		"orders": {
			"10.0.0.1:80": mk("orders", "10.0.0.1:80"), // marked, in flight
			"10.0.0.2:80": mk("orders", "10.0.0.2:80"), // marked, idle
			"10.0.0.3:80": mk("orders", "10.0.0.3:80"), // registered again
			"10.0.0.4:80": mk("orders", "10.0.0.4:80"), // gone, in flight
			"10.0.0.5:80": mk("orders", "10.0.0.5:80"), // never seen
			"10.0.0.6:80": mk("orders", "10.0.0.6:80"), // marked, failing open
		},
		"billing": {"10.0.0.9:80": mk("billing", "10.0.0.9:80")},
	}}
	states := []gateway.InstanceStatus{
		{Service: "orders", Addr: "10.0.0.1:80", Marked: true, InFlight: 2, State: instancestate.Draining},
		{Service: "orders", Addr: "10.0.0.2:80", Marked: true, State: instancestate.Drained},
		{Service: "orders", Addr: "10.0.0.3:80", State: instancestate.Warming},
		{Service: "orders", Addr: "10.0.0.4:80", Marked: true, InFlight: 1, State: instancestate.Gone},
		{Service: "orders", Addr: "10.0.0.6:80", Marked: true, FailOpen: true, State: instancestate.Drained},
	}
	got := map[string]presence.AppliedMark{}
	for _, am := range appliedMarks(ms, states, map[string]bool{"orders": true}) {
		if am.Mzxid != 7 {
			t.Errorf("%s: mzxid %d", am.Addr, am.Mzxid)
		}
		got[am.Addr] = am
	}
	want := map[string]string{
		"10.0.0.1:80": instancestate.Draining, "10.0.0.2:80": instancestate.Drained, "10.0.0.3:80": instancestate.Warming,
		"10.0.0.4:80": instancestate.Draining, "10.0.0.5:80": presence.StateAbsent, "10.0.0.9:80": presence.StateUnrouted,
		"10.0.0.6:80": presence.StateFailOpen,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for addr, st := range want {
		if got[addr].State != st {
			t.Errorf("%s: state %q, want %q", addr, got[addr].State, st)
		}
	}
	if got["10.0.0.1:80"].InFlight != 2 {
		t.Errorf("in flight %+v", got["10.0.0.1:80"])
	}
	if appliedMarks(&marks.Snapshot{}, states, nil) != nil {
		t.Error("no marks: want nil")
	}
}

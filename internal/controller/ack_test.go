package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/presence"
	"github.com/zkgate/zkgate/internal/registry"
)

func TestUnacknowledged(t *testing.T) {
	const svc, addr, mz = "orders", "10.0.0.5:8080", int64(100)
	am := func(mzxid int64, state string) presence.AppliedMark {
		return presence.AppliedMark{Service: svc, Addr: addr, Mzxid: mzxid, State: state}
	}
	gws := map[string]presence.Report{
		"g-warming":  report(1, am(mz, "warming")),
		"g-serving":  report(2, am(mz, "serving")),
		"g-down":     report(3, am(mz, "down")),
		"g-ejected":  report(4, am(mz, "ejected")),
		"g-unrouted": report(5, am(mz, presence.StateUnrouted)),
		"g-draining": report(6, am(mz, "draining")),
		"g-drained":  report(7, am(mz, "drained")),
		"g-absent":   report(8, am(mz, presence.StateAbsent)),
		"g-older":    report(9, am(mz-10, "serving")),
		"g-newer":    report(10, am(mz+10, "serving")),
		"g-none":     report(11),
		"g-other":    report(12, presence.AppliedMark{Service: svc, Addr: "10.0.0.6:8080", Mzxid: mz, State: "serving"}),
		"g-empty":    report(13, am(mz, "")),
	}
	got := strings.Join(unacknowledged(svc, addr, mz, gws), ",")
	want := "g-absent,g-drained,g-draining,g-empty,g-newer,g-none,g-older,g-other"
	if got != want {
		t.Errorf("unacknowledged = %s, want %s", got, want)
	}
	if u := unacknowledged(svc, addr, mz, nil); len(u) != 0 {
		t.Errorf("no gateways: %v", u)
	}
}

// The service view shows per-gateway states for a mark that no longer
// applies, and whether every gateway acknowledged the re-registration; a
// gateway without a route for the service never keeps a drain from being
// confirmed.
func TestServiceViewAfterReregistration(t *testing.T) {
	now := time.Now()
	const svc = "orders"
	reg := regOf(svc,
		registry.Instance{Addr: "10.0.0.1:80", Czxid: 200, Status: "UP"},
		registry.Instance{Addr: "10.0.0.2:80", Czxid: 10, Status: "UP"},
	)
	mk := marksOf(svc,
		marks.Mark{Addr: "10.0.0.1:80", Mzxid: 100},
		marks.Mark{Addr: "10.0.0.2:80", Mzxid: 100},
	)
	am := func(addr, state string) presence.AppliedMark {
		return presence.AppliedMark{Service: svc, Addr: addr, Mzxid: 100, State: state}
	}
	gws := map[string]presence.Report{
		"g1": report(1, am("10.0.0.1:80", "warming"), am("10.0.0.2:80", "drained")),
		"g2": report(2, am("10.0.0.1:80", "absent"), am("10.0.0.2:80", presence.StateUnrouted)),
	}
	find := func(v ctlclient.ServiceResponse, addr string) ctlclient.InstanceView {
		for _, in := range v.Instances {
			if in.Addr == addr {
				return in
			}
		}
		t.Fatalf("%s not in the view", addr)
		return ctlclient.InstanceView{}
	}
	v, _ := serviceView(svc, reg, mk, gws, nil, now)
	re := find(v, "10.0.0.1:80")
	if re.Marked || re.State != ctlclient.StateServing || re.Acknowledged || len(re.Gateways) != 2 ||
		re.Gateways[0].State != "warming" || re.Gateways[1].State != ctlclient.GatewayAbsent {
		t.Errorf("re-registered, g2 not there yet: %+v", re)
	}
	if d := find(v, "10.0.0.2:80"); d.State != ctlclient.StateDrained {
		t.Errorf("drained at g1, unrouted at g2: state %q, want drained (%+v)", d.State, d.Gateways)
	}
	gws["g2"] = report(2, am("10.0.0.1:80", "serving"))
	v, _ = serviceView(svc, reg, mk, gws, nil, now)
	if re := find(v, "10.0.0.1:80"); !re.Acknowledged {
		t.Errorf("every gateway routes the new registration, not acknowledged: %+v", re)
	}
}

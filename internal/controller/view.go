package controller

import (
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/marks"
	"github.com/zkgate/zkgate/internal/metric"
	"github.com/zkgate/zkgate/internal/presence"
	"github.com/zkgate/zkgate/internal/registry"
)

func markView(m marks.Mark) ctlclient.MarkView {
	return ctlclient.MarkView{
		Service: m.Service, Addr: m.Addr, Reason: m.Reason, By: m.By,
		CreatedMs: m.CreatedMs, ExpiresMs: m.ExpiresMs, DeployID: m.DeployID, Mzxid: m.Mzxid,
		Incarnation: m.Incarnation, RegCzxid: m.RegCzxid,
	}
}

// serviceSummaries lists every service known to the registry or the
// marks, except the registry's services whose names checkService refuses
// (the API could not be asked about them): those are returned, sorted, as
// skipped.
func serviceSummaries(rs *registry.Snapshot, ms *marks.Snapshot, now time.Time) (_ []ctlclient.ServiceSummary, skipped []string) {
	names := map[string]bool{}
	if rs != nil {
		for n := range rs.Services {
			if checkService(n) != nil {
				skipped = append(skipped, n)
				continue
			}
			names[n] = true
		}
	}
	if ms != nil {
		for n := range ms.Marks {
			names[n] = true
		}
	}
	sort.Strings(skipped)
	out := make([]ctlclient.ServiceSummary, 0, len(names))
	for n := range names {
		s := ctlclient.ServiceSummary{Name: n}
		for _, in := range rs.Instances(n) {
			s.Instances++
			if in.Up() {
				s.Up++
			}
		}
		if ms != nil {
			for addr, m := range ms.Marks[n] {
				if markApplies(rs, m, n, addr, now) {
					s.Marked++
				}
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, skipped
}

// skippedServices counts the registry's services whose names the API
// refuses (zkgate_controller_services_skipped).
func skippedServices(snap func() *registry.Snapshot) prometheus.GaugeFunc {
	return metric.GaugeFunc("zkgate_controller_services_skipped",
		"Registry services whose names the API refuses: not listed, not drainable.", func() float64 {
			n := 0
			if rs := snap(); rs != nil {
				for name := range rs.Services {
					if checkService(name) != nil {
						n++
					}
				}
			}
			return float64(n)
		})
}

// markApplies applies the zxid rule (docs/architecture.md#zookeeper-rules)
// to the registry snapshot.
func markApplies(rs *registry.Snapshot, m marks.Mark, service, addr string, now time.Time) bool {
	if m.Expired(now) {
		return false
	}
	if in, ok := rs.Lookup(service, addr); ok {
		return m.AppliesTo(in, now)
	}
	return true
}

// serviceView describes one service: every registered address and every
// marked one, with per-gateway states for the marked ones. departed are
// the recently departed gateways (presence.Watcher.Departed): those that
// did not shut down gracefully are shown lost for marked instances. ok is
// false when neither the registry nor the marks know the service.
func serviceView(service string, rs *registry.Snapshot, ms *marks.Snapshot, gws map[string]presence.Report, departed map[string]presence.Departure, now time.Time) (ctlclient.ServiceResponse, bool) {
	resp := ctlclient.ServiceResponse{Service: service, Instances: []ctlclient.InstanceView{}, LiveGateways: len(gws)}
	byAddr := map[string]*ctlclient.InstanceView{}
	for _, in := range rs.Instances(service) {
		v := &ctlclient.InstanceView{
			Service: service, Addr: in.Addr, Registered: true, Host: in.Host, Port: in.Port,
			ID: in.ID, Node: in.Node, Czxid: in.Czxid, RegisteredMs: in.Registered.UnixMilli(), Incarnation: in.Incarnation,
			Status: in.Status, Metadata: in.Metadata,
		}
		byAddr[in.Addr] = v
	}
	var marked map[string]marks.Mark
	if ms != nil {
		marked = ms.Marks[service]
	}
	if len(byAddr) == 0 && len(marked) == 0 {
		return resp, false
	}
	for addr, m := range marked {
		v := byAddr[addr]
		if v == nil {
			v = &ctlclient.InstanceView{Service: service, Addr: addr}
			byAddr[addr] = v
		}
		mv := markView(m)
		v.Mark = &mv
		v.Marked = markApplies(rs, m, service, addr, now)
	}
	ids := make([]string, 0, len(gws))
	for id := range gws {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var lost []string
	for id := range blockingDepartures(departed) {
		if _, live := gws[id]; !live {
			lost = append(lost, id)
		}
	}
	sort.Strings(lost)
	for _, v := range byAddr {
		v.State = instanceState(v, gws, ids, lost)
		resp.Instances = append(resp.Instances, *v)
	}
	sort.Slice(resp.Instances, func(i, j int) bool { return resp.Instances[i].Addr < resp.Instances[j].Addr })
	return resp, true
}

// instanceState fills v.Gateways (for an instance with a mark, applying
// or not) and v.Acknowledged, and returns the instance's overall state:
// serving or down when no mark applies; absent when marked and not
// registered; drained when every live gateway reports the mark applied with
// nothing in flight (or does not route the instance at all) and no gateway
// is lost (lost: departed without a graceful shutdown within the departed
// window, listed with state lost); draining otherwise.
func instanceState(v *ctlclient.InstanceView, gws map[string]presence.Report, ids, lost []string) string {
	if v.Mark != nil {
		for _, id := range ids {
			rep := gws[id]
			gi := ctlclient.GatewayInstance{ID: id, State: ctlclient.GatewayPending}
			if am, ok := rep.Find(v.Service, v.Addr); ok && am.Mzxid >= v.Mark.Mzxid {
				gi.State, gi.InFlight, gi.AppliedMzxid = am.State, am.InFlight, am.Mzxid
				if v.Marked && am.InFlight > 0 && gi.State != ctlclient.GatewayDraining {
					gi.State = ctlclient.GatewayDraining
				}
			}
			v.Gateways = append(v.Gateways, gi)
		}
		for _, id := range lost {
			v.Gateways = append(v.Gateways, ctlclient.GatewayInstance{ID: id, State: ctlclient.GatewayLost})
		}
		v.Acknowledged = v.Registered && marks.Reregistered(v.Czxid, v.Incarnation, v.Mark.Mzxid, v.Mark.Incarnation) &&
			len(unacknowledged(v.Service, v.Addr, v.Mark.Mzxid, gws)) == 0
	}
	if !v.Marked {
		if !v.Registered {
			return ctlclient.StateAbsent
		}
		if v.Status != "" && v.Status != registry.StatusUp {
			return ctlclient.StateDown
		}
		return ctlclient.StateServing
	}
	drained := true
	for _, gi := range v.Gateways {
		switch gi.State {
		case ctlclient.GatewayDrained, ctlclient.GatewayAbsent, ctlclient.GatewayUnrouted:
		default:
			drained = false
		}
	}
	switch {
	case !v.Registered:
		return ctlclient.StateAbsent
	case drained:
		return ctlclient.StateDrained
	}
	return ctlclient.StateDraining
}

// unacknowledged returns, sorted, the live gateways that have not
// acknowledged that a registration newer than the mark of service/addr at
// version mzxid put the instance back: an acknowledgement is a presence
// report listing that very version of the mark with the instance in a
// state other than draining, drained, fail_open or absent (the gateway routes by the
// new registration: warming, serving, down, ejected), or unrouted (the
// gateway has no route for the service). A report of an older or newer
// version of the mark does not count: the newer one may apply again.
func unacknowledged(service, addr string, mzxid int64, gws map[string]presence.Report) []string {
	var out []string
	for id, rep := range gws {
		am, ok := rep.Find(service, addr)
		if ok && am.Mzxid == mzxid {
			switch am.State {
			case "", ctlclient.GatewayDraining, ctlclient.GatewayDrained, ctlclient.GatewayAbsent, presence.StateFailOpen:
			default:
				continue
			}
		}
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// gatewayViews lists the live gateways (those whose report cannot be
// decoded with the reason in Error).
// ready says whether a gateway's departure would be probed, and why not.
func gatewayViews(gws map[string]presence.Report, ready func(id string) (bool, string)) []ctlclient.GatewayView {
	out := make([]ctlclient.GatewayView, 0, len(gws))
	for id, r := range gws {
		v := ctlclient.GatewayView{
			ID: id, Listen: r.Listen, AdminListen: r.AdminListen, AdminAddr: r.AdminAddr, Version: r.Version,
			StartedMs: r.StartedMs, UpdatedMs: r.UpdatedMs, RegistryRevision: r.RegistryRevision,
			MarksRevision: r.MarksRevision, Session: fmt.Sprintf("0x%x", r.Session),
			Marks:   append(make([]ctlclient.AppliedMark, 0, len(r.Marks)), r.Marks...),
			Leaving: r.Leaving, Error: r.Malformed,
		}
		v.ProbeReady, v.ProbeNote = ready(id)
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// departedViews lists the recently departed gateways that have not come
// back (departures of ids that are live again are left out).
func departedViews(departed map[string]presence.Departure, gws map[string]presence.Report, window time.Duration) []ctlclient.DepartedGateway {
	var out []ctlclient.DepartedGateway
	for id, d := range departed {
		if _, live := gws[id]; live {
			continue
		}
		out = append(out, ctlclient.DepartedGateway{
			ID: id, Session: fmt.Sprintf("0x%x", d.Session), DepartedMs: d.At.UnixMilli(),
			UntilMs: d.At.Add(window).UnixMilli(), Leaving: d.Leaving, Gone: d.Gone, Probe: d.Probe,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

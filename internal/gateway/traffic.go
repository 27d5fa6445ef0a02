package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/zkgate/zkgate/internal/instancestate"
)

// TrafficPath is the admin endpoint the controller polls for the traffic
// view (README.md, Controller API: "traffic"): per-instance counters from
// which it computes rates. It is compact JSON (no indentation) because a
// controller asks every live gateway for it about once a second while
// someone watches.
const TrafficPath = "/admin/traffic"

// TrafficReport is the body of GET /admin/traffic (a contract between
// gateway and controller versions: add fields, never change these).
type TrafficReport struct {
	// AtMs is when the counters were read (the gateway's clock, unix ms):
	// rates are computed between two reports of the same gateway process.
	AtMs      int64             `json:"at_ms"`
	Instances []TrafficCounters `json:"instances"`
}

// TrafficCounters are one instance's counters at one gateway. Requests and
// Errors only grow while the gateway keeps state for the address; they
// restart from zero when the address left the registry and came back (a
// reader that sees them decrease must take the new values as counted from
// zero).
type TrafficCounters struct {
	Service string `json:"service"`
	Addr    string `json:"addr"`
	// State is the instance's state at the gateway (State* constants).
	State string `json:"state"`
	// Requests counts exchanges with the instance that ended: responses
	// received plus exchanges that failed without one.
	Requests uint64 `json:"requests"`
	// Errors counts exchanges that failed without a usable response
	// (refused, reset, timed out) plus responses with a 5xx status.
	Errors   uint64 `json:"errors"`
	InFlight int64  `json:"in_flight"`
}

// Traffic reads every instance's counters (instances that left the
// registry are included while requests to them are in flight).
func (g *Gateway) Traffic() TrafficReport {
	a := g.Applied()
	out := TrafficReport{AtMs: g.now().UnixMilli(), Instances: make([]TrafficCounters, 0, len(a.Instances))}
	for _, st := range a.Instances {
		tc := TrafficCounters{
			Service: st.Service, Addr: st.Addr, State: st.State,
			Requests: st.Requests + st.Failed, Errors: st.Failed + st.Status5xx, InFlight: st.InFlight,
		}
		// Applied is sorted by service and address: a gone host and a
		// member of the same address are adjacent. Report them as one.
		if n := len(out.Instances); n > 0 && out.Instances[n-1].Service == tc.Service && out.Instances[n-1].Addr == tc.Addr {
			prev := &out.Instances[n-1]
			prev.Requests += tc.Requests
			prev.Errors += tc.Errors
			prev.InFlight += tc.InFlight
			if st.State != instancestate.Gone {
				prev.State = st.State
			}
			continue
		}
		out.Instances = append(out.Instances, tc)
	}
	return out
}

func (g *Gateway) serveTraffic(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	b, err := json.Marshal(g.Traffic())
	writeJSONBytes(w, http.StatusOK, b, err)
}

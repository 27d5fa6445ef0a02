package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves the admin endpoints (gateway.admin_listen):
//
//	GET /healthz          200 while the process serves
//	GET /readyz           200 when the routing state is loaded and fresh; 503
//	                      with {"ready":false,"reason":...} before the first
//	                      Update, after Shutdown began, while the controller
//	                      may not see the gateway (SyncStatus.Detached: its
//	                      ZooKeeper session is lost or presumed lost), or
//	                      when ZooKeeper was last in contact longer than
//	                      gateway.stale_after ago
//	GET /metrics          Prometheus metrics
//	GET /admin/instances  {"registry_revision":..,"marks_revision":..,
//	                      "services":{"<service>":[InstanceStatus...]}}
//	GET /admin/traffic    TrafficReport: per-instance request, error and
//	                      in-flight counters (compact; the controller polls it)
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", g.serveReadyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /admin/instances", g.serveInstances)
	mux.HandleFunc("GET "+TrafficPath, g.serveTraffic)
	return mux
}

// Readiness is the body of /readyz.
type Readiness struct {
	Ready            bool       `json:"ready"`
	Reason           string     `json:"reason,omitempty"`
	LastContact      *time.Time `json:"last_contact,omitempty"`
	RegistryRevision uint64     `json:"registry_revision"`
	MarksRevision    uint64     `json:"marks_revision"`
}

// Ready reports whether the gateway should receive traffic, and why not.
// Readiness and the revisions it reports come from one load of the routing
// table in use (the one the state readers see): it is ready only once a
// table built from a loaded registry snapshot (revision > 0; every loaded
// snapshot has one) is applied, so a ready answer never reports registry
// revision 0.
func (g *Gateway) Ready() Readiness {
	var rd Readiness
	t := g.reported.Load()
	if t != nil {
		rd.RegistryRevision, rd.MarksRevision = t.regRev, t.marksRev
	}
	switch {
	case g.closing.Load():
		rd.Reason = "shutting down"
	case t == nil || t.regRev == 0:
		rd.Reason = "routing state not loaded yet"
	case g.sync != nil:
		last := g.sync.LastContact()
		if last.IsZero() {
			rd.Reason = "routing state never synchronized with ZooKeeper"
			break
		}
		rd.LastContact = &last
		if why := g.sync.Detached(); why != "" {
			rd.Reason = why
			break
		}
		if age := g.now().Sub(last); age > g.cfg.StaleAfter {
			rd.Reason = "routing state is stale: last contact with ZooKeeper " +
				age.Round(time.Millisecond).String() + " ago (stale_after " + g.cfg.StaleAfter.String() + ")"
			break
		}
		rd.Ready = true
	default:
		rd.Ready = true
	}
	return rd
}

func (g *Gateway) serveReadyz(w http.ResponseWriter, r *http.Request) {
	rd := g.Ready()
	code := http.StatusOK
	if !rd.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSONValue(w, code, rd)
}

func (g *Gateway) serveInstances(w http.ResponseWriter, r *http.Request) {
	out := struct {
		RegistryRevision uint64                      `json:"registry_revision"`
		MarksRevision    uint64                      `json:"marks_revision"`
		Services         map[string][]InstanceStatus `json:"services"`
	}{Services: map[string][]InstanceStatus{}}
	out.RegistryRevision, out.MarksRevision = g.AppliedRevision()
	for _, s := range g.services {
		out.Services[s.name] = []InstanceStatus{}
	}
	for _, st := range g.InstanceStates() {
		out.Services[st.Service] = append(out.Services[st.Service], st)
	}
	writeJSONValue(w, http.StatusOK, out)
}

func writeJSONValue(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	writeJSONBytes(w, code, b, err)
}

// writeJSONBytes answers code with b and a line end, or 500 with err when
// marshalling failed.
func writeJSONBytes(w http.ResponseWriter, code int, b []byte, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}

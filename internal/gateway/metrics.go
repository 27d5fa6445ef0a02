package gateway

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/metric"
)

// Upstream error kinds, the kind label of zkgate_upstream_errors_total.
const (
	kindConnect = iota // could not connect (refused, unreachable, dial timeout)
	kindTimeout        // the route's timeout, or an I/O timeout
	kindReset          // the connection broke (reset, EOF before a response)
	kindOther
	numKinds
)

var kindNames = [numKinds]string{"connect", "timeout", "reset", "other"}

// Why an event loop handed a connection to a goroutine, the reason label
// of zkgate_loop_handoffs_total.
const (
	handoffRequest  = iota // a request body to stream, 100-continue, an upgrade
	handoffHead            // a request head larger than the loop's buffer
	handoffConnect         // a host name not looked up yet, or connecting failed
	handoffResponse        // a response to stream (chunked, to EOF, larger than the buffer)
	numHandoffs
)

// Results of a host name lookup (resolve.go), the result label of
// zkgate_upstream_lookups_total.
const (
	lookupAnswered = iota
	lookupFailed
)

var handoffNames = [numHandoffs]string{"request", "head", "connect", "response"}

// metrics are the gateway's Prometheus collectors. Label children are
// resolved when the gateway is built (routes and services are fixed), so
// the request path only touches atomics. The per-service counters are
// plain atomics in each service (serviceMetrics), collected by their
// counterFamily at scrape time: a client_golang child costs about half a kilobyte, and
// a gateway routing to 10,000 services had 80,000 of them
// (docs/benchmarks.md, "A gateway that routes to every service").
type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	retries        *counterFamily
	upstreamErrors *counterFamily
	failOpen       *counterFamily
	ejections      *counterFamily
	drainCuts      *counterFamily
	noRoute        prometheus.Counter
	handoffs       [numHandoffs]prometheus.Counter
	lookups        [2]prometheus.Counter // by lookupAnswered, lookupFailed
	// unrouted counts requests refused before routing (400, 408, 431...).
	unrouted routeMetrics
}

var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(reg prometheus.Registerer, g *Gateway) (*metrics, error) {
	family := func(name, help string, of func(sm *serviceMetrics, k int) *counter, kinds ...string) *counterFamily {
		labels := []string{"service"}
		if len(kinds) > 0 {
			labels = append(labels, "kind")
		}
		return &counterFamily{g: g, desc: prometheus.NewDesc(name, help, labels, nil), kinds: kinds, of: of}
	}
	m := &metrics{
		requests: metric.CounterVec("zkgate_requests_total",
			"Requests handled by the gateway, by route, service and response status (499: the client went away).",
			"route", "service", "code"),
		duration: metric.HistogramVec("zkgate_request_duration_seconds",
			"Time from receiving a request to the end of its response (or of its upgraded connection).",
			durationBuckets, "route", "service"),
		retries: family("zkgate_retries_total",
			"Requests sent to another instance after connecting to one failed before anything was sent.",
			func(sm *serviceMetrics, _ int) *counter { return &sm.retries }),
		upstreamErrors: family("zkgate_upstream_errors_total",
			"Failed exchanges with instances, by kind (connect, timeout, reset, other).",
			func(sm *serviceMetrics, k int) *counter { return &sm.errors[k] }, kindNames[:]...),
		failOpen: family("zkgate_fail_open_total",
			"Requests sent to marked instances because every instance of the service was marked.",
			func(sm *serviceMetrics, _ int) *counter { return &sm.failOpen }),
		ejections: family("zkgate_ejections_total",
			"Instances taken out of rotation by passive outlier detection (consecutive connection failures).",
			func(sm *serviceMetrics, _ int) *counter { return &sm.ejections }),
		drainCuts: family("zkgate_drain_cuts_total",
			"Requests cut because they were still in flight to a drained instance after gateway.drain_cutoff.",
			func(sm *serviceMetrics, _ int) *counter { return &sm.drainCuts }),
	}
	handoffs := metric.CounterVec("zkgate_loop_handoffs_total",
		"Client connections an event loop (gateway.engine: epoll) handed to a goroutine, by reason (request, head, connect, response); they stay there.",
		"reason")
	for i := range m.handoffs {
		m.handoffs[i] = handoffs.WithLabelValues(handoffNames[i])
	}
	lookups := metric.CounterVec("zkgate_upstream_lookups_total",
		"Lookups of the host names instances registered with, for the event loops' connections (gateway.dns_refresh), by result (answered, failed).",
		"result")
	m.lookups[lookupAnswered] = lookups.WithLabelValues("answered")
	m.lookups[lookupFailed] = lookups.WithLabelValues("failed")
	m.noRoute = m.requests.WithLabelValues("", "", "404")
	m.unrouted.vec = m.requests
	for _, c := range []prometheus.Collector{
		m.requests, m.duration, m.retries, m.upstreamErrors, m.failOpen, m.ejections, m.drainCuts, handoffs, lookups, &stateCollector{g: g},
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// counter is a count only ever added to, read at scrape time.
type counter struct{ n atomic.Uint64 }

func (c *counter) Inc()         { c.n.Add(1) }
func (c *counter) Add(n uint64) { c.n.Add(n) }

// serviceMetrics are the per-service counters (see metrics). Every one
// is a series of its family from the start, 0 until it counts.
type serviceMetrics struct {
	retries   counter
	errors    [numKinds]counter
	failOpen  counter
	ejections counter
	drainCuts counter
}

// counterFamily is a counter metric with a series per routed service
// (and per kind, when kinds is set: the kind label), collected from the
// services' counters at scrape time.
type counterFamily struct {
	g     *Gateway
	desc  *prometheus.Desc
	kinds []string
	// of returns a service's counter of the family of kind k (0 without
	// kinds).
	of func(sm *serviceMetrics, k int) *counter
}

func (f *counterFamily) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }

func (f *counterFamily) Collect(ch chan<- prometheus.Metric) {
	for _, s := range f.g.services {
		if f.kinds == nil {
			v := float64(f.of(&s.metrics, 0).n.Load())
			ch <- prometheus.MustNewConstMetric(f.desc, prometheus.CounterValue, v, s.name)
			continue
		}
		for k, kind := range f.kinds {
			v := float64(f.of(&s.metrics, k).n.Load())
			ch <- prometheus.MustNewConstMetric(f.desc, prometheus.CounterValue, v, s.name, kind)
		}
	}
}

// routeMetrics are the children of one route. Status codes are resolved
// on first use and cached in an array, so counting is two loads and an
// add. The array (4.8 KB) is allocated at the route's first response: a
// gateway routing to thousands of services holds one only for the routes
// that were used.
type routeMetrics struct {
	vec     *prometheus.CounterVec
	hist    *prometheus.HistogramVec
	route   string
	service string
	codes   atomic.Pointer[codeCounters]
	// duration is the route's child of hist, made at its first request:
	// a gateway with thousands of routes exports no histogram for the
	// ones that never served one (17 series each).
	duration atomic.Pointer[durationChild]
}

type durationChild struct{ o prometheus.Observer }

type codeCounters [600]atomic.Pointer[codeCounter]

type codeCounter struct{ c prometheus.Counter }

func (m *metrics) forRoute(rm *routeMetrics, route, service string) {
	rm.vec, rm.hist, rm.route, rm.service = m.requests, m.duration, route, service
}

// observe records one request's duration on the route.
func (rm *routeMetrics) observe(seconds float64) {
	d := rm.duration.Load()
	if d == nil {
		d = &durationChild{rm.hist.WithLabelValues(rm.route, rm.service)}
		rm.duration.Store(d) // a racing store holds the same child
	}
	d.o.Observe(seconds)
}

func (rm *routeMetrics) count(code int) {
	if code < 0 || code >= len(codeCounters{}) {
		rm.vec.WithLabelValues(rm.route, rm.service, strconv.Itoa(code)).Inc()
		return
	}
	codes := rm.codes.Load()
	if codes == nil {
		rm.codes.CompareAndSwap(nil, new(codeCounters))
		codes = rm.codes.Load()
	}
	c := codes[code].Load()
	if c == nil {
		c = &codeCounter{rm.vec.WithLabelValues(rm.route, rm.service, strconv.Itoa(code))}
		codes[code].Store(c) // a racing store holds the same child
	}
	c.c.Inc()
}

// stateCollector reports instance states and in-flight requests, computed
// from the current routing table at scrape time (nothing on the request
// path).
type stateCollector struct{ g *Gateway }

var (
	instancesDesc = prometheus.NewDesc("zkgate_instances",
		"Instances of each routed service by state (warming, serving, draining, drained, down, ejected, gone).",
		[]string{"service", "state"}, nil)
	inflightDesc = prometheus.NewDesc("zkgate_inflight",
		"Requests in flight to the instances of each routed service (upgraded connections included).",
		[]string{"service"}, nil)
	revisionDesc = prometheus.NewDesc("zkgate_applied_revision",
		"Revision of the registry and marks snapshots the current routing table was built from.",
		[]string{"source"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- instancesDesc
	ch <- inflightDesc
	ch <- revisionDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.g.reported.Load()
	if t == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(revisionDesc, prometheus.GaugeValue, float64(t.regRev), "registry")
	ch <- prometheus.MustNewConstMetric(revisionDesc, prometheus.GaugeValue, float64(t.marksRev), "marks")
	now := c.g.now().UnixNano()
	for _, p := range t.pools {
		var counts [numStates]int
		var inflight int64
		p.each(now, func(st InstanceStatus) {
			counts[stateIndex(st.State)]++
			inflight += st.InFlight
		})
		for i, n := range counts {
			ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(n), p.svc.name, stateNames[i])
		}
		ch <- prometheus.MustNewConstMetric(inflightDesc, prometheus.GaugeValue, float64(inflight), p.svc.name)
	}
}

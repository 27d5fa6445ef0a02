package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gateway"
	"github.com/zkgate/zkgate/internal/metric"
	"github.com/zkgate/zkgate/internal/presence"
)

// The traffic view (README.md, Controller API: traffic). The controller
// replica that answers GET /v1/services/{service} polls every live
// gateway's admin address (gateway.TrafficPath) for per-instance counters
// and computes rates from their deltas. It costs no ZooKeeper write: the
// gateways' presence nodes stay written only on change. Polling is lazy:
// it starts with the first such request and stops after trafficIdle
// without one, so a replica nobody looks at polls nothing.
const (
	trafficInterval = time.Second     // pause between two polls
	trafficWindow   = 2 * time.Second // rates span this much
	trafficIdle     = time.Minute     // polling stops this long after the last request
	trafficTimeout  = 900 * time.Millisecond
	trafficSamples  = 6               // kept per gateway (covers the window)
	trafficMaxBody  = 16 << 20        // bytes read of one answer
	trafficMaxKeys  = 20000           // instances with a history
	trafficForget   = 5 * time.Minute // a history unseen this long is dropped
)

// instKey names an instance of a service.
type instKey struct{ service, addr string }

// trafficSample is one answer of one gateway.
type trafficSample struct {
	atMs int64
	c    map[instKey]gateway.TrafficCounters
}

// gatewaySamples are the last answers of one gateway process.
type gatewaySamples struct {
	boot    string
	samples []trafficSample // oldest first
}

// instHistory is the chart data of one instance.
type instHistory struct {
	points []ctlclient.TrafficPoint
	seenMs int64
}

// trafficPoller polls the live gateways while the API is being read.
type trafficPoller struct {
	gateways func() map[string]presence.Report
	now      func() time.Time
	log      *slog.Logger
	client   *http.Client
	wake     chan struct{}
	polled   func() // after every poll, must not block (the timelines look at the gateways' states)
	// trusted, when set, says whether a gateway's admin target is its own
	// (presence.Watcher.AdminTrusted): others are not polled.
	trusted func(id string) (bool, string)

	polls  prometheus.Counter
	bytes  prometheus.Counter
	errors prometheus.Counter

	mu      sync.Mutex
	lastUse time.Time
	active  bool
	gws     map[string]*gatewaySamples
	errs    map[string]string
	atMs    int64
	hasRate bool // some gateway had two samples at the last poll
	hist    map[instKey]*instHistory
	current map[instKey]ctlclient.Traffic // as of the last poll
}

func newTrafficPoller(gateways func() map[string]presence.Report, now func() time.Time, log *slog.Logger, reg prometheus.Registerer) *trafficPoller {
	p := &trafficPoller{
		gateways: gateways, now: now, log: log,
		client: &http.Client{Transport: &http.Transport{
			Proxy:               nil, // straight to the gateway's admin address
			DialContext:         (&net.Dialer{Timeout: trafficTimeout}).DialContext,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     2 * trafficInterval,
		}},
		wake: make(chan struct{}, 1),
		polls: metric.Counter("zkgate_controller_traffic_polls_total",
			"Polls of gateways' admin traffic endpoint (traffic view)."),
		bytes: metric.Counter("zkgate_controller_traffic_poll_bytes_total",
			"Bytes read from gateways' admin traffic endpoint."),
		errors: metric.Counter("zkgate_controller_traffic_poll_errors_total",
			"Polls of a gateway's admin traffic endpoint that failed."),
		gws: map[string]*gatewaySamples{}, hist: map[instKey]*instHistory{},
		current: map[instKey]ctlclient.Traffic{},
	}
	if reg != nil {
		reg.MustRegister(p.polls, p.bytes, p.errors)
	}
	return p
}

// touch records a reader of the traffic view and starts polling if it
// was idle.
func (p *trafficPoller) touch() {
	p.mu.Lock()
	p.lastUse = p.now()
	start := !p.active
	p.active = true
	p.mu.Unlock()
	if start {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// Run polls while the view is read, until ctx ends.
func (p *trafficPoller) Run(ctx context.Context) error {
	defer p.client.CloseIdleConnections()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		}
		p.poll(ctx)
		t := time.NewTicker(trafficInterval)
		for p.stillUsed() {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			p.poll(ctx)
		}
		t.Stop()
		p.client.CloseIdleConnections()
	}
}

// stillUsed reports whether the view was read within trafficIdle; when it
// was not, polling stops (and the samples go: rates after a pause would
// span the pause).
func (p *trafficPoller) stillUsed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.now().Sub(p.lastUse) <= trafficIdle {
		return true
	}
	p.active = false
	p.gws = map[string]*gatewaySamples{}
	p.current = map[instKey]ctlclient.Traffic{}
	p.atMs, p.hasRate = 0, false
	return false
}

type pollAnswer struct {
	id, boot string
	rep      gateway.TrafficReport
	err      error
}

// poll asks every live gateway once, concurrently, and recomputes the
// rates.
func (p *trafficPoller) poll(ctx context.Context) {
	gws := p.gateways()
	answers := make(chan pollAnswer, len(gws))
	for id, r := range gws {
		go func() {
			rep, err := p.fetch(ctx, r)
			answers <- pollAnswer{id: id, boot: r.BootID + "/" + fmt.Sprint(r.StartedMs), rep: rep, err: err}
		}()
	}
	got := make([]pollAnswer, 0, len(gws))
	for range gws {
		got = append(got, <-answers)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = map[string]string{}
	for id := range p.gws {
		if _, live := gws[id]; !live {
			delete(p.gws, id)
		}
	}
	for _, a := range got {
		if a.err != nil {
			p.errs[a.id] = a.err.Error()
			continue
		}
		gs := p.gws[a.id]
		if gs == nil || gs.boot != a.boot {
			gs = &gatewaySamples{boot: a.boot} // a new process counts from zero
			p.gws[a.id] = gs
		}
		s := trafficSample{atMs: a.rep.AtMs, c: make(map[instKey]gateway.TrafficCounters, len(a.rep.Instances))}
		for _, tc := range a.rep.Instances {
			s.c[instKey{tc.Service, tc.Addr}] = tc
		}
		if n := len(gs.samples); n > 0 && s.atMs <= gs.samples[n-1].atMs {
			continue // the gateway's clock did not move: no new sample
		}
		gs.samples = append(gs.samples, s)
		if len(gs.samples) > trafficSamples {
			gs.samples = gs.samples[len(gs.samples)-trafficSamples:]
		}
	}
	now := p.now().UnixMilli()
	p.atMs, p.hasRate = now, false
	p.current = p.rates()
	for k, tr := range p.current {
		if !p.hasRate {
			break // one sample per gateway: no rate to chart yet
		}
		h := p.hist[k]
		if h == nil {
			if len(p.hist) >= trafficMaxKeys {
				continue
			}
			h = &instHistory{}
			p.hist[k] = h
		}
		h.seenMs = now
		h.points = append(h.points, ctlclient.TrafficPoint{AtMs: now, RPS: tr.RPS, ErrorsPerS: tr.ErrorsPerS, InFlight: tr.InFlight})
		if len(h.points) > ctlclient.TrafficHistoryLimit {
			h.points = h.points[len(h.points)-ctlclient.TrafficHistoryLimit:]
		}
	}
	for k, h := range p.hist {
		if now-h.seenMs > trafficForget.Milliseconds() {
			delete(p.hist, k)
		}
	}
	if p.polled != nil {
		p.polled() // must not block
	}
}

// fetch reads one gateway's counters.
func (p *trafficPoller) fetch(ctx context.Context, r presence.Report) (gateway.TrafficReport, error) {
	var rep gateway.TrafficReport
	p.polls.Inc()
	err := func() error {
		if r.Malformed != "" {
			return fmt.Errorf("its presence report cannot be read: %s", r.Malformed)
		}
		addr, err := r.AdminTarget()
		if err != nil {
			return err
		}
		if p.trusted != nil {
			if ok, why := p.trusted(r.ID); !ok {
				return errors.New("not polled: " + why)
			}
		}
		ctx, cancel := context.WithTimeout(ctx, trafficTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+gateway.TrafficPath, nil)
		if err != nil {
			return fmt.Errorf("polling %s: %w", addr, err)
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return fmt.Errorf("polling %s: %w", r.AdminListen, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, trafficMaxBody))
		p.bytes.Add(float64(len(body)))
		if err != nil {
			return fmt.Errorf("polling %s: reading the answer: %w", r.AdminListen, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("polling %s: HTTP %d (a gateway older than the traffic view?)", r.AdminListen, resp.StatusCode)
		}
		if err := json.Unmarshal(body, &rep); err != nil {
			return fmt.Errorf("polling %s: decoding the answer: %w", r.AdminListen, err)
		}
		return nil
	}()
	if err != nil {
		p.errors.Inc()
	}
	return rep, err
}

// rates computes every instance's traffic from the samples (p.mu held).
// Per gateway, the rate is the counters' growth between its newest sample
// and its oldest one within trafficWindow of it, divided by the time
// between them (the gateway's clock). A counter that went down restarted
// from zero (the address left the registry and came back): its new value
// is the growth. A gateway whose newest sample is older than a few polls
// (it stopped answering) counts for nothing.
func (p *trafficPoller) rates() map[instKey]ctlclient.Traffic {
	out := map[instKey]ctlclient.Traffic{}
	for id, gs := range p.gws {
		n := len(gs.samples)
		if n == 0 {
			continue
		}
		s1 := gs.samples[n-1]
		if _, failed := p.errs[id]; failed {
			// Its last answer is older than this poll: no rate, no in-flight
			// count that may be stale.
			continue
		}
		var s0 *trafficSample
		for i := 0; i < n-1; i++ {
			if s1.atMs-gs.samples[i].atMs <= trafficWindow.Milliseconds()+trafficInterval.Milliseconds()/2 {
				s0 = &gs.samples[i]
				p.hasRate = true
				break
			}
		}
		for k, c1 := range s1.c {
			gt := ctlclient.GatewayTraffic{InFlight: c1.InFlight, State: c1.State}
			if s0 != nil {
				dt := float64(s1.atMs-s0.atMs) / 1000
				c0 := s0.c[k] // zero when the gateway did not know the address then
				gt.RPS = growth(c0.Requests, c1.Requests) / dt
				gt.ErrorsPerS = growth(c0.Errors, c1.Errors) / dt
			}
			tr := out[k]
			if tr.ByGateway == nil {
				tr.ByGateway = map[string]ctlclient.GatewayTraffic{}
			}
			tr.ByGateway[id] = gt
			tr.RPS += gt.RPS
			tr.ErrorsPerS += gt.ErrorsPerS
			tr.InFlight += gt.InFlight
			out[k] = tr
		}
	}
	return out
}

func growth(before, after uint64) float64 {
	if after < before {
		return float64(after)
	}
	return float64(after - before)
}

// fill sets the traffic of every instance of v and v.Traffic, and marks
// the view as read.
func (p *trafficPoller) fill(v *ctlclient.ServiceResponse) {
	p.touch()
	p.mu.Lock()
	defer p.mu.Unlock()
	st := &ctlclient.TrafficStatus{
		AtMs: p.atMs, WindowMs: trafficWindow.Milliseconds(), IntervalMs: trafficInterval.Milliseconds(),
	}
	for id := range p.gws {
		if _, failed := p.errs[id]; !failed {
			st.Polled++
		}
	}
	if len(p.errs) > 0 {
		st.Errors = make(map[string]string, len(p.errs))
		for id, e := range p.errs {
			st.Errors[id] = e
		}
	}
	v.Traffic = st
	if !p.hasRate {
		return // not polled twice yet: no rates
	}
	for i := range v.Instances {
		in := &v.Instances[i]
		k := instKey{in.Service, in.Addr}
		tr := p.current[k]
		cp := ctlclient.Traffic{
			RPS: round2(tr.RPS), InFlight: tr.InFlight, ErrorsPerS: round2(tr.ErrorsPerS),
			ByGateway: make(map[string]ctlclient.GatewayTraffic, len(tr.ByGateway)),
		}
		for id, gt := range tr.ByGateway {
			gt.RPS, gt.ErrorsPerS = round2(gt.RPS), round2(gt.ErrorsPerS)
			cp.ByGateway[id] = gt
		}
		if h := p.hist[k]; h != nil {
			cp.History = make([]ctlclient.TrafficPoint, len(h.points))
			for j, pt := range h.points {
				pt.RPS, pt.ErrorsPerS = round2(pt.RPS), round2(pt.ErrorsPerS)
				cp.History[j] = pt
			}
		}
		in.Traffic = &cp
	}
}

// gatewayStates returns, by instance, the states the gateways reported at
// the last poll, and whether the poller is polling.
func (p *trafficPoller) gatewayStates() (_ map[instKey][]string, polling bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[instKey][]string{}
	for k, tr := range p.current {
		ids := make([]string, 0, len(tr.ByGateway))
		for id := range tr.ByGateway {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			out[k] = append(out[k], tr.ByGateway[id].State)
		}
	}
	return out, p.active && p.atMs != 0
}

func round2(f float64) float64 {
	return float64(int64(f*100+0.5)) / 100
}

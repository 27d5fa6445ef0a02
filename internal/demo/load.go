package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/internal/samplebackend"
)

// LoadSpec is the fixed request mix every mode gets. Only timing varies
// between runs: which request is a GET or a POST, how big its body is and
// whether it is slow depends on its sequence number alone.
type LoadSpec struct {
	// Rate is requests per second, sent open-loop (on schedule, whatever
	// the answers' latency).
	Rate int `json:"rate_per_second"`
	// PostPercent of the requests are POSTs with a small body; the rest
	// GETs.
	PostPercent int `json:"post_percent"`
	// SlowPercent of the requests (GETs and POSTs alike) ask the backend
	// for SlowLatency instead of its own latency.
	SlowPercent int `json:"slow_percent"`
	// BackendLatency is the sample backends' latency.
	BackendLatency time.Duration `json:"-"`
	SlowLatency    time.Duration `json:"-"`
	// BodyMin and BodyMax bound the POST body sizes, in bytes.
	BodyMin int `json:"post_body_min_bytes"`
	BodyMax int `json:"post_body_max_bytes"`
	// Timeout bounds each request; a request that takes longer counts as
	// a timeout.
	Timeout time.Duration `json:"-"`
}

// MarshalJSON adds the durations in milliseconds.
func (s LoadSpec) MarshalJSON() ([]byte, error) {
	type plain LoadSpec
	return json.Marshal(struct {
		plain
		BackendLatencyMs float64 `json:"backend_latency_ms"`
		SlowLatencyMs    float64 `json:"slow_latency_ms"`
		TimeoutMs        float64 `json:"timeout_ms"`
	}{plain(s), ms(s.BackendLatency), ms(s.SlowLatency), ms(s.Timeout)})
}

// DefaultLoad is the demo's request mix: 400 requests/s (so that even a
// 2-second rollout sees over 1,000 requests), 70% GET and 30%
// POST with bodies of 200 to 999 bytes, backends answering after 5 ms and
// 10% of the requests (slow reports, uploads) asking for 500 ms.
func DefaultLoad() LoadSpec {
	return LoadSpec{
		Rate: 400, PostPercent: 30, SlowPercent: 10,
		BackendLatency: 5 * time.Millisecond, SlowLatency: 500 * time.Millisecond,
		BodyMin: 200, BodyMax: 999, Timeout: 5 * time.Second,
	}
}

// Describe is the one-line summary printed above the table.
func (s LoadSpec) Describe() string {
	return fmt.Sprintf("%d req/s, %d%% GET / %d%% POST (%d–%d B bodies), backends answer in %s, %d%% of requests take %s",
		s.Rate, 100-s.PostPercent, s.PostPercent, s.BodyMin, s.BodyMax, s.BackendLatency, s.SlowPercent, s.SlowLatency)
}

// planned is one request of the mix.
type planned struct {
	Post     bool
	Slow     bool
	BodySize int
}

// plan says what request number i is. The mix repeats every 100 requests:
// POSTs and slow requests are spread evenly through it, and slow requests
// fall on GETs and POSTs in proportion.
func (s LoadSpec) plan(i int64) planned {
	slot := int(i % 100)
	// Bresenham-style spreading: slot is a POST when the running count of
	// POSTs steps up at it.
	post := (slot+1)*s.PostPercent/100 != slot*s.PostPercent/100
	// Slow requests are spread the same way over a permutation of the
	// slots (tens and units digits mixed), so they fall on GETs and POSTs
	// in proportion rather than all on one method.
	perm := slot%10*10 + (slot/10+slot%10)%10
	slow := (perm+1)*s.SlowPercent/100 != perm*s.SlowPercent/100
	p := planned{Post: post, Slow: slow}
	if post {
		span := s.BodyMax - s.BodyMin + 1
		if span < 1 {
			span = 1
		}
		p.BodySize = s.BodyMin + int((i*131)%int64(span))
	}
	return p
}

// Kind is how a request ended.
type Kind int

// Kinds of outcome. A request through a proxy whose upstream connection
// was cut reaches the client as a 5xx (the proxy's 502), not as a reset.
const (
	KindOK Kind = iota
	// KindRefused: the client could not connect (connection refused).
	KindRefused
	// KindReset: the connection broke before the whole answer arrived
	// (reset, broken pipe, unexpected EOF).
	KindReset
	// Kind5xx: an answer with status 500–599.
	Kind5xx
	// KindTimeout: no whole answer within the request timeout.
	KindTimeout
	// KindOther: any other failure: another status than 200, or an
	// answer that does not match the request (e.g. a POST body that did
	// not arrive whole).
	KindOther
	numKinds
)

func (k Kind) String() string {
	switch k {
	case KindOK:
		return "ok"
	case KindRefused:
		return "refused"
	case KindReset:
		return "reset"
	case Kind5xx:
		return "5xx"
	case KindTimeout:
		return "timeout"
	case KindOther:
		return "other"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Classify says how a request ended from its transport error (nil when an
// answer arrived) and status.
func Classify(status int, err error) Kind {
	if err != nil {
		var ne net.Error
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return KindRefused
		case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
			return KindTimeout
		case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
			errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return KindReset
		}
		return KindOther
	}
	switch {
	case status == http.StatusOK:
		return KindOK
	case status >= 500 && status <= 599:
		return Kind5xx
	}
	return KindOther
}

// Failures counts failed requests by kind. Its JSON keys are part of the
// --json contract.
type Failures struct {
	Refused int64 `json:"refused"`
	Reset   int64 `json:"reset"`
	HTTP5xx int64 `json:"5xx"`
	Timeout int64 `json:"timeout"`
	Other   int64 `json:"other"`
}

// Total is the number of failed requests.
func (f Failures) Total() int64 { return f.Refused + f.Reset + f.HTTP5xx + f.Timeout + f.Other }

// MethodCount counts the requests of one method.
type MethodCount struct {
	Requests int64 `json:"requests"`
	Failed   int64 `json:"failed"`
}

// LoadSummary is what the clients saw during a mode's measurement.
type LoadSummary struct {
	Requests int64
	OK       int64
	Failed   Failures
	GET      MethodCount
	POST     MethodCount
	// P50 and P99 are latency percentiles over every request, failed ones
	// included (with the time until they failed).
	P50, P99 time.Duration
}

// recorder accumulates request outcomes. Safe for concurrent use.
type recorder struct {
	requests atomic.Int64
	failed   atomic.Int64

	mu      sync.Mutex
	kinds   [numKinds]int64
	methods [2]MethodCount // 0 GET, 1 POST
	lat     []time.Duration
}

func (r *recorder) record(post bool, k Kind, d time.Duration) {
	r.requests.Add(1)
	if k != KindOK {
		r.failed.Add(1)
	}
	m := 0
	if post {
		m = 1
	}
	r.mu.Lock()
	r.kinds[k]++
	r.methods[m].Requests++
	if k != KindOK {
		r.methods[m].Failed++
	}
	r.lat = append(r.lat, d)
	r.mu.Unlock()
}

// counts returns the running totals (for progress).
func (r *recorder) counts() (requests, failed int64) {
	return r.requests.Load(), r.failed.Load()
}

func (r *recorder) summary() LoadSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := LoadSummary{
		OK:     r.kinds[KindOK],
		GET:    r.methods[0],
		POST:   r.methods[1],
		Failed: Failures{Refused: r.kinds[KindRefused], Reset: r.kinds[KindReset], HTTP5xx: r.kinds[Kind5xx], Timeout: r.kinds[KindTimeout], Other: r.kinds[KindOther]},
	}
	s.Requests = s.OK + s.Failed.Total()
	lat := slices.Clone(r.lat)
	slices.Sort(lat)
	s.P50, s.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	return s
}

// percentile is the nearest-rank percentile of sorted values; 0 when empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

// loadGen sends the mix to one base URL ("http://host:port/demo/").
type loadGen struct {
	spec   LoadSpec
	base   string
	client *http.Client
	rec    *recorder
}

func newLoadGen(spec LoadSpec, base string) *loadGen {
	tr := &http.Transport{
		Proxy:               nil, // loopback only: never an HTTP_PROXY
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &loadGen{spec: spec, base: base, client: &http.Client{Transport: tr}, rec: &recorder{}}
}

// run sends requests on schedule until stop ends, then waits for the
// requests in flight. abort cancels requests in flight (Ctrl-C).
func (l *loadGen) run(stop, abort context.Context) {
	defer l.client.CloseIdleConnections()
	var wg sync.WaitGroup
	defer wg.Wait()
	interval := time.Second / time.Duration(l.spec.Rate)
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for i := int64(0); ; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			t.Reset(d)
			select {
			case <-stop.Done():
				return
			case <-t.C:
			}
		} else if stop.Err() != nil {
			return
		}
		wg.Add(1)
		go func(i int64) {
			defer wg.Done()
			l.one(abort, i)
		}(i)
	}
}

// one sends request i and records its outcome.
func (l *loadGen) one(ctx context.Context, i int64) {
	p := l.spec.plan(i)
	ctx, cancel := context.WithTimeout(ctx, l.spec.Timeout)
	defer cancel()
	var (
		req  *http.Request
		body []byte
		err  error
	)
	q := ""
	if p.Slow {
		q = "?latency=" + l.spec.SlowLatency.String()
	}
	if p.Post {
		body = requestBody(i, p.BodySize)
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, l.base+"orders"+q, bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/octet-stream")
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, l.base+"items/"+strconv.FormatInt(i%64, 10)+q, nil)
	}
	if err != nil {
		l.rec.record(p.Post, KindOther, 0)
		return
	}
	start := time.Now()
	status, rerr := l.exchange(req, p, len(body))
	l.rec.record(p.Post, Classify(status, rerr), time.Since(start))
}

// errMismatch: the answer does not describe the request sent.
var errMismatch = errors.New("answer does not match the request")

// exchange sends req and reads the whole answer. A 200 whose reply does not
// match the request (method, body length) is reported as status 0 with
// errMismatch, which classifies as KindOther.
func (l *loadGen) exchange(req *http.Request, p planned, bodyLen int) (int, error) {
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	var rep samplebackend.Reply
	if json.Unmarshal(data, &rep) != nil || rep.Method != req.Method || (p.Post && rep.Bytes != int64(bodyLen)) {
		return 0, errMismatch
	}
	return resp.StatusCode, nil
}

// requestBody is request i's POST body: size printable bytes.
func requestBody(i int64, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte('a' + (i+int64(j))%26)
	}
	return b
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*100) / 100 }

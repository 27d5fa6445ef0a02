package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/zkgate/zkgate/internal/samplebackend"
)

// faultLoad is the fault suite's steady mixed load: about Rate requests a
// second, GET and POST (bodies of 256 B–4 KiB whose length and SHA-256 the
// backend echoes and the load checks), spread round robin over the
// gateways that are in rotation, as a load balancer in front of them
// would. A few requests are slow (the backend waits slowMs), so that a
// drain usually has something in flight to wait for. Every request is
// recorded: the fault rows count what was sent and what failed in their
// window, and the false-confirmation check finds requests that reached an
// instance after its drain was confirmed.
type faultLoad struct {
	gateways []string // base URLs, by gateway index
	clients  []*http.Client
	rate     int
	slowMs   int

	mu     sync.Mutex
	active []bool // gateway in rotation
	next   int
	recs   []loadRec
	// started holds the start of every request in flight, by id.
	started map[int]time.Time
	lastID  int
	busy    int
	maxBusy int
	skipped int

	stop chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
	// running is set by start: close waits for done only then (a setup
	// that fails closes a load it never started).
	running bool
}

// loadRec is one request of the load.
type loadRec struct {
	Start, End time.Time
	Gateway    int
	Post       bool
	OK         bool
	Why        string // failure reason
	Instance   string // instance that answered (X-Zkgate-Instance)
	Seq        int64  // the instance's request number
}

const faultsPrefix = "/faults/"

func newFaultLoad(gateways []string, rate, slowMs int) *faultLoad {
	l := &faultLoad{gateways: gateways, rate: rate, slowMs: slowMs, maxBusy: 256,
		active: make([]bool, len(gateways)), started: map[int]time.Time{}, stop: make(chan struct{}), done: make(chan struct{})}
	for range gateways {
		l.clients = append(l.clients, &http.Client{
			Timeout: 15 * time.Second,
			Transport: &http.Transport{
				MaxIdleConnsPerHost: 64, DisableCompression: true, IdleConnTimeout: 30 * time.Second,
			},
		})
	}
	for i := range l.active {
		l.active[i] = true
	}
	return l
}

// setActive puts gateway i in or out of the load's rotation (what a load
// balancer does once its health check notices).
func (l *faultLoad) setActive(i int, on bool) {
	l.mu.Lock()
	l.active[i] = on
	l.mu.Unlock()
	if !on {
		l.clients[i].Transport.(*http.Transport).CloseIdleConnections()
	}
}

func (l *faultLoad) start() {
	l.running = true
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(l.rate))
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-l.stop:
				l.wg.Wait()
				return
			case <-tick.C:
			}
			n++
			l.mu.Lock()
			gw := l.nextGateway()
			if gw < 0 || l.busy >= l.maxBusy {
				l.skipped++
				l.mu.Unlock()
				continue
			}
			id := l.begin()
			l.mu.Unlock()
			l.wg.Add(1)
			go func(n, gw int) {
				defer l.wg.Done()
				l.end(id, l.one(n, gw))
			}(n, gw)
		}
	}()
}

// begin counts a request in flight (l.mu held); its start is taken now,
// a little before the request's own Start.
func (l *faultLoad) begin() int {
	l.busy++
	l.lastID++
	l.started[l.lastID] = time.Now()
	return l.lastID
}

// end records request id's outcome.
func (l *faultLoad) end(id int, r loadRec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.busy--
	delete(l.started, id)
	l.recs = append(l.recs, r)
}

// waitStartedBefore waits until every request started before t has
// ended, at most bound.
func (l *faultLoad) waitStartedBefore(t time.Time, bound time.Duration) {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		pending := false
		for _, s := range l.started {
			pending = pending || s.Before(t)
		}
		l.mu.Unlock()
		if !pending {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nextGateway returns the next gateway in rotation, round robin, or -1
// when none is; l.mu must be held.
func (l *faultLoad) nextGateway() int {
	for range l.active {
		l.next = (l.next + 1) % len(l.active)
		if l.active[l.next] {
			return l.next
		}
	}
	return -1
}

// burst sends n requests that wait latencyMs at the backend, round robin
// over the gateways in rotation, besides the steady load (recorded like
// it); it does not wait for them.
func (l *faultLoad) burst(n, latencyMs int) {
	for k := range n {
		l.mu.Lock()
		gw := l.nextGateway()
		if gw < 0 {
			l.mu.Unlock()
			return
		}
		id := l.begin()
		l.mu.Unlock()
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.end(id, l.request(-(k+1), gw, latencyMs, false))
		}()
	}
}

// close stops the load and waits for the requests in flight.
func (l *faultLoad) close() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	if l.running {
		<-l.done
	}
	for _, c := range l.clients {
		c.Transport.(*http.Transport).CloseIdleConnections()
	}
}

// one sends request n through gateway gw and checks the answer.
func (l *faultLoad) one(n, gw int) loadRec {
	latency := 2
	if n%40 == 0 {
		latency = l.slowMs
	}
	return l.request(n, gw, latency, n%3 == 0)
}

// request sends one request through gateway gw that waits latencyMs at
// the backend and checks the answer.
func (l *faultLoad) request(n, gw, latencyMs int, post bool) loadRec {
	u := fmt.Sprintf("%s%sreq-%d?latency=%dms", l.gateways[gw], faultsPrefix, n, latencyMs)
	r := loadRec{Gateway: gw, Post: post}
	var body []byte
	method := http.MethodGet
	if r.Post {
		method = http.MethodPost
		body = make([]byte, 256+rand.IntN(4096-256))
		for i := range body {
			body[i] = byte('a' + rand.IntN(26))
		}
	}
	r.Start = time.Now()
	defer func() { r.End = time.Now() }()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		r.Why = "request: " + err.Error()
		r.End = time.Now()
		return r
	}
	resp, err := l.clients[gw].Do(req)
	if err != nil {
		r.Why = "transport: " + shortErr(err)
		r.End = time.Now()
		return r
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.End = time.Now()
	r.Instance = resp.Header.Get(samplebackend.HeaderInstance)
	if err != nil {
		r.Why = "reading the answer: " + shortErr(err)
		return r
	}
	if resp.StatusCode != http.StatusOK {
		r.Why = fmt.Sprintf("status %d", resp.StatusCode)
		return r
	}
	var rep samplebackend.Reply
	if err := json.Unmarshal(data, &rep); err != nil {
		r.Why = "answer is not the backend's JSON"
		return r
	}
	r.Instance, r.Seq = rep.Instance, rep.Seq
	if rep.Method != method {
		r.Why = "answer for another method"
		return r
	}
	if r.Post {
		sum := sha256.Sum256(body)
		if rep.Bytes != int64(len(body)) || rep.SHA256 != hex.EncodeToString(sum[:]) {
			r.Why = "POST body arrived altered"
			return r
		}
	}
	r.OK = true
	return r
}

// shortErr keeps the last part of a transport error (the cause), without
// ports that differ at every run.
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// window sums up the requests started in [from, to).
func (l *faultLoad) window(from, to time.Time) (sent, failed int, why map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	why = map[string]int{}
	for _, r := range l.recs {
		if r.Start.Before(from) || !r.Start.Before(to) {
			continue
		}
		sent++
		if !r.OK {
			failed++
			why[r.Why]++
		}
	}
	return sent, failed, why
}

// reachedAfter counts the requests answered by instance that were sent
// after t (they reached it after t).
func (l *faultLoad) reachedAfter(instance string, t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Instance == instance && r.Start.After(t) {
			n++
		}
	}
	return n
}

// firstAnswerAfter is when the first request sent after t that instance
// answered successfully ended (zero when none yet).
func (l *faultLoad) firstAnswerAfter(instance string, t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, r := range l.recs {
		if r.OK && r.Instance == instance && r.Start.After(t) && (first.IsZero() || r.End.Before(first)) {
			first = r.End
		}
	}
	return first
}

// lastFailureIn is the end of the last failed request started in
// [from, to) (zero when none).
func (l *faultLoad) lastFailureIn(from, to time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last time.Time
	for _, r := range l.recs {
		if !r.OK && !r.Start.Before(from) && r.Start.Before(to) && r.End.After(last) {
			last = r.End
		}
	}
	return last
}

// reasons renders failure reasons, most frequent first.
func reasons(why map[string]int) string {
	type kv struct {
		k string
		v int
	}
	var s []kv
	for k, v := range why {
		s = append(s, kv{k, v})
	}
	sort.Slice(s, func(i, j int) bool { return s[i].v > s[j].v || s[i].v == s[j].v && s[i].k < s[j].k })
	parts := make([]string, len(s))
	for i, e := range s {
		parts[i] = fmt.Sprintf("%d× %s", e.v, e.k)
	}
	return strings.Join(parts, ", ")
}

// probeSeq asks instance addr directly (not through a gateway) for its
// request counter: the Seq of this very request.
func probeSeq(ctx context.Context, hc *http.Client, addr string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/zkgate-bench-probe", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("probing %s: %w", addr, err)
	}
	defer resp.Body.Close()
	var rep samplebackend.Reply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return 0, fmt.Errorf("probing %s: %w", addr, err)
	}
	return rep.Seq, nil
}

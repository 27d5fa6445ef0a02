package rollout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/harness"
	"github.com/zkgate/zkgate/internal/rollout"
	"github.com/zkgate/zkgate/internal/samplebackend"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/register"
)

// waitFor is the generous deadline of every wait: the tests assert
// outcomes, never timings.
const waitFor = 30 * time.Second

const token = "rollout-test-token"

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// stack is real ZooKeeper, an in-process controller and gateway, and
// sample backends of service orders that restart in-process: the old
// server stops at once (connections cut, session closed, so its
// registration goes) and a new one listens on the same address and
// registers anew.
type stack struct {
	t      *testing.T
	ctx    context.Context
	log    *slog.Logger
	ctl    *controller.Controller
	gw     *gatewayd.Daemon
	client *ctlclient.Client
	ro     register.Options

	mu       sync.Mutex
	backends map[string]*samplebackend.Backend // by address
	names    map[string]string                 // address → base name
	gen      map[string]int
	restarts atomic.Int64
}

func newStack(t *testing.T, names ...string) *stack {
	t.Helper()
	zk := zktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := config.Parse([]byte(harness.StackConfig(zk.Servers(), "gw-1", token).YAML()))
	if err != nil {
		t.Fatal(err)
	}
	// A registry in use has its root already (see the register tests).
	obs := zktest.Session(t, zksession.Config{Servers: zk.Servers(), Logger: log})
	if err := obs.EnsurePath(ctx, "/services/orders", nil); err != nil {
		t.Fatal(err)
	}

	s := &stack{
		t: t, ctx: ctx, log: log,
		backends: map[string]*samplebackend.Backend{}, names: map[string]string{}, gen: map[string]int{},
		ro: register.Options{Servers: zk.Servers(), SessionTimeout: 4 * time.Second, Service: "orders", Logger: log},
	}
	s.ctl, err = controller.Start(ctx, cfg, controller.Options{Logger: log, ID: "ctl-1"})
	if err != nil {
		t.Fatal(err)
	}
	testutil.StopAtCleanup(t, 10*time.Second, s.ctl.Shutdown)
	s.gw, err = gatewayd.Start(ctx, cfg, gatewayd.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	testutil.StopAtCleanup(t, 10*time.Second, s.gw.Shutdown)
	t.Cleanup(func() { // runs first: backends before the gateway
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, b := range s.backends {
			b.Kill()
		}
	})
	if s.client, err = ctlclient.New(s.ctl.URL(), ctlclient.Options{Token: token, Actor: "rollout-test"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b := s.start("127.0.0.1:0", n, 1)
		s.backends[b.Addr()], s.names[b.Addr()], s.gen[b.Addr()] = b, n, 1
	}
	want := make([]string, 0, len(names))
	for _, n := range names {
		want = append(want, n+"-v1")
	}
	s.waitRoutes(want...)
	return s
}

func (s *stack) start(listen, name string, gen int) *samplebackend.Backend {
	s.t.Helper()
	ro := s.ro
	b, err := samplebackend.Start(s.ctx, samplebackend.Options{
		Listen: listen, Name: fmt.Sprintf("%s-v%d", name, gen), Latency: 2 * time.Millisecond, Register: &ro, Logger: s.log,
	})
	if err != nil {
		s.t.Fatalf("starting backend %s: %v", name, err)
	}
	return b
}

// restart is the in-process Restart: stop without grace, start anew on
// the same address.
func (s *stack) restart(ctx context.Context, t rollout.Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.backends[t.Addr]
	if !ok {
		return fmt.Errorf("no backend at %s", t.Addr)
	}
	old.Kill()
	s.gen[t.Addr]++
	ro := s.ro
	b, err := samplebackend.Start(ctx, samplebackend.Options{
		Listen: t.Addr, Name: fmt.Sprintf("%s-v%d", s.names[t.Addr], s.gen[t.Addr]), Latency: 2 * time.Millisecond, Register: &ro, Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.backends[t.Addr] = b
	s.restarts.Add(1)
	return nil
}

// addrs returns the backends' addresses in rollout order.
func (s *stack) addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.backends))
	for a := range s.backends {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

func (s *stack) url(path string) string { return "http://" + s.gw.ProxyAddr() + "/orders" + path }

// waitRoutes waits until the gateway has answered from every named
// instance.
func (s *stack) waitRoutes(names ...string) {
	s.t.Helper()
	seen := map[string]bool{}
	eventually(s.t, "the gateway to route to "+strings.Join(names, ","), func() error {
		resp, err := http.Get(s.url("/probe"))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		seen[resp.Header.Get(samplebackend.HeaderInstance)] = true
		for _, n := range names {
			if !seen[n] {
				return fmt.Errorf("seen %v", seen)
			}
		}
		return nil
	})
}

func (s *stack) instance(addr string) ctlclient.InstanceView {
	s.t.Helper()
	v, err := s.client.Service(s.ctx, "orders")
	if err != nil {
		s.t.Fatalf("service view: %v", err)
	}
	for _, in := range v.Instances {
		if in.Addr == addr {
			return in
		}
	}
	s.t.Fatalf("%s not in the service view", addr)
	return ctlclient.InstanceView{}
}

func (s *stack) metric(name string) string {
	s.t.Helper()
	resp, err := http.Get(s.ctl.URL() + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	testutil.EventuallyNil(t, waitFor, what, cond)
}

// load sends GET and POST requests (POST bodies checked end to end)
// through the gateway until stopped, and counts failures of any kind.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
	seen       map[string]int
	stop       chan struct{}
	once       sync.Once
	wg         sync.WaitGroup
}

func startLoad(s *stack, workers int) *load {
	l := &load{stop: make(chan struct{}), seen: map[string]int{}}
	client := &http.Client{Timeout: 30 * time.Second}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				var name string
				var err error
				switch {
				case i%10 == 0:
					// Slow requests are in flight when drains begin.
					name, err = get(client, s.url(fmt.Sprintf("/slow/%d?latency=100ms", i)))
				case (i+w)%2 == 0:
					name, err = get(client, s.url(fmt.Sprintf("/load/%d", i)))
				default:
					name, err = post(client, s.url("/load"), fmt.Sprintf("payload %d %s", i, strings.Repeat("x", i%2000)))
				}
				l.mu.Lock()
				if err != nil {
					l.failed.Add(1)
					l.failures = append(l.failures, err.Error())
				} else {
					l.ok.Add(1)
					l.seen[name]++
				}
				l.mu.Unlock()
			}
		}()
	}
	// Stop before the backends go, also when the test fails early.
	s.t.Cleanup(l.halt)
	return l
}

func (l *load) halt() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// finish stops the load and fails the test if any request failed.
func (l *load) finish(t *testing.T) {
	t.Helper()
	l.halt()
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed, e.g. %q", n, n+l.ok.Load(), l.failures[0])
	}
	t.Logf("load: %d requests, %d failed; answered by %v", l.ok.Load()+l.failed.Load(), l.failed.Load(), l.seen)
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET: %s", resp.Status)
	}
	return resp.Header.Get(samplebackend.HeaderInstance), nil
}

func post(c *http.Client, url, body string) (string, error) {
	resp, err := c.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST: %s", resp.Status)
	}
	var rep samplebackend.Reply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return "", fmt.Errorf("POST: decoding reply: %w", err)
	}
	if rep.Bytes != int64(len(body)) {
		return "", fmt.Errorf("POST: backend got %d bytes, sent %d", rep.Bytes, len(body))
	}
	return rep.Instance, nil
}

func statuses(res *rollout.Result) string {
	var out []string
	for _, ir := range res.Instances {
		out = append(out, ir.Status)
	}
	return strings.Join(out, ",")
}

// A rollout over three instances under GET and POST load through the
// gateway loses no request: each instance is drained (confirmed, with slow
// requests in flight), stopped with no grace, started anew on the same
// address, and the next one is touched only once the gateway routes to the
// new one. A second rollout, two at a time, loses none either. The leader
// deletes every mark because the gateway acknowledged the new
// registrations, not because a bound passed.
func TestRolloutUnderLoadLosesNoRequest(t *testing.T) {
	s := newStack(t, "a", "b", "c")
	l := startLoad(s, 4)
	moreLoad := func(what string) {
		t.Helper()
		n := l.ok.Load()
		eventually(t, "load "+what, func() error {
			if l.ok.Load() < n+50 {
				return fmt.Errorf("%d ok", l.ok.Load()-n)
			}
			return nil
		})
	}
	moreLoad("before the rollouts")
	addrs := s.addrs()
	for round, parallel := range []int{1, 2} {
		var progress testutil.SyncBuffer
		before := l.ok.Load()
		res, err := rollout.Run(s.ctx, rollout.Options{
			Client: s.client, Service: "orders", Restart: s.restart, Parallel: parallel,
			DrainTimeout: waitFor, RegisterTimeout: waitFor, ServeTimeout: waitFor,
			Reason: "test rollout", DeployID: fmt.Sprintf("d-%d", round), Progress: &progress, Logger: s.log,
		})
		during := l.ok.Load() - before
		t.Logf("progress, %d at a time:\n%s", parallel, progress.String())
		if err != nil {
			t.Fatalf("rollout %d at a time: %v", parallel, err)
		}
		if got := statuses(res); got != "done,done,done" {
			t.Fatalf("statuses %s", got)
		}
		for i, ir := range res.Instances {
			if ir.Addr != addrs[i] || ir.Err != nil {
				t.Errorf("instance %d: %+v, want %s in address order", i, ir, addrs[i])
			}
		}
		if during == 0 {
			t.Error("no request completed during the rollout: the test proves nothing")
		}
		if n := strings.Count(progress.String(), "serving again"); n != 3 {
			t.Errorf("progress shows %d instances serving again, want 3", n)
		}
		var table bytes.Buffer
		res.WriteTable(&table)
		for _, a := range addrs {
			if !strings.Contains(table.String(), a) {
				t.Errorf("table lacks %s:\n%s", a, table.String())
			}
		}
		t.Logf("table:\n%s", table.String())
		moreLoad(fmt.Sprintf("after the rollout %d at a time", parallel))
	}
	l.finish(t)
	if n := s.restarts.Load(); n != 6 {
		t.Errorf("%d restarts, want 6", n)
	}
	// Every new instance serves.
	s.waitRoutes("a-v3", "b-v3", "c-v3")
	// The leader deleted every mark on the gateway's acknowledgement.
	eventually(t, "every mark to be deleted", func() error {
		for _, a := range addrs {
			if in := s.instance(a); in.Mark != nil || in.State != ctlclient.StateServing {
				return fmt.Errorf("%s: state %s, mark %+v", a, in.State, in.Mark)
			}
		}
		return nil
	})
	if v := s.metric(`zkgate_controller_marks_cleared_total{why="reregistered"}`); v != "6" {
		t.Errorf("marks cleared on acknowledgement: %q, want 6", v)
	}
	if v := s.metric(`zkgate_controller_marks_cleared_total{why="reregistered_bound"}`); v != "0" {
		t.Errorf("marks cleared by the bound: %q, want 0", v)
	}
}

// A failing restart command stops the rollout: the instance it failed on
// stays drained (its state is unknown), the next one is never touched and
// keeps serving. A rollout refuses to start while an instance is drained.
// A command that does not actually restart the instance (it stays
// registered as before) gets it undrained.
func TestRolloutStopsAtTheFirstFailure(t *testing.T) {
	s := newStack(t, "a", "b", "c")
	addrs := s.addrs()
	l := startLoad(s, 2)
	var cmdOut testutil.SyncBuffer
	failing := rollout.ExecRestarter("echo restarting {addr} on port $ZKGATE_PORT; exit 3", &cmdOut, &cmdOut)
	restart := func(ctx context.Context, tg rollout.Target) error {
		if tg.Addr == addrs[1] {
			return failing(ctx, tg)
		}
		return s.restart(ctx, tg)
	}
	opts := rollout.Options{
		Client: s.client, Service: "orders", Restart: restart,
		DrainTimeout: waitFor, RegisterTimeout: waitFor, ServeTimeout: waitFor, Logger: s.log,
	}
	res, err := rollout.Run(s.ctx, opts)
	if err == nil || !strings.Contains(err.Error(), addrs[1]) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("rollout error %v, want the failing command on %s", err, addrs[1])
	}
	if got := statuses(res); got != "done,failed,skipped" {
		t.Fatalf("statuses %s", got)
	}
	_, port, _ := strings.Cut(addrs[1], ":")
	if want := "restarting " + addrs[1] + " on port " + port; !strings.Contains(cmdOut.String(), want) {
		t.Errorf("command output %q, want %q", cmdOut.String(), want)
	}
	if in := s.instance(addrs[1]); !in.Marked || in.State != ctlclient.StateDrained {
		t.Errorf("the instance whose restart failed: state %s, marked %v; want it left drained", in.State, in.Marked)
	}
	if in := s.instance(addrs[2]); in.Mark != nil || in.State != ctlclient.StateServing {
		t.Errorf("the instance after the failure: state %s, mark %+v; want it untouched and serving", in.State, in.Mark)
	}
	name := func(i, gen int) string { return fmt.Sprintf("%s-v%d", s.names[addrs[i]], gen) }
	s.waitRoutes(name(0, 2), name(2, 1))

	// A drained instance blocks a new rollout, which then changes nothing.
	if _, err := rollout.Run(s.ctx, opts); err == nil || !strings.Contains(err.Error(), "drained") || !strings.Contains(err.Error(), addrs[1]) {
		t.Fatalf("rollout with a drained instance: %v", err)
	}
	if n := s.restarts.Load(); n != 1 {
		t.Fatalf("%d restarts, want 1", n)
	}

	// A command that succeeds without restarting anything: the old
	// registration stays, the instance is undrained, the rest untouched.
	if _, err := s.client.Undrain(s.ctx, "orders", addrs[1], "test"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the controller to see the undrain", func() error {
		if in := s.instance(addrs[1]); in.Mark != nil {
			return fmt.Errorf("mark %+v", in.Mark)
		}
		return nil
	})
	opts.Restart = func(context.Context, rollout.Target) error { return nil }
	opts.RegisterTimeout = time.Second
	res, err = rollout.Run(s.ctx, opts)
	if err == nil || !strings.Contains(err.Error(), "register again") {
		t.Fatalf("rollout with a no-op restart: %v", err)
	}
	if got := statuses(res); got != "failed,skipped,skipped" || !strings.HasPrefix(res.Instances[0].Note, "undrained") {
		t.Fatalf("statuses %s, note %q", got, res.Instances[0].Note)
	}
	eventually(t, "every instance to serve", func() error {
		for _, a := range addrs {
			if in := s.instance(a); in.Mark != nil || in.State != ctlclient.StateServing {
				return fmt.Errorf("%s: state %s, mark %+v", a, in.State, in.Mark)
			}
		}
		return nil
	})
	s.waitRoutes(name(0, 2), name(1, 1), name(2, 1))
	l.finish(t)
}

// A dry run prints the plan in rollout order and changes nothing.
func TestDryRunChangesNothing(t *testing.T) {
	s := newStack(t, "a", "b", "c")
	addrs := s.addrs()
	var progress testutil.SyncBuffer
	res, err := rollout.Run(s.ctx, rollout.Options{
		Client: s.client, Service: "orders", DryRun: true, Progress: &progress, Logger: s.log,
		Restart: func(context.Context, rollout.Target) error {
			t.Error("Restart called in a dry run")
			return nil
		},
		Explain: func(tg rollout.Target) string {
			c, _ := rollout.ExecCommand("restart-it {host} {port}", tg)
			return c
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(res); got != "planned,planned,planned" {
		t.Fatalf("statuses %s", got)
	}
	out := progress.String()
	t.Logf("plan:\n%s", out)
	last := -1
	for _, a := range addrs {
		host, port, _ := strings.Cut(a, ":")
		i := strings.Index(out, a+": restart-it "+host+" "+port)
		if i < 0 || i < last {
			t.Fatalf("plan lacks %s in order:\n%s", a, out)
		}
		last = i
	}
	for _, a := range addrs {
		if in := s.instance(a); in.Mark != nil || in.State != ctlclient.StateServing {
			t.Errorf("%s after a dry run: state %s, mark %+v", a, in.State, in.Mark)
		}
	}
	if a, err := s.client.Audit(s.ctx, "", 0); err != nil || len(a.Entries) != 0 {
		t.Errorf("audit after a dry run: %+v %v", a, err)
	}
}

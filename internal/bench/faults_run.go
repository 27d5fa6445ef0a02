package bench

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/internal/component"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/harness"
	"github.com/zkgate/zkgate/internal/procgroup"
)

// RunFaults runs the fault suite: a 3-node ZooKeeper ensemble, two
// controllers, the gateways and the sample backends as real processes
// (so kill -9 and SIGSTOP are real), a steady mixed load through the
// gateways, and each selected fault in turn. See docs/benchmarks.md,
// "Fault suite".
func RunFaults(ctx context.Context, opts FaultsOptions) (*FaultsReport, error) {
	if err := opts.defaults(); err != nil {
		return nil, &OptionsError{Err: err}
	}
	began := time.Now()
	rep := &FaultsReport{
		Schema: FaultsReportSchema, Date: began, Command: opts.Command, Version: opts.Version, Machine: readMachine(),
		Setup: FaultsSetup{
			Ensemble: 3, Controllers: 2, Gateways: opts.Gateways, Backends: opts.Backends, Rate: opts.Rate,
			SessionTimeoutText: opts.SessionTimeout.String(), TickTimeMS: 500, OutageText: opts.Outage.String(),
			MustHeldText: (opts.SessionTimeout + mustHeldSlack).String(),
			Load: fmt.Sprintf("~%d req/s round robin over the gateways in rotation; 2 in 3 GET, 1 in 3 POST with a 256 B–4 KiB body "+
				"whose length and SHA-256 the backend echoes (checked); 1 in 40 waits %d ms at the backend; client timeout 15s. "+
				"A paused or killed gateway is taken out of rotation at once, as a load balancer would once its health check fails.",
				opts.Rate, faultsSlowMs),
			Processes: "every gateway, controller and backend is a separate zkgate process (zkgate gateway, zkgate controller, " +
				"zkgate sample-backend); each ZooKeeper server a separate JVM (tickTime 500 ms)",
		},
	}
	dir, cleanup, err := harness.WorkDir(opts.Dir, "zkgate-bench-faults-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	e := &faultEnv{opts: opts, log: opts.Logger, dir: dir, sp: procgroup.NewSpawner(), hc: &http.Client{Timeout: 2 * time.Second}}
	defer e.close()
	if err := e.setup(ctx); err != nil {
		return nil, err
	}
	e.load.start()
	if err := component.Sleep(ctx, 3*time.Second); err != nil { // warm the connections
		return nil, err
	}
	// The fault windows follow each other: every request of the load from
	// here on counts in exactly one row (the one it started in).
	windowStart := time.Now()
	for i, f := range opts.Faults {
		b := e.backends[i%len(e.backends)]
		e.log.Info("fault", "n", i+1, "of", len(opts.Faults), "fault", f, "instance", b.name)
		row := &faultRow{e: e, r: FaultResult{Fault: f, Instance: b.name}, start: windowStart}
		err := e.runFault(ctx, f, row, b)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// A fault that stopped early may leave its mark: remove it so the
		// next one starts from a settled state (undraining nothing is fine).
		_ = e.undrain(ctx, b)
		if err != nil {
			row.r.Error = err.Error()
			e.log.Warn("fault did not complete", "fault", f, "err", err)
		}
		windowStart = time.Now()
		// Let the requests of the fault's window finish before counting.
		e.load.waitStartedBefore(windowStart, 20*time.Second)
		row.finish(windowStart)
		rep.Results = append(rep.Results, row.r)
		e.log.Info("fault done", "fault", f, "sent", row.r.Sent, "failed", row.r.Failed,
			"false_confirmations", row.r.FalseConfirmations, "passed", row.r.Passed)
		if err := e.waitSettled(ctx, 60*time.Second); err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("after %s the setup did not settle: %v; the suite stopped there", f, err))
			rep.StoppedEarly = true
			break
		}
	}
	e.load.close()
	e.load.mu.Lock()
	rep.NotSent = e.load.skipped
	e.load.mu.Unlock()
	if rep.NotSent > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d requests of the load were not sent (%d already in flight, or no gateway in rotation): the load was below its rate then", rep.NotSent, e.load.maxBusy))
	}
	rep.WallSec = round(time.Since(began).Seconds(), 1)
	rep.summarize()
	return rep, nil
}

// The controller-kill fault's requests in flight during the drain.
const (
	slowBurst        = 12
	slowBurstLatency = 1500 * time.Millisecond
)

// mustHeldSlack is what a crashed gateway may hold a drain beyond the
// session timeout (issue 11: session_timeout + 6 s).
const mustHeldSlack = 6 * time.Second

// faultRow accumulates one fault's result.
type faultRow struct {
	e      *faultEnv
	r      FaultResult
	start  time.Time
	guards []*confirmGuard
	// drainedFirst: the fault hits an instance drained before it, so no
	// request may fail.
	drainedFirst bool
}

func (row *faultRow) check(what string, ok bool, detail string) {
	row.r.Checks = append(row.r.Checks, FaultCheck{What: what, OK: ok, Detail: detail})
}

// observe records something seen that is no check (not pass or fail).
func (row *faultRow) observe(s string) {
	row.r.Observations = append(row.r.Observations, s)
}

func (row *faultRow) recovery(d time.Duration, what string) {
	row.r.RecoverySec = round(d.Seconds(), 2)
	row.r.Recovery = what
}

// finish counts the window's requests and settles the row's verdict.
func (row *faultRow) finish(end time.Time) {
	sent, failed, why := row.e.load.window(row.start, end)
	row.r.Sent, row.r.Failed, row.r.FailedReasons = sent, failed, why
	if len(why) == 0 {
		row.r.FailedReasons = nil
	}
	row.r.WindowSec = round(end.Sub(row.start).Seconds(), 1)
	if row.drainedFirst {
		row.check("no request failed (the instance was drained first)", failed == 0,
			fmt.Sprintf("%d of %d failed%s", failed, sent, prefixed(": ", reasons(why))))
	}
	row.r.Passed = row.r.Error == "" && row.r.FalseConfirmations == 0
	for _, c := range row.r.Checks {
		row.r.Passed = row.r.Passed && c.OK
	}
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

// confirmGuard remembers a confirmed drain: when it was confirmed and
// the instance's request counter right after.
type confirmGuard struct {
	b    *faultProc
	at   time.Time
	seq0 int64
	// drainConfirmedAsync's outcome.
	ok       bool
	detail   string
	firstErr string
	attempts int
}

// confirmed starts guarding a drain of b confirmed just now.
func (row *faultRow) confirmed(ctx context.Context, b *faultProc) *confirmGuard {
	g := &confirmGuard{b: b, at: time.Now(), seq0: -1}
	if s, err := probeSeq(ctx, row.e.hc, b.addr); err == nil {
		g.seq0 = s
	}
	row.guards = append(row.guards, g)
	row.r.Confirmed++
	return g
}

// verify counts what reached g's instance since its confirmation: the
// load's requests sent after it that the instance answered, and the
// instance's own counter (requests other than the two probes). A drain
// is confirmed falsely when either is above zero; it is counted once.
func (row *faultRow) verify(ctx context.Context, g *confirmGuard) {
	viaLoad := row.e.load.reachedAfter(g.b.name, g.at)
	counted := -1
	if g.seq0 >= 0 {
		if s, err := probeSeq(ctx, row.e.hc, g.b.addr); err == nil {
			counted = int(s - g.seq0 - 1)
		}
	}
	n := max(viaLoad, counted)
	detail := fmt.Sprintf("%d requests of the load answered by %s after the confirmation", viaLoad, g.b.name)
	if counted >= 0 {
		detail += fmt.Sprintf("; the backend counted %d requests after it", counted)
	} else {
		detail += "; the backend could not be asked (stopped)"
	}
	if n > 0 {
		row.r.FalseConfirmations++
	}
	row.check(fmt.Sprintf("nothing reached %s after its drain was confirmed", g.b.name), n == 0, detail)
}

// drain drains b with wait through the controllers (client fails over
// between them) and bounds the wait by timeout.
func (e *faultEnv) drain(ctx context.Context, c *ctlclient.Client, b *faultProc, timeout time.Duration, why string) (*ctlclient.DrainResponse, error) {
	if c == nil {
		c = e.client
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+15*time.Second)
	defer cancel()
	return c.Drain(ctx, faultsService, b.addr, ctlclient.DrainRequest{
		Reason: "zkgate bench faults: " + why, Wait: true, Timeout: timeout.String(),
	})
}

func (e *faultEnv) undrain(ctx context.Context, b *faultProc) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err := e.client.Undrain(ctx, faultsService, b.addr, "zkgate bench faults")
	return err
}

// drainConfirmed drains b and checks the drain is confirmed; it returns
// the guard of the confirmation (nil when not confirmed).
func (row *faultRow) drainConfirmed(ctx context.Context, b *faultProc, timeout time.Duration, what string) *confirmGuard {
	t0 := time.Now()
	resp, err := row.e.drain(ctx, nil, b, timeout, what)
	switch {
	case err != nil:
		row.check(what, false, "drain: "+err.Error())
		return nil
	case !resp.Confirmed:
		row.check(what, false, fmt.Sprintf("drain answered %s after %s: %s", resp.Status, since(t0), resp.Message))
		return nil
	}
	row.check(what, true, fmt.Sprintf("drained in %s", since(t0)))
	return row.confirmed(ctx, b)
}

// drainConfirmedAsync drains b like drainConfirmed, but as a deploy
// pipeline would during an outage: a drain that fails (an error, not an
// answer such as "lost") is sent again every 200 ms until retryFor has
// passed; the first failure is kept in g.firstErr. The check is left to
// addDrainCheck, so that it can run beside another wait (row is not
// touched).
func (row *faultRow) drainConfirmedAsync(ctx context.Context, b *faultProc, timeout, retryFor time.Duration) *confirmGuard {
	t0 := time.Now()
	g := &confirmGuard{b: b, seq0: -1}
	for {
		g.attempts++
		resp, err := row.e.drain(ctx, nil, b, timeout, "drain during a fault")
		g.at = time.Now()
		switch {
		case err != nil:
			g.detail = "drain: " + err.Error()
			if g.firstErr == "" {
				g.firstErr = fmt.Sprintf("%s after %s: %s", "the first drain failed", g.at.Sub(t0).Round(time.Millisecond), err)
			}
			if time.Since(t0) < retryFor && ctx.Err() == nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
		case !resp.Confirmed:
			g.detail = fmt.Sprintf("drain answered %s after %s: %s", resp.Status, since(t0), resp.Message)
		default:
			g.ok = true
			g.detail = fmt.Sprintf("drained %s after the first attempt (%d attempts)", g.at.Sub(t0).Round(time.Millisecond), g.attempts)
			if s, err := probeSeq(ctx, row.e.hc, b.addr); err == nil {
				g.seq0 = s
			}
		}
		return g
	}
}

// addDrainCheck records the outcome of drainConfirmedAsync.
func (row *faultRow) addDrainCheck(what string, g *confirmGuard) {
	row.check(what, g.ok, g.detail)
	if g.ok {
		row.guards = append(row.guards, g)
		row.r.Confirmed++
	}
}

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

// undrainAndReturn undrains b and checks that traffic reaches it again.
func (row *faultRow) undrainAndReturn(ctx context.Context, b *faultProc) {
	for _, g := range row.guards {
		if g.b == b {
			row.verify(ctx, g)
		}
	}
	row.guards = nil
	t0 := time.Now()
	if err := row.e.undrain(ctx, b); err != nil {
		row.check("undrained, "+b.name+" gets traffic again", false, err.Error())
		return
	}
	row.trafficReturns(ctx, b, t0, "undrained, "+b.name+" gets traffic again")
}

// trafficReturns checks that b answers requests of the load sent after t0
// within 15 s.
func (row *faultRow) trafficReturns(ctx context.Context, b *faultProc, t0 time.Time, what string) time.Time {
	var first time.Time
	err := row.e.waitFor(ctx, 15*time.Second, func() string {
		if first = row.e.load.firstAnswerAfter(b.name, t0); first.IsZero() {
			return "no request reached " + b.name
		}
		return ""
	})
	if err != nil {
		row.check(what, false, err.Error())
		return time.Time{}
	}
	row.check(what, true, fmt.Sprintf("first answer %s later", first.Sub(t0).Round(time.Millisecond)))
	return first
}

// instance is b's entry in the controller's view ("" state when not
// listed).
func (e *faultEnv) instance(ctx context.Context, b *faultProc) (ctlclient.InstanceView, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	svc, err := e.client.Service(ctx, faultsService)
	if err != nil {
		return ctlclient.InstanceView{}, err
	}
	for _, in := range svc.Instances {
		if in.Addr == b.addr {
			return in, nil
		}
	}
	return ctlclient.InstanceView{}, nil
}

// waitUnregistered waits until the controller no longer has b's
// registration (its session expired).
func (e *faultEnv) waitUnregistered(ctx context.Context, b *faultProc, bound time.Duration) error {
	return e.waitFor(ctx, bound, func() string {
		in, err := e.instance(ctx, b)
		if err != nil {
			return err.Error()
		}
		if in.Registered {
			return b.name + " is still registered"
		}
		return ""
	})
}

func (e *faultEnv) runFault(ctx context.Context, f string, row *faultRow, b *faultProc) error {
	run, ok := map[string]func(context.Context, *faultRow, *faultProc) error{
		FaultLeaderKill:         e.faultLeaderKill,
		FaultEnsembleOutage:     e.faultEnsembleOutage,
		FaultGatewayPause:       e.faultGatewayPause,
		FaultGatewayKill:        e.faultGatewayKill,
		FaultControllerKill:     e.faultControllerKill,
		FaultBackendKill:        e.faultBackendKill,
		FaultSessionFlap:        e.faultSessionFlap,
		FaultDrainedBackendKill: e.faultDrainedBackendKill,
	}[f]
	if !ok {
		return fmt.Errorf("unknown fault %q", f)
	}
	return run(ctx, row, b)
}

// faultLeaderKill: kill -9 the ZooKeeper leader; a drain right after must
// be confirmed once a new leader serves, and be true.
func (e *faultEnv) faultLeaderKill(ctx context.Context, row *faultRow, b *faultProc) error {
	i, err := e.zk.Leader()
	if err != nil {
		return err
	}
	row.r.What = fmt.Sprintf("kill -9 of the ZooKeeper leader (server %d), a drain of %s started at once (during the election), server restarted", i+1, b.name)
	if err := e.zk.Kill(i); err != nil {
		return err
	}
	killed := time.Now()
	drained := make(chan *confirmGuard, 1)
	go func() {
		drained <- row.drainConfirmedAsync(ctx, b, 30*time.Second, 30*time.Second)
	}()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	j, err := e.zk.WaitLeader(wctx)
	cancel()
	row.check("a new ZooKeeper leader is elected", err == nil, fmt.Sprintf("server %d after %s%s", j+1, since(killed), errSuffix(err)))
	g := <-drained
	row.addDrainCheck("a drain started during the election is confirmed (retried while refused)", g)
	if g.firstErr != "" {
		row.observe(g.firstErr + "; a pipeline must retry a drain that fails (zkgate drain exits 1)")
	}
	if g.ok {
		row.recovery(g.at.Sub(killed), "kill → drain confirmed")
	}
	t0 := time.Now()
	err = e.zk.StartServer(ctx, i)
	row.check("the killed server rejoins", err == nil, fmt.Sprintf("in %s%s", since(t0), errSuffix(err)))
	if err := component.Sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	row.undrainAndReturn(ctx, b)
	return nil
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}

// faultEnsembleOutage: every ZooKeeper server killed for opts.Outage;
// gateways keep routing (static stability) and stay ready; once it is
// back, drains work again.
func (e *faultEnv) faultEnsembleOutage(ctx context.Context, row *faultRow, b *faultProc) error {
	row.r.What = fmt.Sprintf("kill -9 of all 3 ZooKeeper servers for %s, then restarted; a drain of %s after", e.opts.Outage, b.name)
	down := time.Now()
	for i := range e.zk.Size() {
		if err := e.zk.Kill(i); err != nil {
			return err
		}
	}
	notReady := 0
	polls := 0
	for time.Since(down) < e.opts.Outage {
		for _, g := range e.gateways {
			polls++
			if e.gatewayReady(ctx, g) != "" {
				notReady++
			}
		}
		if err := component.Sleep(ctx, time.Second); err != nil {
			return err
		}
	}
	row.check("gateways stay ready through the outage (static stability)", notReady == 0,
		fmt.Sprintf("%d of %d /readyz polls not ready", notReady, polls))
	up := time.Now()
	if err := e.zk.StartAll(ctx); err != nil {
		return fmt.Errorf("restarting ZooKeeper: %w", err)
	}
	err := e.waitSettled(ctx, 60*time.Second)
	row.check("every gateway and controller reconnects", err == nil, fmt.Sprintf("%s after the restart%s", since(up), errSuffix(err)))
	if err == nil {
		row.recovery(time.Since(up), "ensemble restarted → every process reconnected")
	}
	if g := row.drainConfirmed(ctx, b, 20*time.Second, "a drain after the outage is confirmed"); g != nil {
		if err := component.Sleep(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	row.undrainAndReturn(ctx, b)
	return nil
}

// faultGatewayPause: SIGSTOP one gateway past the session timeout. While
// its session is expired it may still route on its last state, so a
// drain must not be confirmed; after SIGCONT it comes back and the drain
// is confirmed, and true.
func (e *faultEnv) faultGatewayPause(ctx context.Context, row *faultRow, b *faultProc) error {
	gi := len(e.gateways) - 1
	gw := e.gateways[gi]
	pause := e.opts.SessionTimeout + 2*time.Second
	row.r.What = fmt.Sprintf("SIGSTOP of %s; %s later (session timeout + 2s) a drain of %s bounded by 3s; then SIGCONT and the drain again", gw.name, pause, b.name)
	e.load.setActive(gi, false)
	gw.proc.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	if err := component.Sleep(ctx, pause); err != nil {
		gw.proc.Signal(syscall.SIGCONT)
		return err
	}
	t0 := time.Now()
	resp, err := e.drain(ctx, nil, b, 3*time.Second, "drain while a gateway is paused")
	switch {
	case err != nil:
		row.check("a drain while the gateway is paused is not reported drained", false, "drain: "+err.Error())
	default:
		row.check("a drain while the gateway is paused is not reported drained", !resp.Confirmed,
			fmt.Sprintf("answered %s after %s (%s)", resp.Status, since(t0), resp.Message))
		if resp.Confirmed {
			row.confirmed(ctx, b)
		}
	}
	gw.proc.Signal(syscall.SIGCONT)
	cont := time.Now()
	err = e.waitFor(ctx, 30*time.Second, func() string {
		if why := e.gatewayReady(ctx, gw); why != "" {
			return why
		}
		gws, err := e.client.Gateways(ctx)
		if err != nil {
			return err.Error()
		}
		if len(gws.Gateways) != len(e.gateways) {
			return fmt.Sprintf("the controller sees %d of %d gateways", len(gws.Gateways), len(e.gateways))
		}
		return ""
	})
	row.check("the paused gateway comes back (ready, presence re-created)", err == nil,
		fmt.Sprintf("%s after SIGCONT (paused %s)%s", since(cont), cont.Sub(stopped).Round(time.Millisecond), errSuffix(err)))
	e.load.setActive(gi, true)
	if g := row.drainConfirmed(ctx, b, 15*time.Second, "the drain is confirmed once the gateway is back"); g != nil {
		row.recovery(g.at.Sub(cont), "SIGCONT → the gateway is back and the drain confirmed")
	}
	if err := component.Sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	row.undrainAndReturn(ctx, b)
	return nil
}

// faultGatewayKill: kill -9 one gateway, then drain: the crashed gateway
// may hold the drain at most the session timeout + 6 s.
func (e *faultEnv) faultGatewayKill(ctx context.Context, row *faultRow, b *faultProc) error {
	gi := min(1, len(e.gateways)-1)
	gw := e.gateways[gi]
	row.r.What = fmt.Sprintf("kill -9 of %s, a drain of %s right after; the gateway restarted once it is confirmed", gw.name, b.name)
	e.load.setActive(gi, false)
	e.kill(gw)
	killed := time.Now()
	limit := e.opts.SessionTimeout + mustHeldSlack
	resp, err := e.drain(ctx, nil, b, 30*time.Second, "drain after a gateway crash")
	held := time.Since(killed)
	heldSec := round(held.Seconds(), 2)
	row.r.DrainHeldSec = &heldSec
	switch {
	case err != nil:
		row.check("the drain is confirmed", false, "drain: "+err.Error())
	case !resp.Confirmed:
		row.check("the drain is confirmed", false, fmt.Sprintf("answered %s: %s", resp.Status, resp.Message))
	default:
		row.check(fmt.Sprintf("the crashed gateway holds the drain ≤ %s", limit), held <= limit,
			fmt.Sprintf("confirmed %s after the kill", held.Round(time.Millisecond)))
		row.recovery(held, "kill → drain confirmed")
		row.confirmed(ctx, b)
	}
	t0 := time.Now()
	if err := e.start(ctx, gw); err != nil {
		return err
	}
	err = e.waitFor(ctx, 30*time.Second, func() string { return e.gatewayReady(ctx, gw) })
	row.check("the restarted gateway is ready", err == nil, fmt.Sprintf("in %s%s", since(t0), errSuffix(err)))
	e.load.setActive(gi, true)
	if err := component.Sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	row.undrainAndReturn(ctx, b)
	return nil
}

// faultControllerKill: a drain is sent to the controller leader, which is
// killed with -9 while the drain waits; the client fails over, the other
// controller takes the lead, the drain is confirmed, and true.
func (e *faultEnv) faultControllerKill(ctx context.Context, row *faultRow, b *faultProc) error {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	lr, err := e.client.Leader(lctx)
	cancel()
	if err != nil {
		return err
	}
	var leader, other *faultProc
	for _, c := range e.controllers {
		if c.name == lr.Leader {
			leader = c
		} else {
			other = c
		}
	}
	if leader == nil || other == nil {
		return fmt.Errorf("leader %q is none of the controllers", lr.Leader)
	}
	row.r.What = fmt.Sprintf("%d slow requests (%s) sent, then a drain of %s sent to the controller leader %s, which is killed with -9 300 ms later, while the drain waits for them",
		slowBurst, slowBurstLatency, b.name, leader.name)
	c, err := ctlclient.New(leader.url+","+other.url, ctlclient.Options{Token: e.token, Actor: faultsActor})
	if err != nil {
		return err
	}
	type result struct {
		resp *ctlclient.DrainResponse
		err  error
	}
	done := make(chan result, 1)
	// Requests in flight at every instance, so that the drain waits.
	e.load.burst(slowBurst, int(slowBurstLatency/time.Millisecond))
	time.Sleep(100 * time.Millisecond)
	t0 := time.Now()
	go func() {
		resp, err := e.drain(ctx, c, b, 30*time.Second, "drain while the controller leader dies")
		done <- result{resp, err}
	}()
	time.Sleep(300 * time.Millisecond)
	e.kill(leader)
	killed := time.Now()
	res := <-done
	answered := time.Now()
	row.check("the leader died while the drain waited", answered.After(killed),
		fmt.Sprintf("drain answered %s after the kill", answered.Sub(killed).Round(time.Millisecond)))
	switch {
	case res.err != nil:
		row.check("the drain is confirmed (the client fails over)", false, "drain: "+res.err.Error())
	case !res.resp.Confirmed:
		row.check("the drain is confirmed (the client fails over)", false, fmt.Sprintf("answered %s: %s", res.resp.Status, res.resp.Message))
	default:
		row.check("the drain is confirmed (the client fails over)", true, fmt.Sprintf("in %s", since(t0)))
		row.confirmed(ctx, b)
	}
	err = e.waitFor(ctx, 30*time.Second, func() string {
		code, err := e.get(ctx, other.url+"/readyz")
		if err != nil || code != http.StatusOK {
			return fmt.Sprintf("%s not ready", other.name)
		}
		oc, err := ctlclient.New(other.url, ctlclient.Options{Token: e.token})
		if err != nil {
			return err.Error()
		}
		l, err := oc.Leader(ctx)
		if err != nil {
			return err.Error()
		}
		if !l.IsLeader {
			return other.name + " does not lead yet"
		}
		return ""
	})
	row.check(other.name+" takes the lead", err == nil, fmt.Sprintf("%s after the kill%s", since(killed), errSuffix(err)))
	if err == nil {
		row.recovery(time.Since(killed), "kill → the other controller leads")
	}
	if in, err := e.instance(ctx, b); err != nil || !in.Marked {
		row.check("the mark is in place after the failover", false, fmt.Sprintf("marked=%v%s", in.Marked, errSuffix(err)))
	} else {
		row.check("the mark is in place after the failover", true, "state "+in.State)
	}
	if err := e.start(ctx, leader); err != nil {
		return err
	}
	if err := component.Sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	row.undrainAndReturn(ctx, b)
	return nil
}

// faultBackendKill: kill -9 a backend nobody drained (the failure a drain
// avoids): requests in flight to it fail; once its registration expires
// nothing more fails; restarted at the same address, it gets traffic again
// at once (a new registration is not ejected).
func (e *faultEnv) faultBackendKill(ctx context.Context, row *faultRow, b *faultProc) error {
	row.r.What = fmt.Sprintf("kill -9 of %s without a drain; restarted at the same address once its registration expired", b.name)
	e.kill(b)
	killed := time.Now()
	err := e.waitUnregistered(ctx, b, 3*e.opts.SessionTimeout+5*time.Second)
	row.check("its registration expires", err == nil, fmt.Sprintf("%s after the kill%s", since(killed), errSuffix(err)))
	if err := component.Sleep(ctx, time.Second); err != nil {
		return err
	}
	if last := e.load.lastFailureIn(row.start, time.Now()); !last.IsZero() {
		row.recovery(last.Sub(killed), "kill → last failed request")
	} else {
		row.recovery(0, "kill → last failed request (none failed)")
	}
	t0 := time.Now()
	if err := e.start(ctx, b); err != nil {
		return err
	}
	row.trafficReturns(ctx, b, t0, "restarted, "+b.name+" gets traffic again (not ejected)")
	return nil
}

// faultSessionFlap: a drained instance's registrar loses its session
// (SIGSTOP past the session timeout) and registers again with the same
// id: the drain must hold (README, "A session flap is not a restart").
func (e *faultEnv) faultSessionFlap(ctx context.Context, row *faultRow, b *faultProc) error {
	pause := e.opts.SessionTimeout + 2*time.Second
	row.r.What = fmt.Sprintf("%s drained, then SIGSTOP for %s: its session expires; after SIGCONT it registers again with the same id", b.name, pause)
	row.drainedFirst = true
	before, err := e.instance(ctx, b)
	if err != nil {
		return err
	}
	if g := row.drainConfirmed(ctx, b, 20*time.Second, "the drain is confirmed"); g == nil {
		return nil
	}
	b.proc.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	err = e.waitUnregistered(ctx, b, 3*e.opts.SessionTimeout)
	row.check("its session expires (registration gone)", err == nil, fmt.Sprintf("%s after SIGSTOP%s", since(stopped), errSuffix(err)))
	if d := pause - time.Since(stopped); d > 0 {
		if err := component.Sleep(ctx, d); err != nil {
			b.proc.Signal(syscall.SIGCONT)
			return err
		}
	}
	b.proc.Signal(syscall.SIGCONT)
	cont := time.Now()
	var in ctlclient.InstanceView
	err = e.waitFor(ctx, 20*time.Second, func() string {
		var err error
		if in, err = e.instance(ctx, b); err != nil {
			return err.Error()
		}
		if !in.Registered {
			return b.name + " has not registered again"
		}
		return ""
	})
	row.check("it registers again with the same id", err == nil && in.ID == before.ID && in.Czxid > before.Czxid,
		fmt.Sprintf("id %s → %s, czxid %d → %d, %s after SIGCONT%s", before.ID, in.ID, before.Czxid, in.Czxid, since(cont), errSuffix(err)))
	if err == nil {
		row.recovery(time.Since(cont), "SIGCONT → registered again")
	}
	// Give the gateways and the controller's leader time to act on it.
	if err := component.Sleep(ctx, 3*time.Second); err != nil {
		return err
	}
	in, err = e.instance(ctx, b)
	row.check("the drain holds (mark kept, instance drained)", err == nil && in.Marked && in.Mark != nil,
		fmt.Sprintf("state %s, marked %v%s", in.State, in.Marked, errSuffix(err)))
	row.undrainAndReturn(ctx, b)
	return nil
}

// faultDrainedBackendKill: the deploy path: drain, kill -9, restart. No
// request may fail; the restart's new registration ends the drain.
func (e *faultEnv) faultDrainedBackendKill(ctx context.Context, row *faultRow, b *faultProc) error {
	row.r.What = fmt.Sprintf("%s drained, then kill -9; restarted at the same address (a new registration)", b.name)
	row.drainedFirst = true
	g := row.drainConfirmed(ctx, b, 20*time.Second, "the drain is confirmed")
	if g == nil {
		return nil
	}
	if err := component.Sleep(ctx, time.Second); err != nil {
		return err
	}
	row.verify(ctx, g) // while it can still be asked
	row.guards = nil
	e.kill(b)
	killed := time.Now()
	err := e.waitUnregistered(ctx, b, 3*e.opts.SessionTimeout+5*time.Second)
	row.check("its registration expires", err == nil, fmt.Sprintf("%s after the kill%s", since(killed), errSuffix(err)))
	t0 := time.Now()
	if err := e.start(ctx, b); err != nil {
		return err
	}
	first := row.trafficReturns(ctx, b, t0, "restarted (new registration), it gets traffic without an undrain")
	if !first.IsZero() {
		row.recovery(first.Sub(t0), "restart → first request served")
	}
	err = e.waitFor(ctx, 20*time.Second, func() string {
		in, err := e.instance(ctx, b)
		if err != nil {
			return err.Error()
		}
		if in.Mark != nil {
			return "the mark is still there (state " + in.State + ")"
		}
		return ""
	})
	row.check("the controller's leader deletes the mark", err == nil, strings.TrimPrefix(errSuffix(err), ": "))
	return nil
}

// Package rollout restarts every instance of a service, one (or a few) at
// a time, without losing a request: it is `zkgate rollout` and what
// `zkgate demo` calls.
//
// For each registered instance, in address order, Parallel at a time:
//
//  1. drain it through the controller and wait for the confirmed drain
//     (every live gateway applies the mark and has nothing in flight to
//     it), at most DrainTimeout;
//  2. run Restart (the CLI runs a shell command, see ExecRestarter);
//  3. wait until the address registers again: a new registration, whose
//     czxid is greater than the mark's mzxid and whose incarnation differs
//     from the one the mark recorded, so that the drained process
//     re-creating its registration after a session flap does not count
//     (marks.Reregistered, docs/architecture.md#zookeeper-rules), at most
//     RegisterTimeout;
//  4. wait until every live gateway routes to it, as the gateways
//     acknowledge through their presence reports (never guessed from
//     time), at most ServeTimeout: either the controller shows every live
//     gateway reporting the mark's version with the instance warming or
//     serving (or without a route for the service), or the mark is gone
//     after the re-registration, which the leader does only once every
//     gateway acknowledged it (or after its bound, see package controller)
//     — and the registry says the instance is UP.
//
// Then the next. The rollout stops at the first failure: instances not
// started yet are never touched and keep serving; instances already in
// progress (Parallel > 1) finish their cycle. What happens to the instance
// that failed depends on where it failed, and is said in its
// InstanceResult.Note:
//
//   - the drain was not confirmed (timeout, a gateway lost, superseded,
//     error, interrupted): the instance was not touched, so it is undrained
//     at once;
//   - the restart failed (or was interrupted): its state is unknown (the
//     command may have stopped it), so it stays drained. A new registration
//     puts it back in service by itself (zxid rule) and the leader then
//     deletes the mark; otherwise `zkgate undrain` does, or the mark's TTL;
//   - the restart succeeded but no new registration came within
//     RegisterTimeout: if the old registration is still there, the command
//     evidently did not restart the instance (its old process, or at least
//     its ZooKeeper session, is alive: a dead process's session expires long
//     before RegisterTimeout), so it is undrained; if the address is not
//     registered at all it stays drained (nothing to route to; a later
//     registration puts it back by itself);
//   - the gateways did not all acknowledge within ServeTimeout: it is
//     registered again, so the mark no longer applies wherever the new
//     registration was seen; nothing is undone.
//
// The mark's TTL is DrainTimeout + RegisterTimeout + ServeTimeout +
// RestartAllowance, so that it outlives a slow restart.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/instancestate"
	"github.com/zkgate/zkgate/internal/marks"
)

// Defaults of Options.
const (
	DefaultDrainTimeout    = 2 * time.Minute
	DefaultRegisterTimeout = 2 * time.Minute
	DefaultServeTimeout    = time.Minute
	DefaultReason          = "rollout"
	// RestartAllowance is added to the timeouts to make the marks' TTL.
	RestartAllowance = 10 * time.Minute
)

// Instance statuses (InstanceResult.Status).
const (
	// StatusDone: drained, restarted, registered again and routed to by
	// every live gateway.
	StatusDone = "done"
	// StatusFailed: see InstanceResult.Err and Note.
	StatusFailed = "failed"
	// StatusSkipped: not started because the rollout stopped; never
	// touched, still serving.
	StatusSkipped = "skipped"
	// StatusPlanned: a dry run's instance.
	StatusPlanned = "planned"
)

// Target is one instance to restart.
type Target struct {
	// Addr is host:port, the instance's identity.
	Addr string
	Host string
	Port int
}

// Options configure a rollout. Client, Service and (unless DryRun)
// Restart are required.
type Options struct {
	Client  *ctlclient.Client
	Service string
	// Restart restarts one instance and returns when the restart is done
	// (or has been started: the rollout then waits for the new
	// registration). It must honour ctx. The CLI uses ExecRestarter.
	Restart func(ctx context.Context, t Target) error
	// Explain, optional, describes what Restart does to t, for the dry
	// run's plan (e.g. the command line).
	Explain func(t Target) string
	// Parallel is how many instances are rolled at a time; default 1. At
	// least one instance should stay in service: with Parallel ≥ the number
	// of instances every one is drained at once, and the gateways fail
	// open to drained instances (a warning says so).
	Parallel int
	// DryRun prints the plan to Progress and changes nothing.
	DryRun bool
	// DrainTimeout bounds each confirmed drain; default 2m.
	DrainTimeout time.Duration
	// RegisterTimeout bounds the wait for each new registration, from the
	// end of Restart; default 2m.
	RegisterTimeout time.Duration
	// ServeTimeout bounds the wait for every gateway to route to each
	// restarted instance, from its new registration; default 1m.
	ServeTimeout time.Duration
	// Reason and DeployID go into the marks and the audit trail; Reason
	// defaults to "rollout".
	Reason, DeployID string
	// Progress receives a progress bar when it is a terminal, plain lines
	// otherwise; nil discards. The final table is not written here: see
	// Result.WriteTable.
	Progress io.Writer
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// InstanceResult is what happened to one instance.
type InstanceResult struct {
	Addr string
	// Drain is the time to the confirmed drain; Restart is Restart's
	// duration; ToServing is from the end of Restart until every gateway
	// routes to the new registration.
	Drain, Restart, ToServing time.Duration
	// Status is one of the Status* constants.
	Status string
	Err    error
	// Note says, for a failed instance, what the rollout left it in (e.g.
	// "undrained: …", "left drained: …").
	Note string
}

// Result is the outcome of a rollout, one InstanceResult per instance in
// rollout order.
type Result struct {
	Instances []InstanceResult
	Total     time.Duration
}

// Run performs the rollout (see the package documentation). It returns an
// error when the rollout could not start (the Result is then nil) or when
// an instance failed (the Result says which, and which were skipped).
func Run(ctx context.Context, opts Options) (*Result, error) {
	start := time.Now()
	o, err := withDefaults(opts)
	if err != nil {
		return nil, err
	}
	r := &runner{o: o, log: o.Logger.With("service", o.Service)}
	targets, err := r.plan(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{Instances: make([]InstanceResult, len(targets))}
	for i, t := range targets {
		res.Instances[i] = InstanceResult{Addr: t.Addr, Status: StatusSkipped}
	}
	if o.DryRun {
		writePlan(o, targets)
		for i := range res.Instances {
			res.Instances[i].Status = StatusPlanned
		}
		res.Total = time.Since(start)
		return res, nil
	}
	r.prog = newReporter(o.Progress, o.Service, targets, o.Parallel)
	defer r.prog.close()
	if o.Parallel >= len(targets) && len(targets) > 1 {
		const msg = "every instance is drained at once: the gateways fail open to drained instances, so requests may fail"
		r.log.Warn(msg, "parallel", o.Parallel, "instances", len(targets))
		r.prog.line("warning: " + msg)
	}

	var (
		mu      sync.Mutex
		next    int
		stopped bool
		failed  = -1
		wg      sync.WaitGroup
	)
	for w := 0; w < min(o.Parallel, len(targets)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if stopped || next >= len(targets) || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				ir := r.one(ctx, i, targets[i])
				mu.Lock()
				res.Instances[i] = ir
				if ir.Status != StatusDone && !stopped {
					stopped, failed = true, i
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Total = time.Since(start)
	var runErr error
	if failed < 0 && ctx.Err() != nil {
		runErr = fmt.Errorf("rollout of %s interrupted: %w", o.Service, ctx.Err())
	}
	if failed >= 0 {
		ir := res.Instances[failed]
		runErr = fmt.Errorf("rollout of %s stopped at %s (%d of %d): %w", o.Service, ir.Addr, failed+1, len(targets), ir.Err)
		if ir.Note != "" {
			runErr = fmt.Errorf("%w; %s", runErr, ir.Note)
		}
	}
	if n := res.count(StatusSkipped); n > 0 && runErr != nil {
		runErr = fmt.Errorf("%w; %s not restarted (still serving)", runErr, plural(n, "instance"))
	}
	r.prog.finish(res, runErr)
	return res, runErr
}

func withDefaults(o Options) (Options, error) {
	switch {
	case o.Client == nil:
		return o, errors.New("rollout: no controller client")
	case strings.TrimSpace(o.Service) == "":
		return o, errors.New("rollout: no service")
	case o.Restart == nil && !o.DryRun:
		return o, errors.New("rollout: no restart function")
	case o.Parallel < 0 || o.DrainTimeout < 0 || o.RegisterTimeout < 0 || o.ServeTimeout < 0:
		return o, errors.New("rollout: parallel and timeouts must not be negative")
	}
	if o.Parallel == 0 {
		o.Parallel = 1
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.RegisterTimeout == 0 {
		o.RegisterTimeout = DefaultRegisterTimeout
	}
	if o.ServeTimeout == 0 {
		o.ServeTimeout = DefaultServeTimeout
	}
	if strings.TrimSpace(o.Reason) == "" {
		o.Reason = DefaultReason
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

type runner struct {
	o    Options
	log  *slog.Logger
	prog *reporter
}

// apiTimeout bounds one controller call that does not wait.
const apiTimeout = 30 * time.Second

func (r *runner) service(ctx context.Context) (*ctlclient.ServiceResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	v, err := r.o.Client.Service(cctx, r.o.Service)
	var ae *ctlclient.APIError
	if errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("the controller knows no service %q: %w", r.o.Service, err)
	}
	return v, err
}

// plan lists the registered instances in address order and refuses to
// start while one of them is drained: restarting it would put it back in
// service behind the back of whoever drained it.
func (r *runner) plan(ctx context.Context) ([]Target, error) {
	v, err := r.service(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing the instances of %s: %w", r.o.Service, err)
	}
	var targets []Target
	var marked []string
	for _, in := range v.Instances {
		if !in.Registered {
			continue
		}
		if in.Marked {
			m := in.Addr
			if in.Mark != nil {
				m += fmt.Sprintf(" (by %s: %q)", in.Mark.By, in.Mark.Reason)
			}
			marked = append(marked, m)
		}
		targets = append(targets, Target{Addr: in.Addr, Host: in.Host, Port: in.Port})
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Addr < targets[j].Addr })
	if len(targets) == 0 {
		return nil, fmt.Errorf("service %s has no registered instance", r.o.Service)
	}
	if len(marked) > 0 {
		return nil, fmt.Errorf("%s of %s drained: %s; a rollout would put it back in service behind the drainer's back: undrain it first (zkgate undrain) or let whoever drained it finish",
			plural(len(marked), "instance"), r.o.Service, strings.Join(marked, ", "))
	}
	return targets, nil
}

// one rolls one instance.
func (r *runner) one(ctx context.Context, i int, t Target) InstanceResult {
	ir := InstanceResult{Addr: t.Addr}
	log := r.log.With("addr", t.Addr)
	fail := func(note string, err error) InstanceResult {
		ir.Status, ir.Err, ir.Note = StatusFailed, err, note
		log.Warn("instance failed", "err", err, "note", note)
		r.prog.end(i, ir)
		return ir
	}

	r.prog.phase(i, phaseDraining, "")
	t0 := time.Now()
	mark, err := r.drain(ctx, t)
	ir.Drain = time.Since(t0)
	if err != nil {
		return fail(r.undrain(ctx, t, "the drain was not confirmed; the instance was not touched"), fmt.Errorf("drain: %w", err))
	}
	log.Info("drained", "took", ir.Drain, "mzxid", mark.Mzxid)

	r.prog.phase(i, phaseRestarting, fmt.Sprintf("drained in %s", fmtDur(ir.Drain)))
	t1 := time.Now()
	err = r.o.Restart(ctx, t)
	ir.Restart = time.Since(t1)
	if err != nil {
		return fail(fmt.Sprintf("left drained: the restart failed, so its state is unknown; a new registration puts it back in service by itself, or run zkgate undrain --service %s --instance %s", r.o.Service, t.Addr),
			fmt.Errorf("restart: %w", err))
	}
	log.Info("restarted", "took", ir.Restart)

	r.prog.phase(i, phaseRegistering, fmt.Sprintf("restarted in %s", fmtDur(ir.Restart)))
	t2 := time.Now()
	var last ctlclient.InstanceView
	var seen bool
	err = r.poll(ctx, r.o.RegisterTimeout, func(v *ctlclient.ServiceResponse) (bool, string, error) {
		last, seen = find(v, t.Addr)
		switch {
		case !seen || !last.Registered:
			return false, "not registered", nil
		case last.Czxid <= mark.Mzxid:
			return false, "only its registration from before the drain is there", nil
		case !marks.Reregistered(last.Czxid, last.Incarnation, mark.Mzxid, mark.Incarnation):
			return false, fmt.Sprintf("only its registration from before the drain is there, re-created after a session flap (same incarnation %q)", last.Incarnation), nil
		}
		return true, "", nil
	})
	if err != nil {
		ir.ToServing = time.Since(t2)
		var note string
		switch {
		case ctx.Err() != nil:
			note = "left drained: interrupted after the restart; a new registration puts it back in service by itself"
		case seen && last.Registered && !marks.Reregistered(last.Czxid, last.Incarnation, mark.Mzxid, mark.Incarnation):
			note = r.undrain(ctx, t, "its registration from before the restart is still there, so the restart did not restart it")
		default:
			note = "left drained: not registered; a new registration puts it back in service by itself"
		}
		return fail(note, fmt.Errorf("waiting for it to register again: %w", err))
	}

	r.prog.phase(i, phaseRouting, "registered again")
	err = r.poll(ctx, r.o.ServeTimeout, func(v *ctlclient.ServiceResponse) (bool, string, error) {
		in, ok := find(v, t.Addr)
		return servingCheck(in, ok, mark)
	})
	ir.ToServing = time.Since(t2)
	if err != nil {
		return fail("registered again: gateways that have seen the new registration route to it; the controller deletes the mark once every gateway acknowledges it (or after its bound)",
			fmt.Errorf("waiting for every gateway to route to it: %w", err))
	}
	ir.Status = StatusDone
	log.Info("serving again", "drain", ir.Drain, "restart", ir.Restart, "to_serving", ir.ToServing)
	r.prog.end(i, ir)
	return ir
}

// drain writes the mark and waits for the confirmed drain.
func (r *runner) drain(ctx context.Context, t Target) (ctlclient.MarkView, error) {
	ttl := r.o.DrainTimeout + r.o.RegisterTimeout + r.o.ServeTimeout + RestartAllowance
	dctx, cancel := context.WithTimeout(ctx, r.o.DrainTimeout+apiTimeout)
	defer cancel()
	resp, err := r.o.Client.Drain(dctx, r.o.Service, t.Addr, ctlclient.DrainRequest{
		Reason: r.o.Reason, DeployID: r.o.DeployID, TTL: ttl.String(),
		Wait: true, Timeout: r.o.DrainTimeout.String(),
	})
	if err != nil {
		return ctlclient.MarkView{}, err
	}
	if resp.Status != ctlclient.StatusDrained {
		return resp.Mark, fmt.Errorf("not confirmed (%s): %s", resp.Status, resp.Message)
	}
	return resp.Mark, nil
}

// undrain removes the instance's mark (best effort, also after ctx ended)
// and returns the note for the result.
func (r *runner) undrain(ctx context.Context, t Target, why string) string {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
	defer cancel()
	if _, err := r.o.Client.Undrain(uctx, r.o.Service, t.Addr, "rollout: "+why); err != nil {
		r.log.Error("undraining failed", "addr", t.Addr, "err", err)
		return fmt.Sprintf("%s, but undraining it failed (%v): run zkgate undrain --service %s --instance %s", why, err, r.o.Service, t.Addr)
	}
	return "undrained: " + why
}

// errTimeout says a wait ran out of time.
var errTimeout = errors.New("timed out")

// poll asks the controller about the service until check says done, check
// fails, ctx ends or timeout passes. Controller errors are retried until
// the timeout.
func (r *runner) poll(ctx context.Context, timeout time.Duration, check func(*ctlclient.ServiceResponse) (bool, string, error)) error {
	deadline := time.Now().Add(timeout)
	interval := 20 * time.Millisecond
	why := "no answer yet"
	for {
		v, err := r.service(ctx)
		if err == nil {
			done, w, ferr := check(v)
			if ferr != nil {
				return ferr
			}
			if done {
				return nil
			}
			why = w
		} else {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			why = "asking the controller: " + err.Error()
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w after %s: %s", errTimeout, timeout, why)
		}
		timer := time.NewTimer(min(interval, left))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
		interval = min(interval*3/2, 250*time.Millisecond)
	}
}

func find(v *ctlclient.ServiceResponse, addr string) (ctlclient.InstanceView, bool) {
	for _, in := range v.Instances {
		if in.Addr == addr {
			return in, true
		}
	}
	return ctlclient.InstanceView{}, false
}

// servingCheck decides, from the controller's view of the instance,
// whether every live gateway routes to the new registration that followed
// the mark (marks.Reregistered). why says what is missing; err is set when it
// can no longer happen (the instance was drained again).
func servingCheck(in ctlclient.InstanceView, found bool, mark ctlclient.MarkView) (done bool, why string, err error) {
	mzxid := mark.Mzxid
	switch {
	case !found || !in.Registered:
		return false, "not registered any more", nil
	case in.Czxid <= mzxid:
		return false, "only a registration older than the drain is there", nil
	case !marks.Reregistered(in.Czxid, in.Incarnation, mzxid, mark.Incarnation):
		return false, "only the drained registration is there, re-created after a session flap", nil
	case in.Marked && in.Mark != nil && in.Mark.Mzxid > mzxid:
		return false, "", fmt.Errorf("drained again meanwhile (by %s: %q)", in.Mark.By, in.Mark.Reason)
	case in.Marked:
		return false, "marked", nil
	case in.State != ctlclient.StateServing:
		return false, fmt.Sprintf("the registry says it is %s (status %s)", in.State, in.Status), nil
	case in.Mark == nil:
		// The leader deletes the mark only once every live gateway
		// acknowledged the new registration (or after its bound).
		return true, "", nil
	}
	var waiting []string
	for _, g := range in.Gateways {
		switch g.State {
		case instancestate.Warming, instancestate.Serving, ctlclient.GatewayUnrouted:
		default:
			waiting = append(waiting, g.ID+" "+g.State)
		}
	}
	if len(waiting) > 0 {
		return false, "waiting for gateway(s) " + strings.Join(waiting, ", "), nil
	}
	return true, "", nil
}

func (res *Result) count(status string) int {
	n := 0
	for _, ir := range res.Instances {
		if ir.Status == status {
			n++
		}
	}
	return n
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// fmtDur formats a duration for people: 12ms, 1.25s, 2m3s.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

package demo

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/zkgate/zkgate/internal/component"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/rollout"
)

// describe says what mode does, with its timings, and, when --quick
// shortened them, a note saying so.
func describe(m Mode, t Timing, quick bool) (desc, note string) {
	full := FullTiming()
	switch m {
	case ModePoll:
		desc = fmt.Sprintf("gateway ignores watches and re-reads the registry every %s; backends killed and restarted one by one", t.PollInterval)
		if quick && t.PollInterval != full.PollInterval {
			note = fmt.Sprintf("--quick: re-reads every %s instead of %s", t.PollInterval, full.PollInterval)
		}
	case ModeWatch:
		desc = fmt.Sprintf("gateway follows ZooKeeper watches (and re-reads every %s); no drain: backends killed and restarted one by one", t.ResyncInterval)
	case ModeSleep:
		desc = fmt.Sprintf("drain (without waiting), sleep %s, then stop and restart (the seed's \"sleep 20 s\")", t.Sleep)
		if quick && t.Sleep != full.Sleep {
			note = fmt.Sprintf("--quick: sleeps %s instead of %s", t.Sleep, full.Sleep)
		}
	case ModeSpring:
		desc = fmt.Sprintf("what Spring shops do today: instance_status %s in the registration (as Spring's /actuator/serviceregistry does), sleep %s, then stop and restart", statusOutOfService, t.Sleep)
		if quick && t.Sleep != full.Sleep {
			note = fmt.Sprintf("--quick: sleeps %s instead of %s", t.Sleep, full.Sleep)
		}
	case ModeZkgate:
		desc = fmt.Sprintf("zkgate rollout: confirmed drain, stop and restart, wait until every gateway routes to it (%s warm-up)", t.Warmup)
	case ModeNginx:
		desc = "nginx with a static upstream of the 4 backends and its default passive retries (proxy_next_upstream error timeout: a POST is not retried once sent)"
	}
	return desc, note
}

// restartOrder is the order instances are restarted in: by address, as
// rollout does.
func (s *stack) restartOrder() []*backend {
	out := append([]*backend(nil), s.backends...)
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	return out
}

// rollout restarts every backend the mode's way. total runs from the first
// instance's first step to the last instance back in service; per holds
// each instance's time. On error, per covers the instances done.
func (r *run) rollout(ctx context.Context, s *stack) (total time.Duration, per []time.Duration, err error) {
	if s.mode == ModeZkgate && !s.newAddress() {
		return r.rolloutZkgate(ctx, s)
	}
	start := time.Now()
	for i, b := range s.restartOrder() {
		t0 := time.Now()
		if s.mode == ModeSleep {
			r.prog.step(i, b.addr, "draining (no wait)")
			_, err := s.client.Drain(ctx, service, b.addr, ctlclient.DrainRequest{
				Reason: "zkgate demo: sleep mode", DeployID: r.runID + "-sleep",
			})
			if err != nil {
				return time.Since(start), per, fmt.Errorf("draining %s: %w", b.addr, err)
			}
			r.prog.step(i, b.addr, fmt.Sprintf("sleeping %s before restarting", r.timing.Sleep))
			if err := component.Sleep(ctx, r.timing.Sleep); err != nil {
				return time.Since(start), per, err
			}
		}
		if s.mode == ModeSpring {
			r.prog.step(i, b.addr, "instance_status "+statusOutOfService)
			if err := s.setStatus(ctx, b.addr, statusOutOfService); err != nil {
				return time.Since(start), per, fmt.Errorf("taking %s out of service: %w", b.addr, err)
			}
			r.prog.step(i, b.addr, fmt.Sprintf("sleeping %s before restarting", r.timing.Sleep))
			if err := component.Sleep(ctx, r.timing.Sleep); err != nil {
				return time.Since(start), per, err
			}
		}
		var serving func(context.Context) error
		if s.mode == ModeZkgate {
			// New address: the rollout package waits for the same address
			// to register again, so the demo does its steps itself.
			r.prog.step(i, b.addr, "draining (confirmed)")
			if err := r.drainConfirmed(ctx, s, b.addr); err != nil {
				return time.Since(start), per, err
			}
			serving = func(ctx context.Context) error {
				wctx, cancel := context.WithTimeout(ctx, r.timing.StepTimeout)
				defer cancel()
				return s.waitRouting(wctx, []string{b.addr})
			}
		}
		old := b.addr
		r.prog.step(i, old, "stopping and restarting")
		if err := s.restart(ctx, b); err != nil {
			return time.Since(start), per, fmt.Errorf("restarting %s: %w", old, err)
		}
		if serving != nil {
			r.prog.step(i, b.addr, "waiting until the gateway routes to it")
			if err := serving(ctx); err != nil {
				return time.Since(start), per, fmt.Errorf("%s, restarted on %s: %w", old, b.addr, err)
			}
		}
		d := time.Since(t0)
		per = append(per, d)
		r.prog.instanceDone(i, b.addr, d)
	}
	return time.Since(start), per, nil
}

// drainConfirmed drains addr and waits for the confirmation (every gateway
// has applied the mark and has nothing in flight to it).
func (r *run) drainConfirmed(ctx context.Context, s *stack, addr string) error {
	resp, err := s.client.Drain(ctx, service, addr, ctlclient.DrainRequest{
		Reason: "zkgate demo: zkgate mode", DeployID: r.runID + "-zkgate",
		Wait: true, Timeout: r.timing.StepTimeout.String(),
	})
	if err != nil {
		return fmt.Errorf("draining %s: %w", addr, err)
	}
	if !resp.Confirmed {
		return fmt.Errorf("draining %s: not confirmed (%s: %s)", addr, resp.Status, resp.Message)
	}
	return nil
}

// rolloutZkgate runs package rollout over the backends: it drains each
// with confirmation, calls Restart, and waits until the address is
// registered again and every gateway routes to it.
func (r *run) rolloutZkgate(ctx context.Context, s *stack) (time.Duration, []time.Duration, error) {
	order := s.restartOrder()
	index := map[string]int{}
	for i, b := range order {
		index[b.addr] = i
	}
	start := time.Now()
	res, err := rollout.Run(ctx, rollout.Options{
		Client:  s.client,
		Service: service,
		Restart: func(ctx context.Context, t rollout.Target) error {
			i, ok := index[t.Addr]
			if !ok {
				return fmt.Errorf("no demo backend at %s", t.Addr)
			}
			r.prog.setDone(i)
			r.prog.step(i, t.Addr, "drained; killing and restarting")
			return s.restart(ctx, order[i])
		},
		Parallel:        1,
		DrainTimeout:    r.timing.StepTimeout,
		RegisterTimeout: r.timing.StepTimeout,
		ServeTimeout:    r.timing.StepTimeout,
		Reason:          "zkgate demo: zkgate mode",
		DeployID:        r.runID + "-zkgate",
		Progress:        r.prog.lineWriter(),
		Logger:          r.log.With("mode", string(s.mode)),
	})
	var per []time.Duration
	total := time.Since(start)
	if res != nil {
		if res.Total > 0 {
			total = res.Total
		}
		for _, in := range res.Instances {
			if in.Err == nil {
				per = append(per, in.Drain+in.Restart+in.ToServing)
			}
		}
	}
	r.prog.setDone(len(per))
	if err != nil {
		return total, per, fmt.Errorf("rollout: %w", err)
	}
	return total, per, nil
}

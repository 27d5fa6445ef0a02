package register

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
)

// ErrDrainNotConfirmed is wrapped by the error of a drain the controller
// accepted but could not confirm: the timeout passed before every gateway
// acknowledged it with nothing in flight, a gateway lost its session during
// the wait, or the mark stopped applying (undrained meanwhile).
var ErrDrainNotConfirmed = errors.New("drain not confirmed")

// Drainer takes an instance out of rotation before it goes away.
type Drainer interface {
	// Drain marks addr (host:port) of service offline and returns nil once
	// the drain is confirmed: every live gateway has stopped picking the
	// instance and has no request in flight to it. It waits at most
	// timeout (and never past ctx). A drain that was accepted but not
	// confirmed returns an error wrapping ErrDrainNotConfirmed; any other
	// error means the drain may not have happened at all.
	Drain(ctx context.Context, service, addr, reason string, timeout time.Duration) error
}

// DrainerFunc adapts a function to Drainer.
type DrainerFunc func(ctx context.Context, service, addr, reason string, timeout time.Duration) error

// Drain implements Drainer.
func (f DrainerFunc) Drain(ctx context.Context, service, addr, reason string, timeout time.Duration) error {
	return f(ctx, service, addr, reason, timeout)
}

// ControllerOptions adjust the drainer NewControllerDrainer returns.
type ControllerOptions struct {
	// Token is the controller's bearer token for mutating calls.
	Token string
	// Actor is recorded in the mark and the audit trail; default
	// "zkgate-register@<hostname>".
	Actor string
	// TTL is the mark's lifetime; default the controller's mark_ttl. The
	// mark stops applying anyway as soon as the instance registers again.
	TTL time.Duration
	// DeployID is recorded in the mark and the audit trail.
	DeployID string
}

// controllerDrainer drains through the zkgate controller's HTTP API.
type controllerDrainer struct {
	c    *ctlclient.Client
	opts ControllerOptions
}

// NewControllerDrainer returns a Drainer that calls the zkgate controller
// at urls (a comma-separated list of replicas' base URLs, e.g.
// "http://ctl1:7070,http://ctl2:7070"; a bare host:port means http):
// PUT /v1/services/{service}/instances/{addr}/drain, waiting for the
// confirmation. A replica that cannot be reached or is unavailable is
// replaced by the next one.
func NewControllerDrainer(urls string, opts ControllerOptions) (Drainer, error) {
	if opts.Actor == "" {
		host, _ := os.Hostname()
		opts.Actor = "zkgate-register@" + host
	}
	c, err := ctlclient.New(urls, ctlclient.Options{Token: opts.Token, Actor: opts.Actor})
	if err != nil {
		return nil, fmt.Errorf("controller drainer: %w", err)
	}
	return &controllerDrainer{c: c, opts: opts}, nil
}

// drainSlack is how much longer than the wait the HTTP exchange may take.
const drainSlack = 10 * time.Second

// Drain implements Drainer.
func (d *controllerDrainer) Drain(ctx context.Context, service, addr, reason string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout+drainSlack)
	defer cancel()
	req := ctlclient.DrainRequest{
		Reason: reason, Wait: true, Timeout: timeout.String(), DeployID: d.opts.DeployID,
	}
	if d.opts.TTL > 0 {
		req.TTL = d.opts.TTL.String()
	}
	resp, err := d.c.Drain(ctx, service, addr, req)
	if err != nil {
		return err
	}
	if resp.Confirmed || resp.Status == ctlclient.StatusDrained {
		return nil
	}
	msg := resp.Message
	if msg == "" {
		msg = resp.Warning
	}
	if msg != "" {
		return fmt.Errorf("%w: controller says %s: %s", ErrDrainNotConfirmed, resp.Status, msg)
	}
	return fmt.Errorf("%w: controller says %s", ErrDrainNotConfirmed, resp.Status)
}

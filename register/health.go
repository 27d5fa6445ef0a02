package register

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Health check defaults.
const (
	DefaultHealthInterval = 10 * time.Second
	DefaultHealthTimeout  = 5 * time.Second
)

// HealthCheck keeps an instance registered only while it is healthy. Set
// URL for an HTTP check, or Check for any other.
type HealthCheck struct {
	// URL is fetched with GET; the instance is healthy when the answer's
	// status is 2xx or 3xx (redirects are not followed).
	URL string
	// Check, used when URL is empty, returns nil when the instance is
	// healthy. It must return when ctx ends.
	Check func(ctx context.Context) error
	// Interval between checks; default 10s.
	Interval time.Duration
	// Timeout bounds one check; default the smaller of Interval and 5s.
	Timeout time.Duration
	// FailureThreshold: consecutive failed checks before the node is
	// deleted; default 1.
	FailureThreshold int
	// SuccessThreshold: consecutive passing checks before an unhealthy
	// instance is registered again; default 1.
	SuccessThreshold int
	// Client makes the HTTP requests; default a client that does not
	// follow redirects or keep connections between checks.
	Client *http.Client
}

func (h *HealthCheck) withDefaults() (*HealthCheck, error) {
	c := *h
	if c.URL == "" && c.Check == nil {
		return nil, errors.New("health check: URL or Check is required")
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("health check: %q is not an http(s) URL", c.URL)
		}
	}
	if c.Interval <= 0 {
		c.Interval = DefaultHealthInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = min(c.Interval, DefaultHealthTimeout)
	}
	if c.FailureThreshold <= 0 {
		c.FailureThreshold = 1
	}
	if c.SuccessThreshold <= 0 {
		c.SuccessThreshold = 1
	}
	if c.Client == nil {
		c.Client = &http.Client{
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	return &c, nil
}

// run performs one check, bounded by Timeout.
func (h *HealthCheck) run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	if h.URL == "" {
		return h.Check(ctx)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("health check: GET %s answered %s", h.URL, resp.Status)
	}
	return nil
}

// healthLoop runs the checks until the registration stops and feeds the
// verdict, with its thresholds, to the keeper.
func (r *Registration) healthLoop() {
	defer close(r.healthDone)
	h := r.opts.Health
	ctx, cancel := r.untilStop()
	defer cancel()
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	fails, passes := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := h.run(ctx)
		if ctx.Err() != nil {
			return
		}
		healthy := r.wantRegistered()
		if err != nil {
			fails, passes = fails+1, 0
			if healthy && fails >= h.FailureThreshold {
				r.log.Warn("instance unhealthy: deregistering", "err", err, "failures", fails)
				r.setHealthy(err)
			}
			continue
		}
		fails, passes = 0, passes+1
		if !healthy && passes >= h.SuccessThreshold {
			r.log.Info("instance healthy again: registering", "passes", passes)
			r.setHealthy(nil)
		}
	}
}

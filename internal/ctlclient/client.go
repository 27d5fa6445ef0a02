package ctlclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultURL is the controller address used when none is configured.
const DefaultURL = "http://127.0.0.1:7070"

// DefaultDrainTimeout is the wait bound the controller applies when a
// waiting drain names none.
const DefaultDrainTimeout = 2 * time.Minute

// Client calls a controller. Its zero value is not usable: build it with
// New. It is safe for concurrent use.
type Client struct {
	urls  []string
	token string
	actor string
	hc    *http.Client
}

// Options adjust a Client.
type Options struct {
	// Token is sent as "Authorization: Bearer <token>".
	Token string
	// Actor names the human or pipeline behind the calls (e.g. user@host);
	// it is sent as X-Zkgate-Actor and recorded in marks and the audit
	// trail next to the token's identity.
	Actor string
	// HTTPClient defaults to a client without an overall timeout (calls
	// are bounded by their context).
	HTTPClient *http.Client
}

// New returns a client of the controller replicas at urls, a
// comma-separated list of base URLs ("http://host:7070"; a bare host:port
// gets http://). Calls go to the first replica; when a replica cannot be
// reached, or answers 503 (for example because it lost its ZooKeeper
// session), the call is repeated on the next one. Every call is idempotent,
// so repeating one is safe.
func New(urls string, opts Options) (*Client, error) {
	var list []string
	for _, u := range strings.Split(urls, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if !strings.Contains(u, "://") {
			u = "http://" + u
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
			return nil, fmt.Errorf("controller address %q is not an http(s) URL", u)
		}
		list = append(list, strings.TrimSuffix(pu.String(), "/"))
	}
	if len(list) == 0 {
		return nil, errors.New("no controller address given")
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{urls: list, token: opts.Token, actor: opts.Actor, hc: hc}, nil
}

// APIError is an error answer from the controller.
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the controller's "error" field (or the body).
	Message string
	// Outcome is the controller's "outcome" field: OutcomeUnknown when the
	// write may or may not have been applied.
	Outcome string
	// Registered is the controller's "registered" field: the service's
	// registered addresses, when a drain named an address none of them is
	// (404; see IsNotRegistered).
	Registered []string
}

// IsNotRegistered reports whether err is the controller refusing a drain
// of an address that no registration of the service has (404 with the
// registered addresses; DrainRequest.AllowAbsent writes it anyway). It
// returns the registered addresses.
func IsNotRegistered(err error) ([]string, bool) {
	var ae *APIError
	if errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound && ae.Registered != nil {
		return ae.Registered, true
	}
	return nil, false
}

func (e *APIError) Error() string {
	if e.Outcome == OutcomeUnknown && !strings.HasPrefix(e.Message, "outcome unknown") {
		return fmt.Sprintf("outcome unknown: controller answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
	}
	return fmt.Sprintf("controller answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// IsOutcomeUnknown reports whether err is the controller saying that it
// does not know whether the write was applied (ErrorResponse.Outcome
// OutcomeUnknown): the mark may have been written (or deleted), or may
// still be, after the answer. The call was already repeated on every
// replica given (it is idempotent) without settling it; look at the
// instance (Service) or repeat the call later.
func IsOutcomeUnknown(err error) bool {
	var re *ReplicasError
	if errors.As(err, &re) {
		// Unknown at any replica is unknown: another replica's failure
		// (unreachable, 503) says nothing about that write.
		for _, e := range re.Errs {
			if IsOutcomeUnknown(e) {
				return true
			}
		}
		return false
	}
	var ae *APIError
	return errors.As(err, &ae) && ae.Outcome == OutcomeUnknown
}

// Services lists the services (GET /v1/services).
func (c *Client) Services(ctx context.Context) (*ServicesResponse, error) {
	var out ServicesResponse
	return &out, c.do(ctx, http.MethodGet, "/v1/services", nil, &out)
}

// Service describes one service's instances (GET /v1/services/{service}).
func (c *Client) Service(ctx context.Context, service string) (*ServiceResponse, error) {
	var out ServiceResponse
	return &out, c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service), nil, &out)
}

// Drain marks service/addr for draining (PUT …/drain). With req.Wait the
// call returns when the controller has confirmed the drain or the wait
// timed out; the answer's Status says which. A wait interrupted because a
// replica went away is resumed on the next replica with what remains of
// the timeout (re-writing the mark is idempotent). ctx should allow for
// the whole wait. The answer's ElapsedMs is the whole call's duration as
// the client saw it, failovers included. When the controller could not
// tell whether the mark was written, the error satisfies IsOutcomeUnknown
// (the mark may appear after the call returned).
func (c *Client) Drain(ctx context.Context, service, addr string, req DrainRequest) (*DrainResponse, error) {
	p := instancePath(service, addr) + "/drain"
	start := time.Now()
	timeout := DefaultDrainTimeout
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil {
			return nil, fmt.Errorf("timeout %q: %w", req.Timeout, err)
		}
		timeout = d
	}
	var out DrainResponse
	attempts := 0
	// Replicas that are unavailable (503: no ZooKeeper session, as during
	// a ZooKeeper leader election) are tried again for as long as the
	// drain may take, not just twice: a pipeline should not fail a deploy
	// over a few seconds of election.
	err := c.doRetryUntil(ctx, start.Add(timeout), http.MethodPut, p, func() any {
		r := req
		attempts++
		if r.Wait && attempts > 1 {
			// Ask a replica taking over for what remains of the wait (the
			// first attempt sends the caller's timeout as given).
			left := timeout - time.Since(start)
			if left < 0 {
				left = 0
			}
			r.Timeout = left.Round(time.Millisecond).String()
		}
		return r
	}, &out)
	if err != nil {
		return nil, err
	}
	out.ElapsedMs = time.Since(start).Milliseconds()
	return &out, nil
}

// Undrain removes the mark of service/addr (DELETE …/drain). Undraining an
// address without a mark succeeds with Removed false. When the controller
// could not tell whether the mark was deleted, the error satisfies
// IsOutcomeUnknown.
func (c *Client) Undrain(ctx context.Context, service, addr, reason string) (*UndrainResponse, error) {
	var out UndrainResponse
	var body any
	if reason != "" {
		body = UndrainRequest{Reason: reason}
	}
	return &out, c.do(ctx, http.MethodDelete, instancePath(service, addr)+"/drain", body, &out)
}

// Gateways lists the live gateways and the recently departed ones (GET
// /v1/gateways).
func (c *Client) Gateways(ctx context.Context) (*GatewaysResponse, error) {
	var out GatewaysResponse
	return &out, c.do(ctx, http.MethodGet, "/v1/gateways", nil, &out)
}

// Audit returns up to limit audit entries, newest first, optionally of one
// service (GET /v1/audit). limit 0 means the controller's default.
func (c *Client) Audit(ctx context.Context, service string, limit int) (*AuditResponse, error) {
	q := url.Values{}
	if service != "" {
		q.Set("service", service)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	p := "/v1/audit"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var out AuditResponse
	return &out, c.do(ctx, http.MethodGet, p, nil, &out)
}

// Leader says which replica leads (GET /v1/leader), as the first
// reachable replica knows it.
func (c *Client) Leader(ctx context.Context) (*LeaderResponse, error) {
	var out LeaderResponse
	return &out, c.do(ctx, http.MethodGet, "/v1/leader", nil, &out)
}

func instancePath(service, addr string) string {
	return "/v1/services/" + url.PathEscape(service) + "/instances/" + url.PathEscape(addr)
}

func (c *Client) do(ctx context.Context, method, p string, body any, out any) error {
	return c.doRetry(ctx, method, p, func() any { return body }, out)
}

// doRetry tries each replica in turn (two rounds at most) while the
// failure says the replica is unreachable or unavailable. When every
// attempt failed, the error names each replica's last failure (a
// *ReplicasError with several replicas), not only the last one.
func (c *Client) doRetry(ctx context.Context, method, p string, body func() any, out any) error {
	return c.doRetryUntil(ctx, time.Time{}, method, p, body, out)
}

// doRetryUntil is doRetry that goes on trying, past the two rounds, until
// the time until (at most one second between attempts).
func (c *Client) doRetryUntil(ctx context.Context, until time.Time, method, p string, body func() any, out any) error {
	last := make([]error, len(c.urls)) // by replica
	attempts := 2 * len(c.urls)
	if attempts < 2 {
		attempts = 2
	}
	var err error
	for i := 0; i < attempts || (unavailable(err) && time.Now().Before(until)); i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s %s: %w (after: %w)", method, p, ctx.Err(), c.replicasError(last))
			case <-time.After(min(time.Duration(i)*100*time.Millisecond, time.Second)):
			}
		}
		r := i % len(c.urls)
		err = c.once(ctx, method, c.urls[r]+p, body(), out)
		if err == nil {
			return nil
		}
		last[r] = err
		if ctx.Err() != nil || !retryable(err) {
			return err
		}
	}
	return c.replicasError(last)
}

// replicasError sums up the last failure of every replica tried.
func (c *Client) replicasError(last []error) error {
	e := &ReplicasError{}
	for r, err := range last {
		if err != nil {
			e.URLs = append(e.URLs, c.urls[r])
			e.Errs = append(e.Errs, err)
		}
	}
	if len(e.Errs) == 1 {
		return e.Errs[0]
	}
	return e
}

// ReplicasError says that no controller replica could serve a call: Errs[i]
// is the last failure of the replica at URLs[i]. Its message is one line
// naming every replica's failure.
type ReplicasError struct {
	URLs []string
	Errs []error
}

func (e *ReplicasError) Error() string {
	parts := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		parts[i] = e.URLs[i] + ": " + strings.Join(strings.Fields(err.Error()), " ")
	}
	return fmt.Sprintf("no controller replica could answer (%d tried): %s", len(e.Errs), strings.Join(parts, "; "))
}

// Unwrap returns every replica's failure (errors.Is and errors.As look at
// each).
func (e *ReplicasError) Unwrap() []error { return e.Errs }

// unavailable: the replica answered 503 without a write whose outcome is
// unknown (it has no ZooKeeper session): worth asking again later.
func unavailable(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusServiceUnavailable && ae.Outcome != OutcomeUnknown
}

func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode == http.StatusServiceUnavailable || ae.StatusCode == http.StatusBadGateway
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, errTransport)
}

var errTransport = errors.New("transport")

func (c *Client) once(ctx context.Context, method, u string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("building request %s %s: %w", method, u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.actor != "" {
		req.Header.Set("X-Zkgate-Actor", c.actor)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w: %w", method, u, errTransport, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading answer: %w: %w", method, u, errTransport, err)
	}
	if resp.StatusCode/100 != 2 {
		var er ErrorResponse
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &er) == nil && er.Error != "" {
			msg = er.Error
		}
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		return &APIError{StatusCode: resp.StatusCode, Message: msg, Outcome: er.Outcome, Registered: er.Registered}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decoding answer: %w", method, u, err)
	}
	return nil
}

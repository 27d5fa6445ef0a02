package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"syscall"
	"time"
)

// IdentityPath is the gateway admin endpoint that says which gateway
// process serves it (GET, JSON Identity). The controller asks it when a
// gateway's presence node disappeared without a leaving report
// (docs/architecture.md#departed-gateways-and-lost-drains).
const IdentityPath = "/admin/identity"

// Identity is the body of IdentityPath: the gateway's id and what tells
// one process of it from the next (BootID is random per process start).
// The same values are in its presence report (ID, BootID, StartedMs).
type Identity struct {
	ID        string `json:"id"`
	BootID    string `json:"boot_id"`
	StartedMs int64  `json:"started_ms"`
}

// ProbeResult is what a probe learnt about a departed gateway's process.
type ProbeResult struct {
	// Gone: the process that held the departed presence node no longer
	// runs. Only evidence counts: nothing listens on its admin address
	// (connection refused), or another process of the same gateway
	// (another boot id) answers there. A timeout, an unreachable network or an
	// answer without an identity is not evidence.
	Gone bool
	// Detail says what the probe saw, in a few words.
	Detail string
}

// ProbeFunc asks whether the process behind departure d is gone. It must
// return when ctx ends (with Gone false).
type ProbeFunc func(ctx context.Context, d Departure) ProbeResult

// ProbeAdmin is the default ProbeFunc: it asks the departed gateway's admin
// address (from its last report) for IdentityPath.
//
//   - connection refused: no process listens there, the gateway is gone
//     (its admin listener lives as long as its process);
//   - an Identity of the same gateway with another boot id or start
//     time: a new process took the address, the old one is gone;
//   - another gateway's Identity: unknown (the address leads elsewhere:
//     a shared name, a balancer, NAT);
//   - the same identity: the old process still runs (cut off from
//     ZooKeeper, not crashed) and may route by its last state;
//   - a timeout, another network error, any other answer: unknown.
//
// The address asked is the report's AdminTarget: an admin listener bound
// to every interface (0.0.0.0, [::]) is asked at the address the gateway
// advertises; without one it is not probed (the controller cannot tell
// which machine it is on, and a probe of its own machine could be
// refused).
//
// When the gateway was seen answering while it was live
// (Departure.ProbeAddr), that address is asked: a name is not resolved
// again (it could lead to another machine by now).
func ProbeAdmin(ctx context.Context, d Departure) ProbeResult {
	addr := d.ProbeAddr
	if addr == "" {
		var err error
		if addr, err = d.Last.AdminTarget(); err != nil {
			return ProbeResult{Detail: err.Error()}
		}
	}
	id, _, err := fetchIdentity(ctx, addr)
	var refused *refusedError
	switch {
	case errors.As(err, &refused):
		return ProbeResult{Gone: true, Detail: "connection to its admin address " + addr + " refused: no process listens there"}
	case err != nil:
		return ProbeResult{Detail: err.Error()}
	}
	if id.ID != d.ID {
		// The address leads to another gateway now: a name several
		// gateways' addresses resolve to, a balancer or NAT (spelled
		// otherwise than the other gateway's own target, so not caught as
		// shared). That proves nothing about this gateway's process.
		return ProbeResult{Detail: fmt.Sprintf("gateway %q answers on its admin address %s: the address leads to another gateway, which says nothing about this one", id.ID, addr)}
	}
	if !id.is(d.ID, d.Last) {
		return ProbeResult{Gone: true, Detail: fmt.Sprintf("another process answers on its admin address %s: gateway %q started %s",
			addr, id.ID, time.UnixMilli(id.StartedMs).UTC().Format(time.RFC3339Nano))}
	}
	return ProbeResult{Detail: "its process still answers on its admin address " + addr + ": cut off from ZooKeeper, it may route by its last state"}
}

// VerifyAdmin is the default VerifyFunc: it asks a live gateway's admin
// target (Report.AdminTarget) for IdentityPath and, when the gateway of
// r answers there (the one process that wrote r), returns the ip:port
// that answered.
func VerifyAdmin(ctx context.Context, r Report) (string, error) {
	addr, err := r.AdminTarget()
	if err != nil {
		return "", err
	}
	id, at, err := fetchIdentity(ctx, addr)
	if err != nil {
		return "", err
	}
	if !id.is(r.ID, r) {
		return "", fmt.Errorf("admin address %s answers as gateway %q started %s, not as this gateway",
			addr, id.ID, time.UnixMilli(id.StartedMs).UTC().Format(time.RFC3339Nano))
	}
	if at == "" {
		return "", fmt.Errorf("admin address %s: the address that answered is unknown", addr)
	}
	return at, nil
}

// is reports whether the identity is that of gateway id's process that
// wrote last.
func (id Identity) is(gatewayID string, last Report) bool {
	return id.ID == gatewayID && (last.BootID == "" || id.BootID == last.BootID) &&
		(last.StartedMs == 0 || id.StartedMs == last.StartedMs)
}

// refusedError: nothing listens at the address (connection refused).
type refusedError struct{ addr string }

func (e *refusedError) Error() string {
	return "connection to admin address " + e.addr + " refused"
}

// fetchIdentity asks addr for IdentityPath, and says which ip:port
// answered: a *refusedError when nothing listens there, another error
// (saying what was seen) when the answer is not a gateway identity.
func fetchIdentity(ctx context.Context, addr string) (Identity, string, error) {
	var id Identity
	var at string
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(c httptrace.GotConnInfo) {
		at = c.Conn.RemoteAddr().String()
	}})
	tr := &http.Transport{
		Proxy:             nil, // never through an HTTP proxy: the answer must come from the address itself
		DialContext:       (&net.Dialer{}).DialContext,
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+IdentityPath, nil)
	if err != nil {
		return id, "", fmt.Errorf("building the request to %s: %v", addr, err)
	}
	// A redirect is not followed: the answer must come from addr itself.
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}).Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return id, "", &refusedError{addr: addr}
		}
		if ctx.Err() != nil {
			return id, "", errors.New("admin address " + addr + " did not answer in time")
		}
		return id, "", fmt.Errorf("admin address %s unreachable: %v", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return id, "", fmt.Errorf("admin address %s: reading the answer: %v", addr, err)
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &id) != nil || id.ID == "" {
		return id, "", fmt.Errorf("admin address %s answered %d without a gateway identity", addr, resp.StatusCode)
	}
	return id, at, nil
}

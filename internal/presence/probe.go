package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	// (connection refused), or another process (another boot id or
	// gateway id) answers there. A timeout, an unreachable network or an
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
//   - an Identity with another boot id, start time or gateway id: a new
//     process took the address, the old one is gone;
//   - the same identity: the old process still runs (cut off from
//     ZooKeeper, not crashed) and may route by its last state;
//   - a timeout, another network error, any other answer: unknown.
//
// An admin address without a host (bound to every interface: 0.0.0.0,
// [::]) is not probed: the controller cannot tell which machine it is on,
// and a probe of its own machine could be refused.
func ProbeAdmin(ctx context.Context, d Departure) ProbeResult {
	addr := d.Last.AdminListen
	if addr == "" {
		return ProbeResult{Detail: "its last report names no admin address"}
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ProbeResult{Detail: fmt.Sprintf("admin address %q: %v", addr, err)}
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return ProbeResult{Detail: "admin address " + addr + " listens on every interface: the controller cannot tell which host to ask"}
	}
	tr := &http.Transport{
		Proxy:             nil, // never through an HTTP proxy: the answer must come from the address itself
		DialContext:       (&net.Dialer{}).DialContext,
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+IdentityPath, nil)
	if err != nil {
		return ProbeResult{Detail: fmt.Sprintf("building the probe of %s: %v", addr, err)}
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return ProbeResult{Gone: true, Detail: "connection to its admin address " + addr + " refused: no process listens there"}
		}
		if ctx.Err() != nil {
			return ProbeResult{Detail: "admin address " + addr + " did not answer in time"}
		}
		return ProbeResult{Detail: fmt.Sprintf("admin address %s unreachable: %v", addr, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return ProbeResult{Detail: fmt.Sprintf("admin address %s: reading the answer: %v", addr, err)}
	}
	var id Identity
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &id) != nil || id.ID == "" {
		return ProbeResult{Detail: fmt.Sprintf("admin address %s answered %d without a gateway identity", addr, resp.StatusCode)}
	}
	if id.ID != d.ID || (d.Last.BootID != "" && id.BootID != d.Last.BootID) ||
		(d.Last.StartedMs != 0 && id.StartedMs != d.Last.StartedMs) {
		return ProbeResult{Gone: true, Detail: fmt.Sprintf("another process answers on its admin address %s: gateway %q started %s",
			addr, id.ID, time.UnixMilli(id.StartedMs).UTC().Format(time.RFC3339Nano))}
	}
	return ProbeResult{Detail: "its process still answers on its admin address " + addr + ": cut off from ZooKeeper, it may route by its last state"}
}

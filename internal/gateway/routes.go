package gateway

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/config"
)

// route is one configured route. Routes are fixed for the life of a
// Gateway; only the instances behind them change.
type route struct {
	prefix  string
	host    string // lower case, no port; "" matches any host
	service string
	svc     *service
	strip   bool
	timeout time.Duration
	name    string // metrics label: host+prefix

	prefixB, hostB []byte // prefix and host for matchBytes

	metrics routeMetrics
}

// routeSet matches requests to routes: the longest prefix wins, and among
// equal prefixes a route with a host wins over one without. Matching is a
// linear scan of the routes in that order, which allocates nothing and is
// fast for the tens of routes a gateway has.
type routeSet struct {
	routes  []*route
	anyHost bool // some route has a host: parse the request's
}

// newRouteSet builds the routes of a section config.Gateway.Validate
// accepted; it refuses only routes that collide once their hosts are
// normalized.
func newRouteSet(cfg []config.Route) (*routeSet, error) {
	rs := &routeSet{}
	seen := map[string]bool{}
	for i, c := range cfg {
		h := normalizeHost(c.Host)
		if seen[h+" "+c.Prefix] {
			return nil, fmt.Errorf("routes[%d]: duplicate route for host %q prefix %q", i, c.Host, c.Prefix)
		}
		seen[h+" "+c.Prefix] = true
		rs.routes = append(rs.routes, &route{
			prefix:  c.Prefix,
			host:    h,
			service: c.Service,
			strip:   c.StripPrefix,
			timeout: c.Timeout,
			name:    h + c.Prefix,
			prefixB: []byte(c.Prefix),
			hostB:   []byte(h),
		})
		if h != "" {
			rs.anyHost = true
		}
	}
	sort.SliceStable(rs.routes, func(a, b int) bool {
		ra, rb := rs.routes[a], rs.routes[b]
		if len(ra.prefix) != len(rb.prefix) {
			return len(ra.prefix) > len(rb.prefix)
		}
		return ra.host != "" && rb.host == ""
	})
	return rs, nil
}

// matchBytes returns the route for a request, or nil: path is the
// request's cleaned path, host its Host header.
func (rs *routeSet) matchBytes(path, host []byte) *route {
	if rs.anyHost {
		host = requestHostBytes(host)
	}
	for _, rt := range rs.routes {
		if rt.host != "" && !bytes.EqualFold(rt.hostB, host) {
			continue
		}
		if matchPrefixBytes(path, rt.prefixB) {
			return rt
		}
	}
	return nil
}

// matchPrefixBytes reports whether path is under prefix. A prefix ending
// in "/" also matches the path without that slash ("/orders" for
// "/orders/").
func matchPrefixBytes(path, prefix []byte) bool {
	if bytes.HasPrefix(path, prefix) {
		return true
	}
	n := len(prefix) - 1
	return n > 0 && prefix[n] == '/' && len(path) == n && bytes.Equal(path, prefix[:n])
}

// requestHostBytes returns the host of a Host header without port,
// brackets or trailing dot (not lower-cased: compare with bytes.EqualFold).
func requestHostBytes(h []byte) []byte {
	if i := bytes.LastIndexByte(h, ':'); i >= 0 && bytes.IndexByte(h[i:], ']') < 0 {
		h = h[:i]
	}
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return bytes.TrimSuffix(h, []byte("."))
}

func normalizeHost(h string) string {
	h = strings.TrimSpace(h)
	if strings.Count(h, ":") > 1 && !strings.HasPrefix(h, "[") {
		return strings.ToLower(h) // bare IPv6 literal
	}
	return strings.ToLower(string(requestHostBytes([]byte(h))))
}

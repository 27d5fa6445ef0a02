package registry

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
)

// Resolver resolves a host name to its IP addresses. *net.Resolver
// satisfies it.
type Resolver interface {
	// LookupNetIP returns the addresses of host for network "ip"; it
	// honours ctx's deadline.
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// maxConcurrentLookups bounds the name lookups one MatchAddr makes at once.
const maxConcurrentLookups = 8

// CanonicalAddr returns the spelling of host:port that two spellings of
// one address share: a host name lowercased without a trailing dot, an IP
// address in its canonical form (so [0:0:0:0:0:0:0:1]:80 is [::1]:80 and
// [::ffff:10.0.0.1]:80 is 10.0.0.1:80), IPv6 in brackets. It does not
// resolve names (see MatchAddr).
func CanonicalAddr(s string) (string, error) {
	n, err := NormalizeAddr(s)
	if err != nil {
		return "", err
	}
	host, port, _ := net.SplitHostPort(n)
	return net.JoinHostPort(canonicalHost(host), port), nil
}

func canonicalHost(h string) string {
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap().String()
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// loopbackName reports whether h is localhost or a name under it, which
// resolve to the loopback addresses without asking any resolver (RFC 6761).
func loopbackName(h string) bool {
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

var loopbackIPs = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}

// MatchAddr returns the addresses among registered (host:port, as the
// registry spells them) that denote the same endpoint as want, in the
// order of registered. Two addresses match when their ports are equal and
// either their hosts are equal once canonical (CanonicalAddr: case, IPv6
// spelling, IPv4-mapped IPv6), or resolving the host names among them
// gives at least one common IP address (localhost and *.localhost are the
// loopback addresses without a lookup). Names are resolved only when no
// registered address equals want once canonical, through r under ctx
// (which should carry a short deadline); a name that does not resolve
// matches nothing. lookupErrs lists the names that could not be resolved,
// for messages.
func MatchAddr(ctx context.Context, r Resolver, want string, registered []string) (matches []string, lookupErrs []string, err error) {
	cw, err := CanonicalAddr(want)
	if err != nil {
		return nil, nil, err
	}
	wantHost, wantPort, _ := net.SplitHostPort(cw)
	var same []addrCand
	for _, a := range registered {
		ca, err := CanonicalAddr(a)
		if err != nil {
			continue
		}
		h, p, _ := net.SplitHostPort(ca)
		if p != wantPort {
			continue
		}
		if h == wantHost {
			matches = append(matches, a)
		}
		same = append(same, addrCand{a, h})
	}
	if len(matches) > 0 || len(same) == 0 {
		return matches, nil, nil
	}
	// Resolve every distinct host involved.
	hosts := map[string][]netip.Addr{}
	var names, failed []string
	for _, h := range append([]string{wantHost}, hostsOf(same)...) {
		if _, done := hosts[h]; done {
			continue
		}
		switch ip, err := netip.ParseAddr(h); {
		case err == nil:
			hosts[h] = []netip.Addr{ip.Unmap()}
		case loopbackName(h):
			hosts[h] = loopbackIPs
		case r == nil:
			hosts[h] = nil
			failed = append(failed, h+" (no resolver)")
		default:
			hosts[h] = nil
			names = append(names, h)
		}
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, maxConcurrentLookups)
	)
	for _, h := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ips []netip.Addr
			var err error
			select {
			case sem <- struct{}{}:
				ips, err = r.LookupNetIP(ctx, "ip", h)
				<-sem
			case <-ctx.Done():
				err = ctx.Err()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, fmt.Sprintf("%s (%v)", h, err))
				return
			}
			for i := range ips {
				ips[i] = ips[i].Unmap()
			}
			hosts[h] = ips
		}()
	}
	wg.Wait()
	wantIPs := map[netip.Addr]bool{}
	for _, ip := range hosts[wantHost] {
		wantIPs[ip.WithZone("")] = true
	}
	for _, c := range same {
		for _, ip := range hosts[c.host] {
			if wantIPs[ip.WithZone("")] {
				matches = append(matches, c.addr)
				break
			}
		}
	}
	return matches, failed, nil
}

// addrCand is a registered address and its canonical host.
type addrCand struct{ addr, host string }

func hostsOf(cs []addrCand) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.host
	}
	return out
}

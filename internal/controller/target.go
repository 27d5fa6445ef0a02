package controller

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/registry"
)

// Bounds of a drain's address match (README.md, "A deploy with zkgate").
const (
	// lookupTimeout bounds the host name lookups of one address match.
	lookupTimeout = 2 * time.Second
	// catchUpTimeout bounds the wait for a fresh registry read when the
	// address is not in the registry snapshot (it may have registered an
	// instant ago).
	catchUpTimeout = 3 * time.Second
	// maxListed bounds the registered addresses named in one error.
	maxListed = 20
)

// absentError refuses a drain of an address no registration of the
// service has: the API answers 404 with the registered addresses and
// writes nothing.
type absentError struct {
	msg        string
	registered []string
}

func (e *absentError) Error() string { return e.msg }

// resolvedTarget is the address a drain applies to.
type resolvedTarget struct {
	// addr is the address as registered (or as given, canonical, when it
	// is not registered and the caller allowed that).
	addr string
	// in is the registration of addr; registered says whether there is one.
	in         registry.Instance
	registered bool
	// note says how the given spelling was matched (empty when equal).
	note string
}

// drainTarget finds the registration of service that addr denotes,
// however it is spelled (registry.MatchAddr): the mark must be written for
// the address as registered, since gateways compare addresses as the
// registry spells them. When none has it, it waits briefly for a fresh
// registry read, then refuses with an *absentError unless allowAbsent, in
// which case the target is addr in its canonical spelling.
func (c *Controller) drainTarget(ctx context.Context, service, addr string, allowAbsent bool) (resolvedTarget, error) {
	if rs := c.reg.Snapshot(); rs != nil {
		if t, ok, _, _, err := c.match(ctx, rs, service, addr); ok || err != nil {
			return t, err
		}
	}
	// Not in the snapshot (or no snapshot yet): it may have registered an
	// instant ago. Ask for a full re-read and wait for it, briefly.
	cerr := c.catchUp(ctx)
	if ctx.Err() != nil {
		return resolvedTarget{}, ctx.Err()
	}
	rs := c.reg.Snapshot()
	if rs == nil {
		return resolvedTarget{}, fmt.Errorf("%w: the registry is not loaded yet", errNotConnected)
	}
	t, ok, registered, lookupErrs, err := c.match(ctx, rs, service, addr)
	if ok || err != nil {
		return t, err
	}
	if cerr != nil {
		lookupErrs = append(lookupErrs, "(the registry could not be re-read: "+cerr.Error()+")")
	}
	return c.absent(service, addr, registered, lookupErrs, allowAbsent)
}

// match looks addr up in service in rs, however it is spelled. ok is
// false when no registration matches; registered and lookupErrs are then
// the service's registered addresses and the names that did not resolve.
func (c *Controller) match(ctx context.Context, rs *registry.Snapshot, service, addr string) (t resolvedTarget, ok bool, registered, lookupErrs []string, err error) {
	if in, found := rs.Lookup(service, addr); found {
		return resolvedTarget{addr: addr, in: in, registered: true}, true, nil, nil, nil
	}
	ins := rs.Instances(service)
	registered = make([]string, len(ins))
	for i := range ins {
		registered[i] = ins[i].Addr
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	matches, lookupErrs, err := registry.MatchAddr(lctx, c.resolver, addr, registered)
	cancel()
	switch {
	case err != nil:
		return t, false, nil, nil, badf("instance %q: %v", addr, err)
	case len(matches) > 1:
		return t, false, nil, nil, badf("instance %s matches several registrations of service %q (%s): name one of them",
			addr, service, strings.Join(matches, ", "))
	case len(matches) == 1:
		in, _ := rs.Lookup(service, matches[0])
		return resolvedTarget{addr: matches[0], in: in, registered: true,
			note: fmt.Sprintf("%s is registered as %s: the mark is written for %s", addr, matches[0], matches[0])}, true, nil, nil, nil
	}
	return t, false, registered, lookupErrs, nil
}

// catchUp asks the registry cache for a full re-read and waits, at most
// catchUpTimeout, until a snapshot covers it.
func (c *Controller) catchUp(ctx context.Context) error {
	ticket := c.reg.Resync()
	timer := time.NewTimer(catchUpTimeout)
	defer timer.Stop()
	for {
		wake := c.changed.Wait()
		if rs := c.reg.Snapshot(); rs != nil && rs.ResyncTicket >= ticket {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.stopping:
			return errStopping
		case <-timer.C:
			return fmt.Errorf("no full registry read within %s", catchUpTimeout)
		case <-wake:
		}
	}
}

// absent is the outcome for an address no registration has.
func (c *Controller) absent(service, addr string, registered, lookupErrs []string, allowAbsent bool) (resolvedTarget, error) {
	if allowAbsent {
		canon, err := registry.CanonicalAddr(addr)
		if err != nil {
			return resolvedTarget{}, badf("instance %q: %v", addr, err)
		}
		return resolvedTarget{addr: canon}, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s is not registered in service %q", addr, service)
	switch {
	case len(registered) == 0:
		b.WriteString(" (it has no registered instance)")
	case len(registered) <= maxListed:
		fmt.Fprintf(&b, "; registered: %s", strings.Join(registered, ", "))
	default:
		fmt.Fprintf(&b, "; registered: %s and %d more", strings.Join(registered[:maxListed], ", "), len(registered)-maxListed)
	}
	if len(lookupErrs) > 0 {
		fmt.Fprintf(&b, "; could not resolve %s", strings.Join(lookupErrs, ", "))
	}
	b.WriteString("; nothing written (allow_absent writes the mark for a drain before registration)")
	if registered == nil {
		registered = []string{}
	}
	return resolvedTarget{}, &absentError{msg: b.String(), registered: registered}
}

// undrainTarget finds the mark an undrain of addr means, however addr is
// spelled: the mark at addr itself, else the one mark of service whose
// address matches it (registry.MatchAddr). It returns addr when no mark
// matches (the undrain then removes nothing).
func (c *Controller) undrainTarget(ctx context.Context, service, addr string) (string, error) {
	ms := c.marks.Snapshot()
	if ms == nil {
		return addr, nil
	}
	if _, ok := ms.Get(service, addr); ok {
		return addr, nil
	}
	var marked []string
	for a := range ms.Marks[service] {
		marked = append(marked, a)
	}
	if len(marked) == 0 {
		return addr, nil
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	matches, _, err := registry.MatchAddr(lctx, c.resolver, addr, marked)
	switch {
	case err != nil:
		return "", badf("instance %q: %v", addr, err)
	case len(matches) == 1:
		return matches[0], nil
	case len(matches) > 1:
		return "", badf("instance %s matches several marks of service %q (%s): name one of them", addr, service, strings.Join(matches, ", "))
	}
	return addr, nil
}

// defaultResolver is the system's resolver.
func defaultResolver() registry.Resolver { return net.DefaultResolver }

// Package register registers a service instance in ZooKeeper the way Spring
// Cloud Zookeeper (Apache Curator's ServiceDiscovery) does, keeps it
// registered, and takes it out gracefully: drained through the zkgate
// controller first, deregistered only once no gateway sends it requests.
//
// It is the library behind `zkgate register` and is meant for Go services:
//
//	drainer, err := register.NewControllerDrainer("http://zkgate-controller:7070",
//		register.ControllerOptions{Token: token})
//	...
//	reg, err := register.Register(ctx, register.Options{
//		Servers: []string{"zk1:2181"},
//		Service: "orders",
//		Address: "10.0.0.7:8080",
//		Drainer: drainer,
//	})
//	...
//	<-sigterm
//	err = reg.Shutdown(ctx) // drain, wait for confirmation, deregister, close
//
// # Contracts
//
//   - The node is the ephemeral /<root>/<service>/<id>, its content Curator's
//     ServiceInstance JSON exactly as Spring Cloud Zookeeper writes it
//     (docs/architecture.md#curator-registration-format): name, id, address, port, sslPort null, payload of class
//     org.springframework.cloud.zookeeper.discovery.ZookeeperInstance with
//     id, name and metadata (instance_status UP unless set),
//     registrationTimeUTC, serviceType DYNAMIC and the uriSpec
//     {scheme}://{address}:{port}. Spring and Curator clients read it as one
//     of theirs; zkgate identifies the instance by address host:port.
//   - The id is a random UUID per Registration (as Curator makes per start)
//     unless Options.ID sets one. It stays the same across re-registrations,
//     and so does registrationTimeUTC (the Registration's creation time):
//     a node re-created after a session loss or a failed health check is
//     the same incarnation, which does not end a drain mark; a new process
//     (a new Registration) is a new one, which does.
//   - Every registration is a newly created node, so it has a new czxid.
//     zkgate orders by zxid, and a registration newer than a drain mark of
//     another incarnation puts the instance back in service. The library
//     never re-registers once Shutdown has begun.
//   - Staying registered: when the session is lost (expired, or suspended
//     longer than the session timeout) the node is created again on the new
//     session. A node at the same path owned by another session (the
//     previous session, or a previous process using the same fixed ID) is
//     replaced when it registers the same address; a node registering a
//     different address is left alone and reported as an error (two
//     instances configured with one ID must not fight). A deleted node is
//     re-created too (a watch notices; a periodic check is the safety net).
//   - With a health check, the node exists only while the instance is
//     healthy: it is deleted after FailureThreshold consecutive failed
//     checks and created again (new czxid) after SuccessThreshold
//     consecutive passing checks.
//   - Shutdown drains (when a Drainer is set and the node is registered),
//     waits for the confirmation at most DrainTimeout, then deletes the node
//     and closes the session, in this order, whatever the drain's outcome.
//     Close skips the drain and the explicit delete: ZooKeeper deletes the
//     node when the session closes.
package register

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/zksession"
)

// Defaults.
const (
	DefaultRoot           = "/services"
	DefaultSessionTimeout = 10 * time.Second
	DefaultDrainTimeout   = 30 * time.Second
	DefaultDrainReason    = "shutdown"
	DefaultVerifyInterval = 30 * time.Second
)

// Dialer makes the TCP connections to ZooKeeper (same shape as
// go-zookeeper's zk.Dialer).
type Dialer func(network, address string, timeout time.Duration) (net.Conn, error)

// Options configure a Registration. Service and Address are required.
type Options struct {
	// Servers are the ZooKeeper ensemble members, host:port.
	Servers []string
	// SessionTimeout is the ZooKeeper session timeout; default 10s. The
	// node disappears this long after the process dies without closing
	// its session.
	SessionTimeout time.Duration
	// Username and Password, when set, are a digest credential; the node is
	// then created readable by everyone and modifiable only with them.
	Username, Password string
	// TLS, when set, connects to ZooKeeper's secure client port.
	TLS *tls.Config
	// Dialer, when set, makes the TCP connections (tests).
	Dialer Dialer
	// Root is the registry root; default /services.
	Root string

	// Service is the service name (the node's parent).
	Service string
	// Address is host:port where the instance serves. The host must be
	// reachable by the gateways (not 0.0.0.0).
	Address string
	// ID is the registration id and node name; default a random UUID.
	ID string
	// Name is the payload's id (Spring writes its application context id);
	// default Service.
	Name string
	// Metadata goes into payload.metadata. instance_status defaults to UP;
	// any other value keeps zkgate gateways from routing to the instance.
	Metadata map[string]string

	// Health, when set, keeps the instance registered only while healthy.
	Health *HealthCheck

	// Drainer, when set, drains the instance during Shutdown.
	Drainer Drainer
	// DrainTimeout bounds the wait for a confirmed drain; default 30s.
	DrainTimeout time.Duration
	// DrainReason is recorded with the drain; default "shutdown".
	DrainReason string

	// VerifyInterval is how often the node is checked even when no watch
	// fired; default 30s.
	VerifyInterval time.Duration

	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock for registrationTimeUTC (tests); default time.Now.
	Now func() time.Time
}

// Status describes a registration at one moment.
type Status struct {
	// Path is the node's path.
	Path string
	// Addr is the registered address, host:port.
	Addr string
	// Registered: the node exists and is owned by the current session, as
	// far as the registration last knew.
	Registered bool
	// Healthy is the health check's verdict (true without a check).
	Healthy bool
	// Czxid is the zxid that created the current (or last) node.
	Czxid int64
	// SessionID owns the current (or last) node.
	SessionID int64
	// Registrations counts the nodes this Registration has created.
	Registrations int
	// Err is the last reason the instance is not registered (a failed
	// health check, a ZooKeeper error); nil once registered again.
	Err error
}

// Registration is one instance kept registered in ZooKeeper. Its methods
// are safe for concurrent use.
type Registration struct {
	opts      Options
	log       *slog.Logger
	sess      *zksession.Session
	path      string
	host      string
	port      int
	addr      string
	opTimeout time.Duration
	// registeredMs is the registrationTimeUTC of every node this
	// Registration creates: fixed, with the id, for its whole life (as
	// Curator re-registers the same ServiceInstance), so that a node
	// re-created after a session loss is the same incarnation and does
	// not end a drain (README.md, "ZooKeeper layout (contract)").
	registeredMs int64

	stop       chan struct{} // closed to stop the keeper and health loops
	stopOnce   sync.Once
	done       chan struct{} // closed when the keeper exits
	healthDone chan struct{}
	wake       chan struct{} // capacity 1: the health verdict changed

	mu      sync.Mutex
	status  Status
	healthy bool
	closed  bool
}

// Register connects to ZooKeeper, runs the first health check (when one is
// configured) and creates the node if the instance is healthy. ctx bounds
// only these first steps; the registration then lives until Shutdown or
// Close. On error nothing stays registered and the session is closed.
func Register(ctx context.Context, opts Options) (*Registration, error) {
	r, err := newRegistration(opts)
	if err != nil {
		return nil, err
	}
	scfg := zksession.Config{
		Servers:        r.opts.Servers,
		SessionTimeout: r.opts.SessionTimeout,
		Username:       r.opts.Username,
		Password:       r.opts.Password,
		TLS:            r.opts.TLS,
		Logger:         r.log,
	}
	if r.opts.Dialer != nil {
		scfg.Dialer = zk.Dialer(r.opts.Dialer)
	}
	sess, err := zksession.Connect(scfg)
	if err != nil {
		return nil, fmt.Errorf("registering %s %s: %w", r.opts.Service, r.addr, err)
	}
	r.sess = sess
	if err := sess.WaitConnected(ctx); err != nil {
		sess.Close()
		return nil, fmt.Errorf("registering %s %s: %w", r.opts.Service, r.addr, err)
	}
	if h := r.opts.Health; h != nil {
		err := h.run(ctx)
		r.setHealthy(err)
		if err != nil {
			r.log.Warn("instance unhealthy, not registering yet", "err", err)
		}
	}
	hints := sess.Hints(r.path)
	var (
		gen        uint64
		registered bool
		first      created
	)
	if r.wantRegistered() {
		c, err := r.ensure(ctx)
		if err != nil {
			sess.RemoveHints(hints)
			sess.Close()
			return nil, fmt.Errorf("registering %s %s: %w", r.opts.Service, r.addr, err)
		}
		gen, registered, first = c.gen, true, c
	}
	go r.keep(hints, registered, gen, registered && first.watched)
	if r.opts.Health != nil {
		go r.healthLoop()
	} else {
		close(r.healthDone)
	}
	return r, nil
}

func newRegistration(opts Options) (*Registration, error) {
	if opts.Service == "" || strings.Contains(opts.Service, "/") {
		return nil, fmt.Errorf("register: service %q must be a non-empty name without /", opts.Service)
	}
	host, port, addr, err := splitAddress(opts.Address)
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	if len(opts.Servers) == 0 {
		return nil, errors.New("register: no ZooKeeper servers")
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = DefaultSessionTimeout
	}
	if opts.Root == "" {
		opts.Root = DefaultRoot
	}
	if !strings.HasPrefix(opts.Root, "/") || (len(opts.Root) > 1 && strings.HasSuffix(opts.Root, "/")) {
		return nil, fmt.Errorf("register: root %q is not an absolute znode path", opts.Root)
	}
	if opts.ID == "" {
		if opts.ID, err = NewUUID(); err != nil {
			return nil, fmt.Errorf("register: %w", err)
		}
	}
	if strings.Contains(opts.ID, "/") || opts.ID == "." || opts.ID == ".." {
		return nil, fmt.Errorf("register: id %q is not a valid node name", opts.ID)
	}
	if opts.Name == "" {
		opts.Name = opts.Service
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.DrainReason == "" {
		opts.DrainReason = DefaultDrainReason
	}
	if opts.VerifyInterval <= 0 {
		opts.VerifyInterval = DefaultVerifyInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Health != nil {
		h, err := opts.Health.withDefaults()
		if err != nil {
			return nil, fmt.Errorf("register: %w", err)
		}
		opts.Health = h
	}
	md := make(map[string]string, len(opts.Metadata))
	for k, v := range opts.Metadata {
		md[k] = v
	}
	opts.Metadata = md
	p := path.Join(opts.Root, opts.Service, opts.ID)
	r := &Registration{
		opts:         opts,
		log:          opts.Logger.With("component", "register", "service", opts.Service, "addr", addr),
		path:         p,
		host:         host,
		port:         port,
		addr:         addr,
		opTimeout:    max(opts.SessionTimeout, 5*time.Second),
		registeredMs: opts.Now().UnixMilli(),
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
		healthDone:   make(chan struct{}),
		wake:         make(chan struct{}, 1),
		healthy:      true,
	}
	r.status = Status{Path: p, Addr: addr, Healthy: true}
	return r, nil
}

// Path is the node's path, /<root>/<service>/<id>.
func (r *Registration) Path() string { return r.path }

// Addr is the registered address, host:port.
func (r *Registration) Addr() string { return r.addr }

// Service is the service name.
func (r *Registration) Service() string { return r.opts.Service }

// Status returns the registration's current status.
func (r *Registration) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Registration) update(f func(*Status)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.status)
}

func (r *Registration) wantRegistered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.healthy
}

// setHealthy records the health verdict: nil is healthy, otherwise why not.
func (r *Registration) setHealthy(why error) {
	ok := why == nil
	r.mu.Lock()
	changed := r.healthy != ok
	r.healthy = ok
	r.status.Healthy = ok
	if !ok {
		r.status.Err = why
	} else if changed {
		r.status.Err = nil
	}
	r.mu.Unlock()
	if changed {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// created is the outcome of ensure.
type created struct {
	czxid   int64
	gen     uint64
	watched bool // a deletion watch is armed
}

// ensure makes sure the node exists and is owned by the current session:
// it creates it, replacing a node of another session that registers the
// same address.
func (r *Registration) ensure(ctx context.Context) (created, error) {
	if err := r.sess.WaitConnected(ctx); err != nil {
		return created{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.opTimeout)
	defer cancel()
	parent := path.Dir(r.path)
	// Registry parents are shared with services registered by other means
	// (Spring, Curator): leave them open to everyone, as Curator does. The
	// registry is not protected by zookeeper.auth (README.md, Security).
	if err := r.sess.EnsurePath(ctx, parent, zk.WorldACL(zk.PermAll)); err != nil {
		return created{}, fmt.Errorf("creating %s: %w", parent, err)
	}
	for attempt := 0; ; attempt++ {
		if attempt == 5 {
			return created{}, fmt.Errorf("creating %s: gave up after %d attempts", r.path, attempt)
		}
		gen := r.sess.Generation()
		data := EncodeInstance(r.opts.Service, r.opts.ID, r.opts.Name, r.host, r.port, r.opts.Metadata, r.registeredMs)
		_, err := r.sess.Create(ctx, r.path, data, zksession.FlagEphemeral, r.sess.ACL())
		// fresh: if the node turns out to be ours, this call created it.
		fresh := err == nil || zksession.IsUnknownOutcome(err)
		if err != nil && !errors.Is(err, zksession.ErrNodeExists) && !zksession.IsUnknownOutcome(err) {
			return created{}, err
		}
		if err != nil && ctx.Err() != nil {
			return created{}, err
		}
		// Created, already there, or unknown outcome: read the truth.
		cur, st, err := r.sess.Get(ctx, r.path)
		if errors.Is(err, zksession.ErrNoNode) {
			continue
		}
		if err != nil {
			return created{}, err
		}
		sid := r.sess.SessionID()
		if st.EphemeralOwner == sid && r.sess.Generation() == gen {
			// Arm the deletion watch; without it only the periodic check
			// would notice a deletion.
			_, _, werr := r.sess.ExistsW(ctx, r.path)
			if werr != nil {
				r.log.Warn("arming a watch on the registration", "err", werr)
			}
			r.update(func(s *Status) {
				s.Registered, s.Czxid, s.SessionID, s.Err = true, st.Czxid, sid, nil
				if fresh {
					s.Registrations++
				}
			})
			if fresh {
				r.log.Info("registered", "path", r.path, "czxid", st.Czxid, "session", fmt.Sprintf("0x%x", sid))
			}
			return created{czxid: st.Czxid, gen: gen, watched: werr == nil}, nil
		}
		if st.EphemeralOwner == sid {
			continue // the session changed meanwhile: look again
		}
		if other := nodeAddress(cur); other != r.addr {
			return created{}, fmt.Errorf("node %s registers %q, not %s: another instance uses id %q", r.path, other, r.addr, r.opts.ID)
		}
		r.log.Info("replacing the registration of another session", "path", r.path,
			"owner", fmt.Sprintf("0x%x", st.EphemeralOwner), "czxid", st.Czxid)
		if err := r.sess.Delete(ctx, r.path, st.Version); err != nil &&
			!errors.Is(err, zksession.ErrNoNode) && !errors.Is(err, zksession.ErrBadVersion) {
			return created{}, fmt.Errorf("replacing the node of session 0x%x: %w", st.EphemeralOwner, err)
		}
	}
}

// deregister deletes the node if the current session owns it.
func (r *Registration) deregister(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.opTimeout)
	defer cancel()
	ok, st, err := r.sess.Exists(ctx, r.path)
	if err != nil {
		return fmt.Errorf("deregistering: %w", err)
	}
	if ok && st.EphemeralOwner == r.sess.SessionID() {
		if err := r.sess.Delete(ctx, r.path, st.Version); err != nil && !errors.Is(err, zksession.ErrNoNode) {
			return fmt.Errorf("deregistering: %w", err)
		}
		r.log.Info("deregistered", "path", r.path, "czxid", st.Czxid)
	}
	r.update(func(s *Status) { s.Registered = false })
	return nil
}

// owned reports whether the node exists and belongs to the current session.
func (r *Registration) owned(ctx context.Context) (bool, error) { return r.ownedWatch(ctx, false) }

// ownedWatch is owned, arming a watch on the node when watch is set.
func (r *Registration) ownedWatch(ctx context.Context, watch bool) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opTimeout)
	defer cancel()
	exists := r.sess.Exists
	if watch {
		exists = r.sess.ExistsW
	}
	ok, st, err := exists(ctx, r.path)
	if err != nil {
		return false, err
	}
	return ok && st.EphemeralOwner == r.sess.SessionID(), nil
}

// untilStop returns a context that ends when the registration stops or
// cancel is called.
func (r *Registration) untilStop() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// keep is the one goroutine that owns the node while the registration
// lives: it re-creates it after a session loss or a deletion and follows
// the health verdict.
func (r *Registration) keep(hints *zksession.Hints, registered bool, gen uint64, armed bool) {
	defer close(r.done)
	defer r.sess.RemoveHints(hints)
	ctx, cancel := r.untilStop()
	defer cancel()
	verify := time.NewTicker(r.opts.VerifyInterval)
	defer verify.Stop()
	var retry <-chan time.Time
	backoff := 100 * time.Millisecond
	// armed: a deletion watch set by this session is pending on the node.
	// go-zookeeper keeps watches across reconnections of one session and
	// drops them with the session; each ExistsW adds one, so arm only when
	// none is pending.
	for {
		want := r.wantRegistered()
		switch {
		case want && (!registered || gen != r.sess.Generation()):
			c, err := r.ensure(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				registered = false
				r.update(func(s *Status) { s.Registered, s.Err = false, err })
				r.log.Warn("registration failed, will retry", "err", err, "retry_in", backoff)
				retry = time.After(backoff)
				backoff = min(2*backoff, 5*time.Second)
			} else {
				registered, gen, retry, backoff = true, c.gen, nil, 100*time.Millisecond
				armed = c.watched
			}
		case !want && registered:
			if err := r.deregister(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Warn("deregistering an unhealthy instance failed, will retry", "err", err)
				retry = time.After(backoff)
				backoff = min(2*backoff, 5*time.Second)
			} else {
				registered, retry, backoff = false, nil, 100*time.Millisecond
			}
		}
		check := false
		select {
		case <-ctx.Done():
			return
		case _, ok := <-hints.C():
			if !ok {
				return
			}
			b := hints.Take()
			if b.Lost || b.NewSession {
				// Batches coalesce: a loss followed by a new session on
				// which the node was already re-created is stale news.
				state, _ := r.sess.State()
				if state != zksession.StateConnected || gen != r.sess.Generation() {
					if registered {
						r.log.Warn("zookeeper session lost: registering again on the new session")
					}
					registered, armed = false, false
					r.update(func(s *Status) { s.Registered = false })
				} else {
					check = true
				}
			}
			if _, ok := b.Paths[r.path]; ok {
				check, armed = true, false
			}
		case <-r.wake:
		case <-retry:
		case <-verify.C:
			check = true
		}
		if registered && check {
			ok, err := r.ownedWatch(ctx, !armed)
			switch {
			case err != nil:
				if ctx.Err() != nil {
					return
				}
				r.log.Debug("checking the registration", "err", err)
			case !ok:
				r.log.Warn("registration node disappeared: registering again", "path", r.path)
				registered = false
				r.update(func(s *Status) { s.Registered = false })
			case !armed:
				armed = true
			}
		}
	}
}

// stopKeeping stops the keeper and the health checks and waits for them.
func (r *Registration) stopKeeping() {
	r.stopOnce.Do(func() { close(r.stop) })
	<-r.done
	<-r.healthDone
}

// ErrClosed is returned by Shutdown after Shutdown or Close.
var ErrClosed = errors.New("register: registration already closed")

func (r *Registration) markClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.closed = true
	return true
}

// Shutdown takes the instance out gracefully, in this order: it stops
// keeping the registration (nothing re-registers from now on); if a
// Drainer is set and the node is registered, it drains the instance and
// waits for the confirmation, at most DrainTimeout; it deletes the node; it
// closes the session. ctx bounds the whole sequence; the session is closed
// even when ctx has ended (ZooKeeper then deletes the node itself).
//
// The error joins what went wrong: a drain that failed or was not
// confirmed (errors.Is(err, ErrDrainNotConfirmed)) does not stop the
// deregistration. After Shutdown or Close it returns ErrClosed.
func (r *Registration) Shutdown(ctx context.Context) error {
	if !r.markClosed() {
		return ErrClosed
	}
	r.stopKeeping()
	defer r.sess.Close()
	var errs []error
	if d := r.opts.Drainer; d != nil {
		// Read the truth after the keeper stopped: a create it had in
		// flight is ordered before this read on the session.
		owned, err := r.owned(ctx)
		switch {
		case err == nil && !owned:
			r.log.Info("not registered: nothing to drain")
		default:
			if err != nil {
				r.log.Warn("cannot tell whether the node is registered; draining anyway", "err", err)
			}
			if err := r.drain(ctx, d); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if ctx.Err() == nil {
		if err := r.deregister(ctx); err != nil {
			errs = append(errs, err)
		}
	} else {
		r.log.Warn("shutdown deadline passed: leaving the node to the session close", "path", r.path)
	}
	return errors.Join(errs...)
}

func (r *Registration) drain(ctx context.Context, d Drainer) error {
	r.log.Info("draining through the controller", "timeout", r.opts.DrainTimeout)
	start := time.Now()
	err := d.Drain(ctx, r.opts.Service, r.addr, r.opts.DrainReason, r.opts.DrainTimeout)
	if err != nil {
		r.log.Warn("drain not confirmed; deregistering anyway", "err", err, "after", time.Since(start).Round(time.Millisecond))
		return fmt.Errorf("draining %s %s: %w", r.opts.Service, r.addr, err)
	}
	r.log.Info("drain confirmed", "after", time.Since(start).Round(time.Millisecond))
	return nil
}

// Close stops keeping the registration and closes the session at once,
// without draining and without deleting the node first: ZooKeeper deletes
// it as part of closing the session. It is what a process that exits
// without grace does. Close after Shutdown does nothing.
func (r *Registration) Close() {
	if !r.markClosed() {
		return
	}
	r.stopKeeping()
	r.sess.Close()
	r.update(func(s *Status) { s.Registered = false })
}

// Package zksession is zkgate's layer over go-zookeeper/zk: it keeps its own
// session state, turns watch events into coalesced hints, and puts a
// context on every call.
//
// go-zookeeper/zk never reports that a session expired while the client is
// partitioned from the ensemble; it learns only when it reconnects. So the
// session keeps its own state:
//
//	Connecting ──► Connected ──► Suspended ──► Lost ──► Connected (new session)
//	                   ▲             │
//	                   └─────────────┘ (reconnected in time: same session)
//
// Suspended means the connection is gone but the session may still be alive
// on the servers: ephemerals and watches may still exist. Lost means the
// client was suspended for longer than the session timeout (or the server
// said the session expired): every ephemeral node of the session is gone or
// about to be, and so is every watch. Consumers re-create ephemerals, re-arm
// watches and resync after a new session.
//
// Watch events are taken through the connection's event callback, never its
// 6-slot event channel, and are delivered to consumers as hints (see Hints).
package zksession

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// State is the session state as zkgate sees it.
type State int32

// Session states.
const (
	// StateConnecting: no session has been established yet.
	StateConnecting State = iota
	// StateConnected: connected with a live session.
	StateConnected
	// StateSuspended: disconnected; the session may still be alive.
	StateSuspended
	// StateLost: the session is gone (expired, or suspended longer than the
	// session timeout). Ephemerals and watches of the session are gone.
	StateLost
	// StateClosed: Close was called.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateSuspended:
		return "suspended"
	case StateLost:
		return "lost"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// Config configures a Session.
type Config struct {
	Servers        []string
	SessionTimeout time.Duration
	// Username and Password, when set, are added as a digest credential
	// (re-sent by the client after every reconnect).
	Username, Password string
	// TLS, when set, wraps every connection in TLS.
	TLS *tls.Config
	// Dialer, when set, makes the TCP connections (tests use it to cut
	// connections). TLS is layered on top of it.
	Dialer zk.Dialer
	Logger *slog.Logger
	// DropEvent, when set, is asked about every watch event before it is
	// delivered; returning true drops it. It exists so tests can inject lost
	// events; production code leaves it nil.
	DropEvent func(zk.Event) bool
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// UnreachableWarnEvery: while no session is connected (at start, or
	// after a disconnection), a warning naming the servers, how long and
	// the last connection error is logged this often. Default
	// DefaultUnreachableWarnEvery.
	UnreachableWarnEvery time.Duration
	// NoMultiRead makes MultiRead send one request per operation, as it
	// does with a server that does not know multiRead (before ZooKeeper
	// 3.6). For comparisons and tests of that path.
	NoMultiRead bool
}

// DefaultUnreachableWarnEvery is the default Config.UnreachableWarnEvery.
const DefaultUnreachableWarnEvery = 5 * time.Second

// Session is a ZooKeeper client session with zkgate's own state tracking.
// All methods are safe for concurrent use.
type Session struct {
	cfg   Config
	conn  *zk.Conn
	log   *slog.Logger
	calls atomic.Uint64 // requests sent through the session's methods
	// localAddr is the local address of the last connection to a server.
	localAddr atomic.Pointer[string]

	mu          sync.Mutex
	state       State
	sessionID   int64
	generation  uint64 // increments with every new session
	since       time.Time
	leftConn    time.Time // when the state last left Connected
	lostTimer   *time.Timer
	stateWaiter chan struct{} // closed and replaced on every state change
	hints       map[*Hints]struct{}
	armed       map[watchKey]struct{}
	closed      bool
	quit        chan struct{} // closed by Close
	// started is when Connect was called (unreachable since, before the
	// first session).
	started time.Time
	// lastConnErr is the client's last connection failure (errMu).
	errMu       sync.Mutex
	lastConnErr string
	// authPending: credentials are configured and not yet accepted; the
	// session is not reported connected until they are (pendingNew
	// remembers whether the session it waits with is a new one).
	authPending bool
	pendingNew  bool
}

type watchKey struct {
	path  string
	child bool
	// recursive: a persistent recursive watch (AddWatchRecursive); it
	// stays armed when it fires, and is dropped at every reconnection.
	recursive bool
}

// Connect starts a session. It does not wait for the connection: use
// WaitConnected. The session reconnects by itself until Close.
func Connect(cfg Config) (*Session, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("zookeeper: no servers configured")
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Session{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "zookeeper"),
		state:       StateConnecting,
		since:       cfg.Now(),
		started:     cfg.Now(),
		stateWaiter: make(chan struct{}),
		hints:       map[*Hints]struct{}{},
		armed:       map[watchKey]struct{}{},
		quit:        make(chan struct{}),
		authPending: cfg.Username != "",
	}
	dialer := cfg.Dialer
	if dialer == nil {
		dialer = net.DialTimeout
	}
	if cfg.TLS != nil {
		base := dialer
		tc := cfg.TLS
		dialer = func(network, addr string, timeout time.Duration) (net.Conn, error) {
			c, err := base(network, addr, timeout)
			if err != nil {
				return nil, err
			}
			conf := tc.Clone()
			if conf.ServerName == "" {
				host, _, _ := net.SplitHostPort(addr)
				conf.ServerName = host
			}
			tlsConn := tls.Client(c, conf)
			_ = tlsConn.SetDeadline(time.Now().Add(timeout))
			if err := tlsConn.Handshake(); err != nil {
				c.Close()
				return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
			}
			_ = tlsConn.SetDeadline(time.Time{})
			return tlsConn, nil
		}
	}
	base := dialer
	dialer = func(network, addr string, timeout time.Duration) (net.Conn, error) {
		c, err := base(network, addr, timeout)
		if err == nil {
			local := c.LocalAddr().String()
			s.localAddr.Store(&local)
		}
		return c, err
	}
	// Hold the lock until s.conn is set: the client's goroutines may call
	// the event callback (which takes the lock and uses s.conn) as soon as
	// zk.Connect has started them. zk.Connect itself never calls it.
	s.mu.Lock()
	conn, _, err := zk.Connect(cfg.Servers, cfg.SessionTimeout,
		zk.WithDialer(dialer),
		zk.WithEventCallback(s.onEvent),
		zk.WithLogger(zkLogger{s}),
		zk.WithLogInfo(false),
		zk.WithMultiRead(!cfg.NoMultiRead),
	)
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("connecting to zookeeper %s: %w", strings.Join(cfg.Servers, ","), err)
	}
	s.conn = conn
	s.mu.Unlock()
	if cfg.Username != "" {
		go s.addAuth(conn)
	}
	every := cfg.UnreachableWarnEvery
	if every <= 0 {
		every = DefaultUnreachableWarnEvery
	}
	go s.warnWhileUnreachable(every)
	return s, nil
}

// warnWhileUnreachable logs a warning every interval while no session is
// connected, so that an unreachable ensemble (a wrong address, a firewall,
// servers down) shows in the log at start as well as later; state changes
// alone say nothing while the client keeps trying.
func (s *Session) warnWhileUnreachable(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		s.mu.Lock()
		st, down := s.state, s.leftConn
		if down.IsZero() || s.generation == 0 {
			down = s.started // never connected
		}
		id := s.sessionID
		s.mu.Unlock()
		if st == StateConnected || st == StateClosed {
			continue
		}
		d := s.cfg.Now().Sub(down)
		if d < every {
			continue
		}
		s.errMu.Lock()
		lastErr := s.lastConnErr
		s.errMu.Unlock()
		if lastErr == "" {
			lastErr = "none reported"
		}
		s.log.Warn("ZooKeeper unreachable: no connected session; still trying",
			"servers", strings.Join(s.cfg.Servers, ","), "for", d.Round(time.Second), "state", st.String(),
			"session", fmt.Sprintf("0x%x", id), "last_error", lastErr)
	}
}

// addAuth adds the digest credentials, retrying while the ensemble cannot
// be reached (the client library remembers them, and re-sends them after
// every reconnect, only once they were accepted), then reports the session
// connected.
func (s *Session) addAuth(conn *zk.Conn) {
	auth := []byte(s.cfg.Username + ":" + s.cfg.Password)
	for {
		err := conn.AddAuth("digest", auth)
		if err == nil {
			break
		}
		s.log.Debug("adding zookeeper digest credentials failed; retrying", "err", err)
		select {
		case <-s.quit:
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authPending = false
	if s.closed || conn.State() != zk.StateHasSession {
		return // the next StateHasSession reports the session
	}
	s.setStateLocked(StateConnected)
	for h := range s.hints {
		h.addSession(s.pendingNew)
	}
	s.pendingNew = false
}

// Close ends the session: its ephemeral nodes are deleted by the server at
// once. Hints channels are closed.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.quit)
	conn := s.conn
	s.mu.Unlock()
	conn.Close()
	s.mu.Lock()
	s.setStateLocked(StateClosed)
	if s.lostTimer != nil {
		s.lostTimer.Stop()
	}
	for h := range s.hints {
		h.close()
	}
	s.hints = map[*Hints]struct{}{}
	s.mu.Unlock()
}

// State returns the current state and when it was entered.
func (s *Session) State() (State, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.since
}

// LastConnected returns now while connected, otherwise when the session was
// last connected (zero if never).
func (s *Session) LastConnected() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == StateConnected {
		return s.cfg.Now()
	}
	return s.leftConn
}

// LocalAddr returns the local address (ip:port) of the current or last
// connection to a ZooKeeper server, "" before the first: the address this
// process reaches the ensemble from.
func (s *Session) LocalAddr() string {
	if p := s.localAddr.Load(); p != nil {
		return *p
	}
	return ""
}

// SessionID returns the current (or last) session id, 0 before the first.
func (s *Session) SessionID() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessionID
}

// Generation counts sessions: it increases each time a new session is
// established, so a consumer can tell whether its ephemerals still exist.
func (s *Session) Generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.generation
}

// SessionTimeout is the session timeout zkgate asked for.
func (s *Session) SessionTimeout() time.Duration { return s.cfg.SessionTimeout }

// Changed returns a channel that is closed at the next state change. Unlike
// the Updates signals of the caches and the gateway (capacity one, never
// closed, one reader), it is a broadcast: every caller holding it sees the
// close, and a caller takes a new channel after each change.
func (s *Session) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stateWaiter
}

// WaitConnected blocks until the session is connected, ctx ends or the
// session is closed.
func (s *Session) WaitConnected(ctx context.Context) error {
	for {
		s.mu.Lock()
		st, ch := s.state, s.stateWaiter
		s.mu.Unlock()
		switch st {
		case StateConnected:
			return nil
		case StateClosed:
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for a zookeeper session (state %s): %w", st, ctx.Err())
		}
	}
}

// ErrClosed is returned once the session has been closed.
var ErrClosed = errors.New("zookeeper session closed")

func (s *Session) setStateLocked(st State) {
	if s.state == st {
		return
	}
	prev := s.state
	s.state = st
	s.since = s.cfg.Now()
	if prev == StateConnected {
		s.leftConn = s.since
	}
	close(s.stateWaiter)
	s.stateWaiter = make(chan struct{})
	s.log.Info("zookeeper session state", "from", prev.String(), "to", st.String(), "session", fmt.Sprintf("0x%x", s.sessionID))
}

// onEvent runs on the client's receive goroutine: it must never block.
func (s *Session) onEvent(ev zk.Event) {
	if ev.Type == zk.EventSession {
		s.onSessionEvent(ev)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	switch ev.Type {
	case zk.EventNodeDataChanged:
		delete(s.armed, watchKey{path: ev.Path})
	case zk.EventNodeChildrenChanged:
		delete(s.armed, watchKey{path: ev.Path, child: true})
	case zk.EventNodeDeleted, zk.EventNotWatching:
		delete(s.armed, watchKey{path: ev.Path})
		delete(s.armed, watchKey{path: ev.Path, child: true})
		if ev.Type == zk.EventNotWatching {
			return // watches were invalidated (session expired or client closed)
		}
	}
	if s.cfg.DropEvent != nil && s.cfg.DropEvent(ev) {
		s.log.Debug("dropping watch event (injected)", "path", ev.Path, "type", ev.Type.String())
		return
	}
	for h := range s.hints {
		h.addPath(ev.Path, ev.Type == zk.EventNodeDeleted)
	}
}

func (s *Session) onSessionEvent(ev zk.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	switch ev.State {
	case zk.StateHasSession:
		if s.lostTimer != nil {
			s.lostTimer.Stop()
			s.lostTimer = nil
		}
		id := s.conn.SessionID()
		// After Lost, consumers were told their ephemerals and watches are
		// gone: treat the reconnection as a new session even if the server
		// kept the old one alive a little longer.
		newSession := id != s.sessionID || s.state == StateLost
		s.sessionID = id
		if newSession {
			s.generation++
			s.armed = map[watchKey]struct{}{}
		} else {
			// The client re-arms one-shot watches on a reconnection, not
			// persistent ones: their owners add them again (the
			// Reconnected hint asks them for a full re-read).
			for k := range s.armed {
				if k.recursive {
					delete(s.armed, k)
				}
			}
		}
		if s.authPending {
			// Reported once the credentials are accepted (addAuth).
			s.pendingNew = s.pendingNew || newSession
			return
		}
		s.setStateLocked(StateConnected)
		for h := range s.hints {
			h.addSession(newSession)
		}
	case zk.StateExpired:
		s.expireLocked("the server reports the session expired")
	case zk.StateDisconnected, zk.StateConnecting:
		if s.state == StateConnected {
			s.setStateLocked(StateSuspended)
			gen := s.generation
			s.lostTimer = time.AfterFunc(s.cfg.SessionTimeout, func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.state == StateSuspended && s.generation == gen {
					s.expireLocked("suspended longer than the session timeout")
				}
			})
		}
	case zk.StateAuthFailed:
		s.log.Error("zookeeper authentication failed")
	}
}

func (s *Session) expireLocked(why string) {
	if s.state == StateLost || s.state == StateClosed {
		return
	}
	s.log.Warn("zookeeper session lost", "reason", why, "session", fmt.Sprintf("0x%x", s.sessionID))
	s.armed = map[watchKey]struct{}{}
	s.setStateLocked(StateLost)
	for h := range s.hints {
		h.addLost()
	}
}

// zkLogger adapts slog to zk.Logger (at debug level), and remembers the
// last connection failure for the unreachable warning.
type zkLogger struct{ s *Session }

func (z zkLogger) Printf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	if strings.HasPrefix(msg, "failed to connect") || strings.Contains(msg, "authentication failed") {
		z.s.errMu.Lock()
		z.s.lastConnErr = msg
		z.s.errMu.Unlock()
	}
	z.s.log.Debug(msg)
}

// ACL returns the ACL zkgate puts on the nodes it creates: when digest
// credentials are configured, only they may change the node and everyone may
// read it; otherwise the open ACL.
func (s *Session) ACL() []ACL {
	if s.cfg.Username == "" {
		return zk.WorldACL(zk.PermAll)
	}
	acl := zk.DigestACL(zk.PermAll, s.cfg.Username, s.cfg.Password)
	return append(acl, zk.WorldACL(zk.PermRead)...)
}

package zksession_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
)

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func connect(t *testing.T, cfg zksession.Config) *zksession.Session {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(testLog{t}, nil))
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = 2 * time.Second
	}
	s, err := zksession.Connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func waitState(t *testing.T, s *zksession.Session, want zksession.State) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		ch := s.Changed()
		if st, _ := s.State(); st == want {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			st, _ := s.State()
			t.Fatalf("state is %s, want %s", st, want)
		}
	}
}

func waitHint(t *testing.T, h *zksession.Hints, cond func(zksession.Batch) bool) zksession.Batch {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case <-h.C():
			if b := h.Take(); cond(b) {
				return b
			}
		case <-deadline:
			t.Fatal("timed out waiting for a hint")
		}
	}
}

func TestSessionStatesThroughPartition(t *testing.T) {
	zc := zktest.Start(t)
	part := zktest.NewPartitioner()
	s := connect(t, zksession.Config{Servers: zc.Servers(), Dialer: part.Dialer()})
	h := s.Hints("/")
	gen, id := s.Generation(), s.SessionID()
	if gen != 1 || id == 0 {
		t.Fatalf("generation %d, session %x after the first connect", gen, id)
	}
	local := s.LocalAddr()
	if ap, err := netip.ParseAddrPort(local); err != nil || !ap.Addr().IsLoopback() || ap.Port() == 0 {
		t.Fatalf("LocalAddr %q after the first connect, want a loopback ip:port", local)
	}

	// A short cut: suspended, then the same session again.
	part.Cut()
	waitState(t, s, zksession.StateSuspended)
	if time.Since(s.LastConnected()) > 5*time.Second {
		t.Fatalf("LastConnected %v is not the moment the connection was lost", s.LastConnected())
	}
	part.Restore()
	waitState(t, s, zksession.StateConnected)
	if s.Generation() != gen || s.SessionID() != id {
		t.Fatalf("a short cut changed the session (%d/%x → %d/%x)", gen, id, s.Generation(), s.SessionID())
	}
	if again := s.LocalAddr(); again == local || again == "" {
		t.Fatalf("LocalAddr %q after reconnecting, want the new connection's (was %q)", again, local)
	}
	waitHint(t, h, func(b zksession.Batch) bool { return b.Reconnected && !b.NewSession })

	// Longer than the session timeout: lost (by our own clock, while still
	// partitioned), then a new session.
	part.Blackhole()
	waitState(t, s, zksession.StateLost)
	waitHint(t, h, func(b zksession.Batch) bool { return b.Lost })
	part.Restore()
	waitState(t, s, zksession.StateConnected)
	if s.Generation() != gen+1 || s.SessionID() == id {
		t.Fatalf("after loss: generation %d session %x, want a new session", s.Generation(), s.SessionID())
	}
	waitHint(t, h, func(b zksession.Batch) bool { return b.NewSession })
}

func TestWatchHintsCoalesceAndRearm(t *testing.T) {
	zc := zktest.Start(t)
	s := connect(t, zksession.Config{Servers: zc.Servers()})
	ctx := context.Background()
	if err := s.EnsurePath(ctx, "/a/b", nil); err != nil {
		t.Fatal(err)
	}
	h := s.Hints("/a")
	other := s.Hints("/elsewhere")

	// Arming twice adds one watch: one event, one hint.
	for i := 0; i < 3; i++ {
		if _, _, err := s.GetW(ctx, "/a/b"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Set(ctx, "/a/b", []byte("x"), -1); err != nil {
		t.Fatal(err)
	}
	b := waitHint(t, h, func(b zksession.Batch) bool { return len(b.Paths) > 0 })
	if _, ok := b.Paths["/a/b"]; !ok {
		t.Fatalf("hint paths %v, want /a/b", b.Paths)
	}
	// The watch fired once, so it is re-armed by the next GetW.
	if _, _, err := s.GetW(ctx, "/a/b"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ChildrenW(ctx, "/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "/a/c", nil, zksession.FlagPersistent, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "/a/b", []byte("y"), -1); err != nil {
		t.Fatal(err)
	}
	waitHint(t, h, func(b zksession.Batch) bool {
		_, child := b.Paths["/a"]
		_, data := b.Paths["/a/b"]
		return child || data
	})
	select {
	case <-other.C():
		if b := other.Take(); len(b.Paths) > 0 {
			t.Fatalf("hints for another prefix got %v", b.Paths)
		}
	default:
	}
}

func TestContextBoundsCalls(t *testing.T) {
	zc := zktest.Start(t)
	part := zktest.NewPartitioner()
	s := connect(t, zksession.Config{Servers: zc.Servers(), Dialer: part.Dialer(), SessionTimeout: 4 * time.Second})
	part.Blackhole()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := s.Get(ctx, "/")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get while partitioned: %v, want deadline exceeded", err)
	}
	if !zksession.IsUnknownOutcome(err) {
		t.Fatal("a timed-out call must count as an unknown outcome")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Get took %v despite a 200ms context", time.Since(start))
	}
	part.Restore()
}

func TestDigestACLProtectsZkgateNodes(t *testing.T) {
	zc := zktest.Start(t)
	ctx := context.Background()
	owner := connect(t, zksession.Config{Servers: zc.Servers(), Username: "zkgate", Password: "s3cret"})
	if err := owner.EnsurePath(ctx, "/zkgate/marks", owner.ACL()); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Create(ctx, "/zkgate/marks/x", []byte("owned"), zksession.FlagPersistent, owner.ACL()); err != nil {
		t.Fatal(err)
	}

	anon := connect(t, zksession.Config{Servers: zc.Servers()})
	if data, _, err := anon.Get(ctx, "/zkgate/marks/x"); err != nil || string(data) != "owned" {
		t.Fatalf("anyone may read: got %q, %v", data, err)
	}
	if _, err := anon.Set(ctx, "/zkgate/marks/x", []byte("tampered"), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("unauthenticated Set: %v, want ErrNoAuth", err)
	}
	if err := anon.Delete(ctx, "/zkgate/marks/x", -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("unauthenticated Delete of a child: %v, want ErrNoAuth", err)
	}
	wrong := connect(t, zksession.Config{Servers: zc.Servers(), Username: "zkgate", Password: "wrong"})
	if _, err := wrong.Set(ctx, "/zkgate/marks/x", []byte("tampered"), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("wrong password Set: %v, want ErrNoAuth", err)
	}
	if _, err := owner.Set(ctx, "/zkgate/marks/x", []byte("changed"), -1); err != nil {
		t.Fatalf("owner Set: %v", err)
	}
}

func TestConnectWithCredentialsDuringOutage(t *testing.T) {
	zc := zktest.Start(t)
	if err := zc.StopAll(); err != nil {
		t.Fatal(err)
	}
	// Connecting with credentials must not fail while the ensemble is down:
	// a gateway starts during an outage and catches up later.
	s, err := zksession.Connect(zksession.Config{Servers: zc.Servers(), SessionTimeout: 2 * time.Second,
		Username: "zkgate", Password: "s3cret", Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	if err != nil {
		t.Fatalf("Connect during an outage: %v", err)
	}
	defer s.Close()
	time.Sleep(500 * time.Millisecond)
	if st, _ := s.State(); st != zksession.StateConnecting {
		t.Fatalf("state %s during the outage, want connecting", st)
	}
	if err := zc.StartAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	// The credentials were applied before the session was reported
	// connected: a node created with the session's ACL is writable by it.
	if err := s.EnsurePath(ctx, "/zkgate/x", s.ACL()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "/zkgate/x", []byte("y"), -1); err != nil {
		t.Fatalf("Set on an own node: %v", err)
	}
}

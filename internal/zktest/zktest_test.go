package zktest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/testutil"
)

// client is a go-zookeeper connection whose session-state changes are
// recorded through WithEventCallback (the event channel drops events).
type client struct {
	*zk.Conn
	states chan zk.State
}

// testLogger forwards go-zookeeper's log lines to t.Logf until cleanup.
type testLogger struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *testLogger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("zk client: "+format, args...)
	}
}

// connect opens a session; dialer may be nil for the default one.
func connect(t *testing.T, servers []string, sessionTimeout time.Duration, dialer zk.Dialer) *client {
	t.Helper()
	c := &client{states: make(chan zk.State, 1000)}
	logger := &testLogger{t: t}
	if dialer == nil {
		dialer = net.DialTimeout
	}
	conn, _, err := zk.Connect(servers, sessionTimeout,
		zk.WithDialer(dialer),
		zk.WithLogger(logger),
		zk.WithEventCallback(func(e zk.Event) {
			if e.Type == zk.EventSession {
				select {
				case c.states <- e.State:
				default:
				}
			}
		}))
	if err != nil {
		t.Fatalf("zk.Connect: %v", err)
	}
	c.Conn = conn
	t.Cleanup(func() {
		conn.Close()
		logger.mu.Lock()
		logger.done = true
		logger.mu.Unlock()
	})
	c.waitState(t, zk.StateHasSession, 10*time.Second)
	return c
}

// waitState waits until the client reports want, failing the test after d.
func (c *client) waitState(t *testing.T, want zk.State, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	timer := time.NewTimer(d)
	defer timer.Stop()
	var seen []zk.State
	for {
		select {
		case s := <-c.states:
			seen = append(seen, s)
			if s == want {
				return time.Since(start)
			}
		case <-timer.C:
			t.Fatalf("client did not reach %v within %v (saw %v)", want, d, seen)
		}
	}
}

func TestStandalone(t *testing.T) {
	t.Parallel()
	c := Start(t)

	if got := c.Size(); got != 1 {
		t.Fatalf("Size() = %d, want 1", got)
	}
	if mode, err := c.Mode(0); err != nil || mode != "standalone" {
		t.Fatalf("Mode(0) = %q, %v; want standalone", mode, err)
	}
	if l, err := c.Leader(); err != nil || l != 0 {
		t.Fatalf("Leader() = %d, %v; want 0", l, err)
	}
	if c.ConnectString() != c.Servers()[0] || c.Addr(0) != c.Servers()[0] {
		t.Fatalf("ConnectString %q / Addr %q / Servers %v disagree", c.ConnectString(), c.Addr(0), c.Servers())
	}
	mntr, err := FourLetterWord(t.Context(), c.Addr(0), "mntr")
	if err != nil || !strings.Contains(mntr, "zk_server_state\tstandalone") {
		t.Fatalf("mntr = %q, %v", mntr, err)
	}

	cl := connect(t, c.Servers(), 2*time.Second, nil)
	if _, err := cl.Create("/zktest", []byte("hello"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	data, _, err := cl.Get("/zktest")
	if err != nil || string(data) != "hello" {
		t.Fatalf("Get = %q, %v", data, err)
	}

	// The server logs through log4j into its own directory.
	if b, err := os.ReadFile(c.LogPath(0)); err != nil || !strings.Contains(string(b), "binding to port") {
		t.Fatalf("server log %s missing or incomplete (err %v):\n%s", c.LogPath(0), err, b)
	}
}

func TestEnsembleLeaderFailover(t *testing.T) {
	t.Parallel()
	c := StartEnsemble(t, 3)

	var leaders, followers int
	for i := range 3 {
		switch m, err := c.Mode(i); {
		case err != nil:
			t.Fatalf("Mode(%d): %v", i, err)
		case m == "leader":
			leaders++
		case m == "follower":
			followers++
		}
	}
	if leaders != 1 || followers != 2 {
		t.Fatalf("got %d leaders and %d followers, want 1 and 2", leaders, followers)
	}

	cl := connect(t, c.Servers(), 4*time.Second, nil)
	if _, err := cl.Create("/failover", []byte("v1"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("Create: %v", err)
	}

	old, err := c.Leader()
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	if err := c.Kill(old); err != nil {
		t.Fatalf("Kill(%d): %v", old, err)
	}
	if c.Running(old) || c.PID(old) != 0 {
		t.Fatalf("server %d still running after Kill", old)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	start := time.Now()
	nl, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatalf("WaitLeader: %v", err)
	}
	if nl == old {
		t.Fatalf("new leader %d is the killed one", nl)
	}
	t.Logf("new leader %d (was %d) after %v", nl, old, time.Since(start))

	// The client rides over the failover (same session, another server).
	testutil.EventuallyNil(t, 10*time.Second, "Set after failover", func() error {
		_, err := cl.Set("/failover", []byte("v2"), -1)
		return err
	})
	if data, _, err := cl.Get("/failover"); err != nil || string(data) != "v2" {
		t.Fatalf("Get after failover = %q, %v", data, err)
	}

	// The old leader comes back as a follower with the latest data.
	if err := c.Restart(ctx, old); err != nil {
		t.Fatalf("Restart(%d): %v", old, err)
	}
	if m, err := c.Mode(old); err != nil || m != "follower" {
		t.Fatalf("Mode(%d) after restart = %q, %v; want follower", old, m, err)
	}
	solo := connect(t, []string{c.Addr(old)}, 4*time.Second, nil)
	if _, err := solo.Sync("/failover"); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if data, _, err := solo.Get("/failover"); err != nil || string(data) != "v2" {
		t.Fatalf("Get on restarted server = %q, %v", data, err)
	}
}

func TestRestartStopStartPause(t *testing.T) {
	t.Parallel()
	var logs testutil.SyncBuffer
	c := Start(t, WithLogf(func(format string, args ...any) {
		t.Logf(format, args...)
		fmt.Fprintf(&logs, format+"\n", args...)
	}))
	ctx := t.Context()
	addr := c.Addr(0)

	cl := connect(t, c.Servers(), 4*time.Second, nil)
	if _, err := cl.Create("/persist", []byte("x"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	pid := c.PID(0)
	if err := c.Restart(ctx, 0); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if c.PID(0) == pid || c.PID(0) == 0 {
		t.Fatalf("PID after restart = %d (before %d)", c.PID(0), pid)
	}
	if c.Addr(0) != addr {
		t.Fatalf("address changed across restart: %s -> %s", addr, c.Addr(0))
	}
	// Same data directory: the node survived. The session survived too,
	// since the restart took less than the session timeout.
	testutil.EventuallyNil(t, 10*time.Second, "Get after restart", func() error {
		_, _, err := cl.Get("/persist")
		return err
	})

	if err := c.StopAll(); err != nil {
		t.Fatalf("StopAll: %v", err)
	}
	if _, err := c.Mode(0); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Mode on stopped server: err = %v, want ErrNotRunning", err)
	}
	if _, err := c.Leader(); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Leader on stopped cluster: err = %v, want ErrNoLeader", err)
	}
	if err := c.StartAll(ctx); err != nil {
		t.Fatalf("StartAll: %v", err)
	}
	testutil.EventuallyNil(t, 10*time.Second, "Get after StartAll", func() error {
		_, _, err := cl.Get("/persist")
		return err
	})

	// A paused server answers nothing; a resumed one serves again.
	if err := c.Pause(0); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if resp, err := FourLetterWord(short, addr, "srvr"); err == nil {
		t.Fatalf("paused server answered srvr: %q", resp)
	}
	if err := c.Resume(0); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if err := c.WaitReady(ctx, 0); err != nil {
		t.Fatalf("WaitReady after Resume: %v", err)
	}

	// Stop continues a paused server, so it ends on SIGTERM, not on the
	// SIGKILL that follows StopTimeout.
	if err := c.Pause(0); err != nil {
		t.Fatalf("Pause before Stop: %v", err)
	}
	if err := c.Stop(0); err != nil {
		t.Fatalf("Stop of a paused server: %v", err)
	}
	if _, err := c.Mode(0); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Mode after Stop of a paused server: err = %v, want ErrNotRunning", err)
	}
	if strings.Contains(logs.String(), "ignored SIGTERM") {
		t.Fatalf("a paused server needed SIGKILL to stop:\n%s", logs.String())
	}
}

func TestPartitionerCutAndRestore(t *testing.T) {
	t.Parallel()
	c := Start(t)
	p := NewPartitioner()
	cl := connect(t, c.Servers(), 4*time.Second, p.Dialer())
	sid := cl.SessionID()
	if _, err := cl.Create("/eph", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if n := p.OpenConns(); n != 1 {
		t.Fatalf("OpenConns = %d, want 1", n)
	}

	p.Cut()
	if !p.Partitioned() {
		t.Fatal("Partitioned() = false after Cut")
	}
	took := cl.waitState(t, zk.StateDisconnected, 2*time.Second)
	t.Logf("client saw StateDisconnected %v after Cut", took)
	if n := p.OpenConns(); n != 0 {
		t.Fatalf("OpenConns after Cut = %d, want 0", n)
	}
	// go-zookeeper waits 1 s before it redials the same single server.
	testutil.EventuallyNil(t, 5*time.Second, "client redials in vain during the cut", func() error {
		if p.FailedDials() == 0 {
			return fmt.Errorf("no failed dials yet (dials %d)", p.Dials())
		}
		return nil
	})

	p.Restore()
	took = cl.waitState(t, zk.StateHasSession, 5*time.Second)
	t.Logf("client has its session again %v after Restore (dials %d, failed %d)", took, p.Dials(), p.FailedDials())
	if cl.SessionID() != sid {
		t.Fatalf("session changed across a short cut: %x -> %x", sid, cl.SessionID())
	}
	if ok, _, err := cl.Exists("/eph"); err != nil || !ok {
		t.Fatalf("ephemeral after short cut: exists=%v err=%v", ok, err)
	}
}

func TestPartitionerBlackholeExpiresSession(t *testing.T) {
	t.Parallel()
	c := Start(t)
	p := NewPartitioner()
	const sessionTimeout = 2 * time.Second
	cl := connect(t, c.Servers(), sessionTimeout, p.Dialer())
	observer := connect(t, c.Servers(), 4*time.Second, nil)
	if _, err := cl.Create("/eph", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatalf("Create: %v", err)
	}

	p.Blackhole()
	// No RST: the client only notices through its receive timeout (2/3 of
	// the session timeout).
	took := cl.waitState(t, zk.StateDisconnected, 3*sessionTimeout)
	t.Logf("client saw StateDisconnected %v after Blackhole", took)
	if took < sessionTimeout/3 {
		t.Errorf("client noticed the blackhole after %v: too fast for a silent network", took)
	}
	// Meanwhile the server stops hearing from the client and expires it.
	testutil.EventuallyNil(t, 3*sessionTimeout, "ephemeral removed by session expiry", func() error {
		ok, _, err := observer.Exists("/eph")
		if err == nil && ok {
			err = errors.New("still exists")
		}
		return err
	})

	p.Restore()
	cl.waitState(t, zk.StateExpired, 5*time.Second)
	cl.waitState(t, zk.StateHasSession, 5*time.Second)
}

// echoServer accepts connections and echoes what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	return l.Addr().String()
}

func TestPartitionerSemantics(t *testing.T) {
	t.Parallel()
	addr := echoServer(t)
	p := NewPartitioner()
	p.CutDialDelay = 20 * time.Millisecond
	dial := p.Dialer()

	conn, err := dial("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v", buf, err)
	}

	// Cut: existing conns die, dials are refused after the delay.
	p.Cut()
	if _, err := conn.Read(buf); err == nil {
		t.Fatal("read on a cut connection succeeded")
	}
	start := time.Now()
	_, err = dial("tcp", addr, time.Second)
	if !errors.Is(err, ErrPartitioned) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial during Cut: err = %v, want ErrPartitioned and ECONNREFUSED", err)
	}
	if d := time.Since(start); d < 15*time.Millisecond || d > 500*time.Millisecond {
		t.Fatalf("dial during Cut failed after %v, want about 20ms", d)
	}

	// A dial waiting in Cut goes through when Restore comes first.
	p.CutDialDelay = 10 * time.Second
	got := make(chan error, 1)
	go func() {
		c, err := dial("tcp", addr, 5*time.Second)
		if err == nil {
			c.Close()
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	p.Restore()
	if err := <-got; err != nil {
		t.Fatalf("dial pending across Restore: %v", err)
	}

	// Blackhole: the conn stays open but is silent until its deadline;
	// dials time out.
	conn, err = dial("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	if n, err := conn.Write([]byte("lost")); err != nil || n != 4 {
		t.Fatalf("write into blackhole = %d, %v; want silent success", n, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err = conn.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read in blackhole: err = %v, want a timeout", err)
	}
	_, err = dial("tcp", addr, 100*time.Millisecond)
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, ErrPartitioned) {
		t.Fatalf("dial in blackhole: err = %v, want a partition timeout", err)
	}
	if p.OpenConns() != 1 {
		t.Fatalf("OpenConns in blackhole = %d, want 1", p.OpenConns())
	}
	p.Restore()
	if _, err := conn.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after blackhole: err = %v, want net.ErrClosed", err)
	}
	if p.OpenConns() != 0 {
		t.Fatalf("OpenConns after Restore = %d, want 0", p.OpenConns())
	}
	if p.Dials() != 5 || p.FailedDials() != 2 {
		t.Fatalf("Dials/FailedDials = %d/%d, want 5/2", p.Dials(), p.FailedDials())
	}
}

// TestPartitionerConcurrent hammers Cut/Blackhole/Restore against dials and
// I/O; run it with -race.
func TestPartitionerConcurrent(t *testing.T) {
	t.Parallel()
	addr := echoServer(t)
	p := NewPartitioner()
	p.CutDialDelay = time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 3)
			for ctx.Err() == nil {
				conn, err := p.Dial("tcp", addr, 20*time.Millisecond)
				if err != nil {
					continue
				}
				for range 5 {
					_ = conn.SetDeadline(time.Now().Add(20 * time.Millisecond))
					if _, err := conn.Write([]byte("abc")); err != nil {
						break
					}
					if _, err := io.ReadFull(conn, buf); err != nil {
						break
					}
				}
				conn.Close()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			switch i % 3 {
			case 0:
				p.Cut()
			case 1:
				p.Blackhole()
			}
			time.Sleep(2 * time.Millisecond)
			p.Restore()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	wg.Wait()
	p.Cut()
	if n := p.OpenConns(); n != 0 {
		t.Fatalf("OpenConns after final Cut = %d", n)
	}
	t.Logf("dials %d, failed %d", p.Dials(), p.FailedDials())
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	srvr := "Zookeeper version: 3.8.0-debian, built on 2024-06-16 UTC\nLatency min/avg/max: 0/0.0/0\n" +
		"Received: 1\nSent: 0\nConnections: 1\nOutstanding: 0\nZxid: 0x0\nMode: follower\nNode count: 5\n"
	if m, ok := parseMode(srvr); !ok || m != "follower" {
		t.Fatalf("parseMode = %q, %v", m, ok)
	}
	if _, ok := parseMode("This ZooKeeper instance is not currently serving requests\n"); ok {
		t.Fatal("parseMode accepted a not-serving answer")
	}
	if _, ok := parseMode(""); ok {
		t.Fatal("parseMode accepted an empty answer")
	}
}

func TestMustHaveZooKeeper(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"CI": "true"}, true},
		{map[string]string{"CI": "false"}, false},
		{map[string]string{"CI": "1"}, true},
		{map[string]string{"ZKGATE_REQUIRE_ZK": "1"}, true},
		{map[string]string{"ZKGATE_REQUIRE_ZK": "0", "CI": "yes-ish"}, false},
	} {
		if got := mustHaveZooKeeper(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("mustHaveZooKeeper(%v) = %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestWithServerConfigDoesNotAlias(t *testing.T) {
	t.Parallel()
	base := Config{ServerConfig: map[string]string{"a": "1"}}
	cfg := base
	WithServerConfig("b", "2")(&cfg)
	if _, ok := base.ServerConfig["b"]; ok {
		t.Fatal("WithServerConfig modified the caller's map")
	}
	if cfg.ServerConfig["a"] != "1" || cfg.ServerConfig["b"] != "2" {
		t.Fatalf("ServerConfig = %v", cfg.ServerConfig)
	}
}

// TestServersDieWithProcess checks the Pdeathsig contract: a helper process
// (this test binary) starts a server and is SIGKILLed without any cleanup;
// the server must die with it.
func TestServersDieWithProcess(t *testing.T) {
	t.Parallel()
	RequireZooKeeper(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "ZKTEST_HELPER_PROCESS=1", "ZKTEST_HELPER_DIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	pid := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "JAVA_PID="); ok {
			pid, _ = strconv.Atoi(v)
			break
		}
	}
	if pid == 0 {
		t.Fatalf("helper did not report a server pid (scan err %v)", sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	t.Cleanup(func() {
		if alive(pid) { // the contract is broken; do not leak the server
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if !alive(pid) {
		t.Fatalf("server pid %d not alive before the helper dies", pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	testutil.EventuallyNil(t, 5*time.Second, "server dies with its harness process", func() error {
		if alive(pid) {
			return fmt.Errorf("pid %d still alive", pid)
		}
		return nil
	})
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// Field 3, after "pid (comm)", is the state.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// TestHelperProcess is not a real test: TestServersDieWithProcess runs it in
// a child process, which starts a server, reports its pid and waits to be
// killed. It starts the server from a goroutine other than the test's, to
// show that the spawner thread, not the caller's thread, owns the child.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("ZKTEST_HELPER_PROCESS") != "1" {
		t.Skip("helper process for TestServersDieWithProcess")
	}
	done := make(chan *Cluster)
	go func() {
		c, err := New(context.Background(), Config{Dir: os.Getenv("ZKTEST_HELPER_DIR")})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		done <- c
	}()
	c := <-done
	fmt.Printf("JAVA_PID=%d\n", c.PID(0))
	time.Sleep(time.Minute) // wait to be killed
}

// TestNewReportsServerFailure checks that a server that cannot start makes
// New fail fast, with the log in the error, and leaves nothing running.
func TestNewReportsServerFailure(t *testing.T) {
	t.Parallel()
	RequireZooKeeper(t)
	dir := t.TempDir()
	start := time.Now()
	c, err := New(t.Context(), Config{
		Dir:          dir,
		ServerConfig: map[string]string{"tickTime": "not-a-number"},
		ReadyTimeout: 20 * time.Second,
	})
	if err == nil {
		c.Close()
		t.Fatal("New succeeded with a broken zoo.cfg")
	}
	if !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "not-a-number") {
		t.Fatalf("error lacks the exit and the log: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("New took %v to notice the dead server", d)
	}
	t.Logf("New failed after %v: %.300s", time.Since(start), err)
}

package zktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zkgate/zkgate/internal/procgroup"
)

const (
	defaultReadyTimeout = 30 * time.Second
	defaultStopTimeout  = 10 * time.Second
	pollInterval        = 50 * time.Millisecond
	// maxStartAttempts bounds how often New retries on fresh ports when a
	// server could not bind its ports (another process took a port between
	// our probe and the server's bind).
	maxStartAttempts = 3
	// DefaultLogTailLines is how many lines of each server log are shown
	// when a test fails.
	DefaultLogTailLines = 100
	mainClass           = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
)

var (
	// ErrNotRunning is returned (wrapped) when an operation needs a running
	// server process and there is none.
	ErrNotRunning = errors.New("zktest: server not running")
	// ErrNoLeader is returned (wrapped) by Leader when no running server
	// reports Mode: leader (or standalone).
	ErrNoLeader = errors.New("zktest: no leader")
	// ErrClosed is returned (wrapped) by operations on a closed Cluster.
	ErrClosed = errors.New("zktest: cluster closed")
)

// Config describes a cluster for [New]. The zero value of every field but
// Size has a working default.
type Config struct {
	// Size is the number of servers: 1 runs a standalone server, n > 1 an
	// ensemble of n (3 is typical). Zero means 1.
	Size int
	// Dir holds one sub-directory per server (zk1, zk2, …: zoo.cfg,
	// log4j.properties, data/, server.log, stdout.log). New removes those
	// sub-directories first, so every cluster starts empty. Close leaves Dir
	// in place. If Dir is empty, New creates a temporary directory and Close
	// removes it.
	Dir string
	// Logf receives the harness's own progress lines (starts, stops,
	// exits). Nil discards them. It is never called after Close returns.
	Logf func(format string, args ...any)
	// Java is the java binary; default $ZKGATE_JAVA or "java".
	Java string
	// Classpath is the server classpath; default [DefaultClasspath].
	Classpath string
	// JVMFlags are passed to java before the class name; default
	// ["-Xmx256m"].
	JVMFlags []string
	// ServerConfig adds zoo.cfg lines or overrides the defaults (see
	// [DefaultServerConfig]); an empty value deletes a default line. The
	// harness always sets dataDir, clientPort, clientPortAddress and the
	// server.N lines itself.
	ServerConfig map[string]string
	// ReadyTimeout bounds every wait for readiness (New, StartServer,
	// StartAll, Restart) on top of the caller's context; default 30 s.
	ReadyTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before it sends
	// SIGKILL; default 10 s.
	StopTimeout time.Duration
}

// DefaultServerConfig returns the zoo.cfg settings every server gets unless
// [Config.ServerConfig] overrides them. tickTime=500 allows sessions from
// 1 s (minSessionTimeout), good for expiry tests; maxSessionTimeout is raised
// to 60 s so that production-like timeouts (10 s and more) are not silently
// capped at the default 20 ticks.
func DefaultServerConfig() map[string]string {
	return map[string]string{
		"tickTime":                "500",
		"initLimit":               "20", // 10 s for a follower to connect and sync
		"syncLimit":               "10", // 5 s
		"minSessionTimeout":       "1000",
		"maxSessionTimeout":       "60000",
		"maxClientCnxns":          "0",
		"admin.enableServer":      "false",
		"4lw.commands.whitelist":  "ruok,srvr,mntr,stat",
		"standaloneEnabled":       "true",
		"reconfigEnabled":         "false",
		"autopurge.purgeInterval": "0",
	}
}

func (cfg Config) withDefaults() Config {
	if cfg.Size == 0 {
		cfg.Size = 1
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Java == "" {
		cfg.Java = javaBinary()
	}
	if cfg.Classpath == "" {
		cfg.Classpath = DefaultClasspath()
	}
	if cfg.JVMFlags == nil {
		cfg.JVMFlags = []string{"-Xmx256m"}
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = defaultReadyTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = defaultStopTimeout
	}
	return cfg
}

// Cluster is a set of ZooKeeper server processes on loopback. All methods
// are safe for concurrent use. Server indices are 0-based.
type Cluster struct {
	cfg     Config
	dir     string
	ownsDir bool
	servers []*server
	spawn   *procgroup.Spawner

	mu      sync.Mutex // guards server.proc and closed; held while forking
	closed  bool
	waiters sync.WaitGroup // one per process, until it is reaped
}

type server struct {
	index                                int
	dir, dataDir, cfgPath, log4jPath     string
	logPath, stdoutPath                  string
	clientPort, quorumPort, electionPort int
	proc                                 *procgroup.Proc // last launched; nil before the first launch
}

func (s *server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.clientPort)) }

// New starts a cluster as described by cfg and waits until every server
// answers srvr with a Mode (for an ensemble: a quorum has formed and every
// member has joined it). ctx (and cfg.ReadyTimeout) bound the wait. Ports are
// free loopback ports picked at random; if a server cannot bind one, New
// retries on new ports (up to 3 attempts). On error nothing is left running.
// The caller must Close the returned Cluster.
func New(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg = cfg.withDefaults()
	if cfg.Size < 1 {
		return nil, fmt.Errorf("zktest: cluster size %d < 1", cfg.Size)
	}
	if _, err := exec.LookPath(cfg.Java); err != nil {
		return nil, fmt.Errorf("zktest: java: %w", err)
	}
	c := &Cluster{cfg: cfg, dir: cfg.Dir}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "zktest-")
		if err != nil {
			return nil, fmt.Errorf("zktest: %w", err)
		}
		c.dir, c.ownsDir = d, true
	} else if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("zktest: %w", err)
	}
	c.spawn = procgroup.NewSpawner()

	began := time.Now()
	var err error
	for attempt := 1; ; attempt++ {
		if err = c.setup(); err == nil {
			if err = c.StartAll(ctx); err == nil {
				c.cfg.Logf("zktest: %d server(s) ready at %s in %v", cfg.Size, c.ConnectString(), time.Since(began).Round(time.Millisecond))
				return c, nil
			}
		}
		c.killAll()
		if attempt >= maxStartAttempts || ctx.Err() != nil || !c.portConflict() {
			break
		}
		c.cfg.Logf("zktest: port conflict, retrying on new ports: %v", err)
	}
	if cerr := c.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return nil, err
}

// setup picks ports and writes every server's directory from scratch.
func (c *Cluster) setup() error {
	n := c.cfg.Size
	perServer := 1
	if n > 1 {
		perServer = 3
	}
	ports, err := freePorts(n * perServer)
	if err != nil {
		return err
	}
	c.servers = make([]*server, n)
	for i := range n {
		d := filepath.Join(c.dir, "zk"+strconv.Itoa(i+1))
		s := &server{
			index:      i,
			dir:        d,
			dataDir:    filepath.Join(d, "data"),
			cfgPath:    filepath.Join(d, "zoo.cfg"),
			log4jPath:  filepath.Join(d, "log4j.properties"),
			logPath:    filepath.Join(d, "server.log"),
			stdoutPath: filepath.Join(d, "stdout.log"),
			clientPort: ports[i*perServer],
		}
		if n > 1 {
			s.quorumPort, s.electionPort = ports[i*perServer+1], ports[i*perServer+2]
		}
		c.servers[i] = s
	}
	for _, s := range c.servers {
		if err := c.writeServerFiles(s); err != nil {
			return fmt.Errorf("zktest: server %d: %w", s.index, err)
		}
	}
	return nil
}

func (c *Cluster) writeServerFiles(s *server) error {
	if err := os.RemoveAll(s.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(s.dataDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dataDir, "myid"), []byte(strconv.Itoa(s.index+1)+"\n"), 0o644); err != nil {
		return err
	}

	settings := DefaultServerConfig()
	for k, v := range c.cfg.ServerConfig {
		if v == "" {
			delete(settings, k)
		} else {
			settings[k] = v
		}
	}
	var b strings.Builder
	b.WriteString("# written by zkgate internal/zktest\n")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&b, "%s=%s\n", k, settings[k])
	}
	fmt.Fprintf(&b, "dataDir=%s\n", s.dataDir)
	fmt.Fprintf(&b, "clientPortAddress=127.0.0.1\n")
	fmt.Fprintf(&b, "clientPort=%d\n", s.clientPort)
	if len(c.servers) > 1 {
		for _, o := range c.servers {
			fmt.Fprintf(&b, "server.%d=127.0.0.1:%d:%d\n", o.index+1, o.quorumPort, o.electionPort)
		}
	}
	if err := os.WriteFile(s.cfgPath, []byte(b.String()), 0o644); err != nil {
		return err
	}

	log4j := fmt.Sprintf(`# written by zkgate internal/zktest
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File=%s
log4j.appender.FILE.Append=true
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%%d{ISO8601} [myid:%%X{myid}] %%-5p [%%t:%%C{1}@%%L] - %%m%%n
`, s.logPath)
	return os.WriteFile(s.log4jPath, []byte(log4j), 0o644)
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. All listeners
// are held until every port is picked so the kernel hands out distinct ones.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("zktest: picking a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// portConflict reports whether a server log says it could not bind a port.
func (c *Cluster) portConflict() bool {
	for _, s := range c.servers {
		for _, p := range []string{s.logPath, s.stdoutPath} {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte("Address already in use")) || bytes.Contains(b, []byte("BindException")) {
				return true
			}
		}
	}
	return false
}

func (c *Cluster) server(i int) (*server, error) {
	if i < 0 || i >= len(c.servers) {
		return nil, fmt.Errorf("zktest: server index %d out of range [0,%d)", i, len(c.servers))
	}
	return c.servers[i], nil
}

// running returns server i's live process, or nil.
func (c *Cluster) running(s *server) *procgroup.Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.proc == nil || s.proc.Exited() {
		return nil
	}
	return s.proc
}

// Launch starts server i's process (same ports and data directory as
// before) and returns without waiting for it to serve. It is a no-op if the
// server is already running. Use it to start a minority of an ensemble,
// which cannot become ready on its own; otherwise prefer StartServer.
func (c *Cluster) Launch(i int) error {
	s, err := c.server(i)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if s.proc != nil && !s.proc.Exited() {
		return nil
	}
	out, err := os.OpenFile(s.stdoutPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("zktest: server %d: %w", i, err)
	}
	args := slices.Concat(c.cfg.JVMFlags, []string{
		"-Dlog4j.configuration=file:" + s.log4jPath,
		"-Dzookeeper.log.dir=" + s.dir,
		"-cp", c.cfg.Classpath,
		mainClass, s.cfgPath,
	})
	cmd := exec.Command(c.cfg.Java, args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = out, out
	p, err := c.spawn.Spawn("zookeeper server "+strconv.Itoa(i), cmd, s.logPath, out)
	if err != nil {
		return fmt.Errorf("zktest: %w", err)
	}
	s.proc = p
	c.cfg.Logf("zktest: server %d started (pid %d, client port %d)", i, p.Pid(), s.clientPort)
	c.waiters.Add(1)
	go func() {
		defer c.waiters.Done()
		<-p.Done()
		c.cfg.Logf("zktest: server %d (pid %d) exited: %v", i, p.Pid(), exitString(p.Err()))
	}()
	return nil
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// StartServer starts server i (same ports and data directory) if it is not
// running and waits until it serves (see WaitReady). In an ensemble, a
// server started while no quorum is up will not become ready; use Launch
// for that, or StartAll.
func (c *Cluster) StartServer(ctx context.Context, i int) error {
	if err := c.Launch(i); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	return c.WaitReady(ctx, i)
}

// Restart stops server i gracefully (see Stop), starts it again on the same
// ports and data directory, and waits until it serves.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	if err := c.Stop(i); err != nil {
		return err
	}
	return c.StartServer(ctx, i)
}

// StartAll starts every server that is not running and waits until all of
// them serve.
func (c *Cluster) StartAll(ctx context.Context) error {
	for i := range c.servers {
		if err := c.Launch(i); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	return c.each(func(i int) error { return c.WaitReady(ctx, i) })
}

// StopAll stops every running server gracefully, in parallel.
func (c *Cluster) StopAll() error {
	return c.each(c.Stop)
}

// each runs f for every server index in parallel and joins the errors.
func (c *Cluster) each(f func(i int) error) error {
	errs := make([]error, len(c.servers))
	var wg sync.WaitGroup
	for i := range c.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stop stops server i gracefully: SIGTERM, then SIGKILL if it has not exited
// after Config.StopTimeout. It returns once the process has exited. Stopping
// a server that is not running is a no-op.
func (c *Cluster) Stop(i int) error {
	s, err := c.server(i)
	if err != nil {
		return err
	}
	p := c.running(s)
	if p == nil {
		return nil
	}
	p.Signal(syscall.SIGCONT) // in case it was paused
	if !p.Stop(context.Background(), syscall.SIGTERM, c.cfg.StopTimeout) {
		c.cfg.Logf("zktest: server %d ignored SIGTERM for %v; killed it", i, c.cfg.StopTimeout)
	}
	return nil
}

// Kill sends SIGKILL to server i (no shutdown at all, like a machine crash
// minus the lost page cache) and returns once it has exited. Killing a
// server that is not running is a no-op.
func (c *Cluster) Kill(i int) error {
	s, err := c.server(i)
	if err != nil {
		return err
	}
	if p := c.running(s); p != nil {
		p.Signal(syscall.SIGKILL)
		<-p.Done()
	}
	return nil
}

// Pause freezes server i with SIGSTOP and returns once all its threads are
// stopped: its sockets stay open (the kernel still accepts connections) but
// it answers nothing, like a long GC pause or a hung machine. Resume (or
// Stop, Kill, Close) ends the pause.
func (c *Cluster) Pause(i int) error {
	if err := c.signalRunning(i, syscall.SIGSTOP); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return waitStopped(ctx, c.PID(i))
}

// Resume continues a server frozen by Pause.
func (c *Cluster) Resume(i int) error { return c.signalRunning(i, syscall.SIGCONT) }

func (c *Cluster) signalRunning(i int, sig syscall.Signal) error {
	s, err := c.server(i)
	if err != nil {
		return err
	}
	p := c.running(s)
	if p == nil {
		return fmt.Errorf("zktest: server %d: %w", i, ErrNotRunning)
	}
	p.Signal(sig)
	return nil
}

// WaitReady waits until server i answers srvr with a "Mode:" line
// (standalone, leader, follower or observer), polling every 50 ms. It fails
// at once, with the tail of the server's log, if the process exits, and
// with ctx's error (and the last answer) when ctx is done. ruok would not
// do: it answers imok even without a quorum.
func (c *Cluster) WaitReady(ctx context.Context, i int) error {
	s, err := c.server(i)
	if err != nil {
		return err
	}
	c.mu.Lock()
	p := s.proc
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("zktest: server %d: %w", i, ErrNotRunning)
	}
	t := time.NewTimer(0)
	defer t.Stop()
	var last string
	var lastErr error
	for {
		select {
		case <-p.Done():
			return fmt.Errorf("zktest: server %d exited before it was ready (%s); log tail:\n%s",
				i, exitString(p.Err()), c.LogTail(i, 30))
		case <-ctx.Done():
			return fmt.Errorf("zktest: server %d not ready (last srvr answer %q, last error %v): %w",
				i, strings.TrimSpace(last), lastErr, ctx.Err())
		case <-t.C:
		}
		resp, err := FourLetterWord(ctx, s.addr(), "srvr")
		if _, ok := parseMode(resp); ok {
			return nil
		}
		last, lastErr = resp, err
		t.Reset(pollInterval)
	}
}

// Mode returns server i's current mode as reported by srvr: "standalone",
// "leader", "follower" or "observer". It fails if the server is not
// running, does not answer within 2 s, or is not serving (no quorum).
func (c *Cluster) Mode(i int) (string, error) {
	s, err := c.server(i)
	if err != nil {
		return "", err
	}
	if c.running(s) == nil {
		return "", fmt.Errorf("zktest: server %d: %w", i, ErrNotRunning)
	}
	resp, err := FourLetterWord(context.Background(), s.addr(), "srvr")
	if err != nil {
		return "", err
	}
	mode, ok := parseMode(resp)
	if !ok {
		return "", fmt.Errorf("zktest: server %d not serving: %q", i, strings.TrimSpace(resp))
	}
	return mode, nil
}

// Leader returns the index of the server whose srvr answer says
// "Mode: leader" (or "Mode: standalone" for a single server). It asks all
// running servers in parallel, each bounded by 2 s, and returns an error
// wrapping ErrNoLeader if none is leading right now (e.g. mid-election).
func (c *Cluster) Leader() (int, error) {
	modes := make([]string, len(c.servers))
	_ = c.each(func(i int) error {
		m, err := c.Mode(i)
		if err != nil {
			modes[i] = "?"
			return nil
		}
		modes[i] = m
		return nil
	})
	for i, m := range modes {
		if m == "leader" || m == "standalone" {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%w (modes %v)", ErrNoLeader, modes)
}

// WaitLeader polls Leader every 50 ms until a server leads or ctx is done.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	t := time.NewTimer(0)
	defer t.Stop()
	var err error
	for {
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("zktest: waiting for a leader: %w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
		var i int
		if i, err = c.Leader(); err == nil {
			return i, nil
		}
		t.Reset(pollInterval)
	}
}

// Size returns the number of servers.
func (c *Cluster) Size() int { return len(c.servers) }

// Servers returns the client addresses ("127.0.0.1:port") of all servers,
// in index order, running or not. The slice is a fresh copy.
func (c *Cluster) Servers() []string {
	out := make([]string, len(c.servers))
	for i, s := range c.servers {
		out[i] = s.addr()
	}
	return out
}

// Addr returns server i's client address. It panics if i is out of range.
func (c *Cluster) Addr(i int) string { return c.servers[i].addr() }

// ConnectString returns the comma-separated client addresses, the form
// ZooKeeper clients and zkgate's config accept.
func (c *Cluster) ConnectString() string { return strings.Join(c.Servers(), ",") }

// Dir returns the directory holding the servers' sub-directories.
func (c *Cluster) Dir() string { return c.dir }

// ServerDir returns server i's directory (zoo.cfg, data/, logs). It panics
// if i is out of range.
func (c *Cluster) ServerDir(i int) string { return c.servers[i].dir }

// LogPath returns the path of server i's log4j log. It panics if i is out of
// range.
func (c *Cluster) LogPath(i int) string { return c.servers[i].logPath }

// Running reports whether server i's process is alive (it may still be
// starting, or paused).
func (c *Cluster) Running(i int) bool {
	s, err := c.server(i)
	return err == nil && c.running(s) != nil
}

// PID returns the process id of server i, or 0 if it is not running.
func (c *Cluster) PID(i int) int {
	s, err := c.server(i)
	if err != nil {
		return 0
	}
	if p := c.running(s); p != nil {
		return p.Pid()
	}
	return 0
}

// LogTail returns the last n lines of server i's log, followed by the JVM's
// own stdout/stderr if it wrote anything (e.g. a missing class).
func (c *Cluster) LogTail(i, n int) string {
	s, err := c.server(i)
	if err != nil {
		return err.Error()
	}
	out := tailLines(s.logPath, n)
	if jvm := tailLines(s.stdoutPath, n); jvm != "" {
		out += "--- stdout/stderr ---\n" + jvm
	}
	return out
}

// LogTails logs, through logf, the last n lines of every server's log. The
// test helpers call it when a test fails.
func (c *Cluster) LogTails(logf func(format string, args ...any), n int) {
	for i, s := range c.servers {
		logf("zktest: ===== server %d (%s) log tail, %s =====\n%s", i, s.addr(), s.logPath, c.LogTail(i, n))
	}
}

// tailLines returns the last n lines of the file at path ("" if unreadable
// or empty). It reads at most the last 256 KiB.
func tailLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxRead = 256 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxRead {
		if _, err := f.Seek(st.Size()-maxRead, io.SeekStart); err != nil {
			return ""
		}
	}
	b, err := io.ReadAll(f)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// killAll SIGKILLs every running server and waits for them to exit.
func (c *Cluster) killAll() {
	_ = c.each(c.Kill)
}

// Close kills every server (SIGKILL: the data is thrown away anyway), waits
// for them to exit, stops the spawner thread and, if New created the
// directory, removes it. It is idempotent; after Close, no method starts a
// process again and Logf is not called any more.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var procs []*procgroup.Proc
	for _, s := range c.servers {
		if s.proc != nil {
			procs = append(procs, s.proc)
		}
	}
	c.mu.Unlock()

	for _, p := range procs {
		p.Signal(syscall.SIGKILL)
	}
	c.waiters.Wait()
	c.spawn.Close()
	if c.ownsDir {
		if err := os.RemoveAll(c.dir); err != nil {
			return fmt.Errorf("zktest: removing %s: %w", c.dir, err)
		}
	}
	return nil
}

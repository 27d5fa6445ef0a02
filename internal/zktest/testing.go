package zktest

import (
	"context"
	"maps"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// Option adjusts the Config used by [Start] and [StartEnsemble].
type Option func(*Config)

// WithServerConfig sets one zoo.cfg key (an empty value removes a default
// line); see [Config.ServerConfig].
func WithServerConfig(key, value string) Option {
	return func(c *Config) {
		c.ServerConfig = maps.Clone(c.ServerConfig)
		if c.ServerConfig == nil {
			c.ServerConfig = map[string]string{}
		}
		c.ServerConfig[key] = value
	}
}

// WithJVMFlags replaces the JVM flags (default ["-Xmx256m"]).
func WithJVMFlags(flags ...string) Option {
	return func(c *Config) { c.JVMFlags = flags }
}

// WithReadyTimeout sets [Config.ReadyTimeout].
func WithReadyTimeout(d time.Duration) Option {
	return func(c *Config) { c.ReadyTimeout = d }
}

// WithStopTimeout sets [Config.StopTimeout].
func WithStopTimeout(d time.Duration) Option {
	return func(c *Config) { c.StopTimeout = d }
}

// WithLogf replaces where the harness's progress lines go (default t.Logf;
// nil discards them).
func WithLogf(logf func(format string, args ...any)) Option {
	return func(c *Config) {
		if logf == nil {
			logf = func(string, ...any) {}
		}
		c.Logf = logf
	}
}

// Start runs a standalone ZooKeeper server for the test and waits until it
// serves. See [StartEnsemble].
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	return StartEnsemble(t, 1, opts...)
}

// StartEnsemble runs n ZooKeeper servers (n == 1: standalone) for the test,
// in a t.TempDir(), and waits until all of them serve. It calls
// [RequireZooKeeper] first (skip, or fail under CI), and t.Fatal if the
// cluster does not come up. At cleanup it logs the last
// [DefaultLogTailLines] lines of every server's log if the test failed, then
// closes the cluster.
func StartEnsemble(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	RequireZooKeeper(t)
	cfg := Config{Size: n, Dir: t.TempDir(), Logf: t.Logf}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("zktest: starting %d ZooKeeper server(s): %v", n, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.LogTails(t.Logf, DefaultLogTailLines)
		}
		if err := c.Close(); err != nil {
			t.Errorf("zktest: %v", err)
		}
	})
	return c
}

// RequireZooKeeper skips the test, with the reason, when ZooKeeper servers
// cannot be started here (see [Check]). If CI or ZKGATE_REQUIRE_ZK is set to
// a true value (CI=true, ZKGATE_REQUIRE_ZK=1, …) it fails the test instead:
// CI must never skip these tests silently.
func RequireZooKeeper(t testing.TB) {
	t.Helper()
	err := Check()
	if err == nil {
		return
	}
	if mustHaveZooKeeper(os.Getenv) {
		t.Fatalf("zktest: ZooKeeper is required here (CI or ZKGATE_REQUIRE_ZK is set) but cannot run: %v", err)
	}
	t.Skipf("zktest: skipping, ZooKeeper cannot run here: %v (set ZKGATE_REQUIRE_ZK=1 to fail instead)", err)
}

// mustHaveZooKeeper reports whether the environment demands real ZooKeeper.
func mustHaveZooKeeper(getenv func(string) string) bool {
	for _, k := range []string{"CI", "ZKGATE_REQUIRE_ZK"} {
		if v, err := strconv.ParseBool(getenv(k)); err == nil && v {
			return true
		}
	}
	return false
}

// Connect opens a plain go-zookeeper client to servers, closed when the
// test ends: the test's own client, which plays the services or inspects
// the nodes zkgate wrote.
func Connect(t testing.TB, servers []string, sessionTimeout time.Duration) *zk.Conn {
	t.Helper()
	conn, _, err := zk.Connect(servers, sessionTimeout, zk.WithLogInfo(false))
	if err != nil {
		t.Fatalf("connecting a test client to %v: %v", servers, err)
	}
	t.Cleanup(conn.Close)
	return conn
}

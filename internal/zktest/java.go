package zktest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// JavaDir is where Debian installs jars.
const JavaDir = "/usr/share/java"

// Jars of the Debian packaging that the server needs on its classpath, in
// order. zookeeper.jar's manifest Class-Path already names its own runtime
// dependencies (zookeeper-jute, netty-{buffer,common,handler,transport,
// transport-native-epoll}, slf4j-api, jackson, jetty, commons-cli,
// commons-io, metrics-core, snappy-java); the core ones are repeated here so
// the classpath does not silently depend on the manifest. The rest are not in
// the manifest at all:
//   - slf4j-log4j12 + log4j-1.2: without a binding the server logs nothing;
//   - netty-codec + netty-resolver: needed by netty's SSL handler (TLS ports).
var serverJars = []string{
	"zookeeper.jar",
	"zookeeper-jute.jar",
	"slf4j-api.jar",
	"slf4j-log4j12.jar",
	"log4j-1.2.jar",
	"netty-buffer.jar",
	"netty-common.jar",
	"netty-handler.jar",
	"netty-transport.jar",
	"netty-transport-native-epoll.jar",
	"netty-transport-native-unix-common.jar",
	"netty-codec.jar",
	"netty-resolver.jar",
	"commons-cli.jar",
	"commons-io.jar",
	"metrics-core.jar",
	"snappy-java.jar",
}

// requiredJars must exist for a server to start and log.
var requiredJars = []string{"zookeeper.jar", "slf4j-log4j12.jar", "log4j-1.2.jar"}

// DefaultClasspath returns the server classpath: $ZKGATE_ZK_CLASSPATH if
// set, otherwise those of the Debian jars listed above that exist under
// [JavaDir].
func DefaultClasspath() string {
	if cp := os.Getenv("ZKGATE_ZK_CLASSPATH"); cp != "" {
		return cp
	}
	var parts []string
	for _, j := range serverJars {
		p := filepath.Join(JavaDir, j)
		if _, err := os.Stat(p); err == nil {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, string(os.PathListSeparator))
}

// javaBinary returns $ZKGATE_JAVA or "java".
func javaBinary() string {
	if j := os.Getenv("ZKGATE_JAVA"); j != "" {
		return j
	}
	return "java"
}

// Check reports why ZooKeeper servers cannot be started on this machine, or
// nil if they can: java must be in PATH (or $ZKGATE_JAVA) and, unless
// $ZKGATE_ZK_CLASSPATH is set, the Debian jars must be installed.
func Check() error {
	var errs []error
	if _, err := exec.LookPath(javaBinary()); err != nil {
		errs = append(errs, fmt.Errorf("java not found (install a JRE or set ZKGATE_JAVA): %w", err))
	}
	if os.Getenv("ZKGATE_ZK_CLASSPATH") == "" {
		for _, j := range requiredJars {
			p := filepath.Join(JavaDir, j)
			if _, err := os.Stat(p); err != nil {
				errs = append(errs, fmt.Errorf("%s missing (apt-get install zookeeper, or set ZKGATE_ZK_CLASSPATH): %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Available reports whether ZooKeeper servers can be started here; see
// [Check] for the reason when they cannot.
func Available() bool { return Check() == nil }

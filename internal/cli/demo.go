package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/zkgate/zkgate/internal/demo"
	"github.com/zkgate/zkgate/internal/rollout"
)

// demoCommand is `zkgate demo [--zk host:port,...] [--quick] [--modes
// poll,watch,sleep,spring,zkgate,nginx] [--backend jvm|fast]
// [--backend-startup D] [--json FILE] [--keep]`: the same rolling
// restart of four sample backends under a fixed load in each mode, side by
// side (see package demo). The table goes to stdout, progress to stderr
// (bars on a terminal, plain lines otherwise). Exit 0 when every mode ran,
// 1 otherwise (the table is still printed when it can be).
func demoCommand(c *invocation) func(context.Context) int {
	zkServers := c.fs.String("zk", "", "ZooKeeper ensemble `host:port,...` to use (default: start a local server from Debian's zookeeper package); the demo works under its own root /zkgate-demo/<run> and removes it")
	quick := c.fs.Bool("quick", false, "finish in under 2 minutes: the sleep mode sleeps 3s instead of 20s and the poll mode re-reads every 5s instead of 30s (the table says so)")
	modes := c.fs.String("modes", "poll,watch,sleep,spring,zkgate,nginx", "modes to run, comma-separated")
	backend := c.fs.String("backend", string(demo.BackendJVM), "how the sample backends behave: jvm (like Spring Boot on Kubernetes: seconds to start, graceful shutdown on SIGTERM, back on a new port) or fast (start in milliseconds, stop at once, same address)")
	startup := c.fs.Duration("backend-startup", 0, "the jvm backends' start-up time before they register (default 3s, 2s with --quick)")
	jsonPath := c.fs.String("json", "", "also write the results as JSON to `FILE`")
	keep := c.fs.Bool("keep", false, "leave the zkgate mode's stack (or the last mode's) running after the table and print its URLs, until Ctrl-C")
	return func(ctx context.Context) int {
		ms, err := demo.ParseModes(*modes)
		if err != nil {
			return c.failf("--modes: %w", err)
		}
		be, err := demo.ParseBackend(*backend)
		if err != nil {
			return c.failf("--backend: %w", err)
		}
		if *startup < 0 {
			return c.failf("--backend-startup must not be negative")
		}
		servers, err := parseServers(*zkServers)
		if err != nil {
			return c.fail(err)
		}
		bin, err := os.Executable()
		if err != nil {
			return c.failf("finding the zkgate binary: %w", err)
		}
		_, err = demo.Run(ctx, demo.Options{
			ZooKeeper:      servers,
			Quick:          *quick,
			Modes:          ms,
			Backend:        be,
			BackendStartup: *startup,
			JSONPath:       *jsonPath,
			Keep:           *keep,
			Binary:         bin,
			Out:            c.stdout,
			Progress:       c.stderr,
			Terminal:       rollout.IsTerminal(c.stderr),
		})
		if err != nil {
			return c.fail(err)
		}
		return exitOK
	}
}

// parseServers parses --zk: comma-separated host:port.
func parseServers(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("--zk: %q is not host:port", a)
		}
		out = append(out, a)
	}
	return out, nil
}

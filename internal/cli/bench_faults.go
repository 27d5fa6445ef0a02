package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/bench"
)

// runBenchFaults is `zkgate bench faults`: the fault suite (see
// docs/benchmarks.md, "Fault suite").
func runBenchFaults(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newBenchCommand("faults", `Usage: zkgate bench faults [flags]

Starts a 3-server ZooKeeper ensemble, 2 controllers, the gateways and the
sample backends as separate processes, a steady mixed GET/POST load
through the gateways (bodies checked), and runs each fault in turn:

  leader-kill           kill -9 of the ZooKeeper leader, a drain right after
  ensemble-outage       every ZooKeeper server down for --outage
  gateway-pause         SIGSTOP of a gateway past the session timeout: a
                        drain meanwhile must not be confirmed; SIGCONT
  gateway-kill          kill -9 of a gateway, then a drain: held at most
                        session_timeout + 6s
  controller-kill       kill -9 of the controller leader mid-drain
  backend-kill          kill -9 of a backend nobody drained
  session-flap          a drained backend's session expires and it
                        registers again with the same id: the drain holds
  drained-backend-kill  drain, then kill -9: no request may fail

Prints a row per fault (requests sent and failed, recovery time, the
states verified, drains confirmed falsely: a request reached the instance
after its drain was confirmed) and every check; writes JSON. Exit 1 when a
check failed.

Flags:
`, "the run's configurations, logs and ZooKeeper's data", "zkgate binary that runs the processes (default: this executable)", stderr)
	fs := c.fs
	faults := fs.String("faults", strings.Join(bench.AllFaults, ","), "comma-separated faults to run (they run in the order above)")
	gateways := fs.Int("gateways", 3, "gateway processes (2 or 3)")
	backends := fs.Int("backends", 3, "sample backends (at least 3)")
	rate := fs.Int("rate", 200, "load in requests per second")
	sessionTimeout := fs.Duration("session-timeout", 4*time.Second, "ZooKeeper session timeout of every process")
	outage := fs.Duration("outage", 15*time.Second, "how long the whole ensemble is down in ensemble-outage")
	if code, ok := c.parse(args); !ok {
		return code
	}
	list, err := bench.ParseFaults(*faults)
	if err != nil {
		return c.fail(fmt.Errorf("--faults: %w", err))
	}
	// Zero means "default" in bench.FaultsOptions: reject it here.
	if *gateways == 0 || *backends == 0 || *rate == 0 || *sessionTimeout == 0 || *outage == 0 {
		return c.fail(errors.New("--gateways, --backends, --rate, --session-timeout and --outage must not be zero"))
	}
	run, code, ok := c.setup(args)
	if !ok {
		return code
	}
	rep, err := bench.RunFaults(ctx, bench.FaultsOptions{
		Binary: run.bin, Faults: list, Gateways: *gateways, Backends: *backends, Rate: *rate,
		SessionTimeout: *sessionTimeout, Outage: *outage, RunOptions: run.options,
	})
	return c.finish(ctx, stdout, rep, err, "some checks failed (see the table)")
}

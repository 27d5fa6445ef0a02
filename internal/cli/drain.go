package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
)

// Exit codes of drain: 0 confirmed (or marked, without --wait), 2 not
// confirmed (timed out, a gateway lost, superseded), 1 error (including
// "outcome unknown": the mark may or may not have been written).
const (
	exitOK          = 0
	exitError       = 1
	exitUnconfirmed = 2
)

// maxListedAddrs bounds the registered addresses a refused drain names.
const maxListedAddrs = 20

// clientFlags are the flags every controller client command shares.
type clientFlags struct {
	controllerFlags
	json bool
}

// register declares the flags on fs.
func (cf *clientFlags) register(fs *flag.FlagSet) {
	cf.controllerFlags.register(fs,
		"controller URL(s), comma-separated (default $ZKGATE_CONTROLLER or "+ctlclient.DefaultURL+")",
		"bearer token (default $ZKGATE_TOKEN)")
	fs.BoolVar(&cf.json, "json", false, "print the controller's JSON answer")
}

// instanceFlags declares the flags of a command about one instance:
// those of clientFlags, --service and --instance.
func (cf *clientFlags) instanceFlags(fs *flag.FlagSet) (service, instance *string) {
	cf.register(fs)
	return fs.String("service", "", "service name (required)"), fs.String("instance", "", "instance address host:port (required)")
}

// client builds the API client from the flags and environment.
func (cf *clientFlags) client() (*ctlclient.Client, error) {
	urls, token := cf.resolve()
	if urls == "" {
		urls = ctlclient.DefaultURL
	}
	return ctlclient.New(urls, ctlclient.Options{Token: token, Actor: actor()})
}

// actor names who runs the command, for marks and the audit trail.
func actor() string {
	if a := os.Getenv("ZKGATE_ACTOR"); a != "" {
		return a
	}
	user := os.Getenv("USER")
	host, _ := os.Hostname()
	switch {
	case user != "" && host != "":
		return user + "@" + host
	case host != "":
		return host
	}
	return user
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// drainCommand is `zkgate drain --service S --instance host:port --reason R
// [--ttl D] [--wait=true] [--timeout 2m] [--min-wait D] [--deploy-id ID]
// [--allow-absent] [--json] [--controller URL] [--token T]`. It writes the
// mark for the address as registered (however --instance spells it) and,
// with --wait (the default), returns when the controller confirms the
// drain. An address no registration of the service has is refused (exit 1,
// one line naming the registered addresses) unless --allow-absent.
// Exit 0 drained (or marked, with --wait=false), 2 not confirmed (timed
// out, a gateway lost, the mark superseded), 1 error; an error whose
// outcome is unknown (the mark may or may not be written) is one line
// starting "zkgate drain: outcome unknown:".
func drainCommand(c *invocation) func(context.Context) int {
	var cf clientFlags
	service, instance := cf.instanceFlags(c.fs)
	reason := c.fs.String("reason", "", "why: recorded in the mark and the audit trail (required)")
	ttl := c.fs.Duration("ttl", 0, "mark lifetime (default: the controller's controller.mark_ttl)")
	wait := c.fs.Bool("wait", true, "wait until every live gateway has applied the mark and has nothing in flight")
	timeout := c.fs.Duration("timeout", ctlclient.DefaultDrainTimeout, "how long to wait for confirmation")
	minWait := c.fs.Duration("min-wait", 0, "with --wait, do not return before this long even when confirmed earlier")
	deployID := c.fs.String("deploy-id", "", "deploy id recorded in the mark and the audit trail")
	allowAbsent := c.fs.Bool("allow-absent", false, "write the mark even when no registration of the service has the address (a drain before the instance registers)")
	return func(ctx context.Context) int {
		if err := c.required([2]string{"--service", *service}, [2]string{"--instance", *instance}, [2]string{"--reason", *reason}); err != nil {
			return c.fail(err)
		}
		if *ttl < 0 || *timeout < 0 || *minWait < 0 {
			return c.fail(errors.New("--ttl, --timeout and --min-wait must not be negative"))
		}
		client, err := cf.client()
		if err != nil {
			return c.fail(err)
		}
		req := ctlclient.DrainRequest{Reason: *reason, Wait: *wait, DeployID: *deployID, AllowAbsent: *allowAbsent}
		if *ttl > 0 {
			req.TTL = ttl.String()
		}
		if *wait {
			req.Timeout = timeout.String()
			if *minWait > 0 {
				req.MinWait = minWait.String()
			}
		}
		// Allow the controller the whole wait plus a margin to answer.
		cctx, cancel := context.WithTimeout(ctx, *timeout+30*time.Second)
		defer cancel()
		resp, err := client.Drain(cctx, *service, *instance, req)
		if ctlclient.IsOutcomeUnknown(err) {
			return c.outcomeUnknown(fmt.Sprintf("%s/%s may or may not be marked, and the mark may still appear later", *service, *instance), err)
		}
		if reg, ok := ctlclient.IsNotRegistered(err); ok {
			listed := "it has no registered instance"
			switch {
			case len(reg) > maxListedAddrs:
				listed = fmt.Sprintf("registered: %s and %d more", strings.Join(reg[:maxListedAddrs], ", "), len(reg)-maxListedAddrs)
			case len(reg) > 0:
				listed = "registered: " + strings.Join(reg, ", ")
			}
			fmt.Fprintf(c.stderr, "zkgate drain: %s is not registered in service %q (%s); nothing written (--allow-absent marks it anyway)\n",
				*instance, *service, listed)
			return exitError
		}
		if err != nil {
			return c.fail(err)
		}
		if cf.json {
			printJSON(c.stdout, resp)
		} else if resp.Warning != "" {
			fmt.Fprintf(c.stderr, "zkgate drain: warning: %s\n", resp.Warning)
		}
		target := resp.Service + "/" + resp.Addr
		switch resp.Status {
		case ctlclient.StatusMarked:
			if !cf.json {
				fmt.Fprintf(c.stdout, "marked %s for draining (not waiting for confirmation)\n", target)
			}
			return exitOK
		case ctlclient.StatusDrained:
			if !cf.json {
				fmt.Fprintf(c.stdout, "drained %s in %s (%s)\n", target, fmtMs(resp.ElapsedMs), drainedGateways(resp.Gateways))
			}
			return exitOK
		default:
			if !cf.json {
				fmt.Fprintf(c.stderr, "zkgate drain: %s not confirmed after %s (%s): %s\n", target, fmtMs(resp.ElapsedMs), resp.Status, resp.Message)
			}
			return exitUnconfirmed
		}

	}
}

// undrainCommand is `zkgate undrain --service S --instance host:port [--reason
// R] [--json] [--controller URL] [--token T]`: it removes the mark, and the
// gateways send the instance traffic again. Undraining an instance that has
// no mark succeeds. Exit 0 success, 1 error.
func undrainCommand(c *invocation) func(context.Context) int {
	var cf clientFlags
	service, instance := cf.instanceFlags(c.fs)
	reason := c.fs.String("reason", "", "why: recorded in the audit trail")
	timeout := c.fs.Duration("timeout", 30*time.Second, "how long to wait for the controller")
	return func(ctx context.Context) int {
		if strings.TrimSpace(*service) == "" || strings.TrimSpace(*instance) == "" {
			return c.fail(errors.New("--service and --instance are required (see zkgate undrain -h)"))
		}
		client, err := cf.client()
		if err != nil {
			return c.fail(err)
		}
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		resp, err := client.Undrain(cctx, *service, *instance, *reason)
		if ctlclient.IsOutcomeUnknown(err) {
			return c.outcomeUnknown(fmt.Sprintf("the mark of %s/%s may or may not be removed, and may still disappear later", *service, *instance), err)
		}
		if err != nil {
			return c.fail(err)
		}
		switch {
		case cf.json:
			printJSON(c.stdout, resp)
		case resp.Removed:
			fmt.Fprintf(c.stdout, "undrained %s/%s\n", resp.Service, resp.Addr)
		default:
			fmt.Fprintf(c.stdout, "%s/%s was not drained\n", resp.Service, resp.Addr)
		}
		return exitOK
	}
}

// outcomeUnknown prints the one line of a call to the controller whose
// outcome is unknown (what may or may not have happened, and what to do)
// and returns exit code 1.
func (c *invocation) outcomeUnknown(what string, err error) int {
	fmt.Fprintf(c.stderr, "zkgate %s: outcome unknown: %s; run the %s again (it is idempotent) or look with zkgate status (%v)\n", c.name, what, c.name, err)
	return exitError
}

// drainedGateways says how many gateways confirmed a drain, naming those
// not waited for (gone: shut down, crashed, or departed long ago), which
// are not counted.
func drainedGateways(gws []ctlclient.GatewayDrain) string {
	var n int
	var gone []string
	for _, g := range gws {
		if g.State == ctlclient.GatewayGone {
			gone = append(gone, g.ID)
			continue
		}
		n++
	}
	s := plural(n, "gateway")
	if len(gone) > 0 {
		s += "; gone, not waited for: " + strings.Join(gone, ", ")
	}
	return s
}

func fmtMs(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	if d < time.Second {
		return fmt.Sprintf("%dms", ms)
	}
	return d.Round(10 * time.Millisecond).String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

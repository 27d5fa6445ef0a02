package cli

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/rollout"
)

// rolloutCommand is `zkgate rollout`, a rolling restart that loses no request:
//
//	zkgate rollout --service S --exec 'CMD' [--config FILE] [--parallel 1]
//	    [--dry-run] [--drain-timeout 2m] [--register-timeout 2m]
//	    [--serve-timeout 1m] [--reason R] [--deploy-id ID]
//	    [--controller URL --token T]
//
// For each registered instance of S in address order (--parallel at a
// time) it drains the instance through the controller and waits for the
// confirmed drain, runs `sh -c CMD` with {addr}, {host} and {port}
// replaced (and ZKGATE_ADDR, ZKGATE_HOST, ZKGATE_PORT in the environment),
// waits until the address registers again and every live gateway routes to
// it (as the gateways acknowledge through presence), then goes on with the
// next; see package rollout for what a failure leaves behind. It stops at
// the first failure; the instances not reached keep serving. --dry-run
// prints the plan and changes nothing.
//
// The controller comes from --controller, else $ZKGATE_CONTROLLER, else
// the configuration file's controller.listen (when --config is given),
// else http://127.0.0.1:7070; the token from --token, else $ZKGATE_TOKEN,
// else the file's first controller.tokens entry. Progress goes to stderr
// (a bar on a terminal), the command's output to stdout and stderr, the
// final table (or the dry run's plan) to stdout. Exit 0 when every instance is done, 1 otherwise
// (one line on stderr says why).
func rolloutCommand(c *invocation) func(context.Context) int {
	cfgPath := c.fs.String("config", "", "configuration file: its controller section supplies the controller address and token when not given otherwise")
	var ctl controllerFlags
	ctl.register(c.fs,
		"controller URL(s), comma-separated (default $ZKGATE_CONTROLLER, then the config's controller.listen, then "+ctlclient.DefaultURL+")",
		"bearer token (default $ZKGATE_TOKEN, then the config's first controller token)")
	service := c.fs.String("service", "", "service to roll (required)")
	execCmd := c.fs.String("exec", "", "command restarting one instance, run with sh -c; {addr}, {host} and {port} are replaced (required)")
	parallel := c.fs.Int("parallel", 1, "instances restarted at a time")
	dryRun := c.fs.Bool("dry-run", false, "print the plan and change nothing")
	drainTimeout := c.fs.Duration("drain-timeout", rollout.DefaultDrainTimeout, "bound of each confirmed drain")
	registerTimeout := c.fs.Duration("register-timeout", rollout.DefaultRegisterTimeout, "bound of the wait for each new registration, from the end of the command")
	serveTimeout := c.fs.Duration("serve-timeout", rollout.DefaultServeTimeout, "bound of the wait for every gateway to route to each restarted instance")
	reason := c.fs.String("reason", rollout.DefaultReason, "reason recorded in the marks and the audit trail")
	deployID := c.fs.String("deploy-id", "", "deploy id recorded in the marks and the audit trail")
	logLevel := c.fs.String("log-level", "error", "debug, info, warn or error (the progress is shown either way)")
	return func(ctx context.Context) int {
		if err := c.required([2]string{"--service", *service}, [2]string{"--exec", *execCmd}); err != nil {
			return c.fail(err)
		}
		if *parallel < 1 {
			return c.fail(errors.New("--parallel must be at least 1"))
		}
		if *drainTimeout <= 0 || *registerTimeout <= 0 || *serveTimeout <= 0 {
			return c.fail(errors.New("--drain-timeout, --register-timeout and --serve-timeout must be positive"))
		}
		log, err := c.logger(*logLevel)
		if err != nil {
			return c.fail(err)
		}
		client, err := rolloutClient(*cfgPath, ctl)
		if err != nil {
			return c.fail(err)
		}
		tmpl := *execCmd
		progress := c.stderr
		if *dryRun {
			progress = c.stdout // the plan is the output
		}
		res, err := rollout.Run(ctx, rollout.Options{
			Client:  client,
			Service: *service,
			Restart: rollout.ExecRestarter(tmpl, c.stdout, c.stderr),
			Explain: func(t rollout.Target) string {
				cmdline, err := rollout.ExecCommand(tmpl, t)
				if err != nil {
					return "cannot run: " + err.Error()
				}
				return "sh -c " + shellQuote(cmdline)
			},
			Parallel: *parallel, DryRun: *dryRun,
			DrainTimeout: *drainTimeout, RegisterTimeout: *registerTimeout, ServeTimeout: *serveTimeout,
			Reason: *reason, DeployID: *deployID,
			Progress: progress, Logger: log,
		})
		if res != nil && !*dryRun {
			res.WriteTable(c.stdout)
		}
		if err != nil {
			return c.fail(err)
		}
		return exitOK
	}
}

// rolloutClient builds the API client: flags, then environment, then the
// configuration file.
func rolloutClient(cfgPath string, ctl controllerFlags) (*ctlclient.Client, error) {
	urls, token := ctl.resolve()
	if cfgPath != "" && (urls == "" || token == "") {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return nil, err
		}
		if urls == "" && cfg.Controller.Listen != "" {
			urls = "http://" + dialable(cfg.Controller.Listen)
		}
		if token == "" && len(cfg.Controller.Tokens) > 0 {
			token = cfg.Controller.Tokens[0]
		}
	}
	if urls == "" {
		urls = ctlclient.DefaultURL
	}
	return ctlclient.New(urls, ctlclient.Options{Token: token, Actor: actor()})
}

// dialable turns a listen address into one to connect to (an unspecified
// host means this machine).
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// shellQuote quotes s for display as one sh word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/version"
)

// controllerShutdownTimeout bounds a controller's graceful shutdown (calls
// in progress, waiting drains included, are cut off after it).
const controllerShutdownTimeout = 10 * time.Second

// RunController is `zkgate controller --config FILE [--id ID]`: it serves
// the controller API and, while elected leader, runs the background jobs,
// until ctx ends (SIGTERM/SIGINT) or a component fails.
func RunController(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "zkgate.yaml", "configuration file")
	id := fs.String("id", "", "replica id in the leader election and audit trail (default <hostname>-<listen>)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		return fail(stderr, "controller", fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return fail(stderr, "controller", err)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fail(stderr, "controller", err)
	}
	c, err := controller.Start(ctx, cfg, controller.Options{Logger: log, ID: *id, Version: version.Version})
	if err != nil {
		return fail(stderr, "controller", err)
	}
	code := 0
	select {
	case <-ctx.Done():
	case <-c.Done():
		code = fail(stderr, "controller", c.Err())
	}
	sctx, cancel := context.WithTimeout(context.Background(), controllerShutdownTimeout)
	defer cancel()
	if err := c.Shutdown(sctx); err != nil && code == 0 {
		return fail(stderr, "controller", err)
	}
	return code
}

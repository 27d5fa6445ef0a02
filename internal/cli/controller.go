package cli

import (
	"context"
	"time"

	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/version"
)

// controllerShutdownTimeout bounds a controller's graceful shutdown (calls
// in progress, waiting drains included, are cut off after it).
const controllerShutdownTimeout = 10 * time.Second

// controllerCommand is `zkgate controller --config FILE [--id ID]`: it
// serves the controller API and, while elected leader, runs the background
// jobs, until ctx ends (SIGTERM/SIGINT) or a component fails.
func controllerCommand(c *invocation) func(context.Context) int {
	cfgPath := c.configFlag("configuration file")
	id := c.fs.String("id", "", "replica id in the leader election and audit trail (default <hostname>-<listen>)")
	logLevel := c.logFlag()
	return func(ctx context.Context) int {
		log, cfg, err := c.loggerAndConfig(*logLevel, *cfgPath)
		if err != nil {
			return c.fail(err)
		}
		ctl, err := controller.Start(ctx, cfg, controller.Options{Logger: log, ID: *id, Version: version.Version})
		if err != nil {
			return c.fail(err)
		}
		code := exitOK
		select {
		case <-ctx.Done():
		case <-ctl.Done():
			code = c.fail(ctl.Err())
		}
		if err := stopWithin(controllerShutdownTimeout, ctl.Shutdown); err != nil && code == exitOK {
			return c.fail(err)
		}
		return code
	}
}

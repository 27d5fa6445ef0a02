package cli

import (
	"context"
	"io"

	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/version"
)

// RunGateway runs `zkgate gateway` (see gatewayCommand); `zkgate bench
// gateway` runs it behind its profiling endpoint.
func RunGateway(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return command{setup: gatewayCommand}.runner("gateway")(ctx, args, stdout, stderr)
}

// gatewayCommand is `zkgate gateway --config FILE`: it serves until ctx
// ends (SIGTERM/SIGINT), then shuts down gracefully within
// gateway.shutdown_timeout.
func gatewayCommand(c *invocation) func(context.Context) int {
	cfgPath := c.configFlag("configuration file")
	logLevel := c.logFlag()
	return func(ctx context.Context) int {
		log, cfg, err := c.loggerAndConfig(*logLevel, *cfgPath)
		if err != nil {
			return c.fail(err)
		}
		d, err := gatewayd.Start(ctx, cfg, gatewayd.Options{Logger: log, Version: version.Version})
		if err != nil {
			return c.fail(err)
		}
		<-ctx.Done()
		if err := stopWithin(cfg.Gateway.ShutdownTimeout, d.Shutdown); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/samplebackend"
)

// sampleBackendCommand is `zkgate sample-backend --config FILE --service S
// --listen ADDR [--latency 5ms] [--name N] [--address host:port]
// [--metadata k=v]... [--no-register]`: a small HTTP service for demos and
// tests (see package samplebackend) that registers itself and, when ctx
// ends (SIGTERM or SIGINT), stops at once without grace: requests in flight
// are cut, and the registration disappears only with its ZooKeeper session.
// With --graceful it stops as Spring Boot's graceful shutdown does instead
// (stop accepting, finish the requests in flight within
// --shutdown-timeout, then deregister); --startup D waits D before
// listening and registering, as a JVM service takes seconds to start.
// It prints the address it serves on to stdout. Exit 0 after a stop, 1
// when it cannot start.
func sampleBackendCommand(c *invocation) func(context.Context) int {
	cfgPath := c.configFlag("configuration file (zookeeper and registry sections)")
	service := c.fs.String("service", "", "service name to register under (required unless --no-register)")
	listen := c.fs.String("listen", "127.0.0.1:0", "address to listen on")
	address := c.fs.String("address", "", "address to register (default: the listen address; required when listening on all interfaces)")
	latency := c.fs.Duration("latency", 0, "latency added to every request (a request's ?latency= overrides it)")
	name := c.fs.String("name", "", "instance name in answers and the "+samplebackend.HeaderInstance+" header (default: the address)")
	metadata := metadataFlag{}
	c.fs.Var(metadata, "metadata", "registration metadata `key=value` (repeatable)")
	noRegister := c.fs.Bool("no-register", false, "do not register (for use behind zkgate register)")
	startTimeout := c.fs.Duration("start-timeout", time.Minute, "how long to wait for ZooKeeper at start")
	startup := c.fs.Duration("startup", 0, "wait this long before listening and registering (a JVM's start-up)")
	graceful := c.fs.Bool("graceful", false, "on SIGTERM: stop accepting, finish the requests in flight, then deregister (Spring Boot's graceful shutdown)")
	shutdownTimeout := c.fs.Duration("shutdown-timeout", 30*time.Second, "with --graceful: how long the requests in flight may take")
	logLevel := c.logFlag()
	return func(ctx context.Context) int {
		log, err := c.logger(*logLevel)
		if err != nil {
			return c.fail(err)
		}
		if *latency < 0 || *startup < 0 || *startTimeout <= 0 || *shutdownTimeout <= 0 {
			return c.fail(errors.New("--latency and --startup must not be negative, --start-timeout and --shutdown-timeout must be positive"))
		}
		opts := samplebackend.Options{Listen: *listen, Name: *name, Latency: *latency, StartupDelay: *startup, Logger: log}
		if !*noRegister {
			if *service == "" {
				return c.fail(errors.New("missing --service (see zkgate sample-backend -h)"))
			}
			cfg, err := config.Load(*cfgPath)
			if err != nil {
				return c.fail(err)
			}
			ro, err := registerOptions(cfg, log)
			if err != nil {
				return c.fail(err)
			}
			ro.Service, ro.Address, ro.Metadata = *service, *address, metadata
			if *name != "" {
				ro.Metadata["sample_backend"] = *name
			}
			opts.Register = &ro
		}
		sctx, cancel := context.WithTimeout(ctx, *startTimeout+*startup)
		b, err := samplebackend.Start(sctx, opts)
		cancel()
		if err != nil {
			return c.startFailed(ctx, err)
		}
		// The address on stdout, for scripts that listen on port 0.
		fmt.Fprintln(c.stdout, b.Addr())
		<-ctx.Done()
		if !*graceful {
			b.Kill()
			return exitOK
		}
		if err := stopWithin(*shutdownTimeout, b.Shutdown); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
}

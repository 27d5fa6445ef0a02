package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/samplebackend"
)

// RunSampleBackend is `zkgate sample-backend --config FILE --service S
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
func RunSampleBackend(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sample-backend", flag.ContinueOnError)
	cfgPath := fs.String("config", "zkgate.yaml", "configuration file (zookeeper and registry sections)")
	service := fs.String("service", "", "service name to register under (required unless --no-register)")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	address := fs.String("address", "", "address to register (default: the listen address; required when listening on all interfaces)")
	latency := fs.Duration("latency", 0, "latency added to every request (a request's ?latency= overrides it)")
	name := fs.String("name", "", "instance name in answers and the "+samplebackend.HeaderInstance+" header (default: the address)")
	metadata := metadataFlag{}
	fs.Var(metadata, "metadata", "registration metadata `key=value` (repeatable)")
	noRegister := fs.Bool("no-register", false, "do not register (for use behind zkgate register)")
	startTimeout := fs.Duration("start-timeout", time.Minute, "how long to wait for ZooKeeper at start")
	startup := fs.Duration("startup", 0, "wait this long before listening and registering (a JVM's start-up)")
	graceful := fs.Bool("graceful", false, "on SIGTERM: stop accepting, finish the requests in flight, then deregister (Spring Boot's graceful shutdown)")
	shutdownTimeout := fs.Duration("shutdown-timeout", 30*time.Second, "with --graceful: how long the requests in flight may take")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if code, done := parseFlags(fs, args, stderr); done {
		return code
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return fail(stderr, "sample-backend", err)
	}
	if *latency < 0 || *startup < 0 || *startTimeout <= 0 || *shutdownTimeout <= 0 {
		return fail(stderr, "sample-backend", errors.New("--latency and --startup must not be negative, --start-timeout and --shutdown-timeout must be positive"))
	}
	opts := samplebackend.Options{Listen: *listen, Name: *name, Latency: *latency, StartupDelay: *startup, Logger: log}
	if !*noRegister {
		if *service == "" {
			return fail(stderr, "sample-backend", errors.New("missing --service (see zkgate sample-backend -h)"))
		}
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return fail(stderr, "sample-backend", err)
		}
		ro, err := registerOptions(cfg, log)
		if err != nil {
			return fail(stderr, "sample-backend", err)
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
		if ctx.Err() != nil {
			return exitOK
		}
		return fail(stderr, "sample-backend", err)
	}
	// The address on stdout, for scripts that listen on port 0.
	fmt.Fprintln(stdout, b.Addr())
	<-ctx.Done()
	if !*graceful {
		b.Kill()
		return exitOK
	}
	dctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	if err := b.Shutdown(dctx); err != nil {
		return fail(stderr, "sample-backend", err)
	}
	return exitOK
}

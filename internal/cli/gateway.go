package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/version"
)

// RunGateway is `zkgate gateway --config FILE`: it serves until ctx ends
// (SIGTERM/SIGINT), then shuts down gracefully within
// gateway.shutdown_timeout.
func RunGateway(ctx context.Context, args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "zkgate.yaml", "configuration file")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return fail(stderr, "gateway", err)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fail(stderr, "gateway", err)
	}
	d, err := gatewayd.Start(ctx, cfg, gatewayd.Options{Logger: log, Version: version.Version})
	if err != nil {
		return fail(stderr, "gateway", err)
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Gateway.ShutdownTimeout)
	defer cancel()
	if err := d.Shutdown(sctx); err != nil {
		return fail(stderr, "gateway", err)
	}
	return 0
}

// newLogger returns a text logger at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// fail prints one readable line and returns exit code 1.
func fail(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "zkgate %s: %v\n", cmd, err)
	return 1
}

// flagExit maps a flag parsing error to an exit code (help is not an error).
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 1
}

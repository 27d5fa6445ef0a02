package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/config"
)

// command declares one subcommand of Main's table.
type command struct {
	summary string
	// raw commands draw their own progress on the terminal (carriage
	// returns, erase-line sequences): Main does not escape their output.
	raw bool
	// setup declares the command's flags on c.fs and returns its body,
	// which runs once the arguments are parsed into them. A command whose
	// setup is nil parses its own arguments in run (bench dispatches to
	// its benchmarks).
	setup func(c *invocation) func(ctx context.Context) int
	run   Command
}

// invocation is one run of a declared subcommand: its flag set, where its
// output goes, and the name its error lines start with.
type invocation struct {
	name           string
	fs             *flag.FlagSet
	stdout, stderr io.Writer
}

// runner returns the Command that runs c under name.
func (c command) runner(name string) Command {
	if c.setup == nil {
		return c.run
	}
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		inv := &invocation{name: name, fs: flag.NewFlagSet(name, flag.ContinueOnError), stdout: stdout, stderr: stderr}
		body := c.setup(inv)
		if code, done := parseFlags(inv.fs, args, stderr); done {
			return code
		}
		return body(ctx)
	}
}

// fail prints err as the command's one error line and returns exit code 1.
func (c *invocation) fail(err error) int {
	return fail(c.stderr, c.name, err)
}

// failf is fail with a formatted error.
func (c *invocation) failf(format string, a ...any) int {
	return c.fail(fmt.Errorf(format, a...))
}

// startFailed is the exit of a command whose start failed with err: 0
// when ctx ended meanwhile (stopped while starting: nothing started),
// else 1 and err's line.
func (c *invocation) startFailed(ctx context.Context, err error) int {
	if ctx.Err() != nil {
		return exitOK
	}
	return c.fail(err)
}

// required returns an error naming the flags (name, value pairs) that are
// empty, or nil when none is.
func (c *invocation) required(flags ...[2]string) error {
	var missing []string
	for _, f := range flags {
		if strings.TrimSpace(f[1]) == "" {
			missing = append(missing, f[0])
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("missing %s (see zkgate %s -h)", strings.Join(missing, ", "), c.name)
}

// configFlag declares --config, default zkgate.yaml.
func (c *invocation) configFlag(usage string) *string {
	return c.fs.String("config", "zkgate.yaml", usage)
}

// logFlag declares --log-level, default info; logger turns its value
// into a logger.
func (c *invocation) logFlag() *string {
	return c.fs.String("log-level", "info", "debug, info, warn or error")
}

// logger returns a text logger on the command's stderr at level.
func (c *invocation) logger(level string) (*slog.Logger, error) {
	return newLogger(c.stderr, level)
}

// loggerAndConfig returns the logger at level and the configuration file
// at path, the start of every long-running command.
func (c *invocation) loggerAndConfig(level, path string) (*slog.Logger, *config.Config, error) {
	log, err := c.logger(level)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	return log, cfg, nil
}

// controllerFlags are --controller and --token: where the controller API
// is and the bearer token for it.
type controllerFlags struct {
	urls, token string
}

func (f *controllerFlags) register(fs *flag.FlagSet, urlsUsage, tokenUsage string) {
	fs.StringVar(&f.urls, "controller", "", urlsUsage)
	fs.StringVar(&f.token, "token", "", tokenUsage)
}

// resolve returns the flags' values, each falling back to the environment
// ($ZKGATE_CONTROLLER, $ZKGATE_TOKEN); "" where neither is set.
func (f controllerFlags) resolve() (urls, token string) {
	urls, token = f.urls, f.token
	if urls == "" {
		urls = os.Getenv("ZKGATE_CONTROLLER")
	}
	if token == "" {
		token = os.Getenv("ZKGATE_TOKEN")
	}
	return urls, token
}

// stopWithin calls stop with a context bounded by d but not by the
// command's own, which has ended already (SIGTERM): a graceful stop still
// gets its time.
func stopWithin(d time.Duration, stop func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return stop(ctx)
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

// parseFlags parses args into fs with errors as one line on stderr. done
// is true when the command must return code at once (help or an error).
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, done bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stderr)
		fmt.Fprintf(stderr, "Usage of zkgate %s:\n", fs.Name())
		fs.PrintDefaults()
		return exitOK, true
	}
	if err != nil {
		fmt.Fprintf(stderr, "zkgate %s: %v (see zkgate %s -h)\n", fs.Name(), err, fs.Name())
		return exitError, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "zkgate %s: unexpected argument %q (see zkgate %s -h)\n", fs.Name(), fs.Arg(0), fs.Name())
		return exitError, true
	}
	return 0, false
}

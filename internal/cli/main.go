// Package cli implements zkgate's subcommands. Each one is declared once
// in Main's table (command: its flags and its body), runs as a function of
// the same shape (Command), so main stays a dispatcher and every command
// can be run from tests.
package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/zkgate/zkgate/internal/version"
)

// Command runs one subcommand with its arguments and returns the exit
// code: 0 success, 1 error, 2 a command-specific "not done" (e.g. a drain
// that timed out). Errors are one readable line on stderr.
type Command func(ctx context.Context, args []string, stdout, stderr io.Writer) int

func commands() map[string]command {
	return map[string]command{
		"bench":          {run: RunBench, summary: "run a benchmark: proxy (vs nginx), propagation (drains to gateways), registry (100k instances); see docs/benchmarks.md"},
		"controller":     {setup: controllerCommand, summary: "run the controller (API, drain marks, leader jobs)"},
		"demo":           {setup: demoCommand, raw: true, summary: "the main job: a rolling restart of 4 backends under load in each mode (poll, watch, sleep, spring, zkgate, nginx), side by side"},
		"drain":          {setup: drainCommand, summary: "drain an instance: every gateway stops sending it new requests; waits until confirmed"},
		"undrain":        {setup: undrainCommand, summary: "put a drained instance back in rotation"},
		"status":         {setup: statusCommand, summary: "show services, instances and their states"},
		"gateway":        {run: RunGateway, summary: "run the gateway (reverse proxy following ZooKeeper)"},
		"register":       {setup: registerCommand, summary: "register an instance in ZooKeeper (Curator format); drain and deregister on SIGTERM"},
		"rollout":        {setup: rolloutCommand, raw: true, summary: "restart every instance of a service, one at a time, without losing a request"},
		"sample-backend": {setup: sampleBackendCommand, summary: "a sample HTTP service that registers itself and stops without grace"},
		"version":        {run: runVersion, summary: "print the version"},
	}
}

// Main dispatches to the subcommand named by args[0].
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 {
		// No command is an error: the usage goes to stderr, so a script
		// that captures stdout gets nothing it could mistake for output.
		usage(stderr, cmds)
		return 1
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, cmds)
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "zkgate: unknown command %q (see zkgate help)\n", args[0])
		return 1
	}
	run := c.runner(args[0])
	if c.raw {
		// These draw progress on the terminal themselves; what they print
		// from outside is registry addresses, which the registry parser
		// refuses with control characters.
		return run(ctx, args[1:], stdout, stderr)
	}
	// Whatever the other commands print, control characters are escaped.
	out, errw := newEscapeWriter(stdout), newEscapeWriter(stderr)
	defer out.Flush()
	defer errw.Flush()
	return run(ctx, args[1:], out, errw)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("zkgate — a gateway and control plane that know before an instance goes offline.\n\nUsage: zkgate COMMAND [flags]\n\nCommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-15s %s\n", n, cmds[n].summary)
	}
	b.WriteString("\nRun zkgate COMMAND -h for a command's flags.\n")
	io.WriteString(w, b.String())
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, "zkgate", version.Version)
	return 0
}

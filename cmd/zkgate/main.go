// Command zkgate is the gateway, the control plane and their tools: see
// `zkgate help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/zkgate/zkgate/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

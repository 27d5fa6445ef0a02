//go:build !linux

package zktest

import (
	"context"
	"syscall"
	"time"
)

// sysProcAttr puts the server in its own process group. Outside Linux there
// is no parent-death signal: a server can outlive a Go process that dies
// without running Close.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// waitStopped cannot observe thread states here; it gives SIGSTOP a moment.
func waitStopped(ctx context.Context, pid int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(50 * time.Millisecond):
		return nil
	}
}

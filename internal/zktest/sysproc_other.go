//go:build !linux

package zktest

import (
	"context"
	"time"
)

// waitStopped cannot observe thread states here; it gives SIGSTOP a moment.
func waitStopped(ctx context.Context, pid int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(50 * time.Millisecond):
		return nil
	}
}

package component

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends: then it returns ctx's error. It is the
// pause of a component's retry or poll loop.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

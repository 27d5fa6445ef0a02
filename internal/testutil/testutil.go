// Package testutil holds small helpers that tests of several packages
// share. Only tests import it.
package testutil

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent use: the output of a
// child process or a logger written from several goroutines while the
// test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Eventually polls cond until it holds, failing the test with "timed out
// waiting for what" once timeout has passed. It polls quickly at first
// (2 ms) and backs off to every 20 ms, so a cond that does I/O is not
// hammered. Tests assert behaviour, not timing: give generous timeouts.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// EventuallyNil polls f like Eventually until it returns nil, failing the
// test with f's last error once timeout has passed.
func EventuallyNil(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	var err error
	if !poll(timeout, func() bool { err = f(); return err == nil }) {
		t.Fatalf("timed out waiting for %s: %v", what, err)
	}
}

// Receive waits for a value from ch and returns it, failing the test with
// "timed out waiting for what" once timeout has passed.
func Receive[T any](t testing.TB, timeout time.Duration, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// poll calls cond until it holds (true) or timeout has passed (false).
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := 2 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 20*time.Millisecond)
	}
	return true
}

// StopAtCleanup has shutdown called when the test ends, with a context
// that ends after timeout; its error is ignored, the test being over.
func StopAtCleanup(t testing.TB, timeout time.Duration, shutdown func(context.Context) error) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_ = shutdown(ctx)
	})
}

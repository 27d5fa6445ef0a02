package zktest

import (
	"context"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zksession"
)

// Session opens a zksession.Session with cfg for a test that reads or
// writes nodes beside the code under test (an observer), waits up to 30 s
// until it is connected, and closes it when the test ends.
func Session(t testing.TB, cfg zksession.Config) *zksession.Session {
	t.Helper()
	s, err := zksession.Connect(cfg)
	if err != nil {
		t.Fatalf("opening a test session to %v: %v", cfg.Servers, err)
	}
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatalf("waiting for the test session to %v: %v", cfg.Servers, err)
	}
	return s
}

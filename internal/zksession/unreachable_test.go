package zksession_test

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
)

// While ZooKeeper cannot be reached at start, a warning naming the servers
// and the connection error is logged periodically (before, the log said
// nothing at the default level until a session was established); once
// connected, the warnings stop.
func TestWarnsWhileUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	var logs testutil.SyncBuffer
	s, err := zksession.Connect(zksession.Config{
		Servers: []string{addr}, SessionTimeout: 2 * time.Second,
		Logger:               slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		UnreachableWarnEvery: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testutil.EventuallyNil(t, 20*time.Second, "two unreachable warnings", func() error {
		if n := strings.Count(logs.String(), "ZooKeeper unreachable"); n < 2 {
			return fmt.Errorf("%d unreachable warnings while nothing listens at %s; log:\n%s", n, addr, logs.String())
		}
		return nil
	})
	out := logs.String()
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "ZooKeeper unreachable") {
			if !strings.Contains(line, "level=WARN") || !strings.Contains(line, addr) || !strings.Contains(line, "connection refused") {
				t.Errorf("warning %q: want level WARN, the servers and the last error", line)
			}
			break
		}
	}
}

// Connected, no warning.
func TestNoUnreachableWarningWhileConnected(t *testing.T) {
	zc := zktest.Start(t)
	var logs testutil.SyncBuffer
	s, err := zksession.Connect(zksession.Config{
		Servers: zc.Servers(), SessionTimeout: 4 * time.Second,
		Logger:               slog.New(slog.NewTextHandler(&logs, nil)),
		UnreachableWarnEvery: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitState(t, s, zksession.StateConnected)
	before := len(logs.String())
	time.Sleep(time.Second)
	if strings.Contains(logs.String()[before:], "ZooKeeper unreachable") {
		t.Fatalf("unreachable warning while connected:\n%s", logs.String())
	}
}

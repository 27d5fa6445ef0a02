package zksession_test

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

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
	var logs lockedBuffer
	s, err := zksession.Connect(zksession.Config{
		Servers: []string{addr}, SessionTimeout: 2 * time.Second,
		Logger:               slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		UnreachableWarnEvery: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(logs.String(), "ZooKeeper unreachable") < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	out := logs.String()
	if n := strings.Count(out, "ZooKeeper unreachable"); n < 2 {
		t.Fatalf("%d unreachable warnings while nothing listens at %s; log:\n%s", n, addr, out)
	}
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
	var logs lockedBuffer
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

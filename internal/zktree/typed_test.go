package zktree_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/internal/zktree"
)

// A Typed tree converts each snapshot once: until the next one, Snapshot
// returns the same pointer.
func TestTypedConvertsOnce(t *testing.T) {
	zc := zktest.Start(t)
	w := newWriter(t, zc.Servers())
	w.put("/typed/a/x", "v=1")
	sess, err := zksession.Connect(zksession.Config{Servers: zc.Servers(), SessionTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	var converts atomic.Int64
	ty := zktree.NewTyped(sess, func(s *zktree.Snapshot[string]) *map[string]string {
		converts.Add(1)
		return &s.Groups
	}, zktree.Options[item, string]{Root: "/typed", Parse: parse, Build: build, Watch: true, ResyncInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ty.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	eventually(t, "the first snapshot", func() bool { return ty.Snapshot() != nil }, nil)
	first, n := ty.Snapshot(), converts.Load()
	for range 3 {
		if ty.Snapshot() != first {
			t.Fatal("Snapshot returned another pointer without a new snapshot")
		}
	}
	if converts.Load() != n {
		t.Fatalf("%d conversions of one snapshot", converts.Load()-n+1)
	}
	w.put("/typed/a/x", "v=2")
	eventually(t, "the change converted", func() bool { s := ty.Snapshot(); return s != first && (*s)["a"] == "x=2" }, nil)
}

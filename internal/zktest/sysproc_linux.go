//go:build linux

package zktest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// waitStopped waits until every thread of pid is stopped (state T), since
// SIGSTOP is delivered asynchronously: a JVM thread that is running when
// the signal is sent can still answer a request before it stops.
func waitStopped(ctx context.Context, pid int) error {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	for {
		tasks, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("zktest: pid %d: %w", pid, err)
		}
		stopped := 0
		for _, t := range tasks {
			b, err := os.ReadFile(filepath.Join(dir, t.Name(), "stat"))
			if err != nil {
				stopped++ // the thread exited
				continue
			}
			s := string(b)
			if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && (s[i+2] == 'T' || s[i+2] == 't') {
				stopped++
			}
		}
		if stopped == len(tasks) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("zktest: pid %d did not stop: %w", pid, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

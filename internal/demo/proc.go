package demo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/zkgate/zkgate/internal/procgroup"
)

// exitTail is how many log lines ExitError quotes for the demo's children.
const exitTail = 3

// child is a process started with procgroup (own process group, killed
// with the demo on Linux) whose first stdout line is kept.
type child struct {
	*procgroup.Proc
	// firstLine receives the first line the process prints on stdout.
	firstLine chan string
}

// startChild starts bin with args on sp. Its stderr (and stdout after the
// first line) is appended to logPath.
func startChild(sp *procgroup.Spawner, name, logPath, bin string, args ...string) (*child, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	c := &child{firstLine: make(chan string, 1)}
	cmd := procgroup.Command(bin, args...)
	cmd.Stdout = &firstLineWriter{ch: c.firstLine, rest: f}
	cmd.Stderr = f
	if c.Proc, err = sp.Spawn(name, cmd, logPath, f); err != nil {
		return nil, err
	}
	return c, nil
}

// waitLine waits for the first line on stdout.
func (c *child) waitLine(ctx context.Context) (string, error) {
	select {
	case l := <-c.firstLine:
		return l, nil
	case <-c.Done():
		// The line may have come just before the exit.
		select {
		case l := <-c.firstLine:
			return l, nil
		default:
		}
		return "", c.ExitError(exitTail)
	case <-ctx.Done():
		return "", fmt.Errorf("%s did not start: %w", c.Name, ctx.Err())
	}
}

// firstLineWriter hands the first line written to ch and everything else
// to rest.
type firstLineWriter struct {
	ch   chan string
	rest *os.File
	buf  []byte
	sent bool
}

func (w *firstLineWriter) Write(p []byte) (int, error) {
	if w.sent {
		return w.rest.Write(p)
	}
	w.buf = append(w.buf, p...)
	i := bytes.IndexByte(w.buf, '\n')
	if i < 0 {
		if len(w.buf) > 4096 {
			w.buf = w.buf[:0]
		}
		return len(p), nil
	}
	w.sent = true
	w.ch <- strings.TrimSpace(string(w.buf[:i]))
	if rest := w.buf[i+1:]; len(rest) > 0 {
		w.rest.Write(rest)
	}
	w.buf = nil
	return len(p), nil
}

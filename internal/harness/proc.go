package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/zkgate/zkgate/internal/procgroup"
)

// Start starts cmd on sp (its own process group, reaped in the
// background). When logPath is set, it is created (truncated) and gets
// whichever of stdout and stderr the caller left nil; the process's
// ExitError quotes it.
func Start(sp *procgroup.Spawner, name string, cmd *exec.Cmd, logPath string) (*procgroup.Proc, error) {
	if logPath == "" || (cmd.Stdout != nil && cmd.Stderr != nil) {
		return sp.Spawn(name, cmd, logPath, nil)
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if cmd.Stdout == nil {
		cmd.Stdout = f
	}
	if cmd.Stderr == nil {
		cmd.Stderr = f
	}
	return sp.Spawn(name, cmd, logPath, f)
}

// AppendLog opens logPath for appending, creating it: the log of a
// process started more than once.
func AppendLog(name, logPath string) (*os.File, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	return f, nil
}

// Child is a process started by StartChild: its first stdout line is
// kept for WaitLine (a process that prints its address once it serves).
type Child struct {
	*procgroup.Proc
	// firstLine receives the first line the process prints on stdout.
	firstLine chan string
}

// StartChild starts cmd on sp; its stderr, and its stdout after the
// first line, are appended to logPath.
func StartChild(sp *procgroup.Spawner, name, logPath string, cmd *exec.Cmd) (*Child, error) {
	f, err := AppendLog(name, logPath)
	if err != nil {
		return nil, err
	}
	c := &Child{firstLine: make(chan string, 1)}
	cmd.Stdout = &firstLineWriter{ch: c.firstLine, rest: f}
	cmd.Stderr = f
	if c.Proc, err = sp.Spawn(name, cmd, logPath, f); err != nil {
		return nil, err
	}
	return c, nil
}

// WaitLine waits for the first line on stdout (spaces trimmed). When the
// process exits first, the error quotes the last tailLines of its log.
func (c *Child) WaitLine(ctx context.Context, tailLines int) (string, error) {
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
		return "", c.ExitError(tailLines)
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

package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// spawner starts processes from one dedicated, locked OS thread. On Linux
// every child gets a parent-death signal, which the kernel delivers when
// the thread that forked it exits; Go may retire threads, so all children
// are forked from this one thread, which lives until close (or until the
// process dies).
type spawner struct {
	reqs      chan spawnReq
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type spawnReq struct {
	cmd *exec.Cmd
	res chan error
}

var errSpawnerClosed = errors.New("demo: process spawner closed")

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq), quit: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *spawner) run() {
	// Never unlocked: when this goroutine returns the runtime terminates
	// the thread, which delivers the parent-death signal to any child
	// still alive.
	runtime.LockOSThread()
	defer close(s.done)
	for {
		select {
		case r := <-s.reqs:
			r.res <- r.cmd.Start()
		case <-s.quit:
			return
		}
	}
}

func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnReq{cmd: cmd, res: make(chan error, 1)}
	select {
	case s.reqs <- r:
		return <-r.res
	case <-s.quit:
		return errSpawnerClosed
	}
}

// close stops the spawner thread (SIGKILLing any child still alive on
// Linux) and waits for it.
func (s *spawner) close() {
	s.closeOnce.Do(func() { close(s.quit) })
	<-s.done
}

// child is a process running in its own process group.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	// firstLine receives the first line the process prints on stdout.
	firstLine chan string
	done      chan struct{} // closed when the process was reaped
	err       error         // Wait's result, valid after done
}

// startChild starts bin with args on sp. Its stderr (and stdout after the
// first line) is appended to logPath.
func startChild(sp *spawner, name, logPath, bin string, args ...string) (*child, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	c := &child{name: name, logPath: logPath, log: f, firstLine: make(chan string, 1), done: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.Env = os.Environ()
	cmd.Stdout = &firstLineWriter{ch: c.firstLine, rest: f}
	cmd.Stderr = f
	c.cmd = cmd
	if err := sp.start(cmd); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

// waitLine waits for the first line on stdout.
func (c *child) waitLine(ctx context.Context) (string, error) {
	select {
	case l := <-c.firstLine:
		return l, nil
	case <-c.done:
		// The line may have come just before the exit.
		select {
		case l := <-c.firstLine:
			return l, nil
		default:
		}
		return "", c.exitError()
	case <-ctx.Done():
		return "", fmt.Errorf("%s did not start: %w", c.name, ctx.Err())
	}
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// exitError describes how the process ended, with the tail of its log.
func (c *child) exitError() error {
	msg := "exited"
	if c.err != nil {
		msg = c.err.Error()
	}
	if tail := logTail(c.logPath, 3); tail != "" {
		return fmt.Errorf("%s %s: %s", c.name, msg, tail)
	}
	return fmt.Errorf("%s %s", c.name, msg)
}

// signal sends sig to the process group.
func (c *child) signal(sig syscall.Signal) {
	err := syscall.Kill(-c.cmd.Process.Pid, sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = c.cmd.Process.Signal(sig)
	}
}

// stop sends sig to the process group, waits up to grace (or until ctx
// ends), then SIGKILLs the group and waits until the process is reaped.
// It reports whether the process ended within grace.
func (c *child) stop(ctx context.Context, sig syscall.Signal, grace time.Duration) bool {
	if c.exited() {
		return true
	}
	c.signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	c.signal(syscall.SIGKILL)
	<-c.done
	return false
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

// logTail returns the last n non-empty lines of a log file, joined by " | ".
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

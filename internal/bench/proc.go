package bench

import (
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
// the thread that forked it exits; Go threads may be retired by the
// runtime, so all children are forked from this one thread, which lives
// until close (or until the process dies).
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

var errSpawnerClosed = errors.New("bench: process spawner closed")

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq), quit: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *spawner) run() {
	// Never unlocked: when this goroutine returns, the runtime terminates
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

// proc is a helper process running in its own process group.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process was reaped
	err     error         // Wait's result, valid after done
}

// command prepares a process in its own process group; the whole group is
// killed when ctx ends.
func command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return killGroup(cmd, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = os.Environ()
	return cmd
}

func killGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// startProc starts cmd on the spawner and reaps it in the background.
// When logPath is set, whichever of stdout and stderr the caller left nil
// goes to that file.
func startProc(sp *spawner, name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	var logFile *os.File
	if logPath != "" && (cmd.Stdout == nil || cmd.Stderr == nil) {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		logFile = f
		if cmd.Stdout == nil {
			cmd.Stdout = f
		}
		if cmd.Stderr == nil {
			cmd.Stderr = f
		}
	}
	if err := sp.start(cmd); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("starting %s (%s): %w", name, cmd.Path, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes how the process ended, with the tail of its log.
func (p *proc) exitError() error {
	msg := "exited"
	if p.err != nil {
		msg = p.err.Error()
	}
	if tail := logTail(p.logPath, 5); tail != "" {
		return fmt.Errorf("%s %s: %s", p.name, msg, tail)
	}
	return fmt.Errorf("%s %s", p.name, msg)
}

// stop sends sig to the process group, waits up to grace, then SIGKILLs
// the group and waits for the process to be reaped.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p.exited() {
		return
	}
	_ = killGroup(p.cmd, sig)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	// Also reaches children the leader left behind (nginx workers).
	_ = killGroup(p.cmd, syscall.SIGKILL)
	<-p.done
}

// logTail returns the last n non-empty lines of a log file, joined by " | ".
func logTail(path string, n int) string {
	if path == "" {
		return ""
	}
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

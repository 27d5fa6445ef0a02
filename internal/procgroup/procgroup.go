// Package procgroup starts and stops child processes that must not outlive
// the Go process that started them.
//
// The contract:
//
//   - Every child runs in its own process group (Setpgid), so a terminal's
//     Ctrl-C reaches only the parent, which stops its children in order, and
//     so a signal to the group also reaches grandchildren (nginx workers).
//   - On Linux every child is started with Pdeathsig SIGKILL. The kernel
//     delivers the parent-death signal when the *thread* that forked the
//     child exits, and the Go runtime may retire threads, so a [Spawner]
//     forks every child from one dedicated goroutine locked to its OS thread
//     and never unlocked. The thread lives until [Spawner.Close] (which thus
//     SIGKILLs any child still alive) or until the process dies. Outside
//     Linux there is no parent-death signal: a child can outlive a parent
//     killed without running its cleanup.
//   - [Spawner.Spawn] reaps the child in the background; [Proc.Done] is
//     closed once it has been reaped, after which [Proc.Err] holds Wait's
//     result.
//   - [Proc.Stop] sends a signal (normally SIGTERM) to the group, waits up to
//     a grace period, then SIGKILLs the group (reaching anything the leader
//     left behind) and waits until the child has been reaped.
package procgroup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrClosed is returned by [Spawner.Start] and [Spawner.Spawn] after
// [Spawner.Close].
var ErrClosed = errors.New("procgroup: spawner closed")

// Spawner starts processes from one dedicated, locked OS thread (see the
// package documentation). Its methods are safe for concurrent use.
type Spawner struct {
	reqs      chan spawnReq
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type spawnReq struct {
	cmd *exec.Cmd
	res chan error
}

// NewSpawner starts a spawner thread. The caller must Close it.
func NewSpawner() *Spawner {
	s := &Spawner{reqs: make(chan spawnReq), quit: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

func (s *Spawner) run() {
	runtime.LockOSThread()
	if onMainThread() {
		// The runtime never ends the main thread (it parks it instead), so
		// children forked from it would never get their parent-death
		// signal. Hold the main thread while a new goroutine locks another
		// one, then let go of it.
		ready := make(chan struct{})
		go s.serve(ready)
		<-ready
		runtime.UnlockOSThread()
		return
	}
	s.serve(nil)
}

// serve forks children on its own locked thread until Close.
func (s *Spawner) serve(ready chan struct{}) {
	// Never unlocked on purpose: when this goroutine returns, the runtime
	// terminates the thread instead of reusing it, which delivers the
	// parent-death signal to any child still alive.
	runtime.LockOSThread()
	if ready != nil {
		close(ready)
	}
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

// Start runs cmd.Start on the spawner thread. If cmd.SysProcAttr is nil it
// is set to [SysProcAttr]. The caller must Wait for cmd.
func (s *Spawner) Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = SysProcAttr()
	}
	r := spawnReq{cmd: cmd, res: make(chan error, 1)}
	select {
	case s.reqs <- r:
		return <-r.res
	case <-s.quit:
		return ErrClosed
	}
}

// Close stops the spawner thread (SIGKILLing any child still alive on
// Linux) and waits for it. It is safe to call more than once.
func (s *Spawner) Close() {
	s.closeOnce.Do(func() { close(s.quit) })
	<-s.done
}

// Command prepares bin with args for [Spawner.Start] or [Spawner.Spawn]:
// own process group, parent-death signal on Linux, the parent's
// environment.
func Command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = SysProcAttr()
	cmd.Env = os.Environ()
	return cmd
}

// CommandContext is [Command] whose whole process group is SIGKILLed when
// ctx ends; Wait then gives the pipes 5 s to drain.
func CommandContext(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = SysProcAttr()
	cmd.Cancel = func() error { return killGroup(cmd, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = os.Environ()
	return cmd
}

// killGroup sends sig to cmd's process group; a group that is gone is not
// an error.
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

// Proc is a child started by [Spawner.Spawn], leading its own process
// group.
type Proc struct {
	// Name and LogPath describe the child in ExitError. LogPath may be
	// changed right after Spawn, before the Proc is shared.
	Name    string
	LogPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process was reaped
	err  error         // Wait's result, valid after done
}

// Spawn starts cmd on s (see [Spawner.Start]) and reaps it in the
// background. log, if not nil, is closed once the process has been reaped,
// or at once if it fails to start; it is typically the file cmd's output
// goes to. logPath is the file ExitError quotes ("" for none).
func (s *Spawner) Spawn(name string, cmd *exec.Cmd, logPath string, log io.Closer) (*Proc, error) {
	if err := s.Start(cmd); err != nil {
		if log != nil {
			log.Close()
		}
		return nil, fmt.Errorf("starting %s (%s): %w", name, cmd.Path, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		if log != nil {
			log.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Pid returns the child's process id, which is also its process group id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the child has been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err returns Wait's result; it is valid once Done is closed.
func (p *Proc) Err() error { return p.err }

// Exited reports whether the child has been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitError describes how the child ended, with the last tailLines
// non-empty lines of LogPath. Call it once Done is closed.
func (p *Proc) ExitError(tailLines int) error {
	msg := "exited"
	if p.err != nil {
		msg = p.err.Error()
	}
	if tail := LogTail(p.LogPath, tailLines); tail != "" {
		return fmt.Errorf("%s %s: %s", p.Name, msg, tail)
	}
	return fmt.Errorf("%s %s", p.Name, msg)
}

// Signal sends sig to the child's process group, or to the child alone if
// the group cannot be signalled. A reaped child is not signalled: its
// process group id may belong to another process by now.
func (p *Proc) Signal(sig syscall.Signal) {
	if p.Exited() {
		return
	}
	if err := killGroup(p.cmd, sig); err != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Stop sends sig to the process group, waits up to grace (or until ctx
// ends), then SIGKILLs the group (which also reaches children the leader
// left behind) and waits until the child has been reaped. It reports
// whether the child ended within grace. Stopping a reaped child is a no-op.
func (p *Proc) Stop(ctx context.Context, sig syscall.Signal, grace time.Duration) bool {
	if p.Exited() {
		return true
	}
	p.Signal(sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	inTime := false
	select {
	case <-p.done:
		inTime = true
	case <-t.C:
	case <-ctx.Done():
	}
	p.Signal(syscall.SIGKILL)
	<-p.done
	return inTime
}

// LogTail returns the last n non-empty lines of the file at path, joined by
// " | ", or "" if path is empty or unreadable.
func LogTail(path string, n int) string {
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

package procgroup

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/testutil"
)

func needBin(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not found: %v", b, err)
		}
	}
}

// groupAlive reports whether any live (non-zombie) process is in process
// group pgid.
func groupAlive(t *testing.T, pgid int) bool {
	t.Helper()
	if runtime.GOOS != "linux" {
		return syscall.Kill(-pgid, 0) == nil
	}
	procs, err := testutil.LiveProcs()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if p.PGID == pgid {
			return true
		}
	}
	return false
}

func waitGroupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for groupAlive(t, pgid) {
		if time.Now().After(deadline) {
			t.Fatalf("process group %d still alive", pgid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStopTerminatesGroup(t *testing.T) {
	needBin(t, "sleep")
	s := NewSpawner()
	defer s.Close()
	p, err := s.Spawn("sleep", Command("sleep", "60"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if pgid, err := syscall.Getpgid(p.Pid()); err != nil || pgid != p.Pid() {
		t.Fatalf("child not leading its own group: pgid %d, %v", pgid, err)
	}
	if p.Exited() {
		t.Fatal("sleep exited at once")
	}
	if !p.Stop(context.Background(), syscall.SIGTERM, 5*time.Second) {
		t.Fatal("sleep outlived SIGTERM")
	}
	if !p.Exited() {
		t.Fatal("Stop returned before the child was reaped")
	}
	waitGroupGone(t, p.Pid())
	// Stopping again is a no-op.
	if !p.Stop(context.Background(), syscall.SIGTERM, time.Second) {
		t.Fatal("second Stop reported a timeout")
	}
}

// TestStopKillsStubbornGroup: a leader and a grandchild that both ignore
// SIGTERM are SIGKILLed after the grace period.
func TestStopKillsStubbornGroup(t *testing.T) {
	needBin(t, "sh", "sleep")
	s := NewSpawner()
	defer s.Close()
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	p, err := s.Spawn("sh", Command("sh", "-c", `trap "" TERM; sleep 60 & touch `+ready+`; wait`), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("shell did not start its child")
		}
	}
	start := time.Now()
	if p.Stop(context.Background(), syscall.SIGTERM, 200*time.Millisecond) {
		t.Fatal("Stop reported an exit within grace though SIGTERM is ignored")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("Stop returned after %v, before the grace period", d)
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) {
		t.Fatalf("Err = %v, want a signal exit", p.Err())
	}
	waitGroupGone(t, p.Pid())
}

// TestCloseKillsChildren checks the Pdeathsig contract: closing the spawner
// ends its thread, and the kernel kills the children it forked.
func TestCloseKillsChildren(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parent-death signal is Linux-only")
	}
	needBin(t, "sleep")
	s := NewSpawner()
	p, err := s.Spawn("sleep", Command("sleep", "60"), "", nil)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	s.Close()
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second): // generous: a loaded machine under -race
		p.Stop(context.Background(), syscall.SIGKILL, 0)
		t.Fatal("child outlived its spawner thread")
	}
	if _, err := s.Spawn("sleep", Command("sleep", "60"), "", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Spawn after Close: %v, want ErrClosed", err)
	}
}

func TestExitErrorQuotesLogTail(t *testing.T) {
	needBin(t, "sh")
	s := NewSpawner()
	defer s.Close()
	logPath := filepath.Join(t.TempDir(), "out.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := Command("sh", "-c", "echo one; echo; echo two; echo three; exit 3")
	cmd.Stdout, cmd.Stderr = f, f
	p, err := s.Spawn("helper", cmd, logPath, f)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if got, want := p.ExitError(2).Error(), "helper exit status 3: two | three"; got != want {
		t.Fatalf("ExitError = %q, want %q", got, want)
	}
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("log file still open after the child was reaped")
	}
}

func TestCommandContextKillsGroup(t *testing.T) {
	needBin(t, "sleep")
	s := NewSpawner()
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := s.Spawn("sleep", CommandContext(ctx, "sleep", "60"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling ctx did not end the child")
	}
	waitGroupGone(t, p.Pid())
}

//go:build linux

package procgroup

import "syscall"

// SysProcAttr puts a child in its own process group and has the kernel
// SIGKILL it when the thread that forked it (a [Spawner]'s) exits.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// onMainThread reports whether the calling goroutine runs on the
// process's main thread (its thread id is the process id).
func onMainThread() bool { return syscall.Gettid() == syscall.Getpid() }

//go:build linux

package procgroup

import "syscall"

// SysProcAttr puts a child in its own process group and has the kernel
// SIGKILL it when the thread that forked it (a [Spawner]'s) exits.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

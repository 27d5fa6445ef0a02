//go:build !linux

package demo

import "syscall"

// sysProcAttr puts a child in its own process group. Without Linux's
// parent-death signal, children outlive a demo killed with SIGKILL.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

//go:build !linux

package procgroup

import "syscall"

// SysProcAttr puts a child in its own process group. Outside Linux there is
// no parent-death signal: a child can outlive a parent killed without
// running its cleanup.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// onMainThread: without a parent-death signal it does not matter.
func onMainThread() bool { return false }

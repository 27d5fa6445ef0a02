//go:build !linux

package bench

import "syscall"

// sysProcAttr puts a helper in its own process group. Outside Linux there
// is no parent-death signal: a helper can outlive a bench that is killed
// without running its cleanup.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

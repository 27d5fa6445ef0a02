//go:build linux

package bench

import "syscall"

// sysProcAttr puts a helper in its own process group (a terminal's Ctrl-C
// reaches only the bench, which stops its helpers in order) and has the
// kernel SIGKILL it if the spawner thread, hence the bench, dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

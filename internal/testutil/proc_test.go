package testutil

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestLiveProcsFindsSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	procs, err := LiveProcs()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if p.PID == os.Getpid() {
			if p.PPID != os.Getppid() || p.PGID != syscall.Getpgrp() || !strings.HasPrefix(p.Head, strconv.Itoa(p.PID)+" (") {
				t.Errorf("own process read as %+v; want ppid %d, pgid %d", p, os.Getppid(), syscall.Getpgrp())
			}
			return
		}
	}
	t.Fatalf("own pid %d not among %d processes", os.Getpid(), len(procs))
}

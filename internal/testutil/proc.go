package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Proc is a live process as /proc/PID/stat describes it (Linux).
type Proc struct {
	PID  int
	Head string // "pid (comm)", the start of the stat line
	PPID int    // parent process id
	PGID int    // process group id
}

// LiveProcs lists the processes in /proc that are not zombies. It works
// on Linux only: elsewhere /proc is missing and it returns an error.
// Processes that exit while it reads are left out.
func LiveProcs() ([]Proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid pgrp ...": comm may hold spaces and
		// parentheses, so the fields start after the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		ppid, err1 := strconv.Atoi(f[1])
		pgid, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, Proc{PID: pid, Head: s[:i+1], PPID: ppid, PGID: pgid})
	}
	return out, nil
}

package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime/stime in /proc/<pid>/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

// statCPU parses one /proc/<pid>/stat line: the process group and the
// CPU time (user + system) of all its threads.
func statCPU(line string) (pgrp int, cpu time.Duration, err error) {
	// The command name (field 2) is in parentheses and may contain spaces
	// and parentheses: the fields that follow start after the last ')'.
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed stat line")
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, errors.New("short stat line")
	}
	pgrp, err = strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, fmt.Errorf("pgrp: %w", err)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("utime/stime: %w", err)
	}
	return pgrp, time.Duration(ut+st) * time.Second / userHZ, nil
}

// groupCPU is the CPU time used so far by the live processes of process
// group pgid (nginx's master and workers, or one Go process). It fails
// where /proc is not available.
func groupCPU(pgid int) (time.Duration, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("reading CPU time: %w", err)
	}
	var total time.Duration
	found := false
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		pg, cpu, err := statCPU(string(b))
		if err != nil || pg != pgid {
			continue
		}
		total += cpu
		found = true
	}
	if !found {
		return 0, fmt.Errorf("no process in group %d", pgid)
	}
	return total, nil
}

// sysCPU is the machine-wide CPU time so far, from /proc/stat.
type sysCPU struct {
	// Tasks is time spent running processes (user, nice, system).
	Tasks time.Duration
	// Interrupts is irq and softirq time not charged to any process (on
	// loopback, part of the TCP receive path runs there).
	Interrupts time.Duration
	// Steal is time the hypervisor gave to other machines.
	Steal time.Duration
}

// parseProcStat reads the first ("cpu") line of /proc/stat.
func parseProcStat(stat string) (sysCPU, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return sysCPU{}, errors.New("/proc/stat: no cpu line")
	}
	// user nice system idle iowait irq softirq steal (guest time is
	// already part of user).
	var v [8]time.Duration
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return sysCPU{}, fmt.Errorf("/proc/stat: %w", err)
		}
		v[i] = time.Duration(n) * time.Second / userHZ
	}
	return sysCPU{Tasks: v[0] + v[1] + v[2], Interrupts: v[5] + v[6], Steal: v[7]}, nil
}

// readSysCPU reads /proc/stat.
func readSysCPU() (sysCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return sysCPU{}, fmt.Errorf("reading CPU time: %w", err)
	}
	return parseProcStat(string(b))
}

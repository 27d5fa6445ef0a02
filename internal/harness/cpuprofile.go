package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
)

// CPUProfile is a CPU profile of this process being written to a file
// (only one can run at a time in a process: runtime/pprof's rule).
type CPUProfile struct {
	mu   sync.Mutex
	f    *os.File
	err  error
	done bool
}

// StartCPUProfile creates path, and its directory, and profiles the CPU
// into it until Stop.
func StartCPUProfile(path string) (*CPUProfile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	return &CPUProfile{f: f}, nil
}

// Stop ends the profile and closes its file; it is safe to call more
// than once and from several goroutines, and returns the first call's
// error every time.
func (p *CPUProfile) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		p.done = true
		pprof.StopCPUProfile()
		p.err = p.f.Close()
	}
	return p.err
}

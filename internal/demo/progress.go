package demo

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/zkgate/zkgate/internal/harness"
)

// progress shows what the demo is doing: on a terminal one bar per mode,
// redrawn in place (a finished mode's line stays); otherwise plain lines
// at each step. Safe for concurrent use; a nil *progress does nothing.
type progress struct {
	w   io.Writer
	tty bool
	now func() time.Time

	mu      sync.Mutex
	mode    Mode
	n, done int
	phase   string
	started time.Time
	counts  func() (requests, failed int64)
	drawn   bool
	stop    chan struct{}
	stopped chan struct{}
}

func newProgress(w io.Writer, tty bool) *progress {
	if w == nil {
		return nil
	}
	return &progress{w: w, tty: tty, now: time.Now}
}

// logf prints a line of its own (above the bar on a terminal).
func (p *progress) logf(format string, args ...any) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	fmt.Fprintf(p.w, format+"\n", args...)
	p.drawLocked()
}

// startMode begins a mode's bar; counts reports the load so far.
func (p *progress) startMode(m Mode, n int, counts func() (int64, int64)) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.mode, p.n, p.done, p.phase, p.started, p.counts = m, n, 0, "starting", p.now(), counts
	if !p.tty {
		fmt.Fprintf(p.w, "%s: rolling restart of %d backends under load\n", m, n)
	}
	p.drawLocked()
	if p.tty && p.stop == nil {
		p.stop, p.stopped = make(chan struct{}), make(chan struct{})
		go p.redraw(p.stop, p.stopped)
	}
	p.mu.Unlock()
}

// step says what the mode does now with instance i (0-based).
func (p *progress) step(i int, addr, phase string) {
	p.show(func() { p.phase = fmt.Sprintf("%s %s", phase, addr) }, func() string {
		return fmt.Sprintf("%s: [%d/%d] %s %s", p.mode, i+1, p.n, phase, addr)
	})
}

// instanceDone says instance i is back in service after d.
func (p *progress) instanceDone(i int, addr string, d time.Duration) {
	p.show(func() { p.done, p.phase = i+1, "restarted "+addr }, func() string {
		req, failed := p.countsLocked()
		return fmt.Sprintf("%s: [%d/%d] %s back in service after %s (%s requests, %s failed so far)",
			p.mode, i+1, p.n, addr, secs(d.Seconds()), harness.Thousands(req), harness.Thousands(failed))
	})
}

// setPhase shows a phase not tied to an instance ("measuring the tail").
func (p *progress) setPhase(phase string) {
	p.show(func() { p.phase = phase }, func() string { return fmt.Sprintf("%s: %s", p.mode, phase) })
}

// show applies change to the state and then redraws the bar on a
// terminal, or else prints the line line returns. Both run with p.mu
// held; a nil progress does nothing.
func (p *progress) show(change func(), line func() string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	change()
	if !p.tty {
		fmt.Fprintln(p.w, line())
		return
	}
	p.drawLocked()
}

// endMode leaves the mode's final line.
func (p *progress) endMode(summary string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	stop, stopped := p.stop, p.stopped
	p.stop, p.stopped = nil, nil
	p.mu.Unlock()
	if stop != nil {
		close(stop)
		<-stopped
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	p.counts = nil
	fmt.Fprintf(p.w, "%-6s %s\n", string(p.mode)+":", summary)
}

func (p *progress) redraw(stop, stopped chan struct{}) {
	defer close(stopped)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.drawLocked()
			p.mu.Unlock()
		}
	}
}

func (p *progress) countsLocked() (int64, int64) {
	if p.counts == nil {
		return 0, 0
	}
	return p.counts()
}

// drawLocked redraws the bar (terminal only).
func (p *progress) drawLocked() {
	if !p.tty || p.mode == "" || p.counts == nil && p.phase == "" {
		return
	}
	req, failed := p.countsLocked()
	line := barLine(p.mode, p.done, p.n, p.phase, p.now().Sub(p.started), req, failed)
	// A line longer than the terminal wraps, and \r then redraws only
	// its last part.
	width := termWidth(p.w)
	if width <= 0 {
		width = 80
	}
	if r := []rune(line); len(r) > width-1 {
		line = string(r[:width-2]) + "…"
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", line)
	p.drawn = true
}

func (p *progress) clearLocked() {
	if p.tty && p.drawn {
		io.WriteString(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// barLine renders one progress line, e.g.
// "zkgate [#####.....] 2/4  12.3s  2,345 req  0 failed  draining 127.0.0.1:21001".
func barLine(m Mode, done, n int, phase string, elapsed time.Duration, req, failed int64) string {
	const width = 16
	fill := 0
	if n > 0 {
		fill = done * width / n
	}
	bar := strings.Repeat("█", fill) + strings.Repeat("░", width-fill)
	return fmt.Sprintf("%-6s %s %d/%d %5.1fs  %s req  %s failed  %s",
		m, bar, done, n, elapsed.Seconds(), harness.Thousands(req), harness.Thousands(failed), phase)
}

// setCounts sets where the bar reads the load's running totals.
func (p *progress) setCounts(counts func() (int64, int64)) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.counts = counts
	p.mu.Unlock()
}

// setDone sets how many instances are done (for steps reported by
// another component, as rollout's).
func (p *progress) setDone(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = n
	p.drawLocked()
}

// lineWriter returns a writer whose every line becomes the current phase
// (rollout's own progress lines).
func (p *progress) lineWriter() io.Writer {
	if p == nil {
		return io.Discard
	}
	return &phaseWriter{p: p}
}

type phaseWriter struct {
	p   *progress
	mu  sync.Mutex
	buf []byte
}

func (w *phaseWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := strings.IndexAny(string(w.buf), "\r\n")
		if i < 0 {
			break
		}
		line := strings.TrimSpace(strings.ReplaceAll(string(w.buf[:i]), "\x1b[K", ""))
		w.buf = w.buf[i+1:]
		if line != "" {
			w.p.setPhase(line)
		}
	}
	return len(b), nil
}

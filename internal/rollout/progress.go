package rollout

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/zkgate/zkgate/internal/instancestate"
)

// Phases of one instance, as the progress shows them.
const (
	phaseDraining    = instancestate.Draining
	phaseRestarting  = "restarting"
	phaseRegistering = "waiting for it to register again"
	phaseRouting     = "waiting for every gateway to route to it"
)

// barWidth is the number of cells of the progress bar; maxBarLine bounds
// the bar's line so that it never wraps on a usual terminal (a wrapped
// line cannot be redrawn in place).
const (
	barWidth   = 20
	maxBarLine = 79
)

// IsTerminal reports whether w is a terminal that can redraw a line: a
// character device, with TERM not "dumb". The CLI uses it for the demo's
// progress too.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

type active struct {
	phase string
	since time.Time
}

// reporter writes the progress: on a terminal, one permanent line per
// finished instance (and per restart, so the restart command's own output
// has a heading) under a bar redrawn in place; otherwise plain lines, one
// per phase. The bar is not drawn while a restart runs, so that the
// command's output is not mixed into it. Safe for concurrent use.
type reporter struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	service  string
	targets  []Target
	active   map[int]active
	finished int
	// restarting counts restarts in progress (the bar is hidden then).
	restarting int
	barShown   bool

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func newReporter(w io.Writer, service string, targets []Target, parallel int) *reporter {
	p := &reporter{
		w: w, tty: IsTerminal(w), service: service, targets: targets,
		active: map[int]active{}, stop: make(chan struct{}),
	}
	p.line(fmt.Sprintf("rollout of %s: %s, %d at a time", service, plural(len(targets), "instance"), parallel))
	if p.tty {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-p.stop:
					return
				case <-t.C:
					p.mu.Lock()
					p.redrawLocked()
					p.mu.Unlock()
				}
			}
		}()
	}
	return p
}

func (p *reporter) prefix(i int) string {
	return fmt.Sprintf("[%d/%d] %s", i+1, len(p.targets), p.targets[i].Addr)
}

// phase records that instance i entered phase; detail says how the
// previous phase went.
func (p *reporter) phase(i int, phase, detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.active[i]; ok && prev.phase == phaseRestarting {
		p.restarting--
	}
	p.active[i] = active{phase: phase, since: time.Now()}
	msg := p.prefix(i) + " " + phase
	if detail != "" {
		msg = p.prefix(i) + " " + detail + "; " + phase
	}
	switch {
	case !p.tty:
		p.lineLocked(msg)
	case phase == phaseRestarting:
		p.restarting++
		p.lineLocked(msg)
	default:
		p.redrawLocked()
	}
}

// end records instance i's outcome.
func (p *reporter) end(i int, ir InstanceResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.active[i]; ok && prev.phase == phaseRestarting {
		p.restarting--
	}
	delete(p.active, i)
	p.finished++
	if ir.Status == StatusDone {
		p.lineLocked(fmt.Sprintf("%s serving again (drain %s, restart %s, to serving %s)", p.prefix(i), fmtDur(ir.Drain), fmtDur(ir.Restart), fmtDur(ir.ToServing)))
		return
	}
	p.lineLocked(fmt.Sprintf("%s FAILED: %v", p.prefix(i), ir.Err))
}

// finish writes the last line.
func (p *reporter) finish(res *Result, err error) {
	done := res.count(StatusDone)
	if err == nil {
		p.line(fmt.Sprintf("rollout of %s: %d of %d done in %s", p.service, done, len(res.Instances), fmtDur(res.Total)))
		return
	}
	p.line(fmt.Sprintf("rollout of %s stopped after %s: %d done, %d failed, %d not started", p.service, fmtDur(res.Total),
		done, res.count(StatusFailed), res.count(StatusSkipped)))
}

// close stops redrawing and removes the bar.
func (p *reporter) close() {
	p.closeOnce.Do(func() {
		close(p.stop)
		p.wg.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		p.clearLocked()
	})
}

func (p *reporter) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lineLocked(s)
}

// lineLocked writes a permanent line (above the bar on a terminal).
func (p *reporter) lineLocked(s string) {
	p.clearLocked()
	io.WriteString(p.w, s+"\n")
	p.redrawLocked()
}

func (p *reporter) clearLocked() {
	if p.barShown {
		io.WriteString(p.w, "\r\x1b[K")
		p.barShown = false
	}
}

func (p *reporter) redrawLocked() {
	if !p.tty {
		return
	}
	if p.restarting > 0 {
		p.clearLocked()
		return
	}
	n := len(p.targets)
	if n == 0 {
		return
	}
	cells := p.finished * barWidth / n
	bar := strings.Repeat("#", cells) + strings.Repeat(".", barWidth-cells)
	s := fmt.Sprintf("%s [%s] %d/%d", p.service, bar, p.finished, n)
	idx := make([]int, 0, len(p.active))
	for i := range p.active {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		a := p.active[i]
		s += fmt.Sprintf("  %s %s %s", p.targets[i].Addr, a.phase, fmtDur(time.Since(a.since)))
	}
	if r := []rune(s); len(r) > maxBarLine {
		s = string(r[:maxBarLine-1]) + "…"
	}
	io.WriteString(p.w, "\r\x1b[K"+s)
	p.barShown = true
}

// writePlan prints a dry run's plan.
func writePlan(o Options, targets []Target) {
	w := o.Progress
	fmt.Fprintf(w, "dry run: nothing is changed. Rollout of %s: %s, %d at a time; for each:\n", o.Service, plural(len(targets), "instance"), o.Parallel)
	fmt.Fprintf(w, "  drain (confirmed, at most %s; reason %q", o.DrainTimeout, o.Reason)
	if o.DeployID != "" {
		fmt.Fprintf(w, ", deploy id %q", o.DeployID)
	}
	fmt.Fprintf(w, ") → restart → wait for a new registration (at most %s) → wait until every gateway routes to it (at most %s)\n",
		o.RegisterTimeout, o.ServeTimeout)
	for i, t := range targets {
		line := fmt.Sprintf("  %d. %s", i+1, t.Addr)
		if o.Explain != nil {
			line += ": " + o.Explain(t)
		}
		fmt.Fprintln(w, line)
	}
}

// WriteTable writes the final table: per instance its status and the
// drain, restart and to-serving times, then the total. (Why an instance
// failed is in Run's error and the InstanceResult.)
func (res *Result) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tSTATUS\tDRAIN\tRESTART\tTO SERVING")
	for _, ir := range res.Instances {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ir.Addr, ir.Status, fmtDur(ir.Drain), fmtDur(ir.Restart), fmtDur(ir.ToServing))
	}
	tw.Flush()
	fmt.Fprintf(w, "total %s: %d of %d done\n", fmtDur(res.Total), res.count(StatusDone), len(res.Instances))
}

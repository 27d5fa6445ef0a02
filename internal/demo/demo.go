package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/component"
	"github.com/zkgate/zkgate/internal/harness"
	"github.com/zkgate/zkgate/internal/procgroup"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
)

// run is one `zkgate demo`.
type run struct {
	opts    Options
	timing  Timing
	load    LoadSpec
	log     *slog.Logger
	dir     string
	servers []string
	// root is this run's ZooKeeper subtree: /zkgate-demo/<runID>.
	root  string
	runID string
	token string
	sp    *procgroup.Spawner
	prog  *progress
	// backend is how the sample backends behave; startup their start-up
	// time (jvm).
	backend Backend
	startup time.Duration
}

// demoRoot holds every run's subtree in a shared ZooKeeper.
const demoRoot = "/zkgate-demo"

// Run runs the demo: every mode of opts.Modes in turn, the table on
// opts.Out, the JSON report when asked; with opts.Keep it then waits for
// ctx to end. It returns the report (also when a mode failed: the error
// says which) and stops every process it started before returning, also
// when ctx ends early.
func Run(ctx context.Context, opts Options) (rep *Report, err error) {
	if opts.Binary == "" {
		return nil, errors.New("demo: no zkgate binary to run the backends with")
	}
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("demo: zkgate binary: %w", err)
	}
	if len(opts.Modes) == 0 {
		opts.Modes = AllModes()
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &run{opts: opts, load: DefaultLoad(), timing: FullTiming()}
	if opts.Quick {
		r.timing = QuickTiming()
	}
	if opts.Timing != nil {
		r.timing = *opts.Timing
	}
	if opts.Load != nil {
		r.load = *opts.Load
	}
	r.backend = opts.Backend
	if r.backend == "" {
		r.backend = BackendJVM
	}
	if _, err := ParseBackend(string(r.backend)); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if r.backend == BackendJVM {
		r.startup = opts.BackendStartup
		if r.startup == 0 {
			r.startup = DefaultStartup(opts.Quick)
		}
		if r.startup < 0 {
			return nil, errors.New("demo: the backends' start-up time must not be negative")
		}
	}
	if r.load.Rate <= 0 || r.load.Timeout <= 0 {
		return nil, errors.New("demo: the load needs a positive rate and timeout")
	}
	now := opts.Now()
	r.runID = now.UTC().Format("20060102-150405") + "-" + randomHex(3)
	r.root = demoRoot + "/" + r.runID
	r.token = randomHex(16)

	// Files.
	r.dir = opts.Dir
	ownsDir := r.dir == ""
	if ownsDir {
		if r.dir, err = os.MkdirTemp("", "zkgate-demo-"); err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
	} else if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	r.log = opts.Logger
	if r.log == nil {
		f, err := os.Create(filepath.Join(r.dir, "demo.log"))
		if err != nil {
			return nil, fmt.Errorf("demo: log file: %w", err)
		}
		defer f.Close()
		r.log = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	defer func() {
		switch {
		case err != nil && ownsDir:
			err = fmt.Errorf("%w (logs kept in %s)", err, r.dir)
		case ownsDir:
			os.RemoveAll(r.dir)
		}
	}()

	r.prog = newProgress(opts.Progress, opts.Terminal)
	r.sp = procgroup.NewSpawner()
	defer r.sp.Close()

	// ZooKeeper.
	if len(opts.ZooKeeper) > 0 {
		r.servers = opts.ZooKeeper
		defer r.removeRoot()
	} else {
		if err := zktest.Check(); err != nil {
			return nil, fmt.Errorf("ZooKeeper is not installed (scripts/install-deps.sh zookeeper installs it, or pass --zk host:port): %w", err)
		}
		r.prog.logf("starting ZooKeeper")
		zk, err := zktest.New(ctx, zktest.Config{
			Size: 1, Dir: filepath.Join(r.dir, "zookeeper"),
			Logf: func(format string, args ...any) { r.log.Info(fmt.Sprintf(format, args...), "component", "zookeeper") },
		})
		if err != nil {
			return nil, fmt.Errorf("starting ZooKeeper: %w", err)
		}
		defer zk.Close()
		r.servers = zk.Servers()
	}

	rep = &Report{
		Date: now, Quick: opts.Quick, Machine: readMachine(), Load: r.load,
		Backend: string(r.backend), BackendStartupSeconds: seconds(r.startup),
		PreRollSeconds: seconds(r.timing.PreRoll), TailSeconds: seconds(r.timing.Tail),
	}
	keepMode := opts.Modes[len(opts.Modes)-1]
	if slices.Contains(opts.Modes, ModeZkgate) {
		keepMode = ModeZkgate
	}
	var kept *stack
	defer func() {
		if kept != nil {
			kept.close()
		}
	}()
	var failed []string
	for _, m := range opts.Modes {
		res, s, err := r.runMode(ctx, m, opts.Keep && m == keepMode)
		switch {
		case errors.Is(err, errNoNginx):
			rep.Skipped = append(rep.Skipped, Skipped{Mode: string(m), Reason: err.Error()})
			r.prog.logf("%-6s skipped: %v", string(m)+":", err)
			continue
		case ctx.Err() != nil:
			return rep, fmt.Errorf("interrupted: %w", ctx.Err())
		case err != nil:
			return rep, fmt.Errorf("%s mode: %w", m, err)
		}
		if res.Error != "" {
			failed = append(failed, string(m))
		}
		rep.Modes = append(rep.Modes, res)
		if s != nil {
			kept = s
		}
	}
	if opts.JSONPath != "" {
		if err := rep.WriteJSON(opts.JSONPath); err != nil {
			return rep, err
		}
	}
	if err := rep.WriteTable(opts.Out); err != nil {
		return rep, fmt.Errorf("writing the table: %w", err)
	}
	if opts.JSONPath != "" {
		fmt.Fprintf(opts.Out, "\nJSON report: %s\n", opts.JSONPath)
	}
	if len(failed) > 0 {
		return rep, fmt.Errorf("the rollout of mode %s did not complete (see the notes)", strings.Join(failed, ", "))
	}
	if kept != nil {
		r.printKept(kept)
		<-ctx.Done()
	}
	return rep, nil
}

// runMode starts mode's stack, runs the load and the rollout, and returns
// the row. With keep the stack is returned running; otherwise it is
// stopped.
func (r *run) runMode(ctx context.Context, m Mode, keep bool) (res ModeResult, kept *stack, err error) {
	desc, note := describe(m, r.timing, r.opts.Quick)
	r.prog.startMode(m, backends, nil)
	r.prog.setPhase("starting the stack")
	s, err := r.newStack(ctx, m)
	if err != nil {
		r.prog.endMode("not run")
		return res, nil, err
	}
	defer func() {
		if !keep || err != nil {
			s.close()
		} else {
			kept = s
		}
	}()
	lg := newLoadGen(r.load, s.base)
	r.prog.setCounts(lg.rec.counts)
	stopLoad, stop := context.WithCancel(ctx)
	defer stop()
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		lg.run(stopLoad, ctx)
	}()
	start := time.Now()
	r.prog.setPhase("load running, first restart in " + r.timing.PreRoll.String())
	var (
		total    time.Duration
		per      []time.Duration
		restarts []time.Duration
		rerr     error
	)
	if err := component.Sleep(ctx, r.timing.PreRoll); err == nil {
		total, per, rerr = r.rollout(ctx, s)
		restarts = s.restartTimes()
		if ctx.Err() == nil {
			r.prog.setPhase("load running " + r.timing.Tail.String() + " more")
			component.Sleep(ctx, r.timing.Tail)
		}
	}
	measured := time.Since(start)
	stop()
	<-loadDone
	if ctx.Err() != nil {
		r.prog.endMode("interrupted")
		return res, nil, ctx.Err()
	}
	res = newModeResult(m, desc, lg.rec.summary(), measured, total, per)
	res.Note = note
	res.Shutdown = s.shutdownDesc()
	for _, d := range restarts {
		res.RestartSeconds = append(res.RestartSeconds, seconds(d))
	}
	if s.nginx != nil {
		if n := countLines(s.nginx.LogPath, "no live upstreams"); n > 0 {
			res.Note = fmt.Sprintf("%s answered 502 \"no live upstreams\": nginx takes a backend out for 10 s after a single failed request (max_fails=1 fail_timeout=10s, its defaults), and all four were out at once", plural(n, "request"))
		}
	}
	if rerr != nil {
		res.Error = rerr.Error()
		r.log.Error("rollout did not complete", "mode", m, "err", rerr)
	}
	summary := fmt.Sprintf("%s requests, %s failed (%s), rollout %s", harness.Thousands(res.Requests), harness.Thousands(res.Failed), rate(res.FailureRate), secs(res.RolloutSeconds))
	if rerr != nil {
		summary += ": did not complete: " + rerr.Error()
	}
	r.prog.endMode(summary)
	return res, nil, nil
}

// printKept prints the URLs of the stack left running.
func (r *run) printKept(s *stack) {
	w := r.opts.Out
	fmt.Fprintf(w, "\nThe %s mode's stack is still running (Ctrl-C stops it):\n", s.mode)
	if s.gw != nil {
		fmt.Fprintf(w, "  gateway        %s  (e.g. curl %shello)\n", s.base, s.base)
		fmt.Fprintf(w, "  gateway admin  http://%s/  (/readyz, /metrics, /admin/…)\n", s.gw.AdminAddr())
	}
	if s.nginx != nil {
		fmt.Fprintf(w, "  nginx          %s\n", s.base)
	}
	fmt.Fprintf(w, "  controller     %s  (token %s)\n", s.ctl.URL(), r.token)
	fmt.Fprintf(w, "  dashboard      %s/ui/\n", s.ctl.URL())
	fmt.Fprintf(w, "  zookeeper      %s  (registry root %s, zkgate root %s)\n", strings.Join(r.servers, ","), s.regRoot, s.zkRoot)
	fmt.Fprintf(w, "  try            zkgate status --controller %s --token %s\n", s.ctl.URL(), r.token)
	for _, b := range s.restartOrder() {
		fmt.Fprintf(w, "  backend        http://%s/\n", b.addr)
	}
}

// removeRoot deletes this run's subtree from a shared ZooKeeper (and the
// parent when no other run's is left). Best effort.
func (r *run) removeRoot() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sess, err := zksession.Connect(zksession.Config{Servers: r.servers, SessionTimeout: 10 * time.Second, Logger: r.log})
	if err != nil {
		r.log.Warn("cleaning up ZooKeeper", "err", err)
		return
	}
	defer sess.Close()
	if err := sess.WaitConnected(ctx); err != nil {
		r.log.Warn("cleaning up ZooKeeper", "err", err)
		return
	}
	if err := deleteTree(ctx, sess, r.root); err != nil {
		r.log.Warn("cleaning up ZooKeeper", "root", r.root, "err", err)
		return
	}
	// Only when empty: other runs may be using it.
	if err := sess.Delete(ctx, demoRoot, -1); err != nil && !errors.Is(err, zksession.ErrNotEmpty) && !errors.Is(err, zksession.ErrNoNode) {
		r.log.Warn("cleaning up ZooKeeper", "root", demoRoot, "err", err)
	}
}

// deleteTree deletes p and everything under it. Ephemeral nodes of
// sessions still closing may appear or vanish meanwhile: a node that is
// not empty yet is retried a few times.
func deleteTree(ctx context.Context, sess *zksession.Session, p string) error {
	for attempt := 0; ; attempt++ {
		kids, _, err := sess.Children(ctx, p)
		if errors.Is(err, zksession.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, k := range kids {
			if err := deleteTree(ctx, sess, p+"/"+k); err != nil {
				return err
			}
		}
		err = sess.Delete(ctx, p, -1)
		if err == nil || errors.Is(err, zksession.ErrNoNode) {
			return nil
		}
		if !errors.Is(err, zksession.ErrNotEmpty) || attempt >= 5 {
			return err
		}
		if err := component.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// countLines counts the lines of the file at path that contain s.
func countLines(path, s string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return harness.Thousands(int64(n)) + " " + what + "s"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	return hex.EncodeToString(b)
}

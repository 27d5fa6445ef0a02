package demo

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/zkgate/zkgate/internal/harness"
)

// Mode is one way of doing the rolling restart.
type Mode string

// The modes, in the order they run and appear in the table.
const (
	ModePoll  Mode = "poll"
	ModeWatch Mode = "watch"
	ModeSleep Mode = "sleep"
	// ModeSpring is what Spring shops do today: instance_status
	// OUT_OF_SERVICE in the registration, sleep, stop.
	ModeSpring Mode = "spring"
	ModeZkgate Mode = "zkgate"
	ModeNginx  Mode = "nginx"
)

// AllModes returns every mode in run order.
func AllModes() []Mode {
	return []Mode{ModePoll, ModeWatch, ModeSleep, ModeSpring, ModeZkgate, ModeNginx}
}

// ParseModes parses a comma-separated list of modes. The result is in run
// order, without duplicates.
func ParseModes(s string) ([]Mode, error) {
	const modes = "modes: poll, watch, sleep, spring, zkgate, nginx"
	return harness.ParseList(s, AllModes(), strings.ToLower, func(m string) error {
		return fmt.Errorf("unknown mode %q (%s)", m, modes)
	}, fmt.Errorf("no mode given (%s)", modes))
}

// Timing are the durations of a run.
type Timing struct {
	// PreRoll is how long the load runs before the first restart, Tail
	// how long after the last; both are part of the measurement.
	PreRoll, Tail time.Duration
	// Sleep is the sleep mode's pause between drain and restart.
	Sleep time.Duration
	// PollInterval is the poll mode's registry re-read interval.
	PollInterval time.Duration
	// ResyncInterval is the other gateways' periodic re-read (safety net).
	ResyncInterval time.Duration
	// Warmup is the zkgate mode's gateway.warmup.
	Warmup time.Duration
	// StepTimeout bounds each wait of a restart (process exit, start,
	// registration, drain, serving).
	StepTimeout time.Duration
}

// FullTiming is the default run: the seed's 20 s sleep and a 30 s poll
// interval (Spring Cloud's cache is 35 s).
func FullTiming() Timing {
	return Timing{
		PreRoll: 2 * time.Second, Tail: 2 * time.Second,
		Sleep: 20 * time.Second, PollInterval: 30 * time.Second, ResyncInterval: 30 * time.Second,
		Warmup: 2 * time.Second, StepTimeout: 60 * time.Second,
	}
}

// QuickTiming is --quick: the sleep and the poll interval are shortened,
// and the table says so.
func QuickTiming() Timing {
	t := FullTiming()
	t.PreRoll, t.Tail = time.Second, time.Second
	t.Sleep = 3 * time.Second
	t.PollInterval = 5 * time.Second
	return t
}

// Backend is how the sample backends behave.
type Backend string

const (
	// BackendJVM behaves like a Spring Boot service on Kubernetes (the
	// default): it takes BackendStartup to start before it registers,
	// stops gracefully on SIGTERM (stops accepting, finishes the requests
	// in flight, deregisters last) or dies at once where a mode kills it
	// (SIGKILL: its registration stays until its ZooKeeper session
	// expires), and comes back on a new address (a new port) with a new
	// registration id.
	BackendJVM Backend = "jvm"
	// BackendFast starts in milliseconds, stops at once on SIGTERM
	// (cutting its requests in flight, its session closed) and comes back
	// on the same address.
	BackendFast Backend = "fast"
)

// ParseBackend parses --backend.
func ParseBackend(s string) (Backend, error) {
	switch b := Backend(strings.ToLower(strings.TrimSpace(s))); b {
	case BackendJVM, BackendFast:
		return b, nil
	}
	return "", fmt.Errorf("unknown backend %q (backends: jvm, fast)", s)
}

// DefaultStartup is the jvm backends' start-up time: 3 s, 2 s with
// --quick.
func DefaultStartup(quick bool) time.Duration {
	if quick {
		return 2 * time.Second
	}
	return 3 * time.Second
}

// Options configure Run.
type Options struct {
	// ZooKeeper is the ensemble to use (host:port each); empty starts a
	// local standalone server from Debian's zookeeper package.
	ZooKeeper []string
	// Quick shortens the run (QuickTiming).
	Quick bool
	// Modes to run; default all.
	Modes []Mode
	// Backend is how the sample backends behave; default BackendJVM.
	Backend Backend
	// BackendStartup is the jvm backends' start-up time; default
	// DefaultStartup(Quick). Ignored by the fast backends.
	BackendStartup time.Duration
	// JSONPath, when set, receives the report as JSON.
	JSONPath string
	// Keep leaves a stack running after the table, printing its URLs,
	// until ctx ends: the zkgate mode's when it ran, else the last mode's.
	Keep bool
	// Binary is the zkgate executable the backends run as
	// (`zkgate sample-backend`). Required.
	Binary string
	// Dir holds the run's files (configurations, logs, ZooKeeper data).
	// Default: a temporary directory, removed at the end unless the run
	// failed.
	Dir string
	// Out receives the table (and, with Keep, the URLs).
	Out io.Writer
	// Progress receives progress: bars redrawn in place when Terminal is
	// set, plain lines otherwise. Nil: none.
	Progress io.Writer
	Terminal bool
	// Logger receives the components' logs (gateway, controller, rollout);
	// default: Dir/demo.log.
	Logger *slog.Logger
	// Now is the clock for the report's date; default time.Now.
	Now func() time.Time

	// Load and Timing override the fixed mix and the timings (tests use
	// them to run shorter; the CLI does not expose them).
	Load   *LoadSpec
	Timing *Timing
}

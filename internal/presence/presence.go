// Package presence is how gateways tell the controller what they have
// applied: each gateway keeps an ephemeral node /zkgate/gateways/<id> whose
// content is a Report, rewritten promptly (at a bounded rate) whenever the
// marks it applies or the in-flight counts of marked instances change, and
// at every heartbeat. The controller follows every report to confirm
// drains.
package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/instancestate"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktree"
)

// Dir returns the presence directory under zkgate's root.
func Dir(zkRoot string) string { return path.Join(zkRoot, "gateways") }

// Report is the content of a gateway's presence node (a contract between
// gateway and controller versions: add fields, never change these).
type Report struct {
	ID          string `json:"id"`
	Listen      string `json:"listen"`
	AdminListen string `json:"admin_listen"`
	Version     string `json:"version"`
	StartedMs   int64  `json:"started_ms"`
	// BootID is random per gateway process: with StartedMs it tells the
	// process that wrote the report from a later one on the same admin
	// address (see Identity and ProbeAdmin).
	BootID    string `json:"boot_id,omitempty"`
	UpdatedMs int64  `json:"updated_ms"`
	// RegistryRevision and MarksRevision are the gateway's local revisions
	// of the snapshots it routes by (for display: they are not comparable
	// across gateways).
	RegistryRevision uint64 `json:"registry_revision"`
	MarksRevision    uint64 `json:"marks_revision"`
	// Marks lists every mark the gateway has applied, with the in-flight
	// count of its instance at this gateway.
	Marks []AppliedMark `json:"marks"`
	// Leaving is written just before a gateway deletes its node on
	// graceful shutdown.
	Leaving bool `json:"leaving"`

	// Session is the presence node's ephemeral owner (from its stat, not
	// its content).
	Session int64 `json:"-"`
	// Malformed is set (controller side, never written) when the node
	// could not be decoded: the Watcher keeps such a gateway as a
	// placeholder with only ID, Session and UpdatedMs (the node's mtime)
	// filled in, so that a gateway of an incompatible version is never
	// mistaken for an absent one. It says why the node is unreadable.
	Malformed string `json:"-"`
}

// AppliedMark is one mark as a gateway applies it: the presence report
// holds the type the controller API shows (ctlclient.AppliedMark).
type AppliedMark = ctlclient.AppliedMark

// AppliedMark states beyond the gateway's instance states.
const (
	// StateAbsent: the gateway routes the service but has no registration
	// of the address.
	StateAbsent = instancestate.Absent
	// StateUnrouted: the gateway has no route for the service.
	StateUnrouted = instancestate.Unrouted
	// StateFailOpen: the mark applies, but the gateway still sends the
	// instance new requests because every instance of the service is
	// marked. A drain is not confirmed at such a gateway.
	StateFailOpen = instancestate.FailOpen
)

// Quiesced reports whether a gateway in state sends the instance nothing
// new because of the mark: it applies it (drained or draining), or never
// routes the address (absent, unrouted).
func Quiesced(state string) bool {
	switch state {
	case instancestate.Draining, instancestate.Drained, StateAbsent, StateUnrouted:
		return true
	}
	return false
}

// Find returns the applied mark for service/addr.
func (r *Report) Find(service, addr string) (AppliedMark, bool) {
	for _, m := range r.Marks {
		if m.Service == service && m.Addr == addr {
			return m, true
		}
	}
	return AppliedMark{}, false
}

// Watcher follows every gateway's presence report (controller side).
//
// Besides the live reports it remembers departures: gateways whose
// presence node disappeared, for DepartedWindow after it was seen gone.
// A node goes away when its gateway shuts down (then its last report
// normally says leaving) or when its session expires, for example because
// the gateway is partitioned from ZooKeeper — and a partitioned gateway
// may keep routing by its last state for a while (gateway.stale_after).
type Watcher struct {
	tree   *zktree.Tree[Report, map[string]Report]
	log    *slog.Logger
	window time.Duration
	now    func() time.Time

	probe         ProbeFunc
	probeInterval time.Duration
	probeTimeout  time.Duration
	probed        chan struct{} // a departure was found gone

	mu       sync.Mutex
	prev     map[string]Report    // the reports of the last build
	departed map[string]Departure // by id
	badSeen  map[string]int64     // id → mzxid of a malformed node already logged
	runCtx   context.Context      // Run's, for the probes (nil outside Run)
	probes   sync.WaitGroup
}

// Departure is a gateway whose presence node disappeared and has not come
// back since.
type Departure struct {
	ID string
	// Session owned the node that disappeared.
	Session int64
	// At is when the watcher saw the node gone (its own clock).
	At time.Time
	// Leaving: the last report seen before the node disappeared said the
	// gateway was shutting down gracefully. When false the gateway may
	// have lost its session while it still routes (or its leaving report
	// was never seen: the watcher reads at most the latest version).
	Leaving bool
	// Last is the last report seen.
	Last Report
	// Gone is set, saying why, once a probe found that the process behind
	// the node no longer runs (WatcherOptions.Probe): it routes nothing,
	// so drains need not wait for it. Never set when Leaving.
	Gone string
	// Probe is what the last probe that found no such evidence saw.
	Probe string
}

// MayRoute reports whether the departed gateway may still route by its
// last state: it did not shut down gracefully and no probe found its
// process gone.
func (d Departure) MayRoute() bool { return !d.Leaving && d.Gone == "" }

// DefaultDepartedWindow is the default WatcherOptions.DepartedWindow.
const DefaultDepartedWindow = 60 * time.Second

// Defaults of the departure probes.
const (
	DefaultProbeInterval = time.Second
	DefaultProbeTimeout  = 2 * time.Second
)

// WatcherOptions configure a Watcher.
type WatcherOptions struct {
	ZKRoot         string
	ResyncInterval time.Duration
	// DepartedWindow is how long a departure is remembered. Default
	// DefaultDepartedWindow.
	DepartedWindow time.Duration
	// Now is the clock of departures; default time.Now.
	Now func() time.Time
	// Probe, when set, is asked about every departure without a leaving
	// report, at once and then every ProbeInterval within the window,
	// until it says the process is gone (typically ProbeAdmin).
	Probe ProbeFunc
	// ProbeInterval is the pause between two probes of one departure;
	// default DefaultProbeInterval.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe; default DefaultProbeTimeout.
	ProbeTimeout time.Duration
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
}

// NewWatcher returns a watcher; call Run.
func NewWatcher(sess *zksession.Session, opts WatcherOptions) *Watcher {
	if opts.DepartedWindow <= 0 {
		opts.DepartedWindow = DefaultDepartedWindow
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = DefaultProbeTimeout
	}
	w := &Watcher{
		log:           opts.Logger.With("component", "presence-watcher"),
		window:        opts.DepartedWindow,
		now:           opts.Now,
		probe:         opts.Probe,
		probeInterval: opts.ProbeInterval,
		probeTimeout:  opts.ProbeTimeout,
		probed:        make(chan struct{}, 1),
		departed:      map[string]Departure{},
		badSeen:       map[string]int64{},
	}
	w.tree = zktree.New(sess, zktree.Options[Report, map[string]Report]{
		Root:  Dir(opts.ZKRoot),
		Flat:  true,
		Parse: w.parse,
		Build: func(_ string, rs []Report) (map[string]Report, bool) {
			out := make(map[string]Report, len(rs))
			for _, r := range rs {
				out[r.ID] = r
			}
			w.noteBuild(out)
			return out, true
		},
		Watch:          true,
		ResyncInterval: opts.ResyncInterval,
		MetricsPrefix:  "zkgate_presence",
		Logger:         opts.Logger,
		Registerer:     opts.Registerer,
	})
	return w
}

// parse decodes a presence node. A node that cannot be decoded (a gateway
// of an incompatible version, a node written by hand) is not dropped: it
// becomes a placeholder Report with Malformed set, so the controller never
// takes that gateway for one that is gone (and confirms drains without
// it). It never returns an error.
func (w *Watcher) parse(_, id string, data []byte, st *zksession.Stat) (Report, error) {
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		w.noteMalformed(id, st.Mzxid, err)
		return Report{
			ID: id, Session: st.EphemeralOwner, UpdatedMs: st.Mtime,
			Malformed: fmt.Sprintf("cannot decode the presence report: %v", err),
		}, nil
	}
	r.ID = id
	r.Session = st.EphemeralOwner
	r.Malformed = ""
	return r, nil
}

// noteMalformed logs a malformed node once per version.
func (w *Watcher) noteMalformed(id string, mzxid int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.badSeen[id] == mzxid {
		return
	}
	w.badSeen[id] = mzxid
	w.log.Warn("cannot decode a gateway's presence report: drains are not confirmed while it is live",
		"gateway", id, "mzxid", mzxid, "err", err)
}

// noteBuild records, from every new set of reports (the tree calls Build
// with all of them on every change), which gateways went away since the
// previous set and which came back.
func (w *Watcher) noteBuild(cur map[string]Report) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, r := range w.prev {
		if _, ok := cur[id]; ok {
			continue
		}
		d := Departure{ID: id, Session: r.Session, At: now, Leaving: r.Leaving, Last: r}
		w.departed[id] = d
		switch {
		case r.Leaving:
			w.log.Info("gateway left (graceful shutdown)", "gateway", id)
		case w.probe != nil && w.runCtx != nil:
			w.log.Warn("gateway's presence node disappeared without a graceful shutdown: it may still route by its last state; drains are not confirmed until it comes back, its process is found gone, or the window passes",
				"gateway", id, "session", fmt.Sprintf("0x%x", r.Session), "admin", r.AdminListen, "window", w.window)
			w.probes.Add(1)
			go w.probeDeparture(w.runCtx, d)
		default:
			w.log.Warn("gateway's presence node disappeared without a graceful shutdown: it may still route by its last state; drains are not confirmed until it comes back or the window passes",
				"gateway", id, "session", fmt.Sprintf("0x%x", r.Session), "window", w.window)
		}
	}
	for id := range cur {
		delete(w.departed, id)
	}
	for id, d := range w.departed {
		if now.Sub(d.At) >= w.window {
			delete(w.departed, id)
		}
	}
	for id := range w.badSeen {
		if _, ok := cur[id]; !ok {
			delete(w.badSeen, id)
		}
	}
	w.prev = cur
}

// Run follows the reports, and probes departures, until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	w.mu.Lock()
	w.runCtx = ctx
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.runCtx = nil
		w.mu.Unlock()
		w.probes.Wait()
	}()
	return w.tree.Run(ctx)
}

// probeDeparture asks the probe about d, at once and then every
// probeInterval, until the process is found gone, the departure ends (the
// gateway came back, or left the window) or ctx ends. A probe's verdict
// is recorded only while d is still the current departure of its id.
func (w *Watcher) probeDeparture(ctx context.Context, d Departure) {
	defer w.probes.Done()
	for {
		pctx, cancel := context.WithTimeout(ctx, w.probeTimeout)
		res := w.probe(pctx, d)
		cancel()
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		cur, ok := w.departed[d.ID]
		current := ok && cur.Session == d.Session && cur.At.Equal(d.At)
		if current {
			if res.Gone {
				cur.Gone = res.Detail
			} else {
				cur.Probe = res.Detail
			}
			w.departed[d.ID] = cur
		}
		w.mu.Unlock()
		if !current {
			return
		}
		if res.Gone {
			w.log.Info("departed gateway's process is gone: drains no longer wait for it",
				"gateway", d.ID, "why", res.Detail, "after", w.now().Sub(d.At).Round(time.Millisecond))
			select {
			case w.probed <- struct{}{}:
			default:
			}
			return
		}
		if w.now().Sub(d.At) >= w.window {
			return
		}
		t := time.NewTimer(w.probeInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Probed is signalled when a probe found a departed gateway's process
// gone (Departure.Gone), so that waiting drains look again.
func (w *Watcher) Probed() <-chan struct{} { return w.probed }

// Gateways returns the live gateways' reports by id (nil before the first
// read). A gateway whose node cannot be decoded is included as a
// placeholder with Malformed set.
func (w *Watcher) Gateways() map[string]Report {
	s := w.tree.Snapshot()
	if s == nil {
		return nil
	}
	return s.Groups[""]
}

// Departed returns, by id, the gateways whose presence node disappeared
// less than DepartedWindow ago (as this watcher saw it) and has not come
// back since. A watcher knows only the departures it saw: those before it
// loaded are unknown to it.
func (w *Watcher) Departed() map[string]Departure {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]Departure, len(w.departed))
	for id, d := range w.departed {
		if now.Sub(d.At) < w.window {
			out[id] = d
		}
	}
	return out
}

// DepartedWindow is how long departures are remembered.
func (w *Watcher) DepartedWindow() time.Duration { return w.window }

// Loaded reports whether the first full read completed.
func (w *Watcher) Loaded() bool { return w.tree.Snapshot() != nil }

// Updates is signalled after every new snapshot of the reports.
func (w *Watcher) Updates() <-chan struct{} { return w.tree.Updates() }

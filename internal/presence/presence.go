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
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zkgate/zkgate/internal/component"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/instancestate"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktree"
)

// AdminTarget returns the address a controller asks for the gateway's
// admin endpoints (identity probes, traffic polls): AdminAddr when set,
// else AdminListen, unless that names no host to ask.
func (r *Report) AdminTarget() (string, error) {
	if r.AdminAddr != "" {
		return r.AdminAddr, nil
	}
	addr := r.AdminListen
	if addr == "" {
		return "", errors.New("its report names no admin address")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("admin address %q: %v", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "", fmt.Errorf("admin address %s listens on every interface and the gateway advertises no other (gateway.admin_advertise): the controller cannot tell which host to ask", addr)
	}
	return addr, nil
}

// Dir returns the presence directory under zkgate's root.
func Dir(zkRoot string) string { return path.Join(zkRoot, "gateways") }

// Report is the content of a gateway's presence node (a contract between
// gateway and controller versions: add fields, never change these).
type Report struct {
	ID          string `json:"id"`
	Listen      string `json:"listen"`
	AdminListen string `json:"admin_listen"`
	// AdminAddr is where controllers reach the admin endpoints when
	// AdminListen names no host (bound to every interface):
	// gateway.admin_advertise, else the admin port on the address the
	// gateway's ZooKeeper connection leaves from. Empty when AdminListen
	// names its host.
	AdminAddr string `json:"admin_addr,omitempty"`
	Version   string `json:"version"`
	StartedMs int64  `json:"started_ms"`
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

	probe          ProbeFunc
	probeInterval  time.Duration
	probeTimeout   time.Duration
	probed         chan struct{} // a departure was found gone
	verify         VerifyFunc
	verifyInterval time.Duration
	reverify       time.Duration

	mu       sync.Mutex
	prev     map[string]Report    // the reports of the last build
	departed map[string]Departure // by id
	badSeen  map[string]int64     // id → mzxid of a malformed node already logged
	// trusted maps a gateway id to the trustKey at which its identity was
	// seen while it was live (Verify); verifying holds the id|trustKey
	// pairs being verified; verifyNote the last failed verification's
	// error by id.
	trusted    map[string]string
	pinned     map[string]string // id → the ip:port that answered at its trusted target
	verifying  map[string]bool
	verifyNote map[string]string
	runCtx     context.Context // Run's, for the probes (nil outside Run)
	probes     sync.WaitGroup
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
	// ProbeAddr is the ip:port at which the gateway's process was seen
	// answering while it was live (WatcherOptions.Verify): the probe asks
	// it rather than resolving a name again. Empty: its admin target.
	ProbeAddr string
}

// MayRoute reports whether the departed gateway may still route by its
// last state: it did not shut down gracefully and no probe found its
// process gone.
func (d Departure) MayRoute() bool { return !d.Leaving && d.Gone == "" }

// DefaultDepartedWindow is the default WatcherOptions.DepartedWindow.
const DefaultDepartedWindow = 60 * time.Second

// Defaults of the departure probes.
const (
	DefaultProbeInterval  = time.Second
	DefaultProbeTimeout   = 2 * time.Second
	DefaultVerifyInterval = 5 * time.Second
	DefaultReverify       = 2 * time.Minute
)

// VerifyFunc checks that a live gateway's admin target (Report.AdminTarget)
// answers as the process that wrote r, and returns the ip:port that
// answered (a name resolved), which a probe of its departure asks. It
// must return when ctx ends.
type VerifyFunc func(ctx context.Context, r Report) (string, error)

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
	// ProbeTimeout bounds one probe (and one verification); default
	// DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// Verify, when set, is asked about every live gateway,
	// again every VerifyInterval until it answers nil. A departure is
	// probed only when its gateway's identity was seen at its admin
	// target while it was live and no other live gateway names the same
	// target: otherwise a refusal there could come from another machine
	// (a loopback or NATed address, a name shared by several gateways)
	// and release drains falsely. Typically VerifyAdmin. Nil: every
	// departure is probed.
	Verify VerifyFunc
	// VerifyInterval is the pause after a live gateway's verification
	// failed, doubling with each failure up to a minute; default
	// DefaultVerifyInterval.
	VerifyInterval time.Duration
	// Reverify is how often a trusted live gateway is verified again (its
	// address may have moved to another machine); a failure withdraws the
	// trust until a verification succeeds again. Default DefaultReverify.
	Reverify   time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
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
	if opts.Reverify <= 0 {
		opts.Reverify = DefaultReverify
	}
	if opts.VerifyInterval <= 0 {
		opts.VerifyInterval = DefaultVerifyInterval
	}
	w := &Watcher{
		log:            opts.Logger.With("component", "presence-watcher"),
		window:         opts.DepartedWindow,
		now:            opts.Now,
		probe:          opts.Probe,
		probeInterval:  opts.ProbeInterval,
		probeTimeout:   opts.ProbeTimeout,
		probed:         make(chan struct{}, 1),
		verify:         opts.Verify,
		verifyInterval: opts.VerifyInterval,
		reverify:       opts.Reverify,
		departed:       map[string]Departure{},
		badSeen:        map[string]int64{},
		trusted:        map[string]string{},
		pinned:         map[string]string{},
		verifying:      map[string]bool{},
		verifyNote:     map[string]string{},
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
		probing := w.probe != nil && w.runCtx != nil && !r.Leaving
		var unprobeable string
		if probing {
			unprobeable = w.unprobeableLocked(id, r, w.prev, cur)
		}
		switch {
		case r.Leaving:
			w.log.Info("gateway left (graceful shutdown)", "gateway", id)
		case probing && unprobeable != "":
			d.Probe = "not probed: " + unprobeable
			w.departed[id] = d
			w.log.Warn("gateway's presence node disappeared without a graceful shutdown: it may still route by its last state; drains are not confirmed until it comes back or the window passes (its admin address is not probed)",
				"gateway", id, "session", fmt.Sprintf("0x%x", r.Session), "why", d.Probe, "window", w.window)
		case probing:
			if w.verify != nil {
				d.ProbeAddr = w.pinned[id]
				w.departed[id] = d
			}
			w.log.Warn("gateway's presence node disappeared without a graceful shutdown: it may still route by its last state; drains are not confirmed until it comes back, its process is found gone, or the window passes",
				"gateway", id, "session", fmt.Sprintf("0x%x", r.Session), "admin", r.AdminListen, "window", w.window)
			w.probes.Add(1)
			go w.probeDeparture(w.runCtx, d)
		default:
			w.log.Warn("gateway's presence node disappeared without a graceful shutdown: it may still route by its last state; drains are not confirmed until it comes back or the window passes",
				"gateway", id, "session", fmt.Sprintf("0x%x", r.Session), "window", w.window)
		}
	}
	for id, r := range cur {
		delete(w.departed, id)
		w.startVerifyLocked(id, r)
	}
	for id := range w.trusted {
		if _, live := cur[id]; !live {
			if _, gone := w.departed[id]; !gone {
				delete(w.trusted, id)
				delete(w.pinned, id)
				delete(w.verifyNote, id)
			}
		}
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

// trustKey is what a verification of r vouches for: its process (boot id)
// at its admin target; "" when r names no target, or no boot id (then a
// verification of one process would vouch for a later one at the same
// target).
func trustKey(r Report) string {
	target, err := r.AdminTarget()
	if err != nil || r.BootID == "" {
		return ""
	}
	return r.BootID + "|" + target
}

// unprobeableLocked says why the departure of gateway id, whose last
// report is r, cannot be probed; "" when it can (see
// WatcherOptions.Verify). lives are the live gateways' reports (the
// previous and the current set, when a departure is being noted).
func (w *Watcher) unprobeableLocked(id string, r Report, lives ...map[string]Report) string {
	if w.verify == nil {
		return ""
	}
	target, err := r.AdminTarget()
	if err != nil {
		return err.Error()
	}
	if why := w.sharedLocked(id, target, lives...); why != "" {
		return why
	}
	if r.BootID == "" {
		return "its report has no boot id (a gateway without /admin/identity): its process cannot be told from a later one"
	}
	if w.trusted[id] != trustKey(r) {
		note := w.verifyNote[id]
		if note == "" {
			note = "not asked yet"
		}
		return fmt.Sprintf("its admin address %s was never seen answering as this gateway while it was live (%s)", target, note)
	}
	return ""
}

// sharedLocked names, when there is one, a gateway other than id whose
// admin target is target: live (in lives), or departed within the window.
// A target two gateways named is evidence for neither, even when they go
// at different times: a name or a load balancer that led to each in
// turn can answer "refused" from the first one's dead machine while the
// second still runs (docs/architecture.md#departed-gateways-and-lost-drains).
func (w *Watcher) sharedLocked(id, target string, lives ...map[string]Report) string {
	for _, all := range lives {
		for other, o := range all {
			if t, err := o.AdminTarget(); other != id && err == nil && t == target {
				return fmt.Sprintf("gateway %q names the same admin address %s", other, target)
			}
		}
	}
	if p := w.pinned[id]; p != "" {
		for other, q := range w.pinned {
			if other != id && q == p {
				return fmt.Sprintf("gateway %q was seen at the same admin address %s", other, p)
			}
		}
	}
	now := w.now()
	for other, d := range w.departed {
		if t, err := d.Last.AdminTarget(); other != id && err == nil && t == target && now.Sub(d.At) < w.window {
			return fmt.Sprintf("gateway %q, departed %s ago, named the same admin address %s", other, now.Sub(d.At).Round(time.Millisecond), target)
		}
	}
	return ""
}

// ProbeReady reports whether the departure of live gateway id would be
// probed now, and if not why (see WatcherOptions.Verify).
func (w *Watcher) ProbeReady(id string) (bool, string) {
	if w.probe == nil {
		return false, "departures are not probed (controller.probe_departed: false)"
	}
	return w.AdminTrusted(id)
}

// AdminTrusted reports whether live gateway id's admin target is known to
// be its own — Verify saw its process answer there, and no other live
// gateway names it — and if not why. Without Verify every target is
// trusted.
func (w *Watcher) AdminTrusted(id string) (bool, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.prev[id]
	if !ok {
		return false, "not live"
	}
	why := w.unprobeableLocked(id, r, w.prev)
	return why == "", why
}

// startVerifyLocked starts verifying live gateway id's report r unless it
// is verified or being verified.
func (w *Watcher) startVerifyLocked(id string, r Report) {
	if w.verify == nil || w.runCtx == nil || r.Malformed != "" {
		return
	}
	key := trustKey(r)
	if w.trusted[id] != key {
		// The report names another process or address: what was verified
		// before vouches for nothing now, even if it comes back.
		delete(w.trusted, id)
		delete(w.pinned, id)
	}
	if key == "" || w.verifying[id+"|"+key] {
		return
	}
	w.verifying[id+"|"+key] = true
	w.probes.Add(1)
	go w.verifyLive(w.runCtx, id, r, key)
}

// verifyLive asks Verify about live gateway id's report r — with backoff
// until it answers nil (the gateway is then trusted at key), then again
// every Reverify, withdrawing the trust when it fails — until the
// gateway's report names another process or target, it goes away, or ctx
// ends.
func (w *Watcher) verifyLive(ctx context.Context, id string, r Report, key string) {
	defer w.probes.Done()
	defer func() {
		w.mu.Lock()
		delete(w.verifying, id+"|"+key)
		w.mu.Unlock()
	}()
	pause := w.verifyInterval
	for {
		vctx, cancel := context.WithTimeout(ctx, w.probeTimeout)
		at, err := w.verify(vctx, r)
		cancel()
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		cur, live := w.prev[id]
		still := live && trustKey(cur) == key
		if still && err == nil {
			w.trusted[id] = key
			w.pinned[id] = at
			delete(w.verifyNote, id)
		} else if still {
			if w.trusted[id] == key {
				w.log.Warn("a gateway's admin address no longer answers as the gateway: its departure will not be probed until it does again",
					"gateway", id, "err", err)
			}
			delete(w.trusted, id)
			delete(w.pinned, id)
			w.verifyNote[id] = err.Error()
		}
		w.mu.Unlock()
		if !still {
			return
		}
		wait := pause
		if err == nil {
			wait, pause = w.reverify, w.verifyInterval
		}
		if component.Sleep(ctx, wait) != nil {
			return
		}
		if err != nil {
			pause = min(2*pause, maxVerifyInterval)
		}
	}
}

// maxVerifyInterval bounds the backoff of a live gateway's verification
// that keeps failing.
const maxVerifyInterval = time.Minute

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
		shared := ""
		if target, err := d.Last.AdminTarget(); current && w.verify != nil && err == nil {
			// Another gateway that names the target since the departure
			// may be what answered (or refused) there.
			shared = w.sharedLocked(d.ID, target, w.prev)
		}
		if current && shared != "" {
			cur.Probe = "not probed: " + shared
			w.departed[d.ID] = cur
			w.mu.Unlock()
			w.log.Warn("departed gateway's admin address is named by another gateway now: no longer probed",
				"gateway", d.ID, "why", shared)
			return
		}
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
		if component.Sleep(ctx, w.probeInterval) != nil {
			return
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

package presence

import (
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zksession"
)

// A presence node that cannot be decoded is kept as a placeholder naming
// the gateway and the error, never dropped.
func TestWatcherParseKeepsMalformedGateway(t *testing.T) {
	w := NewWatcher(nil, WatcherOptions{ZKRoot: "/zkgate"})
	st := &zksession.Stat{EphemeralOwner: 0x42, Mzxid: 7, Mtime: 1234}
	r, err := w.parse("", "gw-new", []byte(`{"id":"gw-new","marks":{"not":"a list"}}`), st)
	if err != nil {
		t.Fatalf("parse returned an error (the tree would drop the gateway): %v", err)
	}
	if r.ID != "gw-new" || r.Session != 0x42 || r.UpdatedMs != 1234 || !strings.Contains(r.Malformed, "cannot decode") {
		t.Fatalf("placeholder %+v", r)
	}
	if _, ok := r.Find("orders", "10.0.0.5:8080"); ok {
		t.Fatal("a placeholder applies no mark")
	}
	good, err := w.parse("", "gw-1", []byte(`{"id":"x","marks":[{"service":"orders","addr":"10.0.0.5:8080","mzxid":3,"state":"drained"}],"leaving":true}`), st)
	if err != nil || good.ID != "gw-1" || good.Malformed != "" || !good.Leaving || len(good.Marks) != 1 {
		t.Fatalf("well-formed report: %+v %v", good, err)
	}
}

// The watcher remembers gateways whose node disappeared for the window,
// tells a graceful shutdown (last report leaving) from a lost session,
// forgets a departure when the gateway comes back or the window passes.
func TestWatcherDepartures(t *testing.T) {
	now := time.Unix(1000, 0)
	w := NewWatcher(nil, WatcherOptions{ZKRoot: "/zkgate", DepartedWindow: time.Minute, Now: func() time.Time { return now }})
	w.noteBuild(map[string]Report{
		"gw-1": {ID: "gw-1", Session: 1},
		"gw-2": {ID: "gw-2", Session: 2},
		"gw-3": {ID: "gw-3", Session: 3, Leaving: true},
		"gw-4": {ID: "gw-4", Session: 4, Malformed: "cannot decode"},
	})
	if d := w.Departed(); len(d) != 0 {
		t.Fatalf("departures before any: %+v", d)
	}
	now = now.Add(time.Second)
	w.noteBuild(map[string]Report{"gw-1": {ID: "gw-1", Session: 1}})
	d := w.Departed()
	if len(d) != 3 || d["gw-2"].Leaving || !d["gw-3"].Leaving || d["gw-4"].Leaving ||
		d["gw-2"].Session != 2 || !d["gw-2"].At.Equal(now) {
		t.Fatalf("departures %+v", d)
	}
	// gw-2 comes back with a new session: no longer departed.
	now = now.Add(time.Second)
	w.noteBuild(map[string]Report{"gw-1": {ID: "gw-1", Session: 1}, "gw-2": {ID: "gw-2", Session: 9}})
	if d := w.Departed(); len(d) != 2 || d["gw-3"].ID == "" || d["gw-4"].ID == "" {
		t.Fatalf("departures after gw-2 came back: %+v", d)
	}
	// The window passes.
	now = now.Add(time.Minute)
	if d := w.Departed(); len(d) != 0 {
		t.Fatalf("departures after the window: %+v", d)
	}
	w.noteBuild(map[string]Report{"gw-1": {ID: "gw-1", Session: 1}, "gw-2": {ID: "gw-2", Session: 9}})
	w.mu.Lock()
	n := len(w.departed)
	w.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d departures kept after the window", n)
	}
}

package marks

import (
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/registry"
)

// The rule of README.md, "ZooKeeper layout (contract)": a mark is ended by
// a registration created after it (zxid order) that is not the drained
// registration re-created after a session flap (same incarnation).
func TestAppliesToFlapAndRestart(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	m := Mark{Addr: "h:1", Mzxid: 100, ExpiresMs: now.UnixMilli() + 1000, Incarnation: "u-1@5"}
	old := Mark{Addr: "h:1", Mzxid: 100} // written before marks recorded an incarnation
	for _, tc := range []struct {
		name      string
		in        registry.Instance
		m         Mark
		applies   bool
		endedByIn bool
	}{
		{"the drained registration", registry.Instance{Addr: "h:1", Czxid: 50, Incarnation: "u-1@5"}, m, true, false},
		{"an older other registration", registry.Instance{Addr: "h:1", Czxid: 50, Incarnation: "u-0@1"}, m, true, false},
		{"re-created after a flap", registry.Instance{Addr: "h:1", Czxid: 150, Incarnation: "u-1@5"}, m, true, false},
		{"a restart: new id", registry.Instance{Addr: "h:1", Czxid: 150, Incarnation: "u-2@9"}, m, false, true},
		{"a restart: same id, new time", registry.Instance{Addr: "h:1", Czxid: 150, Incarnation: "u-1@9"}, m, false, true},
		{"a registration that cannot tell", registry.Instance{Addr: "h:1", Czxid: 150}, m, false, true},
		{"an old mark, newer registration", registry.Instance{Addr: "h:1", Czxid: 150, Incarnation: "u-1@5"}, old, false, true},
		{"an old mark, older registration", registry.Instance{Addr: "h:1", Czxid: 50, Incarnation: "u-1@5"}, old, true, false},
		{"another address", registry.Instance{Addr: "h:2", Czxid: 50, Incarnation: "u-1@5"}, m, false, false},
	} {
		if got := tc.m.AppliesTo(tc.in, now); got != tc.applies {
			t.Errorf("%s: AppliesTo = %v", tc.name, got)
		}
		if got := tc.m.EndedBy(tc.in); got != tc.endedByIn {
			t.Errorf("%s: EndedBy = %v", tc.name, got)
		}
	}
	expired := m
	expired.ExpiresMs = now.UnixMilli()
	if expired.AppliesTo(registry.Instance{Addr: "h:1", Czxid: 150, Incarnation: "u-1@5"}, now) {
		t.Error("an expired mark applies")
	}
}

// Marks written before the incarnation fields existed decode, and the
// fields survive an encode/decode round trip.
func TestDecodeOldAndNewMarks(t *testing.T) {
	old, err := Decode("orders", "h:1", []byte(`{"reason":"r","by":"b","created_ms":1,"expires_ms":2,"deploy_id":""}`), 9)
	if err != nil || old.Incarnation != "" || old.Mzxid != 9 || old.Reason != "r" {
		t.Fatalf("old mark: %+v, %v", old, err)
	}
	m := Mark{Reason: "r", Incarnation: "u-1@5", RegCzxid: 42}
	got, err := Decode("orders", "h:1", m.Encode(), 10)
	if err != nil || got.Incarnation != "u-1@5" || got.RegCzxid != 42 {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
}

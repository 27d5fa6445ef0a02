package controller

import (
	"fmt"
	"testing"
)

// Record signals the trimmer only when the trail may hold more than
// limit+slack entries, judged from the new node's sequence number and the
// last listing, without listing.
func TestAuditTrimDue(t *testing.T) {
	a := &auditLog{dir: "/zk/audit", limit: 100, kick: make(chan struct{}, 1)}
	if got := a.slack(); got != 10 {
		t.Fatalf("slack(100) = %d, want 10", got)
	}
	if got := (&auditLog{limit: 3}).slack(); got != 10 {
		t.Fatalf("slack(3) = %d, want 10", got)
	}
	if got := (&auditLog{limit: 1000}).slack(); got != 100 {
		t.Fatalf("slack(1000) = %d, want 100", got)
	}
	kicked := func() bool {
		select {
		case <-a.kick:
			return true
		default:
			return false
		}
	}
	node := func(seq int64) string { return fmt.Sprintf("/zk/audit/e-%010d", seq) }

	// Before any listing: a trim (which lists) is due.
	a.noteCreated(node(0))
	if !kicked() {
		t.Fatal("no trim signalled before the first listing")
	}
	// Listed: 100 entries, the newest numbered 249.
	a.setBase(249, 100)
	for seq := int64(250); seq < 260; seq++ { // entries 101..110
		a.noteCreated(node(seq))
		if kicked() {
			t.Fatalf("trim signalled at entry %d, within limit+slack", seq-250+101)
		}
	}
	a.noteCreated(node(260)) // entry 111
	if !kicked() {
		t.Fatal("no trim signalled past limit+slack")
	}
	// Signals do not pile up: one is pending at most, and Record never blocks.
	a.noteCreated(node(261))
	a.noteCreated(node(262))
	if !kicked() || kicked() {
		t.Fatal("want exactly one pending signal")
	}
	// An unknown outcome settled by re-reading names no node: trim is due.
	a.setBase(299, 50)
	a.noteCreated("")
	if !kicked() {
		t.Fatal("no trim signalled for a node of unknown number")
	}
}

package controller_test

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
)

// pauseZooKeeper freezes the shared server until the returned function (or
// the test's end) resumes it: requests already sent are applied on resume.
func pauseZooKeeper(t *testing.T) (resume func()) {
	t.Helper()
	if err := shared.cluster.Pause(0); err != nil {
		t.Fatalf("pausing ZooKeeper: %v", err)
	}
	var once sync.Once
	resume = func() {
		once.Do(func() {
			if err := shared.cluster.Resume(0); err != nil {
				t.Errorf("resuming ZooKeeper: %v", err)
			}
		})
	}
	t.Cleanup(resume)
	return resume
}

// A write given up after the timeout may still be applied by ZooKeeper
// later. The API says so distinctly (503, "outcome": "unknown") — after
// re-reading the mark, which settles it when the write did land.
func TestWriteOutcomeUnknown(t *testing.T) {
	controller.SetWriteTimeouts(t, 300*time.Millisecond, 300*time.Millisecond)
	e := newEnv(t)
	ctl := e.startController("c1", e.config("", "", 0), controller.Options{})
	drainURL := func(addr string) string { return ctl.URL() + "/v1/services/orders/instances/" + addr + "/drain" }
	// The instances are registered, so that a drain reads nothing from
	// ZooKeeper before its write.
	e.ensure(e.regRoot + "/orders")
	for i, port := range []int{5, 6, 7} {
		p := fmt.Sprintf("%s/orders/i-%d", e.regRoot, i)
		if _, err := e.conn.Create(p, curatorJSON("orders", fmt.Sprintf("i-%d", i), "10.0.0."+strconv.Itoa(port), 8080), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the controller to see the registrations", func() bool {
		v, err := client(t, ctl.URL()).Service(context.Background(), "orders")
		return err == nil && len(v.Instances) == 3
	})
	// A first mark creates the service's directory, so that the marks
	// below are single creates.
	if code, body := api(t, "PUT", drainURL("10.0.0.6:8080"), token, `{"reason":"first"}`); code != http.StatusOK {
		t.Fatalf("first drain: %d %s", code, body)
	}

	// The server answers nothing while the drain waits: the write times
	// out, the re-read too. The answer is "outcome unknown", and indeed
	// the mark appears once the server goes on.
	resume := pauseZooKeeper(t)
	code, body := api(t, "PUT", drainURL("10.0.0.5:8080"), token, `{"reason":"paused"}`)
	resume()
	er := decode[ctlclient.ErrorResponse](t, body)
	if code != http.StatusServiceUnavailable || er.Outcome != ctlclient.OutcomeUnknown || !strings.HasPrefix(er.Error, "outcome unknown") {
		t.Fatalf("drain while ZooKeeper hangs: %d %s", code, body)
	}
	eventually(t, "the mark to appear after the answer", func() bool { return e.markExists("orders", "10.0.0.5:8080") })

	// An undrain that timed out reading the mark sent no delete: its
	// failure is not "outcome unknown", and the mark stays.
	resume = pauseZooKeeper(t)
	code, body = api(t, "DELETE", drainURL("10.0.0.5:8080"), token, "")
	resume()
	er = decode[ctlclient.ErrorResponse](t, body)
	if code != http.StatusServiceUnavailable || er.Outcome != "" {
		t.Fatalf("undrain while ZooKeeper hangs: %d %s", code, body)
	}
	time.Sleep(300 * time.Millisecond)
	if !e.markExists("orders", "10.0.0.5:8080") {
		t.Fatal("the mark went although no delete was sent")
	}

	// When the server goes on while the controller re-reads, the re-read
	// (sent after the write on the same connection) sees the write: the
	// drain succeeds.
	controller.SetWriteTimeouts(t, 300*time.Millisecond, 20*time.Second)
	resume = pauseZooKeeper(t)
	go func() {
		time.Sleep(time.Second)
		resume()
	}()
	code, body = api(t, "PUT", drainURL("10.0.0.7:8080"), token, `{"reason":"late"}`)
	if code != http.StatusOK {
		t.Fatalf("drain whose write landed late: %d %s", code, body)
	}
	if resp := decode[ctlclient.DrainResponse](t, body); resp.Mark.Mzxid == 0 || resp.Mark.Reason != "late" {
		t.Fatalf("answer %s", body)
	}
}

// zkWatchers counts the watch channels the client library holds for p on
// the session's connection (they are released only when p changes).
func zkWatchers(t *testing.T, sess *zksession.Session, p string) int {
	t.Helper()
	sf := reflect.ValueOf(sess).Elem().FieldByName("conn")
	conn := reflect.NewAt(sf.Type(), unsafe.Pointer(sf.UnsafeAddr())).Elem().Interface().(*zk.Conn)
	cv := reflect.ValueOf(conn).Elem()
	lf := cv.FieldByName("watchersLock")
	mu := (*sync.Mutex)(unsafe.Pointer(lf.UnsafeAddr()))
	mu.Lock()
	defer mu.Unlock()
	wf := cv.FieldByName("watchers")
	n := 0
	for it := wf.MapRange(); it.Next(); {
		if it.Key().FieldByName("path").String() == p {
			n += it.Value().Len()
		}
	}
	return n
}

// waitState waits until the session is in state st.
func waitState(t *testing.T, sess *zksession.Session, st zksession.State) {
	t.Helper()
	eventually(t, "session "+st.String(), func() bool { s, _ := sess.State(); return s == st })
}

// The election loops come back after every session state change; the
// watches they arm on the predecessor (follower) and on their own node
// (leader) must not pile up in the client library: at most one per node.
func TestElectionWatchesDoNotPileUp(t *testing.T) {
	e := newEnv(t)
	p1, p2 := zktest.NewPartitioner(), zktest.NewPartitioner()
	t.Cleanup(p1.Restore)
	t.Cleanup(p2.Restore)
	c1 := e.startController("c1", e.config("", "", 6*time.Second), controller.Options{Dialer: p1.Dialer()})
	eventually(t, "c1 to lead", c1.IsLeader)
	c2 := e.startController("c2", e.config("", "", 6*time.Second), controller.Options{Dialer: p2.Dialer()})
	eventually(t, "c2 to follow c1", func() bool {
		l, err := client(t, c2.URL()).Leader(context.Background())
		return err == nil && l.Leader == "c1"
	})
	names, _, err := e.conn.Children(e.zkRoot + "/leader")
	if err != nil || len(names) != 2 {
		t.Fatalf("election nodes %v %v", names, err)
	}
	sort.Slice(names, func(i, j int) bool {
		return names[i][strings.LastIndexByte(names[i], '_'):] < names[j][strings.LastIndexByte(names[j], '_'):]
	})
	leaderNode := e.zkRoot + "/leader/" + names[0]
	eventually(t, "c2's watch on c1's node", func() bool { return zkWatchers(t, c2.Session(), leaderNode) == 1 })
	eventually(t, "c1's watch on its own node", func() bool { return zkWatchers(t, c1.Session(), leaderNode) == 1 })

	// Short disconnections (the sessions survive): each makes both loops
	// go round again.
	for i := 0; i < 3; i++ {
		p1.Cut()
		p2.Cut()
		waitState(t, c1.Session(), zksession.StateSuspended)
		waitState(t, c2.Session(), zksession.StateSuspended)
		p1.Restore()
		p2.Restore()
		waitState(t, c1.Session(), zksession.StateConnected)
		waitState(t, c2.Session(), zksession.StateConnected)
		eventually(t, "c1 to lead again", c1.IsLeader)
	}
	time.Sleep(500 * time.Millisecond) // let the loops arm what they would
	if n := zkWatchers(t, c2.Session(), leaderNode); n != 1 {
		t.Errorf("c2 holds %d watches on its predecessor, want 1", n)
	}
	if n := zkWatchers(t, c1.Session(), leaderNode); n != 1 {
		t.Errorf("c1 holds %d watches on its own node, want 1", n)
	}
	// The one watch still works: c2 takes over when c1 goes.
	c1.Close()
	eventually(t, "c2 to take over", c2.IsLeader)
}

// Reconciliation's freshness check counts full re-reads: a revision
// published by a watch event is not one.
func TestResyncProgressCountsFullRereads(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	cfg := e.config("reconcile_interval: 1h\n", "", 0)
	cfg.Registry.ResyncInterval = time.Hour
	ctl := e.startController("c1", cfg, controller.Options{})
	eventually(t, "c1 to lead and reconcile once", func() bool {
		r, m := controller.ResyncProgress(ctl)
		return ctl.IsLeader() && r >= 2 && m >= 2
	})
	time.Sleep(200 * time.Millisecond)
	r0, m0 := controller.ResyncProgress(ctl)
	rev0 := ctl.Registry().Snapshot().Revision
	e.register("orders", "a-1", a)
	eventually(t, "the registration in the cache", func() bool {
		_, ok := ctl.Registry().Snapshot().Lookup("orders", a.addr)
		return ok
	})
	if r, m := controller.ResyncProgress(ctl); r != r0 || m != m0 || ctl.Registry().Snapshot().Revision <= rev0 {
		t.Fatalf("after a watch event: resyncs %d/%d (before %d/%d), revision %d (before %d)",
			r, m, r0, m0, ctl.Registry().Snapshot().Revision, rev0)
	}
	ctl.Registry().Resync()
	ctl.Marks().Resync()
	eventually(t, "both caches to count a full re-read", func() bool {
		r, m := controller.ResyncProgress(ctl)
		return r == r0+1 && m == m0+1
	})
}

package gateway

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/config"
)

// A client that sends its body slowly cannot hold a drain: once the mark
// applies, its request gets gateway.drain_cutoff, then it is cut and
// leaves the in-flight count.
func TestDrainCutsSlowClients(t *testing.T) {
	b := newBackend(t, "b", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	})
	failOpen := false // one instance: it must not be failed open to
	tg := newTestGateway(t, config.Gateway{DrainCutoff: 300 * time.Millisecond, FailOpen: &failOpen, Routes: []config.Route{rte("/", "s")}}, Options{})
	tg.Update(regSnap(1, inst("s", b.addr(), 1)), nil)
	conn, _ := semDial(t, tg.front.Addr)
	semWrite(t, conn, "POST /upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 100000\r\n\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() { // one byte every 50 ms: well within the body timeout
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	eventually(t, "the slow upload in flight", func() bool { return tg.InFlight() == 1 })
	time.Sleep(500 * time.Millisecond) // longer than the cutoff, before any drain: nothing is cut
	if tg.InFlight() != 1 {
		t.Fatal("a request to an instance in rotation was cut")
	}
	tg.Update(regSnap(1, inst("s", b.addr(), 1)), markSnap(1, mark("s", b.addr(), 2)))
	if st := tg.status(t, b.addr()); st.State != "draining" {
		t.Fatalf("state %q, want draining", st.State)
	}
	eventually(t, "the slow upload cut after the drain cutoff", func() bool { return tg.InFlight() == 0 })
	if st := tg.status(t, b.addr()); st.State != "drained" {
		t.Fatalf("state %q, want drained", st.State)
	}
	if n := counterValue(t, tg.metrics.drainCuts.WithLabelValues(tg.services[0].name)); n != 1 {
		t.Fatalf("zkgate_drain_cuts_total %v, want 1", n)
	}
}

package gateway

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/instancestate"
	"github.com/zkgate/zkgate/internal/marks"
)

// Load, table swaps and state reads at once (run with -race). Also the
// confirmed-drain property the presence writer relies on: once a marked
// instance is seen drained (after Updates), it never gets another request.
func TestConcurrentLoadUpdatesAndDrain(t *testing.T) {
	for _, bal := range []string{config.BalancerLeastRequests, config.BalancerRoundRobin} {
		t.Run(bal, func(t *testing.T) {
			a := newBackend(t, "a", nil)
			b := newBackend(t, "b", nil)
			c := newBackend(t, "c", nil)
			tg := newTestGateway(t, config.Gateway{Balancer: bal, Routes: []config.Route{rte("/", "s")}}, Options{})
			ia, ib, ic := inst("s", a.addr(), 1), inst("s", b.addr(), 2), inst("s", c.addr(), 3)
			tg.Update(regSnap(1, ia, ib, ic), nil)

			var stop atomic.Bool
			var failed atomic.Int64
			var wg sync.WaitGroup
			cl := client()
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for !stop.Load() {
						var resp *http.Response
						var err error
						if w%2 == 0 {
							resp, err = cl.Get(tg.front.URL + "/x")
						} else {
							resp, err = cl.Post(tg.front.URL+"/x", "text/plain", strings.NewReader("payload"))
						}
						if err != nil || resp.StatusCode != 200 {
							failed.Add(1)
						}
						if err == nil {
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
						}
					}
				}()
			}
			wg.Add(1)
			go func() { // readers
				defer wg.Done()
				for !stop.Load() {
					tg.InstanceStates()
					tg.reg.Gather()
				}
			}()

			// Flip marks on b and c while the load runs.
			for i := uint64(2); i < 40; i++ {
				var ms []markArg
				if i%2 == 0 {
					ms = append(ms, markArg{"s", b.addr(), 10})
				}
				if i%3 == 0 {
					ms = append(ms, markArg{"s", c.addr(), 10})
				}
				tg.Update(regSnap(i, ia, ib, ic), marksOf(i, ms...))
			}

			// Mark a; wait for it to drain; from then on it gets nothing.
			drainChanges(tg.Gateway)
			tg.Update(regSnap(50, ia, ib, ic), marksOf(50, markArg{"s", a.addr(), 10}))
			waitChange(t, tg.Gateway)
			eventually(t, "a drained", func() bool {
				st := tg.status(t, a.addr())
				return st.State == instancestate.Drained && st.InFlight == 0
			})
			hits := a.hits.Load()
			before := b.hits.Load() + c.hits.Load()
			eventually(t, "more load", func() bool { return b.hits.Load()+c.hits.Load() > before+200 })
			if n := a.hits.Load(); n != hits {
				t.Fatalf("drained instance got %d more requests", n-hits)
			}
			stop.Store(true)
			wg.Wait()
			if n := failed.Load(); n != 0 {
				t.Fatalf("%d requests failed", n)
			}
			eventually(t, "in-flight 0", func() bool { return tg.InFlight() == 0 })
		})
	}
}

type markArg struct {
	service, addr string
	mzxid         int64
}

func marksOf(rev uint64, ms ...markArg) *marks.Snapshot {
	var list []marks.Mark
	for _, m := range ms {
		list = append(list, mark(m.service, m.addr, m.mzxid))
	}
	return markSnap(rev, list...)
}

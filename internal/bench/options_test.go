package bench

import (
	"testing"
	"time"
)

// Zero fields take the default, also inside a struct field; set fields
// keep their value.
func TestWithDefaults(t *testing.T) {
	o := ProxyOptions{Binary: "/bin/zkgate", Load: Load{Connections: 8}, Rounds: 3}
	withDefaults(&o, ProxyOptions{Binary: "other", Load: Load{Threads: 2, Connections: 64, Duration: time.Second}, Rounds: 1, BodySize: 64})
	if o.Binary != "/bin/zkgate" || o.Load != (Load{Threads: 2, Connections: 8, Duration: time.Second}) || o.Rounds != 3 || o.BodySize != 64 {
		t.Errorf("got %+v", o)
	}
	f := FaultsOptions{Faults: []string{}}
	withDefaults(&f, FaultsOptions{Faults: AllFaults, Gateways: 3})
	if f.Faults == nil || len(f.Faults) != 0 || f.Gateways != 3 || f.Logger != nil {
		t.Errorf("got %+v", f)
	}
}

package rollout

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
)

func TestServingCheck(t *testing.T) {
	const mz = int64(100)
	mark := &ctlclient.MarkView{Mzxid: mz, By: "someone", Reason: "r"}
	gws := func(states ...string) []ctlclient.GatewayInstance {
		var out []ctlclient.GatewayInstance
		for i, s := range states {
			out = append(out, ctlclient.GatewayInstance{ID: string(rune('a' + i)), State: s})
		}
		return out
	}
	base := ctlclient.InstanceView{Registered: true, Czxid: 150, State: ctlclient.StateServing, Status: "UP", Mark: mark}
	with := func(f func(*ctlclient.InstanceView)) ctlclient.InstanceView {
		v := base
		f(&v)
		return v
	}
	for _, tc := range []struct {
		name  string
		in    ctlclient.InstanceView
		found bool
		done  bool
		fatal bool
		why   string
	}{
		{"not found", base, false, false, false, "not registered"},
		{"not registered", with(func(v *ctlclient.InstanceView) { v.Registered = false }), true, false, false, "not registered"},
		{"old registration", with(func(v *ctlclient.InstanceView) { v.Czxid = 50 }), true, false, false, "older"},
		{"flapped registration", with(func(v *ctlclient.InstanceView) { v.Incarnation = "id-old@1" }), true, false, false, "session flap"},
		{"drained again", with(func(v *ctlclient.InstanceView) {
			v.Marked, v.Mark = true, &ctlclient.MarkView{Mzxid: 200, By: "ops", Reason: "again"}
		}), true, false, true, ""},
		{"down", with(func(v *ctlclient.InstanceView) { v.State, v.Status = ctlclient.StateDown, "OUT_OF_SERVICE" }), true, false, false, "OUT_OF_SERVICE"},
		{"mark deleted", with(func(v *ctlclient.InstanceView) { v.Mark = nil }), true, true, false, ""},
		{"no gateway", base, true, true, false, ""},
		{"all acknowledged", with(func(v *ctlclient.InstanceView) { v.Gateways = gws("warming", "serving", "unrouted") }), true, true, false, ""},
		{"one absent", with(func(v *ctlclient.InstanceView) { v.Gateways = gws("serving", "absent") }), true, false, false, "b absent"},
		{"one pending", with(func(v *ctlclient.InstanceView) { v.Gateways = gws("pending", "serving") }), true, false, false, "a pending"},
		{"one ejected", with(func(v *ctlclient.InstanceView) { v.Gateways = gws("ejected") }), true, false, false, "a ejected"},
	} {
		done, why, err := servingCheck(tc.in, tc.found, ctlclient.MarkView{Mzxid: mz, Incarnation: "id-old@1"})
		if done != tc.done || (err != nil) != tc.fatal || !strings.Contains(why, tc.why) {
			t.Errorf("%s: done %v, why %q, err %v", tc.name, done, why, err)
		}
	}
}

func TestExecCommand(t *testing.T) {
	got, err := ExecCommand("deploy --to {host} --port {port} # {addr} {addr}", Target{Addr: "10.0.0.7:8080", Host: "10.0.0.7", Port: 8080})
	if err != nil || got != "deploy --to 10.0.0.7 --port 8080 # 10.0.0.7:8080 10.0.0.7:8080" {
		t.Errorf("got %q, %v", got, err)
	}
	if got, err := ExecCommand("x {host}", Target{Addr: "[fe80::1%eth0]:80", Host: "fe80::1%eth0", Port: 80}); err != nil || got != "x fe80::1%eth0" {
		t.Errorf("IPv6: %q, %v", got, err)
	}
	for _, bad := range []Target{
		{Addr: "a;rm -rf /:80", Host: "a;rm -rf /", Port: 80},
		{Addr: "$(id):80", Host: "$(id)", Port: 80},
		{Addr: "h:80", Host: "h o", Port: 80},
		{Addr: "", Host: "h", Port: 80},
	} {
		if _, err := ExecCommand("x {addr}", bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestExecRestarter(t *testing.T) {
	var out bytes.Buffer
	tg := Target{Addr: "127.0.0.1:8080", Host: "127.0.0.1", Port: 8080}
	ok := ExecRestarter("echo {port} $ZKGATE_HOST $ZKGATE_ADDR $ZKGATE_PORT", &out, &out)
	if err := ok(context.Background(), tg); err != nil || out.String() != "8080 127.0.0.1 127.0.0.1:8080 8080\n" {
		t.Errorf("got %q, %v", out.String(), err)
	}
	if err := ExecRestarter("exit 7", nil, nil)(context.Background(), tg); err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("failing command: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ExecRestarter("sleep 30", nil, nil)(ctx, tg); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("interrupted command: %v", err)
	}
}

func TestOptionsChecked(t *testing.T) {
	c, err := ctlclient.New("http://127.0.0.1:1", ctlclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	restart := func(context.Context, Target) error { return nil }
	for _, o := range []Options{
		{Service: "s", Restart: restart},
		{Client: c, Restart: restart},
		{Client: c, Service: "s"},
		{Client: c, Service: "s", Restart: restart, Parallel: -1},
		{Client: c, Service: "s", Restart: restart, ServeTimeout: -time.Second},
	} {
		if _, err := Run(context.Background(), o); err == nil || !strings.HasPrefix(err.Error(), "rollout: ") {
			t.Errorf("%+v: %v", o, err)
		}
	}
	o, err := withDefaults(Options{Client: c, Service: "s", DryRun: true})
	if err != nil || o.Parallel != 1 || o.DrainTimeout != DefaultDrainTimeout || o.Reason != DefaultReason || o.Progress == nil {
		t.Errorf("defaults %+v %v", o, err)
	}
}

func TestReporter(t *testing.T) {
	targets := []Target{{Addr: "10.0.0.1:80"}, {Addr: "10.0.0.2:80"}}
	var plain bytes.Buffer
	p := newReporter(&plain, "orders", targets, 1)
	p.phase(0, phaseDraining, "")
	p.phase(0, phaseRestarting, "drained in 5ms")
	p.phase(0, phaseRegistering, "restarted in 1.00s")
	p.end(0, InstanceResult{Status: StatusDone, Drain: 5 * time.Millisecond, Restart: time.Second, ToServing: 30 * time.Millisecond})
	p.phase(1, phaseDraining, "")
	p.end(1, InstanceResult{Status: StatusFailed, Err: errors.New("drain: boom"), Note: "undrained: x"})
	p.close()
	want := `rollout of orders: 2 instances, 1 at a time
[1/2] 10.0.0.1:80 draining
[1/2] 10.0.0.1:80 drained in 5ms; restarting
[1/2] 10.0.0.1:80 restarted in 1.00s; waiting for it to register again
[1/2] 10.0.0.1:80 serving again (drain 5ms, restart 1.00s, to serving 30ms)
[2/2] 10.0.0.2:80 draining
[2/2] 10.0.0.2:80 FAILED: drain: boom
`
	if plain.String() != want {
		t.Errorf("plain progress:\n%s\nwant:\n%s", plain.String(), want)
	}

	// On a terminal: a bar redrawn in place, hidden while a restart runs.
	var tty bytes.Buffer
	p = &reporter{w: &tty, tty: true, service: "orders", targets: targets, active: map[int]active{}, stop: make(chan struct{})}
	p.phase(0, phaseDraining, "")
	if s := tty.String(); !strings.HasPrefix(s, "\r\x1b[Korders [....................] 0/2  10.0.0.1:80 draining") || strings.Contains(s, "\n") {
		t.Errorf("bar %q", s)
	}
	tty.Reset()
	p.phase(0, phaseRestarting, "drained in 5ms")
	if s := tty.String(); s != "\r\x1b[K[1/2] 10.0.0.1:80 drained in 5ms; restarting\n" {
		t.Errorf("restart heading %q (the bar must stay hidden during the restart)", s)
	}
	tty.Reset()
	p.end(0, InstanceResult{Status: StatusDone})
	if s := tty.String(); !strings.Contains(s, "serving again") || !strings.Contains(s, "[##########..........] 1/2") {
		t.Errorf("after the first instance %q", s)
	}
	p.close()
	if !strings.HasSuffix(tty.String(), "\r\x1b[K") {
		t.Errorf("the bar is not removed at the end: %q", tty.String())
	}
}

func TestWriteTable(t *testing.T) {
	res := &Result{Total: 2500 * time.Millisecond, Instances: []InstanceResult{
		{Addr: "10.0.0.1:80", Status: StatusDone, Drain: 12 * time.Millisecond, Restart: 1200 * time.Millisecond, ToServing: 300 * time.Millisecond},
		{Addr: "10.0.0.2:80", Status: StatusFailed, Drain: 10 * time.Millisecond, Err: errors.New("restart: exit status 1"), Note: "left drained"},
		{Addr: "10.0.0.3:80", Status: StatusSkipped},
	}}
	var b bytes.Buffer
	res.WriteTable(&b)
	want := `INSTANCE     STATUS   DRAIN  RESTART  TO SERVING
10.0.0.1:80  done     12ms   1.20s    300ms
10.0.0.2:80  failed   10ms   -        -
10.0.0.3:80  skipped  -      -        -
total 2.50s: 1 of 3 done
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

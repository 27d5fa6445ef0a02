package controller_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zktest"
	"github.com/zkgate/zkgate/register"
)

// afterReconciles returns once the leader has applied its rules twice more
// to fresh state, so that a mark that should have been deleted by now is
// not merely late.
func afterReconciles(t *testing.T, c *controller.Controller) {
	t.Helper()
	count := func() int {
		for _, l := range strings.Split(ctlMetrics(t, c), "\n") {
			if v, ok := strings.CutPrefix(l, "zkgate_controller_reconciles_total "); ok {
				var n int
				fmt.Sscan(v, &n)
				return n
			}
		}
		return 0
	}
	n := count()
	eventually(t, "two more reconciliations", func() bool { return count() >= n+2 })
}

// routesOnly sends requests through the gateway and fails when any of
// them reaches a backend outside names.
func routesOnly(t *testing.T, proxyAddr string, names ...string) {
	t.Helper()
	for i := 0; i < 40; i++ {
		n, code := get(proxyAddr, "/orders/")
		if code != http.StatusOK {
			t.Fatalf("request %d: status %d", i, code)
		}
		ok := false
		for _, want := range names {
			ok = ok || n == want
		}
		if !ok {
			t.Fatalf("request %d reached %q, which is drained", i, n)
		}
	}
}

// A session flap of a drained instance does not undo the drain: its
// registrar (zkgate's register library, as `zkgate register` runs it)
// re-creates the same registration (same id, same registrationTimeUTC)
// on a new session after the old one expired; the new node is newer than
// the mark by zxid, yet the gateway keeps the instance out of rotation and
// the leader keeps the mark. A restart (a new Registration: a new id)
// clears it. README.md, "ZooKeeper layout (contract)".
func TestSessionFlapDoesNotUndoDrain(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	e.register("orders", "b-1", b)
	part := zktest.NewPartitioner()
	regOpts := register.Options{
		Servers: e.servers, SessionTimeout: 2 * time.Second, Dialer: part.Dial,
		Root: e.regRoot, Service: "orders", Address: a.addr, Logger: e.log,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	reg, err := register.Register(ctx, regOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { reg.Close() }()

	c1 := e.startController("c1", e.config("reconcile_interval: 300ms\n", "", 0), controller.Options{})
	eventually(t, "c1 to lead", c1.IsLeader)
	gw := e.startGateway("gw-1", 0, gatewayd.Options{})
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	cl := client(t, c1.URL())

	r, err := cl.Drain(ctx, "orders", a.addr, ctlclient.DrainRequest{Reason: "deploy", TTL: "1h", Wait: true, Timeout: "20s"})
	if err != nil || r.Status != ctlclient.StatusDrained {
		t.Fatalf("drain: %+v, %v", r, err)
	}
	routesOnly(t, gw.ProxyAddr(), "b")
	first := reg.Status()

	// The flap: a partition longer than the session timeout; the servers
	// expire the session and delete the node; the registrar re-creates it.
	part.Blackhole()
	eventually(t, "the registrar to see its session lost", func() bool { return !reg.Status().Registered })
	part.Restore()
	eventually(t, "the registration to be re-created", func() bool {
		st := reg.Status()
		return st.Registered && st.Czxid > first.Czxid
	})
	again := reg.Status()
	if again.Czxid <= r.Mark.Mzxid {
		t.Fatalf("re-created registration czxid %d is not newer than the mark's mzxid %d", again.Czxid, r.Mark.Mzxid)
	}
	waitRecreatedSeen(t, cl, gw, a.addr, func(czxid int64) bool { return czxid == again.Czxid })
	routesOnly(t, gw.ProxyAddr(), "b")
	afterReconciles(t, c1)
	if !e.markExists("orders", a.addr) {
		t.Fatal("the leader deleted the mark after a session flap of the drained instance")
	}
	in, _ := instance(t, cl, "orders", a.addr)
	if !in.Marked || in.State != ctlclient.StateDrained {
		t.Fatalf("after the flap the controller shows marked=%v state %s", in.Marked, in.State)
	}

	// A restart: a new process registers anew (a new id).
	reg.Close()
	reg, err = register.Register(ctx, regOpts)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the restart to clear the mark", func() bool { return !e.markExists("orders", a.addr) })
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	auditEventually(t, cl, "the clearing in the audit trail", func(entries []ctlclient.AuditEntry) bool {
		return hasAudit(entries, ctlclient.AuditClearReregistered, a.addr)
	})
}

// zkCli is a running zkCli.sh (the Java client ZooKeeper ships) fed
// commands on its stdin, in its own process group.
type zkCli struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *testutil.SyncBuffer
}

const zkCliPath = "/usr/share/zookeeper/bin/zkCli.sh"

func startZkCli(t *testing.T, server string, sessionTimeout time.Duration) *zkCli {
	t.Helper()
	if _, err := os.Stat(zkCliPath); err != nil {
		t.Fatalf("zkCli.sh: %v", err)
	}
	cmd := exec.Command(zkCliPath, "-timeout", strconv.Itoa(int(sessionTimeout.Milliseconds())), "-waitforconnection", "-server", server)
	cmd.Env = append(os.Environ(), "ZOO_LOG_DIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	z := &zkCli{t: t, cmd: cmd, out: &testutil.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = z.out, z.out
	var err error
	if z.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting zkCli.sh: %v", err)
	}
	t.Cleanup(func() {
		z.kill()
		if t.Failed() {
			t.Logf("zkCli.sh output:\n%s", z.out.String())
		}
	})
	return z
}

// send writes one command line.
func (z *zkCli) send(line string) {
	z.t.Helper()
	if _, err := io.WriteString(z.stdin, line+"\n"); err != nil {
		z.t.Fatalf("zkCli.sh %q: %v", line, err)
	}
}

// kill ends the client without closing its session (kill -9 of its
// process group), so the servers expire the session.
func (z *zkCli) kill() {
	if z.cmd.Process != nil {
		_ = syscall.Kill(-z.cmd.Process.Pid, syscall.SIGKILL)
		_ = z.cmd.Wait()
	}
}

// The same rule with the registration written by ZooKeeper's own Java
// client (zkCli.sh): an ephemeral Curator JSON node (with Java's
// registrationTimeUTC) whose session expires (the client is killed with
// -9) and which a new session re-creates with the same content stays
// drained; a registration with a new id ends the drain.
func TestSessionFlapDoesNotUndoDrainJavaClient(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	e.register("orders", "b-1", b)
	e.ensure(e.regRoot + "/orders")
	const oldID, newID = "5f0c8a8e-4a8e-4c1b-9d43-1b2f2a6d0e11", "9b7d3c2a-1e4f-4a5b-8c6d-7e8f9a0b1c2d"
	curator := func(id string, regTime int64) string {
		return fmt.Sprintf(`{"name":"orders","id":%q,"address":%q,"port":%d,"sslPort":null,`+
			`"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance","id":"orders-1","name":"orders","metadata":{"instance_status":"UP"}},`+
			`"registrationTimeUTC":%d,"serviceType":"DYNAMIC","uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},{"value":"address","variable":true},{"value":":","variable":false},{"value":"port","variable":true}]}}`,
			id, a.host, a.port, regTime)
	}
	oldPath, newPath := e.regRoot+"/orders/"+oldID, e.regRoot+"/orders/"+newID
	nodeExists := func(p string) bool {
		ok, _, err := e.conn.Exists(p)
		return err == nil && ok
	}

	cli1 := startZkCli(t, e.servers[0], 2*time.Second)
	cli1.send(fmt.Sprintf("create -e %s '%s'", oldPath, curator(oldID, 1733400000123)))
	eventually(t, "zkCli.sh to register a", func() bool { return nodeExists(oldPath) })

	c1 := e.startController("c1", e.config("reconcile_interval: 300ms\n", "", 0), controller.Options{})
	eventually(t, "c1 to lead", c1.IsLeader)
	gw := e.startGateway("gw-1", 0, gatewayd.Options{})
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
	cl := client(t, c1.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	r, err := cl.Drain(ctx, "orders", a.addr, ctlclient.DrainRequest{Reason: "deploy", TTL: "1h", Wait: true, Timeout: "20s"})
	if err != nil || r.Status != ctlclient.StatusDrained {
		t.Fatalf("drain: %+v, %v", r, err)
	}

	// The flap: the session expires, a new session re-creates the node.
	cli1.kill()
	eventually(t, "the expired session's node to go", func() bool { return !nodeExists(oldPath) })
	cli2 := startZkCli(t, e.servers[0], 2*time.Second)
	cli2.send(fmt.Sprintf("create -e %s '%s'", oldPath, curator(oldID, 1733400000123)))
	eventually(t, "zkCli.sh to re-create the registration", func() bool { return nodeExists(oldPath) })
	waitRecreatedSeen(t, cl, gw, a.addr, func(czxid int64) bool { return czxid > r.Mark.Mzxid })
	routesOnly(t, gw.ProxyAddr(), "b")
	afterReconciles(t, c1)
	if !e.markExists("orders", a.addr) {
		t.Fatal("the leader deleted the mark after a session flap of the drained instance")
	}

	// A restart: the old registration goes, one with a new id comes.
	cli2.send("delete " + oldPath)
	cli2.send(fmt.Sprintf("create -e %s '%s'", newPath, curator(newID, 1733400099999)))
	eventually(t, "the restart to clear the mark", func() bool { return !e.markExists("orders", a.addr) })
	waitRoutes(t, gw.ProxyAddr(), "a", "b")
}

// waitRecreatedSeen waits until the controller (asked through cl) and the
// gateway both see addr registered by a node whose czxid is the re-created
// one (recreated says which).
func waitRecreatedSeen(t *testing.T, cl *ctlclient.Client, gw *gatewayd.Daemon, addr string, recreated func(czxid int64) bool) {
	t.Helper()
	eventually(t, "the controller to see the re-created registration", func() bool {
		in, ok := instance(t, cl, "orders", addr)
		return ok && in.Registered && recreated(in.Czxid)
	})
	eventually(t, "the gateway to see the re-created registration", func() bool {
		for _, st := range gw.Gateway().InstanceStates() {
			if st.Addr == addr && recreated(st.Czxid) {
				return true
			}
		}
		return false
	})
}

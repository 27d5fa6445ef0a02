package controller_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/config"
	"github.com/zkgate/zkgate/internal/controller"
	"github.com/zkgate/zkgate/internal/gatewayd"
	"github.com/zkgate/zkgate/internal/testutil"
	"github.com/zkgate/zkgate/internal/zkacl"
	"github.com/zkgate/zkgate/internal/zktest"
)

func withAuth(cfg *config.Config, user, pass string) *config.Config {
	cfg.ZooKeeper.Auth = &config.Auth{Scheme: "digest", Username: user, Password: pass}
	return cfg
}

// aclOf reads p's ACL through a client with zkgate's credentials
// (ZooKeeper shows digests as "user:x" to clients without ADMIN).
func (e *env) aclOf(p string) []zk.ACL {
	e.t.Helper()
	conn := zktest.Connect(e.t, e.servers, 10*time.Second)
	if err := conn.AddAuth("digest", []byte("zkgate:secret")); err != nil {
		e.t.Fatal(err)
	}
	acl, _, err := conn.GetACL(p)
	if err != nil {
		e.t.Fatalf("getACL %s: %v", p, err)
	}
	return acl
}

// Nodes created under the root before zookeeper.auth was configured keep
// the open ACL: on start the controller repairs them (and a gateway its
// root and presence directory), so that an unauthenticated client can no
// longer write a mark or forge an audit entry.
func TestACLsRepairedOnStart(t *testing.T) {
	e := newEnv(t)
	mark := e.markPath("orders", "10.0.0.9:80")
	entry := e.zkRoot + "/audit/entry-0000000001"
	open := []string{
		e.zkRoot, e.zkRoot + "/marks", e.zkRoot + "/marks/orders", mark,
		e.zkRoot + "/gateways", e.zkRoot + "/leader", e.zkRoot + "/audit", entry,
	}
	for _, p := range open {
		e.ensure(p) // world:anyone:cdrwa, as before auth was configured
	}
	pol := zkacl.DigestPolicy("zkgate", "secret")
	for _, p := range open {
		if pol.Sound(e.aclOf(p)) {
			t.Fatalf("%s: pre-created node is not open", p)
		}
	}

	cfg := withAuth(e.config("", "", 0), "zkgate", "secret")
	ctl := e.startController("c1", cfg, controller.Options{})
	for _, p := range open {
		if acl := e.aclOf(p); !pol.Sound(acl) {
			t.Errorf("%s: ACL %s after the controller started", p, zkacl.Format(acl))
		}
	}
	// An unauthenticated client can read, but write nothing.
	if _, err := e.conn.Create(e.markPath("orders", "10.0.0.5:8080"), []byte(`{"reason":"forged"}`), 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("unauthenticated mark create: %v, want ErrNoAuth", err)
	}
	if _, err := e.conn.Create(e.zkRoot+"/marks/payments", nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("unauthenticated service create under marks: %v, want ErrNoAuth", err)
	}
	if _, err := e.conn.Create(e.zkRoot+"/audit/entry-", []byte(`{"action":"drain","by":"forged"}`), zk.FlagSequence, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("unauthenticated audit create: %v, want ErrNoAuth", err)
	}
	if _, err := e.conn.Set(mark, []byte(`{"reason":"forged"}`), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("unauthenticated write of an existing mark: %v, want ErrNoAuth", err)
	}
	if _, _, err := e.conn.Get(mark); err != nil {
		t.Errorf("unauthenticated read: %v", err)
	}
	// The controller itself still writes.
	if code, body := api(t, "PUT", ctl.URL()+"/v1/services/orders/instances/10.0.0.5:8080/drain", token, `{"reason":"x","allow_absent":true}`); code != 200 {
		t.Fatalf("drain with auth: %d %s", code, body)
	}

	// A gateway repairs its root and presence directory.
	e2 := newEnv(t)
	e2.ensure(e2.zkRoot + "/gateways")
	gcfg := withAuth(e2.config("", "id: gw-acl\n", 0), "zkgate", "secret")
	gw, err := gatewayd.Start(context.Background(), gcfg, gatewayd.Options{Logger: e2.log})
	if err != nil {
		t.Fatalf("starting the gateway: %v", err)
	}
	testutil.StopAtCleanup(t, 5*time.Second, gw.Shutdown)
	for _, p := range []string{e2.zkRoot, e2.zkRoot + "/gateways"} {
		if acl := e2.aclOf(p); !pol.Sound(acl) {
			t.Errorf("%s: ACL %s after the gateway started", p, zkacl.Format(acl))
		}
	}
}

// A node the credentials cannot repair (another identity owns it) stops
// the start with one line naming it.
func TestACLUnrepairableRefusesStart(t *testing.T) {
	e := newEnv(t)
	e.ensure(e.zkRoot)
	other := zktest.Connect(t, e.servers, 10*time.Second)
	if err := other.AddAuth("digest", []byte("someone:else")); err != nil {
		t.Fatal(err)
	}
	marks := e.zkRoot + "/marks"
	if _, err := other.Create(marks, nil, 0, append(zk.DigestACL(zk.PermAll, "someone", "else"), zk.WorldACL(zk.PermRead|zk.PermCreate)...)); err != nil {
		t.Fatal(err)
	}
	cfg := withAuth(e.config("", "", 0), "zkgate", "secret")
	c, err := controller.Start(context.Background(), cfg, controller.Options{ID: "c1", Logger: e.log})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Shutdown(ctx)
		t.Fatal("the controller started with a marks node anyone may create under")
	}
	if msg := err.Error(); !strings.Contains(msg, marks) || strings.Contains(msg, "\n") {
		t.Fatalf("error %q: want one line naming %s", msg, marks)
	}
	t.Logf("refused: %v", err)
}

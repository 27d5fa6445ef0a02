package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/ctlclient"
	"github.com/zkgate/zkgate/internal/samplebackend"
	"github.com/zkgate/zkgate/internal/zktest"
)

// The command against a real controller: a dry run prints the plan and
// changes nothing; a failing --exec stops the rollout with exit 1 and one
// error line, prints the table, leaves the instance it failed on drained
// and the other one untouched. The controller and token come from the
// configuration file.
func TestRolloutCommand(t *testing.T) {
	zk := zktest.Start(t)
	_, cfg := writeTestConfig(t, zk.Servers())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := quietLogger()
	observe(t, ctx, zk.Servers())
	ctl := startController(t, ctx, cfg)
	ro, err := registerOptions(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ro.Service = "orders"
	var addrs []string
	for _, name := range []string{"a", "b"} {
		o := ro
		b, err := samplebackend.Start(ctx, samplebackend.Options{Name: name, Register: &o, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Kill()
		addrs = append(addrs, b.Addr())
	}
	sort.Strings(addrs)
	cl, err := ctlclient.New(ctl.URL(), ctlclient.Options{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	view := func() map[string]ctlclient.InstanceView {
		v, err := cl.Service(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]ctlclient.InstanceView{}
		for _, in := range v.Instances {
			out[in.Addr] = in
		}
		return out
	}
	eventually(t, "both instances in the controller's view", func() error {
		if v := view(); len(v) != 2 {
			return fmt.Errorf("%d instances", len(v))
		}
		return nil
	})

	// A configuration file naming the running controller and its token.
	cfgPath := filepath.Join(t.TempDir(), "zkgate.yaml")
	yaml := fmt.Sprintf("zookeeper:\n  servers: [%s]\ncontroller:\n  listen: %s\n  tokens: [%q]\n", strings.Join(zk.Servers(), ", "), ctl.Addr(), testToken)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ZKGATE_CONTROLLER", "")
	t.Setenv("ZKGATE_TOKEN", "")

	code, out, errs := runCtl("rollout", "--controller", ctl.URL(), "--token", testToken, "--service", "orders",
		"--exec", "deploy.sh {host} {port}", "--dry-run")
	if code != exitOK || errs != "" {
		t.Fatalf("dry run: exit %d, stderr %q", code, errs)
	}
	last := -1
	for _, a := range addrs {
		host, port, _ := strings.Cut(a, ":")
		i := strings.Index(out, a+": sh -c 'deploy.sh "+host+" "+port+"'")
		if i < 0 || i < last {
			t.Fatalf("dry run plan lacks %s in order:\n%s", a, out)
		}
		last = i
	}
	for a, in := range view() {
		if in.Mark != nil {
			t.Errorf("%s marked after a dry run", a)
		}
	}

	code, _, errs = runCtl("rollout", "--config", cfgPath, "--service", "nope", "--exec", "true")
	if code != exitError || !strings.Contains(errs, `knows no service "nope"`) {
		t.Errorf("unknown service: exit %d, %q", code, errs)
	}
	assertOneLine(t, "unknown service", errs)

	code, out, errs = runCtl("rollout", "--config", cfgPath, "--service", "orders",
		"--exec", "echo restarting {addr}; exit 3", "--reason", "cli test")
	if code != exitError {
		t.Fatalf("failing command: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errs)
	lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
	lastLine := lines[len(lines)-1]
	if !strings.HasPrefix(lastLine, "zkgate rollout: ") || !strings.Contains(lastLine, addrs[0]) || !strings.Contains(lastLine, "exit status 3") {
		t.Errorf("error line %q", lastLine)
	}
	if !strings.Contains(out, "restarting "+addrs[0]+"\n") || !strings.Contains(out, "INSTANCE") ||
		!strings.Contains(out, "failed") || !strings.Contains(out, "skipped") {
		t.Errorf("stdout:\n%s", out)
	}
	v := view()
	if in := v[addrs[0]]; !in.Marked || in.Mark.Reason != "cli test" {
		t.Errorf("%s: marked %v, mark %+v; want it left drained", addrs[0], in.Marked, in.Mark)
	}
	if in := v[addrs[1]]; in.Mark != nil || in.State != ctlclient.StateServing {
		t.Errorf("%s: state %s, mark %+v; want it untouched", addrs[1], in.State, in.Mark)
	}
}

package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zkgate/zkgate/internal/ctlclient"
)

// cmd returns the subcommand name as Main runs it, without Main's
// escaping of its output.
func cmd(name string) Command {
	return commands()[name].runner(name)
}

// TestCommandErrors: a bad invocation of any command exits 1 with one
// readable line on stderr, "zkgate COMMAND: …", prints nothing on stdout
// and starts nothing.
func TestCommandErrors(t *testing.T) {
	t.Setenv("ZKGATE_CONTROLLER", "")
	t.Setenv("ZKGATE_TOKEN", "")
	f := newFakeController(t, ctlclient.StatusDrained)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	noTokens := filepath.Join(t.TempDir(), "z.yaml")
	if err := os.WriteFile(noTokens, []byte("controller:\n  listen: 127.0.0.1:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	drain := []string{"--service", "s", "--instance", "1.2.3.4:5", "--reason", "r"}
	rollout := []string{"--service", "orders", "--exec", "true"}
	reg := []string{"--service", "s", "--address", "1.2.3.4:80"}
	for _, tc := range []struct {
		cmd  string
		args []string
		want string
	}{
		{"controller", []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, "reading config"},
		{"controller", []string{"--config", noTokens}, "controller.tokens"},
		{"controller", []string{"extra"}, `unexpected argument "extra"`},

		{"demo", []string{"--modes", "watch,bogus"}, `--modes: unknown mode "bogus"`},
		{"demo", []string{"--modes", ","}, "--modes: no mode given"},
		{"demo", []string{"--zk", "localhost"}, `--zk: "localhost" is not host:port`},
		{"demo", []string{"extra"}, `unexpected argument "extra"`},
		{"demo", []string{"--no-such-flag"}, "flag provided but not defined"},

		{"drain", []string{"--service", "orders"}, "missing --instance, --reason"},
		{"drain", []string{"--bogus"}, "flag provided but not defined"},
		{"drain", []string{"--service", "s", "x"}, "unexpected argument"},
		{"drain", append(drain, "--timeout", "-1s"), "negative"},
		{"drain", append(drain, "--controller", down.URL), "connection refused"},
		{"drain", append(drain, "--controller", f.URL, "--token", "bad"), "403"},
		{"drain", append(drain, "--controller", "ftp://x"), "not an http(s) URL"},

		{"undrain", []string{"--controller", f.URL}, "--service and --instance are required"},
		{"status", []string{"--controller", f.URL, "--service", "nope"}, "404"},

		{"register", []string{"--address", "1.2.3.4:80"}, "missing --service"},
		{"register", []string{"--pre-stop", "--service", "s", "--address", "1.2.3.4:80"}, "needs a controller"},
		{"register", append(reg, "--config", "/nonexistent.yaml"), "reading config"},
		{"register", []string{"--metadata", "novalue"}, "not key=value"},
		{"register", append(reg, "--drain-timeout", "0s"), "must be positive"},
		{"register", []string{"extra"}, "unexpected argument"},

		{"rollout", []string{"--exec", "true"}, "missing --service"},
		{"rollout", []string{"--service", "orders"}, "missing --exec"},
		{"rollout", append(rollout, "--parallel", "0"), "--parallel"},
		{"rollout", append(rollout, "--serve-timeout", "0s"), "must be positive"},
		{"rollout", append(rollout, "--bogus"), "bogus"},
		{"rollout", append(rollout, "--config", "/nonexistent/zkgate.yaml"), "zkgate.yaml"},

		{"sample-backend", []string{"--latency", "-1s"}, "must not be negative"},
		{"sample-backend", []string{"--config", "/nonexistent.yaml"}, "missing --service"},
		{"sample-backend", []string{"--service", "s", "--config", "/nonexistent.yaml"}, "reading config"},
	} {
		code, out, errs := runCtl(tc.cmd, tc.args...)
		prefix := "zkgate " + tc.cmd + ": "
		if code != exitError || out != "" || !strings.HasPrefix(errs, prefix) || !strings.Contains(errs, tc.want) {
			t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want exit 1 and a line %q… mentioning %q", tc.cmd, tc.args, code, out, errs, prefix, tc.want)
			continue
		}
		assertOneLine(t, tc.cmd+" "+strings.Join(tc.args, " "), errs)
	}
}

// TestCommandHelp: -h prints a command's flags on stderr and exits 0.
func TestCommandHelp(t *testing.T) {
	for name, flag := range map[string]string{
		"controller": "-id", "gateway": "-config", "demo": "-modes", "drain": "-instance", "undrain": "-instance",
		"status": "-service", "register": "-address", "rollout": "-exec", "sample-backend": "-listen",
	} {
		code, out, errs := runCtl(name, "-h")
		if code != exitOK || out != "" || !strings.Contains(errs, "Usage of ") || !strings.Contains(errs, "\n  "+flag+" ") {
			t.Errorf("%s -h: exit %d, stdout %q, stderr %q; want exit 0 and usage listing %s", name, code, out, errs, flag)
		}
	}
}

// The gateway and the controller answer a flag error with one line, like
// every other command.
func TestServerFlagErrors(t *testing.T) {
	for _, name := range []string{"controller", "gateway"} {
		for _, args := range [][]string{{"--bogus"}, {"extra"}} {
			code, out, errs := runCtl(name, args...)
			if code != exitError || out != "" || !strings.HasPrefix(errs, "zkgate "+name+": ") || strings.Count(errs, "\n") != 1 {
				t.Errorf("%s %v: exit %d, stdout %q, stderr %q; want exit 1 and one line", name, args, code, out, errs)
			}
		}
	}
}

package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/zkgate/zkgate/internal/bench"
)

func TestBenchHelpListsBenchmarks(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := RunBench(context.Background(), []string{"help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, b := range []string{"proxy", "propagation", "registry"} {
		if !strings.Contains(out.String(), "  "+b+" ") {
			t.Errorf("help lacks %q:\n%s", b, out.String())
		}
	}
}

// Bad flags are rejected before anything starts (no ZooKeeper needed).
func TestBenchRejectsBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"propagation", "--instances", "1"}, "--instances must be at least 2"},
		{[]string{"propagation", "--gateways", "0"}, "must be at least 1"},
		{[]string{"propagation", "--warmup", "-1s"}, "must not be negative"},
		{[]string{"propagation", "extra"}, "unexpected argument"},
		{[]string{"registry", "--changes", "2"}, "--changes at least 3"},
		{[]string{"registry", "--poll", "-1ms"}, "must not be negative"},
		{[]string{"registry", "--gateway-env", "NOEQUALS"}, "is not KEY=VALUE"},
		{[]string{"registry", "--services", "10", "--instances", "5"}, "--instances must be at least --services"},
		{[]string{"proxy", "--scenarios", "get,nope"}, `--scenarios: unknown scenario "nope"`},
		{[]string{"proxy", "--scenarios", "get,get"}, "named twice"},
		{[]string{"proxy", "--scenarios", ""}, "empty scenario name"},
		{[]string{"proxy", "--gateway-set", "NOEQUALS"}, "is not KEY=VALUE"},
		{[]string{"proxy", "--gateway-set", "listen=127.0.0.1:1"}, "the bench sets gateway.listen itself"},
		{[]string{"proxy", "--gateway-set", "retries=1", "--gateway-set", "retries=2"}, "gateway.retries set twice"},
		{[]string{"proxy", "--gateway-env", "NOEQUALS"}, "is not KEY=VALUE"},
		{[]string{"proxy", "--register-host", "bad_host"}, `--register-host: "bad_host" is not a host name`},
		{[]string{"proxy", "--rounds", "50"}, "--rounds must be between 1 and 20"},
		{[]string{"nonsense"}, "unknown benchmark"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := RunBench(context.Background(), c.args, &out, &errOut)
		if code == 0 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error containing %q", c.args, code, errOut.String(), c.want)
		}
		if strings.Contains(errOut.String(), "--dir") {
			t.Errorf("%v: stderr %q points to logs of a run that never started", c.args, errOut.String())
		}
	}
}

func TestWithDirHint(t *testing.T) {
	base := errors.New("boom")
	if err := withDirHint(base, ""); !errors.Is(err, base) || !strings.Contains(err.Error(), "--dir DIR") {
		t.Errorf("without --dir: %v", err)
	}
	if err := withDirHint(base, "/tmp/x"); !errors.Is(err, base) || !strings.Contains(err.Error(), "logs in /tmp/x") {
		t.Errorf("with --dir: %v", err)
	}
	if err := withDirHint(&bench.OptionsError{Err: base}, ""); !errors.Is(err, base) || err.Error() != "boom" {
		t.Errorf("refused options: %v", err)
	}
}

func TestBenchProxyHelpListsScenarios(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := RunBench(context.Background(), []string{"proxy", "-h"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"  get ", "  post4k ", "  get64k ", "  latency1 ", "-scenarios", "(default \"get,post4k,get64k,latency1\")", "-gateway-set"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, errOut.String())
		}
	}
}

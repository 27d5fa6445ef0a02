package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Bad flags of bench faults are one line and exit 1, before anything
// starts (no ZooKeeper needed).
func TestBenchFaultsRejectsBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"faults", "--faults", "leader-kill,nope"}, `--faults: unknown fault "nope"`},
		{[]string{"faults", "--faults", ","}, "--faults: no fault selected"},
		{[]string{"faults", "--gateways", "5"}, "--gateways must be 2 or 3"},
		{[]string{"faults", "--backends", "2"}, "--backends must be between 3 and 10"},
		{[]string{"faults", "--session-timeout", "1s"}, "--session-timeout must be between 2s and 30s"},
		{[]string{"faults", "--rate", "0"}, "must not be zero"},
		{[]string{"faults", "extra"}, "unexpected argument"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := RunBench(context.Background(), c.args, &out, &errOut)
		if code != 1 || !strings.Contains(errOut.String(), c.want) || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q, want 1 and one line with %q", c.args, code, errOut.String(), c.want)
		}
	}
	var out, errOut bytes.Buffer
	if code := RunBench(context.Background(), []string{"help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "  faults ") {
		t.Errorf("help lacks faults:\n%s", out.String())
	}
}

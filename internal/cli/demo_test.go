package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestDemoFlagErrors: a bad invocation exits 1 with one readable line and
// starts nothing.
func TestDemoFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--modes", "watch,bogus"}, `zkgate demo: --modes: unknown mode "bogus"`},
		{[]string{"--modes", ","}, "zkgate demo: --modes: no mode given"},
		{[]string{"--zk", "localhost"}, `zkgate demo: --zk: "localhost" is not host:port`},
		{[]string{"extra"}, `zkgate demo: unexpected argument "extra"`},
		{[]string{"--no-such-flag"}, "zkgate demo:"},
	} {
		var stdout, stderr bytes.Buffer
		code := RunDemo(context.Background(), tc.args, &stdout, &stderr)
		if code != 1 {
			t.Errorf("%v: exit %d, want 1", tc.args, code)
		}
		msg := stderr.String()
		if !strings.HasPrefix(msg, tc.want) || strings.Count(msg, "\n") != 1 {
			t.Errorf("%v: stderr %q, want one line starting %q", tc.args, msg, tc.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%v: stdout %q", tc.args, stdout.String())
		}
	}
}

func TestParseServers(t *testing.T) {
	got, err := parseServers(" 127.0.0.1:2181, 127.0.0.1:2182 ,")
	if err != nil || strings.Join(got, ",") != "127.0.0.1:2181,127.0.0.1:2182" {
		t.Errorf("got %v, %v", got, err)
	}
	if got, err := parseServers(""); got != nil || err != nil {
		t.Errorf("empty: %v, %v", got, err)
	}
}

package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// zkgate without a command is an error: usage on stderr, nothing on
// stdout, exit non-zero. Asked for (help, -h), usage goes to stdout.
func TestMainUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), nil, &out, &errOut); code == 0 {
		t.Errorf("no arguments: exit 0")
	}
	if out.Len() != 0 || !strings.Contains(errOut.String(), "Usage: zkgate COMMAND") {
		t.Errorf("no arguments: stdout %q, stderr %q", out.String(), errOut.String())
	}
	for _, arg := range []string{"help", "-h", "--help"} {
		out.Reset()
		errOut.Reset()
		if code := Main(context.Background(), []string{arg}, &out, &errOut); code != 0 {
			t.Errorf("%s: exit %d", arg, code)
		}
		if errOut.Len() != 0 || !strings.Contains(out.String(), "Usage: zkgate COMMAND") {
			t.Errorf("%s: stdout %q, stderr %q", arg, out.String(), errOut.String())
		}
	}
}

package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// execWaitDelay is how long a command gets after SIGTERM (when the
// rollout is interrupted) before it is killed, and how long its output is
// still copied after it exited while a process it started in the
// background holds its output open.
const execWaitDelay = 5 * time.Second

// ExecCommand returns cmdTemplate with {addr}, {host} and {port} replaced
// by t's. It refuses values with characters a shell would interpret (the
// values come from the registry, which others write): host names, IPv4
// and IPv6 addresses pass.
func ExecCommand(cmdTemplate string, t Target) (string, error) {
	for _, v := range []string{t.Addr, t.Host} {
		if v == "" || strings.IndexFunc(v, unsafeRune) >= 0 {
			return "", fmt.Errorf("refusing to put %q into a shell command", v)
		}
	}
	return strings.NewReplacer("{addr}", t.Addr, "{host}", t.Host, "{port}", strconv.Itoa(t.Port)).Replace(cmdTemplate), nil
}

func unsafeRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return false
	}
	return !strings.ContainsRune(".-_:[]%", r)
}

// ExecRestarter returns a Restart function that runs `sh -c CMD`, CMD
// being cmdTemplate with {addr}, {host} and {port} replaced (see
// ExecCommand), with ZKGATE_ADDR, ZKGATE_HOST and ZKGATE_PORT added to the
// environment, its output going to stdout and stderr (nil discards). A
// non-zero exit is an error. When ctx ends the shell gets SIGTERM, and is
// killed 5s later if still running; processes it started are left alone.
// A command that exits 0 while a process it started in the background
// still holds its output open succeeds (that output is then no longer
// copied 5s after the exit).
func ExecRestarter(cmdTemplate string, stdout, stderr io.Writer) func(ctx context.Context, t Target) error {
	return func(ctx context.Context, t Target) error {
		line, err := ExecCommand(cmdTemplate, t)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, "sh", "-c", line)
		cmd.Env = append(os.Environ(),
			"ZKGATE_ADDR="+t.Addr, "ZKGATE_HOST="+t.Host, "ZKGATE_PORT="+strconv.Itoa(t.Port))
		// nil stays nil (the null device): no pipe for a child to hold.
		if stdout != nil {
			cmd.Stdout = stdout
		}
		if stderr != nil {
			cmd.Stderr = stderr
		}
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = execWaitDelay
		err = cmd.Run()
		if errors.Is(err, exec.ErrWaitDelay) && ctx.Err() == nil {
			err = nil // exited 0; a background child keeps the output open
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("command %q interrupted: %w", line, ctx.Err())
			}
			return fmt.Errorf("command %q: %w", line, err)
		}
		return nil
	}
}

package zktest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// flwTimeout bounds a four-letter-word exchange when ctx has no earlier
// deadline.
const flwTimeout = 2 * time.Second

// FourLetterWord sends a ZooKeeper four-letter command (e.g. "srvr", "mntr",
// "ruok") to the client port at addr and returns the whole answer (the server
// closes the connection after answering). The exchange is bounded by ctx and
// by 2 s. The command must be in the server's 4lw.commands.whitelist; this
// harness whitelists ruok, srvr, mntr and stat.
func FourLetterWord(ctx context.Context, addr, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, flwTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("zktest: %s %s: %w", cmd, addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return "", fmt.Errorf("zktest: %s %s: %w", cmd, addr, err)
		}
	}
	// Close the connection if ctx is cancelled before the deadline.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", fmt.Errorf("zktest: %s %s: write: %w", cmd, addr, err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return string(b), fmt.Errorf("zktest: %s %s: read: %w", cmd, addr, err)
	}
	return string(b), nil
}

// parseMode extracts the value of the "Mode:" line of a srvr/stat answer
// ("standalone", "leader", "follower", "observer"). ok is false when the
// server is not serving (e.g. "This ZooKeeper instance is not currently
// serving requests" while it has no quorum).
func parseMode(srvr string) (mode string, ok bool) {
	sc := bufio.NewScanner(strings.NewReader(srvr))
	for sc.Scan() {
		if v, found := strings.CutPrefix(sc.Text(), "Mode:"); found {
			v = strings.TrimSpace(v)
			return v, v != ""
		}
	}
	return "", false
}

package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// SwitchProtocols takes over w's connection and answers 101 Switching
// Protocols to upgrade, as an instance accepting an upgrade does; ok is
// false when the connection cannot be taken over. The caller closes conn.
func SwitchProtocols(w http.ResponseWriter, upgrade string) (conn net.Conn, brw *bufio.ReadWriter, ok bool) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, false
	}
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + upgrade + "\r\nConnection: Upgrade\r\n\r\n")
	brw.Flush()
	return conn, brw, true
}

// EchoUpgraded accepts a WebSocket-style upgrade (101, written by hand) and
// echoes what the client sends until either side closes.
func EchoUpgraded(w http.ResponseWriter) {
	conn, brw, ok := SwitchProtocols(w, "websocket")
	if !ok {
		return
	}
	defer conn.Close()
	buf := make([]byte, 1024)
	for {
		n, err := brw.Read(buf)
		if n > 0 {
			conn.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// DialUpgrade connects to addr and asks for a WebSocket-style upgrade of
// target, returning the connection (its deadline timeout from now), a
// reader positioned after the response head, and the response. On an
// error the connection is closed.
func DialUpgrade(addr, target string, timeout time.Duration) (net.Conn, *bufio.Reader, *http.Response, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	conn.SetDeadline(time.Now().Add(timeout))
	io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("reading the upgrade's answer: %w", err)
	}
	return conn, br, resp, nil
}

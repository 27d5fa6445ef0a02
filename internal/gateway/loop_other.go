//go:build !linux

package gateway

import (
	"errors"
	"time"
)

// Event loops need Linux's epoll: elsewhere every connection is served by
// a goroutine (gateway.engine: goroutine), whatever the configuration
// says. These stand-ins are never reached: startLoops starts none.

type evloop struct {
	done chan struct{}
	now  time.Time
}

type loopClient struct{}

type loopUp struct{}

func startLoops(*Gateway, int) ([]*evloop, error) {
	return nil, errors.New("event loops need Linux's epoll")
}

func (l *evloop) adopt(*clientConn) bool { return false }

func (l *evloop) shutdown() {}

func (l *evloop) closeUp(*upConn) {}

func (l *evloop) putIdle(*host, *upConn, int) {}

func (l *evloop) proxy(*clientConn, *route, []byte, time.Time, bool) (bool, bool) {
	panic("gateway: no event loops on this system")
}

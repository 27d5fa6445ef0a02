package controller

import (
	"testing"
	"time"
)

// SetWriteTimeouts shortens the API's ZooKeeper write timeout and the
// re-read that follows a write whose outcome is unknown, for one test.
func SetWriteTimeouts(t *testing.T, write, reread time.Duration) {
	w, r := writeTimeout, rereadTimeout
	writeTimeout, rereadTimeout = write, reread
	t.Cleanup(func() { writeTimeout, rereadTimeout = w, r })
}

// ResyncProgress returns how many full re-reads the registry and marks
// caches completed, as reconciliation sees them.
func ResyncProgress(c *Controller) (registry, marks uint64) {
	p := c.resyncProgress()
	return p.registryResyncs, p.marksResyncs
}

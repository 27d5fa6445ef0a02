package zktest

import (
	"errors"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// Writer is a plain client that plays whoever writes nodes beside the code
// under test: the services registering themselves, an operator. Every
// operation is retried while the servers may be unreachable for a moment
// (up to 10 s); one that keeps failing fails the test.
type Writer struct {
	t    testing.TB
	Conn *zk.Conn
}

// NewWriter connects a Writer to servers; it is closed when the test ends.
func NewWriter(t testing.TB, servers []string) *Writer {
	t.Helper()
	return &Writer{t: t, Conn: Connect(t, servers, 5*time.Second)}
}

// Retry repeats f until it succeeds, failing the test with what and f's
// last error after 100 tries 100 ms apart.
func (w *Writer) Retry(what string, f func() error) {
	w.t.Helper()
	var err error
	for range 100 {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.t.Fatalf("%s: %v", what, err)
}

// Ensure creates p and its missing parents without data.
func (w *Writer) Ensure(p string) {
	w.t.Helper()
	cur := ""
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		if part == "" {
			continue
		}
		cur += "/" + part
		w.Retry("create "+cur, func() error {
			_, err := w.Conn.Create(cur, nil, 0, zk.WorldACL(zk.PermAll))
			if errors.Is(err, zk.ErrNodeExists) {
				return nil
			}
			return err
		})
	}
}

// Put creates the persistent node p (and its missing parents) with data,
// or overwrites it.
func (w *Writer) Put(p string, data []byte) {
	w.t.Helper()
	w.Ensure(path.Dir(p))
	w.Retry("put "+p, func() error {
		_, err := w.Conn.Create(p, data, 0, zk.WorldACL(zk.PermAll))
		if errors.Is(err, zk.ErrNodeExists) {
			_, err = w.Conn.Set(p, data, -1)
		}
		return err
	})
}

// CreateEphemeral creates p (its missing parents persistent) with data as
// an ephemeral of the Writer's session. A node already there is taken for
// an earlier try whose answer was lost.
func (w *Writer) CreateEphemeral(p string, data []byte) {
	w.t.Helper()
	w.Ensure(path.Dir(p))
	w.Retry("create "+p, func() error {
		_, err := w.Conn.Create(p, data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		if errors.Is(err, zk.ErrNodeExists) {
			return nil
		}
		return err
	})
}

// Remove deletes p and everything under it; a node already gone is fine.
func (w *Writer) Remove(p string) {
	w.t.Helper()
	var kids []string
	w.Retry("list "+p, func() error {
		var err error
		kids, _, err = w.Conn.Children(p)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		return err
	})
	for _, k := range kids {
		w.Remove(path.Join(p, k))
	}
	w.Retry("delete "+p, func() error {
		if err := w.Conn.Delete(p, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		return nil
	})
}

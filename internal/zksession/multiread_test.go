package zksession_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/internal/zktest"
)

// packetsReceived reads the server's count of requests received ("srvr").
func packetsReceived(t *testing.T, addr string) int {
	t.Helper()
	out, err := zktest.FourLetterWord(context.Background(), addr, "srvr")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`Received: (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no Received count in srvr answer %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestMultiRead checks that MultiRead returns what individual Get and
// Children calls return, that a missing node fails only its own
// operation, and that both paths — one multiRead request (ZooKeeper 3.6+)
// and one request per operation (the fallback for older servers, forced
// here with Config.NoMultiRead) — do so, the first in one request.
func TestMultiRead(t *testing.T) {
	zc := zktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := connect(t, zksession.Config{Servers: zc.Servers()})
	if err := w.EnsurePath(ctx, "/mr/g", nil); err != nil {
		t.Fatal(err)
	}
	const n = 40
	var ops []zksession.ReadOp
	for i := range n {
		p := fmt.Sprintf("/mr/g/i%02d", i)
		var data []byte
		if i%7 != 0 { // some nodes without data
			data = []byte(fmt.Sprintf(`{"n":%d}`, i))
		}
		if _, err := w.Create(ctx, p, data, zksession.FlagPersistent, nil); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 { // several versions
			if _, err := w.Set(ctx, p, append(data, ' '), -1); err != nil {
				t.Fatal(err)
			}
		}
		ops = append(ops, zksession.ReadOp{Path: p})
		if i == 10 {
			ops = append(ops, zksession.ReadOp{Path: "/mr/g/missing"}, zksession.ReadOp{Path: "/mr/g", Children: true})
		}
	}
	if _, err := w.Create(ctx, "/mr/empty", nil, zksession.FlagPersistent, nil); err != nil {
		t.Fatal(err)
	}
	ops = append(ops, zksession.ReadOp{Path: "/mr/empty", Children: true},
		zksession.ReadOp{Path: "/mr/none", Children: true}, zksession.ReadOp{Path: "/mr/g/i00"})

	for _, noMulti := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoMultiRead=%v", noMulti), func(t *testing.T) {
			s := connect(t, zksession.Config{Servers: zc.Servers(), NoMultiRead: noMulti})
			before := packetsReceived(t, zc.Addr(0))
			got, err := s.MultiRead(ctx, ops)
			if err != nil {
				t.Fatal(err)
			}
			sent := packetsReceived(t, zc.Addr(0)) - before - 1 // (the first srvr counts)
			if len(got) != len(ops) {
				t.Fatalf("%d results for %d ops", len(got), len(ops))
			}
			for i, op := range ops {
				r := got[i]
				if op.Children {
					want, _, err := s.Children(ctx, op.Path)
					if !errors.Is(r.Error, zksession.ErrNoNode) || !errors.Is(err, zksession.ErrNoNode) {
						if err != nil || r.Error != nil {
							t.Errorf("%s children: MultiRead error %v, Children error %v", op.Path, r.Error, err)
							continue
						}
					}
					slices.Sort(want)
					gotNames := slices.Sorted(slices.Values(r.Children))
					if !slices.Equal(gotNames, want) || (err == nil && r.Children == nil) {
						t.Errorf("%s children: MultiRead %v, Children %v", op.Path, r.Children, want)
					}
					continue
				}
				data, st, err := s.Get(ctx, op.Path)
				if errors.Is(err, zksession.ErrNoNode) {
					if !errors.Is(r.Error, zksession.ErrNoNode) {
						t.Errorf("%s: MultiRead error %v, want ErrNoNode", op.Path, r.Error)
					}
					continue
				}
				if err != nil || r.Error != nil {
					t.Fatalf("%s: MultiRead error %v, Get error %v", op.Path, r.Error, err)
				}
				if string(r.Data) != string(data) || (r.Data == nil) != (data == nil) || !reflect.DeepEqual(*r.Stat, *st) {
					t.Errorf("%s: MultiRead %q %+v, Get %q %+v", op.Path, r.Data, *r.Stat, data, *st)
				}
			}
			// A server may count a ping too: allow a few more.
			if noMulti && sent < len(ops) || !noMulti && sent > 3 {
				t.Errorf("the server received %d requests for %d operations (NoMultiRead %v)", sent, len(ops), noMulti)
			}
			if c := s.Calls(); c == 0 {
				t.Errorf("Calls() = 0 after a MultiRead")
			}
			// ctx-aware like the other calls.
			done, stop := context.WithCancel(ctx)
			stop()
			if _, err := s.MultiRead(done, ops); !errors.Is(err, context.Canceled) {
				t.Errorf("MultiRead with an ended context: %v", err)
			}
		})
	}
}

// A batch whose answer is larger than a node may be (ZooKeeper's 1 MB
// jute.maxbuffer) still reads: the client grows its buffer, and the
// server does not bound a response (zktree reads up to Options.Batch
// nodes per request, whatever their size).
func TestMultiReadLargeAnswer(t *testing.T) {
	zc := zktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := zksession.Connect(zksession.Config{Servers: zc.Servers(), SessionTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	val := make([]byte, 900_000)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	var ops []zksession.ReadOp
	for i := range 6 {
		p := fmt.Sprintf("/big%d", i)
		if _, err := s.Create(ctx, p, val, 0, nil); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, zksession.ReadOp{Path: p})
	}
	res, err := s.MultiRead(ctx, ops)
	if err != nil {
		t.Fatalf("MultiRead of 6 × 900 kB: %v", err)
	}
	for i, r := range res {
		if r.Error != nil || !slices.Equal(r.Data, val) {
			t.Fatalf("op %d: error %v, %d bytes", i, r.Error, len(r.Data))
		}
	}
}

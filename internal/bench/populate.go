package bench

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/zkgate/zkgate/internal/zksession"
	"github.com/zkgate/zkgate/register"
)

// maxMultiBytes keeps one multi request well below ZooKeeper's default
// jute.maxbuffer (1 MiB), which bounds a whole request.
const maxMultiBytes = 512 << 10

// layout names the services and instances of a synthetic registry:
// services svc-00000 … and, in service s, instance j at 10.a.b.c:port,
// unique across the registry.
type layout struct {
	services, instances int
}

// serviceName returns the name of service s.
func (l layout) serviceName(s int) string { return fmt.Sprintf("svc-%05d", s) }

// perService returns how many instances service s has: instances spread
// evenly, the first ones taking the remainder.
func (l layout) perService(s int) int {
	n := l.instances / l.services
	if s < l.instances%l.services {
		n++
	}
	return n
}

// addr returns a unique address for instance j of service s (s < 65536,
// j < 250·1000).
func (l layout) addr(s, j int) string {
	return fmt.Sprintf("10.%d.%d.%d:%d", s>>8&0xff, s&0xff, j%250+1, 8000+j/250)
}

// populateResult describes how the registry was written.
type populateResult struct {
	Nodes     int
	DataBytes int64
	Took      time.Duration
}

// populate writes the layout under root as persistent nodes: the service
// nodes, then every instance's Curator JSON, in multi batches of at most
// batch operations (and maxMultiBytes), with writers batches in flight at
// once (go-zookeeper pipelines them on the session's connection).
func populate(ctx context.Context, sess *zksession.Session, root string, l layout, batch, writers int, now time.Time) (populateResult, error) {
	start := time.Now()
	var res populateResult
	if err := sess.EnsurePath(ctx, root, nil); err != nil {
		return res, fmt.Errorf("creating %s: %w", root, err)
	}
	acl := zk.WorldACL(zk.PermAll)
	run := func(produce func(emit func(*zk.CreateRequest) bool)) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		batches := make(chan []any, writers)
		var wg sync.WaitGroup
		var errMu sync.Mutex
		var firstErr error
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ops := range batches {
					if err := multiCreate(ctx, sess, ops); err != nil {
						errMu.Lock()
						if firstErr == nil {
							firstErr = err
							cancel()
						}
						errMu.Unlock()
					}
				}
			}()
		}
		var ops []any
		size := 0
		flush := func() bool {
			if len(ops) == 0 {
				return true
			}
			select {
			case batches <- ops:
			case <-ctx.Done():
				return false
			}
			ops, size = nil, 0
			return true
		}
		produce(func(r *zk.CreateRequest) bool {
			if len(ops) >= batch || size+len(r.Data)+len(r.Path)+64 > maxMultiBytes {
				if !flush() {
					return false
				}
			}
			ops = append(ops, r)
			size += len(r.Data) + len(r.Path) + 64
			res.Nodes++
			res.DataBytes += int64(len(r.Data))
			return true
		})
		flush()
		close(batches)
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
		return ctx.Err()
	}
	err := run(func(emit func(*zk.CreateRequest) bool) {
		for s := range l.services {
			if !emit(&zk.CreateRequest{Path: path.Join(root, l.serviceName(s)), Acl: acl}) {
				return
			}
		}
	})
	if err != nil {
		return res, fmt.Errorf("creating the service nodes: %w", err)
	}
	var encErr error
	err = run(func(emit func(*zk.CreateRequest) bool) {
		for s := range l.services {
			name := l.serviceName(s)
			for j := range l.perService(s) {
				id, err := register.NewUUID()
				if err != nil {
					encErr = err
					return
				}
				data, err := curatorJSON(name, id, l.addr(s, j), now)
				if err != nil {
					encErr = err
					return
				}
				if !emit(&zk.CreateRequest{Path: path.Join(root, name, id), Data: data, Acl: acl}) {
					return
				}
			}
		}
	})
	if err = errors.Join(err, encErr); err != nil {
		return res, fmt.Errorf("creating the instance nodes: %w", err)
	}
	res.Took = time.Since(start)
	return res, nil
}

// multiCreate runs one multi of creates and reports the first failed one.
func multiCreate(ctx context.Context, sess *zksession.Session, ops []any) error {
	res, err := sess.Multi(ctx, ops...)
	for i, r := range res {
		if r.Error != nil {
			return fmt.Errorf("create %s: %w", ops[i].(*zk.CreateRequest).Path, r.Error)
		}
	}
	return err
}

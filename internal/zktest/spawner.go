package zktest

import (
	"errors"
	"os/exec"
	"runtime"
	"sync"
)

// errSpawnerClosed is returned by spawner.start after close.
var errSpawnerClosed = errors.New("zktest: cluster closed")

// spawner starts processes from one dedicated, locked OS thread so that
// Pdeathsig (which fires when the forking *thread* exits) only fires when the
// spawner stops or the whole process dies. See the package documentation.
type spawner struct {
	reqs      chan spawnReq
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type spawnReq struct {
	cmd *exec.Cmd
	res chan error
}

func newSpawner() *spawner {
	s := &spawner{
		reqs: make(chan spawnReq),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go s.run()
	return s
}

func (s *spawner) run() {
	// Never unlocked on purpose: when this goroutine returns, the runtime
	// terminates the thread instead of reusing it, which delivers Pdeathsig
	// to any child still alive. Until then the thread stays parked here.
	runtime.LockOSThread()
	defer close(s.done)
	for {
		select {
		case r := <-s.reqs:
			r.res <- r.cmd.Start()
		case <-s.quit:
			return
		}
	}
}

// start runs cmd.Start on the spawner thread.
func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnReq{cmd: cmd, res: make(chan error, 1)}
	select {
	case s.reqs <- r:
		return <-r.res
	case <-s.quit:
		return errSpawnerClosed
	}
}

// close stops the spawner thread (which SIGKILLs any child still alive on
// Linux) and waits for it. Safe to call more than once.
func (s *spawner) close() {
	s.closeOnce.Do(func() { close(s.quit) })
	<-s.done
}

package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
)

// Uprobes sit on a file's inode at offsets into the build the agent read, and the kernel copies each probed
// instruction once, from the build it first saw there. A deploy that rewrites the file in place ("stop; cp new over
// the path; start": same inode) and starts the new build before the agent's next scan ran the new code with the old
// build's breakpoints in it, at offsets that are other instructions there, and the kernel executed the old build's
// instructions in their place: the new process died at start (SIGSEGV in the uprobe's execute-out-of-line page), and
// the old probes' removal wrote the old build's bytes into it (found by review; TestRewrittenInPlaceAndStartedAtOnce).
//
// So every probed executable is held open with a read lease (fcntl F_SETLEASE). Whoever opens it for writing or
// truncates it waits in open (at most fs.lease-break-time, 45 s by default) while the kernel tells the agent with a
// SIGIO; the agent takes the file's uprobes off, then lets the lease go, and the writer proceeds. The probes go back
// on at the next scan, at the offsets of whatever the file then holds. A file open for writing when the agent comes
// to attach it is not attached until it is closed: it is being written.
//
// A lease needs CAP_LEASE or the agent's user to own the file (a root agent without CAP_LEASE, as deployed, owns
// root's executables) and a filesystem that supports leases; without them the file is probed unguarded, as the log
// says. A writer waits for every uprobe of the file to come off, one at a time in the kernel (README: seconds for a
// service's build), and at most fs.lease-break-time, after which the kernel breaks the lease itself.

// rewriteGuard is the read lease on one probed executable.
type rewriteGuard struct {
	f      *os.File
	set    *leaseSet
	mu     sync.Mutex // held while the probes go on; a lease break waits for it
	b      *binProbes // whose uprobes the break takes off; nil until they are on
	broken atomic.Bool
	once   sync.Once
}

// leaseSet is an agent's rewrite guards, which a SIGIO asks about.
type leaseSet struct {
	log    *slog.Logger
	mu     sync.Mutex
	guards map[*rewriteGuard]struct{}
	sig    chan os.Signal
	stop   chan struct{}
	done   chan struct{}
	// leased, when set, runs in take between setting the lease and registering its guard: a test opens the file
	// for writing there, in the window a writer can hit.
	leased func(f *os.File)
}

func newLeaseSet(log *slog.Logger) *leaseSet {
	s := &leaseSet{log: log, guards: map[*rewriteGuard]struct{}{}, sig: make(chan os.Signal, 1), stop: make(chan struct{}),
		done: make(chan struct{})}
	signal.Notify(s.sig, syscall.SIGIO)
	go s.watch()
	return s
}

// watch yields the leases being broken whenever a SIGIO comes. The signal does not say which file (and other agents
// in the process get it too), so each guard's lease is asked: F_GETLEASE answers F_UNLCK for one being broken.
func (s *leaseSet) watch() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.sig:
		}
		s.mu.Lock()
		guards := slices.Collect(maps.Keys(s.guards))
		s.mu.Unlock()
		for _, g := range guards {
			if lease, err := fcntl(g.f, syscall.F_GETLEASE, 0); err == nil && lease == syscall.F_UNLCK {
				g.yield()
			}
		}
	}
}

// close stops the watch; the guards are released with their probes.
func (s *leaseSet) close() {
	signal.Stop(s.sig)
	close(s.stop)
	<-s.done
}

// take puts a read lease on f (opened read-only) and returns its guard. It fails with EAGAIN while someone has the file
// open for writing, or opened it for writing while the lease was being taken (f is then closed). Any other error
// leaves f open and unleased, for the caller to probe unguarded as when the lease cannot be set.
func (s *leaseSet) take(f *os.File) (*rewriteGuard, error) {
	if _, err := fcntl(f, syscall.F_SETLEASE, syscall.F_RDLCK); err != nil {
		return nil, err
	}
	if s.leased != nil {
		s.leased(f)
	}
	g := &rewriteGuard{f: f, set: s}
	s.mu.Lock()
	s.guards[g] = struct{}{}
	s.mu.Unlock()
	// Registered, then checked: a writer that opened the file between the lease and the registration had its SIGIO
	// answered by a watch that did not know this guard yet, and waited out fs.lease-break-time (45 s) with nobody to
	// let it go. Its break is seen here (F_UNLCK: the lease is going); one after the registration, the watch sees.
	// EAGAIN (EWOULDBLOCK on Linux) is a writer too; any other error says nothing about one, and reported as EAGAIN
	// it had the caller wait for a write that never comes, retrying at every scan and logging only at debug level.
	lease, err := fcntl(f, syscall.F_GETLEASE, 0)
	switch {
	case err != nil && !errors.Is(err, syscall.EAGAIN):
		g.abandon()
		return nil, fmt.Errorf("F_GETLEASE: %w", err)
	case err != nil || lease == syscall.F_UNLCK:
		g.release() // the watch may be releasing it too: once
		return nil, syscall.EAGAIN
	}
	return g, nil
}

// abandon lets the lease go and forgets the guard, leaving f open for the caller; a later release does nothing.
func (g *rewriteGuard) abandon() {
	g.once.Do(func() {
		fcntl(g.f, syscall.F_SETLEASE, syscall.F_UNLCK)
		g.forget()
	})
}

// yield takes the file's uprobes off and lets the writer waiting on the lease go; the next scan puts the probes back.
func (g *rewriteGuard) yield() {
	g.mu.Lock() // an attach in progress finishes first, so its probes come off too
	b := g.b
	g.mu.Unlock()
	if !g.broken.Swap(true) && b != nil {
		g.set.log.Info("probes off: executable opened for writing, probed again at the next scan", "exe", b.exe)
	}
	g.release()
}

// release takes the uprobes of the guarded probes off, then the lease, once.
func (g *rewriteGuard) release() {
	g.once.Do(func() {
		g.mu.Lock()
		b := g.b
		g.mu.Unlock()
		if b != nil {
			b.closeLinks()
		}
		fcntl(g.f, syscall.F_SETLEASE, syscall.F_UNLCK)
		g.f.Close()
		g.forget()
	})
}

// forget takes the guard out of its set, so that a SIGIO no longer asks about it.
func (g *rewriteGuard) forget() {
	g.set.mu.Lock()
	delete(g.set.guards, g)
	g.set.mu.Unlock()
}

func fcntl(f *os.File, cmd, arg int) (int, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var r uintptr
	var errno syscall.Errno
	if err := sc.Control(func(fd uintptr) {
		r, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, uintptr(cmd), uintptr(arg))
	}); err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

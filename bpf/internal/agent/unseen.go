package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/shanhai-dev/shanhai/bpf/internal/sockdiag"
	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// struct owner's established values (tcp.c): the connection is open, its open counted or dropped.
const (
	openCounted = 1
	openDropped = 2
)

// unseenCloses are the closes of one process's connections that no BPF program saw, counted by reconcile: the
// process is (tgid, start), as in tcp.c's stats_of, so a process that takes the pid next starts from zero.
type unseenCloses struct {
	start  uint64
	closed uint64
}

// reconcile counts the opens, retransmits and closes no program saw: some state changes run while no BPF program
// can (on this machine, in softirq while a thread of pid 1 is current; README, "TCP state changes no program sees").
// The opens and retransmits of sockets still open are counted first, by tcp.c's recount run over each network
// namespace's sockets (recountHere; from 5.15): a connect whose ESTABLISHED was unseen kept a connecting owner, its
// open uncounted. Then the closes: a connection that passed CLOSE unseen kept its owner, its close counted only if a
// target socket took its address again. Each open owner is looked for among the kernel's live sockets (sock_diag) by
// the addresses the program kept; one that is gone is closed. Counted only if this delete of its owner succeeds: when
// the program saw the close (or took the address for a new socket) it deleted the owner and counted the close itself,
// so a close is counted once whoever sees it.
//
// Why not a BPF program run from here (BPF_PROG_TEST_RUN) that walks the owners and reads their sockets: an owner's
// socket may have been freed, its memory read as whatever holds it now; sock_diag answers from the kernel's own
// tables. And sock_diag's socket cookie is not the identity used either: the kernel makes a socket's cookie only
// when asked, so the program cannot read one for most sockets, and cannot ask before 5.12 (tcp.c's struct owner).
//
// sock_diag answers for the asking thread's network namespace, and a target in a container has its own: the owners
// of each other namespace are checked from a thread moved into it (inNetns, through an owner's process), which
// needs CAP_SYS_ADMIN; where that fails, that namespace's owners wait for the address reuse path as before.
func (s *system) reconcile() error {
	var errs []error
	byNetns := map[uint32]*netnsOwners{}
	var (
		key uint64
		o   tcp.BpfOwner
	)
	it := s.tcp.Owners.Iterate()
	for it.Next(&key, &o) {
		// No namespace: its addresses were not read (a probed read in accept_ret that failed), so it cannot be
		// looked for, and would be taken for closed; it waits for own.
		if o.Netns == 0 {
			continue
		}
		n := byNetns[o.Netns]
		if n == nil {
			n = &netnsOwners{pids: map[uint32]bool{}, open: map[uint64]tcp.BpfOwner{}}
			byNetns[o.Netns] = n
		}
		n.pids[o.Tgid] = true
		// A connecting owner has no local port yet (tcp.c's TUPLE): only recount judges it, by its socket (an open
		// it counts is looked for here from the next read on); a failed connect no program saw stays as before.
		if o.Established == openCounted || o.Established == openDropped {
			n.open[key] = o
		}
	}
	// A walk cut short because it restarted too often (owners deleted under it) is no error of this read: the
	// owners seen are examined, the others at the next.
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrIterationAborted) {
		errs = append(errs, fmt.Errorf("walk the socket owners: %w", err))
	}
	for netns, n := range byNetns {
		// The opens first: a connection recount finds open is open, whatever the dump says next.
		f := func() error { return errors.Join(s.recountHere(), s.check(n.open)) }
		if netns == s.netns {
			errs = append(errs, f())
			continue
		}
		errs = append(errs, inNetnsOf(n.pids, netns, f))
	}
	s.pruneUnseen()
	return errors.Join(errs...)
}

// netnsOwners are the owners of one network namespace: the pids of all of them, and the open ones by socket.
type netnsOwners struct {
	pids map[uint32]bool
	open map[uint64]tcp.BpfOwner
}

// inNetnsOf runs f on a thread in network namespace netns, entered through the first of processes pids found still
// in it.
func inNetnsOf(pids map[uint32]bool, netns uint32, f func() error) error {
	for pid := range pids {
		err := inNetns(int(pid), netns, f)
		if !errors.Is(err, errNotInNetns) {
			return err
		}
	}
	// None of the owners' processes is in it any more (exited, or moved): its owners wait.
	return nil
}

// check counts the closes of the owners cand, all of the calling thread's network namespace, whose connections
// sock_diag no longer has.
func (s *system) check(cand map[uint64]tcp.BpfOwner) error {
	if len(cand) == 0 {
		return nil
	}
	families := map[uint8]bool{}
	for _, o := range cand {
		families[uint8(o.Family)] = true
	}
	// Matched by addresses alone, not the bound device: a connected socket can be bound to a device after its open
	// (SO_BINDTODEVICE), which sock_diag reports while the owner keeps the one it had then. Two live connections of
	// one namespace share their addresses only on distinct devices (VRFs): such an owner's close waits for the other.
	live := map[sockdiag.ID]bool{}
	for f := range families {
		ids, err := sockdiag.Dump(f)
		if err != nil {
			return err
		}
		for id := range ids {
			live[withoutDevice(id)] = true
		}
	}
	var errs []error
	for key, o := range cand {
		id := ownerID(&o)
		if live[withoutDevice(id)] {
			continue
		}
		if err := s.closeUnseen(key, &o, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// closeUnseen deletes and counts owner o of socket key, absent from a dump, once its connection is known gone.
func (s *system) closeUnseen(key uint64, o *tcp.BpfOwner, id sockdiag.ID) error {
	// Read again, whole: the program writes an active open's addresses in place before marking it open, so the walk
	// may have read a torn owner; and a changed one (a new socket at that address) is the next call's to judge.
	var now tcp.BpfOwner
	if err := s.tcp.Owners.Lookup(key, &now); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil // the program saw the close
		}
		return fmt.Errorf("read a socket owner: %w", err)
	}
	if now != *o {
		return nil
	}
	// A dump resumes at a position in a hash bucket and may skip a socket another leaving the bucket moved: the
	// lookup by addresses does not. It names the device the owner kept: a connection bound to another since and
	// skipped by this dump would be taken for closed (the kernel's lookup matches the device; left, as rare twice).
	alive, err := sockdiag.Alive(id)
	if err != nil || alive {
		return err
	}
	var gone tcp.BpfOwner
	err = s.tcp.Owners.LookupAndDelete(key, &gone)
	if errors.Is(err, ebpf.ErrNotSupported) {
		// Before 5.14 a hash map has no lookup-and-delete: the owner read above is deleted blind. A new socket given
		// this memory since that read (a window of the sock_diag lookup's few syscalls) loses its owner, its events
		// then uncounted, and the old close is counted twice (own counted it when it replaced the owner).
		err, gone = s.tcp.Owners.Delete(key), *o
	}
	if err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		return fmt.Errorf("delete the owner of a closed socket: %w", err)
	}
	if gone != *o {
		// Between the read and the delete the socket's memory went to a new socket of a target, whose owner
		// (made by tcp.c's own, which counted this close) was deleted here: put back.
		if err := s.tcp.Owners.Update(key, &gone, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("restore a socket owner: %w", err)
		}
		return nil
	}
	// As tcp.c's close: into the owner's entry if it still has it (the same process), else dropped if its open was.
	// The segments retransmitted since last counted cannot be read from a socket that is gone.
	var st tcp.BpfTcpStats
	err = s.tcp.Tcp.Lookup(o.Tgid, &st)
	switch {
	case err == nil && st.Start == o.Start:
		u := s.unseen[o.Tgid]
		if u.start != o.Start {
			u = unseenCloses{start: o.Start}
		}
		u.closed++
		s.unseen[o.Tgid] = u
	case err != nil && !errors.Is(err, ebpf.ErrKeyNotExist):
		return fmt.Errorf("read the tcp counters of pid %d: %w", o.Tgid, err)
	case o.Established == openDropped:
		s.unseenDropped++
	}
	return nil
}

// pruneUnseen forgets the unseen closes of processes whose tcp entry is gone or another process's.
func (s *system) pruneUnseen() {
	var st tcp.BpfTcpStats
	for tgid, u := range s.unseen {
		if err := s.tcp.Tcp.Lookup(tgid, &st); errors.Is(err, ebpf.ErrKeyNotExist) || (err == nil && st.Start != u.start) {
			delete(s.unseen, tgid)
		}
	}
}

// ownerID is the address sock_diag gives the connection of o (tcp.c's TUPLE).
func ownerID(o *tcp.BpfOwner) sockdiag.ID {
	id := sockdiag.ID{Family: uint8(o.Family), Sport: o.Sport, Src: o.Saddr, Dst: o.Daddr, If: o.DevIf}
	// dport is kept as the kernel holds it, in network order: its bytes, read as the host's order, are swapped.
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], o.Dport)
	id.Dport = uint16(b[0])<<8 | uint16(b[1])
	if id.Family == unix.AF_INET {
		clear(id.Src[4:])
		clear(id.Dst[4:])
	}
	return id
}

// withoutDevice is id with no bound device, to match a connection by its addresses alone.
func withoutDevice(id sockdiag.ID) sockdiag.ID {
	id.If = 0
	return id
}

// errNotInNetns is inNetns's answer for a process that is gone or in another network namespace.
var errNotInNetns = errors.New("process not in the network namespace")

// inNetns runs f on a thread moved into the network namespace of process pid, which must be netns (its inode
// number; 0: any), and moved back before the runtime may run another goroutine on it. Leaving the thread to end with
// its goroutine is not enough: the runtime cannot end the process's main thread, and wedges it instead, for good in
// that namespace (found by review: /proc/<agent>/ns/net then named a pod's namespace, and kept it alive). A thread
// that cannot be moved back stays locked and ends with its goroutine.
func inNetns(pid int, netns uint32, f func() error) error {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return errNotInNetns
	}
	if err != nil {
		return fmt.Errorf("open the network namespace of pid %d: %w", pid, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("read the network namespace of pid %d: %w", pid, err)
	}
	if netns != 0 && uint32(st.Ino) != netns {
		return errNotInNetns
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open the agent's network namespace: %w", err)
			return
		}
		defer unix.Close(back)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter the network namespace of pid %d: %w", pid, err)
			return
		}
		err = f()
		if berr := unix.Setns(back, unix.CLONE_NEWNET); berr != nil {
			done <- errors.Join(err, fmt.Errorf("leave the network namespace of pid %d: %w", pid, berr))
			return
		}
		runtime.UnlockOSThread()
		done <- err
	}()
	return <-done
}

// netnsOf is the inode number of the calling thread's network namespace, as tcp.c's TUPLE reads a socket's.
func netnsOf() (uint32, error) {
	fi, err := os.Stat("/proc/thread-self/ns/net")
	if err != nil {
		return 0, fmt.Errorf("read the agent's network namespace: %w", err)
	}
	return uint32(fi.Sys().(*syscall.Stat_t).Ino), nil
}

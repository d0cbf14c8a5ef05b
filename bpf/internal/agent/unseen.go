package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
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

// reconcile counts the closes no program saw: some state changes run while no BPF program can (on this machine,
// in softirq while a thread of pid 1 is current; README, "TCP state changes no program sees"), and a connection
// that passed CLOSE that way kept its owner, its close counted only if a target socket took its address again.
// Each open owner is looked for among the kernel's live sockets (sock_diag) by the addresses the program kept;
// one that is gone is closed. Counted only if this delete of its owner succeeds: when the program saw the close
// (or took the address for a new socket) it deleted the owner and counted the close itself, so a close is counted
// once whoever sees it.
//
// Why not a BPF program run from here (BPF_PROG_TEST_RUN) that walks the owners and reads their sockets: an owner's
// socket may have been freed, its memory read as whatever holds it now; sock_diag answers from the kernel's own
// tables. And sock_diag's socket cookie is not the identity used either: the kernel makes a socket's cookie only
// when asked, so the program cannot read one for most sockets, and cannot ask before 5.12 (tcp.c's struct owner).
//
// Owners in another network namespace than the agent's (a target in a container with its own) are left alone: the
// dump sees this namespace only. Their unseen closes are still counted when the address is taken again.
func (s *system) reconcile() error {
	var errs []error
	cand := map[uint64]tcp.BpfOwner{}
	var (
		key uint64
		o   tcp.BpfOwner
	)
	families := map[uint8]bool{}
	it := s.tcp.Owners.Iterate()
	for it.Next(&key, &o) {
		// A connecting owner has no local port yet (tcp.c's TUPLE); a failed connect no program saw stays as before.
		if (o.Established == openCounted || o.Established == openDropped) && o.Netns == s.netns {
			cand[key] = o
			families[uint8(o.Family)] = true
		}
	}
	// A walk cut short because it restarted too often (owners deleted under it) is no error of this read: the
	// owners seen are examined, the others at the next.
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrIterationAborted) {
		errs = append(errs, fmt.Errorf("walk the socket owners: %w", err))
	}
	live := map[sockdiag.ID]bool{}
	for f := range families {
		ids, err := sockdiag.Dump(f)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		for id := range ids {
			live[id] = true
		}
	}
	for key, o := range cand {
		id := ownerID(&o)
		if live[id] {
			continue
		}
		if err := s.closeUnseen(key, &o, id); err != nil {
			errs = append(errs, err)
		}
	}
	s.pruneUnseen()
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
	// lookup by addresses does not.
	alive, err := sockdiag.Alive(id)
	if err != nil || alive {
		return err
	}
	var gone tcp.BpfOwner
	err = s.tcp.Owners.LookupAndDelete(key, &gone)
	if errors.Is(err, ebpf.ErrNotSupported) {
		// Before 5.14 a hash map has no lookup-and-delete: the owner just read is deleted, and a new socket given
		// this memory in between (a window of one syscall) loses its owner, its events then uncounted.
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

// netnsOf is the inode number of the calling thread's network namespace, as tcp.c's TUPLE reads a socket's.
func netnsOf() (uint32, error) {
	fi, err := os.Stat("/proc/thread-self/ns/net")
	if err != nil {
		return 0, fmt.Errorf("read the agent's network namespace: %w", err)
	}
	return uint32(fi.Sys().(*syscall.Stat_t).Ino), nil
}

package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// system is the probes that watch the whole kernel once (TCP); their maps are keyed by pid and read for targets only.
// Passive opens are the exception: tcp.AcceptRet is loaded here with the maps it shares with the tracepoints, but
// attached to each target binary (binProbes.attachAccept), because the syscalls:sys_exit_accept{,4} tracepoints would
// slow every syscall of every process on the machine.
type system struct {
	tcp   tcp.BpfObjects
	links []link.Link
	// exits reads the pids of probed executables' processes that exited (tcp.c's process_exit), so their entries
	// go before a new process can be counted under the same pid.
	exits *ringbuf.Reader
	// tracked are the inode numbers in the probe's tracked_files: only the connections of processes running one of
	// these files are counted (tcp.c's tracked).
	tracked map[uint64]bool
	// netns is the agent's network namespace (its inode number), the one whose sockets reconcile can look up;
	// unseen and unseenDropped are the closes it counted, added to the probe's own counts when they are read.
	netns         uint32
	unseen        map[uint32]unseenCloses
	unseenDropped uint64
}

// attachSystem loads and attaches the TCP probe; processEntries and socketEntries, when not 0, are the sizes of the
// tcp and owners maps instead of the compiled ones (Config.processEntries, Config.socketEntries).
func attachSystem(processEntries, socketEntries uint32) (*system, error) {
	netns, err := netnsOf()
	if err != nil {
		return nil, err
	}
	s := &system{tracked: map[uint64]bool{}, netns: netns, unseen: map[uint32]unseenCloses{}}
	spec, err := tcp.LoadBpf()
	if err != nil {
		return nil, fmt.Errorf("load tcp probe: %w", err)
	}
	if processEntries > 0 {
		spec.Maps["tcp"].MaxEntries = processEntries
	}
	if socketEntries > 0 {
		spec.Maps["owners"].MaxEntries = socketEntries
	}
	if err := spec.LoadAndAssign(&s.tcp, nil); err != nil {
		return nil, fmt.Errorf("load tcp probe: %w", err)
	}
	add := func(l link.Link, err error) error {
		if err != nil {
			return err
		}
		s.links = append(s.links, l)
		return nil
	}
	// BTF tracepoints (tp_btf), attached by the BTF id bpf2go recorded from the section name: unlike a perf-event
	// tracepoint program they are not skipped while another BPF program runs on the CPU, and the state changes have
	// two programs, so that a change interrupting one is handled by the other (tcp.c says why).
	for _, p := range []*ebpf.Program{s.tcp.SetState, s.tcp.SetStateSpare} {
		if err := add(link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})); err != nil {
			s.Close()
			return nil, fmt.Errorf("attach sock:inet_sock_set_state (a BTF tracepoint, tp_btf): %w", err)
		}
	}
	if err := add(link.AttachTracing(link.TracingOptions{Program: s.tcp.Retransmit, AttachType: ebpf.AttachTraceRawTp})); err != nil {
		s.Close()
		return nil, fmt.Errorf("attach tcp:tcp_retransmit_skb (a BTF tracepoint, tp_btf): %w", err)
	}
	if err := add(link.Tracepoint("sched", "sched_process_exit", s.tcp.ProcessExit, nil)); err != nil {
		s.Close()
		return nil, fmt.Errorf("attach sched:sched_process_exit: %w", err)
	}
	if s.exits, err = ringbuf.NewReader(s.tcp.Exits); err != nil {
		s.Close()
		return nil, fmt.Errorf("read the exits ring: %w", err)
	}
	return s, nil
}

// exited returns the pids of probed executables' processes that exited since the last call, without waiting.
func (s *system) exited() (map[int]bool, error) {
	pids := map[int]bool{}
	s.exits.SetDeadline(time.Now()) // in the past by the time it is read: nothing is waited for
	var rec ringbuf.Record
	for {
		err := s.exits.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return pids, nil
		}
		if err != nil {
			return pids, fmt.Errorf("read the exits ring: %w", err)
		}
		if len(rec.RawSample) >= 4 {
			pids[int(binary.NativeEndian.Uint32(rec.RawSample))] = true
		}
	}
}

// setTracked makes the probe's tracked_files hold exactly the inode numbers in inos: only the connections of
// processes running one of them are counted (tcp.c's tracked).
func (s *system) setTracked(inos map[uint64]bool) error {
	var errs []error
	for ino := range inos {
		if s.tracked[ino] {
			continue
		}
		if err := s.tcp.TrackedFiles.Put(ino, uint8(1)); err != nil {
			errs = append(errs, fmt.Errorf("inode %d: %w", ino, err))
			continue
		}
		s.tracked[ino] = true
	}
	for ino := range s.tracked {
		if inos[ino] {
			continue
		}
		if err := s.tcp.TrackedFiles.Delete(ino); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("inode %d: %w", ino, err))
			continue
		}
		delete(s.tracked, ino)
	}
	return errors.Join(errs...)
}

// probeFile has process_exit report the exits of processes running the file with inode ino (probed) or not.
func (s *system) probeFile(ino uint64, probed bool) error {
	if probed {
		return s.tcp.ProbedFiles.Put(ino, uint8(1))
	}
	if err := s.tcp.ProbedFiles.Delete(ino); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

func (s *system) Close() error {
	if s.exits != nil {
		s.exits.Close()
	}
	for _, l := range s.links {
		l.Close()
	}
	return s.tcp.Close()
}

// tcpTracepoints are the BTF tracepoints the TCP probe's programs attach to (their SEC names in tcp.c), as the
// preflight tries them: the probe runs in every HTTP probe mode.
var tcpTracepoints = []string{"inet_sock_set_state", "tcp_retransmit_skb"}

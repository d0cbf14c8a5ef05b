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
	// recount is tcp.c's recount attached as a TCP socket iterator: reconcile runs it in each network namespace with
	// owners, for the opens and retransmits no program saw. Nil when recountOff says why: a kernel before
	// recountSince, or a load or attach the kernel refused. The agent runs without it then (the opens and
	// retransmits no program saw stay uncounted, as before recount), and says so (Agent.New, shanhai_bpf_system_unprobed).
	recount    *link.Iter
	recountOff string
}

// attachSystem loads and attaches the TCP probe; processEntries and socketEntries, when not 0, are the sizes of the
// tcp and owners maps instead of the compiled ones (Config.processEntries, Config.socketEntries), and refuseRecount
// has the kernel refuse recount (Config.refuseRecount).
func attachSystem(processEntries, socketEntries uint32, refuseRecount bool) (*system, error) {
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
	if refuseRecount {
		spec.Programs["recount"].Flags |= 1 << 31 // a flag no kernel knows: the load is refused
	}
	if err := s.load(spec); err != nil {
		return nil, err
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
	if s.tcp.Recount != nil {
		if s.recount, err = link.AttachIter(link.IterOptions{Program: s.tcp.Recount}); err != nil {
			s.recountOff = fmt.Sprintf("attach the tcp socket iterator (iter/tcp): %v", err)
		}
	}
	return s, nil
}

// load loads the probe's maps and programs into s.tcp. recount, an iter/tcp program, is loaded apart and only from
// 5.15 (recountSince): the probe's other programs still load on 5.8, and before 5.15 the iterator does not lock the
// socket it shows, so recount and set_state could both count one open (tcp.c's recount). A recount the kernel
// refuses is not the probe's failure: the agent runs without it, as before 5.15 (s.recountOff says why).
func (s *system) load(spec *ebpf.CollectionSpec) error {
	var core struct {
		tcp.BpfMaps
		AcceptRet     *ebpf.Program `ebpf:"accept_ret"`
		ProcessExit   *ebpf.Program `ebpf:"process_exit"`
		Retransmit    *ebpf.Program `ebpf:"retransmit"`
		SetState      *ebpf.Program `ebpf:"set_state"`
		SetStateSpare *ebpf.Program `ebpf:"set_state_spare"`
	}
	if err := spec.LoadAndAssign(&core, nil); err != nil {
		return fmt.Errorf("load tcp probe: %w", err)
	}
	s.tcp.BpfMaps = core.BpfMaps
	s.tcp.BpfPrograms = tcp.BpfPrograms{AcceptRet: core.AcceptRet, ProcessExit: core.ProcessExit,
		Retransmit: core.Retransmit, SetState: core.SetState, SetStateSpare: core.SetStateSpare}
	if !kernelAtLeast(recountSince) {
		s.recountOff = fmt.Sprintf("kernel before %d.%d", recountSince[0], recountSince[1])
		return nil
	}
	// Every map of the probe is the one just loaded: a map left out of the replacements would be made anew for
	// recount alone, and its counts go nowhere.
	m := &s.tcp.BpfMaps
	var it struct {
		Recount *ebpf.Program `ebpf:"recount"`
	}
	err := spec.LoadAndAssign(&it, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"exits": m.Exits, "owners": m.Owners, "owners_full": m.OwnersFull, "probed_files": m.ProbedFiles,
		"tcp": m.Tcp, "tcp_dropped": m.TcpDropped, "tracked_files": m.TrackedFiles,
	}})
	if err != nil {
		s.recountOff = fmt.Sprintf("load the tcp socket iterator (recount): %v", err)
		return nil
	}
	s.tcp.Recount = it.Recount
	return nil
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
	if s.recount != nil {
		s.recount.Close()
	}
	return s.tcp.Close()
}

// tcpTracepoints are the BTF tracepoints the TCP probe's programs attach to (their SEC names in tcp.c), as the
// preflight tries them: the probe runs in every HTTP probe mode.
var tcpTracepoints = []string{"inet_sock_set_state", "tcp_retransmit_skb"}

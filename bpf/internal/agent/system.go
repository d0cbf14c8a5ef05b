package agent

import (
	"fmt"

	"github.com/cilium/ebpf/link"

	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// system is the probes that watch the whole kernel once (TCP); their maps are keyed by pid and read for targets only.
// Passive opens are the exception: tcp.AcceptRet is loaded here with the maps it shares with the tracepoints, but
// attached to each target binary (binProbes.attachAccept), because the syscalls:sys_exit_accept{,4} tracepoints would
// slow every syscall of every process on the machine.
type system struct {
	tcp   tcp.BpfObjects
	links []link.Link
}

func attachSystem() (*system, error) {
	s := &system{}
	if err := tcp.LoadBpfObjects(&s.tcp, nil); err != nil {
		return nil, fmt.Errorf("load tcp probe: %w", err)
	}
	add := func(l link.Link, err error) error {
		if err != nil {
			return err
		}
		s.links = append(s.links, l)
		return nil
	}
	if err := add(link.Tracepoint("sock", "inet_sock_set_state", s.tcp.SetState, nil)); err != nil {
		s.Close()
		return nil, fmt.Errorf("attach sock:inet_sock_set_state: %w", err)
	}
	if err := add(link.Tracepoint("tcp", "tcp_retransmit_skb", s.tcp.Retransmit, nil)); err != nil {
		s.Close()
		return nil, fmt.Errorf("attach tcp:tcp_retransmit_skb: %w", err)
	}
	return s, nil
}

func (s *system) Close() error {
	for _, l := range s.links {
		l.Close()
	}
	return s.tcp.Close()
}

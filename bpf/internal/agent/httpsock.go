package agent

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/shanhai-dev/shanhai/bpf/probe/httpsock"
)

// HTTP server probe modes (Config.HTTPProbe).
const (
	// HTTPProbeUprobe traps net/http.serverHandler.ServeHTTP in each target executable: it sees every request the Go
	// server handles, TLS and HTTP/2 included, but costs two uprobe traps per request.
	HTTPProbeUprobe = "uprobe"
	// HTTPProbeSocket watches the bytes target processes read and write on sockets (the sock:sock_recv_length and
	// sock:sock_send_length tracepoints): no trap, but plaintext HTTP/1.x only, on connections a listener accepted
	// after the probe was attached, and every process's socket calls pay its filter (see probe/httpsock).
	HTTPProbeSocket = "socket"
)

// pidArraySize is the size of the socket probe's array filter (PID_ARRAY_BITS in httpsock.c); larger pids go to the
// hash map beside it.
const pidArraySize = 1 << 16

// sockProbe is the socket-layer HTTP server probe. Unlike uprobes, which live on an executable file, its programs
// run for every process's TCP traffic, so the agent tells them which processes are targets; which sockets are served
// ones (accepted by a listener) the programs tell themselves (see httpsock.c).
type sockProbe struct {
	objs  httpsock.BpfObjects
	links []link.Link
	pids  map[int]bool // the pids written to the filter maps
}

// sockTracepoints are the BTF tracepoints the socket probe's programs attach to (their SEC names in httpsock.c), as
// the preflight tries them.
var sockTracepoints = []string{"inet_sock_set_state", "sock_recv_length", "sock_send_length"}

func attachSockProbe() (*sockProbe, error) {
	p := &sockProbe{pids: map[int]bool{}}
	if err := httpsock.LoadBpfObjects(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("load http socket probe: %w", err)
	}
	for _, at := range []struct {
		prog *ebpf.Program
		kind ebpf.AttachType
		fn   string
	}{
		{p.objs.Served, ebpf.AttachTraceRawTp, "sock:inet_sock_set_state"}, // first: it marks what the others watch
		{p.objs.RecvLength, ebpf.AttachTraceRawTp, "sock:sock_recv_length"},
		{p.objs.SendLength, ebpf.AttachTraceRawTp, "sock:sock_send_length"},
	} {
		l, err := link.AttachTracing(link.TracingOptions{Program: at.prog, AttachType: at.kind})
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("attach http socket probe to %s (a BTF tracepoint, tp_btf): %w", at.fn, err)
		}
		p.links = append(p.links, l)
	}
	return p, nil
}

// setTargets makes the filter hold exactly the pids in live.
func (p *sockProbe) setTargets(live map[int]proc) error {
	var errs []error
	put := func(pid int, on bool) {
		k := uint32(pid)
		var err error
		switch {
		case pid < pidArraySize && on:
			err = p.objs.TargetPids.Put(k, uint32(1))
		case pid < pidArraySize:
			err = p.objs.TargetPids.Put(k, uint32(0))
		case on:
			err = p.objs.TargetPidsBig.Put(k, uint32(1))
		default:
			err = p.objs.TargetPidsBig.Delete(k)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pid %d: %w", pid, err))
		}
	}
	for pid := range live {
		if !p.pids[pid] {
			put(pid, true)
			p.pids[pid] = true
		}
	}
	for pid := range p.pids {
		if _, ok := live[pid]; !ok {
			put(pid, false)
			delete(p.pids, pid)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("http socket probe filter: %v", errs)
	}
	return nil
}

func (p *sockProbe) read(s *Snapshot) error {
	if err := readREDMap(p.objs.Requests, s); err != nil {
		return fmt.Errorf("read http socket probe map: %w", err)
	}
	return nil
}

func (p *sockProbe) Close() error {
	for _, l := range p.links {
		l.Close()
	}
	return p.objs.Close()
}

package main

import (
	"fmt"
	"net"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// tcpPrograms are the TCP probe's state change programs, the ones every TCP socket on the machine runs.
var tcpPrograms = []string{"set_state", "set_state_spare"}

// priceTCP prices the TCP probe's state change programs of each object (name=path.o, bpf_x86_bpfel.o builds of
// probe/tcp/tcp.c) side by side: per round and object, set_state and set_state_spare are attached alone and this
// process makes dials loopback connections (connect, accept, close both ends), untracked as every process is whose
// executable no agent reads (tracked_files is left empty: the path all of a node's other connections take). The
// programs also run for every other TCP state change on the machine meanwhile, so the figures are per hit of any
// change, and per dial of this process's with the others' hits included.
func priceTCP(objs []string, rounds, dials int) error {
	// Checked before anything is loaded: a round per object would divide by dials, and a bad -tcp would stop the
	// run only at its first round.
	if dials < 1 || rounds < 1 {
		return fmt.Errorf("-dials %d, -rounds %d: want at least 1 each", dials, rounds)
	}
	for _, o := range objs {
		if _, _, ok := strings.Cut(o, "="); !ok {
			return fmt.Errorf("-tcp %q: want name=path.o", o)
		}
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable bpf_stats: %w", err)
	}
	defer stats.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen on loopback: %w", err)
	}
	defer ln.Close()
	type cost struct{ perHit, perDial []float64 }
	costs := make(map[string]map[string]*cost)
	for r := 0; r < rounds; r++ {
		for _, o := range objs {
			name, path, _ := strings.Cut(o, "=")
			got, err := tcpRound(path, ln, dials)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if costs[name] == nil {
				costs[name] = make(map[string]*cost)
			}
			for _, prog := range tcpPrograms {
				p := got[prog]
				c := costs[name][prog]
				if c == nil {
					c = &cost{}
					costs[name][prog] = c
				}
				c.perHit = append(c.perHit, float64(p.ns)/float64(max(p.hits, 1)))
				c.perDial = append(c.perDial, float64(p.ns)/float64(dials))
				fmt.Printf("round %d %s %s: %d hits, %.1f ns a hit\n", r+1, name, prog, p.hits, float64(p.ns)/float64(max(p.hits, 1)))
			}
		}
	}
	fmt.Printf("medians of %d rounds, %d dials each:\n", rounds, dials)
	for _, o := range objs {
		name, _, _ := strings.Cut(o, "=")
		for _, prog := range tcpPrograms {
			c := costs[name][prog]
			fmt.Printf("%-10s %-16s %7.1f ns a hit %9.1f ns a dial\n", name, prog, median(c.perHit), median(c.perDial))
		}
	}
	return nil
}

// tcpRound loads the TCP probe from path, attaches its state change programs, makes dials connections to ln and
// returns what each program cost meanwhile.
func tcpRound(path string, ln net.Listener, dials int) (map[string]priced, error) {
	spec, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	defer coll.Close()
	before := make(map[string]*ebpf.ProgramStats)
	for _, name := range tcpPrograms {
		p := coll.Programs[name]
		if p == nil {
			return nil, fmt.Errorf("no program %s", name)
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			return nil, fmt.Errorf("attach %s: %w", name, err)
		}
		defer l.Close()
		if before[name], err = p.Stats(); err != nil {
			return nil, fmt.Errorf("read the stats of %s: %w", name, err)
		}
	}
	for range dials {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", ln.Addr(), err)
		}
		s, err := ln.Accept()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		c.Close()
		s.Close()
	}
	got := make(map[string]priced)
	for _, name := range tcpPrograms {
		s, err := coll.Programs[name].Stats()
		if err != nil {
			return nil, fmt.Errorf("read the stats of %s: %w", name, err)
		}
		got[name] = priced{name: name, ns: uint64(s.Runtime - before[name].Runtime), hits: s.RunCount - before[name].RunCount}
	}
	return got, nil
}

package agent

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/shanhai-dev/shanhai/bpf/internal/hist"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpserver"
	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// RED identifies one request series: process, method, status.
type RED struct {
	PID    int
	Method string
	Status int
}

// TCPStats are one process's connection counters.
type TCPStats struct {
	Active, Passive, Closed, Failed, Retransmits uint64
}

// Snapshot is everything the probes have counted, summed over CPUs, keyed by process.
type Snapshot struct {
	Server     map[RED]hist.Hist
	STW        map[int]hist.Hist
	Goroutines map[int]uint64
	TCP        map[int]TCPStats
	Calls      map[Call]hist.Hist
}

// ServerTotal sums the server requests of pid.
func (s Snapshot) ServerTotal(pid int) (n uint64) {
	for k, h := range s.Server {
		if k.PID == pid {
			n += h.Count
		}
	}
	return n
}

func newSnapshot() Snapshot {
	return Snapshot{Server: map[RED]hist.Hist{}, STW: map[int]hist.Hist{}, Goroutines: map[int]uint64{}, TCP: map[int]TCPStats{}, Calls: map[Call]hist.Hist{}}
}

func cstr(b []int8) string {
	u := make([]byte, len(b))
	for i, c := range b {
		u[i] = byte(c)
	}
	if i := bytes.IndexByte(u, 0); i >= 0 {
		u = u[:i]
	}
	return string(u)
}

func sumHists(vals []hist.Hist) hist.Hist {
	var h hist.Hist
	for i := range vals {
		h.Add(&vals[i])
	}
	return h
}

func (b *binProbes) read(s *Snapshot) error {
	if b.http != nil {
		var k httpserver.BpfRedKey
		var vals []hist.Hist
		it := b.http.Requests.Iterate()
		for it.Next(&k, &vals) {
			r := RED{PID: int(k.Tgid), Method: cstr(k.Method[:]), Status: int(k.Status)}
			h := s.Server[r]
			sum := sumHists(vals)
			h.Add(&sum)
			s.Server[r] = h
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("read http server map: %w", err)
		}
	}
	for _, m := range b.calls {
		if err := readCalls(m, s); err != nil {
			return fmt.Errorf("read call map: %w", err)
		}
	}
	if b.rt != nil {
		var pid uint32
		var vals []hist.Hist
		it := b.rt.Stw.Iterate()
		for it.Next(&pid, &vals) {
			s.STW[int(pid)] = sumHists(vals)
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("read stw map: %w", err)
		}
		var counts []uint64
		it = b.rt.Goroutines.Iterate()
		for it.Next(&pid, &counts) {
			var n uint64
			for _, c := range counts {
				n += c
			}
			s.Goroutines[int(pid)] = n
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("read goroutine map: %w", err)
		}
	}
	return nil
}

func (sy *system) read(s *Snapshot, want func(pid int) bool) error {
	var pid uint32
	var vals []tcp.BpfTcpStats
	it := sy.tcp.Tcp.Iterate()
	for it.Next(&pid, &vals) {
		if !want(int(pid)) {
			continue
		}
		var t TCPStats
		for _, v := range vals {
			t.Active += v.Active
			t.Passive += v.Passive
			t.Closed += v.Closed
			t.Failed += v.Failed
			t.Retransmits += v.Retrans
		}
		s.TCP[int(pid)] = t
	}
	return it.Err()
}

// prune deletes the entries of processes that are gone from a map keyed by a struct whose first field is the pid
// (or by the pid itself).
func prune(m *ebpf.Map, alive func(pid int) bool) {
	if m == nil {
		return
	}
	var dead [][]byte
	var cur any // nil asks for the first key
	for {
		next := make([]byte, m.KeySize())
		if err := m.NextKey(cur, next); err != nil {
			break
		}
		if len(next) >= 4 && !alive(int(binary.LittleEndian.Uint32(next))) {
			dead = append(dead, next)
		}
		cur = next
	}
	for _, d := range dead {
		_ = m.Delete(d)
	}
}

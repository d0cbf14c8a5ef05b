package agent

import (
	"math/bits"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/shanhai-dev/shanhai/bpf/probe/db"
	"github.com/shanhai-dev/shanhai/bpf/probe/goruntime"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpclient"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpserver"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpsock"
	"github.com/shanhai-dev/shanhai/bpf/probe/messaging"
	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// mapOverhead is what the kernel adds to a map beyond its values (struct bpf_map, a hash map's bucket array and
// per-CPU counters): a few KiB measured on 6.18, 64 KiB allowed so the bound is about preallocation, not bookkeeping.
const mapOverhead = 64 << 10

// TestMapMemoryPerTarget loads every probe as the agent does (the uprobe-mode ones once per probed executable, the
// socket and TCP ones once per agent) and prints what the kernel charges for its maps (fdinfo memlock, charged to the
// agent's memory cgroup since 5.11): the numbers bpf/README.md ("Map memory") and the agent's memory limit are set
// from. It fails when a map holds more than its arrays' values: a preallocated hash table (4096 histograms on every
// possible CPU, 96 MiB a target on 2 CPUs before) would be charged in full before the first request.
func TestMapMemoryPerTarget(t *testing.T) {
	requireRoot(t)
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	probes := []struct {
		name      string
		perTarget bool
		load      func() (*ebpf.CollectionSpec, error)
	}{
		{"httpserver", true, httpserver.LoadBpf},
		{"goruntime", true, goruntime.LoadBpf},
		{"httpclient", true, httpclient.LoadBpf},
		{"db", true, db.LoadBpf},
		{"messaging", true, messaging.LoadBpf},
		{"httpsock", false, httpsock.LoadBpf},
		{"tcp", false, tcp.LoadBpf},
	}
	var target, agent uint64
	perCPU := map[bool]uint64{}
	for _, p := range probes {
		spec, err := p.load()
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		var total uint64
		for name, ms := range spec.Maps {
			m, err := ebpf.NewMap(ms)
			if err != nil {
				t.Fatalf("%s: map %s: %v", p.name, name, err)
			}
			info, err := m.Info()
			m.Close()
			if err != nil {
				t.Fatalf("%s: map %s: %v", p.name, name, err)
			}
			memlock, ok := info.Memlock()
			if !ok {
				t.Fatalf("%s: map %s: the kernel reports no memlock", p.name, name)
			}
			// What must be allocated up front: an array's values, on every possible CPU for a per-CPU one, and a hash
			// map's buckets (16 B each, a power of two of them), whatever the CPU count; not a hash map's elements.
			var values uint64
			switch ms.Type {
			case ebpf.Hash, ebpf.PerCPUHash:
				values = 16 << bits.Len32(ms.MaxEntries-1)
			case ebpf.Array:
				values = uint64(ms.MaxEntries) * uint64(roundUp8(ms.ValueSize))
			case ebpf.PerCPUArray:
				values = uint64(ms.MaxEntries) * uint64(roundUp8(ms.ValueSize)) * uint64(ncpu)
				perCPU[p.perTarget] += values / uint64(ncpu)
			}
			// SK_STORAGE grows with the sockets and frees with them; an LRU hash (tcp's owners) is always preallocated,
			// but not per CPU, so neither is bounded here.
			bounded := ms.Type == ebpf.Array || ms.Type == ebpf.PerCPUArray || ms.Type == ebpf.Hash || ms.Type == ebpf.PerCPUHash
			if bounded && memlock > values+mapOverhead {
				t.Errorf("%s: map %s (%v, %d entries) is charged %d B at load, more than the %d B it must hold: preallocated?",
					p.name, name, ms.Type, ms.MaxEntries, memlock, values)
			}
			total += memlock
		}
		t.Logf("%-10s %7.1f KiB (%s)", p.name, float64(total)/1024, map[bool]string{true: "per probed executable", false: "once per agent"}[p.perTarget])
		if p.perTarget {
			target += total
		} else {
			agent += total
		}
	}
	t.Logf("one probed executable, uprobe mode: %.2f MiB on %d possible CPUs, of which %.0f KiB per possible CPU (the per-CPU slot arrays)",
		float64(target)/(1<<20), ncpu, float64(perCPU[true])/1024)
	t.Logf("once per agent (socket mode, TCP): %.2f MiB on %d possible CPUs, of which %.0f KiB per possible CPU",
		float64(agent)/(1<<20), ncpu, float64(perCPU[false])/1024)
}

func roundUp8(n uint32) uint32 { return (n + 7) &^ 7 }

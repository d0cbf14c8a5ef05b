package goruntime

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/shanhai-dev/shanhai/bpf/internal/hist"
	"github.com/shanhai-dev/shanhai/bpf/internal/symtab"
)

const (
	fnStop  = "runtime.stopTheWorldWithSema"
	fnStart = "runtime.startTheWorldWithSema"
)

// pauseTarget is a built testdata/gcloop with the places the agent probes for a pause.
type pauseTarget struct {
	bin         string
	ex          *link.Executable
	stop, start symtab.Func
	exits       []uint64 // where startTheWorldWithSema's returns are probed, as the agent does (symtab.Exits)
}

func newPauseTarget(t testing.TB) *pauseTarget {
	t.Helper()
	if os.Geteuid() != 0 {
		// As bpf/internal/agent's requireRoot: an explicit opt-out, never a silent skip.
		if os.Getenv("SHANHAI_BPF_OPTOUT") == "1" {
			t.Skip("not root and SHANHAI_BPF_OPTOUT=1: eBPF probe tests explicitly opted out")
		}
		t.Fatal("eBPF probe tests must run as root (they load and attach BPF programs); run `sudo make test`, or set SHANHAI_BPF_OPTOUT=1 to opt out explicitly")
	}
	bin := filepath.Join(t.TempDir(), "gcloop")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/gcloop").CombinedOutput(); err != nil {
		t.Fatalf("build gcloop: %v\n%s", err, out)
	}
	sym, err := symtab.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer sym.Close()
	p := &pauseTarget{bin: bin}
	if p.stop, err = sym.Func(fnStop); err != nil {
		t.Fatal(err)
	}
	if p.start, err = sym.Func(fnStart); err != nil {
		t.Fatal(err)
	}
	p.exits = sym.Exits(p.start).Offs
	if p.ex, err = link.OpenExecutable(bin); err != nil {
		t.Fatal(err)
	}
	return p
}

// attach puts stop at stopTheWorldWithSema's entry and start after its returns; the links close with the test.
func (p *pauseTarget) attach(t testing.TB, stop, start *ebpf.Program) []link.Link {
	t.Helper()
	var links []link.Link
	l, err := p.ex.Uprobe(fnStop, stop, &link.UprobeOptions{Address: p.stop.CallOff})
	if err != nil {
		t.Fatal(err)
	}
	links = append(links, l)
	for _, a := range p.exits {
		l, err := p.ex.Uprobe(fnStart, start, &link.UprobeOptions{Address: a})
		if err != nil {
			t.Fatal(err)
		}
		links = append(links, l)
	}
	t.Cleanup(func() {
		for _, l := range links {
			l.Close()
		}
	})
	return links
}

// run runs the target for gcs collections and returns its pid and the pauses its runtime recorded.
func (p *pauseTarget) run(t testing.TB, gcs int) (pid int, pauses uint64) {
	t.Helper()
	cmd := exec.Command(p.bin, strconv.Itoa(gcs))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gcloop: %v", err)
	}
	if pauses, err = strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64); err != nil {
		t.Fatalf("gcloop printed %q: %v", out, err)
	}
	return cmd.Process.Pid, pauses
}

// TestPausesNeedNoHashElement: a pause is timed and recorded without inserting into (or deleting from) a hash map,
// so it is counted even when stw_begin and stw, the fallbacks for a process whose slot another holds, have no room.
// The start used to be inserted at every stopTheWorldWithSema and deleted at every return of startTheWorldWithSema:
// an allocation and a free (BPF_F_NO_PREALLOC) inside each pause, ~1 us warm and ~3.5 us in a fresh process here,
// where a full map lost the pause. The histogram was allocated in stw by a process's first pause (a per-CPU value,
// ~15 us inside that pause here); it now sits in a per-CPU slot of stw_hist_slots. The fallback run holds every slot
// for a pid no process has, so each pause takes stw_begin and stw: as exact.
func TestPausesNeedNoHashElement(t *testing.T) {
	p := newPauseTarget(t)
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			spec, err := LoadBpf()
			if err != nil {
				t.Fatal(err)
			}
			if !fallback {
				spec.Maps["stw_begin"].MaxEntries = 1
				spec.Maps["stw"].MaxEntries = 1
			}
			var objs BpfObjects
			if err := spec.LoadAndAssign(&objs, nil); err != nil {
				t.Fatal(err)
			}
			defer objs.Close()
			// No process has this pid (pid_max is at most 2^22).
			const nobody = math.MaxUint32
			if fallback {
				for i := range objs.StwSlots.MaxEntries() {
					if err := objs.StwSlots.Put(i, [2]uint64{nobody, 1}); err != nil {
						t.Fatal(err)
					}
				}
				held := make([]BpfStwHistSlot, ncpu(t))
				for c := range held {
					held[c].Tgid = nobody
				}
				for i := range objs.StwHistSlots.MaxEntries() {
					if err := objs.StwHistSlots.Put(i, held); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				// The one element each has room for.
				if err := objs.StwBegin.Put(uint32(nobody), uint64(1)); err != nil {
					t.Fatal(err)
				}
				if err := objs.Stw.Put(uint32(nobody), &hist.Hist{}); err != nil {
					t.Fatal(err)
				}
			}
			p.attach(t, objs.StopTheWorld, objs.StartTheWorldRet)
			const gcs = 5
			pid, pauses := p.run(t, gcs)
			if pauses < 2*gcs {
				t.Fatalf("the runtime recorded %d pauses for %d collections, want at least %d", pauses, gcs, 2*gcs)
			}
			got := pauseHist(t, &objs, pid)
			if got.Count != pauses {
				t.Errorf("probe counted %d pauses of pid %d, the runtime %d", got.Count, pid, pauses)
			}
			var v hist.Hist
			err = objs.Stw.Lookup(uint32(pid), &v)
			switch {
			case fallback && err != nil:
				t.Errorf("stw histogram of pid %d with every slot held: %v", pid, err)
			case !fallback && err == nil:
				t.Errorf("stw has a histogram for pid %d with a slot free for it", pid)
			}
			var begin uint64
			err = objs.StwBegin.Lookup(uint32(pid), &begin)
			switch {
			case fallback && (err != nil || begin != 0):
				t.Errorf("stw_begin of pid %d after its pauses: %d, %v; want 0 (kept for the next pause, none in progress)", pid, begin, err)
			case !fallback && err == nil:
				t.Errorf("stw_begin has pid %d with a slot free for it", pid)
			}
		})
	}
}

// pauseHist sums pid's pauses as the agent does: its copies of the per-CPU slot its pid hashes to, and its fallback
// histogram in stw (one value, shared by the CPUs).
func pauseHist(t testing.TB, objs *BpfObjects, pid int) hist.Hist {
	t.Helper()
	var h hist.Hist
	var copies []BpfStwHistSlot
	var i uint32
	it := objs.StwHistSlots.Iterate()
	for it.Next(&i, &copies) {
		for c := range copies {
			if copies[c].Tgid == uint32(pid) {
				l := &copies[c].Hist
				h.Add(&hist.Hist{Count: l.Count, SumNs: l.SumNs, Buckets: l.Buckets})
			}
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("read stw_hist_slots: %v", err)
	}
	var v hist.Hist
	err := objs.Stw.Lookup(uint32(pid), &v)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("stw histogram of pid %d: %v", pid, err)
	}
	h.Add(&v)
	return h
}

func ncpu(t testing.TB) int {
	t.Helper()
	n, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// BenchmarkPauseProgramCost prints what each pause program costs per hit (kernel.bpf_stats_enabled) for this build
// and for the builds GORUNTIME_COST_OBJ names (name=file.o,...), alternated in the same rounds so both see the same
// load; each iteration is one round, and the medians are reported as metrics. A figure, no goal.
// GORUNTIME_COST="processes collections" sets each round's work (default "3 100"), e.g.:
//
//	git show HEAD~1:bpf/probe/goruntime/bpf_x86_bpfel.o >/tmp/before.o
//	sudo GORUNTIME_COST_OBJ=before=/tmp/before.o go test -run '^$' -bench PauseProgramCost -benchtime 5x .
//
// Many collections per process price the steady pauses of a long-lived service; GORUNTIME_COST="20 1" prices each
// process's first pauses, which allocate its histogram.
func BenchmarkPauseProgramCost(b *testing.B) {
	procs, gcs := 3, 100
	fmt.Sscan(os.Getenv("GORUNTIME_COST"), &procs, &gcs)
	p := newPauseTarget(b)
	stats, err := ebpf.EnableStats(0) // BPF_STATS_RUN_TIME
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	type build struct {
		name string
		spec *ebpf.CollectionSpec
	}
	cur, err := LoadBpf()
	if err != nil {
		b.Fatal(err)
	}
	builds := []build{{"this", cur}}
	if v := os.Getenv("GORUNTIME_COST_OBJ"); v != "" {
		for _, o := range strings.Split(v, ",") {
			name, path, _ := strings.Cut(o, "=")
			s, err := ebpf.LoadCollectionSpec(path)
			if err != nil {
				b.Fatal(err)
			}
			builds = append(builds, build{name, s})
		}
	}
	b.Logf("load average at the start: %s", loadAvg())
	per := map[string][]float64{}
	for r := range b.N {
		for _, bl := range builds {
			// Only the two pause programs, so an older build whose other maps differ still loads.
			var pp struct {
				Stop  *ebpf.Program `ebpf:"stop_the_world"`
				Start *ebpf.Program `ebpf:"start_the_world_ret"`
			}
			if err := bl.spec.LoadAndAssign(&pp, nil); err != nil {
				b.Fatal(err)
			}
			links := p.attach(b, pp.Stop, pp.Start)
			for range procs {
				p.run(b, gcs)
			}
			for _, pr := range []struct {
				name string
				prog *ebpf.Program
			}{{"stop", pp.Stop}, {"start", pp.Start}} {
				s, err := pr.prog.Stats()
				if err != nil {
					b.Fatal(err)
				}
				ns := float64(s.Runtime.Nanoseconds()) / float64(max(s.RunCount, 1))
				k := bl.name + " " + pr.name
				per[k] = append(per[k], ns)
				b.Logf("round %d %-20s %7.0f ns per hit (%d hits)", r+1, k, ns, s.RunCount)
			}
			for _, l := range links {
				l.Close()
			}
			pp.Stop.Close()
			pp.Start.Close()
		}
	}
	b.Logf("load average at the end: %s", loadAvg())
	for _, bl := range builds {
		for _, n := range []string{"stop", "start"} {
			v := slices.Sorted(slices.Values(per[bl.name+" "+n]))
			b.Logf("%-20s median %7.0f ns per hit over %d rounds", bl.name+" "+n, v[len(v)/2], len(v))
			b.ReportMetric(v[len(v)/2], bl.name+"-"+n+"-ns/hit")
		}
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
